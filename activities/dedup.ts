/**
 * Dedup activities (task queue `kiln-io`): thin adapters over datasets/dedup, on the sharded-stage
 * skeleton. Inputs and results are small JSON (names, versions, indices, URIs, counts).
 *
 * - planDedup: pin the source version, list its duplicate images, pick the output version, write
 *   plan.json. Idempotent (a rerun with the same source finds the plan by fingerprint). Heartbeats
 *   every source shard read.
 * - pendingDedupShards: which shards of a range are not finished (cheap: stats + size).
 * - dedupShard: one output shard + stats; lineage run `${jobId}/dedup/shard-${i}` consumes the
 *   source shard and produces the shard and its stats. Idempotent: a finished shard is returned as is.
 * - writeDedupManifest: manifest.json (parents: the source) + lineage dataset version. Idempotent.
 * Retry: typed errors decide (activities/failures.ts).
 */
import { SHARD_SCHEMA_VERSION } from '../infra/constants.js';
import { MissingFileError } from '../infra/errors.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { pendingShards, type FileRef } from '../datasets/shards/stage-shard.js';
import { readVersionPlan } from '../datasets/shards/version-claim.js';
import { planDedup, type DedupPlan } from '../datasets/dedup/plan.js';
import { buildDedupManifest, dedupShard, isDedupShardStats } from '../datasets/dedup/stage.js';
import type { ActivityDeps } from './deps.js';
import { temporalFailures } from './failures.js';
import { activityContext, withHeartbeats, withRun } from './run-lifecycle.js';
import { recordVersionManifest } from './stage-version.js';

export interface PlanDedupInput {
  jobId: string;
  datasetName: string;
  sourceVersion: number;
  outputVersion?: number;
}
export interface PlanDedupResult {
  datasetName: string;
  version: number;
  datasetId: string;
  sourceId: string;
  shardCount: number;
  duplicateRows: number;
  resumed: boolean;
}
export interface DedupShardInput {
  jobId: string;
  datasetName: string;
  version: number;
  shardIndex: number;
}
export interface DedupShardResult {
  shardIndex: number;
  rows: number;
  duplicates: number;
  skipped: boolean;
  shard: FileRef;
}
export interface DedupManifestResult {
  datasetId: string;
  manifest: FileRef;
  rows: number;
  shards: number;
  duplicates: number;
}

export function createDedupActivities(deps: ActivityDeps) {
  const { storage, lineage } = deps;
  const planOf = async (name: string, version: number): Promise<DedupPlan> => {
    const layout = new DatasetLayout(storage, name, version);
    const plan = await readVersionPlan<DedupPlan>(storage, layout);
    if (plan?.stage !== 'dedup')
      throw new MissingFileError(
        `dataset ${layout.id} has no dedup plan at ${layout.planUri}`,
        'run the dedup stage (dedupWorkflow) to plan it first.',
      );
    return plan;
  };

  return temporalFailures({
    /** Plan the run (or find its plan). */
    async planDedup(input: PlanDedupInput): Promise<PlanDedupResult> {
      const ctx = activityContext();
      const runId = `${input.jobId}/dedup/plan`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'dedup.plan', params: input }, async () => {
        const { plan, resumed } = await planDedup(
          storage,
          input,
          lineage.latestDatasetVersionNumber(input.datasetName),
          (n) => ctx?.heartbeat({ shardsRead: n }),
        );
        const source = lineage.getArtifactByUri(plan.source.manifestUri);
        if (source) lineage.linkArtifact(runId, source.id, 'consumed');
        const result: PlanDedupResult = {
          datasetName: plan.datasetName,
          version: plan.version,
          datasetId: plan.datasetId,
          sourceId: plan.source.id,
          shardCount: plan.source.shards.length,
          duplicateRows: plan.duplicateRows,
          resumed,
        };
        return result;
      });
    },

    /** Indices in [from, to) whose dedup shard is not finished. */
    async pendingDedupShards(range: {
      datasetName: string;
      version: number;
      from: number;
      to: number;
    }): Promise<number[]> {
      return pendingShards(
        storage,
        new DatasetLayout(storage, range.datasetName, range.version),
        range.from,
        range.to,
        isDedupShardStats,
      );
    },

    /** Write one output shard (or return the finished one). */
    async dedupShard(input: DedupShardInput): Promise<DedupShardResult> {
      const ctx = activityContext();
      const runId = `${input.jobId}/dedup/shard-${input.shardIndex}`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'dedup.shard', params: input }, async () => {
        const plan = await planOf(input.datasetName, input.version);
        const o = await dedupShard(storage, plan, input.shardIndex, (rowsDone) => ctx?.heartbeat({ rowsDone }));
        const meta = { datasetId: plan.datasetId, shardIndex: input.shardIndex };
        lineage.recordArtifactOfRun(runId, 'consumed', {
          ...o.source,
          kind: 'dataset-shard',
          metadata: { datasetId: plan.source.id, shardIndex: input.shardIndex },
        });
        lineage.recordArtifactOfRun(runId, 'produced', {
          ...o.shard,
          kind: 'dataset-shard',
          metadata: { ...meta, rows: o.rows, schemaVersion: SHARD_SCHEMA_VERSION },
        });
        lineage.recordArtifactOfRun(runId, 'produced', { ...o.stats, kind: 'shard-stats', metadata: meta });
        const result: DedupShardResult = {
          shardIndex: o.shardIndex,
          rows: o.rows,
          duplicates: o.duplicates,
          skipped: o.skipped,
          shard: o.shard,
        };
        return result;
      });
    },

    /** Write manifest.json of a finished dedup version and record the dataset version. */
    async writeDedupManifest(input: {
      jobId: string;
      datasetName: string;
      version: number;
    }): Promise<DedupManifestResult> {
      const runId = `${input.jobId}/dedup/manifest`;
      return withHeartbeats(
        () => ({ phase: 'manifest' }),
        () =>
          withRun(deps, { id: runId, jobId: input.jobId, stage: 'dedup.manifest', params: input }, async () => {
            const plan = await planOf(input.datasetName, input.version);
            const { ref, manifest } = await recordVersionManifest(
              deps,
              runId,
              { ...input, consumedManifestUris: [plan.source.manifestUri] },
              () => buildDedupManifest(storage, plan),
            );
            const result: DedupManifestResult = {
              datasetId: manifest.id,
              manifest: ref,
              rows: manifest.rows,
              shards: manifest.shards.length,
              duplicates: plan.duplicateRows,
            };
            return result;
          }),
      );
    },
  });
}

export type DedupActivities = ReturnType<typeof createDedupActivities>;
