/**
 * Dense float64 linear algebra for FID, written for speed in plain JS on Float64Array:
 * row-major matrices, register-blocked 4x4 dot-product kernels (both operands read along
 * contiguous rows), cache blocking over the shared dimension.
 *
 * Only what the Frechet distance needs: products of the form A·Bᵀ (optionally lower triangle
 * only, optionally skipping known leading zeros), a pivoted Cholesky for positive semidefinite
 * matrices, and the eigenvalues of a symmetric matrix (Householder tridiagonalisation + implicit QL).
 */

/** Shared-dimension block: a 4-row tile of each operand (4 x 256 doubles = 8 KiB) stays in L1. */
const K_BLOCK = 256;
/** Rows of B kept hot (in L2) while every row of A streams past them. */
const J_BLOCK = 128;

export interface ABtOptions {
  /** Only compute out[i][j] for j <= i (out is square, A and B have the same rows). */
  lowerOnly?: boolean;
  /**
   * Row `j` of B is zero before column `bLeadingZeros(j)` (e.g. rows of a transposed lower
   * triangular factor: zero before `j`). Lets the kernel skip those products; zeros must be stored.
   */
  bRowStart?: (j: number) => number;
  /** Same for the rows of A. */
  aRowStart?: (i: number) => number;
}

/**
 * out (rowsA x rowsB, row-major, overwritten) = A (rowsA x k) · Bᵀ where B is rowsB x k: every
 * entry is a dot product of a row of A with a row of B.
 */
export function multiplyABt(
  a: Float64Array,
  rowsA: number,
  b: Float64Array,
  rowsB: number,
  k: number,
  out: Float64Array,
  opts: ABtOptions = {},
): void {
  out.fill(0, 0, rowsA * rowsB);
  const lower = opts.lowerOnly === true;
  const bStart = opts.bRowStart ?? (() => 0);
  const aStart = opts.aRowStart ?? (() => 0);
  for (let k0 = 0; k0 < k; k0 += K_BLOCK) {
    const k1 = Math.min(k, k0 + K_BLOCK);
    for (let j0 = 0; j0 < rowsB; j0 += J_BLOCK) {
      const j1 = Math.min(rowsB, j0 + J_BLOCK);
      for (let i = 0; i < rowsA; i += 4) {
        const iEnd = Math.min(rowsA, i + 4);
        const jLimit = lower ? Math.min(j1, iEnd) : j1;
        const ai = aStart(i);
        for (let j = j0; j < jLimit; j += 4) {
          const jEnd = Math.min(jLimit, j + 4);
          const ks = Math.max(k0, ai, bStart(j));
          if (ks >= k1) continue;
          if (iEnd - i === 4 && jEnd - j === 4) {
            tile4x4(a, i * k, k, b, j * k, k, ks, k1, out, i * rowsB + j, rowsB);
          } else {
            for (let ii = i; ii < iEnd; ii++) {
              for (let jj = j; jj < jEnd; jj++) {
                let s = 0;
                const ao = ii * k,
                  bo = jj * k;
                for (let kk = ks; kk < k1; kk++) s += a[ao + kk]! * b[bo + kk]!;
                out[ii * rowsB + jj]! += s;
              }
            }
          }
        }
      }
    }
  }
}

/**
 * The 4x4 micro-kernel: out[r][c] += sum_{kk in [ks,ke)} A[r][kk] * B[c][kk] with 16 accumulators
 * held in registers (V8 keeps these locals unboxed).
 */
function tile4x4(
  a: Float64Array,
  aOff: number,
  aStride: number,
  b: Float64Array,
  bOff: number,
  bStride: number,
  ks: number,
  ke: number,
  out: Float64Array,
  oOff: number,
  oStride: number,
): void {
  const a0 = aOff,
    a1 = a0 + aStride,
    a2 = a1 + aStride,
    a3 = a2 + aStride;
  const b0 = bOff,
    b1 = b0 + bStride,
    b2 = b1 + bStride,
    b3 = b2 + bStride;
  let c00 = 0,
    c01 = 0,
    c02 = 0,
    c03 = 0,
    c10 = 0,
    c11 = 0,
    c12 = 0,
    c13 = 0;
  let c20 = 0,
    c21 = 0,
    c22 = 0,
    c23 = 0,
    c30 = 0,
    c31 = 0,
    c32 = 0,
    c33 = 0;
  for (let kk = ks; kk < ke; kk++) {
    const x0 = a[a0 + kk]!,
      x1 = a[a1 + kk]!,
      x2 = a[a2 + kk]!,
      x3 = a[a3 + kk]!;
    const y0 = b[b0 + kk]!,
      y1 = b[b1 + kk]!,
      y2 = b[b2 + kk]!,
      y3 = b[b3 + kk]!;
    c00 += x0 * y0;
    c01 += x0 * y1;
    c02 += x0 * y2;
    c03 += x0 * y3;
    c10 += x1 * y0;
    c11 += x1 * y1;
    c12 += x1 * y2;
    c13 += x1 * y3;
    c20 += x2 * y0;
    c21 += x2 * y1;
    c22 += x2 * y2;
    c23 += x2 * y3;
    c30 += x3 * y0;
    c31 += x3 * y1;
    c32 += x3 * y2;
    c33 += x3 * y3;
  }
  let o = oOff;
  out[o]! += c00;
  out[o + 1]! += c01;
  out[o + 2]! += c02;
  out[o + 3]! += c03;
  o += oStride;
  out[o]! += c10;
  out[o + 1]! += c11;
  out[o + 2]! += c12;
  out[o + 3]! += c13;
  o += oStride;
  out[o]! += c20;
  out[o + 1]! += c21;
  out[o + 2]! += c22;
  out[o + 3]! += c23;
  o += oStride;
  out[o]! += c30;
  out[o + 1]! += c31;
  out[o + 2]! += c32;
  out[o + 3]! += c33;
}

/**
 * Symmetric rank-k update of a lower triangle: gram[i][j] += sum_t Yt[i][t] * Yt[j][t] for j <= i,
 * where Yt is n x k (row i = the i-th coordinate of k samples). Entries above the diagonal inside
 * 4x4 diagonal tiles may also be written; read only the lower triangle.
 */
export function accumulateGramLower(yt: Float64Array, n: number, k: number, gram: Float64Array): void {
  for (let j0 = 0; j0 < n; j0 += J_BLOCK) {
    const j1 = Math.min(n, j0 + J_BLOCK);
    for (let i = j0 - (j0 % 4); i < n; i += 4) {
      const iEnd = Math.min(n, i + 4);
      const jLimit = Math.min(j1, iEnd);
      for (let j = j0; j < jLimit; j += 4) {
        const jEnd = Math.min(jLimit, j + 4);
        if (iEnd - i === 4 && jEnd - j === 4) {
          tile4x4(yt, i * k, k, yt, j * k, k, 0, k, gram, i * n + j, n);
        } else {
          for (let ii = i; ii < iEnd; ii++) {
            for (let jj = j; jj < jEnd && jj <= ii; jj++) {
              let s = 0;
              const ao = ii * k,
                bo = jj * k;
              for (let t = 0; t < k; t++) s += yt[ao + t]! * yt[bo + t]!;
              gram[ii * n + jj]! += s;
            }
          }
        }
      }
    }
  }
}

/** Copy the lower triangle of a square row-major matrix onto its upper triangle. */
export function mirrorLowerToUpper(m: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) m[j * n + i] = m[i * n + j]!;
}
