import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { sha256File } from '../../infra/hash.js';
import { checkpointUri, listCheckpoints, loadCheckpoint } from '../../training/checkpoint.js';
import { CheckpointError, NonFiniteLossError } from '../../training/errors.js';
import { runTrainingChunk, type TrainingChunkResult } from '../../training/run-chunk.js';
import { tempStorage, twoShardDataset } from './shard-fixtures.js';
import { TEST_CONFIG } from './train-config.js';

const { storage, root, cleanup } = await tempStorage();
const shards = await twoShardDataset(storage);
test.after(cleanup);
const chunk = (run: string, fromStep: number, steps: number, config = TEST_CONFIG) =>
  runTrainingChunk({ storage, runUri: storage.uri('runs', run), config, datasetShardUris: shards, fromStep, steps });

async function chunkInChildProcess(
  run: string,
  fromStep: number,
  steps: number,
  config = TEST_CONFIG,
): Promise<TrainingChunkResult> {
  const script = fileURLToPath(new URL('./chunk-child.js', import.meta.url));
  const args = JSON.stringify({ runUri: storage.uri('runs', run), config, shards, fromStep, steps });
  const { stdout } = await promisify(execFile)(process.execPath, [script, root, args], { env: process.env });
  return JSON.parse(stdout.trim().split('\n').pop()!) as TrainingChunkResult;
}

void test('killed after 3 steps and resumed in a new process: same losses and bit-identical checkpoint as 6 straight steps', async () => {
  const straight = await chunk('straight', 0, 6);
  const first = await chunk('resumed', 0, 3);
  // Everything the second half knows comes from the step-3 checkpoint on disk.
  const second = await chunkInChildProcess('resumed', 3, 3);
  assert.equal(straight.step, 6);
  assert.equal(second.step, 6);
  assert.deepEqual([...first.losses, ...second.losses], straight.losses);
  assert.equal(straight.losses.length, 6);
  assert.ok(straight.losses.every(Number.isFinite));
  assert.deepEqual(second.sha256s, straight.sha256s, 'model, EMA, optimizer and state.json are byte-identical');
  assert.deepEqual(second.dataPosition, straight.dataPosition);
  assert.equal(second.backend, straight.backend);
  // The returned hashes are the files' hashes.
  for (const name of ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors', 'state.json']) {
    assert.equal(
      await sha256File(storage.localPath(storage.child(straight.checkpointUri, name))),
      straight.sha256s[name],
    );
  }
});

for (const backend of ['cpu', 'wasm'] as const) {
  void test(`the same holds on the ${backend} fallback backend`, async () => {
    const config = { ...TEST_CONFIG, runtime: { backend } };
    const straight = await chunk(`${backend}-straight`, 0, 4, config);
    const first = await chunk(`${backend}-resumed`, 0, 2, config);
    const second = await chunkInChildProcess(`${backend}-resumed`, 2, 2, config);
    assert.equal(second.backend, backend);
    assert.deepEqual([...first.losses, ...second.losses], straight.losses);
    assert.deepEqual(second.sha256s, straight.sha256s);
  });
}

void test('a checkpoint holds both networks, EMA, Adam moments and the full resumable state', async () => {
  const ck = await loadCheckpoint(storage, checkpointUri(storage, storage.uri('runs', 'straight'), 6));
  const model = ck.files['model.safetensors'];
  assert.ok(model.tensors.has('text_model.embeddings.token_embedding.weight'));
  assert.ok(model.tensors.has('denoiser.blocks.1.cross.k.weight'));
  assert.deepEqual(model.tensors.get('denoiser.blocks.0.cross.k.weight')!.shape, [32, 32]);
  assert.deepEqual([...ck.files['ema.safetensors'].tensors.keys()].sort(), [...model.tensors.keys()].sort());
  assert.ok(ck.files['optimizer.safetensors'].tensors.has('exp_avg_sq.denoiser.final.linear.weight'));
  assert.equal(ck.files['optimizer.safetensors'].metadata.step, '6');
  const s = ck.state;
  assert.equal(s.step, 6);
  assert.equal(s.samplesSeen, 6 * 2 * 4);
  assert.equal(s.rng.length, 4);
  assert.equal(s.losses.length, 6);
  assert.equal(s.config.objective.prxWeight, 0.01);
  assert.match(s.backend, /^(wasm|cpu|tensorflow)$/);
  assert.equal(s.precision, 'fp32');
});

void test('a repeated chunk returns the recorded result without training (idempotent)', async () => {
  const again = await chunk('resumed', 0, 3);
  const original = await chunk('resumed', 3, 3);
  assert.equal(again.alreadyDone, true);
  assert.equal(again.step, 3);
  assert.equal(again.losses.length, 3);
  assert.equal(original.alreadyDone, true);
  assert.equal(original.step, 6);
  assert.equal((await listCheckpoints(storage, storage.uri('runs', 'resumed'))).length, 2);
});

void test('resuming with a different model config or from a missing step is a CheckpointError', async () => {
  await assert.rejects(
    chunk('resumed', 6, 1, { ...TEST_CONFIG, denoiser: { ...TEST_CONFIG.denoiser, dropout: 0.2 } }),
    CheckpointError,
  );
  await assert.rejects(chunk('resumed', 9, 1), CheckpointError);
  await assert.rejects(chunk('never-started', 2, 1), CheckpointError);
});

void test('cancellation stops after the current step and checkpoints it', async () => {
  const ac = new AbortController();
  const r = await runTrainingChunk({
    storage,
    runUri: storage.uri('runs', 'cancel'),
    config: TEST_CONFIG,
    datasetShardUris: shards,
    fromStep: 0,
    steps: 10,
    signal: ac.signal,
    onProgress: (p) => {
      if (p.step === 2) ac.abort();
    },
  });
  assert.equal(r.cancelled, true);
  assert.equal(r.step, 2);
  assert.deepEqual(
    (await listCheckpoints(storage, storage.uri('runs', 'cancel'))).map((c) => c.step),
    [2],
  );
});

void test('a NaN/Inf loss stops with NonFiniteLossError and keeps the last good checkpoint', async () => {
  const diverging = {
    ...TEST_CONFIG,
    optim: { ...TEST_CONFIG.optim, lr: 1e30, warmupFraction: 0, constantFraction: 1 },
  };
  const ok = await chunk('nan', 0, 1, diverging);
  assert.equal(ok.step, 1);
  await assert.rejects(
    chunk('nan', 1, 5, diverging),
    (err: unknown) =>
      err instanceof NonFiniteLossError &&
      err.code === 'KILN_NON_FINITE_LOSS' &&
      err.message.includes('step-000000001'),
  );
  assert.deepEqual(
    (await listCheckpoints(storage, storage.uri('runs', 'nan'))).map((c) => c.step),
    [1],
  );
});
