/**
 * The training objective: forward noising, the regression target for the chosen parameterisation,
 * the model's clean-latent estimate x0-hat, optional Min-SNR-gamma weights, and the PRX term.
 *
 *   epsilon: x_t = sqrt(ab) x0 + sqrt(1-ab) eps, target eps,      x0hat = (x_t - sqrt(1-ab) pred) / sqrt(ab)
 *   v:       same x_t,           target sqrt(ab) eps - sqrt(1-ab) x0, x0hat = sqrt(ab) x_t - sqrt(1-ab) pred
 *   flow:    x_t = (1-t) x0 + t eps (t in (0,1)), target eps - x0, x0hat = x_t - t pred
 *
 * Min-SNR-gamma (Hang et al. 2023, as in diffusers' train_text_to_image.py): per-sample weight
 * min(snr, gamma) / snr for epsilon and min(snr, gamma) / (snr + 1) for v and flow (flow's SNR is
 * ((1-t)/t)^2). loss = mean_b(w_b * mse_b) + prx_weight * prx(x0hat).
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from './config.js';
import type { NoiseSchedule } from './noise-schedule.js';
import { prxRegularization } from './prx.js';
import type { Rng } from './rng.js';

/** Per-sample noising draw (all from the training RNG, in a fixed order: timesteps, then noise). */
export interface NoiseDraw {
  /** Timestep fed to the model (0..T-1 for DDPM, t x 1000 for flow). */
  modelTimesteps: Float32Array;
  /** x_t = signal[b] * x0 + noise[b] * eps. */
  signal: Float32Array;
  noiseScale: Float32Array;
  /** Min-SNR weights (all 1 when disabled). */
  weights: Float32Array;
  eps: Float32Array;
}

export function drawNoise(rng: Rng, batch: number, elementsPerSample: number, o: TrainingConfig['objective'], sched: NoiseSchedule): NoiseDraw {
  const modelTimesteps = new Float32Array(batch);
  const signal = new Float32Array(batch);
  const noiseScale = new Float32Array(batch);
  const weights = new Float32Array(batch).fill(1);
  for (let b = 0; b < batch; b++) {
    let snr: number;
    if (o.prediction === 'flow') {
      const t = rng.uniform() + 2 ** -25;
      modelTimesteps[b] = t * 1000;
      signal[b] = 1 - t;
      noiseScale[b] = t;
      snr = ((1 - t) / t) ** 2;
    } else {
      const step = rng.int(sched.steps);
      const ab = sched.alphasCumprod[step]!;
      modelTimesteps[b] = step;
      signal[b] = Math.sqrt(ab);
      noiseScale[b] = Math.sqrt(1 - ab);
      snr = ab / (1 - ab);
    }
    if (o.minSnrGamma !== null) {
      const clipped = Math.min(snr, o.minSnrGamma);
      weights[b] = o.prediction === 'epsilon' ? clipped / snr : clipped / (snr + 1);
    }
  }
  const eps = rng.fillNormal(new Float32Array(batch * elementsPerSample));
  return { modelTimesteps, signal, noiseScale, weights, eps };
}

/** x_t from clean latents and a draw. */
export function noisyLatents(x0: tf.Tensor4D, d: NoiseDraw): tf.Tensor4D {
  const B = x0.shape[0];
  const eps = tf.tensor(d.eps, x0.shape, 'float32');
  return tf.add(tf.mul(x0, tf.tensor4d(d.signal, [B, 1, 1, 1])), tf.mul(eps, tf.tensor4d(d.noiseScale, [B, 1, 1, 1]))) as tf.Tensor4D;
}

export interface ObjectiveTerms {
  loss: tf.Scalar;
  diffusion: tf.Scalar;
  prx: tf.Scalar;
  x0hat: tf.Tensor4D;
}

/** Loss of a prediction `pred` for clean latents `x0`, noisy `xt` and the draw that made it. */
export function objectiveTerms(pred: tf.Tensor4D, x0: tf.Tensor4D, xt: tf.Tensor4D, d: NoiseDraw, o: TrainingConfig['objective']): ObjectiveTerms {
  const B = x0.shape[0];
  const a = tf.tensor4d(d.signal, [B, 1, 1, 1]);
  const s = tf.tensor4d(d.noiseScale, [B, 1, 1, 1]);
  const eps = tf.tensor(d.eps, x0.shape, 'float32');
  let target: tf.Tensor;
  let x0hat: tf.Tensor;
  if (o.prediction === 'epsilon') {
    target = eps;
    x0hat = tf.div(tf.sub(xt, tf.mul(s, pred)), a);
  } else if (o.prediction === 'v') {
    target = tf.sub(tf.mul(a, eps), tf.mul(s, x0));
    x0hat = tf.sub(tf.mul(a, xt), tf.mul(s, pred));
  } else {
    target = tf.sub(eps, x0);
    x0hat = tf.sub(xt, tf.mul(s, pred));
  }
  const perSample = tf.mean(tf.squaredDifference(pred, target), [1, 2, 3]);
  const diffusion = tf.mean(tf.mul(perSample, tf.tensor1d(d.weights))) as tf.Scalar;
  const prx = o.prxWeight > 0 ? prxRegularization(x0hat, { targetVar: o.prxTargetVar, corrWeight: o.prxCorrWeight }).total : tf.scalar(0);
  const loss = tf.add(diffusion, tf.mul(prx, o.prxWeight)) as tf.Scalar;
  return { loss, diffusion, prx, x0hat: x0hat as tf.Tensor4D };
}
