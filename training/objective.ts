/**
 * The training objective: forward noising, the regression target for the chosen parameterisation,
 * the model's clean-latent estimate x0-hat, optional Min-SNR-gamma weights, and the PRX term.
 *
 *   flow:    x_t = (1-t) x0 + t eps (t in (0,1)), target eps - x0, x0hat = x_t - t pred   (default)
 *   epsilon: x_t = sqrt(ab) x0 + sqrt(1-ab) eps, target eps,      x0hat = (x_t - sqrt(1-ab) pred) / sqrt(ab)
 *   v:       same x_t,           target sqrt(ab) eps - sqrt(1-ab) x0, x0hat = sqrt(ab) x_t - sqrt(1-ab) pred
 *
 * Flow's t is logit-normal by default (SD3: t = sigmoid(m + s n), n ~ N(0, 1)) or uniform; the model
 * sees t x 1000. Min-SNR-gamma (Hang et al. 2023, as in diffusers' train_text_to_image.py): per-sample
 * weight min(snr, gamma) / snr for epsilon and min(snr, gamma) / (snr + 1) for v and flow (flow's SNR
 * is ((1-t)/t)^2). loss = mean_b(w_b * mse_b) + prx_weight * prx(x0hat over the PRX samples).
 *
 * PRX in proportion: a prediction error e becomes gain x e in x0-hat (gain = sqrt(1-ab)/sqrt(ab) for
 * epsilon, up to ~157; sqrt(1-ab) for v; t for flow). Only samples with gain <= prxMaxGain (default
 * 1) enter PRX's statistics, so PRX never sees an amplified error; under v and flow that is every
 * sample. PRX is a batch statistic, computed per micro-batch (gradient accumulation averages the
 * micro-batches' gradients, each with its own PRX).
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from './config.js';
import type { NoiseSchedule } from './noise-schedule.js';
import { prxRegularization } from './prx.js';
import type { Rng } from './rng.js';

type Objective = TrainingConfig['objective'];

/** Per-sample noising draw (all from the training RNG, sample by sample: see drawMicroBatch). */
export interface NoiseDraw {
  /** Timestep fed to the model (0..T-1 for DDPM, t x 1000 for flow). */
  modelTimesteps: Float32Array;
  /** x_t = signal[b] * x0 + noise[b] * eps. */
  signal: Float32Array;
  noiseScale: Float32Array;
  /** Min-SNR weights (all 1 when disabled). */
  weights: Float32Array;
  /** 1 for samples that enter PRX's statistics (x0-hat error gain <= prxMaxGain), else 0. */
  prxMask: Float32Array;
  eps: Float32Array;
}

/** The factor a prediction error is multiplied by in x0-hat, for a sample with these coefficients. */
export function x0ErrorGain(prediction: Objective['prediction'], signal: number, noiseScale: number): number {
  return prediction === 'epsilon' ? noiseScale / signal : noiseScale;
}

/** Draw one sample's timestep into `d` at index b. */
function drawTimestep(rng: Rng, d: NoiseDraw, b: number, o: Objective, sched: NoiseSchedule): void {
  let snr: number;
  if (o.prediction === 'flow') {
    let t: number;
    if (o.flowTimesteps === 'logit_normal') {
      const n = rng.fillNormal(new Float32Array(1))[0]!;
      t = 1 / (1 + Math.exp(-(o.flowLogitMean + o.flowLogitStd * n)));
      t = Math.min(Math.max(t, 2 ** -25), 1 - 2 ** -25);
    } else {
      t = rng.uniform() + 2 ** -25;
    }
    d.modelTimesteps[b] = t * 1000;
    d.signal[b] = 1 - t;
    d.noiseScale[b] = t;
    snr = ((1 - t) / t) ** 2;
  } else {
    const step = rng.int(sched.steps);
    const ab = sched.alphasCumprod[step]!;
    d.modelTimesteps[b] = step;
    d.signal[b] = Math.sqrt(ab);
    d.noiseScale[b] = Math.sqrt(1 - ab);
    snr = ab / (1 - ab);
  }
  if (o.minSnrGamma !== null) {
    const clipped = Math.min(snr, o.minSnrGamma);
    d.weights[b] = o.prediction === 'epsilon' ? clipped / snr : clipped / (snr + 1);
  }
  const gain = x0ErrorGain(o.prediction, d.signal[b]!, d.noiseScale[b]!);
  d.prxMask[b] = o.prxMaxGain === null || gain <= o.prxMaxGain ? 1 : 0;
}

