/**
 * Training activities: thin adapters over training/ (the chunk API in training/run-chunk.ts).
 * Inputs and results are small JSON (URIs, steps, hashes, a few numbers), never tensors.
 *
 * - prepareTrainingRun (kiln-io): validates the config and eval options, pins the dataset version
 *   (manifest sha256), starts the lineage run `${jobId}/train`, and finds where an existing run of
 *   the same name stands (newest checkpoint, earlier evaluations). Idempotent. Heartbeats every 5 s
 *   (the workflow's heartbeat timeout: 1 minute), so a killed worker is noticed in a minute.
 * - trainChunk (kiln-gpu): trains (fromStep, fromStep + steps] with runTrainingChunk, heartbeating
 *   {step, loss} after every step and passing the activity's cancellation signal. Records the
 *   checkpoint files (sha256) in lineage as run `${jobId}/train/chunk-${target}` (consumed: the
 *   dataset manifest and the checkpoint it resumed from; environment: backend, precision, attempt)
 *   and writes the chunk's log to `<runUri>/train-log/step-N.json` (per step: loss, its parts
 *   diffusion / PRX variance / PRX correlation, PRX's gradient share, gradient norm, LR); the
 *   summary carries the chunk's means of those (lossParts). Idempotent: a repeat
 *   returns the recorded checkpoint; a retry after a killed worker resumes from the newest
 *   checkpoint. On cancellation (or worker shutdown) it checkpoints, records, then rethrows the
 *   cancellation. Retry: everything but the training errors (EmptyDatasetError, ...).
 * - buildLatentCache (kiln-gpu, activities/latent-cache.ts): a VAE run's latents, once per dataset
 *   version; trainChunk's `latentCache` names the result and the chunk reads latents from it.
 * - recordFinalCheckpoint (kiln-io): the newest checkpoint of a run, recorded in lineage (used when
 *   a run is cancelled or fails).
 * - finishTrainingRun (kiln-io): closes the `${jobId}/train` lineage run with its result.
 *
 * createTrainActivities also returns the evaluation activities of activities/eval.ts and the
 * closing ones (best checkpoint, report) of activities/train-report.ts.
 */
import { temporalFailures } from './failures.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { ConfigError, MissingFileError } from '../infra/errors.js';
import { assertSafeSegment } from '../infra/storage.js';
import { sha256Hex } from '../infra/hash.js';
import { localModelDir } from '../infra/storage-cache.js';
import { EmptyDatasetError } from '../training/errors.js';
import { assertVaeFiles } from '../training/vae-files.js';
import { InvalidManifestError } from '../datasets/shards/manifest.js';
import { listCheckpoints, readCheckpointState, TENSOR_FILES } from '../training/checkpoint.js';
import { resolveTrainingConfig, type TrainingConfig, type TrainingConfigInput } from '../training/config.js';
import { learningRateAt } from '../training/lr-schedule.js';
import type { StepResult } from '../training/trainer.js';
import type { LossPartsSummary, TrainingChunkResult } from '../training/run-chunk.js';
import type { ActivityDeps } from './deps.js';
import { activityContext, withHeartbeats, withRun } from './run-lifecycle.js';
import {
  createEvalActivities,
  evalPointFromRecord,
  resolveStoppingMetric,
  type EvalPoint,
  type TrainEvalOptions,
} from './eval.js';
import { resolveEvalOptions } from '../eval/options.js';
import { metricMode } from '../eval/early-stopping.js';
import { createTrainReportActivities } from './train-report.js';
import { createLatentCacheActivities, type LatentCacheRef } from './latent-cache.js';
import {
  linkIfRecorded,
  pad9,
  pinnedShards,
  resolveDatasetRef,
  writeRunArtifact,
  type DatasetPin,
} from './run-artifacts.js';

export type { EvalPoint, TrainEvalOptions, EvaluateTrainingResult } from './eval.js';
export type { BestCheckpoint } from './train-report.js';
export type { DatasetPin } from './run-artifacts.js';
export type { LatentCacheRef } from './latent-cache.js';

export interface PrepareTrainingInput {
  jobId: string;
  /** Run directory name under `runs/` (a plain name); checkpoints of an existing run are resumed. */
  runName: string;
  /** `name@vN`, `name` (newest recorded version) or a manifest URI. */
  dataset: string;
  config: TrainingConfigInput;
  /** Steps to train (default config.totalSteps, else 1000); also the LR schedule length unless config.totalSteps is set. */
  totalSteps?: number;
  chunkSteps: number;
  eval?: TrainEvalOptions;
}

