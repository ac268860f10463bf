/**
 * Crawl activities (task queue `kiln-io`): thin adapters over datasets/crawl. Inputs and results
 * are small JSON (names, versions, indices, URIs, counts), never image bytes.
 *
 * - planCrawl: split URL lists into input shards and write plan.json. Idempotent (a rerun with the
 *   same inputs finds the plan by fingerprint). Timeout: minutes per million rows; heartbeats every
 *   8 MiB hashed / 5,000 rows split / input shard recorded (the workflow's heartbeat timeout is 1 minute).
 * - pendingCrawlShards: which shards of an index range are not finished yet (cheap: stats + size).
 * - crawlShard: crawl one input shard into a Parquet shard + stats; records a lineage run
 *   `${jobId}/crawl/shard-${index}`. Idempotent: a finished shard (stats + Parquet with the
 *   recorded sha256) is returned as is; a retry after a kill starts the shard over from its input
 *   (nothing partial is ever visible). Heartbeats rows done. Retry: any failure but ConfigError.
 *   Attempts whose worker process died (seen in the shard's attempt journal, datasets/crawl/attempts.ts)
 *   count: after 2, the shard is crawled with sharp for every row (native JPEG path off), recorded
 *   in the shard's stats (`imageCodec`) and in the run's lineage environment.
 * - writeCrawlManifest: manifest.json + lineage dataset version. Idempotent.
 */
import { temporalFailures } from './failures.js';
import { pathToFileURL } from 'node:url';
import { SHARD_SCHEMA_VERSION } from '../infra/constants.js';
import { sha256Hex } from '../infra/hash.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { manifestShardUris } from '../datasets/shards/manifest.js';
import { recordVersionManifest } from './stage-version.js';
import { readShardRows } from '../datasets/shards/reader.js';
import type { RowStatus } from '../datasets/shards/schema.js';
import type { UrlListSource } from '../datasets/input/url-list.js';
import { crawlShardToParquet } from '../datasets/crawl/crawl-shard.js';
import { pendingShards, type FileRef } from '../datasets/shards/stage-shard.js';
import { shardCodecDecision } from '../datasets/crawl/attempts.js';
import { imageCodecEnvironment } from '../infra/imaging/native-jpeg.js';
import { planCrawl, type CrawlPlan, type CrawlPlanSpec } from '../datasets/crawl/plan.js';
import { buildCrawlManifest } from '../datasets/crawl/manifest.js';
import type { CrawlOptions } from '../datasets/crawl/options.js';
import type { ActivityDeps } from './deps.js';
import { activityContext, withHeartbeats, withRun } from './run-lifecycle.js';

export interface PlanCrawlInput extends Omit<CrawlPlanSpec, 'sources' | 'incremental'> {
  jobId: string;
  /** Incremental curation against the seen index as of this position (from `seenIndexPosition`). */
  incrementalAsOf?: number;
  /** Recorded with the job when planCrawl is the first to record it (default: jobId). */
  workflowId?: string;
  /** URL lists: paths / file:// URIs, or sources with an explicit format. */
  inputs: (string | UrlListSource)[];
}

export interface PlanCrawlResult {
  datasetName: string;
  version: number;
  datasetId: string;
  shardCount: number;
  rows: number;
  duplicates: number;
  extraColumns: string[];
  options: Partial<CrawlOptions>;
  resumed: boolean;
  planUri: string;
}

export interface ShardRange {
  datasetName: string;
  version: number;
  /** First shard index (inclusive). */
  from: number;
  /** Last shard index (exclusive). */
  to: number;
}

export interface CrawlShardInput {
  jobId: string;
  datasetName: string;
  version: number;
  shardIndex: number;
  extraColumns: string[];
  options?: Partial<CrawlOptions>;
  rowGroupSize?: number;
}

export interface CrawlShardResult {
  shardIndex: number;
  rows: number;
  skipped: boolean;
  countsByStatus: Record<RowStatus, number>;
  shard: FileRef;
  /** The codec the shard was crawled with (`sharp`: native JPEG path off after dead attempts) and the dead attempts before it. */
  imageCodec?: 'auto' | 'sharp';
  diedAttempts?: number;
}

export interface CrawlManifestResult {
  datasetId: string;
  manifest: FileRef;
  rows: number;
  shards: number;
  countsByStatus: Partial<Record<RowStatus, number>>;
}

