/** Symmetric eigenvalues and pivoted Cholesky on matrices with known answers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pivotedCholesky, symmetricEigenvalues } from '../../eval/symmetric.js';
import { multiplyABt } from '../../eval/linalg.js';
import { seededRandom } from './helpers.js';

/** A = Q diag(eig) Qᵀ with Q = I - 2 u uᵀ / (uᵀ u), a random Householder reflection (orthogonal). */
function withEigenvalues(eig: number[], seed: number): Float64Array {
  const n = eig.length;
  const rnd = seededRandom(seed);
  const u = Array.from({ length: n }, () => rnd.normal());
  const uu = u.reduce((s, x) => s + x * x, 0);
  const q = (i: number, j: number) => (i === j ? 1 : 0) - (2 * u[i]! * u[j]!) / uu;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q(i, k) * eig[k]! * q(j, k);
      a[i * n + j] = s;
    }
  return a;
}

const EIG_CASES: { name: string; eig: number[] }[] = [
  { name: '1x1', eig: [3.5] },
  { name: '2x2', eig: [-1, 2] },
  { name: '3x3 repeated', eig: [1, 1, 4] },
  { name: 'spread 1e-8..1e4', eig: [1e-8, 1e-4, 0.5, 1, 2, 30, 1e4, 7, 0, -3, 1e-6, 5] },
  { name: '64 random', eig: Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * 10) },
];
for (const c of EIG_CASES) {
  void test(`symmetricEigenvalues: ${c.name}`, () => {
    const n = c.eig.length;
    const got = symmetricEigenvalues(withEigenvalues(c.eig, n), n);
    const want = [...c.eig].sort((x, y) => x - y);
    const scale = Math.max(...c.eig.map(Math.abs));
    for (let i = 0; i < n; i++)
      assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-12 * scale * n, `eig ${i}: ${got[i]} vs ${want[i]}`);
  });
}

void test('symmetricEigenvalues: an already-reduced (zero) column is skipped correctly', () => {
  const a = withEigenvalues([1, 2, 3, 4, 5], 9);
  const n = 6;
  const b = new Float64Array(n * n);
  for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) b[(i + 1) * n + (j + 1)] = a[i * 5 + j]!;
  b[0] = 7; // decoupled first row/column
  assert.deepEqual(
    Array.from(symmetricEigenvalues(b, n), (x) => +x.toFixed(10)),
    [1, 2, 3, 4, 5, 7],
  );
});

void test('pivotedCholesky: exact rank of X Xᵀ and P L Lᵀ Pᵀ reproduces it', () => {
  const n = 40,
    r = 7;
  const rnd = seededRandom(4);
  const x = Float64Array.from({ length: n * r }, () => rnd.normal());
  const s = new Float64Array(n * n);
  multiplyABt(x, n, x, n, r, s);
  const c = pivotedCholesky(s, n);
  assert.equal(c.rank, r);
  const l = new Float64Array(n * r); // L (n x rank) from Lᵀ
  for (let j = 0; j < r; j++) for (let i = 0; i < n; i++) l[i * r + j] = c.lt[j * n + i]!;
  const llt = new Float64Array(n * n);
  multiplyABt(l, n, l, n, r, llt);
  let worst = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      worst = Math.max(worst, Math.abs(llt[i * n + j]! - s[c.perm[i]! * n + c.perm[j]!]!));
    }
  assert.ok(worst < 1e-12 * s.reduce((m, v) => Math.max(m, Math.abs(v)), 0), `reconstruction error ${worst}`);
  for (let j = 0; j < r; j++)
    for (let i = 0; i < j; i++) assert.equal(c.lt[j * n + i], 0, 'Lᵀ is upper triangular (L lower)');
});