export interface PreparedTraining {
  runUri: string;
  dataset: DatasetPin;
  totalSteps: number;
  /** The config every chunk trains with (totalSteps filled in). */
  config: TrainingConfigInput;
  /** Newest checkpoint of the run (0 for a new run). */
  startStep: number;
  /** Earlier evaluations found under the run (steps up to startStep). */
  evals: EvalPoint[];
  /** The eval options with defaults applied (reference: the training dataset when none is given). */
  eval: TrainEvalOptions | null;
}

export interface TrainChunkInput {
  jobId: string;
  runUri: string;
  config: TrainingConfigInput;
  dataset: DatasetPin;
  fromStep: number;
  steps: number;
  /** With a VAE codec: the dataset's latent cache (buildLatentCache); the chunk reads latents from it. */
  latentCache?: LatentCacheRef | null;
}

export interface TrainChunkSummary {
  step: number;
  fromStep: number;
  /** Losses reported for (fromStep, step] (the checkpoint's loss tail). */
  losses: number;
  lastLoss: number | null;
  meanLoss: number | null;
  checkpointUri: string;
  sha256s: Record<string, string>;
  backend: string;
  precision: string;
  /** Latent codec the checkpoint was trained with (`identity`, `onnx-vae:<dir>`) and its files' sha256. */
  codec: { name: string; sha256: string | null };
  alreadyDone: boolean;
  /** Newest checkpoint when this attempt started (> fromStep after an interrupted attempt). */
  resumedFromStep: number;
  attempt: number;
  removedCheckpoints: string[];
  logUri: string;
  /** Loss parts and PRX's share of the loss and of the gradient over the steps this attempt trained (null when none). */
  lossParts: LossPartsSummary | null;
}

export interface FinalCheckpoint {
  step: number;
  checkpointUri: string;
  sha256s: Record<string, string>;
}

/** Test hook: called after every training step (e.g. to stop a worker process at a known step). */
export interface TrainActivityHooks {
  onStep?: (p: StepResult) => void | Promise<void>;
}

