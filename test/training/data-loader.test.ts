import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../infra/errors.js';
import { ShardSampleStream } from '../../training/data-loader.js';
import { EmptyDatasetError } from '../../training/errors.js';
import { openShardRowGroups } from '../../training/parquet-rows.js';
import { colorRows, tempStorage, twoShardDataset, writeFixtureShard } from './shard-fixtures.js';

const OPTS = { seed: 11, captionColumn: 'caption', resolution: 16 };
const { storage, cleanup } = await tempStorage();
const shards = await twoShardDataset(storage);
// Shard 0: 10 rows, rows 3 and 7 failed; shard 1: 7 rows, rows 2 and 5 failed -> 13 success rows.
const SUCCESS = 13;
test.after(cleanup);

async function keys(stream: ShardSampleStream, n: number): Promise<string[]> {
  return (await stream.nextBatch(n)).keys;
}

void test('shards are read one row group at a time, only the training columns', async () => {
  const reader = await openShardRowGroups(storage, shards[0]!, 'caption');
  assert.deepEqual(reader.rowGroupSizes, [4, 4, 2]);
  const rows = await reader.readRowGroup(1);
  assert.deepEqual(rows.keys, ['0000004', '0000005', '0000006', '0000007']);
  assert.deepEqual(rows.statuses, ['success', 'success', 'success', 'failed_to_download']);
  assert.equal(rows.images[3], null);
  assert.ok(rows.images[0]!.byteLength > 100);
  reader.close();
});

void test('an epoch yields every success row exactly once, decoded to [-1, 1] RGB at the resolution', async () => {
  const stream = new ShardSampleStream(storage, shards, OPTS);
  const batch = await stream.nextBatch(SUCCESS);
  assert.equal(new Set(batch.keys).size, SUCCESS);
  const expected = [...(await colorRows('0', 10, 4)), ...(await colorRows('1', 7, 3))].filter(
    (r) => r.status === 'success',
  );
  assert.deepEqual([...batch.keys].sort(), expected.map((r) => r.key).sort());
  for (const [i, key] of batch.keys.entries())
    assert.equal(batch.captions[i], expected.find((r) => r.key === key)!.caption);
  assert.equal(batch.images.length, SUCCESS * 16 * 16 * 3);
  assert.ok(batch.images.every((v) => v >= -1 && v <= 1));
  // A red square: the centre pixel of a red sample is red.
  const red = batch.keys.findIndex((k, i) => batch.captions[i] === 'a red square' && k.startsWith('0'));
  const centre = red * 16 * 16 * 3 + (8 * 16 + 8) * 3;
  assert.ok(batch.images[centre]! > 0.5 && batch.images[centre + 1]! < -0.5, 'centre pixel should be red');
  assert.deepEqual(stream.stats, {
    rowsScanned: stream.stats.rowsScanned,
    samples: SUCCESS,
    skippedNotSuccess: stream.stats.skippedNotSuccess,
    skippedUndecodable: 0,
  });
  assert.equal(stream.stats.rowsScanned - stream.stats.skippedNotSuccess, SUCCESS);
  stream.close();
});

void test('order is a deterministic function of seed and epoch', async () => {
  const a = await keys(new ShardSampleStream(storage, shards, OPTS), 2 * SUCCESS);
  const b = await keys(new ShardSampleStream(storage, shards, OPTS), 2 * SUCCESS);
  const c = await keys(new ShardSampleStream(storage, shards, { ...OPTS, seed: 12 }), 2 * SUCCESS);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a.slice(0, SUCCESS), a.slice(SUCCESS), 'epoch 1 is reshuffled');
  assert.deepEqual([...a.slice(0, SUCCESS)].sort(), [...a.slice(SUCCESS)].sort());
});

