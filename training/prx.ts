/**
 * The PRX latent regularization (shared/PRX-RECIPE.md), applied to x0-hat, the model's estimate of
 * the clean latent (so the term has a gradient; on the noisy z_t it would train nothing):
 *
 *   var_term  = |var(x0hat) - target_var|            (variance over all elements, target 1.0)
 *   corr_term = ||C - T||_F, T = I (or a measured correlation), C = the channel-by-channel correlation matrix (C x C) over the
 *               batch x height x width samples of each channel
 *   prx       = var_term + corr_weight * corr_term    (corr_weight 0.1)
 *
 * and the training loss adds `prx_weight * prx` (0.01). Variances are population variances
 * (divide by N), so a whitened batch (per-channel zero mean, unit variance, uncorrelated) scores 0.
 * An optional per-sample 0/1 mask restricts the statistics to the masked-in samples (the cut-off of
 * objective.ts); it is applied as weights, so the gradient needs no gather (wasm has none).
 */
import * as tf from '@tensorflow/tfjs';

export interface PrxOptions {
  targetVar: number;
  corrWeight: number;
  /** The target correlation matrix (C x C); the identity when absent. */
  targetCorr?: number[][];
}

export interface PrxTerms {
  total: tf.Scalar;
  varTerm: tf.Scalar;
  corrTerm: tf.Scalar;
}

const STD_EPS = 1e-12;
const NORM_EPS = 1e-12;

/** PRX terms of a latent batch [B, H, W, C] (channels last), over the samples with `sampleMask[b] = 1` (all when omitted). */
export function prxRegularization(x0hat: tf.Tensor, o: PrxOptions, sampleMask?: Float32Array): PrxTerms {
  const channels = x0hat.shape[x0hat.shape.length - 1]!;
  const batch = x0hat.shape[0]!;
  const rowsPerSample = x0hat.size / channels / batch;
  const kept = sampleMask ? sampleMask.reduce((a, m) => a + m, 0) : batch;
  if (kept === 0) throw new RangeError('prxRegularization: the sample mask keeps no sample');
  const samples = kept * rowsPerSample;
  const flat = x0hat.reshape([batch * rowsPerSample, channels]) as tf.Tensor2D;
  // Row weights: 1 for rows of kept samples, 0 otherwise (no-op when every sample is kept).
  const w =
    sampleMask && kept < batch
      ? tf.tensor2d(
          Float32Array.from({ length: batch * rowsPerSample }, (_, i) => sampleMask[Math.floor(i / rowsPerSample)]!),
          [batch * rowsPerSample, 1],
        )
      : null;
  const weighted = (t: tf.Tensor2D) => (w ? (tf.mul(t, w) as tf.Tensor2D) : t);
  const mean = tf.div(tf.sum(weighted(flat)), samples * channels);
  const variance = tf.div(tf.sum(weighted(tf.square(tf.sub(flat, mean)) as tf.Tensor2D)), samples * channels);
  const varTerm = tf.abs(tf.sub(variance, o.targetVar)) as tf.Scalar;
  const centered = weighted(tf.sub(flat, tf.div(tf.sum(weighted(flat), 0, true), samples)) as tf.Tensor2D);
  const cov = tf.div(tf.matMul(centered, centered, true, false), samples);
  const variances = tf.div(tf.sum(tf.square(centered), 0), samples);
  const denom = tf.sqrt(tf.add(tf.mul(variances.reshape([channels, 1]), variances.reshape([1, channels])), STD_EPS));
  const corr = tf.div(cov, denom);
  const target = o.targetCorr ? tf.tensor2d(o.targetCorr.flat(), [channels, channels]) : tf.eye(channels);
  const corrTerm = tf.sqrt(tf.add(tf.sum(tf.square(tf.sub(corr, target))), NORM_EPS)) as tf.Scalar;
  return { total: tf.add(varTerm, tf.mul(corrTerm, o.corrWeight)) as tf.Scalar, varTerm, corrTerm };
}
