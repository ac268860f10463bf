/**
 * Functional building blocks shared by the text encoder and the denoiser. Every op here has a
 * gradient on the wasm and cpu backends (matmul-type ops only: no convolutions, whose filter
 * gradient the wasm backend lacks). Randomness (dropout) comes only from the caller's
 * `DropoutStream`, a pure function of (key, call index).
 */
import * as tf from '@tensorflow/tfjs';
import { batchMatMul, biasAdd, biasAddGrad, nativeBackend, statelessUniform, swapAxes12 } from './native-ops.js';
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

/**
 * y = x W^T + b with W in PyTorch layout [out, in]; x is [..., in]. On native TensorFlow it is one
 * custom-gradient op (`nativeLinear`); elsewhere tfjs's matMul + add (`genericLinear`). Same numbers
 * (tested: test/training/fused-ops.test.ts).
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  return nativeBackend() ? nativeLinear(x, weight, bias) : genericLinear(x, weight, bias);
}

/** tfjs's composition: matMul (on a 2-D view of x) + add. Runs on every backend. */
export function genericLinear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  // A 2-D input needs no reshapes (each op, even a reshape, costs dispatch time).
  if (x.rank === 2) {
    const y = tf.matMul(x as tf.Tensor2D, weight as tf.Tensor2D, false, true);
    return bias ? tf.add(y, bias) : y;
  }
  const inDim = x.shape[x.shape.length - 1]!;
  const outDim = weight.shape[0]!;
  const flat = x.reshape([-1, inDim]);
  let y: tf.Tensor = tf.matMul(flat as tf.Tensor2D, weight as tf.Tensor2D, false, true);
  if (bias) y = tf.add(y, bias);
  return y.reshape([...x.shape.slice(0, -1), outDim]);
}

/**
 * The linear layer in TensorFlow ops with its gradient written out (native backend only):
 * forward BatchMatMulV2(x, W, adj_y) on x of any rank (no reshapes) + BiasAdd; backward
 * dx = BatchMatMulV2(dy, W), dW = dy^T x on 2-D views, db = BiasAddGrad(dy). 2 + 5 ops where tfjs's
 * composition issues 4 + 7 (its add gradient reduces and reshapes, its matMul wants 2-D or 3-D views).
 */
export function nativeLinear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  const inDim = weight.shape[1]!;
  const outDim = weight.shape[0]!;
  if (x.shape[x.rank - 1] !== inDim)
    throw new Error(`linear: input has ${x.shape[x.rank - 1]} features, the weight [${weight.shape}] takes ${inDim}`);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xIn = args[0] as tf.Tensor;
    const w = args[1] as tf.Tensor;
    const b = bias ? (args[2] as tf.Tensor) : null;
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xw = batchMatMul(xIn, w, false, true);
    save([xIn, w]);
    return {
      value: b ? biasAdd(xw, b) : xw,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xs, ws] = saved as [tf.Tensor, tf.Tensor];
          const dx = batchMatMul(dy, ws, false, false);
          const dy2 = dy.rank === 2 ? dy : dy.reshape([-1, outDim]);
          const x2 = xs.rank === 2 ? xs : xs.reshape([-1, inDim]);
          const dw = batchMatMul(dy2, x2, true, false);
          return b ? [dx, dw, biasAddGrad(dy)] : [dx, dw];
        }),
    };
  });
  return bias ? f(x, weight, bias) : f(x, weight);
}

/**
 * Layer normalisation over the last axis (biased variance, as PyTorch), with its gradient written
 * out (as PyTorch's native_layer_norm_backward) instead of tfjs's differentiation of moments(),
 * which issues about three times the ops:
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma
 *   dgamma = sum(dy * xhat), dbeta = sum(dy)   (over all but the last axis)
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): tf.Tensor {
  const lastAxis = x.rank - 1;
  const outer = [...Array(lastAxis).keys()];
  const inputs: tf.Tensor[] = [x, ...(gamma ? [gamma] : []), ...(beta ? [beta] : [])];
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xIn = args[0] as tf.Tensor;
    const g = gamma ? (args[1] as tf.Tensor) : null;
    const b = beta ? (args[gamma ? 2 : 1] as tf.Tensor) : null;
    const centered = tf.sub(xIn, tf.mean(xIn, lastAxis, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), lastAxis, true), eps));
    const xhat = tf.mul(centered, rstd);
    let y = g ? tf.mul(xhat, g) : xhat;
    if (b) y = tf.add(y, b);
    save([xhat, rstd]);
    return {
      value: y,
      // In its own scope: the temporaries go as soon as the gradients exist (training/gradients.ts frees as it walks).
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xh, rs] = saved as [tf.Tensor, tf.Tensor];
          const gy = g ? tf.mul(dy, g) : dy;
          const dx = tf.mul(
            rs,
            tf.sub(tf.sub(gy, tf.mean(gy, lastAxis, true)), tf.mul(xh, tf.mean(tf.mul(gy, xh), lastAxis, true))),
          );
          const grads = [dx];
          if (g) grads.push(tf.sum(tf.mul(dy, xh), outer));
          if (b) grads.push(tf.sum(dy, outer));
          return grads;
        }),
    };
  });
  return norm(...inputs);
}

/**
 * Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), with its gradient written out:
 * dy * (Phi(x) + x phi(x)). Only x is saved (Phi is recomputed in the backward pass, 3 ops): on the
 * widest activation of each block that keeps one tensor of [B, N, 4D] fewer alive per block.
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  const cdf = (t: tf.Tensor) => tf.mul(tf.add(tf.erf(tf.mul(t, Math.SQRT1_2)), 1), 0.5);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xIn = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    save([xIn]);
    return {
      value: tf.mul(xIn, cdf(xIn)),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const xs = saved[0]!;
          const pdf = tf.mul(tf.exp(tf.mul(tf.square(xs), -0.5)), 1 / Math.sqrt(2 * Math.PI));
          return [tf.mul(dy, tf.add(cdf(xs), tf.mul(xs, pdf)))];
        }),
    };
  });
  return f(x);
}

/** CLIP's quick GELU: x * sigmoid(1.702 x). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/**
 * Inverted dropout with the next mask of `stream` (identity when `stream` is null or rate is 0).
 * On native TensorFlow it is a custom-gradient op that saves only the boolean keep mask (1 byte per
 * element): tfjs's mul would keep the float mask and the input alive for the backward pass (8 bytes
 * per element, on the widest activations). Elsewhere the mask is drawn in JS and applied with tf.mul.
 */
