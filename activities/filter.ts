/**
 * Filter activities: thin adapters over datasets/filter (stage*.ts). Inputs and results are small
 * JSON (names, versions, indices, URIs, counts), never image bytes or scores arrays.
 *
 * - planFilter (kiln-gpu: it reads the model directories): validates the options, checks and hashes
 *   the models (MissingFileError naming the directory and expected files), pins the source manifest
 *   and picks the output version (resuming a matching one); writes plan.json. Idempotent.
 * - pendingFilterShards (kiln-io): which shards of a range still need scoring / filtering (cheap).
 * - scoreFilterShard (kiln-gpu): pass 1 of keep-top-fraction runs: the scores sidecar of one shard.
 * - filterShard (kiln-gpu): one output shard + stats (scoring first unless the sidecar is complete).
 *   Lineage run `${jobId}/filter/shard-${i}` consumes the source shard and every model file
 *   (kind 'model.file', with sha256), produces the shard, its stats and scores; environment
 *   {executionProvider, ortVersion}. Idempotent: a finished shard (stats + Parquet with the
 *   recorded sha256) is returned as is; a retry after a kill resumes scoring from the last
 *   checkpoint and rewrites the Parquet from scratch (nothing partial is ever visible). Heartbeats
 *   rows done (every batch and every 10 s). Models are loaded once per worker process and reused.
 * - computeFilterCutoff (kiln-io): DataComp's dataset-wide cutoff over all sidecars, recorded as
 *   filter-cutoff.json. Idempotent (deterministic).
 * - writeFilterManifest (kiln-io): manifest.json (parents: the source version; params: policy,
 *   cutoff, model file hashes, device, batch size) and the lineage dataset version. Idempotent.
 * Retry: everything but ConfigError, MissingFileError, ArtifactConflictError, ModelFilesChangedError,
 * InvalidManifestError, FilterIncompleteError, UnsafePathError (see workflows/filter.ts).
 */
import { temporalFailures } from './failures.js';
import { locationFileUri } from '../infra/location.js';
import { sha256Hex } from '../infra/hash.js';
import { chooseOnnxDevice } from '../infra/onnx-runtime.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { planFilter, readFilterPlan, type FilterPlan, type FilterPlanSpec } from '../datasets/filter/stage-plan.js';
import {
  filterShard,
  findFinishedFilterShard,
  scoreShard,
  type FilterShardProgress,
} from '../datasets/filter/stage.js';
import { buildFilterManifest, filterVersionCutoff } from '../datasets/filter/stage-manifest.js';
import { readShardScores, scoresUri } from '../datasets/filter/stage-scores.js';
import type { FileRef } from '../datasets/shards/stage-shard.js';
import { FilterModelCache, type FilterModelLease } from '../datasets/filter/stage-models.js';
import { writeRecordedArtifact } from './recorded-artifact.js';
import { recordVersionManifest } from './stage-version.js';
import type { ActivityDeps } from './deps.js';
import { activityContext, withHeartbeats, withRun } from './run-lifecycle.js';

export interface PlanFilterInput extends FilterPlanSpec {
  jobId: string;
  workflowId?: string;
}

export interface PlanFilterResult {
  datasetName: string;
  version: number;
  datasetId: string;
  sourceId: string;
  planUri: string;
  fingerprint: string;
  shardCount: number;
  rows: number;
  resumed: boolean;
  threshold: number | null;
  keepTopFraction: number | null;
}

export interface FilterShardsRange {
  datasetName: string;
  version: number;
  from: number;
  to: number;
  phase: 'score' | 'filter';
}

export interface FilterShardInput {
  jobId: string;
  datasetName: string;
  version: number;
  shardIndex: number;
  /** Dataset-wide top-fraction cutoff (keep-top-fraction runs); omitted: none or per shard. */
  topFractionCutoff?: number | null;
  rowGroupSize?: number;
}

export interface FilterShardResult {
  shardIndex: number;
  rows: number;
  kept: number;
  filtered: number;
  carried: number;
  skipped: boolean;
  rowsScored: number;
  resumedFromRow: number;
  executionProviders: string[];
  modelsReused: boolean | null;
  shard: FileRef;
}

