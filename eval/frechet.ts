/**
 * Frechet distance between two Gaussians fitted to feature sets (FID when the features are
 * Inception-v3 pool features), in float64:
 *
 *   d² = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr( sqrtm(S1 S2) )
 *
 * The trace of the matrix square root is computed without forming sqrtm: with a pivoted
 * Cholesky factor S1 = P L Lᵀ Pᵀ (rank r, exact for rank-deficient S1), S1 S2 is similar to the
 * symmetric positive semidefinite r x r matrix B = Lᵀ (Pᵀ S2 P) L, so
 *
 *   tr sqrtm(S1 S2) = Σ sqrt(λ_i(B)),  λ_i clamped at 0 (rounding can make tiny ones negative).
 *
 * This is the quantity pytorch-fid computes with scipy.linalg.sqrtm (test/eval/frechet.test.ts
 * checks agreement to 1e-6 relative, including covariances from fewer samples than dimensions),
 * but it never produces complex intermediates and needs no eps offset. Cost for d = 2048:
 * Cholesky d³/3, two triangular products ~1.5 d³, tridiagonalisation 4/3 d³ flops.
 */
import { FeatureStatisticsError, type FeatureStatistics } from './statistics.js';
import { multiplyABt } from './linalg.js';
import { pivotedCholesky, symmetricEigenvalues } from './symmetric.js';

/** The distance and its parts (all float64). */
export interface FrechetDistance {
  /** d² (what FID reports; the name "distance" is historical). */
  distance: number;
  /** ||mu1 - mu2||² */
  meanTerm: number;
  traceA: number;
  traceB: number;
  /** tr sqrtm(S1 S2) */
  traceSqrtProduct: number;
  /** Numerical rank of the covariance that was factored. */
  factoredRank: number;
}

/** Mean and covariance; `count` (when known) picks the cheaper side to factor. */
export type GaussianStatistics = Pick<FeatureStatistics, 'dim' | 'mean' | 'cov'> & { count?: number };

/** Frechet distance between N(a.mean, a.cov) and N(b.mean, b.cov). Covariances: full symmetric. */
export function frechetDistance(a: GaussianStatistics, b: GaussianStatistics): FrechetDistance {
  const d = a.dim;
  if (b.dim !== d || a.mean.length !== d || b.mean.length !== d || a.cov.length !== d * d || b.cov.length !== d * d) {
    throw new FeatureStatisticsError(
      `cannot compare statistics of dimension ${a.dim} (mean ${a.mean.length}, cov ${a.cov.length}) with ${b.dim} (mean ${b.mean.length}, cov ${b.cov.length})`,
      'compute both sets of statistics with the same feature extractor.',
    );
  }
  let meanTerm = 0,
    traceA = 0,
    traceB = 0;
  for (let i = 0; i < d; i++) {
    const diff = a.mean[i]! - b.mean[i]!;
    meanTerm += diff * diff;
    traceA += a.cov[i * d + i]!;
    traceB += b.cov[i * d + i]!;
  }
  // Factor the covariance of fewer samples: its rank (<= count - 1) bounds the size of B.
  const [f, g] = (a.count ?? Infinity) <= (b.count ?? Infinity) ? [a, b] : [b, a];
  const { traceSqrt, rank } = traceSqrtProduct(f.cov, g.cov, d);
  return {
    distance: meanTerm + traceA + traceB - 2 * traceSqrt,
    meanTerm,
    traceA,
    traceB,
    traceSqrtProduct: traceSqrt,
    factoredRank: rank,
  };
}

/**
 * tr sqrtm(S1 S2) for symmetric positive semidefinite S1, S2 (d x d row-major; only lower
 * triangles are read).
 */
export function traceSqrtProduct(s1: Float64Array, s2: Float64Array, d: number): { traceSqrt: number; rank: number } {
  const chol = pivotedCholesky(s1, d);
  const r = chol.rank;
  if (r === 0) return { traceSqrt: 0, rank: 0 };
  const { perm, lt } = chol;
  // S2 permuted like S1's pivots: s2p[i][j] = S2[perm i][perm j], read from the lower triangle.
  const s2p = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    const pi = perm[i]!;
    for (let j = 0; j < d; j++) {
      const pj = perm[j]!;
      s2p[i * d + j] = pi >= pj ? s2[pi * d + pj]! : s2[pj * d + pi]!;
    }
  }
  // U = Lᵀ S2p (r x d): U[i][m] = <row i of Lᵀ, row m of S2p>; row i of Lᵀ is zero before i.
  const u = new Float64Array(r * d);
  multiplyABt(lt, r, s2p, d, d, u, { aRowStart: (i) => i });
  // B = U L (r x r, lower half): B[i][j] = <row i of U, row j of Lᵀ>; row j of Lᵀ is zero before j.
  const bm = new Float64Array(r * r);
  multiplyABt(u, r, lt, r, d, bm, { lowerOnly: true, bRowStart: (j) => j });
  const eig = symmetricEigenvalues(bm, r);
  let traceSqrt = 0;
  for (let i = 0; i < r; i++) traceSqrt += Math.sqrt(Math.max(eig[i]!, 0));
  return { traceSqrt, rank: r };
}
