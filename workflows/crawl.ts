/**
 * crawlWorkflow: URL lists -> a new dataset version of Parquet shards (task queue kiln-io).
 *
 * 1. planCrawl splits the inputs into input shards (or finds the unfinished plan of a previous run
 *    with the same inputs: an incremental rerun).
 * 2. Shards are crawled page by page: one child workflow per page of `shardsPerPage` shards (id
 *    `${workflowId}/page-${i}`), each running up to `maxConcurrentShards` crawlShard activities at
 *    once and skipping finished shards. After `pagesPerRun` pages (or when Temporal suggests it) the
 *    workflow continues as new, so 100,000 shards never grow one history without bound.
 * 3. writeCrawlManifest writes manifest.json and records the dataset version in lineage.
 *
 * Deterministic: no I/O here; activity types only. Query `crawlProgress` returns the progress.
 */
import { defineQuery, proxyActivities } from '@temporalio/workflow';
import type { CrawlActivities, PlanCrawlResult } from '../activities/crawl.js';
import type { CrawlOptions } from '../datasets/crawl/options.js';
import type { UrlListSource } from '../datasets/input/url-list.js';
import type { RowStatus } from '../datasets/shards/schema.js';
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

export interface CrawlWorkflowInput extends StageInput<CrawlProgress> {
  datasetName: string;
  /** URL lists (paths or file:// URIs, or sources with an explicit format). */
  inputs: (string | UrlListSource)[];
  /** Default: resume a matching unfinished version, else the next version. */
  version?: number;
  urlColumn?: string;
  captionColumn?: string | null;
  extraColumns?: string[] | 'all';
  rowsPerShard?: number;
  dedupUrls?: boolean;
  /** Incremental curation: URLs and image bytes already in earlier dataset versions become `filtered` (seen_before / duplicate_content). */
  incremental?: boolean;
  options?: Partial<CrawlOptions>;
  rowGroupSize?: number;
  /** crawlShard activities running at once (default 4). */
  maxConcurrentShards?: number;
  /** Start-to-close timeout of one shard (default '2 hours'). */
  shardTimeout?: string;
  /** Heartbeat timeout of one shard (default '2 minutes'). */
  shardHeartbeatTimeout?: string;
}

export interface CrawlProgress extends StageProgress<PlanCrawlResult> {
  shardsCrawled: number;
  shardsSkipped: number;
}

export interface CrawlWorkflowResult extends StageResult {
  shardsCrawled: number;
  shardsSkipped: number;
  countsByStatus: Partial<Record<RowStatus, number>>;
}

export interface CrawlPageInput extends StagePageInput {
  extraColumns: string[];
  options: Partial<CrawlOptions>;
  rowGroupSize?: number;
  shardTimeout: string;
  shardHeartbeatTimeout: string;
}

export interface CrawlPageResult {
  crawled: number;
  skipped: number;
  rowsCrawled: number;
}

export const crawlProgressQuery = defineQuery<CrawlProgress | null>('crawlProgress');

const retry = stageRetryPolicy({ maximumAttempts: 5 });
/**
 * crawlShard: more attempts than the other activities. A shard whose attempts die with their worker
 * twice is crawled with sharp only (datasets/crawl/attempts.ts), but a worker crash also kills the
 * attempts of the shards running beside it, so a shard can lose attempts to its neighbours' crashes
 * before and after it falls back; 8 leaves room for that.
 */
const shardRetry = stageRetryPolicy({ maximumAttempts: 8 });

/**
 * planCrawl and writeCrawlManifest heartbeat (every 8 MiB hashed / 5,000 rows split; every 5 s while
 * writing the manifest, activities/crawl.ts), so a killed worker's step is retried within a minute.
 */
const planActs = proxyActivities<CrawlActivities>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '1 minute',
  retry,
});

/** One page of shards: skip the finished ones, crawl the rest with a sliding window. */
export async function crawlShardsPageWorkflow(input: CrawlPageInput): Promise<CrawlPageResult> {
  const acts = proxyActivities<CrawlActivities>({
    taskQueue: IO_QUEUE,
    startToCloseTimeout: input.shardTimeout,
    heartbeatTimeout: input.shardHeartbeatTimeout,
    retry: shardRetry,
  });
  const pending = await acts.pendingCrawlShards({
    datasetName: input.datasetName,
    version: input.version,
    from: input.from,
    to: input.to,
  });
  const results = await slidingWindow(pending, input.maxConcurrentShards, (shardIndex) =>
    acts.crawlShard({
      jobId: input.jobId,
      datasetName: input.datasetName,
      version: input.version,
      shardIndex,
      extraColumns: input.extraColumns,
      options: input.options,
      rowGroupSize: input.rowGroupSize,
    }),
  );
  return {
    crawled: results.filter((r) => !r.skipped).length,
    skipped: input.to - input.from - pending.length + results.filter((r) => r.skipped).length,
    rowsCrawled: results.filter((r) => !r.skipped).reduce((n, r) => n + r.rows, 0),
  };
}

/** Crawl URL lists into a new (or resumed) dataset version; returns its manifest and counts. */
export async function crawlWorkflow(input: CrawlWorkflowInput): Promise<CrawlWorkflowResult> {
  return runShardedStage(input, {
    kind: 'crawl',
    progressQuery: crawlProgressQuery,
    plan: async ({ jobId, workflowId }) => {
      const incrementalAsOf = input.incremental ? await planActs.seenIndexPosition() : undefined;
      return planActs.planCrawl({
        incrementalAsOf,
        jobId,
        workflowId,
        datasetName: input.datasetName,
        version: input.version,
        inputs: input.inputs,
        urlColumn: input.urlColumn,
        captionColumn: input.captionColumn,
        extraColumns: input.extraColumns,
        rowsPerShard: input.rowsPerShard,
        dedupUrls: input.dedupUrls,
        options: input.options,
      });
    },
    start: () => ({ shardsCrawled: 0, shardsSkipped: 0 }),
    page: {
      workflow: crawlShardsPageWorkflow,
      input: (p, bounds) => ({
        ...stageTarget(p),
        ...bounds,
        extraColumns: p.plan.extraColumns,
        options: p.plan.options,
        rowGroupSize: input.rowGroupSize,
        maxConcurrentShards: input.maxConcurrentShards ?? 4,
        shardTimeout: input.shardTimeout ?? '2 hours',
        shardHeartbeatTimeout: input.shardHeartbeatTimeout ?? '2 minutes',
      }),
      add: (p, r) => {
        p.shardsCrawled += r.crawled;
        p.shardsSkipped += r.skipped;
      },
    },
    finish: async (p) => {
      const m = await planActs.writeCrawlManifest(stageTarget(p));
      return {
        ...stageResult(p, m),
        shardsCrawled: p.shardsCrawled,
        shardsSkipped: p.shardsSkipped,
        countsByStatus: m.countsByStatus,
      };
    },
  });
}
