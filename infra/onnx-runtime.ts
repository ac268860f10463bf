/**
 * ONNX Runtime execution-provider choice for model stages (CLIP scoring, captioning).
 *
 * CUDA when onnxruntime-node offers it and a session can actually be created on it, CPU otherwise.
 * Overridable with an option or the `KILN_ONNX_DEVICE` env var (`auto` | `cpu` | `cuda`); an explicit
 * `cuda` that cannot work is an error, never a silent CPU fallback. The returned choice is recorded in
 * lineage.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ConfigError } from './errors.js';

/** Execution providers Kiln selects between. */
export type OnnxDevice = 'cpu' | 'cuda';
/** What a user may ask for. */
export type OnnxDeviceRequest = OnnxDevice | 'auto';

/** The chosen provider and why, for logs and lineage. */
export interface OnnxDeviceChoice {
  device: OnnxDevice;
  requested: OnnxDeviceRequest;
  /** Human-readable reason (e.g. why CUDA was not used). */
  reason: string;
  /** Backends onnxruntime-node lists, e.g. ["cpu", "webgpu", "cuda(not bundled)"]. */
  backends: string[];
  /** onnxruntime-node version string. */
  ortVersion: string;
}

export const ONNX_DEVICE_ENV = 'KILN_ONNX_DEVICE';

/** A minimal ONNX graph (Identity, float[1], opset 13) used to prove a provider can run a session. */
const PROBE_MODEL = Buffer.from(
  'CAgSBGtpbG46QAoQCgF4EgF5IghJZGVudGl0eRIKa2lsbl9wcm9iZVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0=',
  'base64',
);

const require = createRequire(import.meta.url);

/** Directory holding onnxruntime-node's native binding (where provider libraries must live). */
export function onnxBindingDir(): string {
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

interface CudaProbe {
  ok: boolean;
  reason: string;
}
let cudaProbe: Promise<CudaProbe> | undefined;

/** Whether a CUDA session can be created (memoised per process). */
export function probeCuda(): Promise<CudaProbe> {
  cudaProbe ??= (async (): Promise<CudaProbe> => {
    const listed = ort.listSupportedBackends().find((b) => b.name === 'cuda');
    if (!listed)
      return {
        ok: false,
        reason: `onnxruntime-node ${ortVersion()} on ${process.platform}/${process.arch} lists no CUDA backend`,
      };
    const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
    if (!listed.bundled && !existsSync(join(onnxBindingDir(), lib))) {
      return {
        ok: false,
        reason:
          `the CUDA provider library ${lib} is not installed next to the onnxruntime-node binding ` +
          `(${onnxBindingDir()}); npm installs it only when ONNXRUNTIME_NODE_INSTALL is not "skip" ` +
          `(install flag --onnxruntime-node-install=cuda12)`,
      };
    }
    try {
      const session = await ort.InferenceSession.create(PROBE_MODEL, { executionProviders: ['cuda'] });
      await session.release();
      return { ok: true, reason: 'CUDA execution provider created a session' };
    } catch (err) {
      return { ok: false, reason: `creating a CUDA session failed: ${(err as Error).message.split('\n')[0] ?? ''}` };
    }
  })();
  return cudaProbe;
}

function ortVersion(): string {
  return ort.env.versions.node ?? ort.env.versions.common ?? 'unknown';
}

/** Parse a device request from an option or `KILN_ONNX_DEVICE`; unknown values are a ConfigError. */
export function parseOnnxDeviceRequest(value: string | undefined, source: string): OnnxDeviceRequest {
  const v = (value ?? 'auto').trim().toLowerCase();
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'cpu' || v === 'cuda') return v;
  throw new ConfigError(
    `${source} is "${value}", which is not an ONNX Runtime device Kiln supports`,
    `set ${source} to "auto" (CUDA when available, else CPU), "cpu" or "cuda".`,
  );
}

/**
 * Choose the execution provider: `opts.device` wins over `KILN_ONNX_DEVICE`, which wins over `auto`.
 * `auto` picks CUDA only when a probe session succeeds; an explicit `cuda` that fails throws ConfigError.
 */
export async function chooseOnnxDevice(
  opts: { device?: OnnxDeviceRequest | undefined; env?: NodeJS.ProcessEnv } = {},
): Promise<OnnxDeviceChoice> {
  const env = opts.env ?? process.env;
  const requested =
    opts.device !== undefined
      ? parseOnnxDeviceRequest(opts.device, 'the device option')
      : parseOnnxDeviceRequest(env[ONNX_DEVICE_ENV], ONNX_DEVICE_ENV);
  const backends = ort.listSupportedBackends().map((b) => (b.bundled ? b.name : `${b.name}(not bundled)`));
  const base = { requested, backends, ortVersion: ortVersion() };
  if (requested === 'cpu') return { ...base, device: 'cpu', reason: 'CPU requested' };
  const cuda = await probeCuda();
  if (cuda.ok) return { ...base, device: 'cuda', reason: cuda.reason };
  if (requested === 'cuda') {
    throw new ConfigError(
      `CUDA was requested for ONNX Runtime but is not usable: ${cuda.reason}`,
      `install the CUDA provider for onnxruntime-node (reinstall it without ONNXRUNTIME_NODE_INSTALL=skip ` +
        `on a machine with CUDA 12 and cuDNN 9), or set ${ONNX_DEVICE_ENV}=cpu / auto.`,
    );
  }
  return { ...base, device: 'cpu', reason: `CUDA not used: ${cuda.reason}` };
}
