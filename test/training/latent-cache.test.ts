/**
 * The VAE latent cache (training/latent-cache.ts, latent-shard.ts) with the real tiny ONNX VAE
 * fixture and real Parquet shards: cached latents equal a direct encode, a second build reuses
 * every shard (same bytes, nothing re-encoded), a build stopped after one shard resumes without
 * re-encoding it, and the loader reading the cache yields the same rows in the same order as the
 * pixel loader, with the cached latents.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { PROJECT_ROOT } from '../../infra/config.js';
import { ConfigError } from '../../infra/errors.js';
import { sha256Hex } from '../../infra/hash.js';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { ShardSampleStream } from '../../training/data-loader.js';
import { decodeTrainingImage } from '../../training/image-decode.js';
import { artifactSha256, buildLatentCache, latentCacheDir, type SourceShard } from '../../training/latent-cache.js';
import { openLatentShard } from '../../training/latent-shard.js';
import { OnnxVaeCodec } from '../../training/onnx-vae-codec.js';
import { openShardRowGroups } from '../../training/parquet-rows.js';
import { colorRows, tempStorage, twoShardDataset, writeFixtureShard } from './shard-fixtures.js';

await selectTfBackend();
const VAE_DIR = join(PROJECT_ROOT, 'fixtures', 'models', 'tiny-vae');
/** Cached latents vs a one-image-at-a-time encode (measured: 0 on CPU; batched convolutions may round differently elsewhere). */
const TOLERANCE = 1e-5;
const R = 16;

const { storage, cleanup } = await tempStorage();
const codec = await OnnxVaeCodec.open(VAE_DIR);
test.after(async () => {
  await codec.dispose();
  await cleanup();
});
const uris = await twoShardDataset(storage);
// A third shard with an undecodable image in a success row.
const broken = storage.uri('data', 'shard-00002.parquet');
await writeFixtureShard(
  storage,
  broken,
  [
    ...(await colorRows('2', 4)),
    { key: '2000004', caption: 'broken', status: 'success', color: null, jpg: new Uint8Array([0xff, 0xd8, 1, 2, 3]) },
  ],
  2,
);
const shards: SourceShard[] = await Promise.all(
  [...uris, broken].map(async (uri) => ({ uri, sha256: await artifactSha256(storage, uri) })),
);
const SHAPE: [number, number, number] = [8, 8, 4];

async function directEncode(bytes: Uint8Array): Promise<Float32Array> {
  const px = (await decodeTrainingImage(bytes, R))!;
  const z = await codec.encode(tf.tensor4d(px, [1, R, R, 3]));
  const v = (await z.data()) as Float32Array;
  z.dispose();
  return v;
}

void test('cached latents equal a direct encode of each image (to 1e-5), row-aligned with the dataset shard, keyed by image sha256', async () => {
  const built = await buildLatentCache({ storage, shards, codec, resolution: R, rowGroupSize: 3 });
  assert.equal(built.encodedShards, 3);
  assert.equal(built.reusedShards, 0);
  assert.deepEqual(built.manifest.shape, SHAPE);
  assert.equal(built.manifest.vaeSha256, codec.sha256);
  let worst = 0;
  let compared = 0;
  for (const [i, s] of built.manifest.shards.entries()) {
    assert.equal(s.sourceSha256, shards[i]!.sha256);
    assert.ok(s.uri.startsWith(latentCacheDir(storage, codec.sha256, R)));
    assert.ok(s.uri.endsWith(`${shards[i]!.sha256}.parquet`));
    assert.equal(s.sha256, await artifactSha256(storage, s.uri));
    const source = await openShardRowGroups(storage, s.source, 'caption');
    const cache = await openLatentShard(storage, s.uri);
    assert.equal(cache.rows, s.rows);
    let offset = 0;
    for (let g = 0; g < source.rowGroupSizes.length; g++) {
      const rows = await source.readRowGroup(g);
      const cached = await cache.read(offset, rows.keys.length);
      offset += rows.keys.length;
      for (const [k, key] of rows.keys.entries()) {
        const c = cached[k]!;
        assert.equal(c.key, key);
        const bytes = rows.images[k];
        if (rows.statuses[k] !== 'success' || !bytes) {
          assert.equal(c.imageSha256, null);
          assert.equal(c.latent, null);
          continue;
        }
        assert.equal(c.imageSha256, sha256Hex(bytes));
        if (key === '2000004') {
          assert.equal(c.latent, null, 'an undecodable image has no latent');
          continue;
        }
        const direct = await directEncode(bytes);
        assert.equal(c.latent!.length, direct.length);
        for (let j = 0; j < direct.length; j++) worst = Math.max(worst, Math.abs(c.latent![j]! - direct[j]!));
        compared += 1;
      }
    }
    assert.equal(offset, s.rows);
    source.close();
    cache.close();
  }
  assert.equal(compared, 8 + 5 + 4);
  assert.ok(worst <= TOLERANCE, `max |cached - direct| = ${worst}`);
});