export function createTrainActivities(deps: ActivityDeps, hooks: TrainActivityHooks = {}) {
  const { storage, lineage } = deps;

  /** Shard URIs of the pinned dataset version; the manifest must still have the pinned hash. */
  async function pinnedShardUris(pin: DatasetPin): Promise<string[]> {
    return (await pinnedShards(deps, pin)).map((s) => s.uri);
  }

  /** Record a checkpoint's four files as produced by `runId`. */
  async function recordCheckpoint(
    runId: string,
    checkpointUri: string,
    sha256s: Record<string, string>,
    step: number,
    env: Record<string, unknown>,
  ): Promise<void> {
    for (const [file, sha256] of Object.entries(sha256s)) {
      const uri = storage.child(checkpointUri, file);
      lineage.recordArtifactOfRun(runId, 'produced', {
        uri,
        kind: 'checkpoint-file',
        sha256,
        bytes: (await storage.size(uri)) ?? 0,
        metadata: { step, file, ...env },
      });
    }
  }

  /** `<runUri>/train-log/step-N.json`: loss and LR per step of a chunk (written once, then reused). */
  async function writeTrainLog(
    runId: string,
    config: TrainingConfig,
    r: TrainingChunkResult,
    progress: Map<number, StepResult>,
  ): Promise<string> {
    const uri = storage.child(r.runUri, 'train-log', `step-${pad9(r.step)}.json`);
    if (await storage.exists(uri)) {
      const bytes = await storage.read(uri);
      lineage.recordArtifactOfRun(runId, 'produced', {
        uri,
        kind: 'train-log',
        sha256: sha256Hex(bytes),
        bytes: bytes.byteLength,
        metadata: { step: r.step },
      });
      return uri;
    }
    const o = config.optim;
    const schedule = {
      totalSteps: config.totalSteps,
      minLr: o.minLr,
      warmupFraction: o.warmupFraction,
      constantFraction: o.constantFraction,
    };
    const first = r.step - r.losses.length + 1;
    const entries = r.losses.map((loss, i) => {
      const step = first + i;
      const p = progress.get(step);
      return p
        ? {
            step,
            loss: p.loss,
            diffusion: p.diffusion,
            prx: p.prx,
            prxVar: p.prxVar,
            prxCorr: p.prxCorr,
            prxGradShare: p.prxGradShare,
            gradNorm: p.gradNorm,
            lr: p.lr.denoiser,
            lrText: p.lr.text,
          }
        : {
            step,
            loss,
            lr: learningRateAt(step - 1, { ...schedule, peak: o.lr }),
            lrText: learningRateAt(step - 1, { ...schedule, peak: o.lr * o.textLrRatio }),
          };
    });
    const content = `${JSON.stringify({ format: 'kiln-train-log-v1', fromStep: r.fromStep, step: r.step, entries })}\n`;
    await writeRunArtifact(deps, runId, { uri, kind: 'train-log', content, metadata: { step: r.step } });
    return uri;
  }

  async function prepareTrainingRun(input: PrepareTrainingInput): Promise<PreparedTraining> {
    const { chunkSteps } = input;
    if (!Number.isInteger(chunkSteps) || chunkSteps < 1)
      throw new ConfigError(
        `chunkSteps ${chunkSteps} is not a positive integer`,
        'set chunkSteps (the checkpoint interval) to e.g. 500.',
      );
    const totalSteps = input.totalSteps ?? input.config.totalSteps ?? 1000;
    if (!Number.isInteger(totalSteps) || totalSteps < 1)
      throw new ConfigError(
        `totalSteps ${totalSteps} is not a positive integer`,
        'set totalSteps to the number of optimiser steps to train.',
      );
    let config: TrainingConfigInput = { ...input.config, totalSteps: input.config.totalSteps ?? totalSteps };
    let evalInput = input.eval;
    if (evalInput) {
      // The stopping metric, resolved once (KID below feature_dim samples), is also what checkpoint
      // retention ranks by: config.checkpoint.metricMode follows it (a contradicting one is an error).
      evalInput = {
        ...evalInput,
        metric: resolveStoppingMetric(evalInput, await checkEvalOptions(evalInput, chunkSteps)),
      };
      config = withMetricMode(config, metricMode(evalInput.metric!), evalInput.metric!);
    }
    const resolved = resolveTrainingConfig(config);
    if (resolved.codec !== 'identity') await assertVaeFiles(resolved.codec.vae);
    const runUri = storage.uri('runs', assertSafeSegment(input.runName, 'run name'));
    const { pin, manifest } = await resolveDatasetRef(deps, input.dataset);
    if (manifest.shards.length === 0 || manifest.countsByStatus?.success === 0) {
      throw new EmptyDatasetError(
        `dataset ${manifest.id} has ${manifest.shards.length} shards and ${manifest.countsByStatus?.success ?? 0} success rows`,
      );
    }
    const runId = `${input.jobId}/train`;
    lineage.startRun({
      id: runId,
      jobId: input.jobId,
      stage: 'train',
      params: { runUri, dataset: pin, config, totalSteps, chunkSteps, eval: evalInput ?? null },
      codeVersion: deps.codeVersion,
    });
    const recorded = lineage.getArtifactByUri(pin.manifestUri);
    if (recorded && recorded.sha256 !== pin.manifestSha256)
      throw new InvalidManifestError(
        pin.manifestUri,
        `lineage records sha256 ${recorded.sha256} but the file has ${pin.manifestSha256}`,
      );
    const bytes = (await storage.size(pin.manifestUri)) ?? 0;
    lineage.recordArtifactOfRun(runId, 'consumed', {
      uri: pin.manifestUri,
      kind: 'dataset-manifest',
      sha256: pin.manifestSha256,
      bytes,
      metadata: { datasetId: pin.datasetId },
    });
    const startStep = (await listCheckpoints(storage, runUri)).at(-1)?.step ?? 0;
    const evals: EvalPoint[] = [];
    for (const name of await storage.list(storage.child(runUri, 'evals'))) {
      const s = JSON.parse(await storage.readText(storage.child(runUri, 'evals', name))) as {
        record: Parameters<typeof evalPointFromRecord>[0];
      };
      if (s.record.step <= startStep) evals.push(evalPointFromRecord(s.record));
    }
    const evalOptions =
      evalInput && !evalInput.referenceDataset && !evalInput.referenceDir
        ? { ...evalInput, referenceDataset: pin.manifestUri }
        : (evalInput ?? null);
    return { runUri, dataset: pin, totalSteps, config, startStep, evals, eval: evalOptions };
  }

  return temporalFailures({
    ...createEvalActivities(deps),
    ...createTrainReportActivities(deps),
    ...createLatentCacheActivities(deps),

    /**
     * Validate, pin the dataset, start the `${jobId}/train` lineage run; see the module comment.
     * Heartbeats every 5 s (fetching the eval extractor into the cache and hashing the manifest take
     * seconds to minutes), so a worker killed meanwhile is noticed within the workflow's heartbeat
     * timeout, not its 10-minute start-to-close timeout (issue 17).
     */
    prepareTrainingRun(input: PrepareTrainingInput): Promise<PreparedTraining> {
      return withHeartbeats(
        () => ({ phase: 'prepare' }),
        () => prepareTrainingRun(input),
      );
    },

    /** Train one chunk of steps on the GPU queue; see the module comment. */
    async trainChunk(input: TrainChunkInput): Promise<TrainChunkSummary> {
      const ctx = activityContext();
      const attempt = ctx?.info.attempt ?? 1;
      const previousHeartbeat: unknown = ctx?.info.heartbeatDetails;
      ctx?.heartbeat({ phase: 'loading', step: input.fromStep });
      const target = input.fromStep + input.steps;
      const runId = `${input.jobId}/train/chunk-${target}`;
      const config = resolveTrainingConfig(input.config);
      const [{ runTrainingChunk }, { selectTfBackend }, { backendOptionsFor }] = await Promise.all([
        import('../training/run-chunk.js'),
        import('../infra/tfjs-backend.js'),
        import('../training/op-threads.js'),
      ]);
      const backend = await selectTfBackend(backendOptionsFor(config));
      const shardUris = await pinnedShardUris(input.dataset);
      const resumedFrom = (await listCheckpoints(storage, input.runUri)).at(-1);
      const env = {
        backend: backend.name,
        provider: backend.provider,
        precision: backend.precision,
        backendSkipped: backend.skipped,
        ...(backend.build ? { backendBuild: backend.build } : {}),
        ...(backend.opThreads ? { opThreads: backend.opThreads } : {}),
      };
      const progress = new Map<number, StepResult>();
      return withRun(
        deps,
        {
          id: runId,
          jobId: input.jobId,
          stage: 'train.chunk',
          params: {
            runUri: input.runUri,
            fromStep: input.fromStep,
            steps: input.steps,
            dataset: input.dataset.datasetId,
            config: input.config,
            latentCache: input.latentCache?.manifestUri ?? null,
          },
          environment: {
            ...env,
            attempt,
            resumedFromStep: resumedFrom?.step ?? 0,
            ...(previousHeartbeat !== undefined ? { previousAttemptHeartbeat: previousHeartbeat } : {}),
          },
        },
        async (run) => {
          linkIfRecorded(deps, runId, input.dataset.manifestUri, 'consumed');
          if (resumedFrom)
            for (const f of [...TENSOR_FILES, 'state.json'])
              linkIfRecorded(deps, runId, storage.child(resumedFrom.uri, f), 'consumed');
          let latentShardUris: string[] | undefined;
          if (input.latentCache) {
            const { readLatentCacheManifest } = await import('../training/latent-cache.js');
            latentShardUris = (
              await readLatentCacheManifest(storage, input.latentCache.manifestUri, input.latentCache.sha256, shardUris)
            ).shards.map((s) => s.uri);
            linkIfRecorded(deps, runId, input.latentCache.manifestUri, 'consumed');
          }
          const r = await runTrainingChunk({
            storage,
            runUri: input.runUri,
            config: input.config,
            datasetShardUris: shardUris,
            latentShardUris,
            fromStep: input.fromStep,
            steps: input.steps,
            signal: ctx?.cancellationSignal,
            onProgress: async (p) => {
              progress.set(p.step, p);
              ctx?.heartbeat({ phase: 'training', step: p.step, loss: p.loss });
              await hooks.onStep?.(p);
            },
          });
          await recordCheckpoint(runId, r.checkpointUri, r.sha256s, r.step, {
            ...env,
            codec: r.codec.name,
            codecSha256: r.codec.sha256,
          });
          const logUri = await writeTrainLog(runId, config, r, progress);
          const summary: TrainChunkSummary = {
            step: r.step,
            fromStep: input.fromStep,
            losses: r.losses.length,
            lastLoss: r.losses.at(-1) ?? null,
            meanLoss: r.losses.length ? r.losses.reduce((a, b) => a + b, 0) / r.losses.length : null,
            checkpointUri: r.checkpointUri,
            sha256s: r.sha256s,
            backend: r.backend,
            precision: r.precision,
            codec: r.codec,
            alreadyDone: r.alreadyDone,
            resumedFromStep: resumedFrom?.step ?? 0,
            attempt,
            removedCheckpoints: r.removedCheckpoints,
            logUri,
            lossParts: r.lossParts,
          };
          run.summarize(summary);
          // The chunk stopped early and checkpointed because it was cancelled (workflow cancel or worker
          // shutdown): report the cancellation so Temporal records it (and retries on shutdown).
          if (r.cancelled)
            throw ctx?.cancellationSignal.reason instanceof CancelledFailure
              ? ctx.cancellationSignal.reason
              : new CancelledFailure(`chunk cancelled at step ${r.step}`);
          return summary;
        },
      );
    },

    /** The newest checkpoint of the run, recorded in lineage (after a cancel or a failure); null when none. */
    async recordFinalCheckpoint(input: { jobId: string; runUri: string }): Promise<FinalCheckpoint | null> {
      const newest = (await listCheckpoints(storage, input.runUri)).at(-1);
      if (!newest) return null;
      const state = await readCheckpointState(storage, newest.uri);
      const sha256s: Record<string, string> = {
        'state.json': sha256Hex(await storage.read(storage.child(newest.uri, 'state.json'))),
      };
      for (const f of TENSOR_FILES) sha256s[f] = state.files[f].sha256;
      const missing = Object.keys(sha256s).filter((f) => !lineage.getArtifactByUri(storage.child(newest.uri, f)));
      if (missing.length > 0) {
        const runId = `${input.jobId}/train/final-checkpoint`;
        await withRun(
          deps,
          {
            id: runId,
            jobId: input.jobId,
            stage: 'train.final',
            params: input,
            environment: { backend: state.backend, precision: state.precision },
          },
          async () => {
            await recordCheckpoint(runId, newest.uri, sha256s, state.step, {
              backend: state.backend,
              precision: state.precision,
              codec: state.codec,
              codecSha256: state.codecSha256 ?? null,
            });
            return { step: state.step, checkpointUri: newest.uri };
          },
        );
      }
      return { step: state.step, checkpointUri: newest.uri, sha256s };
    },

    /** Close the `${jobId}/train` lineage run with its result (stop reason, best, report). */
    async finishTrainingRun(input: {
      jobId: string;
      status: 'completed' | 'failed' | 'cancelled';
      result?: unknown;
      error?: string;
    }): Promise<void> {
      lineage.finishRun(`${input.jobId}/train`, input.status, input.result, input.error);
    },
  });
}

