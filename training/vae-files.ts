/**
 * The on-disk layout of an ONNX VAE directory (Hugging Face Optimum diffusers export) and a cheap
 * check that it is there. No ONNX Runtime or TensorFlow.js import, so the kiln-io activity that
 * prepares a run can fail fast on a wrong `codec.vae` path before any GPU work is scheduled.
 */
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MissingFileError } from '../infra/errors.js';

/** The files a VAE directory must hold, relative to it. */
export const VAE_FILES = [
  'vae_encoder/model.onnx',
  'vae_encoder/config.json',
  'vae_decoder/model.onnx',
  'vae_decoder/config.json',
] as const;
/** Hashed too when present (ONNX external weights of a model over 2 GB). */
export const OPTIONAL_VAE_FILES = ['vae_encoder/model.onnx_data', 'vae_decoder/model.onnx_data'] as const;

export const HOW_TO =
  'point codec.vae at a diffusers AutoencoderKL exported with Optimum (`optimum-cli export onnx --model ' +
  '<diffusers model dir> <out>` writes vae_encoder/ and vae_decoder/; ' +
  'scripts/fixtures/make_tiny_vae.py shows a minimal export).';

/** Resolve `dir` and check that the four VAE files exist; MissingFileError naming the directory and the missing files. */
export async function assertVaeFiles(dirInput: string): Promise<string> {
  const dir = resolve(dirInput);
  const missing: string[] = [];
  for (const f of VAE_FILES) {
    await access(join(dir, f)).catch(() => {
      missing.push(f);
    });
  }
  if (missing.length > 0) {
    throw new MissingFileError(
      `VAE directory ${dir} lacks ${missing.join(', ')} (a VAE directory holds ${VAE_FILES.join(', ')})`,
      HOW_TO,
    );
  }
  return dir;
}
