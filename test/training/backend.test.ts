import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../../infra/errors.js';
import { selectTfBackend, tfBackendPreference, type TfBackendName } from '../../infra/tfjs-backend.js';
import { dropout, DropoutStream } from '../../training/layers.js';
import { runTrainingChunk } from '../../training/run-chunk.js';
import { tempStorage, twoShardDataset } from './shard-fixtures.js';
import { TEST_CONFIG } from './train-config.js';

void test('auto picks tensorflow when tfjs-node is importable, else wasm from disk, and records why', async () => {
  const choice = await selectTfBackend({ env: {} });
  assert.equal(tf.getBackend(), choice.name);
  // scripts/setup-tf-native.sh leaves kiln-native.json only after the built binding ran a matmul:
  // then auto must train on it, and the choice says which wheel it came from.
  const built = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].find((p) =>
    existsSync(join(PROJECT_ROOT, 'node_modules', p, 'kiln-native.json')),
  );
  if (built) {
    assert.equal(choice.name, 'tensorflow', JSON.stringify(choice.skipped));
    assert.equal(choice.provider, built);
    assert.match(choice.build!.wheel, /^tensorflow(_cpu)?-2\.18\.0-/);
    assert.match(choice.build!.wheelSha256, /^[0-9a-f]{64}$/);
  }
  if (choice.name !== 'tensorflow') {
    assert.equal(choice.name, 'wasm');
    assert.equal(choice.skipped[0]!.name, 'tensorflow');
    assert.match(choice.skipped[0]!.reason, /tfjs-node/);
  }
  assert.equal(choice.precision, 'fp32');
});

void test('KILN_TF_BACKEND forces a backend; bad values and unavailable forced backends are ConfigErrors', async () => {
  assert.equal(tfBackendPreference({ env: { KILN_TF_BACKEND: ' CPU ' } }), 'cpu');
  assert.throws(() => tfBackendPreference({ env: { KILN_TF_BACKEND: 'webgpu' } }), ConfigError);
  const cpu = await selectTfBackend({ env: { KILN_TF_BACKEND: 'cpu' } });
  assert.equal(cpu.name, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  const native = await selectTfBackend({ prefer: 'tensorflow' }).then(
    (c) => c.name,
    (e: unknown) => e,
  );
  if (typeof native === 'string') assert.equal(native, 'tensorflow');
  else assert.ok(native instanceof ConfigError && /tfjs-node/.test(native.fix));
});

void test('the default model trains on the cpu and wasm backends (matmul-type ops only)', async () => {
  const { storage, cleanup } = await tempStorage();
  try {
    const shards = await twoShardDataset(storage);
    for (const backend of ['cpu', 'wasm'] as const) {
      const r = await runTrainingChunk({
        storage,
        runUri: storage.uri('runs', backend),
        config: { ...TEST_CONFIG, runtime: { backend } },
        datasetShardUris: shards,
        fromStep: 0,
        steps: 2,
      });
      assert.equal(r.backend, backend);
      assert.equal(r.losses.length, 2);
      assert.ok(r.losses.every(Number.isFinite));
    }
  } finally {
    await cleanup();
  }
});

void test('native TensorFlow trains the same numbers as the cpu backend (same init, data and noise; dropout off, since the backends draw masks differently)', async (t) => {
  const native = await selectTfBackend({ prefer: 'tensorflow' }).catch(() => null);
  if (!native) {
    t.skip('native TensorFlow is not built here (scripts/setup-tf-native.sh)');
    return;
  }
  const { storage, cleanup } = await tempStorage();
  try {
    const shards = await twoShardDataset(storage);
    const losses: Record<string, number[]> = {};
    for (const backend of ['tensorflow', 'cpu'] as const) {
      const r = await runTrainingChunk({
        storage,
        runUri: storage.uri('runs', backend),
        config: { ...TEST_CONFIG, denoiser: { ...TEST_CONFIG.denoiser, dropout: 0 }, runtime: { backend } },
        datasetShardUris: shards,
        fromStep: 0,
        steps: 3,
      });
      assert.equal(r.backend, backend);
      losses[backend] = r.losses;
    }
    for (let i = 0; i < 3; i++) {
      const [a, b] = [losses.tensorflow![i]!, losses.cpu![i]!];
      assert.ok(Math.abs(a - b) <= 1e-4 * Math.abs(b), `step ${i + 1}: tensorflow ${a} vs cpu ${b}`);
    }
  } finally {
    await cleanup();
  }
});

void test('dropout masks: a pure function of (key, call index) on every backend, about `rate` zeros, inverted scaling, gradient through the mask', async () => {
  const backends: TfBackendName[] = ['cpu', 'wasm'];
  if (
    await selectTfBackend({ prefer: 'tensorflow' }).then(
      () => true,
      () => false,
    )
  )
    backends.push('tensorflow');
  for (const name of backends) {
    await selectTfBackend({ prefer: name });
    const x = tf.ones([64, 100]);
    const draw = (key: number, skip: number) => {
      const s = new DropoutStream(key);
      for (let i = 0; i < skip; i++) s.nextSeed();
      return tf.tidy(() => dropout(x, 0.25, s)).dataSync();
    };
    const a = draw(5, 0);
    assert.deepEqual(draw(5, 0), a, `${name}: same key and index, same mask`);
    assert.notDeepEqual(draw(5, 1), a, `${name}: the next call index draws another mask`);
    assert.notDeepEqual(draw(6, 0), a, `${name}: another key draws another mask`);
    const zeros = a.filter((v) => v === 0).length / a.length;
    assert.ok(zeros > 0.2 && zeros < 0.3, `${name}: ${zeros} zeros at rate 0.25`);
    assert.ok(
      a.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6),
      `${name}: kept values scaled by 1/(1-rate)`,
    );
    const g = tf
      .grad((t: tf.Tensor) => tf.sum(dropout(t, 0.25, new DropoutStream(5))))(x)
      .dataSync();
    assert.deepEqual(g, a, `${name}: d(sum(dropout(x)))/dx is the mask`);
    assert.equal(dropout(x, 0.25, null), x, 'no stream: evaluation, identity');
    x.dispose();
  }
});
