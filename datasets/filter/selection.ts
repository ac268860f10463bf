/**
 * Which rows a CLIP-score filter keeps, and the per-shard statistics it reports.
 *
 * - threshold: keep rows with score >= threshold (LAION style; default 0.25).
 * - keepTopFraction: keep the top fraction of the pool (DataComp style, e.g. 0.3 = "top 30%"). The cutoff
 *   is DataComp's: n = floor(count * fraction), cutoff = the scores sorted descending at index n, keep
 *   score >= cutoff. For a dataset-wide cutoff compute it over all shards' scores and pass it in;
 *   otherwise it is computed per shard.
 * - Both given: a row must pass both. Only keepTopFraction given: no absolute threshold (as DataComp).
 * - captionSource: whether the score is of the original caption or the generated one (recorded).
 * Rows without a score (no image, undecodable, no caption) are never kept and are counted apart.
 */
import { ConfigError } from '../../infra/errors.js';

/** Which caption the CLIP score (and so the threshold) is computed against. */
export type CaptionSource = 'original' | 'generated';

/** A validated selection policy. */
export interface SelectionPolicy {
  threshold: number | null;
  keepTopFraction: number | null;
  captionSource: CaptionSource;
}

export const DEFAULT_CLIP_THRESHOLD = 0.25;

/** Build a policy from user options, applying defaults; invalid values throw ConfigError. */
export function selectionPolicy(
  opts: { threshold?: number | null; keepTopFraction?: number | null; captionSource?: CaptionSource } = {},
): SelectionPolicy {
  const keepTopFraction = opts.keepTopFraction ?? null;
  const threshold =
    opts.threshold !== undefined ? opts.threshold : keepTopFraction === null ? DEFAULT_CLIP_THRESHOLD : null;
  if (threshold !== null && !(Number.isFinite(threshold) && threshold >= -1 && threshold <= 1)) {
    throw new ConfigError(
      `CLIP score threshold ${threshold} is outside [-1, 1]`,
      'pass a cosine-similarity threshold between -1 and 1 (LAION used 0.28 with ViT-B/32), or null for none.',
    );
  }
  if (keepTopFraction !== null && !(keepTopFraction > 0 && keepTopFraction <= 1)) {
    throw new ConfigError(
      `keepTopFraction ${keepTopFraction} is outside (0, 1]`,
      "pass the fraction of rows to keep, e.g. 0.3 for DataComp's top 30%.",
    );
  }
  const captionSource = opts.captionSource ?? 'original';
  if (captionSource !== 'original' && captionSource !== 'generated') {
    throw new ConfigError(`captionSource "${String(captionSource)}" is unknown`, 'use "original" or "generated".');
  }
  return { threshold, keepTopFraction, captionSource };
}

/** DataComp's cutoff for keeping the top `fraction` of the finite scores (null when none are finite). */
export function topFractionCutoff(scores: ArrayLike<number>, fraction: number): number | null {
  const finite = Array.from(scores)
    .filter((s) => Number.isFinite(s))
    .sort((a, b) => b - a);
  if (finite.length === 0) return null;
  const n = Math.min(Math.floor(finite.length * fraction), finite.length - 1);
  return finite[n] as number;
}

/** Why a row was kept or not. */
export type SelectionOutcome = 'kept' | 'below_threshold' | 'below_top_fraction' | 'unscored';

/** Per-row decision plus the cutoffs used. */
export interface Selection {
  outcomes: SelectionOutcome[];
  /** The top-fraction cutoff applied (given or computed), null when no fraction. */
  topFractionCutoff: number | null;
}

/**
 * Decide each row. `cutoff` overrides the per-shard top-fraction cutoff (use a dataset-wide one from
 * {@link topFractionCutoff} over all shards for DataComp's exact semantics).
 */
export function selectRows(
  scores: ArrayLike<number | null>,
  policy: SelectionPolicy,
  cutoff?: number | null,
): Selection {
  const values = Array.from(scores, (s) => (s === null ? Number.NaN : s));
  const top =
    policy.keepTopFraction === null
      ? null
      : cutoff !== undefined
        ? cutoff
        : topFractionCutoff(values, policy.keepTopFraction);
  const outcomes = values.map((s): SelectionOutcome => {
    if (!Number.isFinite(s)) return 'unscored';
    if (policy.threshold !== null && s < policy.threshold) return 'below_threshold';
    if (top !== null && s < top) return 'below_top_fraction';
    return 'kept';
  });
  return { outcomes, topFractionCutoff: top };
}

