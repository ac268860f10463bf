import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../../infra/errors.js';
import { selectTfBackend, tfBackendPreference } from '../../infra/tfjs-backend.js';
import { runTrainingChunk } from '../../training/run-chunk.js';
import { tempStorage, twoShardDataset } from './shard-fixtures.js';
import { TEST_CONFIG } from './train-config.js';

void test('auto picks tensorflow when tfjs-node is importable, else wasm from disk, and records why', async () => {
  const choice = await selectTfBackend({ env: {} });
  assert.equal(tf.getBackend(), choice.name);
  // scripts/setup-tf-native.sh leaves kiln-native.json only after the built binding ran a matmul:
  // then auto must train on it, and the choice says which wheel it came from.
  const built = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].find((p) => existsSync(join(PROJECT_ROOT, 'node_modules', p, 'kiln-native.json')));
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
  const native = await selectTfBackend({ prefer: 'tensorflow' }).then((c) => c.name, (e: unknown) => e);
  if (typeof native === 'string') assert.equal(native, 'tensorflow');
  else assert.ok(native instanceof ConfigError && /tfjs-node/.test(native.fix));
});

void test('the default model trains on the cpu and wasm backends (matmul-type ops only)', async () => {
  const { storage, cleanup } = await tempStorage();
  try {
    const shards = await twoShardDataset(storage);
    for (const backend of ['cpu', 'wasm'] as const) {
      const r = await runTrainingChunk({ storage, runUri: storage.uri('runs', backend), config: { ...TEST_CONFIG, runtime: { backend } }, datasetShardUris: shards, fromStep: 0, steps: 2 });
      assert.equal(r.backend, backend);
      assert.equal(r.losses.length, 2);
      assert.ok(r.losses.every(Number.isFinite));
    }
  } finally {
    await cleanup();
  }
});

void test('native TensorFlow trains the same numbers as the cpu backend (same init, data, noise and dropout)', async (t) => {
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
      const r = await runTrainingChunk({ storage, runUri: storage.uri('runs', backend), config: { ...TEST_CONFIG, runtime: { backend } }, datasetShardUris: shards, fromStep: 0, steps: 3 });
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
