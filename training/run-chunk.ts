/**
 * `runTrainingChunk`: the unit of durable training, what a `kiln-gpu` activity calls. It loads the
 * latest checkpoint under `runUri` (or initialises from config + seed), trains up to
 * `fromStep + steps`, writes one checkpoint atomically, prunes old ones, and returns a small JSON
 * result. Idempotent: the output is a pure function of (runUri, target step); when a checkpoint at
 * or past the target already exists, it returns that checkpoint's recorded result without training.
 * A retried chunk after a killed worker continues from the newest complete checkpoint, and because
 * all randomness is in the checkpoint, it produces the same weights an uninterrupted run would.
 */
import { sha256Hex } from '../infra/hash.js';
import { ConfigError } from '../infra/errors.js';
import type { ArtifactStorage } from '../infra/storage.js';
import { selectTfBackend, type TfBackendChoice } from '../infra/tfjs-backend.js';
import {
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  readCheckpointState,
  recordCheckpointMetric,
  TENSOR_FILES,
  type CheckpointState,
  type LoadedCheckpoint,
} from './checkpoint.js';
import {
  prxEnabled,
  resolveTrainingConfig,
  trainingIdentity,
  type TrainingConfig,
  type TrainingConfigInput,
} from './config.js';
import { runPrxTargets, type PrxTargetStats } from './prx-targets.js';
import type { DataPosition } from './data-loader.js';
import { CheckpointError } from './errors.js';
import { artifactSha256, buildLatentCache } from './latent-cache.js';
import { createLatentCodec, type LatentCodec } from './latent-codec.js';
import { assertFitsInMemory, trainingDevice } from './memory.js';
import { resolveModel } from './model.js';
import { backendOptionsFor } from './op-threads.js';
import { shardListSha256, TrainingSession, type StepResult } from './trainer.js';

export interface TrainingChunkInput {
  storage: ArtifactStorage;
  /** Run directory URI (checkpoints go to `<runUri>/checkpoints/step-NNNNNNNNN/`). */
  runUri: string;
  config: TrainingConfigInput;
  /** The dataset version's shard URIs, in manifest order (must not change within a run). */
  datasetShardUris: readonly string[];
  /**
   * With a VAE codec: the latent cache's shard URIs, aligned with `datasetShardUris` (the train
   * workflow's buildLatentCache activity makes them). When absent, the chunk builds (or reuses) the
   * cache itself before training.
   */
  latentShardUris?: readonly string[];
  /** Step the chunk starts from (0 for a new run); a checkpoint at this step must exist when > 0. */
  fromStep: number;
  /** Optimiser steps to train in this chunk. */
  steps: number;
  /** Called after every step (heartbeat with step and loss). */
  onProgress?: (p: StepResult) => void | Promise<void>;
  /** When aborted, the chunk stops after the current step, checkpoints, and returns `cancelled: true`. */
  signal?: AbortSignal;
  /** An eval metric (e.g. FID) for an earlier checkpoint, recorded before retention so the best is kept. */
  metric?: { step: number; name: string; value: number };
}

export interface TrainingChunkResult {
  runUri: string;
  /** Step of the checkpoint written (or found). */
  step: number;
  fromStep: number;
  /** Loss of each step in (fromStep, step], as far as the checkpoint's loss tail reaches. */
  losses: number[];
  checkpointUri: string;
  sha256s: Record<string, string>;
  backend: string;
  precision: string;
  /** The latent codec (`identity`, `onnx-vae:<dir name>`) and the sha256 of its files (null for identity). */
  codec: { name: string; sha256: string | null };
  dataPosition: DataPosition;
  samplesSeen: number;
  cancelled: boolean;
  /** True when the checkpoint already existed and nothing was trained. */
  alreadyDone: boolean;
  removedCheckpoints: string[];
  /** The loss parts of the steps trained by this call (null when it trained none, e.g. alreadyDone). */
  lossParts: LossPartsSummary | null;
}

/**
 * Means over a chunk's steps of the loss parts, and PRX's proportion: its share of the loss
 * (prx_weight x prx / loss) and of the gradient on the prediction (mean and max over steps).
 */
export interface LossPartsSummary {
  steps: number;
  /** `unit`, `measured` or `off` (config.objective.prxTargets as resolved), with the weight and cut-off (and the measured variance). */
  prx: { targets: string; weight: number; maxGain: number | null; measuredVariance?: number };
  loss: number;
  diffusion: number;
  prxVar: number;
  prxCorr: number;
  prxLossShare: number;
  prxGradShare: { mean: number; max: number };
}