function emptyDraw(batch: number, elementsPerSample: number): NoiseDraw {
  return {
    modelTimesteps: new Float32Array(batch),
    signal: new Float32Array(batch),
    noiseScale: new Float32Array(batch),
    weights: new Float32Array(batch).fill(1),
    prxMask: new Float32Array(batch),
    eps: new Float32Array(batch * elementsPerSample),
  };
}

/** Timesteps and noise for `batch` samples, drawn sample by sample (timestep, then its noise). */
export function drawNoise(
  rng: Rng,
  batch: number,
  elementsPerSample: number,
  o: Objective,
  sched: NoiseSchedule,
): NoiseDraw {
  const d = emptyDraw(batch, elementsPerSample);
  for (let b = 0; b < batch; b++) {
    drawTimestep(rng, d, b, o, sched);
    rng.fillNormal(d.eps.subarray(b * elementsPerSample, (b + 1) * elementsPerSample));
  }
  return d;
}

/**
 * Everything random about a micro-batch's samples, drawn sample by sample in a fixed order (caption
 * dropout, timestep, noise), so A micro-batches of B draw exactly what one batch of A x B draws.
 * Caption dropout replaces a caption by "" with probability `captionDropout` (classifier-free guidance).
 */
export function drawMicroBatch(
  rng: Rng,
  captions: readonly string[],
  elementsPerSample: number,
  o: Objective,
  sched: NoiseSchedule,
): { captions: string[]; draw: NoiseDraw } {
  const d = emptyDraw(captions.length, elementsPerSample);
  const out = captions.map((c, b) => {
    const dropped = rng.uniform() < o.captionDropout;
    drawTimestep(rng, d, b, o, sched);
    rng.fillNormal(d.eps.subarray(b * elementsPerSample, (b + 1) * elementsPerSample));
    return dropped ? '' : c;
  });
  return { captions: out, draw: d };
}

/** x_t from clean latents and a draw. */
export function noisyLatents(x0: tf.Tensor4D, d: NoiseDraw): tf.Tensor4D {
  const B = x0.shape[0];
  const eps = tf.tensor(d.eps, x0.shape, 'float32');
  return tf.add(
    tf.mul(x0, tf.tensor4d(d.signal, [B, 1, 1, 1])),
    tf.mul(eps, tf.tensor4d(d.noiseScale, [B, 1, 1, 1])),
  ) as tf.Tensor4D;
}

export interface ObjectiveTerms {
  loss: tf.Scalar;
  diffusion: tf.Scalar;
  /** PRX (unweighted: var + corrWeight x corr) and its two parts; 0 when PRX is off or no sample qualifies. */
  prx: tf.Scalar;
  prxVar: tf.Scalar;
  prxCorr: tf.Scalar;
  x0hat: tf.Tensor4D;
}

/** Whether PRX contributes for this objective (targets not `off`, weight > 0). */
export function prxActive(o: Objective): boolean {
  return o.prxTargets !== 'off' && o.prxWeight > 0;
}

/** Targets measured from the data (prx-targets.ts), needed when `prxTargets` is `measured`. */
export interface MeasuredPrxTargets {
  variance: number;
  correlation: number[][];
}

function prxOptions(o: Objective, measured: MeasuredPrxTargets | undefined) {
  if (o.prxTargets !== 'measured') return { targetVar: o.prxTargetVar, corrWeight: o.prxCorrWeight };
  if (!measured)
    throw new Error(
      'objective.prxTargets is "measured" but no measured targets were given (runTrainingChunk measures them)',
    );
  return { targetVar: measured.variance, corrWeight: o.prxCorrWeight, targetCorr: measured.correlation };
}

