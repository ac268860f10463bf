/**
 * Factorisations of symmetric matrices in float64 (row-major Float64Array, n x n):
 * a pivoted Cholesky for positive semidefinite (possibly rank-deficient) matrices, and the
 * eigenvalues of a symmetric matrix via Householder tridiagonalisation and implicit QL.
 */

/** P·S·Pᵀ ≈ L·Lᵀ with L lower triangular (n x rank) in pivoted order. */
export interface PivotedCholesky {
  n: number;
  /** Number of pivots above the tolerance (numerical rank). */
  rank: number;
  /** perm[i] = original index of pivoted row i. */
  perm: Int32Array;
  /** Lᵀ, rank x n row-major: row j is column j of L (zero before index j; zeros stored). */
  lt: Float64Array;
}

/**
 * Pivoted (diagonal pivoting, LAPACK dpstrf-style) Cholesky of a positive semidefinite matrix.
 * Stops when the largest remaining diagonal is <= `tol` (default n·eps·max(diag), as LAPACK), so
 * rank-deficient covariances (fewer samples than dimensions) factor without any regulariser.
 * Reads only the lower triangle of `s`; `s` is not modified.
 */
export function pivotedCholesky(s: Float64Array, n: number, tol?: number): PivotedCholesky {
  const perm = new Int32Array(n);
  const rem = new Float64Array(n); // remaining diagonal of the Schur complement
  let maxDiag = 0;
  for (let i = 0; i < n; i++) {
    perm[i] = i;
    rem[i] = s[i * n + i]!;
    if (rem[i]! > maxDiag) maxDiag = rem[i]!;
  }
  const threshold = tol ?? n * Number.EPSILON * maxDiag;
  // L in row-major with full rows (row i holds L[i][0..i]); left-looking dot-product form.
  const l = new Float64Array(n * n);
  let rank = 0;
  for (let j = 0; j < n; j++) {
    let q = j;
    for (let i = j + 1; i < n; i++) if (rem[i]! > rem[q]!) q = i;
    if (!(rem[q]! > threshold)) break;
    if (q !== j) {
      swap(perm, j, q);
      swap(rem, j, q);
      for (let t = 0; t < j; t++) swap(l, j * n + t, q * n + t);
    }
    const ljj = Math.sqrt(rem[j]!);
    l[j * n + j] = ljj;
    const inv = 1 / ljj;
    const sRow = perm[j]! * n; // S[perm[i]][perm[j]] = S[perm[j]][perm[i]] (read the lower triangle)
    const jo = j * n;
    for (let i = j + 1; i < n; i++) {
      const io = i * n;
      let dot = 0;
      for (let t = 0; t < j; t++) dot += l[io + t]! * l[jo + t]!;
      const pi = perm[i]!,
        pj = perm[j]!;
      const sij = pi <= pj ? s[sRow + pi]! : s[pi * n + pj]!;
      const v = (sij - dot) * inv;
      l[io + j] = v;
      rem[i]! -= v * v;
    }
    rank = j + 1;
  }
  const lt = new Float64Array(rank * n);
  for (let j = 0; j < rank; j++) for (let i = j; i < n; i++) lt[j * n + i] = l[i * n + j]!;
  return { n, rank, perm, lt };
}

function swap(a: Float64Array | Int32Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}

/**
 * All eigenvalues of a symmetric matrix (ascending). Reads only the lower triangle; `a` is
 * used as workspace and destroyed. Householder tridiagonalisation (4/3 n³ flops) followed by the
 * implicit QL algorithm with Wilkinson-type shifts (O(n²) without eigenvectors).
 */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tridiagonalize(a, n, d, e);
  tridiagonalQL(d, e, n);
  return d.sort();
}

/**
 * Reduce the lower triangle of `a` to tridiagonal form: diagonal d[0..n), subdiagonal e[0..n-1).
 * Householder reflections column by column (LAPACK dsytd2, lower). Memory-bound, so each step's
 * rank-2 update of the trailing block is fused with the next step's symmetric matrix-vector
 * product: one read-modify-write pass over the trailing triangle per column instead of three.
 */
