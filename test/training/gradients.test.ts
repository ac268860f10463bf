/**
 * training/gradients.ts: the releasing backward pass gives tfjs's own `tf.variableGrads` numbers
 * bit for bit (same tape, same gradient functions, same accumulation order), leaves no tensor behind,
 * and holds no more at its peak (tf.profile's peakBytes). Its effect on a real step's peak RSS is
 * measured by bench:train (BENCHMARKS.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { variableGrads } from '../../training/gradients.js';
import { attention, embeddingLookup, gelu, layerNorm } from '../../training/layers.js';

await selectTfBackend();

/** A small transformer-shaped loss: embedding, 8 blocks of layer norm + attention + GELU MLP (with a shared weight). */
function model() {
  const v = (name: string, shape: number[], seed: number) =>
    tf.variable(tf.randomNormal(shape, 0, 0.2, 'float32', seed), true, `${name}-${seed}-${Math.random()}`);
  const table = v('table', [20, 16], 1);
  const gamma = v('gamma', [16], 2);
  const w1 = v('w1', [16, 32], 3);
  const w2 = v('w2', [32, 16], 4);
  const ids = tf.tensor1d([1, 5, 7, 3, 19, 0, 2, 2, 11, 4, 8, 9], 'int32');
  const loss = () =>
    tf.tidy(() => {
      let x: tf.Tensor = embeddingLookup(table as tf.Tensor as tf.Tensor2D, ids).reshape([2, 6, 16]);
      for (let i = 0; i < 8; i++) {
        x = tf.tidy(() => {
          const h = layerNorm(x, gamma, null, 1e-5);
          const a = tf.add(x, attention(h, h, h, 2));
          return tf.add(a, tf.matMul(gelu(tf.matMul(a.reshape([12, 16]), w1)), w2).reshape([2, 6, 16]));
        });
      }
      return tf.mean(tf.square(x)) as tf.Scalar;
    });
  return { vars: [table, gamma, w1, w2], loss, dispose: () => tf.dispose([table, gamma, w1, w2, ids]) };
}

void test('same gradients as tf.variableGrads, bit for bit; nothing left behind; no higher peak', async () => {
  const m = model();
  try {
    const before = tf.memory().numTensors;
    let ref!: { value: tf.Scalar; grads: tf.NamedTensorMap };
    const refProfile = await tf.profile(() => {
      ref = tf.variableGrads(m.loss, m.vars);
    });
    let mine!: { value: tf.Scalar; grads: tf.NamedTensorMap };
    const mineProfile = await tf.profile(() => {
      mine = variableGrads(m.loss, m.vars);
    });
    assert.deepEqual(await mine.value.data(), await ref.value.data());
    assert.deepEqual(Object.keys(mine.grads).sort(), Object.keys(ref.grads).sort());
    for (const name of Object.keys(ref.grads))
      assert.deepEqual(await mine.grads[name]!.data(), await ref.grads[name]!.data(), name);
    // Here the peak is the end of the forward pass for both (tfjs counts bytes per buffer, and many gradients share their dy's buffer).
    assert.ok(
      mineProfile.peakBytes <= refProfile.peakBytes,
      `peak ${mineProfile.peakBytes} vs tfjs's ${refProfile.peakBytes} bytes`,
    );
    tf.dispose([ref.value, mine.value, ...Object.values(ref.grads), ...Object.values(mine.grads)]);
    assert.equal(tf.memory().numTensors, before, 'no tensor leaked');
  } finally {
    m.dispose();
  }
});
