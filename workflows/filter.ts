/**
 * filterWorkflow: a dataset version -> a NEW version of the same dataset in which every row gains
 * `clip_score` and `caption_generated`, and rows below the policy are marked `filtered` with their
 * reason (model activities on task queue kiln-gpu).
 *
 * 1. planFilter (kiln-gpu) checks and hashes the models, pins the source manifest and picks the
 *    output version (a rerun with the same input resumes the same version). A missing model
 *    directory fails the workflow at once (MissingFileError, not retried).
 * 2. keep-top-fraction only: every shard is scored first (scoreFilterShard writes the scores
 *    sidecar), then computeFilterCutoff takes DataComp's cutoff over the whole dataset.
 * 3. filterShard writes each output shard (reusing the sidecars, so nothing is scored twice).
 *    Shards run page by page: one child workflow per page of `shardsPerPage` shards (id
 *    `${workflowId}/<phase>-page-${i}`), up to `maxConcurrentShards` activities at once, finished
 *    shards skipped; after `pagesPerRun` pages (or when Temporal suggests it) the workflow continues
 *    as new, so no history grows without bound.
 * 4. writeFilterManifest writes manifest.json (parents: the source) and records the dataset version.
 *
 * Deterministic: no I/O here; activity types only. Query `progress` returns FilterProgress.
 */
import { defineQuery, proxyActivities } from '@temporalio/workflow';
import type { FilterActivities, FilterShardResult, PlanFilterResult, ScoreShardResult } from '../activities/filter.js';
import type { CaptionCandidatesSpec } from '../datasets/filter/stage-plan.js';
import { GPU_QUEUE, IO_QUEUE } from './queues.js';
import { stageRetryPolicy } from './retry.js';
import {
  runShardedStage,
  slidingWindow,
  stageResult,
  stageTarget,
  type StageInput,
  type StagePageInput,
  type StageProgress,
  type StageResult,
} from './sharded-stage.js';

export interface FilterWorkflowInput extends StageInput<FilterProgress> {
  datasetName: string;
  sourceVersion: number;
  clipModelDir: string;
  captionerModelDir?: string | null;
  /** Keep rows with clip_score >= threshold (default 0.25 unless keepTopFraction is given). */
  threshold?: number | null;
  /** DataComp: keep the top fraction of the whole dataset (e.g. 0.3). */
  keepTopFraction?: number | null;
  /** Which caption the score (and so the policy) applies to (default 'original'). */
  captionSource?: 'original' | 'generated';
  captionPrompt?: string | null;
  maxNewTokens?: number;
  numBeams?: number;
  /**
   * CLIP reranking (LAION-COCO): `count` candidate captions per image (beam search's best, or seeded
   * samples), the highest CLIP score kept as caption_generated; candidates and scores stored in the
   * shard. Omitted or null: off (and the activity input is the same as without the field).
   */
  captionCandidates?: CaptionCandidatesSpec | null;
  batchSize?: number;
  device?: 'auto' | 'cpu' | 'cuda';
  /** Shard activities running at once (default 2). */
  maxConcurrentShards?: number;
  /** Explicit output version (default: resume a matching version, else the next one). */
  outputVersion?: number;
  /** Rows per Parquet row group of the output (default 1024). */
  rowGroupSize?: number;
  /** Start-to-close timeout of one shard (default '4 hours'). */
  shardTimeout?: string;
  /** Heartbeat timeout of one shard (default '2 minutes'): how soon a dead worker's shard is retried. */
  shardHeartbeatTimeout?: string;
}

export type FilterPhase = 'score' | 'filter';

export interface FilterProgress extends StageProgress<PlanFilterResult> {
  phase: FilterPhase;
  /** Dataset-wide cutoff once computed (keep-top-fraction runs). */
  topFractionCutoff?: number | null;
  shardsScored: number;
  shardsFiltered: number;
  shardsSkipped: number;
  rowsScored: number;
}

export interface FilterWorkflowResult extends StageResult {
  /** Rows with status `success` in the output. */
  kept: number;
  /** Source `success` rows marked `filtered` (below the policy, or unscored). */
  filtered: number;
  /** Source rows that were not `success`, carried through unchanged. */
  failed: number;
  /** Execution provider(s) that ran the models, e.g. "cpu" or "cuda" ("none" when nothing was scored). */
  executionProvider: string;
  sourceDatasetId: string;
  topFractionCutoff: number | null;
  shardsFiltered: number;
  shardsSkipped: number;
  rowsScored: number;
}

export interface FilterPageInput extends StagePageInput {
  phase: FilterPhase;
  topFractionCutoff?: number | null;
  rowGroupSize?: number;
  shardTimeout: string;
  shardHeartbeatTimeout: string;
}

export interface FilterPageResult {
  done: number;
  skipped: number;
  rowsScored: number;
}

export const filterProgressQuery = defineQuery<FilterProgress | null>('progress');

const retry = stageRetryPolicy({ maximumAttempts: 5 });

