/**
 * AdamW with one learning rate per parameter group (denoiser, text encoder), global-norm gradient
 * clipping, and an EMA of the weights. The update is PyTorch's `torch.optim.AdamW` step (decoupled
 * weight decay p *= 1 - lr*wd, bias-corrected moments, eps added after the square root); the EMA is
 * diffusers' `EMAModel` (decay 0 on the first update, then min(decay, (1+k)/(10+k)) with warmup).
 */
import * as tf from '@tensorflow/tfjs';
import type { ParamGroup, ParamStore } from './params.js';
import type { NamedArray, SafetensorsFile } from './safetensors.js';
import { entryToFloat32 } from './safetensors.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** Global L2 norm of all gradients, and the gradients scaled so it is at most `maxNorm` (torch's rule). */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number | null): { norm: number; grads: Map<string, tf.Tensor> } {
  const norm = Math.sqrt(tf.tidy(() => tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  if (maxNorm === null || !Number.isFinite(norm)) return { norm, grads };
  const coef = maxNorm / (norm + 1e-6);
  if (coef >= 1) return { norm, grads };
  const scaled = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) scaled.set(name, tf.mul(g, coef));
  return { norm, grads: scaled };
}

export class AdamW {
  /** Number of updates applied so far (torch's `state['step']`). */
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(private readonly store: ParamStore, private readonly o: AdamWOptions) {
    for (const p of store.list()) {
      this.m.set(p.name, tf.variable(tf.zeros(p.shape), false));
      this.v.set(p.name, tf.variable(tf.zeros(p.shape), false));
    }
  }

  /** One update with `grads` (by parameter name) and a learning rate per group. */
  apply(grads: Map<string, tf.Tensor>, lr: Record<ParamGroup, number>): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.o;
    const bc1 = 1 - beta1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    for (const p of this.store.list()) {
      const g = grads.get(p.name);
      if (!g) throw new Error(`no gradient for parameter ${p.name}`);
      const rate = lr[p.group];
      const m = this.m.get(p.name)!;
      const v = this.v.get(p.name)!;
      tf.tidy(() => {
        const decayed = tf.mul(p.variable, 1 - rate * weightDecay);
        const m1 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const v1 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.div(tf.sqrt(v1), bc2Sqrt), eps);
        p.variable.assign(tf.sub(decayed, tf.mul(tf.div(m1, denom), rate / bc1)));
        m.assign(m1);
        v.assign(v1);
      });
    }
  }

  /** Moments as `exp_avg.<name>` / `exp_avg_sq.<name>` (torch's state names), sorted by name. */
  async toNamedArrays(): Promise<NamedArray[]> {
    const out: NamedArray[] = [];
    for (const [prefix, map] of [['exp_avg', this.m], ['exp_avg_sq', this.v]] as const) {
      for (const [name, t] of map) out.push({ name: `${prefix}.${name}`, shape: t.shape, data: (await t.data()) as Float32Array });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Restore moments and step from a checkpoint's optimizer.safetensors. */
  load(file: SafetensorsFile): void {
    this.step = Number(file.metadata.step ?? NaN);
    if (!Number.isInteger(this.step) || this.step < 0) throw new Error('optimizer.safetensors has no valid "step" in its metadata');
    for (const [prefix, map] of [['exp_avg', this.m], ['exp_avg_sq', this.v]] as const) {
      for (const [name, t] of map) {
        const entry = file.tensors.get(`${prefix}.${name}`);
        if (!entry) throw new Error(`optimizer.safetensors lacks ${prefix}.${name}`);
        t.assign(tf.tensor(entryToFloat32(entry), t.shape, 'float32'));
      }
    }
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

/** Exponential moving average of all parameters (diffusers EMAModel semantics). */
export class WeightEma {
  updates = 0;
  readonly shadow = new Map<string, tf.Variable>();

  constructor(private readonly store: ParamStore, private readonly decay: number, private readonly warmup: boolean) {
    for (const p of store.list()) this.shadow.set(p.name, tf.variable(p.variable.clone(), false));
  }

  /** Decay used for update number `n` (1-based). */
  decayFor(n: number): number {
    const k = n - 1;
    if (k <= 0) return 0;
    return Math.min(this.decay, this.warmup ? (1 + k) / (10 + k) : this.decay);
  }

  update(): void {
    this.updates += 1;
    const d = this.decayFor(this.updates);
    for (const p of this.store.list()) {
      const s = this.shadow.get(p.name)!;
      tf.tidy(() => s.assign(tf.sub(s, tf.mul(tf.sub(s, p.variable), 1 - d))));
    }
  }

  async toNamedArrays(): Promise<NamedArray[]> {
    const out: NamedArray[] = [];
    for (const [name, t] of this.shadow) out.push({ name, shape: t.shape, data: (await t.data()) as Float32Array });
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  load(file: SafetensorsFile): void {
    this.updates = Number(file.metadata.updates ?? NaN);
    if (!Number.isInteger(this.updates) || this.updates < 0) throw new Error('ema.safetensors has no valid "updates" in its metadata');
    for (const [name, t] of this.shadow) {
      const entry = file.tensors.get(name);
      if (!entry) throw new Error(`ema.safetensors lacks ${name}`);
      t.assign(tf.tensor(entryToFloat32(entry), t.shape, 'float32'));
    }
  }

  dispose(): void {
    for (const t of this.shadow.values()) t.dispose();
  }
}
