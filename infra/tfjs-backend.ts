/**
 * TensorFlow.js backend choice, made once per process at start and recorded in lineage.
 *
 * Order (when not forced): `tensorflow` (native TF via @tensorflow/tfjs-node-gpu, then
 * @tensorflow/tfjs-node, when either can be imported), else `wasm` (XNNPACK, loaded from
 * node_modules on disk, never fetched), else `cpu` (pure JS). `KILN_TF_BACKEND` or the `prefer`
 * option forces one (`tensorflow` | `wasm` | `cpu` | `auto`); a forced backend that cannot start is a
 * `ConfigError`, never a silent fallback.
 *
 * The native packages are built by `scripts/setup-tf-native.sh` against the libtensorflow inside PyPI's
 * TensorFlow wheel (tensorflow-cpu, or tensorflow with CUDA on GPU machines); that script writes
 * `kiln-native.json` into the package (wheel, sha256, variant), which the choice carries as `build`.
 * TensorFlow's C++ INFO logs are silenced (`TF_CPP_MIN_LOG_LEVEL=1` unless set).
 *
 * Threads per op (`opThreads`): native TensorFlow fixes its intra-op pool when it loads. The caller
 * may pass a hint (training/op-threads.ts derives one from the model's size); `KILN_TF_THREADS` (a
 * positive integer) overrides the hint, and TensorFlow's own `TF_NUM_INTRAOP_THREADS` overrides both.
 * Once loaded, later hints cannot change it: the choice says what is in effect and where it came from.
 *
 * Precision: TensorFlow.js has no bfloat16 dtype on any backend, so training runs in fp32 and says
 * so (`precision`, `precisionNote`), as the recipe asks ("bf16 where the backend has it, fp32
 * otherwise").
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { ConfigError } from './errors.js';

export type TfBackendName = 'tensorflow' | 'wasm' | 'cpu';
export type TfBackendPreference = TfBackendName | 'auto';

export interface TfBackendChoice {
  /** The active tfjs backend (what to record in lineage). */
  name: TfBackendName;
  /** npm package that provided it (`@tensorflow/tfjs-node-gpu`, `@tensorflow/tfjs-backend-wasm`...). */
  provider: string;
  /** Floating-point format training runs in on this backend. */
  precision: 'fp32' | 'bf16';
  precisionNote: string;
  /** Backends tried before this one, with why each was not used. */
  skipped: { name: TfBackendName; reason: string }[];
  /** For `tensorflow`: how setup built the binding (`kiln-native.json`), when it says. */
  build?: TfNativeBuild;
  /** For `tensorflow`: the intra-op threads each op may use, and why. */
  opThreads?: TfOpThreads;
}

/** Native TensorFlow's intra-op thread count in effect, and where it came from. */
export interface TfOpThreads {
  /** Threads per op; `null` = TensorFlow's default (one per core). */
  threads: number | null;
  source: 'TF_NUM_INTRAOP_THREADS' | 'KILN_TF_THREADS' | 'hint' | 'default';
  reason: string;
}

/** What `scripts/setup-tf-native.sh` records next to the binding it built. */
export interface TfNativeBuild {
  package: string;
  version: string;
  variant: 'cpu' | 'gpu';
  wheel: string;
  wheelSha256: string;
}

export interface SelectTfBackendOptions {
  /** Force a backend; default `KILN_TF_BACKEND` from `env`, else `auto`. */
  prefer?: TfBackendPreference;
  env?: NodeJS.ProcessEnv;
  /** Threads per op the work wants (training/op-threads.ts); used only when native TensorFlow loads. */
  opThreads?: { threads: number | null; reason: string };
}

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;
const PREFERENCES: readonly TfBackendPreference[] = ['auto', 'tensorflow', 'wasm', 'cpu'];
const FP32_NOTE = 'TensorFlow.js has no bfloat16 dtype on any backend; training runs in fp32 (never fp16).';

let current: { preference: TfBackendPreference; choice: TfBackendChoice } | undefined;
/** Set when native TensorFlow loaded in this process: its thread pool is fixed from then on. */
let loadedOpThreads: TfOpThreads | undefined;

/**
 * Apply the thread choice before native TensorFlow loads (it reads `TF_NUM_INTRAOP_THREADS` when it
 * creates its context), and say what will be in effect.
 */
export function applyOpThreads(opts: SelectTfBackendOptions = {}, env: NodeJS.ProcessEnv = process.env): TfOpThreads {
  const given = env.TF_NUM_INTRAOP_THREADS;
  if (given !== undefined && given !== '') {
    const n = Number(given);
    return {
      threads: Number.isInteger(n) && n > 0 ? n : null,
      source: 'TF_NUM_INTRAOP_THREADS',
      reason: `TF_NUM_INTRAOP_THREADS=${given} in the environment`,
    };
  }
  const raw = (opts.env ?? env).KILN_TF_THREADS?.trim();
  if (raw !== undefined && raw !== '' && raw !== 'auto') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) {
      throw new ConfigError(
        `KILN_TF_THREADS=${JSON.stringify(raw)} is not a thread count`,
        'set KILN_TF_THREADS to a positive integer (threads per TensorFlow op), or to auto / unset it to let Kiln choose from the model size.',
      );
    }
    env.TF_NUM_INTRAOP_THREADS = String(n);
    return { threads: n, source: 'KILN_TF_THREADS', reason: `KILN_TF_THREADS=${n}` };
  }
  const hint = opts.opThreads;
  if (hint?.threads) {
    env.TF_NUM_INTRAOP_THREADS = String(hint.threads);
    return { threads: hint.threads, source: 'hint', reason: hint.reason };
  }
  return { threads: null, source: 'default', reason: hint?.reason ?? 'no hint: one thread per core' };
}

