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
import {
  continueAsNew,
  defineQuery,
  executeChild,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { DedupActivities, PlanDedupResult } from '../activities/dedup.js';
import type { createLineageActivities } from '../activities/lineage.js';
import { IO_QUEUE } from './queues.js';
import { stageRetryPolicy } from './retry.js';
import { pageBounds, runPages, slidingWindow, withJobRecord } from './sharded-stage.js';

export interface DedupWorkflowInput {
  datasetName: string;
  sourceVersion: number;
  /** Explicit output version (default: resume a matching version, else the next one). */
  outputVersion?: number;
  /** Lineage job id (default: the workflow id). */
  jobId?: string;
  /** dedupShard activities at once (default 4), shards per child workflow (default 100), pages per run (default 10). */
  maxConcurrentShards?: number;
  shardsPerPage?: number;
  pagesPerRun?: number;
  /** Internal: progress carried across continue-as-new. */
  carried?: DedupProgress;
}

export interface DedupProgress {
  jobId: string;
  plan: PlanDedupResult;
  nextPage: number;
  pages: number;
  shardsWritten: number;
  shardsSkipped: number;
  runs: number;
}

export interface DedupWorkflowResult {
  jobId: string;
  datasetId: string;
  datasetName: string;
  version: number;
  manifestUri: string;
  manifestSha256: string;
  rows: number;
  shards: number;
  duplicates: number;
  sourceDatasetId: string;
  shardsWritten: number;
  shardsSkipped: number;
  resumed: boolean;
  runs: number;
}

export interface DedupPageInput {
  jobId: string;
  datasetName: string;
  version: number;
  from: number;
  to: number;
  maxConcurrentShards: number;
}

export const dedupProgressQuery = defineQuery<DedupProgress | null>('progress');

const retry = stageRetryPolicy({ maximumAttempts: 5 });
const lineageActs = proxyActivities<ReturnType<typeof createLineageActivities>>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '1 minute',
  retry,
});
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
  const { workflowId } = workflowInfo();
  let progress: DedupProgress | null = input.carried ?? null;
  setHandler(dedupProgressQuery, () => progress);
  const jobId = progress?.jobId ?? input.jobId ?? workflowId;
  const perPage = input.shardsPerPage ?? 100;
  const { carried: _carried, ...params } = input;
  return withJobRecord(
    lineageActs,
    { jobId, kind: 'dedup', workflowId, params, started: progress !== null },
    async () => {
      if (!progress) {
        const plan = await acts.planDedup({
          jobId,
          datasetName: input.datasetName,
          sourceVersion: input.sourceVersion,
          outputVersion: input.outputVersion,
        });
        progress = {
          jobId,
          plan,
          nextPage: 0,
          pages: Math.ceil(plan.shardCount / perPage),
          shardsWritten: 0,
          shardsSkipped: 0,
          runs: 1,
        };
      }
      const p = progress;
      await runPages(p, {
        pagesPerRun: input.pagesPerRun ?? 10,
        continueAsNew: (carried) => continueAsNew<typeof dedupWorkflow>({ ...input, carried }),
        runPage: async (page) => {
          const r = await executeChild(dedupShardsPageWorkflow, {
            workflowId: `${workflowId}/page-${page}`,
            args: [
              {
                jobId,
                datasetName: p.plan.datasetName,
                version: p.plan.version,
                ...pageBounds(page, perPage, p.plan.shardCount),
                maxConcurrentShards: input.maxConcurrentShards ?? 4,
              },
            ],
          });
          p.shardsWritten += r.written;
          p.shardsSkipped += r.skipped;
        },
      });
      const m = await acts.writeDedupManifest({ jobId, datasetName: p.plan.datasetName, version: p.plan.version });
      return {
        jobId,
        datasetId: m.datasetId,
        datasetName: p.plan.datasetName,
        version: p.plan.version,
        manifestUri: m.manifest.uri,
        manifestSha256: m.manifest.sha256,
        rows: m.rows,
        shards: m.shards,
        duplicates: m.duplicates,
        sourceDatasetId: p.plan.sourceId,
        shardsWritten: p.shardsWritten,
        shardsSkipped: p.shardsSkipped,
        resumed: p.plan.resumed,
        runs: p.runs,
      };
    },
  );
}
