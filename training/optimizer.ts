/**
 * AdamW with one learning rate per parameter group (denoiser, text encoder), global-norm gradient
 * clipping, and an EMA of the weights. The update is PyTorch's `torch.optim.AdamW` step (decoupled
 * weight decay p *= 1 - lr*wd, bias-corrected moments, eps added after the square root); the EMA is
 * diffusers' `EMAModel` (decay 0 on the first update, then min(decay, (1+k)/(10+k)) with warmup).
 * State lives in one flat vector per parameter group (as torch's `foreach` / fused AdamW batch it),
 * so a step is a few large ops, not a dozen small ones per parameter; checkpoints still hold one
 * tensor per parameter under torch's names.
 */
import * as tf from '@tensorflow/tfjs';
import type { Param, ParamGroup, ParamStore } from './params.js';
import type { NamedArray, SafetensorsFile, TensorSource } from './safetensors.js';
import { byName, deviceSource } from './tensor-source.js';
import { entryToFloat32 } from './safetensors.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

const GROUPS: readonly ParamGroup[] = ['denoiser', 'text'];

/** One flat vector per parameter group, parameters concatenated in store order. */
export type FlatByGroup = Map<ParamGroup, tf.Tensor1D>;

/**
 * Per-parameter gradients (by name) as one flat vector per group, in the store's order: the
 * optimiser, clipping, accumulation and EMA then issue a handful of large ops per step instead of
 * several small ones per parameter (each op costs tens of microseconds of dispatch on any backend).
 */
export function flattenByGroup(store: ParamStore, values: (p: Param) => tf.Tensor): FlatByGroup {
  const out: FlatByGroup = new Map();
  for (const group of GROUPS) {
    const ps = store.list(group);
    if (ps.length > 0)
      out.set(
        group,
        tf.tidy(() => tf.concat(ps.map((p) => flat1d(values(p)))) as tf.Tensor1D),
      );
  }
  return out;
}

/** Gradients by parameter name, flattened per group (a missing gradient is an error). */
export function flattenGrads(store: ParamStore, grads: Map<string, tf.Tensor>): FlatByGroup {
  return flattenByGroup(store, (p) => {
    const g = grads.get(p.name);
    if (!g) throw new Error(`no gradient for parameter ${p.name}`);
    return g;
  });
}

