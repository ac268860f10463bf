import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { attention, gelu, layerNorm } from '../../training/layers.js';
import { Rng } from '../../training/rng.js';

await selectTfBackend();
const rand = (rng: Rng, shape: number[]) =>
  tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, d) => a * d, 1))), shape);
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;

/** The textbook definitions, differentiated by tfjs itself: the references for the hand-written versions. */
function plainLayerNorm(x: tf.Tensor, gamma: tf.Tensor | null, beta: tf.Tensor | null, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  let y = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps)));
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return y;
}

void test('layerNorm: value and gradients (x, gamma, beta) match autodiff of the textbook formula', () => {
  const rng = Rng.derive(1, 'ln');
  const x = tf.add(tf.mul(rand(rng, [2, 5, 16]), 3), 1);
  const gamma = rand(rng, [16]);
  const beta = rand(rng, [16]);
  const w = rand(rng, [2, 5, 16]); // a non-uniform upstream gradient
  assert.ok(maxDiff(layerNorm(x, gamma, beta, 1e-5), plainLayerNorm(x, gamma, beta, 1e-5)) < 1e-5);
  const affine = (impl: typeof layerNorm) => (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(impl(a, g, b, 1e-5), w));
  const mine = tf.grads(affine(layerNorm))([x, gamma, beta]);
  const ref = tf.grads(affine(plainLayerNorm))([x, gamma, beta]);
  for (let i = 0; i < 3; i++) assert.ok(maxDiff(mine[i]!, ref[i]!) < 1e-4, `input ${i}: ${maxDiff(mine[i]!, ref[i]!)}`);
  const bare = (impl: typeof layerNorm) => (a: tf.Tensor) => tf.sum(tf.mul(impl(a, null, null, 1e-6), w));
  assert.ok(maxDiff(tf.grad(bare(layerNorm))(x), tf.grad(bare(plainLayerNorm))(x)) < 1e-4, 'without gamma and beta');
});

void test('attention: 4-D heads with the scale on q equal the per-head softmax(q k^T / sqrt(dh) + mask) v', () => {
  const rng = Rng.derive(2, 'att');
  const [B, N, M, D, H] = [2, 3, 4, 8, 2];
  const q = rand(rng, [B, N, D]);
  const k = rand(rng, [B, M, D]);
  const v = rand(rng, [B, M, D]);
  const keyMask = new Float32Array(B * H * M).fill(0);
  keyMask[3] = -1e9; // batch 0, head 0: key 3 hidden
  keyMask[M + 3] = -1e9; // batch 0, head 1
  const mask = tf.tensor3d(keyMask, [B * H, 1, M]);
  const got = attention(q, k, v, H, mask).arraySync() as number[][][];
  const qa = q.arraySync() as number[][][];
  const ka = k.arraySync() as number[][][];
  const va = v.arraySync() as number[][][];
  const dh = D / H;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < N; i++) {
        const s = Array.from({ length: M }, (_, j) => {
          let dot = 0;
          for (let c = 0; c < dh; c++) dot += qa[b]![i]![h * dh + c]! * ka[b]![j]![h * dh + c]!;
          return dot / Math.sqrt(dh) + keyMask[(b * H + h) * M + j]!;
        });
        const mx = Math.max(...s);
        const e = s.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, x) => a + x, 0);
        for (let c = 0; c < dh; c++) {
          const want = e.reduce((a, p, j) => a + (p / z) * va[b]![j]![h * dh + c]!, 0);
          assert.ok(Math.abs(got[b]![i]![h * dh + c]! - want) < 1e-5, `b${b} h${h} i${i} c${c}`);
        }
      }
    }
  }
});

void test('gelu: value and gradient match autodiff of 0.5 x (1 + erf(x / sqrt 2))', () => {
  const x = tf.mul(rand(Rng.derive(3, 'gelu'), [3, 50]), 3);
  const plain = (t: tf.Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.mul(t, Math.SQRT1_2)), 1));
  assert.ok(maxDiff(gelu(x), plain(x)) < 1e-6);
  const w = rand(Rng.derive(4, 'gelu'), [3, 50]);
  const g = (f: (t: tf.Tensor) => tf.Tensor) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), w)))(x);
  assert.ok(maxDiff(g(gelu), g(plain)) < 1e-5, String(maxDiff(g(gelu), g(plain))));
});
