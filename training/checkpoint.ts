/**
 * Checkpoints under `<runUri>/checkpoints/step-000000123/`: `model.safetensors` (denoiser + text
 * encoder), `ema.safetensors`, `optimizer.safetensors` (Adam moments) and `state.json` (step, RNG
 * state, data position, config, backend, loss tail, and the sha256 of the three tensor files).
 * Every file is written atomically through `ArtifactStorage`; state.json is written last, so a
 * directory without it is an interrupted write and is never loaded. Loading verifies the hashes.
 *
 * Retention keeps the last K complete checkpoints plus the best one by a metric recorded in
 * `<runUri>/checkpoints/metrics.json` (e.g. FID from the eval stage).
 */
import type { ArtifactStorage } from '../infra/storage.js';
import { sha256Hex } from '../infra/hash.js';
import { recordedTrainingConfig, type TrainingConfig } from './config.js';
import type { DataPosition } from './data-loader.js';
import { CheckpointError } from './errors.js';
import type { RngState } from './rng.js';
import { decodeSafetensors, writeSafetensors, type SafetensorsFile, type TensorSource } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'kiln-checkpoint-v1';
export const TENSOR_FILES = ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors'] as const;
export type TensorFileName = (typeof TENSOR_FILES)[number];

export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  step: number;
  rng: RngState;
  data: DataPosition;
  samplesSeen: number;
  config: TrainingConfig;
  backend: string;
  precision: string;
  tokenizer: string;
  codec: string;
  /** sha256 of the codec's files (`LatentCodec.sha256`; null for identity; absent in older checkpoints). */
  codecSha256?: string | null;
  /** sha256 of the JSON list of shard URIs this run trains on (a resumed run must match). */
  datasetShardsSha256: string;
  /** Last losses, oldest first; `lossesFromStep` is the step of the first one. */
  losses: number[];
  lossesFromStep: number;
  files: Record<TensorFileName, { sha256: string; bytes: number }>;
}

export interface TensorFileContent {
  /** The tensors, read as the file is written (training/tensor-source.ts; `arraySource` for host arrays). */
  tensors: TensorSource[];
  metadata: Record<string, string>;
}

export interface WrittenCheckpoint {
  uri: string;
  step: number;
  sha256s: Record<TensorFileName | 'state.json', string>;
}

export interface LoadedCheckpoint {
  uri: string;
  state: CheckpointState;
  files: Record<TensorFileName, SafetensorsFile>;
}

/** `step-000000123`. */
export function checkpointDirName(step: number): string {
  return `step-${String(step).padStart(9, '0')}`;
}

export function checkpointsRoot(storage: ArtifactStorage, runUri: string): string {
  return storage.child(runUri, 'checkpoints');
}

export function checkpointUri(storage: ArtifactStorage, runUri: string, step: number): string {
  return storage.child(runUri, 'checkpoints', checkpointDirName(step));
}