/** Global L2 norm of flat gradients, and torch's clipping coefficient (1 when not clipping). */
export function globalNormClip(flat: FlatByGroup, maxNorm: number | null): { norm: number; coef: number } {
  const norm = Math.sqrt(tf.tidy(() => tf.addN([...flat.values()].map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  if (maxNorm === null || !Number.isFinite(norm)) return { norm, coef: 1 };
  return { norm, coef: Math.min(1, maxNorm / (norm + 1e-6)) };
}

/** Global L2 norm of all gradients, and the gradients scaled so it is at most `maxNorm` (torch's rule). */
export function clipByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number | null,
): { norm: number; grads: Map<string, tf.Tensor> } {
  const norm = Math.sqrt(tf.tidy(() => tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  if (maxNorm === null || !Number.isFinite(norm)) return { norm, grads };
  const coef = maxNorm / (norm + 1e-6);
  if (coef >= 1) return { norm, grads };
  const scaled = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) scaled.set(name, tf.mul(g, coef));
  return { norm, grads: scaled };
}

/** Write a group's flat vector back into its parameters (one split, one reshape each). */
function scatterToParams(ps: Param[], flat: tf.Tensor1D): void {
  tf.tidy(() => {
    const parts = tf.split(
      flat,
      ps.map((p) => sizeOf(p.shape)),
    );
    ps.forEach((p, i) => p.variable.assign(p.shape.length === 1 ? parts[i]! : parts[i]!.reshape(p.shape)));
  });
}

/** A tensor as a vector (no op when it is one already: every op costs dispatch time). */
function flat1d(t: tf.Tensor): tf.Tensor {
  return t.rank === 1 ? t : t.reshape([-1]);
}

/** Named arrays (sorted by name) cut out of per-group flat vectors. */
async function namedFromFlat(
  store: ParamStore,
  flat: Map<ParamGroup, tf.Variable>,
  prefix: string,
): Promise<NamedArray[]> {
  const out: NamedArray[] = [];
  for (const [group, t] of flat) {
    const data = (await t.data()) as Float32Array;
    let offset = 0;
    for (const p of store.list(group)) {
      const n = sizeOf(p.shape);
      // Views into the one host copy (a checkpoint holds model, EMA and both moments at once: no second copy).
      out.push({ name: `${prefix}${p.name}`, shape: p.shape, data: data.subarray(offset, offset + n) });
      offset += n;
    }
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Per-parameter sources over per-group flat vectors (the store's order within each group). */
function sourcesFromFlat(store: ParamStore, flat: Map<ParamGroup, tf.Variable>, prefix: string): TensorSource[] {
  const out: TensorSource[] = [];
  for (const [group, t] of flat) {
    let offset = 0;
    for (const p of store.list(group)) {
      out.push(deviceSource(`${prefix}${p.name}`, p.shape, t, offset));
      offset += sizeOf(p.shape);
    }
  }
  return out;
}

/** Fill per-group flat variables from a checkpoint file's per-parameter entries. */
function loadFlat(
  store: ParamStore,
  flat: Map<ParamGroup, tf.Variable>,
  file: SafetensorsFile,
  prefix: string,
  fileName: string,
): void {
  for (const [group, t] of flat) {
    const data = new Float32Array(t.size);
    let offset = 0;
    for (const p of store.list(group)) {
      const entry = file.tensors.get(`${prefix}${p.name}`);
      if (!entry) throw new Error(`${fileName} lacks ${prefix}${p.name}`);
      const values = entryToFloat32(entry);
      if (values.length !== sizeOf(p.shape))
        throw new Error(
          `${fileName}: ${prefix}${p.name} has ${values.length} values, the parameter ${sizeOf(p.shape)}`,
        );
      data.set(values, offset);
      offset += values.length;
    }
    t.assign(tf.tensor1d(data, 'float32'));
  }
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/**
 * AdamW over flat per-group vectors: the moments are one vector per group (saved per parameter as
 * torch names them), and an update is the same element-wise formula as before, issued once per group.
 */
export class AdamW {
  /** Number of updates applied so far (torch's `state['step']`). */
  step = 0;
  private readonly m = new Map<ParamGroup, tf.Variable>();
  private readonly v = new Map<ParamGroup, tf.Variable>();
  /** The parameters as flat vectors, kept in step with them by `applyFlat` (rebuilt when the store was assigned to). */
  private flatParams: { version: number; flat: Map<ParamGroup, tf.Variable> } | null = null;

  constructor(
    private readonly store: ParamStore,
    private readonly o: AdamWOptions,
  ) {
    for (const group of GROUPS) {
      const n = store.count(group);
      if (store.list(group).length === 0) continue;
      this.m.set(group, tf.variable(tf.zeros([n]), false));
      this.v.set(group, tf.variable(tf.zeros([n]), false));
    }
  }

  /** One update with `grads` (by parameter name) and a learning rate per group. */
  apply(grads: Map<string, tf.Tensor>, lr: Record<ParamGroup, number>): void {
    const flat = flattenGrads(this.store, grads);
    try {
      for (const t of this.applyFlat(flat, lr).values()) t.dispose();
    } finally {
      for (const t of flat.values()) t.dispose();
    }
  }

  /**
   * One update with flat per-group gradients, each multiplied by `gradScale` first (the clipping
   * coefficient). Returns the new flat parameters per group (the caller disposes them), which the
   * EMA can use without flattening the parameters again.
   */
  applyFlat(grads: FlatByGroup, lr: Record<ParamGroup, number>, gradScale = 1): FlatByGroup {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.o;
    const bc1 = 1 - beta1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    const out: FlatByGroup = new Map();
    const flatParams = this.currentFlatParams();
    for (const [group, m] of this.m) {
      const g0 = grads.get(group);
      if (!g0) throw new Error(`no gradients for parameter group ${group}`);
      const v = this.v.get(group)!;
      const ps = this.store.list(group);
      const rate = lr[group];
      // Each moment in its own scope, assigned before the next is computed: a group's vectors are the
      // size of the model, and one scope over the whole update would hold ~15 of them at once.
      const g = gradScale === 1 ? g0 : tf.mul(g0, gradScale);
      const assign = (target: tf.Variable, value: tf.Tensor) => {
        target.assign(value);
        value.dispose();
      };
      try {
        assign(
          m,
          tf.tidy(() => tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1))),
        );
        assign(
          v,
          tf.tidy(() => tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2))),
        );
      } finally {
        if (g !== g0) g.dispose();
      }
      const flatP = flatParams.get(group)!;
      const next = tf.tidy(() => {
        const step = tf.tidy(() => tf.mul(tf.div(m, tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps)), rate / bc1));
        const p1 = tf.sub(tf.mul(flatP, 1 - rate * weightDecay), step) as tf.Tensor1D;
        flatP.assign(p1);
        scatterToParams(ps, p1);
        return p1;
      });
      out.set(group, next);
    }
    return out;
  }

  private currentFlatParams(): Map<ParamGroup, tf.Variable> {
    if (this.flatParams?.version !== this.store.version) {
      for (const t of this.flatParams?.flat.values() ?? []) t.dispose();
      const flat = new Map<ParamGroup, tf.Variable>();
      for (const [group, t] of flattenByGroup(this.store, (p) => p.variable)) {
        flat.set(group, tf.variable(t, false));
        t.dispose();
      }
      this.flatParams = { version: this.store.version, flat };
    }
    return this.flatParams.flat;
  }

  /** Moments as sources (`exp_avg.<name>` / `exp_avg_sq.<name>`), sorted by name, for a checkpoint file. */
  tensorSources(): TensorSource[] {
    return byName([
      ...sourcesFromFlat(this.store, this.m, 'exp_avg.'),
      ...sourcesFromFlat(this.store, this.v, 'exp_avg_sq.'),
    ]);
  }

  /** Moments as `exp_avg.<name>` / `exp_avg_sq.<name>` (torch's state names), sorted by name. */
  async toNamedArrays(): Promise<NamedArray[]> {
    const out = [
      ...(await namedFromFlat(this.store, this.m, 'exp_avg.')),
      ...(await namedFromFlat(this.store, this.v, 'exp_avg_sq.')),
    ];
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Restore moments and step from a checkpoint's optimizer.safetensors. */
  load(file: SafetensorsFile): void {
    this.step = Number(file.metadata.step ?? NaN);
    if (!Number.isInteger(this.step) || this.step < 0)
      throw new Error('optimizer.safetensors has no valid "step" in its metadata');
    loadFlat(this.store, this.m, file, 'exp_avg.', 'optimizer.safetensors');
    loadFlat(this.store, this.v, file, 'exp_avg_sq.', 'optimizer.safetensors');
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values(), ...(this.flatParams?.flat.values() ?? [])]) t.dispose();
  }
}

/** Exponential moving average of all parameters (diffusers EMAModel semantics), one flat vector per group. */
export class WeightEma {
  updates = 0;
  private readonly shadow = new Map<ParamGroup, tf.Variable>();

  constructor(
    private readonly store: ParamStore,
    private readonly decay: number,
    private readonly warmup: boolean,
  ) {
    const flat = flattenByGroup(store, (p) => p.variable);
    for (const [group, t] of flat) {
      this.shadow.set(group, tf.variable(t, false));
      t.dispose();
    }
  }

  /** Decay used for update number `n` (1-based). */
  decayFor(n: number): number {
    const k = n - 1;
    if (k <= 0) return 0;
    return Math.min(this.decay, this.warmup ? (1 + k) / (10 + k) : this.decay);
  }

  /** One EMA update towards the current parameters (`current`: their flat values, when at hand). */
  update(current?: FlatByGroup): void {
    this.updates += 1;
    const d = this.decayFor(this.updates);
    const flat = current ?? flattenByGroup(this.store, (p) => p.variable);
    try {
      for (const [group, s] of this.shadow) {
        const p = flat.get(group)!;
        tf.tidy(() => s.assign(tf.sub(s, tf.mul(tf.sub(s, p), 1 - d))));
      }
    } finally {
      if (!current) for (const t of flat.values()) t.dispose();
    }
  }

  async toNamedArrays(): Promise<NamedArray[]> {
    return namedFromFlat(this.store, this.shadow, '');
  }

  /** The averaged weights as sources under the parameters' names, sorted, for a checkpoint file. */
  tensorSources(): TensorSource[] {
    return byName(sourcesFromFlat(this.store, this.shadow, ''));
  }

  /** The averaged weights, one flat vector per group (read-only use). */
  vectors(): tf.Tensor[] {
    return [...this.shadow.values()];
  }

  load(file: SafetensorsFile): void {
    this.updates = Number(file.metadata.updates ?? NaN);
    if (!Number.isInteger(this.updates) || this.updates < 0)
      throw new Error('ema.safetensors has no valid "updates" in its metadata');
    loadFlat(this.store, this.shadow, file, '', 'ema.safetensors');
  }

  dispose(): void {
    for (const t of this.shadow.values()) t.dispose();
  }
}