export function summarizeLossParts(
  config: TrainingConfig,
  steps: readonly StepResult[],
  measured?: PrxTargetStats,
): LossPartsSummary | null {
  if (steps.length === 0) return null;
  const o = config.objective;
  const mean = (f: (s: StepResult) => number) => steps.reduce((a, s) => a + f(s), 0) / steps.length;
  return {
    steps: steps.length,
    prx: {
      targets: o.prxTargets,
      weight: o.prxWeight,
      maxGain: o.prxMaxGain,
      ...(measured ? { measuredVariance: measured.variance } : {}),
    },
    loss: mean((s) => s.loss),
    diffusion: mean((s) => s.diffusion),
    prxVar: mean((s) => s.prxVar),
    prxCorr: mean((s) => s.prxCorr),
    prxLossShare: mean((s) => (s.loss > 0 ? (o.prxWeight * s.prx) / s.loss : 0)),
    prxGradShare: { mean: mean((s) => s.prxGradShare), max: Math.max(...steps.map((s) => s.prxGradShare)) },
  };
}

/** Train one chunk of steps; see the module comment. */
export async function runTrainingChunk(input: TrainingChunkInput): Promise<TrainingChunkResult> {
  const { storage, runUri, fromStep, steps } = input;
  if (!Number.isInteger(fromStep) || fromStep < 0 || !Number.isInteger(steps) || steps < 0) {
    throw new ConfigError(
      `fromStep ${fromStep} and steps ${steps} must be non-negative integers`,
      'pass whole step counts.',
    );
  }
  const config = resolveTrainingConfig(input.config);
  const target = fromStep + steps;
  if (input.metric)
    await recordCheckpointMetric(
      storage,
      runUri,
      input.metric.step,
      input.metric.name,
      input.metric.value,
      config.checkpoint.metricMode,
    );
  const existing = await listCheckpoints(storage, runUri);
  const latest = existing[existing.length - 1];
  if (latest && latest.step >= target) {
    const done = existing.find((c) => c.step === target) ?? latest;
    return { ...(await recordedResult(storage, runUri, done.uri, fromStep)), removedCheckpoints: [], lossParts: null };
  }
  if ((latest?.step ?? 0) < fromStep) {
    throw new CheckpointError(
      `run ${runUri} has no checkpoint at step ${fromStep} (newest: ${latest ? latest.step : 'none'})`,
      'start the chunk from the newest checkpoint step (or 0 for a new run); do not delete checkpoints of a running run.',
    );
  }
  const backend = await chooseBackend(config);
  const codec = await createLatentCodec(config.codec);
  try {
    const { spec } = await resolveModel(config, codec);
    assertFitsInMemory(config, spec.text, spec.denoiser, trainingDevice(backend));
    const checkpoint = latest ? await loadCheckpoint(storage, latest.uri) : undefined;
    if (checkpoint) assertSameRun(checkpoint.state, config, input.datasetShardUris, latest!.uri, codec);
    const latentShardUris =
      codec.sha256 === null
        ? undefined
        : (input.latentShardUris ??
          (await cacheLatents(storage, input.datasetShardUris, codec, config.resolution, input.signal)));
    const prxTargets =
      config.objective.prxTargets === 'measured' && prxEnabled(config)
        ? await runPrxTargets(
            storage,
            runUri,
            input.datasetShardUris,
            config,
            codec,
            shardListSha256(input.datasetShardUris),
          )
        : undefined;
    return await trainLoaded(
      { ...input, latentShardUris },
      config,
      backend,
      codec,
      checkpoint,
      latest?.uri ?? null,
      prxTargets,
    );
  } finally {
    await codec.dispose();
  }
}

async function trainLoaded(
  input: TrainingChunkInput,
  config: TrainingConfig,
  backend: TfBackendChoice,
  codec: LatentCodec,
  checkpoint: LoadedCheckpoint | undefined,
  latestUri: string | null,
  prxTargets: PrxTargetStats | undefined,
): Promise<TrainingChunkResult> {
  const { storage, runUri, fromStep, steps } = input;
  const target = fromStep + steps;
  const session = await TrainingSession.open({
    storage,
    runUri,
    config,
    shardUris: input.datasetShardUris,
    latentShardUris: input.latentShardUris,
    backend,
    checkpoint,
    codec,
    prxTargets,
  });
  try {
    const startStep = session.step;
    const trained: StepResult[] = [];
    let cancelled = false;
    while (session.step < target) {
      if (input.signal?.aborted) {
        cancelled = true;
        break;
      }
      const r = await session.trainStep(latestUri);
      trained.push(r);
      await input.onProgress?.(r);
    }
    if (session.step === startStep && latestUri) {
      return {
        ...(await recordedResult(storage, runUri, latestUri, fromStep)),
        cancelled,
        removedCheckpoints: [],
        lossParts: null,
      };
    }
    const written = await session.saveCheckpoint(latestUri);
    const removedCheckpoints = await pruneCheckpoints(storage, runUri, config.checkpoint.keepLast);
    return {
      runUri,
      step: session.step,
      fromStep,
      losses: lossesAfter(session.losses, session.lossesFromStep, fromStep),
      checkpointUri: written.uri,
      sha256s: written.sha256s,
      backend: backend.name,
      precision: backend.precision,
      codec: { name: codec.name, sha256: codec.sha256 },
      dataPosition: session.data.position(),
      samplesSeen: session.samplesSeen,
      cancelled,
      alreadyDone: false,
      removedCheckpoints,
      lossParts: summarizeLossParts(config, trained, prxTargets),
    };
  } finally {
    session.dispose();
  }
}