/** planFilter heartbeats every 5 s (activities/filter.ts), so a killed worker's planning is retried within a minute. */
const planActs = proxyActivities<FilterActivities>({
  taskQueue: GPU_QUEUE,
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry,
});
/** The cutoff and manifest activities heartbeat every 5 s (activities/filter.ts): a killed worker is noticed within a minute. */
const ioActs = proxyActivities<FilterActivities>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '1 minute',
  retry,
});

/** One page of shards: skip the finished ones, score or filter the rest with a sliding window. */
export async function filterShardsPageWorkflow(input: FilterPageInput): Promise<FilterPageResult> {
  const acts = proxyActivities<FilterActivities>({
    taskQueue: GPU_QUEUE,
    startToCloseTimeout: input.shardTimeout,
    heartbeatTimeout: input.shardHeartbeatTimeout,
    retry,
  });
  const pending = await ioActs.pendingFilterShards({
    datasetName: input.datasetName,
    version: input.version,
    from: input.from,
    to: input.to,
    phase: input.phase,
  });
  const results = await slidingWindow<FilterShardResult | ScoreShardResult>(
    pending,
    input.maxConcurrentShards,
    (shardIndex) => {
      const args = {
        jobId: input.jobId,
        datasetName: input.datasetName,
        version: input.version,
        shardIndex,
        rowGroupSize: input.rowGroupSize,
        ...(input.topFractionCutoff !== undefined ? { topFractionCutoff: input.topFractionCutoff } : {}),
      };
      return input.phase === 'score' ? acts.scoreFilterShard(args) : acts.filterShard(args);
    },
  );
  const skippedNow = results.filter((r) => 'skipped' in r && r.skipped).length;
  return {
    done: results.length - skippedNow,
    skipped: input.to - input.from - pending.length + skippedNow,
    rowsScored: results.reduce((n, r) => n + r.rowsScored, 0),
  };
}

/** Filter (CLIP score + caption) a dataset version into a new version; returns its manifest and counts. */
export async function filterWorkflow(input: FilterWorkflowInput): Promise<FilterWorkflowResult> {
  return runShardedStage(input, {
    kind: 'filter',
    progressQuery: filterProgressQuery,
    plan: ({ jobId, workflowId }) =>
      planActs.planFilter({
        jobId,
        workflowId,
        datasetName: input.datasetName,
        sourceVersion: input.sourceVersion,
        outputVersion: input.outputVersion,
        clipModelDir: input.clipModelDir,
        captionerModelDir: input.captionerModelDir,
        threshold: input.threshold,
        keepTopFraction: input.keepTopFraction,
        captionSource: input.captionSource,
        captionPrompt: input.captionPrompt,
        maxNewTokens: input.maxNewTokens,
        numBeams: input.numBeams,
        ...(input.captionCandidates ? { captionCandidates: input.captionCandidates } : {}),
        batchSize: input.batchSize,
        device: input.device,
      }),
    start: (plan) => ({
      phase: plan.keepTopFraction !== null ? ('score' as const) : ('filter' as const),
      shardsScored: 0,
      shardsFiltered: 0,
      shardsSkipped: 0,
      rowsScored: 0,
    }),
    // keep-top-fraction: after the score pages, the dataset-wide cutoff, then the filter pages.
    nextPhase: async (p) => {
      if (p.phase === 'filter') return false;
      const c = await ioActs.computeFilterCutoff(stageTarget(p));
      p.topFractionCutoff = c.cutoff;
      p.phase = 'filter';
      p.nextPage = 0;
      return true;
    },
    page: {
      workflow: filterShardsPageWorkflow,
      id: (p, page) => `${p.phase}-page-${page}`,
      input: (p, bounds) => ({
        ...stageTarget(p),
        phase: p.phase,
        ...bounds,
        rowGroupSize: input.rowGroupSize,
        ...(p.topFractionCutoff !== undefined ? { topFractionCutoff: p.topFractionCutoff } : {}),
        maxConcurrentShards: input.maxConcurrentShards ?? 2,
        shardTimeout: input.shardTimeout ?? '4 hours',
        shardHeartbeatTimeout: input.shardHeartbeatTimeout ?? '2 minutes',
      }),
      add: (p, r) => {
        if (p.phase === 'score') p.shardsScored += r.done;
        else {
          p.shardsFiltered += r.done;
          p.shardsSkipped += r.skipped;
        }
        p.rowsScored += r.rowsScored;
      },
    },
    finish: async (p) => {
      const m = await ioActs.writeFilterManifest({
        ...stageTarget(p),
        ...(p.topFractionCutoff !== undefined ? { topFractionCutoff: p.topFractionCutoff } : {}),
      });
      return {
        ...stageResult(p, m),
        kept: m.kept,
        filtered: m.filtered,
        failed: m.carried,
        executionProvider: m.executionProviders.length > 0 ? m.executionProviders.join(',') : 'none',
        sourceDatasetId: p.plan.sourceId,
        topFractionCutoff: p.topFractionCutoff ?? null,
        shardsFiltered: p.shardsFiltered,
        shardsSkipped: p.shardsSkipped,
        rowsScored: p.rowsScored,
      };
    },
  });
}