/** Read and validate the preference from options or `KILN_TF_BACKEND`. */
export function tfBackendPreference(opts: SelectTfBackendOptions = {}): TfBackendPreference {
  const raw = opts.prefer ?? (opts.env ?? process.env).KILN_TF_BACKEND ?? 'auto';
  const value = raw.trim().toLowerCase() as TfBackendPreference;
  if (!PREFERENCES.includes(value)) {
    throw new ConfigError(
      `KILN_TF_BACKEND=${JSON.stringify(raw)} is not a TensorFlow.js backend Kiln knows`,
      `set KILN_TF_BACKEND to one of ${PREFERENCES.join(', ')} (or unset it for auto).`,
    );
  }
  return value;
}

/**
 * Choose, initialise and activate the TensorFlow.js backend; returns what was chosen. Idempotent:
 * a second call with the same preference returns the first choice without touching the engine.
 */
export async function selectTfBackend(opts: SelectTfBackendOptions = {}): Promise<TfBackendChoice> {
  const preference = tfBackendPreference(opts);
  if (current && current.preference === preference && tf.getBackend() === current.choice.name) return current.choice;
  const skipped: TfBackendChoice['skipped'] = [];
  const order: TfBackendName[] = preference === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [preference];
  for (const name of order) {
    const threads = name === 'tensorflow' ? (loadedOpThreads ?? applyOpThreads(opts)) : undefined;
    const started = await tryStart(name);
    if ('provider' in started) {
      const build = name === 'tensorflow' ? nativeBuild(started.provider) : undefined;
      if (threads) loadedOpThreads = threads;
      const choice: TfBackendChoice = {
        name,
        provider: started.provider,
        precision: 'fp32',
        precisionNote: FP32_NOTE,
        skipped,
        ...(build ? { build } : {}),
        ...(threads ? { opThreads: threads } : {}),
      };
      current = { preference, choice };
      return choice;
    }
    skipped.push({ name, reason: started.reason });
  }
  const why = skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
  throw new ConfigError(
    `TensorFlow.js backend ${JSON.stringify(preference)} could not start (${why})`,
    preference === 'tensorflow'
      ? "run `bash scripts/setup-tf-native.sh` (it builds @tensorflow/tfjs-node against PyPI's TensorFlow " +
          'wheel and says why when it cannot), or set KILN_TF_BACKEND=wasm (or auto).'
      : 'set KILN_TF_BACKEND=auto, or reinstall @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm.',
  );
}

/** The backend chosen by `selectTfBackend` in this process, if any. */
export function currentTfBackend(): TfBackendChoice | undefined {
  return current?.choice;
}

async function tryStart(name: TfBackendName): Promise<{ provider: string } | { reason: string }> {
  if (name === 'tensorflow') {
    const reasons: string[] = [];
    process.env.TF_CPP_MIN_LOG_LEVEL ??= '1';
    for (const pkg of NATIVE_PACKAGES) {
      try {
        await import(pkg);
        if (await activate('tensorflow')) return { provider: pkg };
        reasons.push(`${pkg} imported but did not register the "tensorflow" backend`);
      } catch (err) {
        reasons.push(`${pkg} not importable (${firstLine(err)})`);
      }
    }
    return { reason: reasons.join('; ') };
  }
  if (name === 'wasm') {
    try {
      // After the first initialisation tfjs refuses new paths; the binaries are already loaded then.
      if (tf.findBackend('wasm') === null) setWasmPaths(wasmDistDir());
      if (await activate('wasm')) return { provider: '@tensorflow/tfjs-backend-wasm' };
      return { reason: 'the wasm backend did not initialise' };
    } catch (err) {
      return { reason: firstLine(err) };
    }
  }
  return (await activate('cpu'))
    ? { provider: '@tensorflow/tfjs-backend-cpu' }
    : { reason: 'the cpu backend did not initialise' };
}

async function activate(name: TfBackendName): Promise<boolean> {
  if (tf.findBackendFactory(name) === null && tf.findBackend(name) === null) return false;
  try {
    const ok = await tf.setBackend(name);
    await tf.ready();
    return ok && tf.getBackend() === name;
  } catch {
    return false;
  }
}

function nativeBuild(pkg: string): TfNativeBuild | undefined {
  try {
    const require = createRequire(import.meta.url);
    const file = join(dirname(require.resolve(`${pkg}/package.json`)), 'kiln-native.json');
    return JSON.parse(readFileSync(file, 'utf8')) as TfNativeBuild;
  } catch {
    return undefined;
  }
}

/** Directory (with trailing separator) holding the tfjs wasm binaries, so they load from disk. */
export function wasmDistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + sep;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}
