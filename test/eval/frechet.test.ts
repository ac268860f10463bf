/**
 * Frechet distance and feature statistics against the reference formula: pytorch-fid's
 * calculate_frechet_distance (scipy.linalg.sqrtm of S1·S2) on np.mean / np.cov of the same vectors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { featureStatistics, FeatureStatisticsAccumulator, encodeStatistics, decodeStatistics } from '../../eval/statistics.js';
import { frechetDistance } from '../../eval/frechet.js';
import { pythonWithScipy, runPython, seededRandom } from './helpers.js';

/** pytorch-fid's formula, verbatim in substance (sqrtm without the deprecated disp argument). */
const PYTORCH_FID = `
import sys, json, warnings
import numpy as np
from scipy import linalg
warnings.simplefilter('ignore')
def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError('Imaginary component {}'.format(np.max(np.abs(covmean.imag))))
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
path, d, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = np.fromfile(path, dtype='<f8')
a, b = x[: n1 * d].reshape(n1, d), x[n1 * d:].reshape(n2, d)
mu1, s1 = np.mean(a, axis=0), np.cov(a, rowvar=False)
mu2, s2 = np.mean(b, axis=0), np.cov(b, rowvar=False)
# Independent, sqrtm-free value: tr sqrtm(S1 S2) = sum of singular values of Ac Bcᵀ / sqrt((n1-1)(n2-1))
# for centered data Ac, Bc (the nonzero eigenvalues of S1 S2 are the squared singular values).
sv = np.linalg.svd((a - mu1) @ (b - mu2).T, compute_uv=False) / np.sqrt((n1 - 1) * (n2 - 1))
fid_svd = float((mu1 - mu2).dot(mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * sv.sum())
print(json.dumps({'fid': calculate_frechet_distance(mu1, s1, mu2, s2), 'fid_svd': fid_svd,
  'rank1': int(np.linalg.matrix_rank(s1)), 'rank2': int(np.linalg.matrix_rank(s2)),
  'mu1': mu1.tolist(), 'cov1_diag': np.diag(s1).tolist(), 'cov1_row1': s1[1].tolist()}))
`;

/** Correlated, non-negative-ish features: x = offset + z·W (+ ReLU), seeded. */
function features(n: number, d: number, seed: number, offset: number, scale: number): Float64Array {
  const rnd = seededRandom(seed);
  const k = Math.min(d, 24);
  const w = new Float64Array(k * d);
  const wr = seededRandom(7); // same mixing for every set: distributions differ by offset/scale only
  for (let i = 0; i < w.length; i++) w[i] = wr.normal() / Math.sqrt(k);
  const out = new Float64Array(n * d);
  const z = new Float64Array(k);
  for (let r = 0; r < n; r++) {
    for (let f = 0; f < k; f++) z[f] = rnd.normal();
    for (let i = 0; i < d; i++) {
      let v = offset + 0.2 * rnd.normal();
      for (let f = 0; f < k; f++) v += scale * z[f]! * w[f * d + i]!;
      out[r * d + i] = Math.max(v, 0);
    }
  }
  return out;
}

const CASES = [
  { name: 'full rank (n > d)', d: 48, n1: 600, n2: 500, off1: 0.5, off2: 0.6, sc1: 1, sc2: 1.2 },
  { name: 'rank-deficient both (n < d)', d: 64, n1: 20, n2: 30, off1: 0.5, off2: 0.5, sc1: 1, sc2: 1.5 },
  { name: 'rank-deficient one side', d: 96, n1: 40, n2: 900, off1: 0.3, off2: 0.4, sc1: 1.1, sc2: 1 },
  { name: 'rank-deficient other side', d: 96, n1: 900, n2: 40, off1: 0.3, off2: 0.4, sc1: 1.1, sc2: 1 },
  { name: 'large mean, small spread (cancellation)', d: 32, n1: 300, n2: 300, off1: 1000, off2: 1000.05, sc1: 0.01, sc2: 0.012 },
];

const py = pythonWithScipy();

for (const c of CASES) {
  void test(`frechetDistance matches pytorch-fid/scipy sqrtm to 1e-6: ${c.name}`, { skip: py.python ? false : py.why }, () => {
    const a = features(c.n1, c.d, 11, c.off1, c.sc1);
    const b = features(c.n2, c.d, 12, c.off2, c.sc2);
    const dir = mkdtempSync(join(tmpdir(), 'kiln-fid-'));
    try {
      const file = join(dir, 'x.f64');
      const all = new Float64Array(a.length + b.length);
      all.set(a);
      all.set(b, a.length);
      writeFileSync(file, new Uint8Array(all.buffer));
      const ref = JSON.parse(runPython(py.python!, PYTORCH_FID, [file, String(c.d), String(c.n1), String(c.n2)])) as
        { fid: number; fid_svd: number; rank1: number; rank2: number; mu1: number[]; cov1_diag: number[]; cov1_row1: number[] };
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
      assert.equal(fd.factoredRank, Math.min(ref.rank1, ref.rank2), 'factored rank = rank of the smaller-sample covariance');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

void test('frechetDistance of a set with itself is ~0 and symmetric in its arguments', () => {
  const d = 40;
  const s = featureStatistics(features(30, d, 3, 0.5, 1), d);
  const t = featureStatistics(features(200, d, 4, 0.6, 1), d);
  const self = frechetDistance(s, s);
  assert.ok(Math.abs(self.distance) < 1e-7 * self.traceA, `self distance ${self.distance} (trace ${self.traceA})`);
  const ab = frechetDistance(s, t).distance, ba = frechetDistance(t, s).distance;
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

function assertClose(actual: number, expected: number, rel: number, what: string, absolute = false): void {
  const tol = absolute ? rel : rel * Math.max(Math.abs(expected), 1e-300);
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs reference ${expected} (|diff| ${Math.abs(actual - expected)} > ${tol})`);
}
