/**
 * Model and reference directories in object storage (issue 17): the VAE codec, the FID extractor,
 * CLIP (the eval's clip_score and the filter) and a directory of reference images may be
 * `s3://bucket/prefix`. Each goes through the one resolver (infra/storage-cache.ts localModelDir:
 * the worker's ObjectCache, keyed by sha256) and must give the same model as the local directory
 * it was uploaded from: same hashes, same names in lineage, same numbers. Runs against moto's S3
 * server started by scripts/servers/s3-server.sh.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { PROJECT_ROOT } from '../../infra/config.js';
import { MissingFileError } from '../../infra/errors.js';
import { S3Storage, s3ClientFromEnv } from '../../infra/storage-s3.js';
import { localModelDir } from '../../infra/storage-cache.js';
import { loadFeatureExtractor } from '../../eval/features.js';
import { referenceOf } from '../../eval/options.js';
import { readVaeDir } from '../../training/onnx-vae-codec.js';
import { assertVaeFiles } from '../../training/vae-files.js';
import { readClipTextShape } from '../../training/clip-weights.js';
import { loadClipScorer } from '../../datasets/filter/clip-scorer.js';
import { parseSpecText, resolveSpecPaths } from '../../cli/spec/load.js';
import { tempDir } from '../helpers/env.js';
import { startS3Server, type TestServer } from '../helpers/servers.js';

const FIXTURES = join(PROJECT_ROOT, 'fixtures');
const BUCKET = `kiln-models-${process.pid}`;
const ROOT = `s3://${BUCKET}/models`;
let s3: TestServer | undefined;
const cleanups: (() => void)[] = [];
const savedEnv = { ...process.env };

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/** Upload a local directory to `${ROOT}/${name}/` (what `aws s3 cp --recursive` does). */
async function upload(local: string, name: string): Promise<string> {
  const storage = new S3Storage(`${ROOT}/${name}`);
  for (const f of walk(local))
    await storage.writeAtomic(storage.uri(...relative(local, f).split(sep)), readFileSync(f));
  return `${ROOT}/${name}`;
}

before(async () => {
  s3 = await startS3Server();
  Object.assign(process.env, (s3 as Awaited<ReturnType<typeof startS3Server>>).env);
  const cache = tempDir('kiln-cache-');
  cleanups.push(cache.cleanup);
  process.env.KILN_CACHE_DIR = cache.path;
  await s3ClientFromEnv().send(new CreateBucketCommand({ Bucket: BUCKET }));
});
after(async () => {
  for (const c of cleanups) c();
  process.env = savedEnv;
  await s3?.stop();
});