/**
 * Loss of a prediction `pred` for clean latents `x0`, noisy `xt` and the draw that made it. `prxPred`
 * (default `pred`, the same values) is what the PRX term reads: the trainer passes a separate handle
 * so one backward pass also yields each term's gradient on the prediction (see `gradientShare`).
 */
export function objectiveTerms(
  pred: tf.Tensor4D,
  x0: tf.Tensor4D,
  xt: tf.Tensor4D,
  d: NoiseDraw,
  o: Objective,
  measured?: MeasuredPrxTargets,
  prxPred: tf.Tensor4D = pred,
): ObjectiveTerms {
  const B = x0.shape[0];
  const a = tf.tensor4d(d.signal, [B, 1, 1, 1]);
  const s = tf.tensor4d(d.noiseScale, [B, 1, 1, 1]);
  const eps = tf.tensor(d.eps, x0.shape, 'float32');
  let target: tf.Tensor;
  let x0hat: tf.Tensor;
  if (o.prediction === 'epsilon') {
    target = eps;
    x0hat = tf.div(tf.sub(xt, tf.mul(s, prxPred)), a);
  } else if (o.prediction === 'v') {
    target = tf.sub(tf.mul(a, eps), tf.mul(s, x0));
    x0hat = tf.sub(tf.mul(a, xt), tf.mul(s, prxPred));
  } else {
    target = tf.sub(eps, x0);
    x0hat = tf.sub(xt, tf.mul(s, prxPred));
  }
  const perSample = tf.mean(tf.squaredDifference(pred, target), [1, 2, 3]);
  const diffusion = tf.mean(tf.mul(perSample, tf.tensor1d(d.weights))) as tf.Scalar;
  const useful = prxActive(o) && d.prxMask.some((m) => m > 0);
  const p = useful ? prxRegularization(x0hat, prxOptions(o, measured), d.prxMask) : null;
  const zero = tf.scalar(0);
  const prx = p ? p.total : zero;
  const loss = p ? (tf.add(diffusion, tf.mul(prx, o.prxWeight)) as tf.Scalar) : diffusion;
  return {
    loss,
    diffusion,
    prx,
    prxVar: p ? p.varTerm : zero,
    prxCorr: p ? p.corrTerm : zero,
    x0hat: x0hat as tf.Tensor4D,
  };
}

/**
 * PRX's share from the two gradients on the prediction the training backward pass already computed
 * (the diffusion term's, and prx_weight x PRX's): |g_prx| / (|g_diffusion| + |g_prx|), one read.
 */
export function gradientShare(gDiffusion: tf.Tensor, gPrx: tf.Tensor): number {
  const [nd, np] = tf.tidy(() => tf.stack([tf.norm(gDiffusion), tf.norm(gPrx)])).dataSync() as Float32Array;
  return nd! + np! > 0 ? np! / (nd! + np!) : 0;
}

/**
 * PRX's share of the gradient on the prediction: |g_prx| / (|g_diffusion| + |g_prx|), where g_prx is
 * the gradient of prx_weight x prx and g_diffusion that of the diffusion loss, both with respect to
 * the denoiser's output (cheap: the objective only, not the network). 0 when PRX is off.
 */
export function prxGradientShare(
  pred: tf.Tensor4D,
  x0: tf.Tensor4D,
  xt: tf.Tensor4D,
  d: NoiseDraw,
  o: Objective,
  measured?: MeasuredPrxTargets,
): number {
  if (!prxActive(o) || !d.prxMask.some((m) => m > 0)) return 0;
  return tf.tidy(() => {
    const gd = tf.grad((p: tf.Tensor) => objectiveTerms(p as tf.Tensor4D, x0, xt, d, o, measured).diffusion)(pred);
    const gp = tf.grad((p: tf.Tensor) =>
      tf.mul(objectiveTerms(p as tf.Tensor4D, x0, xt, d, o, measured).prx, o.prxWeight),
    )(pred);
    const nd = tf.norm(gd).dataSync()[0]!;
    const np = tf.norm(gp).dataSync()[0]!;
    return nd + np > 0 ? np / (nd + np) : 0;
  });
}