void test('a stream resumed from a saved position continues exactly where the first one stopped', async () => {
  const first = new ShardSampleStream(storage, shards, OPTS);
  const head = await keys(first, 9);
  const saved = JSON.parse(JSON.stringify(first.position())) as ReturnType<ShardSampleStream['position']>;
  const rest = await keys(first, 20);
  const resumed = new ShardSampleStream(storage, shards, OPTS, saved);
  assert.deepEqual(await keys(resumed, 20), rest);
  assert.equal(head.length, 9);
});

void test('the caption column is configurable', async () => {
  const uri = storage.uri('cap', 'shard-00000.parquet');
  const rows = await colorRows('c', 3);
  await writeFixtureShard(storage, uri, rows, 4, ['generated one', null, 'generated three']);
  const batch = await new ShardSampleStream(storage, [uri], { ...OPTS, captionColumn: 'caption_generated' }).nextBatch(
    3,
  );
  const byKey = Object.fromEntries(batch.keys.map((k, i) => [k, batch.captions[i]]));
  assert.deepEqual(byKey, { c000000: 'generated one', c000001: '', c000002: 'generated three' });
  await assert.rejects(
    new ShardSampleStream(storage, shards, { ...OPTS, captionColumn: 'caption_generated' }).nextBatch(1),
    ConfigError,
  );
});

void test('undecodable images in success rows are skipped and counted', async () => {
  const uri = storage.uri('bad', 'shard-00000.parquet');
  const rows = await colorRows('b', 4);
  rows[1]!.jpg = new TextEncoder().encode('not a jpeg');
  await writeFixtureShard(storage, uri, rows);
  const stream = new ShardSampleStream(storage, [uri], OPTS);
  const batch = await stream.nextBatch(3);
  assert.ok(!batch.keys.includes('b000001'));
  assert.equal(stream.stats.skippedUndecodable, 1);
});

void test('no shards, or only failed rows, is an EmptyDatasetError', async () => {
  assert.throws(() => new ShardSampleStream(storage, [], OPTS), EmptyDatasetError);
  const uri = storage.uri('failed', 'shard-00000.parquet');
  const rows = (await colorRows('f', 5)).map((r) => ({ ...r, status: 'failed_to_download' as const, color: null }));
  await writeFixtureShard(storage, uri, rows);
  await assert.rejects(
    new ShardSampleStream(storage, [uri, uri], OPTS).nextBatch(1),
    (err: unknown) =>
      err instanceof EmptyDatasetError && err.code === 'KILN_EMPTY_DATASET' && /10 rows scanned/.test(err.message),
  );
});

void test('prefetching reads the next batch ahead but yields the same batches, and position() counts only batches returned', async () => {
  const plain = new ShardSampleStream(storage, shards, OPTS);
  const ahead = new ShardSampleStream(storage, shards, { ...OPTS, prefetch: true });
  const positions: string[] = [];
  for (let i = 0; i < 7; i++) {
    const [a, b] = [await plain.nextBatch(3), await ahead.nextBatch(3)];
    assert.deepEqual(b.keys, a.keys, `batch ${i}`);
    assert.deepEqual(b.images, a.images, `batch ${i} pixels`);
    assert.deepEqual(ahead.position(), plain.position(), `position after batch ${i}`);
    positions.push(JSON.stringify(ahead.position()));
  }
  // Resuming from a prefetching stream's position continues with the batch it had read ahead.
  const resumed = new ShardSampleStream(
    storage,
    shards,
    { ...OPTS, prefetch: true },
    JSON.parse(positions[3]!) as { epoch: number; shard: number; row: number },
  );
  const reference = new ShardSampleStream(storage, shards, OPTS);
  for (let i = 0; i < 4; i++) await reference.nextBatch(3);
  assert.deepEqual((await resumed.nextBatch(3)).keys, (await reference.nextBatch(3)).keys);
  await assert.rejects(ahead.nextBatch(2), /one batch size/);
  for (const s of [plain, ahead, resumed, reference]) s.close();
});
