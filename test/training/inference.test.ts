import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { sampleBatch } from '../../eval/sampling.js';
import { loadTrainedModel } from '../../training/inference.js';
import { runTrainingChunk } from '../../training/run-chunk.js';
import { tempStorage, twoShardDataset } from './shard-fixtures.js';
import { TEST_CONFIG } from './train-config.js';

const { storage, cleanup } = await tempStorage();
test.after(cleanup);
const shards = await twoShardDataset(storage);
const run = await runTrainingChunk({
  storage,
  runUri: storage.uri('runs', 'inf'),
  config: TEST_CONFIG,
  datasetShardUris: shards,
  fromStep: 0,
  steps: 3,
});

void test('a checkpoint loads for sampling: EMA weights by default, deterministic predictions (no dropout)', async () => {
  const ema = await loadTrainedModel(storage, run.checkpointUri);
  const raw = await loadTrainedModel(storage, run.checkpointUri, { weights: 'model' });
  assert.equal(ema.step, 3);
  assert.deepEqual(ema.latentShape, { height: 16, width: 16, channels: 3 });
  const xt = tf.randomNormal([2, 16, 16, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const t = tf.tensor1d([999, 10]);
  const c = ema.encode(['a red square', 'a blue square']);
  const p1 = await ema.denoiser.predict(xt, t, c.cond).data();
  const p2 = await ema.denoiser.predict(xt, t, c.cond).data();
  assert.deepEqual(p1, p2);
  assert.equal(p1.length, 2 * 16 * 16 * 3);
  const c2 = raw.encode(['a red square', 'a blue square']);
  assert.notDeepEqual(await raw.denoiser.predict(xt, t, c2.cond).data(), p1);
  c.dispose();
  c2.dispose();
  ema.dispose();
  raw.dispose();
});

for (const prediction of ['flow', 'epsilon', 'v'] as const) {
  void test(`a ${prediction} model samples through eval/ with its sampler and classifier-free guidance`, async () => {
    const runUri = storage.uri('runs', `inf-${prediction}`);
    const r =
      prediction === 'flow'
        ? run
        : await runTrainingChunk({
            storage,
            runUri,
            config: { ...TEST_CONFIG, objective: { prediction } },
            datasetShardUris: shards,
            fromStep: 0,
            steps: 2,
          });
    const model = await loadTrainedModel(storage, r.checkpointUri);
    assert.equal(model.denoiser.prediction, prediction);
    assert.equal(model.sampler, prediction === 'flow' ? 'euler' : 'ddim');
    const c = model.encode(['a red square', 'a green square']);
    const opts = { method: model.sampler, steps: 4, seed: 0, ...model.latentShape, schedule: model.schedule };
    const guided = await sampleBatch(model.denoiser, c.cond, c.uncond, [0, 1], { ...opts, guidanceScale: 3 });
    const plain = await sampleBatch(model.denoiser, c.cond, c.uncond, [0, 1], { ...opts, guidanceScale: 1 });
    assert.deepEqual(guided.shape, [2, 16, 16, 3]);
    assert.ok((await guided.data()).every(Number.isFinite));
    assert.ok((await tf.max(tf.abs(tf.sub(guided, plain))).data())[0]! > 0, 'guidance changes the samples');
    c.dispose();
    model.dispose();
  });
}
