/**
 * Samplers for evaluation: DDIM (epsilon or v prediction, DDPM alpha-bar schedule from
 * training/noise-schedule.ts) and Euler (flow matching, x_t = (1-t) x0 + t eps, velocity eps - x0,
 * as in training/objective.ts), both with classifier-free guidance.
 *
 * Determinism: sample i starts from noise drawn from `Rng.derive(seed, 'eval-noise', i)` (and, for
 * DDIM with eta > 0, its per-step noise from the same stream), so a sample depends only on
 * (seed, sample index, prompt, model) - not on batch size or on which other samples share its
 * batch - and every evaluation of a run sees the same noise.
 */
import * as tf from '@tensorflow/tfjs';
import type { NoiseSchedule } from '../training/noise-schedule.js';
import { Rng } from '../training/rng.js';
import { ConfigError } from '../infra/errors.js';

export type Prediction = 'epsilon' | 'v' | 'flow';

/**
 * What the sampler needs from a model: a prediction for noisy inputs `xt` [B, H, W, C] at model
 * timesteps `t` [B] (DDPM index 0..T-1, or flow time x 1000), given conditioning `cond`
 * (e.g. text-encoder tokens and their mask; opaque to the sampler). The sampler disposes the
 * returned tensor; `xt` and `t` are owned by the sampler.
 */
export interface SamplingDenoiser<C> {
  prediction: Prediction;
  predict(xt: tf.Tensor4D, t: tf.Tensor1D, cond: C): tf.Tensor4D | Promise<tf.Tensor4D>;
}

export interface SamplerOptions {
  method: 'ddim' | 'euler';
  /** Number of denoising steps. */
  steps: number;
  /** Classifier-free guidance scale w: pred = uncond + w (cond - uncond). 1 disables guidance. */
  guidanceScale: number;
  /** Noise seed shared by every evaluation of a run. */
  seed: number;
  /** Sample shape in the denoiser's space (latents or pixels). */
  height: number;
  width: number;
  channels: number;
  /** DDIM only: the training noise schedule. */
  schedule?: NoiseSchedule;
  /** DDIM only: 0 = deterministic DDIM (default); 1 = DDPM-like ancestral noise. */
  eta?: number;
  /** DDIM only: 'trailing' (default; starts at t = T-1) or 'leading' (diffusers' older default). */
  timestepSpacing?: 'trailing' | 'leading';
  /** Euler only: timestep shift s (t -> s t / (1 + (s-1) t)); 1 = uniform (default). */
  shift?: number;
}

/** DDIM timesteps, descending (diffusers DDIMScheduler.set_timesteps). */
export function ddimTimesteps(
  trainSteps: number,
  steps: number,
  spacing: 'trailing' | 'leading' = 'trailing',
): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps)
    throw new ConfigError(
      `DDIM steps ${steps} must be an integer in 1..${trainSteps}`,
      'set eval sampling steps to e.g. 50.',
    );
  const out: number[] = [];
  if (spacing === 'trailing') {
    const ratio = trainSteps / steps;
    for (let i = 0; i < steps; i++) out.push(Math.round(trainSteps - i * ratio) - 1);
  } else {
    const ratio = Math.floor(trainSteps / steps);
    for (let i = steps - 1; i >= 0; i--) out.push(i * ratio);
  }
  return out;
}

/** Flow-matching times from 1 to 0 (steps + 1 points), optionally shifted. */
export function flowTimes(steps: number, shift = 1): number[] {
  if (!Number.isInteger(steps) || steps < 1)
    throw new ConfigError(`Euler steps ${steps} must be a positive integer`, 'set eval sampling steps to e.g. 50.');
  const out: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t = 1 - i / steps;
    out.push((shift * t) / (1 + (shift - 1) * t));
  }
  return out;
}

/** Initial noise for the given sample indices, [B, H, W, C]. */
export function initialNoise(
  indices: readonly number[],
  o: Pick<SamplerOptions, 'seed' | 'height' | 'width' | 'channels'>,
): { noise: tf.Tensor4D; rngs: Rng[] } {
  const per = o.height * o.width * o.channels;
  const data = new Float32Array(indices.length * per);
  const rngs = indices.map((idx, b) => {
    const rng = Rng.derive(o.seed, 'eval-noise', idx);
    rng.fillNormal(data.subarray(b * per, (b + 1) * per));
    return rng;
  });
  return { noise: tf.tensor4d(data, [indices.length, o.height, o.width, o.channels]), rngs };
}

/**
 * Generate one batch: samples `indices` (their noise seeds) under conditioning `cond` (one entry per
 * sample, batched by the caller) and `uncond` (the empty-prompt conditioning; may be null when
 * guidanceScale is 1). Returns the final x0 [B, H, W, C] in the denoiser's space.
 */
