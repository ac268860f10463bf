/**
 * Functional building blocks shared by the text encoder and the denoiser. Every op here has a
 * gradient on the wasm and cpu backends (matmul-type ops only: no convolutions, whose filter
 * gradient the wasm backend lacks). Randomness (dropout) comes only from the caller's
 * `DropoutStream`, a pure function of (key, call index).
 */
import * as tf from '@tensorflow/tfjs';
import { nativeBackend, statelessUniform } from './native-ops.js';
import { Rng } from './rng.js';

/**
 * Where a forward pass's dropout masks come from: mask number i of a pass keyed `key` is a pure
 * function of (key, i, shape). The trainer draws `key` from its training `Rng` once per micro-batch
 * (so checkpoints need nothing more than that Rng's state); call sites take indexes in forward order.
 * On native TensorFlow the mask is drawn on the device (StatelessRandomUniform, Philox, seed
 * [key, i]); on wasm and cpu in JavaScript from `Rng.derive(key, 'dropout', i)`. The two backends
 * therefore draw different masks for the same key (each is deterministic on its own).
 */
export class DropoutStream {
  private calls = 0;
  constructor(readonly key: number) {}
  /** Seed words of the next mask. */
  nextSeed(): [number, number] {
    return [this.key, this.calls++];
  }
}

/** Dropout source for a forward pass: `null` means evaluation (no dropout). */
export type DropoutRng = DropoutStream | null;

/** y = x W^T + b with W in PyTorch layout [out, in]; x is [..., in]. */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.shape.length - 1]!;
  const outDim = weight.shape[0]!;
  const flat = x.reshape([-1, inDim]);
  let y: tf.Tensor = tf.matMul(flat as tf.Tensor2D, weight as tf.Tensor2D, false, true);
  if (bias) y = tf.add(y, bias);
  return y.reshape([...x.shape.slice(0, -1), outDim]);
}

/** Layer normalisation over the last axis (biased variance, as PyTorch). */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return y;
}

/** Exact GELU: 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** CLIP's quick GELU: x * sigmoid(1.702 x). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/** Inverted dropout with the next mask of `stream` (identity when `stream` is null or rate is 0). */
export function dropout(x: tf.Tensor, rate: number, stream: DropoutRng): tf.Tensor {
  if (!stream || rate <= 0) return x;
  const seed = stream.nextSeed();
  const keep = 1 / (1 - rate);
  const be = nativeBackend();
  if (be) {
    // Built outside any gradient: the mask is a constant of the step.
    const mask = tf.tidy(() => tf.mul(tf.cast(tf.greaterEqual(statelessUniform(be, x.shape, seed), rate), 'float32'), keep));
    return tf.mul(x, mask);
  }
  const rng = Rng.derive(seed[0], 'dropout', seed[1]);
  const n = x.size;
  const mask = new Float32Array(n);
  for (let i = 0; i < n; i++) mask[i] = rng.uniform() >= rate ? keep : 0;
  return tf.mul(x, tf.tensor(mask, x.shape, 'float32'));
}

/**
 * Row lookup `table[ids]` whose gradient is a scatter-add (the wasm backend has no
 * UnsortedSegmentSum, which tf.gather's own gradient needs).
 */
export function embeddingLookup(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  const lookup = tf.customGrad((...inputs) => {
    const t = inputs[0] as tf.Tensor;
    const save = inputs[1] as tf.GradSaveFunc;
    // The ids are created inside the forward scope: save them so the backward pass still has them.
    save([ids]);
    return { value: tf.gather(t, ids), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.scatterND(saved[0]!.reshape([-1, 1]), dy, t.shape)] };
  });
  return lookup(table) as tf.Tensor2D;
}

/**
 * Multi-head scaled dot-product attention. q: [B, N, D], k and v: [B, M, D]; `mask` is additive
 * (0 or a large negative number), broadcastable to [B * heads, N, M].
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, mask?: tf.Tensor): tf.Tensor {
  const [B, N, D] = q.shape as [number, number, number];
  const M = k.shape[1]!;
  const dh = D / heads;
  const split = (t: tf.Tensor, len: number) => t.reshape([B, len, heads, dh]).transpose([0, 2, 1, 3]).reshape([B * heads, len, dh]) as tf.Tensor3D;
  let scores: tf.Tensor = tf.mul(tf.matMul(split(q, N), split(k, M), false, true), 1 / Math.sqrt(dh));
  if (mask) scores = tf.add(scores, mask);
  const probs = tf.softmax(scores) as tf.Tensor3D;
  const out = tf.matMul(probs, split(v, M));
  return out.reshape([B, heads, N, dh]).transpose([0, 2, 1, 3]).reshape([B, N, D]);
}

export const MASKED = -1e9;

/**
 * Additive attention mask [B * heads, queries, keys] from a key mask [B, keys] (1 = attend), with an
 * optional causal constraint (query i sees keys j <= i). Built in JS: it holds no trainable values.
 */
export function attentionMask(keyMask: Float32Array, batch: number, heads: number, queries: number, keys: number, causal: boolean): tf.Tensor3D {
  const rows = causal ? queries : 1;
  const out = new Float32Array(batch * heads * rows * keys);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < rows; i++) {
        const base = ((b * heads + h) * rows + i) * keys;
        for (let j = 0; j < keys; j++) {
          const visible = keyMask[b * keys + j]! > 0 && (!causal || j <= i);
          out[base + j] = visible ? 0 : MASKED;
        }
      }
    }
  }
  return tf.tensor3d(out, [batch * heads, rows, keys]);
}
