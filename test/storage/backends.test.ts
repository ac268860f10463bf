/**
 * The ArtifactStorage contract, run against both backends: local files and S3 (moto's server on
 * loopback, started by scripts/servers/s3-server.sh). What stages rely on: whole-or-nothing objects,
 * the sha256 of what was written, exclusive claims across writers, nothing left by aborted or
 * killed writers, recursive removal, and refusal of URIs outside the data root.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { CreateBucketCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { LocalStorage, type ArtifactStorage } from '../../infra/storage.js';
import { S3Storage, S3_PART_SIZE, s3ClientFromEnv } from '../../infra/storage-s3.js';
import { ObjectCache } from '../../infra/storage-cache.js';
import { openStorage } from '../../infra/storage-open.js';
import { UnsafePathError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';
import { startS3Server, type TestServer } from '../helpers/servers.js';

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
let s3: TestServer | undefined;
const cleanups: (() => void)[] = [];
let bucketNo = 0;

before(async () => {
  s3 = await startS3Server();
  Object.assign(process.env, (s3 as Awaited<ReturnType<typeof startS3Server>>).env);
});
after(async () => {
  for (const c of cleanups) c();
  await s3?.stop();
});

interface Backend {
  name: string;
  make(): Promise<ArtifactStorage>;
  /** Leftovers of writers (temp files / multipart uploads in flight) under the root. */
  leftovers(s: ArtifactStorage): Promise<number>;
}

const backends: Backend[] = [
  {
    name: 'file',
    async make() {
      const d = tempDir();
      cleanups.push(d.cleanup);
      return new LocalStorage(d.path);
    },
    async leftovers(s) {
      const walk = (p: string): string[] =>
        readdirSync(p, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(`${p}/${e.name}`) : [e.name]));
      return walk(s.localPath(s.rootUri)).filter((n) => n.startsWith('.kiln-tmp-')).length;
    },
  },
  {
    name: 's3',
    async make() {
      const bucket = `kiln-test-${process.pid}-${++bucketNo}`;
      const client = s3ClientFromEnv();
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return openStorage(`s3://${bucket}/data/root`);
    },
    async leftovers(s) {
      const st = s as S3Storage;
      const r = await st.client.send(new ListMultipartUploadsCommand({ Bucket: st.bucket }));
      return r.Uploads?.length ?? 0;
    },
  },
];

