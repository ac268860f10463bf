/**
 * KID against the numpy reference (clean-fid's kernel_distance / torch-fidelity's mmd2, written out in
 * scripts/fixtures/make_fid_kid_reference.py; values committed in fixtures/eval/fid-kid-reference.json)
 * on the same rows, plus the subset protocol and its unbiasedness.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  kernelInceptionDistance,
  kidNoise,
  kidSubsets,
  kidSubsetValues,
  KID_DEFAULT_MAX_SUBSET_SIZE,
  KID_DEFAULT_SUBSETS,
} from '../../eval/kid.js';
import { assertGeneratorSum, assertReferenceCases, features, loadReferenceFixture, seededRandom } from './helpers.js';

interface KidCase {
  name: string;
  d: number;
  nx: number;
  ny: number;
  seedx: number;
  seedy: number;
  offx: number;
  offy: number;
  scx: number;
  scy: number;
  subsets: number;
  max_subset_size: number;
  subset_size: number;
  check_x: number[];
  check_y: number[];
  subsets_idx: { x: number[]; y: number[] }[];
  values: number[];
  kid: number;
  kid_std: number;
  kernel_scale: number;
}

const FIXTURE = loadReferenceFixture<{ kid: KidCase[] }>();

void test('the KID reference fixture has every case', () => {
  assertReferenceCases(FIXTURE.kid, 4, 'KID');
});

for (const c of FIXTURE.kid) {
  void test(`KID matches the numpy reference to 1e-6: ${c.name}`, () => {
    const x = features(c.nx, c.d, c.seedx, c.offx, c.scx);
    const y = features(c.ny, c.d, c.seedy, c.offy, c.scy);
    assertGeneratorSum(x, c.check_x[0]!, 'X');
    assertGeneratorSum(y, c.check_y[0]!, 'Y');
    const plan = {
      subsetSize: c.subset_size,
      x: c.subsets_idx.map((s) => Int32Array.from(s.x)),
      y: c.subsets_idx.map((s) => Int32Array.from(s.y)),
    };
    const values = kidSubsetValues({ data: x, count: c.nx }, { data: y, count: c.ny }, c.d, plan);
    // 1e-6 relative to the kernel terms' scale (KID itself may be ~0 for equal distributions).
    const tol = 1e-6 * Math.max(Math.abs(c.kid), 1e-3 * c.kernel_scale);
    let mean = 0;
    values.forEach((v, s) => {
      assert.ok(
        Math.abs(v - c.values[s]!) <= tol,
        `subset ${s}: ${v} vs numpy ${c.values[s]} (|diff| ${Math.abs(v - c.values[s]!)} > ${tol})`,
      );
      mean += v / values.length;
    });
    assert.ok(Math.abs(mean - c.kid) <= tol, `KID ${mean} vs numpy ${c.kid}`);
    // With whole sets (m = nx = ny) the library's own plan is the reference's, so the public entry point agrees too.
    if (c.subset_size === c.nx && c.subset_size === c.ny) {
      const r = kernelInceptionDistance({ data: x, count: c.nx }, { data: y, count: c.ny }, c.d);
      assert.equal(r.subsets, 1);
      assert.equal(r.subsetSize, c.nx);
      assert.ok(Math.abs(r.kid - c.kid) <= tol, `kernelInceptionDistance ${r.kid} vs numpy ${c.kid}`);
    }
  });
}

void test('KID accepts float32 rows and gives the float64 result of the same values', () => {
  const c = FIXTURE.kid[0]!;
  const x = features(c.nx, c.d, c.seedx, c.offx, c.scx),
    y = features(c.ny, c.d, c.seedy, c.offy, c.scy);
  const x32 = Float32Array.from(x),
    y32 = Float32Array.from(y);
  const a = kernelInceptionDistance({ data: x32, count: c.nx }, { data: y32, count: c.ny }, c.d, { seed: 3 });
  const b = kernelInceptionDistance(
    { data: Float64Array.from(x32), count: c.nx },
    { data: Float64Array.from(y32), count: c.ny },
    c.d,
    { seed: 3 },
  );
  assert.equal(a.kid, b.kid);
});

void test('KID subsets follow clean-fid: m = min(nx, ny, 1000), 100 subsets, distinct rows, seeded', () => {
  assert.equal(KID_DEFAULT_SUBSETS, 100);
  assert.equal(KID_DEFAULT_MAX_SUBSET_SIZE, 1000);
  const p = kidSubsets(300, 5000);
  assert.equal(p.subsetSize, 300);
  assert.equal(p.x.length, 100);
  for (const idx of p.x)
    assert.deepEqual(
      Array.from(idx),
      Array.from({ length: 300 }, (_, i) => i),
      'the smaller side is used whole',
    );
  for (const idx of p.y) {
    assert.equal(new Set(idx).size, 300, 'rows drawn without replacement');
    assert.ok(idx.every((i) => i >= 0 && i < 5000));
  }
  assert.notDeepEqual(Array.from(p.y[0]!), Array.from(p.y[1]!), 'subsets differ');
  assert.deepEqual(
    kidSubsets(300, 5000).y.map((a) => Array.from(a)),
    p.y.map((a) => Array.from(a)),
    'same seed, same subsets',
  );
  assert.notDeepEqual(
    Array.from(kidSubsets(300, 5000, { seed: 1 }).y[0]!),
    Array.from(p.y[0]!),
    'another seed, other subsets',
  );
  assert.equal(kidSubsets(4000, 5000).subsetSize, 1000);
  assert.equal(kidSubsets(64, 64).x.length, 1, 'whole sets on both sides: one subset');
  assert.throws(() => kidSubsets(1, 10), { code: 'KILN_EVAL_FEATURE_STATS' });
  assert.throws(() => kidSubsets(10, 10, { subsets: 0 }), { code: 'KILN_CONFIG' });
});

void test('KID is unbiased at small sample counts where FID is not: mean over draws of equal distributions is ~0', () => {
  // Two independent draws of the same Gaussian, d = 64, n = 32 each (n < d): the average KID over
  // 40 draws is within 3 standard errors of 0.
  const d = 64,
    n = 32,
    draws = 40;
  const vals: number[] = [];
  for (let t = 0; t < draws; t++) {
    const r = seededRandom(1000 + t);
    const x = Float64Array.from({ length: n * d }, () => r.normal());
    const y = Float64Array.from({ length: n * d }, () => r.normal());
    vals.push(kernelInceptionDistance({ data: x, count: n }, { data: y, count: n }, d).kid);
  }
  const mean = vals.reduce((s, v) => s + v, 0) / draws;
  const se = Math.sqrt(vals.reduce((s, v) => s + (v - mean) ** 2, 0) / (draws - 1) / draws);
  assert.ok(Math.abs(mean) < 3 * se, `mean KID ${mean} over ${draws} draws is not within 3 SE (${se}) of 0`);
  // And a real difference (shifted mean) is far from 0.
  const r = seededRandom(7);
  const x = Float64Array.from({ length: n * d }, () => r.normal());
  const y = Float64Array.from({ length: n * d }, () => r.normal() + 0.5);
  assert.ok(kernelInceptionDistance({ data: x, count: n }, { data: y, count: n }, d).kid > 10 * se);
});

void test('kidNoise (jackknife) predicts the spread of KID over fresh generated sets against a fixed reference', () => {
  // d = 32, 64 generated samples vs a fixed reference of 400, 40 fresh generated draws, shifted
  // distribution: the measured std of KID and the mean jackknife estimate agree within 35%.
  const d = 32,
    n = 64,
    draws = 40;
  const rr = seededRandom(99);
  const ref = { data: Float64Array.from({ length: 400 * d }, () => Math.max(0, 0.5 + rr.normal())), count: 400 };
  const kids: number[] = [],
    est: number[] = [];
  for (let t = 0; t < draws; t++) {
    const r = seededRandom(2000 + t);
    const x = { data: Float64Array.from({ length: n * d }, () => Math.max(0, 0.6 + 1.1 * r.normal())), count: n };
    kids.push(kernelInceptionDistance(x, ref, d, { seed: 0 }).kid);
    est.push(kidNoise(x, ref, d).std);
  }
  const mean = kids.reduce((s, v) => s + v, 0) / draws;
  const measured = Math.sqrt(kids.reduce((s, v) => s + (v - mean) ** 2, 0) / (draws - 1));
  const predicted = est.reduce((s, v) => s + v, 0) / draws;
  assert.ok(Math.abs(predicted / measured - 1) < 0.35, `jackknife ${predicted} vs measured spread ${measured}`);
  assert.ok(
    Number.isNaN(kidNoise({ data: Float64Array.from({ length: 2 * d }, () => 1), count: 2 }, ref, d).std),
    'fewer than 3 samples: no estimate',
  );
});

void test('KID rejects non-finite features and wrong sizes', () => {
  assert.throws(
    () => kernelInceptionDistance({ data: [1, NaN, 3, 4], count: 2 }, { data: [1, 2, 3, 4], count: 2 }, 2),
    { code: 'KILN_EVAL_FEATURE_STATS' },
  );
  assert.throws(() => kernelInceptionDistance({ data: [1, 2, 3], count: 2 }, { data: [1, 2, 3, 4], count: 2 }, 2), {
    code: 'KILN_EVAL_FEATURE_STATS',
  });
});
