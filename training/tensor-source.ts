/**
 * Device tensors as safetensors sources (safetensors.ts `TensorSource`): a checkpoint file is
 * written from slices of at most `CHUNK_ELEMENTS` values, each read to the host when its turn comes.
 * Reading whole tensors first held model, EMA and both Adam moments on the host at once (4 floats
 * per parameter: ~170 MB on the 10.6M config, ~2 GB on dit-s2-256) before V8 collected any of them;
 * small chunks are collected as the write goes (measured on 170 MB: +162 MiB peak RSS whole, +44
 * MiB in 4 MiB chunks).
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorSource } from './safetensors.js';

export const CHUNK_ELEMENTS = 1 << 20;

/** Elements [offset, offset + size of `shape`) of `tensor` (read as a flat vector), as a source named `name`. */
export function deviceSource(name: string, shape: number[], tensor: tf.Tensor, offset = 0): TensorSource {
  const count = shape.reduce((a, d) => a * d, 1);
  if (offset + count > tensor.size)
    throw new Error(`tensor ${name}: [${offset}, ${offset + count}) is past the ${tensor.size} values it is read from`);
  return {
    name,
    shape,
    async *chunks() {
      for (let at = 0; at < count; at += CHUNK_ELEMENTS) {
        const n = Math.min(CHUNK_ELEMENTS, count - at);
        const part = tf.tidy(() => tf.slice(tensor.reshape([tensor.size]), [offset + at], [n]));
        try {
          yield (await part.data()) as Float32Array;
        } finally {
          part.dispose();
        }
      }
    },
  };
}

/** Sources sorted by name (the order checkpoint files keep their tensors in). */
export function byName(sources: TensorSource[]): TensorSource[] {
  return sources.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