/** Fixed-edge histogram so per-shard histograms add up across shards. */
export interface ScoreHistogram {
  min: number;
  max: number;
  counts: number[];
}

/** Histogram of the finite scores over [min, max] in equal bins; out-of-range scores go to the end bins. */
export function scoreHistogram(
  scores: ArrayLike<number | null>,
  opts: { min?: number; max?: number; bins?: number } = {},
): ScoreHistogram {
  const min = opts.min ?? -1,
    max = opts.max ?? 1,
    bins = opts.bins ?? 100;
  const counts = new Array<number>(bins).fill(0);
  for (const s of Array.from(scores)) {
    if (s === null || !Number.isFinite(s)) continue;
    const i = Math.min(bins - 1, Math.max(0, Math.floor(((s - min) / (max - min)) * bins)));
    counts[i] = (counts[i] as number) + 1;
  }
  return { min, max, counts };
}

/** Per-shard filter statistics (written into the shard's stats JSON). */
export interface FilterStats {
  rows: number;
  scored: number;
  unscored: number;
  kept: number;
  filtered: { below_threshold: number; below_top_fraction: number };
  threshold: number | null;
  keepTopFraction: number | null;
  topFractionCutoff: number | null;
  captionSource: CaptionSource;
  scoreSum: number;
  scoreMin: number | null;
  scoreMax: number | null;
  histogram: ScoreHistogram;
}

/** Summarise one shard's scores and decisions. */
export function filterStats(
  scores: ArrayLike<number | null>,
  selection: Selection,
  policy: SelectionPolicy,
): FilterStats {
  const finite = Array.from(scores).filter((s): s is number => s !== null && Number.isFinite(s));
  const count = (o: SelectionOutcome) => selection.outcomes.filter((x) => x === o).length;
  return {
    rows: selection.outcomes.length,
    scored: finite.length,
    unscored: count('unscored'),
    kept: count('kept'),
    filtered: { below_threshold: count('below_threshold'), below_top_fraction: count('below_top_fraction') },
    threshold: policy.threshold,
    keepTopFraction: policy.keepTopFraction,
    topFractionCutoff: selection.topFractionCutoff,
    captionSource: policy.captionSource,
    scoreSum: finite.reduce((a, b) => a + b, 0),
    scoreMin: finite.length ? Math.min(...finite) : null,
    scoreMax: finite.length ? Math.max(...finite) : null,
    histogram: scoreHistogram(finite),
  };
}

/** Add two shards' stats (dataset totals). Histograms must share edges. */
export function mergeFilterStats(a: FilterStats, b: FilterStats): FilterStats {
  if (
    a.histogram.counts.length !== b.histogram.counts.length ||
    a.histogram.min !== b.histogram.min ||
    a.histogram.max !== b.histogram.max
  ) {
    throw new RangeError('cannot merge filter stats with different histogram edges');
  }
  const minOf = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.min(x, y));
  const maxOf = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.max(x, y));
  return {
    ...a,
    rows: a.rows + b.rows,
    scored: a.scored + b.scored,
    unscored: a.unscored + b.unscored,
    kept: a.kept + b.kept,
    filtered: {
      below_threshold: a.filtered.below_threshold + b.filtered.below_threshold,
      below_top_fraction: a.filtered.below_top_fraction + b.filtered.below_top_fraction,
    },
    topFractionCutoff: a.topFractionCutoff === b.topFractionCutoff ? a.topFractionCutoff : null,
    scoreSum: a.scoreSum + b.scoreSum,
    scoreMin: minOf(a.scoreMin, b.scoreMin),
    scoreMax: maxOf(a.scoreMax, b.scoreMax),
    histogram: { ...a.histogram, counts: a.histogram.counts.map((c, i) => c + (b.histogram.counts[i] as number)) },
  };
}
