import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { defineDenoiser, runDenoiser, type DenoiserShape } from '../../training/denoiser.js';
import { attentionMask } from '../../training/layers.js';
import { ParamStore } from '../../training/params.js';
import { Rng } from '../../training/rng.js';

await selectTfBackend();

const SHAPE: DenoiserShape = {
  size: 8,
  channels: 3,
  patchSize: 4,
  width: 16,
  depth: 2,
  heads: 2,
  mlpRatio: 2,
  dropout: 0,
  timestepFeatures: 16,
  zeroInit: true,
  contextWidth: 8,
};

void test('zero init (adaLN-Zero): every block starts as identity, so at step 0 the text context cannot change the output', async () => {
  const store = new ParamStore(0);
  defineDenoiser(store, SHAPE);
  for (let i = 0; i < SHAPE.depth; i++) {
    const w = await store.get(`denoiser.blocks.${i}.cross.out.weight`).data();
    assert.ok(
      w.every((v) => v === 0),
      `block ${i}: cross.out.weight is not zero-initialised`,
    );
  }
  // Give the (zero-initialised) output layers random weights, so the output shows what the blocks computed.
  const rng = Rng.derive(1, 'denoiser-test');
  for (const name of ['denoiser.final.adaln.weight', 'denoiser.final.linear.weight']) {
    const v = store.get(name);
    store.assign(name, rng.fillNormal(new Float32Array(v.size)), v.shape);
  }
  const latents = tf.tensor4d(rng.fillNormal(new Float32Array(2 * 8 * 8 * 3)), [2, 8, 8, 3]);
  const mask = attentionMask(new Float32Array(8).fill(1), 2, 2, 1, 4, false);
  const run = (context: tf.Tensor3D) =>
    runDenoiser(store, SHAPE, { latents, timesteps: [100, 700], context, contextMask: mask }, null);
  const a = run(tf.tensor3d(rng.fillNormal(new Float32Array(2 * 4 * 8)), [2, 4, 8]));
  const b = run(tf.tensor3d(rng.fillNormal(new Float32Array(2 * 4 * 8)), [2, 4, 8]));
  assert.ok(
    (await tf.max(tf.abs(a)).data())[0]! > 1e-3,
    'the output layer was made non-zero, so the output must be too',
  );
  const diff = (await tf.max(tf.abs(tf.sub(a, b))).data())[0]!;
  assert.equal(
    diff,
    0,
    `two different text contexts changed the initial output by ${diff}: a block is not identity at init`,
  );
  store.dispose();
});
