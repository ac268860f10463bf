/**
 * Filter one shard, as a library function (no Temporal): read source shard i of a planned filter
 * run, score and caption its `success` rows (pass 1, stage-score.ts, resumable from its scores
 * sidecar), decide which rows the policy keeps, and write output shard i of the new version with
 * every source row, in source order:
 *
 * - kept rows: status `success`, `clip_score` and `caption_generated` set;
 * - rows below the policy: status `filtered`, `error_message` giving the reason, e.g.
 *   `below_threshold: clip_score 0.12 < threshold 0.25`, `below_top_fraction: clip_score 0.05 <
 *   top-30% cutoff 0.07`, `unscored: undecodable image: ...` (reason code before the colon);
 * - rows that were not `success` in the source: carried through unchanged.
 *
 * The shard is committed through the shared protocol (datasets/shards/stage-shard.ts: Parquet,
 * then the stats JSON that is the shard's commit record); a finished shard is returned as is.
 * Output paths depend only on (dataset name, version, shard index).
 */
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout } from '../shards/layout.js';
import { readShardInfo, readShardRows } from '../shards/reader.js';
import { BASE_COLUMNS, STAGE_COLUMNS, type RowStatus, type ShardRow } from '../shards/schema.js';
import type { ShardStats } from '../shards/stats.js';
import { commitShard, findFinishedShard, type FileRef } from '../shards/stage-shard.js';
import { filterStats, selectRows, type FilterStats, type SelectionOutcome } from './selection.js';
import {
  scoreShard,
  sourceShardOf,
  verifySourceShard,
  type FilterShardHooks,
  type FilterShardSpec,
  type ScoreShardOutcome,
} from './stage-score.js';
import type { ShardScores } from './stage-scores.js';

export {
  scoreShard,
  sourceShardOf,
  type FilterShardHooks,
  type FilterShardProgress,
  type FilterShardSpec,
  type ScoreShardOutcome,
} from './stage-score.js';

/** Per-shard stats JSON of a filtered shard: the crawl's ShardStats plus the filter's figures. */
export interface FilterShardStats extends ShardStats {
  stage: 'filter';
  source: { datasetId: string; uri: string; sha256: string; rows: number; bytes: number };
  scores: FileRef;
  /** Source rows that were not `success` and were carried through unchanged. */
  carried: number;
  /** Over the source's `success` rows: scored/unscored, kept, filtered by reason, histogram. */
  filter: FilterStats;
  /** What the call that wrote the shard scored (0 rows when the scores sidecar was complete). */
  scoring: { rowsScored: number; resumedFromRow: number; modelMs: number };
  runtime: ShardScores['runtime'];
}

/** What filtering one shard produced. */
export interface FilterShardOutcome {
  shardIndex: number;
  rows: number;
  kept: number;
  /** Source `success` rows marked `filtered` (below the policy or unscored). */
  filtered: number;
  /** Source rows that were not `success`, carried through unchanged. */
  carried: number;
  countsByStatus: Record<RowStatus, number>;
  shard: FileRef;
  stats: FileRef;
  scores: FileRef;
  source: FileRef;
  runtime: ShardScores['runtime'];
  /** True when the shard was already finished and nothing was done. */
  skipped: boolean;
  /** Rows the models ran on in this call. */
  rowsScored: number;
  /** Source row scoring resumed from (> 0 after a checkpoint). */
  resumedFromRow: number;
}

/** Shard `i`'s stats when it is finished and was written by the filter (datasets/shards/stage-shard.ts). */
export function findFinishedFilterShard(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  i: number,
  verifyHash = true,
): Promise<{ stats: FilterShardStats; ref: FileRef } | undefined> {
  return findFinishedShard<FilterShardStats>(storage, layout, i, { verifyHash, accept: isFilterShardStats });
}

/** Stats written by the filter stage (a version directory holds one stage's shards). */
export const isFilterShardStats = (stats: FilterShardStats): boolean => stats.stage === 'filter';

function outcomeOf(
  stats: FilterShardStats,
  ref: FileRef,
  extra: { skipped: boolean; rowsScored: number; resumedFromRow: number },
): FilterShardOutcome {
  return {
    shardIndex: stats.shardIndex,
    rows: stats.rows,
    kept: stats.filter.kept,
    filtered: stats.filter.rows - stats.filter.kept,
    carried: stats.carried,
    countsByStatus: stats.countsByStatus,
    shard: stats.shard,
    stats: ref,
    scores: stats.scores,
    source: { uri: stats.source.uri, sha256: stats.source.sha256, bytes: stats.source.bytes },
    runtime: stats.runtime,
    ...extra,
  };
}

/** A number as error messages show it (at most 6 decimals). */
const fmt = (x: number) => String(Number(x.toFixed(6)));

/** The `error_message` of a `success` row the policy did not keep. */
export function filteredReason(
  outcome: Exclude<SelectionOutcome, 'kept'>,
  score: number | null,
  scoreError: string | null,
  policy: { threshold: number | null; keepTopFraction: number | null },
  cutoff: number | null,
): string {
  if (outcome === 'unscored') return `unscored: ${scoreError ?? 'no score'}`;
  if (outcome === 'below_threshold')
    return `below_threshold: clip_score ${fmt(score as number)} < threshold ${fmt(policy.threshold as number)}`;
  return `below_top_fraction: clip_score ${fmt(score as number)} < top-${fmt((policy.keepTopFraction as number) * 100)}% cutoff ${fmt(cutoff as number)}`;
}