export function dropout(x: tf.Tensor, rate: number, stream: DropoutRng): tf.Tensor {
  if (!stream || rate <= 0) return x;
  const seed = stream.nextSeed();
  const keep = 1 / (1 - rate);
  const be = nativeBackend();
  if (be) {
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const xIn = args[0] as tf.Tensor;
      const save = args[1] as tf.GradSaveFunc;
      const kept = tf.greaterEqual(statelessUniform(be, xIn.shape, seed), rate);
      save([kept]);
      const scaled = (t: tf.Tensor, m: tf.Tensor) => tf.mul(t, tf.mul(tf.cast(m, 'float32'), keep));
      return {
        value: scaled(xIn, kept),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => [scaled(dy, saved[0]!)]),
      };
    });
    return f(x);
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
    return {
      value: tf.gather(t, ids),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.scatterND(saved[0]!.reshape([-1, 1]), dy, t.shape)],
    };
  });
  return lookup(table) as tf.Tensor2D;
}

/**
 * Multi-head scaled dot-product attention. q: [B, N, D], k and v: [B, M, D]; `mask` is additive
 * (0 or a large negative number), [B * heads, N or 1, M]. On native TensorFlow one custom-gradient
 * op (`nativeAttention`); elsewhere tfjs's composition (`genericAttention`). Same numbers (tested).
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, mask?: tf.Tensor): tf.Tensor {
  return nativeBackend() ? nativeAttention(q, k, v, heads, mask) : genericAttention(q, k, v, heads, mask);
}

/**
 * Attention in tfjs ops, differentiated by tfjs: heads are a 4-D batch ([B, heads, len, dh]: one
 * reshape and one transpose per operand), and the 1/sqrt(dh) scale goes on q, the smaller tensor.
 */
export function genericAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, mask?: tf.Tensor): tf.Tensor {
  const [B, N, D] = q.shape as [number, number, number];
  const M = k.shape[1]!;
  const dh = D / heads;
  const split = (t: tf.Tensor, len: number) => t.reshape([B, len, heads, dh]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  let scores: tf.Tensor = tf.matMul(split(tf.mul(q, 1 / Math.sqrt(dh)), N), split(k, M), false, true);
  if (mask) scores = tf.add(scores, mask.reshape([B, heads, mask.shape[1]!, M]));
  const probs = tf.softmax(scores) as tf.Tensor4D;
  const out = tf.matMul(probs, split(v, M));
  return out.transpose([0, 2, 1, 3]).reshape([B, N, D]);
}

/**
 * Attention as one custom-gradient op on native TensorFlow. Heads are a reshape ([B, len, heads, dh],
 * no copy) and one transpose to [B, heads, len, dh]; the products are BatchMatMulV2 on that layout
 * (Einsum on the token-major layout transposes inside every call: 6 calls, 2-3 transposes each,
 * where this transposes 8 times in all). The backward pass is written out (softmax gradient
 * p * (dp - sum(dp * p))), saving only the head-major q, k, v and the probabilities.
 */
export function nativeAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, mask?: tf.Tensor): tf.Tensor {
  const [B, N, D] = q.shape as [number, number, number];
  const M = k.shape[1]!;
  const dh = D / heads;
  const scale = 1 / Math.sqrt(dh);
  const toHeads = (t: tf.Tensor, len: number) => swapAxes12(t.reshape([B, len, heads, dh]));
  const fromHeads = (t: tf.Tensor, len: number) => swapAxes12(t).reshape([B, len, D]);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[3] as tf.GradSaveFunc;
    const qh = toHeads(args[0] as tf.Tensor, N);
    const kh = toHeads(args[1] as tf.Tensor, M);
    const vh = toHeads(args[2] as tf.Tensor, M);
    let scores = tf.mul(batchMatMul(qh, kh, false, true), scale);
    if (mask) scores = tf.add(scores, mask.reshape([B, heads, mask.shape[1]!, M]));
    const probs = tf.softmax(scores);
    save([qh, kh, vh, probs]);
    return {
      value: fromHeads(batchMatMul(probs, vh, false, false), N),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [qs, ks, vs, p] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
          const dyh = toHeads(dy, N);
          const dp = batchMatMul(dyh, vs, false, true);
          const dv = batchMatMul(p, dyh, true, false);
          const ds = tf.mul(tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true))), scale);
          const dq = batchMatMul(ds, ks, false, false);
          const dk = batchMatMul(ds, qs, true, false);
          return [fromHeads(dq, N), fromHeads(dk, M), fromHeads(dv, M)];
        }),
    };
  });
  return f(q, k, v);
}

export const MASKED = -1e9;

/**
 * Additive attention mask [B * heads, queries, keys] from a key mask [B, keys] (1 = attend), with an
 * optional causal constraint (query i sees keys j <= i). Built in JS: it holds no trainable values.
 */
export function attentionMask(
  keyMask: Float32Array,
  batch: number,
  heads: number,
  queries: number,
  keys: number,
  causal: boolean,
): tf.Tensor3D {
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
