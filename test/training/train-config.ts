/** The tiny config the training tests use (16x16 RGB, 16 patches, width 32): a step takes ~50 ms. */
import type { TrainingConfigInput } from '../../training/config.js';

export const TEST_CONFIG: TrainingConfigInput = {
  seed: 3,
  totalSteps: 20,
  resolution: 16,
  textEncoder: { maxTokens: 16, width: 32, depth: 1, heads: 2 },
  denoiser: { patchSize: 4, width: 32, depth: 2, heads: 2, mlpRatio: 2, timestepFeatures: 32 },
  optim: { lr: 1e-3, microBatchSize: 4, gradAccumSteps: 2 },
};