/**
 * Filter shard `spec.shardIndex` of `spec.plan` (or return it when already finished). Throws only
 * for shard-level failures (missing or changed source, model errors); row failures are data.
 */
export async function filterShard(
  storage: ArtifactStorage,
  spec: FilterShardSpec,
  hooks: FilterShardHooks,
): Promise<FilterShardOutcome> {
  const layout = new DatasetLayout(storage, spec.plan.datasetName, spec.plan.version);
  const done = await findFinishedFilterShard(storage, layout, spec.shardIndex);
  if (done) return outcomeOf(done.stats, done.ref, { skipped: true, rowsScored: 0, resumedFromRow: 0 });
  const scored = await scoreShard(storage, spec, hooks);
  return writeFilteredShard(storage, layout, spec, scored, hooks);
}

async function writeFilteredShard(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  spec: FilterShardSpec,
  scored: ScoreShardOutcome,
  hooks: FilterShardHooks,
): Promise<FilterShardOutcome> {
  const { plan } = spec;
  const i = spec.shardIndex;
  const src = sourceShardOf(plan, i);
  const s = scored.scores;
  if (!scored.sourceVerified) await verifySourceShard(storage, src);
  // Selection over the source's success rows (sidecar invariant: exactly one of score / error set).
  const successRows: number[] = [];
  for (let r = 0; r < s.rowsDone; r++) if (s.clipScore[r] !== null || s.scoreError[r] !== null) successRows.push(r);
  const successScores = successRows.map((r) => s.clipScore[r] ?? null);
  const selection = selectRows(successScores, plan.policy, spec.topFractionCutoff);
  const outcomes = new Array<SelectionOutcome | null>(s.rowsDone).fill(null);
  successRows.forEach((r, k) => {
    outcomes[r] = selection.outcomes[k] as SelectionOutcome;
  });

  const info = await readShardInfo(storage, src.uri);
  const known = new Set<string>([...BASE_COLUMNS, ...STAGE_COLUMNS]);
  const extra = info.columns.filter((c) => !known.has(c));
  // Reranking's columns: written when this run reranks, or carried when the source has them.
  const candidateColumns = s.captionCandidates !== undefined || info.columns.includes('caption_candidates');
  let carried = 0;
  let r = 0;
  const { stats, ref } = await commitShard<FilterShardStats>(storage, {
    layout,
    shardIndex: i,
    inputUri: src.uri,
    writer: {
      columns: { extra, clipScore: true, captionGenerated: true, captionCandidates: candidateColumns },
      rowGroupSize: spec.rowGroupSize,
      metadata: {
        'kiln.dataset': layout.id,
        'kiln.shard_index': String(i),
        'kiln.source': `${plan.source.id}#${i}`,
        'kiln.filter_fingerprint': plan.fingerprint,
      },
    },
    fill: async (emit) => {
      for await (const row of readShardRows(storage, src.uri, { batchSize: 256 })) {
        const outcome = outcomes[r];
        let out: ShardRow;
        if (outcome === null || outcome === undefined) {
          carried++;
          out = { ...row, clip_score: row.clip_score ?? null, caption_generated: row.caption_generated ?? null };
        } else {
          const score = s.clipScore[r] ?? null;
          const kept = outcome === 'kept';
          out = {
            ...row,
            status: kept ? 'success' : 'filtered',
            error_message: kept
              ? null
              : filteredReason(outcome, score, s.scoreError[r] ?? null, plan.policy, selection.topFractionCutoff),
            clip_score: score,
            caption_generated: s.captionGenerated[r] ?? null,
          };
          if (candidateColumns) {
            // This run's candidates (a source's candidates belong to the caption this run replaced).
            out.caption_candidates = s.captionCandidates?.[r] ?? null;
            out.caption_candidate_scores = s.captionCandidateScores?.[r] ?? null;
          }
        }
        await emit(out);
        r++;
        if (r % 256 === 0) {
          if (hooks.signal?.aborted)
            throw hooks.signal.reason instanceof Error ? hooks.signal.reason : new Error('filter shard cancelled');
          hooks.onProgress?.({ phase: 'write', rowsDone: r, rowsTotal: src.rows });
        }
      }
      if (r !== s.rowsDone) throw new Error(`source shard ${src.uri} has ${r} rows but its scores cover ${s.rowsDone}`);
    },
    stats: (base) => ({
      ...base,
      stage: 'filter',
      source: { datasetId: plan.source.id, uri: src.uri, sha256: src.sha256, rows: src.rows, bytes: src.bytes },
      scores: scored.ref,
      carried,
      filter: filterStats(successScores, selection, plan.policy),
      scoring: { rowsScored: scored.rowsScored, resumedFromRow: scored.resumedFromRow, modelMs: scored.modelMs },
      runtime: s.runtime,
    }),
  });
  hooks.onProgress?.({ phase: 'write', rowsDone: r, rowsTotal: src.rows });
  return outcomeOf(stats, ref, {
    skipped: false,
    rowsScored: scored.rowsScored,
    resumedFromRow: scored.resumedFromRow,
  });
}
