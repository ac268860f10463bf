/**
 * Early-stopping policy (pure): from the history of evaluations, decide whether training has
 * converged. The recipe: if FID has not improved for `patience` (3) evaluations in a row, stop and
 * keep the best checkpoint. "Improved" means better than the best so far by more than `minDelta`
 * (FID and KID: lower is better; CLIP score: higher is better). A non-finite value (a diverged run's
 * NaN FID) and a failed evaluation (`failed` set: the activity failed, or its metrics came out
 * non-finite and were stored as null, since JSON has no NaN) count as evaluations without
 * improvement; an evaluation that did not measure the metric (null without `failed`) is ignored.
 */
import { ConfigError } from '../infra/errors.js';

/** One evaluation's numbers (JSON-friendly: missing metrics may be null). */
export interface EvaluationPoint {
  step: number;
  fid?: number | null;
  kid?: number | null;
  clipScore?: number | null;
  /** Why the evaluation failed or which metrics were not finite; counts as no improvement. */
  failed?: string | null;
}

export type StoppingMetric = 'fid' | 'kid' | 'clip_score';

export const STOPPING_METRICS: readonly StoppingMetric[] = ['fid', 'kid', 'clip_score'];

/** Which direction is better: 'min' for FID and KID, 'max' for CLIP score (checkpoint retention uses it too). */
export function metricMode(metric: StoppingMetric): 'min' | 'max' {
  return metric === 'clip_score' ? 'max' : 'min';
}

/** The metric's value in a point: a number (NaN counts), NaN for a failed evaluation, undefined when not measured. */
export function metricValue(p: EvaluationPoint, metric: StoppingMetric): number | undefined {
  const v = metric === 'fid' ? p.fid : metric === 'kid' ? p.kid : p.clipScore;
  if (typeof v === 'number') return v;
  return p.failed ? NaN : undefined;
}

export interface EarlyStoppingOptions {
  metric: StoppingMetric;
  /** Evaluations in a row without improvement that stop training (default 3). */
  patience?: number;
  /** Minimum change that counts as an improvement (default 0). */
  minDelta?: number;
}

export interface EarlyStoppingDecision {
  stop: boolean;
  /** Step of the best evaluation so far (the checkpoint to keep), null before any finite value. */
  bestStep: number | null;
  bestValue: number | null;
  /** true when the most recent evaluation is the new best (promote its checkpoint now). */
  latestIsBest: boolean;
  /** Evaluations since the last improvement. */
  sinceImprovement: number;
  metric: StoppingMetric;
  patience: number;
  minDelta: number;
  /** One human-readable sentence, recorded in lineage and shown in the report. */
  reason: string;
}

export const METRIC_LABEL: Record<StoppingMetric, string> = { fid: 'FID', kid: 'KID', clip_score: 'CLIP score' };

/** Decide from `history` (any order; sorted by step here). */
export function earlyStoppingDecision(
  history: readonly EvaluationPoint[],
  options: EarlyStoppingOptions,
): EarlyStoppingDecision {
  const { metric } = options;
  const patience = options.patience ?? 3;
  const minDelta = options.minDelta ?? 0;
  if (!STOPPING_METRICS.includes(metric))
    throw new ConfigError(
      `early-stopping metric ${JSON.stringify(metric)} is unknown`,
      'use "kid", "fid" or "clip_score".',
    );
  if (!Number.isInteger(patience) || patience < 1)
    throw new ConfigError(
      `early-stopping patience ${patience} is not a positive integer`,
      'set patience to 1 or more (the recipe uses 3).',
    );
  if (!Number.isFinite(minDelta) || minDelta < 0)
    throw new ConfigError(
      `early-stopping min_delta ${minDelta} is negative or not finite`,
      'set min_delta to 0 or a small positive number.',
    );
  const lowerIsBetter = metricMode(metric) === 'min';
  const label = METRIC_LABEL[metric];
  const points = history
    .map((p) => ({ step: p.step, value: metricValue(p, metric) }))
    .filter((p): p is { step: number; value: number } => typeof p.value === 'number')
    .sort((a, b) => a.step - b.step);
  for (let i = 1; i < points.length; i++) {
    if (points[i]!.step === points[i - 1]!.step)
      throw new ConfigError(
        `two evaluations are recorded at step ${points[i]!.step}`,
        'record one evaluation per step.',
      );
  }
  let bestStep: number | null = null;
  let bestValue: number | null = null;
  let since = 0;
  const stale: number[] = [];
  for (const p of points) {
    const improved =
      Number.isFinite(p.value) &&
      (bestValue === null || (lowerIsBetter ? p.value < bestValue - minDelta : p.value > bestValue + minDelta));
    if (improved) {
      bestStep = p.step;
      bestValue = p.value;
      since = 0;
      stale.length = 0;
    } else {
      since++;
      stale.push(p.step);
    }
  }
  const latest = points.at(-1);
  const latestIsBest = latest !== undefined && latest.step === bestStep;
  const stop = since >= patience;
  const delta = minDelta > 0 ? ` by more than ${minDelta}` : '';
  const best = bestValue === null ? `no finite ${label} yet` : `best ${fmt(bestValue)} at step ${bestStep}`;
  let reason: string;
  if (points.length === 0) reason = `no evaluation with ${label} yet`;
  else if (stop)
    reason =
      `${label} has not improved${delta} for ${since} evaluations in a row (steps ` +
      `${stale.join(', ')}; ${best}): stop and keep the checkpoint at step ${bestStep ?? 'none'}`;
  else if (latestIsBest) reason = `${label} improved to ${fmt(bestValue!)} at step ${bestStep}`;
  else reason = `${label} has not improved${delta} for ${since} of ${patience} evaluations (${best})`;
  return { stop, bestStep, bestValue, latestIsBest, sinceImprovement: since, metric, patience, minDelta, reason };
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/0+$/, '').replace(/\.$/, '');
}
