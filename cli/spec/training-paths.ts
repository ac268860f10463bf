/**
 * Model directories inside a training config (`codec.vae`, `textEncoder.clipDir`) are user paths:
 * a relative one is resolved against the file that names it (the training config or the pipeline
 * spec), never against whichever directory a worker happens to run in.
 */
import { isAbsolute } from 'node:path';
import { absoluteLocation } from '../../infra/location.js';
import type { TrainingConfigInput } from '../../training/config.js';

export function resolveTrainingConfigPaths(config: TrainingConfigInput, baseDir: string): TrainingConfigInput {
  const abs = (p: string) => (isAbsolute(p) ? p : absoluteLocation(p, baseDir)); // s3:// stays as it is
  const out: TrainingConfigInput = { ...config };
  const codec = config.codec;
  if (codec && typeof codec === 'object' && typeof codec.vae === 'string')
    out.codec = { ...codec, vae: abs(codec.vae) };
  const clipDir = config.textEncoder?.clipDir;
  if (typeof clipDir === 'string') out.textEncoder = { ...config.textEncoder, clipDir: abs(clipDir) };
  return out;
}