/** Write the three tensor files, then state.json (atomic each). */
export async function writeCheckpoint(
  storage: ArtifactStorage,
  runUri: string,
  state: Omit<CheckpointState, 'files'>,
  tensors: Record<TensorFileName, TensorFileContent>,
): Promise<WrittenCheckpoint> {
  const dir = checkpointUri(storage, runUri, state.step);
  const files = {} as CheckpointState['files'];
  for (const name of TENSOR_FILES) {
    const writer = await storage.openAtomicWriter(storage.child(dir, name));
    try {
      await writeSafetensors(writer, tensors[name].tensors, tensors[name].metadata);
      const written = await writer.commit();
      files[name] = { sha256: written.sha256, bytes: written.bytes };
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }
  const full: CheckpointState = { ...state, files };
  const stateWritten = await storage.writeAtomic(
    storage.child(dir, 'state.json'),
    JSON.stringify(full, null, 1) + '\n',
  );
  return {
    uri: dir,
    step: state.step,
    sha256s: {
      'model.safetensors': files['model.safetensors'].sha256,
      'ema.safetensors': files['ema.safetensors'].sha256,
      'optimizer.safetensors': files['optimizer.safetensors'].sha256,
      'state.json': stateWritten.sha256,
    },
  };
}

/** Complete checkpoints (those with a state.json), oldest first. */
export async function listCheckpoints(
  storage: ArtifactStorage,
  runUri: string,
): Promise<{ step: number; uri: string }[]> {
  const root = checkpointsRoot(storage, runUri);
  const out: { step: number; uri: string }[] = [];
  for (const name of await storage.list(root)) {
    const m = /^step-(\d{9})$/.exec(name);
    if (!m) continue;
    const uri = storage.child(root, name);
    if (await storage.exists(storage.child(uri, 'state.json'))) out.push({ step: Number(m[1]), uri });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** Read and verify one checkpoint (hashes of all tensor files). */
export async function loadCheckpoint(storage: ArtifactStorage, uri: string): Promise<LoadedCheckpoint> {
  let state: CheckpointState;
  try {
    state = withRecordedConfig(JSON.parse(await storage.readText(storage.child(uri, 'state.json'))) as CheckpointState);
  } catch (err) {
    throw new CheckpointError(
      `checkpoint ${uri} has no readable state.json (${(err as Error).message})`,
      'remove this checkpoint directory; the run resumes from the previous one.',
    );
  }
  if (state.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      `checkpoint ${uri} has format ${JSON.stringify(state.format)}, expected ${CHECKPOINT_FORMAT}`,
      'resume it with the Kiln version that wrote it, or start a new run id.',
    );
  }
  const files = {} as LoadedCheckpoint['files'];
  for (const name of TENSOR_FILES) {
    const bytes = await storage.read(storage.child(uri, name));
    const actual = sha256Hex(bytes);
    if (actual !== state.files[name].sha256) {
      throw new CheckpointError(
        `checkpoint ${uri}: ${name} has sha256 ${actual} but state.json records ${state.files[name].sha256}`,
        'the file is corrupt: remove this checkpoint directory; the run resumes from the previous one.',
      );
    }
    files[name] = decodeSafetensors(bytes);
  }
  return { uri, state, files };
}

/** The state.json of a checkpoint, unverified (cheap: for results of already-finished chunks). */
export async function readCheckpointState(storage: ArtifactStorage, uri: string): Promise<CheckpointState> {
  return withRecordedConfig(JSON.parse(await storage.readText(storage.child(uri, 'state.json'))) as CheckpointState);
}

interface MetricsFile {
  name: string;
  mode: 'min' | 'max';
  values: Record<string, number>;
}

/** Record a metric (e.g. FID) for a checkpoint step; the best one survives retention. */
export async function recordCheckpointMetric(
  storage: ArtifactStorage,
  runUri: string,
  step: number,
  name: string,
  value: number,
  mode: 'min' | 'max',
): Promise<void> {
  if (!Number.isFinite(value)) throw new RangeError(`metric ${name} for step ${step} is not finite: ${value}`);
  const uri = storage.child(checkpointsRoot(storage, runUri), 'metrics.json');
  const current: MetricsFile = (await storage.exists(uri))
    ? (JSON.parse(await storage.readText(uri)) as MetricsFile)
    : { name, mode, values: {} };
  if (current.name !== name || current.mode !== mode) {
    throw new CheckpointError(
      `run ${runUri} ranks checkpoints by ${current.name} (${current.mode}), not ${name} (${mode})`,
      'use one metric per run for checkpoint retention.',
    );
  }
  current.values[String(step)] = value;
  await storage.writeAtomic(uri, JSON.stringify(current, null, 1) + '\n');
}

/** Step of the best checkpoint by the recorded metric among `steps` (earliest on ties), or null. */
export async function bestCheckpointStep(
  storage: ArtifactStorage,
  runUri: string,
  steps: number[],
): Promise<number | null> {
  const uri = storage.child(checkpointsRoot(storage, runUri), 'metrics.json');
  if (!(await storage.exists(uri))) return null;
  const m = JSON.parse(await storage.readText(uri)) as MetricsFile;
  let best: number | null = null;
  for (const s of [...steps].sort((a, b) => a - b)) {
    const v = m.values[String(s)];
    if (v === undefined) continue;
    const bv = best === null ? undefined : m.values[String(best)]!;
    if (bv === undefined || (m.mode === 'min' ? v < bv : v > bv)) best = s;
  }
  return best;
}

/**
 * Remove checkpoints outside (last `keepLast`) + (best by metric), and interrupted writes older than
 * the newest complete checkpoint. Returns the removed directory URIs.
 */
export async function pruneCheckpoints(storage: ArtifactStorage, runUri: string, keepLast: number): Promise<string[]> {
  const complete = await listCheckpoints(storage, runUri);
  if (complete.length === 0) return [];
  const keep = new Set(complete.slice(-keepLast).map((c) => c.step));
  const best = await bestCheckpointStep(
    storage,
    runUri,
    complete.map((c) => c.step),
  );
  if (best !== null) keep.add(best);
  const newest = complete[complete.length - 1]!.step;
  const root = checkpointsRoot(storage, runUri);
  const removed: string[] = [];
  for (const name of await storage.list(root)) {
    const m = /^step-(\d{9})$/.exec(name);
    if (!m) continue;
    const step = Number(m[1]);
    const isComplete = complete.some((c) => c.step === step);
    if ((isComplete && !keep.has(step)) || (!isComplete && step < newest)) {
      const uri = storage.child(root, name);
      await storage.remove(uri);
      removed.push(uri);
    }
  }
  return removed;
}

/** Older state.json files lack later config fields: read them as the values those runs trained with. */
function withRecordedConfig(state: CheckpointState): CheckpointState {
  return { ...state, config: recordedTrainingConfig(state.config) };
}
