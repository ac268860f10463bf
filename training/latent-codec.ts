/**
 * Where the denoiser works: pixel space (the identity codec, default, for small runs and tests) or
 * a frozen VAE's latent space (`onnx-vae-codec.ts`: a diffusers AutoencoderKL exported to ONNX and
 * run through ONNX Runtime). A codec is never trained, so `encode` runs outside gradient tapes.
 */
import type * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from './config.js';

export interface LatentCodec {
  /** Recorded in lineage and state.json (e.g. `identity`, `onnx-vae:sdxl-vae`). */
  readonly name: string;
  /** sha256 identifying the codec's files (null for identity, which has none); recorded next to `name`. */
  readonly sha256: string | null;
  /** Latent channels and spatial downsampling factor (identity: 3 and 1). */
  readonly channels: number;
  readonly downsample: number;
  /** Images [B, H, W, 3] in [-1, 1] -> latents [B, H/f, W/f, channels] (scaled to ~unit variance). */
  encode(images: tf.Tensor4D): Promise<tf.Tensor4D>;
  /** Latents -> images in [-1, 1]. */
  decode(latents: tf.Tensor4D): Promise<tf.Tensor4D>;
  /** Release native resources (ONNX sessions). */
  dispose(): Promise<void>;
}

/** Pixel space: latents are the images. */
export class IdentityCodec implements LatentCodec {
  readonly name = 'identity';
  readonly sha256 = null;
  readonly channels = 3;
  readonly downsample = 1;

  encode(images: tf.Tensor4D): Promise<tf.Tensor4D> {
    return Promise.resolve(images.clone());
  }

  decode(latents: tf.Tensor4D): Promise<tf.Tensor4D> {
    return Promise.resolve(latents.clone());
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Codec for a config's `codec` field: `'identity'`, or `{ vae: dir }` for an ONNX VAE directory
 * (loaded lazily, so pixel-space runs never load ONNX Runtime).
 */
export async function createLatentCodec(codec: TrainingConfig['codec']): Promise<LatentCodec> {
  if (codec === 'identity') return new IdentityCodec();
  const { OnnxVaeCodec } = await import('./onnx-vae-codec.js');
  return OnnxVaeCodec.open(codec.vae);
}
