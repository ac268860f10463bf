/**
 * Frechet distance and feature statistics against the reference formula: pytorch-fid's
 * calculate_frechet_distance (scipy.linalg.sqrtm of S1·S2) on np.mean / np.cov of the same vectors.
 * The reference numbers are committed (fixtures/eval/fid-kid-reference.json, written by
 * scripts/fixtures/make_fid_kid_reference.py, which ports `features` below exactly), so these tests
 * always run; they need no Python.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  featureStatistics,
  FeatureStatisticsAccumulator,
  encodeStatistics,
  decodeStatistics,
} from '../../eval/statistics.js';
import { frechetDistance } from '../../eval/frechet.js';
import { assertClose, assertGeneratorSum, assertReferenceCases, features, loadReferenceFixture } from './helpers.js';

interface FidCase {
  name: string;
  d: number;
  n1: number;
  n2: number;
  off1: number;
  off2: number;
  sc1: number;
  sc2: number;
  check_a: number[];
  check_b: number[];
  fid: number;
  fid_svd: number;
  rank1: number;
  rank2: number;
  mu1: number[];
  cov1_diag: number[];
  cov1_row1: number[];
}

const FIXTURE = loadReferenceFixture<{ fid: FidCase[] }>();

void test('the FID reference fixture has every case', () => {
  assertReferenceCases(FIXTURE.fid, 5, 'FID');
});

for (const ref of FIXTURE.fid) {
  void test(`frechetDistance matches pytorch-fid/scipy sqrtm to 1e-6: ${ref.name}`, () => {
    const c = ref;
    const a = features(c.n1, c.d, 11, c.off1, c.sc1);
    const b = features(c.n2, c.d, 12, c.off2, c.sc2);
    // The fixture's generator ported `features`; make sure both produced the same vectors.
    for (let i = 0; i < 4; i++) assertClose(a[i]!, ref.check_a[i]!, 1e-14, `feature a[0][${i}] (generator port)`, true);
    assertGeneratorSum(a, ref.check_a[4]!, 'set A');
    assertGeneratorSum(b, ref.check_b[0]!, 'set B');
    // Feed set A in uneven batches to exercise the streaming panel flushes.
    const acc = new FeatureStatisticsAccumulator(c.d);
    for (let r = 0; r < c.n1; r += 7) acc.add(a.subarray(r * c.d, Math.min(c.n1, r + 7) * c.d));
    const sa = acc.finalize();
    const sb = featureStatistics(b, c.d);
    assert.equal(sa.count, c.n1);
    for (let i = 0; i < c.d; i++) {
      assertClose(sa.mean[i]!, ref.mu1[i]!, 1e-12, `mean[${i}]`);
      assertClose(sa.cov[i * c.d + i]!, ref.cov1_diag[i]!, 1e-9, `cov[${i}][${i}]`);
      assertClose(sa.cov[c.d + i]!, ref.cov1_row1[i]!, 1e-9 * Math.abs(ref.cov1_diag[1]!), `cov[1][${i}]`, true);
    }
    const fd = frechetDistance(sa, sb);
    assert.ok(ref.fid > 0, `reference distance ${ref.fid} should be positive`);
    assertClose(fd.distance, ref.fid, 1e-6, 'frechet distance vs pytorch-fid (scipy sqrtm)');
    // scipy's sqrtm of the singular product S1·S2 itself carries ~1e-8 relative error; the
    // data-SVD identity is exact, and we match it far more tightly.
    assertClose(fd.distance, ref.fid_svd, 1e-10, 'frechet distance vs singular values of the centered data');
    assert.equal(
      fd.factoredRank,
      Math.min(ref.rank1, ref.rank2),
      'factored rank = rank of the smaller-sample covariance',
    );
  });
}

void test('frechetDistance of a set with itself is ~0 and symmetric in its arguments', () => {
  const d = 40;
  const s = featureStatistics(features(30, d, 3, 0.5, 1), d);
  const t = featureStatistics(features(200, d, 4, 0.6, 1), d);
  const self = frechetDistance(s, s);
  assert.ok(Math.abs(self.distance) < 1e-7 * self.traceA, `self distance ${self.distance} (trace ${self.traceA})`);
  const ab = frechetDistance(s, t).distance,
    ba = frechetDistance(t, s).distance;
  assertClose(ab, ba, 1e-10, 'symmetry');
});

void test('statistics round-trip through the safetensors encoding bit-exactly', () => {
  const d = 17;
  const s = featureStatistics(features(50, d, 5, 0.5, 1), d);
  const { stats, metadata } = decodeStatistics(encodeStatistics(s, { extractor_sha256: 'abc' }));
  assert.equal(stats.count, 50);
  assert.equal(metadata.extractor_sha256, 'abc');
  assert.deepEqual(Array.from(stats.mean), Array.from(s.mean));
  assert.deepEqual(Array.from(stats.cov), Array.from(s.cov));
});

void test('statistics reject non-finite features and too few samples with KilnErrors', () => {
  const acc = new FeatureStatisticsAccumulator(3);
  assert.throws(() => acc.add([1, 2]), { code: 'KILN_EVAL_FEATURE_STATS' });
  acc.add([1, 2, 3]);
  assert.throws(() => acc.finalize(), { code: 'KILN_EVAL_FEATURE_STATS' });
  assert.throws(() => acc.add([1, NaN, 3]), { code: 'KILN_EVAL_FEATURE_STATS' });
});