/**
 * config.checkpoint.metricMode set from the stopping metric's direction, so checkpoint retention and
 * early stopping rank checkpoints the same way; an explicit contradicting value is a ConfigError.
 */
export function withMetricMode(config: TrainingConfigInput, mode: 'min' | 'max', metric: string): TrainingConfigInput {
  const checkpoint = (config as { checkpoint?: { metricMode?: string } }).checkpoint ?? {};
  if (checkpoint.metricMode !== undefined && checkpoint.metricMode !== mode) {
    throw new ConfigError(
      `config.checkpoint.metricMode is ${JSON.stringify(checkpoint.metricMode)} but the stopping metric ` +
        `${metric} is better when ${mode === 'min' ? 'lower' : 'higher'}`,
      `remove checkpoint.metricMode (it follows eval.metric) or set it to "${mode}".`,
    );
  }
  return { ...config, checkpoint: { ...checkpoint, metricMode: mode } } as TrainingConfigInput;
}

/** Checks of eval options that need no model (fail fast, before training starts); returns the extractor's feature_dim. */
async function checkEvalOptions(input: TrainEvalOptions, chunkSteps: number): Promise<number> {
  const bad = (problem: string, fix: string) => new ConfigError(`eval options: ${problem}`, fix);
  const o = resolveEvalOptions(input); // eval/options.ts: types, ranges, one reference, clip_score needs a CLIP dir
  if (o.everySteps % chunkSteps !== 0) {
    throw bad(
      `everySteps ${o.everySteps} is not a positive multiple of chunkSteps ${chunkSteps}`,
      'evaluations run on checkpoints: make everySteps a multiple of chunkSteps.',
    );
  }
  const descriptorPath = join(await localModelDir(o.extractorDir), 'extractor.json'); // s3://: the local cache
  const raw = await readFile(descriptorPath, 'utf8').catch(() => {
    throw new MissingFileError(
      `FID feature extractor not found: ${descriptorPath} is missing`,
      'put extractor.json and model.onnx there: see eval/architecture.md, "Standard Inception-v3 extractor".',
    );
  });
  let featureDim: unknown;
  try {
    featureDim = (JSON.parse(raw) as { feature_dim?: unknown }).feature_dim;
  } catch {
    featureDim = undefined;
  }
  if (!Number.isInteger(featureDim) || (featureDim as number) < 1)
    throw bad(
      `${descriptorPath} has no positive integer feature_dim`,
      'fix extractor.json as described in eval/architecture.md.',
    );
  return featureDim as number;
}

export type TrainActivities = ReturnType<typeof createTrainActivities>;