for (const b of backends) {
  describe(`ArtifactStorage on ${b.name}`, () => {
    test('writeAtomic: content, sha256 and size as written; listed, readable, hashable', async () => {
      const s = await b.make();
      const uri = s.uri('ds', 'v1', 'shard-00000.parquet');
      const res = await s.writeAtomic(uri, 'abc');
      assert.deepEqual(res, { uri, sha256: sha('abc'), bytes: 3 });
      assert.equal(await s.readText(uri), 'abc');
      assert.equal(await s.size(uri), 3);
      assert.equal(await s.exists(uri), true);
      assert.equal(await s.exists(s.uri('ds', 'v1', 'nope')), false);
      assert.equal(await s.size(s.uri('nope')), null);
      assert.deepEqual(await s.list(s.uri('ds', 'v1')), ['shard-00000.parquet']);
      assert.deepEqual(await s.list(s.uri('ds')), ['v1'], 'directories are listed by name');
      assert.deepEqual(await s.list(s.uri('empty')), []);
      assert.equal(await s.sha256(uri), sha('abc'));
      assert.equal(await (await s.blob(uri)).text(), 'abc');
    });

    test('a streamed object larger than a part appears only at commit, whole, with the sha256 of its bytes', async () => {
      const s = await b.make();
      const uri = s.uri('ckpt', 'step-100.safetensors');
      const data = randomBytes(S3_PART_SIZE * 2 + 12345);
      const w = await s.openAtomicWriter(uri);
      for (let off = 0; off < data.length; off += 1 << 20) await w.write(data.subarray(off, off + (1 << 20)));
      assert.equal(await s.exists(uri), false, 'not visible before commit');
      const res = await w.commit();
      assert.equal(res.sha256, sha(data));
      assert.equal(res.bytes, data.length);
      assert.ok((await s.read(uri)).equals(data));
      assert.equal(await b.leftovers(s), 0);
    });

    test('an aborted writer leaves nothing: no object, no temp file, no multipart upload', async () => {
      const s = await b.make();
      const uri = s.uri('out.bin');
      const w = await s.openAtomicWriter(uri);
      await w.write(randomBytes(S3_PART_SIZE + 1)); // S3: past one part, so a multipart upload exists
      await w.abort();
      assert.equal(await s.exists(uri), false);
      assert.equal(await b.leftovers(s), 0);
    });

    test('what a killed writer left is swept at stage start and replaced by the next writer of the same URI', async () => {
      const s = await b.make();
      const killed = await s.openAtomicWriter(s.uri('d', 'shard-1.parquet'));
      await killed.write(randomBytes(S3_PART_SIZE + 1)); // never committed nor aborted
      // wait until the S3 multipart upload exists (lib-storage creates it asynchronously)
      for (let i = 0; i < 100 && (await b.leftovers(s)) === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await b.leftovers(s), 1);
      assert.deepEqual(await s.list(s.uri('d')), [], 'in-flight writes are not listed');
      await s.writeAtomic(s.uri('d', 'shard-1.parquet'), 'retry');
      assert.equal(await b.leftovers(s), 0, "the retry removed the killed writer's leftovers");
      const other = await s.openAtomicWriter(s.uri('d', 'shard-2.parquet'));
      await other.write(randomBytes(S3_PART_SIZE + 1));
      for (let i = 0; i < 100 && (await b.leftovers(s)) === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await s.sweepTemps(s.uri('d')), 1);
      assert.equal(await b.leftovers(s), 0);
      assert.equal(await s.readText(s.uri('d', 'shard-1.parquet')), 'retry');
      await other.abort();
      await killed.abort();
    });

    test('createExclusive: of 8 concurrent claims exactly one wins, and its content stays', async () => {
      const s = await b.make();
      const uri = s.uri('ds', 'versions', 'v-000001.claim');
      const wins = await Promise.all(Array.from({ length: 8 }, (_, i) => s.createExclusive(uri, `claimant-${i}`)));
      assert.equal(wins.filter(Boolean).length, 1, JSON.stringify(wins));
      assert.equal(await s.readText(uri), `claimant-${wins.indexOf(true)}`);
      assert.equal(await s.createExclusive(uri, 'late'), false);
      assert.equal(await s.readText(uri), `claimant-${wins.indexOf(true)}`);
    });

    test('remove deletes an object and everything under it as a directory', async () => {
      const s = await b.make();
      await s.writeAtomic(s.uri('ds', 'v1', 'a'), '1');
      await s.writeAtomic(s.uri('ds', 'v1', 'sub', 'b'), '2');
      await s.writeAtomic(s.uri('ds', 'v2', 'a'), '3');
      await s.remove(s.uri('ds', 'v1'));
      assert.deepEqual(await s.list(s.uri('ds')), ['v2']);
      await s.remove(s.uri('ds', 'v2', 'a'));
      assert.equal(await s.exists(s.uri('ds', 'v2', 'a')), false);
    });

    test('URIs outside the data root and unsafe segments are refused, writing nothing', async () => {
      const s = await b.make();
      const outside =
        b.name === 'file' ? `file://${s.localPath(s.rootUri)}/../outside.txt` : s.rootUri.replace(/root\/$/, 'other/x');
      await assert.rejects(s.writeAtomic(outside, 'x'), UnsafePathError);
      if (b.name === 's3') await assert.rejects(s.writeAtomic('s3://another-bucket/data/root/x', 'x'), UnsafePathError);
      assert.throws(() => s.child(s.uri('a'), '..', 'b'), UnsafePathError);
      assert.throws(() => s.uri('a/b'), UnsafePathError);
    });

    test('the local cache gives libraries a path: same content once, directories with their layout', async () => {
      const s = await b.make();
      const d = tempDir();
      cleanups.push(d.cleanup);
      const cache = new ObjectCache(d.path);
      const model = randomBytes(300_000);
      await s.writeAtomic(s.uri('models', 'clip', 'onnx', 'model.onnx'), model);
      await s.writeAtomic(s.uri('models', 'clip', 'config.json'), '{"a":1}');
      const p1 = await cache.file(s, s.uri('models', 'clip', 'onnx', 'model.onnx'));
      const p2 = await cache.file(s, s.uri('models', 'clip', 'onnx', 'model.onnx'));
      assert.equal(p1, p2);
      assert.ok(readFileSync(p1).equals(model));
      const dir = await cache.directory(s, s.uri('models', 'clip'));
      assert.ok(readFileSync(`${dir}/onnx/model.onnx`).equals(model));
      assert.equal(readFileSync(`${dir}/config.json`, 'utf8'), '{"a":1}');
      if (b.name === 's3') {
        assert.ok(p1.endsWith(sha(model)), 'keyed by sha256');
        assert.equal(
          await cache.directory(s, s.uri('models', 'clip')),
          dir,
          'an unchanged directory is the same cache entry',
        );
        await s.writeAtomic(s.uri('models', 'clip', 'config.json'), '{"a":2}');
        const dir2 = await cache.directory(s, s.uri('models', 'clip'));
        assert.notEqual(dir2, dir, 'changed content is a new entry');
        assert.equal(readFileSync(`${dir2}/config.json`, 'utf8'), '{"a":2}');
      }
    });
  });
}
