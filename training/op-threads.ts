/**
 * How many threads native TensorFlow splits each op across, chosen from the size of the work.
 *
 * TensorFlow (and oneDNN inside it) hands every op's work to its intra-op thread pool. For the small
 * tensors of a small model that hand-off costs more than the op: on this 2-core machine the tiny
 * config's step took ~80 ms with TensorFlow's default (one thread per core) and ~53 ms with one
 * thread (BatchMatMulV2 on [4, 64, 64] x [64, 64]: ~200 against ~65 us), while the 10.6M config's
 * large matmuls gain from the second core. PyTorch draws the same line per op (its grain size);
 * TensorFlow's pool size is fixed per process, so Kiln draws it per training config, from the
 * elements in one activation of a micro-batch (micro-batch x tokens x width, denoiser or text
 * encoder, whichever is larger): below `SMALL_OP_ELEMENTS` one thread, else TensorFlow's default.
 *
 * The choice takes effect when native TensorFlow loads (infra/tfjs-backend.ts): the first training
 * config a process selects the backend for decides it. `KILN_TF_THREADS` (a positive integer) or
 * TensorFlow's own `TF_NUM_INTRAOP_THREADS` override it; lineage records what ran and why.
 */
import type { SelectTfBackendOptions } from '../infra/tfjs-backend.js';
import type { TrainingConfig } from './config.js';

/** Activations smaller than this (elements) train faster on one thread (measured: tiny 16K, 10.6M config 524K). */
export const SMALL_OP_ELEMENTS = 1 << 17;

/** Spatial downsampling of the latent codec: 1 in pixel space; 8 for the SD-style VAEs presets target. */
const VAE_FACTOR = 8;

export interface OpThreadsHint {
  /** Threads per op, or null for TensorFlow's default (one per core). */
  threads: number | null;
  reason: string;
}

/** The thread count for a training config's ops (see the module note). */
export function opThreadsFor(cfg: TrainingConfig): OpThreadsHint {
  const factor = cfg.codec === 'identity' ? 1 : VAE_FACTOR;
  const side = Math.max(1, Math.floor(cfg.resolution / factor / cfg.denoiser.patchSize));
  const B = cfg.optim.microBatchSize;
  const elements = Math.max(
    B * side * side * cfg.denoiser.width,
    B * cfg.textEncoder.maxTokens * cfg.textEncoder.width,
  );
  return elements < SMALL_OP_ELEMENTS
    ? {
        threads: 1,
        reason: `activations of ${elements} elements (< ${SMALL_OP_ELEMENTS}): one thread per op costs less than splitting`,
      }
    : { threads: null, reason: `activations of ${elements} elements (>= ${SMALL_OP_ELEMENTS}): one thread per core` };
}

/** What `selectTfBackend` gets for a training config: its forced backend (unless auto) and its thread choice. */
export function backendOptionsFor(cfg: TrainingConfig): SelectTfBackendOptions {
  return { ...(cfg.runtime.backend === 'auto' ? {} : { prefer: cfg.runtime.backend }), opThreads: opThreadsFor(cfg) };
}
