/** Reference statistics are computed once per (reference set, extractor) and then read from the cache. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStorage } from '../../infra/storage.js';
import { sha256Hex } from '../../infra/hash.js';
import { decodeRgb, imageSetFeatures, imageSetStatistics, loadFeatureExtractor } from '../../eval/features.js';
import { hashReferenceSet, referenceStatistics } from '../../eval/reference-stats.js';
import { REPO_ROOT } from './helpers.js';

const DIR = join(REPO_ROOT, 'fixtures', 'eval', 'fid-tiny');

void test('reference statistics: computed on first call, reused from the cache on the second', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kiln-refstats-'));
  const ex = await loadFeatureExtractor(DIR);
  try {
    const storage = new LocalStorage(root);
    const files = ['probe-0.png', 'probe-1.png', 'probe-2.png'];
    const bytes = files.map((f) => readFileSync(join(DIR, f)));
    const setHash = hashReferenceSet(files.map((f, i) => ({ id: f, sha256: sha256Hex(bytes[i]!) })));
    assert.equal(
      setHash,
      hashReferenceSet([...files].reverse().map((f) => ({ id: f, sha256: sha256Hex(bytes[files.indexOf(f)]!) }))),
      'order-independent',
    );
    const key = { referenceSetHash: setHash, extractorSha256: ex.modelSha256 };
    let computed = 0;
    const compute = async () => {
      computed++;
      return imageSetFeatures(ex, await Promise.all(bytes.map((b) => decodeRgb(b))));
    };
    const first = await referenceStatistics(storage, key, compute);
    const second = await referenceStatistics(storage, key, compute);
    assert.equal(computed, 1, 'features extracted once');
    assert.equal(first.fromCache, false);
    assert.equal(second.fromCache, true);
    assert.equal(second.uri, first.uri);
    assert.ok(first.uri.includes(setHash) && first.uri.includes(ex.modelSha256), first.uri);
    assert.equal(second.statsSha256, first.statsSha256);
    assert.equal(second.stats.count, 3);
    assert.deepEqual(Array.from(second.stats.cov), Array.from(first.stats.cov));
    // The feature rows travel with the statistics (KID), bit-exactly, and agree with the statistics.
    assert.equal(second.features.count, 3);
    assert.deepEqual(Array.from(second.features.data), Array.from(first.features.data));
    const direct = await imageSetStatistics(ex, await Promise.all(bytes.map((b) => decodeRgb(b))));
    assert.deepEqual(Array.from(second.stats.mean), Array.from(direct.mean));

    // A different extractor hash is a different cache entry.
    const other = await referenceStatistics(storage, { ...key, extractorSha256: 'f'.repeat(64) }, compute);
    assert.equal(other.fromCache, false);
    assert.equal(computed, 2);

    // A damaged cache file is recomputed, not trusted.
    writeFileSync(storage.localPath(first.uri), 'garbage');
    const again = await referenceStatistics(storage, key, compute);
    assert.equal(again.fromCache, false);
    assert.equal(computed, 3);
    assert.equal(again.statsSha256, first.statsSha256, 'same inputs, same bytes');
  } finally {
    await ex.close();
    rmSync(root, { recursive: true, force: true });
  }
});

void test('reference statistics keys must be sha256 hex', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kiln-refstats-'));
  try {
    await assert.rejects(
      referenceStatistics(new LocalStorage(root), { referenceSetHash: '../x', extractorSha256: 'a'.repeat(64) }, () =>
        Promise.reject(new Error('not called')),
      ),
      { code: 'KILN_EVAL_FEATURE_STATS' },
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
