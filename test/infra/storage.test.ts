import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { LocalStorage, assertSafeSegment, sweepTempFiles } from '../../infra/storage.js';
import { UnsafePathError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';

test('writeAtomic writes content, returns its sha256, and leaves no temp file', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(dir.path);
    const uri = s.uri('ds', 'v1', 'shard-00000.parquet');
    const res = await s.writeAtomic(uri, 'abc');
    assert.equal(res.sha256, createHash('sha256').update('abc').digest('hex'));
    assert.equal(res.bytes, 3);
    assert.equal(readFileSync(join(dir.path, 'ds', 'v1', 'shard-00000.parquet'), 'utf8'), 'abc');
    assert.deepEqual(readdirSync(join(dir.path, 'ds', 'v1')), ['shard-00000.parquet']);
    assert.equal(await s.size(uri), 3);
    assert.deepEqual(await s.list(s.uri('ds', 'v1')), ['shard-00000.parquet']);
  } finally {
    dir.cleanup();
  }
});

test('an aborted writer leaves nothing under the final name', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(dir.path);
    const uri = s.uri('out.bin');
    const w = await s.openAtomicWriter(uri);
    await w.write(new Uint8Array([1, 2, 3]));
    assert.equal(await s.exists(uri), false, 'not visible before commit');
    await w.abort();
    assert.equal(await s.exists(uri), false);
    assert.deepEqual(readdirSync(dir.path), []);
  } finally {
    dir.cleanup();
  }
});

test('temp files of a killed writer are hidden from list() and swept', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(dir.path);
    const w = await s.openAtomicWriter(s.uri('a', 'x.parquet'));
    await w.write(new Uint8Array([9]));
    // simulate a crash: never commit nor abort
    assert.deepEqual(await s.list(s.uri('a')), []);
    assert.equal(await sweepTempFiles(s, s.uri('a')), 1);
    assert.deepEqual(readdirSync(join(dir.path, 'a')), []);
  } finally {
    dir.cleanup();
  }
});

for (const [bad, why] of [
  ['..', 'escape'],
  ['../etc', 'escape'],
  ['/etc/passwd', 'escape'],
  ['a\0b', 'NUL'],
  ['', 'empty'],
  ['a b', 'characters'],
  ['.hidden', 'characters'],
] as const) {
  test(`unsafe segment ${JSON.stringify(bad)} is refused (${why})`, () => {
    assert.throws(
      () => assertSafeSegment(bad, 'dataset name'),
      (err: unknown) => {
        assert.ok(err instanceof UnsafePathError);
        assert.equal(err.code, 'KILN_UNSAFE_PATH');
        assert.match(err.message, new RegExp(why));
        assert.match(err.message, /Fix: /);
        return true;
      },
    );
  });
}

test('URIs outside the root are refused and nothing is written there', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(join(dir.path, 'root'));
    await assert.rejects(s.writeAtomic(`file://${join(dir.path, 'outside.txt')}`, 'x'), UnsafePathError);
    assert.equal(existsSync(join(dir.path, 'outside.txt')), false);
    assert.throws(() => s.child(s.uri('a'), '..', 'b'), UnsafePathError);
  } finally {
    dir.cleanup();
  }
});

test('a new writer of a URI removes the temp files killed writers of that same URI left, and only those', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(dir.path);
    const killed = await s.openAtomicWriter(s.uri('d', 'shard-1.parquet'));
    await killed.write(new Uint8Array([1]));
    const other = await s.openAtomicWriter(s.uri('d', 'shard-2.parquet'));
    await other.write(new Uint8Array([2]));
    // the retry of shard 1 (the killed writer never commits nor aborts)
    await s.writeAtomic(s.uri('d', 'shard-1.parquet'), 'ok');
    const left = readdirSync(join(dir.path, 'd')).sort();
    assert.equal(left.length, 2, left.join(', '));
    assert.ok(left.includes('shard-1.parquet'));
    assert.ok(
      left.some((n) => n.endsWith('-shard-2.parquet')),
      "another URI's writer in flight is untouched",
    );
    await other.commit();
  } finally {
    dir.cleanup();
  }
});