void test('a second build reuses every shard: nothing re-encoded, same files and hashes', async () => {
  const first = await buildLatentCache({ storage, shards, codec, resolution: R, rowGroupSize: 3 });
  const mtimes = await Promise.all(
    first.manifest.shards.map(async (s) => (await stat(storage.localPath(s.uri))).mtimeMs),
  );
  const again = await buildLatentCache({ storage, shards, codec, resolution: R, rowGroupSize: 3 });
  assert.equal(again.encodedShards, 0);
  assert.equal(again.reusedShards, 3);
  assert.equal(again.manifestUri, first.manifestUri);
  assert.equal(again.manifestSha256, first.manifestSha256);
  assert.deepEqual(again.manifest, first.manifest);
  assert.deepEqual(
    await Promise.all(again.manifest.shards.map(async (s) => (await stat(storage.localPath(s.uri))).mtimeMs)),
    mtimes,
  );
  // Another dataset version holding one of the same shard files shares its cached shard.
  const subset = await buildLatentCache({ storage, shards: [shards[1]!], codec, resolution: R, rowGroupSize: 3 });
  assert.deepEqual([subset.encodedShards, subset.reusedShards], [0, 1]);
  assert.notEqual(subset.manifestUri, first.manifestUri);
});

void test('a build stopped after its first shard resumes there: the finished shard is not re-encoded, no partial file is left', async () => {
  const { storage: s2, cleanup: c2 } = await tempStorage();
  try {
    const two = await twoShardDataset(s2);
    const src = await Promise.all(two.map(async (uri) => ({ uri, sha256: await artifactSha256(s2, uri) })));
    const stop = new AbortController();
    await assert.rejects(
      buildLatentCache({
        storage: s2,
        shards: src,
        codec,
        resolution: R,
        signal: stop.signal,
        onProgress: (p) => {
          if (p.encodedShards === 1) stop.abort(new Error('worker killed'));
        },
      }),
      /worker killed/,
    );
    const dir = s2.child(latentCacheDir(s2, codec.sha256, R), 'shards');
    assert.deepEqual(await s2.list(dir), [`${src[0]!.sha256}.parquet`], 'only the finished shard, no temp file');
    const resumed = await buildLatentCache({ storage: s2, shards: src, codec, resolution: R });
    assert.deepEqual([resumed.encodedShards, resumed.reusedShards], [1, 1]);
  } finally {
    await c2();
  }
});

void test("the loader reading the cache yields the pixel loader's rows in the same order, with the cached latents", async () => {
  const built = await buildLatentCache({ storage, shards, codec, resolution: R, rowGroupSize: 3 });
  const source = [...uris, broken];
  const opts = { seed: 5, captionColumn: 'caption', resolution: R };
  const latents = { shardUris: built.manifest.shards.map((s) => s.uri), vaeSha256: codec.sha256, shape: SHAPE };
  const pixels = new ShardSampleStream(storage, source, opts);
  const cached = new ShardSampleStream(storage, source, { ...opts, latents, prefetch: true });
  const per = SHAPE[0] * SHAPE[1] * SHAPE[2];
  for (let b = 0; b < 6; b++) {
    const p = await pixels.nextBatch(4);
    const c = await cached.nextBatch(4);
    assert.deepEqual(c.keys, p.keys);
    assert.deepEqual(c.captions, p.captions);
    assert.equal(c.images.length, 4 * per);
    const z = await codec.encode(tf.tensor4d(p.images, [4, R, R, 3]));
    const direct = (await z.data()) as Float32Array;
    z.dispose();
    for (let j = 0; j < direct.length; j++) assert.ok(Math.abs(c.images[j]! - direct[j]!) <= TOLERANCE);
    assert.deepEqual(cached.position(), pixels.position());
  }
  assert.equal(cached.stats.skippedUndecodable, pixels.stats.skippedUndecodable);
  assert.ok(cached.stats.skippedUndecodable >= 1);
  pixels.close();
  cached.close();
  // A cache of another VAE (or shape) is refused with the fix.
  const wrong = new ShardSampleStream(storage, source, { ...opts, latents: { ...latents, vaeSha256: 'f'.repeat(64) } });
  await assert.rejects(
    wrong.nextBatch(1),
    (err: unknown) =>
      err instanceof ConfigError && /does not match dataset shard/.test(err.message) && /latent cache/.test(err.fix),
  );
  wrong.close();
});