describe('model and reference directories on s3://', () => {
  test('FID extractor: same model sha256, feature dim and features as the local directory', async () => {
    const localDir = join(FIXTURES, 'eval', 'fid-tiny');
    const loc = await upload(localDir, 'fid-tiny');
    const local = await loadFeatureExtractor(localDir);
    const remote = await loadFeatureExtractor(loc);
    try {
      assert.equal(remote.modelSha256, local.modelSha256);
      assert.equal(remote.featureDim, local.featureDim);
      assert.ok(remote.dir.startsWith(process.env.KILN_CACHE_DIR!), `loaded from the cache, not ${remote.dir}`);
      const img = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).map((_, i) => (i * 37) % 256) };
      assert.deepEqual(await remote.extractImages([img]), await local.extractImages([img]));
    } finally {
      await local.close();
      await remote.close();
    }
  });

  test('VAE codec: same files hash and codec name as the local directory; a partial upload is a MissingFileError', async () => {
    const localDir = join(FIXTURES, 'models', 'tiny-vae');
    const loc = await upload(localDir, 'tiny-vae');
    const local = await readVaeDir(localDir);
    const remote = await readVaeDir(loc);
    assert.equal(remote.sha256, local.sha256);
    assert.equal(remote.name, 'tiny-vae', 'named after the location, not the cache entry');
    assert.deepEqual(
      { c: remote.channels, f: remote.downsample, s: remote.scalingFactor },
      { c: local.channels, f: local.downsample, s: local.scalingFactor },
    );
    const partial = new S3Storage(`${ROOT}/vae-partial`);
    await partial.writeAtomic(partial.uri('vae_encoder', 'config.json'), '{}');
    await assert.rejects(assertVaeFiles(`${ROOT}/vae-partial`), (e: unknown) => {
      assert.ok(e instanceof MissingFileError);
      assert.match(e.message, /lacks vae_encoder\/model\.onnx/);
      return true;
    });
  });

  test('CLIP: the eval/filter scorer and the training text tower read an s3:// directory as the local one', async () => {
    const localDir = join(FIXTURES, 'models', 'clip-tiny');
    const loc = await upload(localDir, 'clip-tiny');
    const images = ['checker_40x56.jpg', 'gradient_96x64.png'].map((f) =>
      readFileSync(join(FIXTURES, 'models', 'images', f)),
    );
    const captions = ['a checkerboard', 'a colour gradient'];
    const local = await loadClipScorer(localDir);
    const remote = await loadClipScorer(loc);
    try {
      assert.deepEqual(await remote.fileHashes(), await local.fileHashes());
      assert.deepEqual(await remote.score(images, captions), await local.score(images, captions));
    } finally {
      await local.dispose();
      await remote.dispose();
    }
    assert.deepEqual(await readClipTextShape(loc), await readClipTextShape(localDir));
  });

  test('reference images: an s3:// reference is a directory, fetched with every file intact', async () => {
    const localDir = join(FIXTURES, 'models', 'images');
    const loc = await upload(localDir, 'reference-images');
    assert.deepEqual(referenceOf(loc), { referenceDir: loc });
    const dir = await localModelDir(`${loc}/`);
    assert.deepEqual(readdirSync(dir).sort(), readdirSync(localDir).sort());
    for (const f of readdirSync(localDir))
      assert.ok(readFileSync(join(dir, f)).equals(readFileSync(join(localDir, f))), `${f} intact`);
    assert.equal(await localModelDir(loc), dir, 'unchanged content: the same cache entry');
  });

  test('an s3:// location with nothing under it is a MissingFileError naming it and the fix', async () => {
    await assert.rejects(localModelDir(`${ROOT}/no-such-model`), (e: unknown) => {
      assert.ok(e instanceof MissingFileError);
      assert.match(e.message, /no objects under s3:\/\/.*\/models\/no-such-model\//);
      assert.match(e.fix, /aws s3 cp --recursive/);
      return true;
    });
  });

  test('a pipeline spec keeps s3:// model and reference locations as they are', () => {
    const spec = parseSpecText(
      JSON.stringify({
        version: 1,
        name: 's3-models',
        sources: [{ path: join(FIXTURES, 'models', 'reference.json') }],
        filter: { clip_model: `${ROOT}/clip-tiny`, keep_top_fraction: 0.5 },
        train: {
          total_steps: 4,
          config: { codec: { vae: `${ROOT}/tiny-vae` }, textEncoder: { clipDir: `${ROOT}/clip-tiny` } },
        },
        eval: { every_steps: 2, extractor: `${ROOT}/fid-tiny`, reference: `${ROOT}/reference-images` },
      }),
      'inline.json',
    );
    const out = resolveSpecPaths(spec, '/somewhere', 'inline.json');
    assert.equal(out.filter!.clip_model, `${ROOT}/clip-tiny`);
    assert.equal(out.eval!.extractor, `${ROOT}/fid-tiny`);
    assert.equal(out.eval!.reference, `${ROOT}/reference-images`);
    const c = out.train!.config as { codec: { vae: string }; textEncoder: { clipDir: string } };
    assert.equal(c.codec.vae, `${ROOT}/tiny-vae`);
    assert.equal(c.textEncoder.clipDir, `${ROOT}/clip-tiny`);
  });
});
