/** Shard writer/reader round trip (nulls, row groups, extra and stage columns), atomicity, stats, manifest. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { LocalStorage } from '../../infra/storage.js';
import { ShardWriter } from '../../datasets/shards/writer.js';
import { readShardInfo, readShardRows, readShardTable } from '../../datasets/shards/reader.js';
import { CappedCounter, OTHER_REASONS, errorReason } from '../../datasets/shards/stats.js';
import {
  InvalidManifestError,
  parseManifest,
  readDatasetManifest,
  writeDatasetManifest,
  type DatasetManifest,
} from '../../datasets/shards/manifest.js';
import { DatasetLayout, datasetVersionId } from '../../datasets/shards/layout.js';
import type { ShardRow } from '../../datasets/shards/schema.js';
import { UnsafePathError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';
import { pyarrowDescribe } from './helpers.js';

const row = (i: number): ShardRow => ({
  key: String(i).padStart(5, '0'),
  url: `http://x/${i}.jpg`,
  caption: i % 4 === 0 ? null : `caption ${i} ✓`,
  status: i % 3 === 0 ? 'failed_to_download' : 'success',
  error_message: i % 3 === 0 ? 'http_404: HTTP 404' : null,
  width: i % 3 === 0 ? null : 64,
  height: i % 3 === 0 ? null : 48,
  original_width: i % 3 === 0 ? null : 640,
  original_height: i % 3 === 0 ? null : 480,
  sha256: i % 3 === 0 ? null : 'ab'.repeat(32),
  jpg: i % 3 === 0 ? null : new Uint8Array(100 + i).fill(i & 255),
  clip_score: i % 5 === 0 ? null : i / 100,
  caption_generated: i % 2 ? `generated ${i}` : null,
  extra: { license: i % 2 ? 'cc0' : null },
});

describe('shard files', () => {
  const tmp = tempDir('kiln-shards-');
  after(() => tmp.cleanup());
  const storage = new LocalStorage(tmp.path);

  it('round-trips rows with nulls across row groups, read by parquet-wasm and pyarrow', async () => {
    const uri = storage.uri('s', 'a.parquet');
    const w = await ShardWriter.open(storage, uri, {
      columns: { extra: ['license'], clipScore: true, captionGenerated: true },
      rowGroupSize: 7,
    });
    const rows = Array.from({ length: 50 }, (_, i) => row(i));
    for (const r of rows) await w.append(r);
    const written = await w.commit();
    assert.equal(written.rows, 50);
    const got: ShardRow[] = [];
    for await (const r of readShardRows(storage, uri, { batchSize: 9 })) got.push(r);
    assert.deepEqual(
      got.map((r) => ({ ...r, jpg: r.jpg && Array.from(r.jpg) })),
      rows.map((r) => ({ ...r, jpg: r.jpg && Array.from(r.jpg) })),
    );
    const info = await readShardInfo(storage, uri);
    assert.deepEqual([info.rows, info.rowGroups, info.schemaVersion], [50, 8, 1]);
    assert.equal((await readShardTable(storage, uri, { columns: ['key', 'status'] })).numCols, 2);
    const py = pyarrowDescribe(storage.localPath(uri));
    assert.equal(py.rows, 50);
    assert.equal(py.rowGroups, 8);
    assert.deepEqual(py.schema.slice(11), [
      ['clip_score', 'double', true],
      ['caption_generated', 'string', true],
      ['license', 'string', true],
    ]);
    assert.equal(py.byKey['00003']!.jpg_len, null);
    assert.equal(py.byKey['00004']!.jpg_len, 104);
    assert.equal(py.byKey['00004']!.caption, null);
    assert.equal(py.byKey['00005']!.caption, 'caption 5 ✓');
  });

  it('writes an empty shard with its schema', async () => {
    const uri = storage.uri('s', 'empty.parquet');
    const w = await ShardWriter.open(storage, uri);
    assert.equal((await w.commit()).rows, 0);
    const py = pyarrowDescribe(storage.localPath(uri));
    assert.equal(py.rows, 0);
    assert.equal(py.schema.length, 11);
  });

  it('abort leaves neither the final file nor a temp file', async () => {
    const uri = storage.uri('s2', 'b.parquet');
    const w = await ShardWriter.open(storage, uri, { rowGroupSize: 2 });
    for (let i = 0; i < 5; i++) await w.append(row(i));
    await w.abort();
    assert.deepEqual(readdirSync(storage.localPath(storage.uri('s2'))), []);
    await assert.rejects(w.append(row(9)));
  });

  it('caps distinct error reasons', () => {
    const c = new CappedCounter(2);
    for (const k of ['a', 'b', 'a', 'c', 'd', 'a']) c.add(k);
    assert.deepEqual(c.toJSON(), { a: 3, [OTHER_REASONS]: 2, b: 1 });
    assert.equal(errorReason('http_404: Not Found'), 'http_404');
    assert.equal(errorReason('timeout'), 'timeout');
    assert.equal(errorReason(null), null);
  });

  it('writes, validates and reads manifests; layout paths are pure and safe', async () => {
    const layout = new DatasetLayout(storage, 'demo', 3);
    assert.equal(layout.id, 'demo@v3');
    assert.equal(datasetVersionId('demo', 3), 'demo@v3');
    assert.equal(layout.shardUri(12), storage.uri('datasets', 'demo', 'v3', 'shards', 'shard-000012.parquet'));
    assert.throws(() => new DatasetLayout(storage, '../etc', 1), UnsafePathError);
    assert.throws(() => new DatasetLayout(storage, 'demo', 0), RangeError);
    const m: DatasetManifest = {
      id: 'demo@v3',
      name: 'demo',
      version: 3,
      parents: [],
      schemaVersion: 1,
      stage: 'crawl',
      params: { a: 1 },
      createdAt: new Date().toISOString(),
      rows: 5,
      shards: [{ index: 0, path: 'shards/shard-000000.parquet', rows: 5, sha256: 'c'.repeat(64), bytes: 10 }],
    };
    await writeDatasetManifest(storage, m);
    assert.deepEqual(await readDatasetManifest(storage, 'demo', 3), m);
    assert.throws(() => parseManifest('{"id": 1}'), InvalidManifestError);
    assert.throws(() => parseManifest('nope'), InvalidManifestError);
  });
});
