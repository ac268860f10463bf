/**
 * The fixed evaluation sample plan (prompt per sample index, fixed seed) and the generation loop
 * that turns a denoiser into 8-bit RGB images for FID, CLIP score and sample grids.
 *
 * Generated images are quantised to 8-bit exactly as if saved to PNG (x in [-1, 1] ->
 * round((x + 1) * 127.5), clamped), so generated and reference images reach the feature extractor
 * through the same path (decode -> clean resize), as clean-fid does for image folders.
 */
import * as tf from '@tensorflow/tfjs';
import type { RgbImage } from './clean-resize.js';
import { sampleBatch, type SamplerOptions, type SamplingDenoiser } from './sampling.js';

/** A small, varied default prompt set (objects, scenes, colours, counting, text-free). */
export const DEFAULT_EVAL_PROMPTS: readonly string[] = [
  'a red apple on a wooden table',
  'a photo of a cat sitting on a windowsill',
  'a mountain lake at sunrise',
  'a blue car parked on a city street',
  'a bowl of ramen with an egg',
  'an astronaut riding a horse',
  'a lighthouse on a rocky coast at night',
  'two dogs playing in the snow',
  'a watercolor painting of a forest',
  'a close-up of a sunflower',
  'a plate of sushi on a black background',
  'a snowy village with warm lights',
  'a green parrot on a branch',
  'a modern living room with large windows',
  'a sailboat on a calm sea',
  'a stack of pancakes with berries',
];

/** One planned sample: its index (the noise seed path) and its prompt. */
export interface PlannedSample {
  index: number;
  promptIndex: number;
  prompt: string;
}

/** Sample i uses prompt i mod |prompts|: the same plan for every evaluation of a run. */
export function evalSamplePlan(prompts: readonly string[], count: number): PlannedSample[] {
  if (prompts.length === 0) throw new RangeError('the evaluation prompt set is empty');
  return Array.from({ length: count }, (_, i) => ({
    index: i,
    promptIndex: i % prompts.length,
    prompt: prompts[i % prompts.length]!,
  }));
}

/** Images [B, H, W, 3] in [-1, 1] -> 8-bit RGB (as saved to PNG). */
export async function toRgbImages(images: tf.Tensor4D): Promise<RgbImage[]> {
  const [B, H, W, C] = images.shape;
  if (C !== 3) throw new RangeError(`expected 3 image channels, got ${C}`);
  const data = await images.data();
  const per = H * W * 3;
  return Array.from({ length: B }, (_, b) => {
    const px = new Uint8Array(per);
    for (let i = 0; i < per; i++) {
      const v = Math.round((data[b * per + i]! + 1) * 127.5);
      px[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return { width: W, height: H, data: px };
  });
}

/** Conditioning for a batch of prompts (cond) and for empty prompts (uncond, for guidance). */
export interface BatchConditioning<C> {
  cond: C;
  uncond: C | null;
  /** Release tensors held by the conditioning. */
  dispose?: () => void;
}

export interface GenerateOptions<C> {
  denoiser: SamplingDenoiser<C>;
  sampler: SamplerOptions;
  /** Encode a batch of prompts (the text encoder at this checkpoint). */
  encode: (prompts: string[]) => BatchConditioning<C> | Promise<BatchConditioning<C>>;
  /** Latents -> images in [-1, 1] (LatentCodec.decode; identity for pixel space). */
  decode: (x: tf.Tensor4D) => Promise<tf.Tensor4D>;
  batchSize: number;
}

/** Generate the planned samples batch by batch, yielding each image as soon as its batch is done. */
export async function* generateEvalImages<C>(
  plan: readonly PlannedSample[],
  o: GenerateOptions<C>,
): AsyncGenerator<{ sample: PlannedSample; image: RgbImage }> {
  for (let s = 0; s < plan.length; s += o.batchSize) {
    const batch = plan.slice(s, s + o.batchSize);
    const c = await o.encode(batch.map((p) => p.prompt));
    let images: RgbImage[];
    try {
      const x = await sampleBatch(
        o.denoiser,
        c.cond,
        c.uncond,
        batch.map((p) => p.index),
        o.sampler,
      );
      const decoded = await o.decode(x);
      try {
        images = await toRgbImages(decoded);
      } finally {
        if (decoded !== x) x.dispose();
        decoded.dispose();
      }
    } finally {
      c.dispose?.();
    }
    for (let i = 0; i < batch.length; i++) yield { sample: batch[i]!, image: images[i]! };
  }
}