export interface ScoreShardResult {
  shardIndex: number;
  rowsScored: number;
  resumedFromRow: number;
  scores: FileRef;
  executionProviders: string[];
}
export interface FilterCutoffResult {
  cutoff: number | null;
  scored: number;
  artifact: FileRef;
}
export interface FilterManifestResult {
  datasetId: string;
  manifest: FileRef;
  rows: number;
  kept: number;
  filtered: number;
  carried: number;
  shards: number;
  executionProviders: string[];
  ortVersions: string[];
}

/** Test-only fault injection and tuning. */
export interface FilterActivityHooks {
  onShardProgress?: (shardIndex: number, p: FilterShardProgress, attempt: number) => void;
  checkpointIntervalMs?: number;
}

/** Lineage URI of one model file: the file plus its content hash (model dirs are mutable, artifacts are not). */
export function modelFileUri(dir: string, path: string, sha256: string): string {
  return `${locationFileUri(dir, path)}#sha256=${sha256}`;
}

export function createFilterActivities(deps: ActivityDeps, hooks: FilterActivityHooks = {}) {
  const { storage, lineage } = deps;
  const models = new FilterModelCache();
  const plans = new Map<string, { bytes: number; plan: FilterPlan }>();

  /** The version's plan (parsed once per process; plans are immutable once written). */
  async function planOf(name: string, version: number): Promise<FilterPlan> {
    const uri = new DatasetLayout(storage, name, version).planUri;
    const bytes = await storage.size(uri);
    const hit = plans.get(uri);
    if (hit && hit.bytes === bytes) return hit.plan;
    const plan = await readFilterPlan(storage, name, version);
    plans.set(uri, { bytes: bytes ?? 0, plan });
    return plan;
  }

  function recordModelsConsumed(runId: string, plan: FilterPlan): void {
    const all = [{ kind: 'clip', m: plan.clip }, ...(plan.captioner ? [{ kind: 'captioner', m: plan.captioner }] : [])];
    for (const { kind, m } of all) {
      for (const f of m.files) {
        lineage.recordArtifactOfRun(runId, 'consumed', {
          uri: modelFileUri(m.dir, f.path, f.sha256),
          kind: 'model.file',
          sha256: f.sha256,
          bytes: f.bytes,
          metadata: { model: kind, dir: m.dir, path: f.path },
        });
      }
    }
  }

  /** Start a shard run, call `work` with heartbeats and a model lease, and close the run. */
  async function shardRun<R>(
    stage: string,
    runId: string,
    input: FilterShardInput,
    work: (
      plan: FilterPlan,
      lease: () => Promise<FilterModelLease>,
      progress: (p: FilterShardProgress) => void,
    ) => Promise<R>,
  ): Promise<R> {
    const ctx = activityContext();
    const attempt = ctx?.info.attempt ?? 1;
    const plan = await planOf(input.datasetName, input.version);
    const device = await chooseOnnxDevice({ device: plan.device });
    const environment = {
      executionProvider: device.device,
      ortVersion: device.ortVersion,
      requestedDevice: device.requested,
      reason: device.reason,
      attempt,
    };
    let last: FilterShardProgress | { phase: 'loading' } = { phase: 'loading' };
    let lease: FilterModelLease | undefined;
    try {
      return await withHeartbeats(
        () => last,
        () =>
          withRun(deps, { id: runId, jobId: input.jobId, stage, params: input, environment }, () =>
            work(
              plan,
              async () => (lease ??= await models.acquire(plan)),
              (p) => {
                last = p;
                ctx?.heartbeat(p);
                hooks.onShardProgress?.(input.shardIndex, p, attempt);
              },
            ),
          ),
        10_000,
      );
    } finally {
      lease?.release();
    }
  }

  return temporalFailures({
    /** Plan the run (or find the matching plan) and record the job, models and source it pins. */
    async planFilter(input: PlanFilterInput): Promise<PlanFilterResult> {
      const runId = `${input.jobId}/filter/plan`;
      lineage.startJob({
        id: input.jobId,
        kind: 'filter',
        workflowId: input.workflowId ?? input.jobId,
        params: input,
        codeVersion: deps.codeVersion,
      });
      // Hashing the model files can take a while: beat throughout, so a killed worker is noticed within the heartbeat timeout.
      return withHeartbeats(
        () => ({ phase: 'plan' }),
        () =>
          withRun(deps, { id: runId, jobId: input.jobId, stage: 'filter.plan', params: input }, async () => {
            const { plan, resumed } = await planFilter(
              storage,
              input,
              lineage.latestDatasetVersionNumber(input.datasetName),
            );
            const manifestText = await storage.readText(plan.source.manifestUri);
            lineage.recordArtifactOfRun(runId, 'consumed', {
              uri: plan.source.manifestUri,
              kind: 'dataset-manifest',
              sha256: plan.source.manifestSha256,
              bytes: Buffer.byteLength(manifestText),
              metadata: { datasetId: plan.source.id },
            });
            recordModelsConsumed(runId, plan);
            const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
            const planText = await storage.readText(layout.planUri);
            lineage.recordArtifactOfRun(runId, 'produced', {
              uri: layout.planUri,
              kind: 'filter-plan',
              sha256: sha256Hex(planText),
              bytes: Buffer.byteLength(planText),
              metadata: { datasetId: plan.datasetId },
            });
            const result: PlanFilterResult = {
              datasetName: plan.datasetName,
              version: plan.version,
              datasetId: plan.datasetId,
              sourceId: plan.source.id,
              planUri: layout.planUri,
              fingerprint: plan.fingerprint,
              shardCount: plan.source.shards.length,
              rows: plan.source.rows,
              resumed,
              threshold: plan.policy.threshold,
              keepTopFraction: plan.policy.keepTopFraction,
            };
            return result;
          }),
      );
    },

    /** Shard indices at plan positions [from, to) still to score (phase 'score') or to write ('filter'). */
    async pendingFilterShards(range: FilterShardsRange): Promise<number[]> {
      const plan = await planOf(range.datasetName, range.version);
      const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
      const pending: number[] = [];
      for (const src of plan.source.shards.slice(range.from, range.to)) {
        if (await findFinishedFilterShard(storage, layout, src.index, false)) continue;
        if (range.phase === 'score') {
          const s = await readShardScores(storage, scoresUri(storage, layout, src.index), {
            fingerprint: plan.fingerprint,
            sourceSha256: src.sha256,
            rows: src.rows,
          });
          if (s?.scores.complete) continue;
        }
        pending.push(src.index);
      }
      return pending;
    },

    /** Score one shard into its sidecar (pass 1 of keep-top-fraction runs). */
    async scoreFilterShard(input: FilterShardInput): Promise<ScoreShardResult> {
      const runId = `${input.jobId}/filter/score-${input.shardIndex}`;
      return shardRun('filter.score', runId, input, async (plan, lease, progress) => {
        const ctx = activityContext();
        const out = await scoreShard(
          storage,
          { plan, shardIndex: input.shardIndex },
          {
            models: async () => (await lease()).models,
            onProgress: progress,
            signal: ctx?.cancellationSignal,
            checkpointIntervalMs: hooks.checkpointIntervalMs,
          },
        );
        const src = plan.source.shards.find((s) => s.index === input.shardIndex)!;
        lineage.recordArtifactOfRun(runId, 'consumed', {
          uri: src.uri,
          kind: 'dataset-shard',
          sha256: src.sha256,
          bytes: src.bytes,
          metadata: { datasetId: plan.source.id, shardIndex: src.index },
        });
        recordModelsConsumed(runId, plan);
        lineage.recordArtifactOfRun(runId, 'produced', {
          ...out.ref,
          kind: 'filter-scores',
          metadata: { datasetId: plan.datasetId, shardIndex: input.shardIndex },
        });
        return {
          shardIndex: input.shardIndex,
          rowsScored: out.rowsScored,
          resumedFromRow: out.resumedFromRow,
          scores: out.ref,
          executionProviders: out.scores.runtime.executionProviders,
        };
      });
    },

    /** Filter one shard (or return the finished one). */
    async filterShard(input: FilterShardInput): Promise<FilterShardResult> {
      const runId = `${input.jobId}/filter/shard-${input.shardIndex}`;
      return shardRun('filter.shard', runId, input, async (plan, lease, progress) => {
        const ctx = activityContext();
        let reused: boolean | null = null;
        const out = await filterShard(
          storage,
          {
            plan,
            shardIndex: input.shardIndex,
            rowGroupSize: input.rowGroupSize,
            ...(input.topFractionCutoff !== undefined ? { topFractionCutoff: input.topFractionCutoff } : {}),
          },
          {
            models: async () => {
              const l = await lease();
              reused = l.reused;
              return l.models;
            },
            onProgress: progress,
            signal: ctx?.cancellationSignal,
            checkpointIntervalMs: hooks.checkpointIntervalMs,
          },
        );
        const meta = { datasetId: plan.datasetId, shardIndex: input.shardIndex };
        lineage.recordArtifactOfRun(runId, 'consumed', {
          ...out.source,
          kind: 'dataset-shard',
          metadata: { datasetId: plan.source.id, shardIndex: input.shardIndex },
        });
        recordModelsConsumed(runId, plan);
        const priorScores = lineage.getArtifactByUri(out.scores.uri);
        const scoresRole = out.rowsScored > 0 || !priorScores ? 'produced' : 'consumed';
        lineage.recordArtifactOfRun(runId, scoresRole, { ...out.scores, kind: 'filter-scores', metadata: meta });
        lineage.recordArtifactOfRun(runId, 'produced', {
          ...out.shard,
          kind: 'dataset-shard',
          metadata: { ...meta, rows: out.rows, kept: out.kept },
        });
        lineage.recordArtifactOfRun(runId, 'produced', { ...out.stats, kind: 'shard-stats', metadata: meta });
        return {
          shardIndex: out.shardIndex,
          rows: out.rows,
          kept: out.kept,
          filtered: out.filtered,
          carried: out.carried,
          skipped: out.skipped,
          rowsScored: out.rowsScored,
          resumedFromRow: out.resumedFromRow,
          executionProviders: out.runtime.executionProviders,
          modelsReused: reused,
          shard: out.shard,
        };
      });
    },

    /** DataComp's dataset-wide top-fraction cutoff over every shard's scores. */
    async computeFilterCutoff(input: {
      jobId: string;
      datasetName: string;
      version: number;
    }): Promise<FilterCutoffResult> {
      const ctx = activityContext();
      const runId = `${input.jobId}/filter/cutoff`;
      return withHeartbeats(
        () => ({ phase: 'cutoff' }),
        () =>
          withRun(deps, { id: runId, jobId: input.jobId, stage: 'filter.cutoff', params: input }, async () => {
            const plan = await planOf(input.datasetName, input.version);
            const fraction = plan.policy.keepTopFraction ?? 1;
            const c = await filterVersionCutoff(storage, plan, fraction, (n) => {
              if (n % 100 === 0) ctx?.heartbeat({ shardsRead: n });
            });
            const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
            const content = `${JSON.stringify({ datasetId: plan.datasetId, keepTopFraction: fraction, ...c }, null, 2)}\n`;
            const artifact = await writeRecordedArtifact(deps, runId, {
              uri: storage.child(layout.dirUri, 'filter-cutoff.json'),
              kind: 'filter-cutoff',
              content,
              metadata: { datasetId: plan.datasetId },
            });
            const result: FilterCutoffResult = { cutoff: c.cutoff, scored: c.scored, artifact };
            return result;
          }),
      );
    },

    /** Write manifest.json of a fully filtered version and record the dataset version in lineage. */
    async writeFilterManifest(input: {
      jobId: string;
      datasetName: string;
      version: number;
      topFractionCutoff?: number | null;
    }): Promise<FilterManifestResult> {
      const ctx = activityContext();
      const runId = `${input.jobId}/filter/manifest`;
      return withHeartbeats(
        () => ({ phase: 'manifest' }),
        () =>
          withRun(deps, { id: runId, jobId: input.jobId, stage: 'filter.manifest', params: input }, async () => {
            const plan = await planOf(input.datasetName, input.version);
            const built = await buildFilterManifest(storage, plan, input.topFractionCutoff ?? null, (n) =>
              ctx?.heartbeat({ shardsDone: n }),
            );
            const { ref, manifest } = await recordVersionManifest(
              deps,
              runId,
              { ...plan, consumedManifestUris: [plan.source.manifestUri] },
              async () => built.manifest,
            );
            const t = built.totals;
            const result: FilterManifestResult = {
              datasetId: manifest.id,
              manifest: ref,
              rows: manifest.rows,
              kept: t.kept,
              filtered: t.filtered,
              carried: t.carried,
              shards: manifest.shards.length,
              executionProviders: t.executionProviders,
              ortVersions: t.ortVersions,
            };
            return result;
          }),
      );
    },
  });
}

export type FilterActivities = ReturnType<typeof createFilterActivities>;
