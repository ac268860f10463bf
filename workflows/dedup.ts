/**
 * dedupWorkflow: a dataset version -> a NEW version of the same dataset in which every `success`
 * row whose image bytes (sha256) an earlier row already holds is `filtered` with
 * `duplicate_sha256: same image bytes as row <key> (shard <n>)`; the first occurrence is kept
 * (task queue kiln-io). The smallest stage on the sharded-stage skeleton (workflows/sharded-stage.ts):
 *
 * 1. planDedup pins the source manifest, lists the duplicates and picks the output version (a rerun
 *    with the same source resumes the same version).
 * 2. Shards run page by page: one child workflow per page of `shardsPerPage` shards (id
 *    `${workflowId}/page-${i}`), up to `maxConcurrentShards` dedupShard activities at once, finished
 *    shards skipped; continue-as-new after `pagesPerRun` pages.
 * 3. writeDedupManifest writes manifest.json (parents: the source) and records the dataset version.
 *
 * Deterministic: no I/O here; activity types only. Query `progress` returns DedupProgress.
 */
import { defineQuery, proxyActivities } from '@temporalio/workflow';
import type { DedupActivities, PlanDedupResult } from '../activities/dedup.js';
import { IO_QUEUE } from './queues.js';
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

export interface DedupWorkflowInput extends StageInput<DedupProgress> {
  datasetName: string;
  sourceVersion: number;
  /** Explicit output version (default: resume a matching version, else the next one). */
  outputVersion?: number;
  /** dedupShard activities at once (default 4). */
  maxConcurrentShards?: number;
}

export interface DedupProgress extends StageProgress<PlanDedupResult> {
  shardsWritten: number;
  shardsSkipped: number;
}

export interface DedupWorkflowResult extends StageResult {
  duplicates: number;
  sourceDatasetId: string;
  shardsWritten: number;
  shardsSkipped: number;
}

export type DedupPageInput = StagePageInput;

export const dedupProgressQuery = defineQuery<DedupProgress | null>('progress');

const retry = stageRetryPolicy({ maximumAttempts: 5 });
/** Planning and the manifest heartbeat (every shard read, every 5 s), so a killed worker's step is retried within a minute. */
const acts = proxyActivities<DedupActivities>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '1 minute',
  retry,
});

/** One page of shards: skip the finished ones, write the rest with a sliding window. */
export async function dedupShardsPageWorkflow(input: DedupPageInput): Promise<{ written: number; skipped: number }> {
  const pending = await acts.pendingDedupShards(input);
  const results = await slidingWindow(pending, input.maxConcurrentShards, (shardIndex) =>
    acts.dedupShard({ jobId: input.jobId, datasetName: input.datasetName, version: input.version, shardIndex }),
  );
  const skippedNow = results.filter((r) => r.skipped).length;
  return { written: results.length - skippedNow, skipped: input.to - input.from - pending.length + skippedNow };
}

/** Exact-dedup a dataset version into a new version; returns its manifest and counts. */
export async function dedupWorkflow(input: DedupWorkflowInput): Promise<DedupWorkflowResult> {
  return runShardedStage(input, {
    kind: 'dedup',
    progressQuery: dedupProgressQuery,
    plan: ({ jobId }) =>
      acts.planDedup({
        jobId,
        datasetName: input.datasetName,
        sourceVersion: input.sourceVersion,
        outputVersion: input.outputVersion,
      }),
    start: () => ({ shardsWritten: 0, shardsSkipped: 0 }),
    page: {
      workflow: dedupShardsPageWorkflow,
      input: (p, bounds) => ({
        ...stageTarget(p),
        ...bounds,
        maxConcurrentShards: input.maxConcurrentShards ?? 4,
      }),
      add: (p, r) => {
        p.shardsWritten += r.written;
        p.shardsSkipped += r.skipped;
      },
    },
    finish: async (p) => {
      const m = await acts.writeDedupManifest(stageTarget(p));
      return {
        ...stageResult(p, m),
        duplicates: m.duplicates,
        sourceDatasetId: p.plan.sourceId,
        shardsWritten: p.shardsWritten,
        shardsSkipped: p.shardsSkipped,
      };
    },
  });
}
