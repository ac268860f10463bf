/**
 * The evaluation protocol's defaults, in one place: the pipeline spec (cli/spec/schema.ts), the CLI
 * (`kiln run train --eval-samples`) and the eval activity all import them.
 *
 * - Sample count 256. KID (the default stopping metric below feature_dim samples) is unbiased at any
 *   count; at 256 its noise is small enough to stop on with patience 3 (eval/architecture.md, "FID's
 *   bias" table), while each evaluation still costs only 256 x sampler steps x 2 (CFG) denoiser
 *   calls. 64 (what the spec used to say) makes even KID's noise comparable to real improvements;
 *   FID at 256 of 2048 dimensions is heavily biased, which is why KID is the default there.
 * - Stopping metric: KID when the sample count is below the extractor's feature dimension (FID's
 *   generated covariance is then rank-deficient and its bias dominates), FID otherwise.
 * - Reference set: at most 5,000 images, brought to the training resolution (sharp cover/centre,
 *   exactly as training decodes them) before the extractor's clean-fid resize, so its statistics are
 *   cached once per (set, cap, resolution, extractor) and match what the model can generate.
 */
import type { StoppingMetric } from './early-stopping.js';

/** Generated samples per evaluation (spec `eval.sample_count`, CLI `--eval-samples`, activity). */
export const DEFAULT_EVAL_SAMPLE_COUNT = 256;
/** Reference images used at most (spec `eval.reference_max_images`, activity `referenceMaxImages`). */
export const DEFAULT_REFERENCE_MAX_IMAGES = 5000;

/** The stopping metric when none is configured: KID below `featureDim` samples, else FID. */
export function defaultStoppingMetric(sampleCount: number, featureDim: number): StoppingMetric {
  return sampleCount < featureDim ? 'kid' : 'fid';
}
