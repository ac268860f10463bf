/**
 * The loader thread (training/loader-thread.ts): the same batches, in the same order, with the same
 * positions as the in-thread stream, across epochs and from a resumed position; errors come back as
 * the in-thread stream's classes; a closed (or forgotten) stream lets the process exit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ShardSampleStream, type DataPosition, type SampleBatch } from '../../training/data-loader.js';
import { EmptyDatasetError } from '../../training/errors.js';
import { reopenableRoot } from '../../infra/storage-open.js';
import { openSampleSource, ThreadedSampleStream } from '../../training/loader-thread.js';
import { colorRows, tempStorage, twoShardDataset, writeFixtureShard } from './shard-fixtures.js';

const OPTS = { seed: 11, captionColumn: 'caption', resolution: 16 };
const { storage, root, cleanup } = await tempStorage();
const shards = await twoShardDataset(storage);
test.after(cleanup);

/** `count` batches of `n` (keys, captions, pixels) and the position after each. */
async function read(
  stream: { nextBatch(n: number): Promise<SampleBatch>; position(): DataPosition },
  n: number,
  count: number,
) {
  const out: { keys: string[]; captions: string[]; images: number[]; pos: DataPosition }[] = [];
  for (let i = 0; i < count; i++) {
    const b = await stream.nextBatch(n);
    out.push({ keys: b.keys, captions: b.captions, images: [...b.images], pos: stream.position() });
  }
  return out;
}

void test('batches, pixels and positions equal the in-thread stream, over two epochs and from a resumed position', async () => {
  assert.equal(reopenableRoot(storage), root);
  const source = openSampleSource(storage, shards, OPTS);
  assert.ok(source instanceof ThreadedSampleStream, 'a local storage is read on the loader thread');
  // 13 success rows: 8 batches of 3 cross the epoch boundary.
  const threaded = await read(source, 3, 8);
  source.close();
  const inThread = new ShardSampleStream(storage, shards, OPTS);
  const reference = await read(inThread, 3, 8);
  inThread.close();
  assert.deepEqual(threaded, reference);
  // Resumed at the position after batch 3: the rest is the same.
  const resumed = openSampleSource(storage, shards, OPTS, reference[2]!.pos);
  assert.deepEqual(await read(resumed, 3, 5), reference.slice(3));
  resumed.close();
});

void test('an error in the thread arrives as the in-thread class with its message; bad arguments fail at once', async () => {
  assert.throws(() => openSampleSource(storage, [], OPTS), EmptyDatasetError);
  assert.throws(() => openSampleSource(storage, shards, OPTS, { epoch: 0, shard: 5, row: 0 }), RangeError);
  const uri = storage.uri('failed', 'shard-00000.parquet');
  const rows = (await colorRows('f', 5)).map((r) => ({ ...r, status: 'failed_to_download' as const, color: null }));
  await writeFixtureShard(storage, uri, rows);
  const source = openSampleSource(storage, [uri, uri], OPTS);
  await assert.rejects(
    source.nextBatch(1),
    (err: unknown) =>
      err instanceof EmptyDatasetError &&
      err.code === 'KILN_EMPTY_DATASET' &&
      /10 rows scanned/.test(err.message) &&
      /Fix: train on a dataset version/.test(err.message),
  );
  source.close();
});

void test('a process whose stream is closed (or never closed) exits', async () => {
  const script = `
    import { openSampleSource } from ${JSON.stringify(new URL('../../training/loader-thread.js', import.meta.url).href)};
    import { LocalStorage } from ${JSON.stringify(new URL('../../infra/storage.js', import.meta.url).href)};
    const storage = new LocalStorage(${JSON.stringify(root)});
    const a = openSampleSource(storage, ${JSON.stringify(shards)}, ${JSON.stringify(OPTS)});
    console.log((await a.nextBatch(2)).keys.length);
    a.close();
    const b = openSampleSource(storage, ${JSON.stringify(shards)}, ${JSON.stringify(OPTS)});
    console.log((await b.nextBatch(2)).keys.length);
  `;
  const file = join(root, 'exits.mjs');
  await writeFile(file, script);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { timeout: 60_000 });
  assert.equal(stdout.trim(), '2\n2');
});