function tridiagonalize(a: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  if (n <= 2) {
    if (n >= 1) d[0] = a[0]!;
    if (n === 2) {
      d[1] = a[n + 1]!;
      e[0] = a[n]!;
    }
    return;
  }
  let v = new Float64Array(n),
    vNext = new Float64Array(n);
  let p = new Float64Array(n),
    pNext = new Float64Array(n);
  const w = new Float64Array(n);
  let tau = reflector(a, n, 0, d, e, v);
  symmetricMatVec(a, n, 1, v, p);
  for (let k = 0; k < n - 2; k++) {
    const m = n - k - 1; // trailing block rows/cols k+1..n-1; v, p, w are indexed from k+1
    if (tau !== 0) {
      let pv = 0;
      for (let i = 0; i < m; i++) {
        p[i]! *= tau;
        pv += p[i]! * v[i]!;
      }
      const kk = 0.5 * tau * pv;
      for (let i = 0; i < m; i++) w[i] = p[i]! - kk * v[i]!;
    } else {
      w.fill(0, 0, m);
    }
    const base = k + 1;
    if (k === n - 3) {
      // Last 2x2 block: apply the update, then read off the remaining entries.
      for (let i = 0; i < m; i++) {
        const ro = (base + i) * n + base;
        for (let j = 0; j <= i; j++) a[ro + j]! -= v[i]! * w[j]! + w[i]! * v[j]!;
      }
      d[n - 2] = a[(n - 2) * n + (n - 2)]!;
      e[n - 2] = a[(n - 1) * n + (n - 2)]!;
      d[n - 1] = a[(n - 1) * n + (n - 1)]!;
      break;
    }
    // Update column k+1 of the trailing block, then form the next reflector from it.
    const w0 = w[0]!,
      v0 = v[0]!;
    for (let i = 0; i < m; i++) a[(base + i) * n + base]! -= v[i]! * w0 + w[i]! * v0;
    const tauNext = reflector(a, n, k + 1, d, e, vNext);
    // Fused: rank-2 update of rows/cols k+2.. and pNext = A' vNext (indices from k+2).
    const mNext = m - 1;
    pNext.fill(0, 0, mNext);
    for (let r = 0; r < mNext; r++) {
      const li = r + 1;
      const vi = v[li]!,
        wi = w[li]!,
        vr = vNext[r]!;
      const ro = (base + li) * n + base + 1; // row k+2+r, starting at column k+2
      let s = 0;
      for (let c = 0; c < r; c++) {
        const an = a[ro + c]! - (vi * w[c + 1]! + wi * v[c + 1]!);
        a[ro + c] = an;
        s += an * vNext[c]!;
        pNext[c]! += an * vr;
      }
      const diag = a[ro + r]! - (vi * w[li]! + wi * v[li]!);
      a[ro + r] = diag;
      pNext[r]! += s + diag * vr;
    }
    [v, vNext] = [vNext, v];
    [p, pNext] = [pNext, p];
    tau = tauNext;
  }
}

/**
 * Householder reflector annihilating column k below the subdiagonal: sets d[k], e[k] and
 * v (indexed from row k+1, v[0] = 1); returns tau (0 when the column is already reduced).
 */
function reflector(a: Float64Array, n: number, k: number, d: Float64Array, e: Float64Array, v: Float64Array): number {
  d[k] = a[k * n + k]!;
  const m = n - k - 1;
  const alpha = a[(k + 1) * n + k]!;
  let sigma = 0;
  for (let i = 1; i < m; i++) {
    const x = a[(k + 1 + i) * n + k]!;
    sigma += x * x;
  }
  v[0] = 1;
  if (sigma === 0) {
    e[k] = alpha;
    for (let i = 1; i < m; i++) v[i] = 0;
    return 0;
  }
  const beta = alpha >= 0 ? -Math.sqrt(alpha * alpha + sigma) : Math.sqrt(alpha * alpha + sigma);
  const scale = 1 / (alpha - beta);
  e[k] = beta;
  for (let i = 1; i < m; i++) v[i] = a[(k + 1 + i) * n + k]! * scale;
  return (beta - alpha) / beta;
}

/** p = A[from.., from..] v (lower triangle, one pass per row: dot + axpy). */
function symmetricMatVec(a: Float64Array, n: number, from: number, v: Float64Array, p: Float64Array): void {
  const m = n - from;
  p.fill(0, 0, m);
  for (let i = 0; i < m; i++) {
    const ro = (from + i) * n + from;
    const vi = v[i]!;
    let s = 0;
    for (let j = 0; j < i; j++) {
      const aij = a[ro + j]!;
      s += aij * v[j]!;
      p[j]! += aij * vi;
    }
    p[i]! += s + a[ro + i]! * vi;
  }
}

/** Implicit QL with shifts on a symmetric tridiagonal matrix (eigenvalues overwrite d). */
function tridiagonalQL(d: Float64Array, e: Float64Array, n: number): void {
  for (let l = 0; l < n; l++) {
    let iter = 0;
    let m: number;
    do {
      for (m = l; m < n - 1; m++) {
        const dd = Math.abs(d[m]!) + Math.abs(d[m + 1]!);
        if (Math.abs(e[m]!) <= Number.EPSILON * dd) break;
      }
      if (m !== l) {
        if (iter++ === 100) throw new Error(`tridiagonal QL did not converge for eigenvalue ${l}`);
        let g = (d[l + 1]! - d[l]!) / (2 * e[l]!);
        let r = Math.hypot(g, 1);
        g = d[m]! - d[l]! + e[l]! / (g + (g >= 0 ? Math.abs(r) : -Math.abs(r)));
        let s = 1,
          c = 1,
          p = 0;
        let i: number;
        let underflow = false;
        for (i = m - 1; i >= l; i--) {
          const f = s * e[i]!;
          const b = c * e[i]!;
          r = Math.hypot(f, g);
          e[i + 1] = r;
          if (r === 0) {
            d[i + 1]! -= p;
            e[m] = 0;
            underflow = true;
            break;
          }
          s = f / r;
          c = g / r;
          g = d[i + 1]! - p;
          r = (d[i]! - g) * s + 2 * c * b;
          p = s * r;
          d[i + 1] = g + p;
          g = c * r - b;
        }
        if (underflow) continue;
        d[l]! -= p;
        e[l] = g;
        e[m] = 0;
      }
    } while (m !== l);
  }
}
