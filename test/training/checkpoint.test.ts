import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { sha256File } from '../../infra/hash.js';
import {
  CHECKPOINT_FORMAT,
  bestCheckpointStep,
  checkpointUri,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  recordCheckpointMetric,
  writeCheckpoint,
  type CheckpointState,
} from '../../training/checkpoint.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { CheckpointError } from '../../training/errors.js';
import { arraySource } from '../../training/safetensors.js';
import { tempStorage } from './shard-fixtures.js';

const { storage, cleanup } = await tempStorage();
test.after(cleanup);
const runUri = storage.uri('runs', 'ck');

function stateAt(step: number): Omit<CheckpointState, 'files'> {
  return {
    format: CHECKPOINT_FORMAT,
    step,
    rng: [1, 2, 3, 4],
    data: { epoch: 0, shard: 1, row: step },
    samplesSeen: step * 8,
    config: resolveTrainingConfig({}),
    backend: 'wasm',
    precision: 'fp32',
    tokenizer: 'byte-v1',
    codec: 'identity',
    datasetShardsSha256: 'x',
    losses: [0.5],
    lossesFromStep: step,
  };
}

async function save(step: number) {
  const tensors = [arraySource({ name: 'w', shape: [2], data: Float32Array.from([step, -step]) })];
  return writeCheckpoint(storage, runUri, stateAt(step), {
    'model.safetensors': { tensors, metadata: {} },
    'ema.safetensors': { tensors, metadata: { updates: String(step) } },
    'optimizer.safetensors': {
      tensors: [arraySource({ name: 'exp_avg.w', shape: [2], data: new Float32Array(2) })],
      metadata: { step: String(step) },
    },
  });
}

void test("written checkpoints load back with verified hashes; returned sha256s are the files'", async () => {
  const w = await save(1);
  assert.equal(w.uri, checkpointUri(storage, runUri, 1));
  assert.match(w.uri, /\/checkpoints\/step-000000001$/);
  for (const [name, sha] of Object.entries(w.sha256s))
    assert.equal(await sha256File(storage.localPath(storage.child(w.uri, name))), sha);
  const ck = await loadCheckpoint(storage, w.uri);
  assert.deepEqual(ck.state.data, { epoch: 0, shard: 1, row: 1 });
  assert.equal(ck.files['ema.safetensors'].metadata.updates, '1');
});

void test('a corrupted tensor file is detected on load', async () => {
  const w = await save(2);
  const path = storage.localPath(storage.child(w.uri, 'model.safetensors'));
  const bytes = await readFile(path);
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
  await writeFile(path, bytes);
  await assert.rejects(
    loadCheckpoint(storage, w.uri),
    (err: unknown) => err instanceof CheckpointError && /sha256/.test(err.message),
  );
});

void test('retention keeps the last K plus the best by metric, and drops interrupted writes', async () => {
  for (const step of [3, 4, 5, 6]) await save(step);
  // An interrupted write (no state.json) is invisible to listing.
  await storage.writeAtomic(storage.child(checkpointUri(storage, runUri, 4), 'state.json'), '');
  await storage.remove(storage.child(checkpointUri(storage, runUri, 4), 'state.json'));
  assert.deepEqual(
    (await listCheckpoints(storage, runUri)).map((c) => c.step),
    [1, 2, 3, 5, 6],
  );
  await recordCheckpointMetric(storage, runUri, 2, 'fid', 31.5, 'min');
  await recordCheckpointMetric(storage, runUri, 3, 'fid', 12.25, 'min');
  await recordCheckpointMetric(storage, runUri, 5, 'fid', 20, 'min');
  assert.equal(await bestCheckpointStep(storage, runUri, [1, 2, 3, 5, 6]), 3);
  const removed = await pruneCheckpoints(storage, runUri, 2);
  assert.deepEqual(removed.map((u) => u.split('/').pop()).sort(), [
    'step-000000001',
    'step-000000002',
    'step-000000004',
  ]);
  assert.deepEqual(
    (await listCheckpoints(storage, runUri)).map((c) => c.step),
    [3, 5, 6],
  );
  await assert.rejects(recordCheckpointMetric(storage, runUri, 6, 'clip', 0.3, 'max'), CheckpointError);
});
