/**
 * Where the denoiser works: pixel space (the identity codec, default, for small runs and tests) or
 * a frozen VAE's latent space. A VAE (e.g. an ONNX export run through ONNX Runtime) implements this
 * interface; it is never trained, so `encode` runs outside gradient tapes.
 */
import type * as tf from '@tensorflow/tfjs';

export interface LatentCodec {
  /** Recorded in lineage and state.json (e.g. `identity`, `onnx:sdxl-vae`). */
  readonly name: string;
  /** Latent channels and spatial downsampling factor (identity: 3 and 1). */
  readonly channels: number;
  readonly downsample: number;
  /** Images [B, H, W, 3] in [-1, 1] -> latents [B, H/f, W/f, channels] (scaled to ~unit variance). */
  encode(images: tf.Tensor4D): Promise<tf.Tensor4D>;
  /** Latents -> images in [-1, 1]. */
  decode(latents: tf.Tensor4D): Promise<tf.Tensor4D>;
}

/** Pixel space: latents are the images. */
export class IdentityCodec implements LatentCodec {
  readonly name = 'identity';
  readonly channels = 3;
  readonly downsample = 1;

  encode(images: tf.Tensor4D): Promise<tf.Tensor4D> {
    return Promise.resolve(images.clone());
  }

  decode(latents: tf.Tensor4D): Promise<tf.Tensor4D> {
    return Promise.resolve(latents.clone());
  }
}

/** Codec for a config's `codec` field. */
export function createLatentCodec(name: 'identity'): LatentCodec {
  if (name === 'identity') return new IdentityCodec();
  throw new Error(`unknown latent codec ${String(name)}`);
}