export async function sampleBatch<C>(
  denoiser: SamplingDenoiser<C>,
  cond: C,
  uncond: C | null,
  indices: readonly number[],
  o: SamplerOptions,
): Promise<tf.Tensor4D> {
  validate(denoiser, o, uncond);
  const { noise, rngs } = initialNoise(indices, o);
  const B = indices.length;
  const guided = async (xt: tf.Tensor4D, modelT: number): Promise<tf.Tensor4D> => {
    const t = tf.fill([B], modelT) as tf.Tensor1D;
    try {
      const c = await denoiser.predict(xt, t, cond);
      if (o.guidanceScale === 1 || uncond === null) return c;
      const u = await denoiser.predict(xt, t, uncond);
      const out = tf.tidy(() => tf.add(u, tf.mul(tf.sub(c, u), o.guidanceScale)) as tf.Tensor4D);
      c.dispose();
      u.dispose();
      return out;
    } finally {
      t.dispose();
    }
  };
  let x = noise;
  if (o.method === 'euler') {
    const times = flowTimes(o.steps, o.shift ?? 1);
    for (let i = 0; i < o.steps; i++) {
      const t = times[i]!,
        tNext = times[i + 1]!;
      const v = await guided(x, t * 1000);
      const next = tf.tidy(() => tf.add(x, tf.mul(v, tNext - t)) as tf.Tensor4D);
      v.dispose();
      x.dispose();
      x = next;
    }
    return x;
  }
  const sched = o.schedule!;
  const ts = ddimTimesteps(sched.steps, o.steps, o.timestepSpacing ?? 'trailing');
  const eta = o.eta ?? 0;
  const per = o.height * o.width * o.channels;
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i]!;
    const ab = sched.alphasCumprod[t]!;
    const prevT = i + 1 < ts.length ? ts[i + 1]! : -1;
    const abPrev = prevT >= 0 ? sched.alphasCumprod[prevT]! : 1; // final step lands on x0 (set_alpha_to_one)
    const a = Math.sqrt(ab),
      b = Math.sqrt(1 - ab);
    const sigma = eta * Math.sqrt((1 - abPrev) / (1 - ab)) * Math.sqrt(1 - ab / abPrev);
    const dir = Math.sqrt(Math.max(1 - abPrev - sigma * sigma, 0));
    let z: tf.Tensor4D | null = null;
    if (sigma > 0) {
      const zd = new Float32Array(B * per);
      rngs.forEach((r, k) => r.fillNormal(zd.subarray(k * per, (k + 1) * per)));
      z = tf.tensor4d(zd, x.shape);
    }
    const pred = await guided(x, t);
    const next = tf.tidy(() => {
      const [x0, eps] =
        denoiser.prediction === 'epsilon'
          ? [tf.div(tf.sub(x, tf.mul(pred, b)), a), pred]
          : [tf.sub(tf.mul(x, a), tf.mul(pred, b)), tf.add(tf.mul(pred, a), tf.mul(x, b))];
      let out = tf.add(tf.mul(x0, Math.sqrt(abPrev)), tf.mul(eps, dir));
      if (z) out = tf.add(out, tf.mul(z, sigma));
      return out as tf.Tensor4D;
    });
    pred.dispose();
    z?.dispose();
    x.dispose();
    x = next;
  }
  return x;
}

function validate<C>(denoiser: SamplingDenoiser<C>, o: SamplerOptions, uncond: C | null): void {
  if (o.method === 'euler' && denoiser.prediction !== 'flow')
    throw new ConfigError(
      `the Euler sampler integrates a flow-matching velocity, but the model predicts ${denoiser.prediction}`,
      'use method "ddim" for epsilon or v prediction.',
    );
  if (o.method === 'ddim' && denoiser.prediction === 'flow')
    throw new ConfigError(
      'DDIM needs an epsilon or v prediction model, but this model predicts flow velocity',
      'use method "euler" for flow-matching models.',
    );
  if (o.method === 'ddim' && !o.schedule)
    throw new ConfigError(
      'DDIM sampling needs the training noise schedule',
      'pass the schedule the model was trained with (training/noise-schedule.ts ddpmSchedule).',
    );
  if (o.guidanceScale !== 1 && uncond === null)
    throw new ConfigError(
      `guidance scale ${o.guidanceScale} needs unconditional (empty-prompt) conditioning`,
      'pass the empty-caption encoding as uncond, or set guidance scale 1.',
    );
  if (!Number.isFinite(o.guidanceScale))
    throw new ConfigError(`guidance scale ${o.guidanceScale} is not finite`, 'use e.g. 4.5.');
  if (o.eta !== undefined && !(o.eta >= 0 && o.eta <= 1))
    throw new ConfigError(
      `DDIM eta ${o.eta} is outside [0, 1]`,
      'use 0 (deterministic) unless you need stochastic sampling.',
    );
}
