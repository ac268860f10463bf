/**
 * transformers.js setup shared by the filter models: local files only, no caches written, the
 * execution provider chosen by infra/onnx-runtime.ts, and the session options derived from options.
 */
import { env } from '@huggingface/transformers';
import type { InferenceSession } from 'onnxruntime-node';
import { chooseOnnxDevice, type OnnxDeviceChoice, type OnnxDeviceRequest } from '../../infra/onnx-runtime.js';
import { ConfigError } from '../../infra/errors.js';
import type { ImageProcessorConfig } from './preprocess.js';
import { defaultPreprocessThreads, PreprocessPool } from './preprocess-pool.js';

/** Options every filter model loader accepts. */
export interface ModelRuntimeOptions {
  /** `auto` (default: CUDA when usable, else CPU), `cpu` or `cuda`; else env KILN_ONNX_DEVICE. */
  device?: OnnxDeviceRequest;
  /** ONNX Runtime intra-op threads (default: ORT's own choice, one per physical core). */
  threads?: number;
  /** Let ORT's threads busy-wait between ops (ORT's default; faster only on dedicated cores). Default false. */
  spinWait?: boolean;
  /** Worker threads decoding + preprocessing images while ORT runs (default: 0 on 1-2 cores, else cores/4, 1-4; 0: none). */
  preprocessThreads?: number;
}

let configured = false;

/** Point transformers.js at local files only (idempotent). Nothing is ever fetched or cached. */
export function useLocalModelsOnly(): void {
  if (configured) return;
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.useBrowserCache = false;
  configured = true;
}

/** Device choice plus the from_pretrained options that go with it. */
export interface ResolvedRuntime {
  choice: OnnxDeviceChoice;
  pretrained: {
    device: 'cpu' | 'cuda';
    dtype: 'fp32';
    local_files_only: true;
    session_options: InferenceSession.SessionOptions;
  };
}

/** Choose the device and build transformers.js `from_pretrained` options. */
export async function resolveRuntime(opts: ModelRuntimeOptions): Promise<ResolvedRuntime> {
  useLocalModelsOnly();
  const choice = await chooseOnnxDevice({ device: opts.device });
  const session_options: InferenceSession.SessionOptions = {};
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) {
      throw new ConfigError(
        `threads is ${opts.threads}; it must be a positive integer`,
        "pass threads >= 1, or leave it unset for ONNX Runtime's default.",
      );
    }
    session_options.intraOpNumThreads = opts.threads;
    session_options.interOpNumThreads = 1;
  }
  // ORT's intra-op threads busy-wait between ops by default. With small ops and a worker that shares
  // its cores (sharp decoding, other activities) spinning costs 3-5x in measured decode-step time, so
  // Kiln turns it off unless asked.
  if (!opts.spinWait)
    session_options.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
  return { choice, pretrained: { device: choice.device, dtype: 'fp32', local_files_only: true, session_options } };
}

/** The preprocessing pool of a model (worker count validated). */
export function preprocessPool(
  config: ImageProcessorConfig,
  source: string,
  opts: ModelRuntimeOptions,
): PreprocessPool {
  const threads = opts.preprocessThreads ?? defaultPreprocessThreads();
  if (!Number.isInteger(threads) || threads < 0) {
    throw new ConfigError(
      `preprocessThreads is ${threads}; it must be an integer >= 0`,
      'pass 0 (preprocess on the calling thread) or a small positive count, or leave it unset.',
    );
  }
  return new PreprocessPool(config, source, threads);
}

/** Validate a positive integer option (batch sizes, token counts). */
export function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new ConfigError(`${name} is ${value}; it must be a positive integer`, `pass ${name} >= 1.`);
  }
  return value;
}