/** The latent cache of these shards (built where missing); the shards are hashed to find it. */
async function cacheLatents(
  storage: ArtifactStorage,
  shardUris: readonly string[],
  codec: LatentCodec,
  resolution: number,
  signal?: AbortSignal,
): Promise<string[]> {
  const shards = await Promise.all(shardUris.map(async (uri) => ({ uri, sha256: await artifactSha256(storage, uri) })));
  const built = await buildLatentCache({ storage, shards, codec, resolution, signal });
  return built.manifest.shards.map((s) => s.uri);
}

async function chooseBackend(config: TrainingConfig): Promise<TfBackendChoice> {
  const backend = await selectTfBackend(backendOptionsFor(config));
  if (config.runtime.precision === 'bf16' && backend.precision !== 'bf16') {
    throw new ConfigError(
      `runtime.precision is bf16 but backend ${backend.name} trains in ${backend.precision} (${backend.precisionNote})`,
      'set runtime.precision to "auto" (bf16 where the backend has it, fp32 otherwise) or "fp32".',
    );
  }
  return backend;
}

function assertSameRun(
  state: CheckpointState,
  config: TrainingConfig,
  shardUris: readonly string[],
  uri: string,
  codec: LatentCodec,
): void {
  const was = state.config.objective.prediction;
  if (was !== config.objective.prediction) {
    throw new CheckpointError(
      `checkpoint ${uri} was trained with objective.prediction "${was}", ` +
        `but this chunk's config asks for "${config.objective.prediction}" (the default is "flow"); ` +
        `a model trained for one objective cannot continue on another`,
      `set objective.prediction: "${was}" in the config to resume this run, or start a new run id to train with "${config.objective.prediction}".`,
    );
  }
  const differ = configDifferences(trainingIdentity(state.config), trainingIdentity(config));
  if (differ.length > 0) {
    throw new CheckpointError(
      `checkpoint ${uri} was trained with a different config than this chunk's ` +
        `(${differ.slice(0, 5).join('; ')}${differ.length > 5 ? `; ${differ.length - 5} more` : ''})`,
      'resume with the config recorded in its state.json (only checkpoint.* and runtime.* may change), or start a new run id.',
    );
  }
  if (state.datasetShardsSha256 !== shardListSha256(shardUris)) {
    throw new CheckpointError(
      `checkpoint ${uri} was trained on a different shard list`,
      'resume with the same dataset version (same shard URIs, same order), or start a new run id.',
    );
  }
  if ((state.codecSha256 ?? null) !== codec.sha256) {
    throw new CheckpointError(
      `checkpoint ${uri} was trained with codec ${state.codec} (sha256 ${state.codecSha256 ?? 'none'}), ` +
        `but ${codec.name} now has sha256 ${codec.sha256 ?? 'none'}`,
      'resume with the VAE files the run started with (state.json records their sha256), or start a new run id.',
    );
  }
}

async function recordedResult(
  storage: ArtifactStorage,
  runUri: string,
  uri: string,
  fromStep: number,
): Promise<Omit<TrainingChunkResult, 'removedCheckpoints' | 'lossParts'>> {
  const state = await readCheckpointState(storage, uri);
  const sha256s: Record<string, string> = {
    'state.json': sha256Hex(await storage.read(storage.child(uri, 'state.json'))),
  };
  for (const name of TENSOR_FILES) sha256s[name] = state.files[name].sha256;
  return {
    runUri,
    step: state.step,
    fromStep,
    losses: lossesAfter(state.losses, state.lossesFromStep, fromStep),
    checkpointUri: uri,
    sha256s,
    backend: state.backend,
    precision: state.precision,
    codec: { name: state.codec, sha256: state.codecSha256 ?? null },
    dataPosition: state.data,
    samplesSeen: state.samplesSeen,
    cancelled: false,
    alreadyDone: true,
  };
}

function lossesAfter(losses: number[], firstStep: number, fromStep: number): number[] {
  return losses.slice(Math.max(0, fromStep + 1 - firstStep));
}

/** `path: recorded -> now` for each leaf that differs. */
function configDifferences(recorded: unknown, now: unknown, path = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
  if (isObj(recorded) && isObj(now)) {
    return [...new Set([...Object.keys(recorded), ...Object.keys(now)])]
      .sort()
      .flatMap((k) => configDifferences(recorded[k], now[k], path ? `${path}.${k}` : k));
  }
  return canonicalJson(recorded) === canonicalJson(now)
    ? []
    : [`${path}: ${canonicalJson(recorded)} -> ${canonicalJson(now)}`];
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
