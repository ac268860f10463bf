import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, KilnError } from '../../infra/errors.js';
import { listCheckpoints } from '../../training/checkpoint.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { EmptyDatasetError, ModelTooLargeError } from '../../training/errors.js';
import { runTrainingChunk } from '../../training/run-chunk.js';
import { colorRows, tempStorage, twoShardDataset, writeFixtureShard } from './shard-fixtures.js';
import { TEST_CONFIG } from './train-config.js';

const { storage, cleanup } = await tempStorage();
test.after(cleanup);
const shards = await twoShardDataset(storage);
const failedShard = storage.uri('failed', 'shard-00000.parquet');
await writeFixtureShard(
  storage,
  failedShard,
  (await colorRows('f', 6)).map((r) => ({ ...r, status: 'failed_to_resize' as const, color: null })),
);

const cases: {
  name: string;
  config?: object;
  shards?: string[];
  error: new (...a: never[]) => KilnError;
  code: string;
  message: RegExp;
}[] = [
  { name: 'no shards', shards: [], error: EmptyDatasetError, code: 'KILN_EMPTY_DATASET', message: /no shards/ },
  {
    name: 'only failed rows',
    shards: [failedShard],
    error: EmptyDatasetError,
    code: 'KILN_EMPTY_DATASET',
    message: /6 rows scanned/,
  },
  {
    name: 'config too large for memory',
    config: { denoiser: { width: 4096, depth: 48, heads: 32 }, resolution: 512, optim: { microBatchSize: 64 } },
    error: ModelTooLargeError,
    code: 'KILN_MODEL_TOO_LARGE',
    message: /GiB.*limit/,
  },
  {
    name: 'explicit small memory limit',
    config: { runtime: { memoryLimitBytes: 1024 } },
    error: ModelTooLargeError,
    code: 'KILN_MODEL_TOO_LARGE',
    message: /limit on backend/,
  },
  {
    name: 'unknown config key',
    config: { optim: { learningRate: 1 } },
    error: ConfigError,
    code: 'KILN_CONFIG',
    message: /optim/,
  },
  {
    name: 'inconsistent sizes',
    config: { resolution: 30 },
    error: ConfigError,
    code: 'KILN_CONFIG',
    message: /multiple of denoiser.patchSize/,
  },
  {
    name: 'bf16 requested on a backend without it',
    config: { runtime: { precision: 'bf16' } },
    error: ConfigError,
    code: 'KILN_CONFIG',
    message: /bf16/,
  },
];

for (const c of cases) {
  void test(`bad input: ${c.name} -> ${c.code}`, async () => {
    const runUri = storage.uri('runs', c.name.replace(/[^a-z]/g, '-'));
    await assert.rejects(
      runTrainingChunk({
        storage,
        runUri,
        config: { ...TEST_CONFIG, ...c.config },
        datasetShardUris: c.shards ?? shards,
        fromStep: 0,
        steps: 2,
      }),
      (err: unknown) =>
        err instanceof c.error && err.code === c.code && c.message.test(err.message) && err.fix.length > 10,
    );
    assert.deepEqual(await listCheckpoints(storage, runUri), [], 'no checkpoint is written');
  });
}

void test("defaults are the recipe's numbers", () => {
  const c = resolveTrainingConfig({});
  assert.deepEqual(
    [
      c.optim.beta1,
      c.optim.beta2,
      c.optim.weightDecay,
      c.optim.gradClip,
      c.optim.lr,
      c.optim.textLrRatio,
      c.optim.minLr,
      c.optim.warmupFraction,
      c.optim.constantFraction,
      c.denoiser.dropout,
      c.objective.trainTimesteps,
      c.objective.prediction,
    ],
    [0.9, 0.999, 0.01, 1.0, 1e-4, 0.1, 1e-6, 0.1, 0.6, 0.1, 1000, 'flow'],
  );
});
