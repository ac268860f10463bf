/**
 * Memory estimate for a training config, checked before any tensor is allocated so an oversized
 * config fails at once with a clear error instead of an out-of-memory crash minutes later.
 *
 * Parameters: weights, gradient, accumulated gradient, two Adam moments, EMA, and ~2 update
 * temporaries = 8 floats per parameter (7 without EMA). Activations: the tensors a backward pass
 * keeps per micro-batch (projections, attention scores/probabilities, MLP hidden, norms), x2 for
 * backward temporaries. Coarse by design (within ~2x); its job is to reject the clearly impossible.
 */
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
}

const FLOAT = 4;
/** The tfjs wasm build's linear memory is capped at 4 GiB (wasm32). */
const WASM_MEMORY_CAP = 4 * 1024 ** 3;

export function estimateTrainingMemory(cfg: TrainingConfig, text: TextEncoderShape, den: DenoiserShape, backend: string): MemoryEstimate {
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
  return { parameters, parameterStateBytes, activationBytes, totalBytes, limitBytes: memoryLimit(cfg, backend) };
}

function memoryLimit(cfg: TrainingConfig, backend: string): number {
  if (cfg.runtime.memoryLimitBytes !== null) return cfg.runtime.memoryLimitBytes;
  const host = Math.floor(totalmem() * 0.6);
  return backend === 'wasm' ? Math.min(host, WASM_MEMORY_CAP) : host;
}

/** Throw `ModelTooLargeError` when the estimate exceeds the limit; returns the estimate otherwise. */
export function assertFitsInMemory(cfg: TrainingConfig, text: TextEncoderShape, den: DenoiserShape, backend: string): MemoryEstimate {
  const e = estimateTrainingMemory(cfg, text, den, backend);
  if (e.totalBytes > e.limitBytes) {
    const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
    throw new ModelTooLargeError(`training config needs about ${gib(e.totalBytes)} (${(e.parameters / 1e6).toFixed(1)}M parameters: ${gib(e.parameterStateBytes)} with optimizer state; activations ${gib(e.activationBytes)} per micro-batch of ${cfg.optim.microBatchSize}) but the limit on backend ${backend} is ${gib(e.limitBytes)}`);
  }
  return e;
}
