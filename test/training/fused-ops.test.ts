/**
 * The custom-gradient ops that run TensorFlow ops by name on the native backend (training/layers.ts
 * `nativeLinear`, `nativeAttention`; training/native-ops.ts) against tfjs's generic composition of
 * the same layer, differentiated by tfjs: value and every input gradient, under a non-uniform
 * upstream gradient. Tolerance: |native - generic| <= 1e-5 * (1 + max |generic|) per tensor (float32
 * sums in another order; measured differences are ~1e-7 relative). Skipped without native TensorFlow
 * (the wasm/cpu fallback runs the generic path, which these tests use as the reference).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import {
  attentionMask,
  dropout,
  DropoutStream,
  genericAttention,
  genericLinear,
  linear,
  nativeAttention,
  nativeLinear,
} from '../../training/layers.js';
import { nativeBackend } from '../../training/native-ops.js';
import { Rng } from '../../training/rng.js';

await selectTfBackend();
const skip = nativeBackend() ? false : 'native TensorFlow (tfjs-node) is not the active backend';
const rand = (rng: Rng, shape: number[]) =>
  tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, d) => a * d, 1))), shape);

function assertClose(got: tf.Tensor, want: tf.Tensor, what: string): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const diff = tf.max(tf.abs(tf.sub(got, want))).dataSync()[0]!;
  const scale = tf.max(tf.abs(want)).dataSync()[0]!;
  assert.ok(diff <= 1e-5 * (1 + scale), `${what}: max |diff| ${diff} (max |reference| ${scale})`);
}

/** Value and gradients of sum(f(inputs) * w) for a fixed random upstream weight w. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], w: tf.Tensor) {
  const y = f(...inputs);
  const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), w)))(inputs);
  return { y, grads };
}

void test(
  'nativeLinear equals matMul + add (value, dx, dW, db) for 2-D and 3-D inputs, with and without bias',
  { skip },
  () => {
    const rng = Rng.derive(1, 'fused-linear');
    for (const xShape of [
      [6, 5],
      [3, 4, 5],
    ]) {
      const x = rand(rng, xShape);
      const weight = rand(rng, [7, 5]);
      const bias = rand(rng, [7]);
      const w = rand(rng, [...xShape.slice(0, -1), 7]);
      for (const withBias of [true, false]) {
        const inputs = withBias ? [x, weight, bias] : [x, weight];
        const mine = valueAndGrads((a, b, c) => nativeLinear(a!, b!, c), inputs, w);
        const ref = valueAndGrads((a, b, c) => genericLinear(a!, b!, c), inputs, w);
        const what = `x [${xShape}]${withBias ? ' + bias' : ''}`;
        assertClose(mine.y, ref.y, `${what}: value`);
        mine.grads.forEach((g, i) => assertClose(g, ref.grads[i]!, `${what}: gradient of input ${i}`));
      }
    }
    // The dispatcher takes the native path here.
    const x = rand(rng, [2, 3, 5]);
    const weight = rand(rng, [4, 5]);
    assertClose(linear(x, weight), genericLinear(x, weight), 'linear()');
  },
);

void test(
  'nativeAttention equals the tfjs composition (value, dq, dk, dv): self, causal-masked and cross attention',
  { skip },
  () => {
    const rng = Rng.derive(2, 'fused-attention');
    const [B, H, D] = [2, 2, 8];
    const cases: { name: string; N: number; M: number; mask?: tf.Tensor }[] = [
      { name: 'self, no mask', N: 5, M: 5 },
      {
        name: 'causal with padding',
        N: 4,
        M: 4,
        mask: attentionMask(new Float32Array([1, 1, 1, 0, 1, 1, 0, 0]), B, H, 4, 4, true),
      },
      {
        name: 'cross, key padding',
        N: 6,
        M: 3,
        mask: attentionMask(new Float32Array([1, 1, 0, 1, 1, 1]), B, H, 1, 3, false),
      },
    ];
    for (const c of cases) {
      const q = rand(rng, [B, c.N, D]);
      const k = rand(rng, [B, c.M, D]);
      const v = rand(rng, [B, c.M, D]);
      const w = rand(rng, [B, c.N, D]);
      const mine = valueAndGrads((a, b, d) => nativeAttention(a!, b!, d!, H, c.mask), [q, k, v], w);
      const ref = valueAndGrads((a, b, d) => genericAttention(a!, b!, d!, H, c.mask), [q, k, v], w);
      assertClose(mine.y, ref.y, `${c.name}: value`);
      ['q', 'k', 'v'].forEach((n, i) => assertClose(mine.grads[i]!, ref.grads[i]!, `${c.name}: d${n}`));
    }
  },
);

void test(
  'lean kernels: a same-shape Reshape or Cast shares the buffer, other reshapes and casts still compute',
  { skip },
  () => {
    const x = tf.tensor2d([1.5, -2, 3, 4.25, 5, 6], [2, 3]);
    const same = x.reshape([2, -1]);
    assert.deepEqual(same.shape, [2, 3]);
    assert.deepEqual([...same.dataSync()], [...x.dataSync()]);
    const flat = x.reshape([6]);
    assert.deepEqual(flat.shape, [6]);
    assert.deepEqual([...flat.dataSync()], [1.5, -2, 3, 4.25, 5, 6]);
    assert.deepEqual([...tf.cast(x, 'float32').dataSync()], [1.5, -2, 3, 4.25, 5, 6]);
    assert.deepEqual([...tf.cast(x, 'int32').dataSync()], [1, -2, 3, 4, 5, 6]);
    // Disposing the alias leaves the original readable (reference counted), and the other way round.
    same.dispose();
    assert.deepEqual([...x.dataSync()], [1.5, -2, 3, 4.25, 5, 6]);
    const alias = tf.cast(x, 'float32');
    x.dispose();
    assert.deepEqual([...alias.dataSync()], [1.5, -2, 3, 4.25, 5, 6]);
  },
);

void test(
  'native dropout: value x * mask / (1 - rate), gradient dy * the same mask, mask a pure function of (key, call)',
  { skip },
  () => {
    const rng = Rng.derive(3, 'fused-dropout');
    const rate = 0.25;
    const x = tf.add(tf.abs(rand(rng, [40, 100])), 0.1); // no zeros: a zero output means a dropped element
    const w = rand(rng, [40, 100]);
    const run = () => {
      const stream = new DropoutStream(7);
      const f = (a: tf.Tensor) => dropout(a, rate, stream);
      const y = f(x).dataSync();
      const stream2 = new DropoutStream(7);
      const g = tf
        .grad((a: tf.Tensor) => tf.sum(tf.mul(dropout(a, rate, stream2), w)))(x)
        .dataSync();
      return { y, g };
    };
    const { y, g } = run();
    const xs = x.dataSync();
    const ws = w.dataSync();
    let kept = 0;
    for (let i = 0; i < y.length; i++) {
      const keep = y[i] !== 0;
      if (keep) kept++;
      assert.ok(Math.abs(y[i]! - (keep ? xs[i]! / (1 - rate) : 0)) <= 1e-6 * (1 + Math.abs(xs[i]!)), `value ${i}`);
      assert.ok(Math.abs(g[i]! - (keep ? ws[i]! / (1 - rate) : 0)) <= 1e-6 * (1 + Math.abs(ws[i]!)), `gradient ${i}`);
    }
    const fraction = kept / y.length;
    assert.ok(Math.abs(fraction - (1 - rate)) < 0.03, `kept fraction ${fraction}`);
    assert.deepEqual([...run().y], [...y], 'same key and call index, same mask');
  },
);
