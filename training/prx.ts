/**
 * The PRX latent regularization (shared/PRX-RECIPE.md), applied to x0-hat, the model's estimate of
 * the clean latent (so the term has a gradient; on the noisy z_t it would train nothing):
 *
 *   var_term  = |var(x0hat) - target_var|            (variance over all elements, target 1.0)
 *   corr_term = ||C - I||_F, C = the channel-by-channel correlation matrix (C x C) over the
 *               batch x height x width samples of each channel
 *   prx       = var_term + corr_weight * corr_term    (corr_weight 0.1)
 *
 * and the training loss adds `prx_weight * prx` (0.01). Variances are population variances
 * (divide by N), so a whitened batch (per-channel zero mean, unit variance, uncorrelated) scores 0.
 */
import * as tf from '@tensorflow/tfjs';

export interface PrxOptions {
  targetVar: number;
  corrWeight: number;
}

export interface PrxTerms {
  total: tf.Scalar;
  varTerm: tf.Scalar;
  corrTerm: tf.Scalar;
}

const STD_EPS = 1e-12;
const NORM_EPS = 1e-12;

/** PRX terms of a latent batch [B, H, W, C] (channels last). */
export function prxRegularization(x0hat: tf.Tensor, o: PrxOptions): PrxTerms {
  const channels = x0hat.shape[x0hat.shape.length - 1]!;
  const samples = x0hat.size / channels;
  const varTerm = tf.abs(tf.sub(tf.moments(x0hat).variance, o.targetVar)) as tf.Scalar;
  const flat = x0hat.reshape([samples, channels]) as tf.Tensor2D;
  const centered = tf.sub(flat, tf.mean(flat, 0, true)) as tf.Tensor2D;
  const cov = tf.div(tf.matMul(centered, centered, true, false), samples);
  const variances = tf.mean(tf.square(centered), 0);
  const denom = tf.sqrt(tf.add(tf.mul(variances.reshape([channels, 1]), variances.reshape([1, channels])), STD_EPS));
  const corr = tf.div(cov, denom);
  const corrTerm = tf.sqrt(tf.add(tf.sum(tf.square(tf.sub(corr, tf.eye(channels)))), NORM_EPS)) as tf.Scalar;
  return { total: tf.add(varTerm, tf.mul(corrTerm, o.corrWeight)) as tf.Scalar, varTerm, corrTerm };
}