/** Test-only fault injection: called after each row is written; throwing aborts the attempt. */
export interface CrawlActivityHooks {
  onShardProgress?: (shardIndex: number, rowsDone: number, attempt: number) => void;
}

export function createCrawlActivities(deps: ActivityDeps, hooks: CrawlActivityHooks = {}) {
  const { storage, lineage } = deps;
  const readPlan = async (name: string, version: number): Promise<CrawlPlan> =>
    JSON.parse(await storage.readText(new DatasetLayout(storage, name, version).planUri)) as CrawlPlan;

  return temporalFailures({
    /** Split the inputs into input shards and write plan.json (or find the matching plan). */
    async planCrawl(input: PlanCrawlInput): Promise<PlanCrawlResult> {
      const ctx = activityContext();
      const runId = `${input.jobId}/crawl/plan`;
      // Idempotent; the workflow records the job first, direct callers (CLI, bench) rely on this.
      lineage.startJob({
        id: input.jobId,
        kind: 'crawl',
        workflowId: input.workflowId ?? input.jobId,
        params: input,
        codeVersion: deps.codeVersion,
      });
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'crawl.plan', params: input }, async () => {
        const sources = input.inputs.map((s) => (typeof s === 'string' ? { path: s } : s));
        const latest = lineage.latestDatasetVersionNumber(input.datasetName);
        const asOf = input.incrementalAsOf;
        const incremental =
          asOf === undefined ? undefined : { seenAsOf: asOf, seenUrl: (url: string) => lineage.seenUrl(url, asOf) };
        const { plan, resumed } = await planCrawl(storage, { ...input, sources, incremental }, latest, (progress) =>
          ctx?.heartbeat(progress),
        );
        for (const s of plan.sources) {
          lineage.recordArtifactOfRun(runId, 'consumed', {
            uri: pathToFileURL(s.path).href,
            kind: 'url-list',
            sha256: s.sha256,
            bytes: s.bytes,
            metadata: { format: s.format, gzip: s.gzip },
          });
        }
        const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
        const planText = await storage.readText(layout.planUri);
        lineage.recordArtifactOfRun(runId, 'produced', {
          uri: layout.planUri,
          kind: 'crawl-plan',
          sha256: sha256Hex(planText),
          bytes: Buffer.byteLength(planText),
        });
        // The input shards are this run's products (so a trace walks from a shard back to the URL lists).
        for (let i = 0; i < plan.shardCount; i++) {
          const uri = layout.inputShardUri(i);
          const bytes = await storage.read(uri);
          ctx?.heartbeat({ phase: 'record', shardsRecorded: i });
          lineage.recordArtifactOfRun(runId, 'produced', {
            uri,
            kind: 'crawl-input-shard',
            sha256: sha256Hex(bytes),
            bytes: bytes.byteLength,
            metadata: { datasetId: plan.datasetId, shardIndex: i },
          });
        }
        const result: PlanCrawlResult = {
          datasetName: plan.datasetName,
          version: plan.version,
          datasetId: plan.datasetId,
          shardCount: plan.shardCount,
          rows: plan.rows,
          duplicates: plan.duplicates,
          extraColumns: plan.extraColumns,
          options: plan.options,
          resumed,
          planUri: layout.planUri,
        };
        return result;
      });
    },

    /** Indices in [from, to) whose shard is not finished (stats present and Parquet of the recorded size). */
    async pendingCrawlShards(range: ShardRange): Promise<number[]> {
      return pendingShards(storage, new DatasetLayout(storage, range.datasetName, range.version), range.from, range.to);
    },

    /** Position of the incremental-curation seen index; the workflow pins it before planning. */
    async seenIndexPosition(): Promise<number> {
      return lineage.seenIndexPosition();
    },

    /** Crawl one shard (or return it when already finished). */
    async crawlShard(input: CrawlShardInput): Promise<CrawlShardResult> {
      const ctx = activityContext();
      const attempt = ctx?.info.attempt ?? 1;
      const runId = `${input.jobId}/crawl/shard-${input.shardIndex}`;
      // Earlier attempts that died with their worker (timed out, never threw) turn the native JPEG path off for this shard.
      const decision = await shardCodecDecision(
        storage,
        new DatasetLayout(storage, input.datasetName, input.version),
        input.shardIndex,
      );
      const environment = {
        attempt,
        ...(await imageCodecEnvironment(decision.codec, decision.reason)),
        ...(decision.diedAttempts
          ? { diedAttempts: decision.diedAttempts, nativeJpeg: decision.codec === 'sharp' ? 'off' : 'on' }
          : {}),
      };
      // A retried shard records the environment of the attempt that runs now (the codec may have changed).
      return withRun(
        deps,
        {
          id: runId,
          jobId: input.jobId,
          stage: 'crawl.shard',
          params: input,
          environment,
          environmentOfRetry: 'latest',
        },
        async () => {
          const asOf = (await readPlan(input.datasetName, input.version)).seenAsOf;
          const outcome = await crawlShardToParquet(
            storage,
            { ...input, codec: decision.codec },
            {
              signal: ctx?.cancellationSignal,
              attempt,
              ...(asOf != null ? { seenContent: (sha: string) => lineage.seenImage(sha, asOf) } : {}),
              onProgress: (rowsDone, rowsTotal) => {
                if (rowsDone % 50 === 0 || rowsDone === rowsTotal) ctx?.heartbeat({ rowsDone, rowsTotal });
                hooks.onShardProgress?.(input.shardIndex, rowsDone, attempt);
              },
            },
          );
          const datasetId = new DatasetLayout(storage, input.datasetName, input.version).id;
          lineage.recordArtifactOfRun(runId, 'consumed', {
            ...outcome.input,
            kind: 'crawl-input-shard',
            metadata: { datasetId, shardIndex: input.shardIndex },
          });
          lineage.recordArtifactOfRun(runId, 'produced', {
            ...outcome.shard,
            kind: 'dataset-shard',
            metadata: {
              datasetId,
              shardIndex: input.shardIndex,
              rows: outcome.rows,
              schemaVersion: SHARD_SCHEMA_VERSION,
            },
          });
          lineage.recordArtifactOfRun(runId, 'produced', {
            ...outcome.stats,
            kind: 'shard-stats',
            metadata: { datasetId, shardIndex: input.shardIndex },
          });
          const result: CrawlShardResult = {
            shardIndex: input.shardIndex,
            rows: outcome.rows,
            skipped: outcome.skipped,
            countsByStatus: outcome.countsByStatus,
            shard: outcome.shard,
            ...(outcome.codec ? { imageCodec: outcome.codec.codec, diedAttempts: outcome.codec.diedAttempts } : {}),
          };
          return result;
        },
      );
    },

    /** Write manifest.json of a fully crawled version and record the dataset version in lineage. */
    async writeCrawlManifest(input: {
      jobId: string;
      datasetName: string;
      version: number;
    }): Promise<CrawlManifestResult> {
      const ctx = activityContext();
      const runId = `${input.jobId}/crawl/manifest`;
      return withHeartbeats(
        () => ({ phase: 'manifest' }),
        () =>
          withRun(deps, { id: runId, jobId: input.jobId, stage: 'crawl.manifest', params: input }, async () => {
            const { ref, manifest } = await recordVersionManifest(deps, runId, input, async () =>
              buildCrawlManifest(storage, await readPlan(input.datasetName, input.version), (n) =>
                ctx?.heartbeat({ shardsDone: n }),
              ),
            );
            await indexSeenItems(deps, manifest.id, input.jobId, manifestShardUris(storage, manifest));
            const result: CrawlManifestResult = {
              datasetId: manifest.id,
              manifest: ref,
              rows: manifest.rows,
              shards: manifest.shards.length,
              countsByStatus: manifest.countsByStatus ?? {},
            };
            return result;
          }),
      );
    },
  });
}

export type CrawlActivities = ReturnType<typeof createCrawlActivities>;

/** Add a crawled version's success rows (URL, image sha256) to the incremental-curation index, once. */
async function indexSeenItems(
  deps: ActivityDeps,
  datasetId: string,
  jobId: string,
  shardUris: readonly string[],
): Promise<void> {
  if (deps.lineage.seenItemCount(datasetId) > 0) return;
  for (const uri of shardUris) {
    const items: { key: string; url: string; sha256: string | null }[] = [];
    for await (const r of readShardRows(deps.storage, uri, { columns: ['key', 'url', 'sha256', 'status'] })) {
      if (r.status === 'success') items.push({ key: r.key, url: r.url, sha256: r.sha256 });
    }
    deps.lineage.recordSeenItems(datasetId, jobId, items);
  }
}
