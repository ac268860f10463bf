/**
 * Memory estimate for a training config, checked before any tensor is allocated so an oversized
 * config fails at once with a clear error instead of an out-of-memory crash minutes later.
 *
 * Parameters: weights, gradient, accumulated gradient, two Adam moments, EMA, and ~2 update
 * temporaries = 8 floats per parameter (7 without EMA). Activations: the tensors a backward pass
 * keeps per micro-batch (projections, attention scores/probabilities, MLP hidden, norms), x2 for
 * backward temporaries. Coarse by design (within ~2x); its job is to reject the clearly impossible.
 *
 * Where: on native TensorFlow's GPU build with a GPU present (nvidia-smi lists one), the estimate is
 * checked against that GPU's memory (90% of GPU 0's, where TensorFlow places the ops), and host RAM
 * must still hold a checkpoint's host copies (model, EMA, two Adam moments: 4 floats per
 * parameter). Otherwise everything lives in host RAM: 60% of it (4 GiB cap on wasm).
 */
import { execFileSync } from 'node:child_process';
import { totalmem } from 'node:os';
import type { TrainingConfig } from './config.js';
import { denoiserParamCount, type DenoiserShape } from './denoiser.js';
import { ModelTooLargeError } from './errors.js';
import { textEncoderParamCount, type TextEncoderShape } from './text-encoder.js';

export interface MemoryEstimate {
  parameters: number;
  parameterStateBytes: number;
  activationBytes: number;
  totalBytes: number;
  limitBytes: number;
  /** Where the estimate was checked: `host RAM` or `GPU 0 (<name>)`. */
  device: string;
  /** With a GPU: host RAM needed for a checkpoint's host copies, and its limit. */
  hostBytes: number;
  hostLimitBytes: number;
}

export interface GpuMemory {
  index: number;
  name: string;
  totalBytes: number;
}

/** Where a session trains: the backend's name, and the GPU when the native GPU build runs on one. */
export interface TrainingDevice {
  backend: string;
  gpu: GpuMemory | null;
}

/** GPUs as nvidia-smi reports them; empty without nvidia-smi or a GPU. */
export function queryGpus(): GpuMemory[] {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [index, name, mib] = line.split(',').map((v) => v.trim());
        return { index: Number(index), name: name ?? 'GPU', totalBytes: Number(mib) * 1024 ** 2 };
      })
      .filter((g) => Number.isFinite(g.totalBytes) && g.totalBytes > 0);
  } catch {
    return [];
  }
}

/** The device a backend trains on: GPU 0 when the native backend is the GPU build and a GPU is present. */
export function trainingDevice(
  backend: { name: string; build?: { variant: 'cpu' | 'gpu' } },
  gpus: () => GpuMemory[] = queryGpus,
): TrainingDevice {
  const onGpu = backend.name === 'tensorflow' && backend.build?.variant === 'gpu';
  return { backend: backend.name, gpu: onGpu ? (gpus()[0] ?? null) : null };
}

const FLOAT = 4;
/** The tfjs wasm build's linear memory is capped at 4 GiB (wasm32). */
const WASM_MEMORY_CAP = 4 * 1024 ** 3;

export function estimateTrainingMemory(
  cfg: TrainingConfig,
  text: TextEncoderShape,
  den: DenoiserShape,
  device: TrainingDevice,
): MemoryEstimate {
  const parameters = textEncoderParamCount(text) + denoiserParamCount(den);
  const parameterStateBytes = parameters * FLOAT * (cfg.optim.ema.enabled ? 8 : 7);
  const B = cfg.optim.microBatchSize;
  const L = text.maxTokens;
  const Dt = text.width;
  const textAct = text.depth * B * (L * Dt * (12 + 3 * text.mlpRatio) + 3 * text.heads * L * L);
  const N = (den.size / den.patchSize) ** 2;
  const D = den.width;
  const blockAct = B * (N * D * (22 + 3 * den.mlpRatio) + 3 * den.heads * N * N + 3 * den.heads * N * L + 2 * L * D);
  const inputAct = B * den.size * den.size * den.channels * 12;
  const activationBytes = 2 * FLOAT * (textAct + den.depth * blockAct + inputAct);
  const totalBytes = parameterStateBytes + activationBytes;
  const host = hostLimit(cfg, device.backend);
  if (device.gpu) {
    const limitBytes = cfg.runtime.memoryLimitBytes ?? Math.floor(device.gpu.totalBytes * 0.9);
    return {
      parameters,
      parameterStateBytes,
      activationBytes,
      totalBytes,
      limitBytes,
      device: `GPU ${device.gpu.index} (${device.gpu.name})`,
      hostBytes: parameters * FLOAT * 4,
      hostLimitBytes: Math.floor(totalmem() * 0.6),
    };
  }
  return {
    parameters,
    parameterStateBytes,
    activationBytes,
    totalBytes,
    limitBytes: host,
    device: 'host RAM',
    hostBytes: totalBytes,
    hostLimitBytes: host,
  };
}

function hostLimit(cfg: TrainingConfig, backend: string): number {
  if (cfg.runtime.memoryLimitBytes !== null) return cfg.runtime.memoryLimitBytes;
  const host = Math.floor(totalmem() * 0.6);
  return backend === 'wasm' ? Math.min(host, WASM_MEMORY_CAP) : host;
}

/** Throw `ModelTooLargeError` when the estimate exceeds the limit; returns the estimate otherwise. */
export function assertFitsInMemory(
  cfg: TrainingConfig,
  text: TextEncoderShape,
  den: DenoiserShape,
  device: TrainingDevice,
): MemoryEstimate {
  const e = estimateTrainingMemory(cfg, text, den, device);
  const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
  if (e.totalBytes > e.limitBytes) {
    throw new ModelTooLargeError(
      `training config needs about ${gib(e.totalBytes)} (${(e.parameters / 1e6).toFixed(1)}M parameters: ` +
        `${gib(e.parameterStateBytes)} with optimizer state; activations ${gib(e.activationBytes)} per ` +
        `micro-batch of ${cfg.optim.microBatchSize}) but the limit on backend ${device.backend} ` +
        `(${e.device}) is ${gib(e.limitBytes)}`,
    );
  }
  if (e.hostBytes > e.hostLimitBytes) {
    throw new ModelTooLargeError(
      `training on ${e.device} fits, but a checkpoint's host copies need about ${gib(e.hostBytes)} ` +
        `(${(e.parameters / 1e6).toFixed(1)}M parameters x 4 floats) ` +
        `and host RAM allows ${gib(e.hostLimitBytes)}`,
    );
  }
  return e;
}
