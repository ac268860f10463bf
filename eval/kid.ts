/**
 * Kernel Inception Distance (Binkowski et al. 2018), as clean-fid's `kernel_distance` and
 * torch-fidelity's `kid` compute it: the unbiased MMD² estimator with the cubic polynomial kernel
 * k(x, y) = (x·y / d + 1)³, averaged over random subsets. All arithmetic in float64.
 *
 * One subset of m generated rows X and m reference rows Y (each drawn without replacement):
 *   MMD²_u = (Σ_{i≠j} k(x_i, x_j) + Σ_{i≠j} k(y_i, y_j)) / (m (m - 1)) - 2 Σ_{i,j} k(x_i, y_j) / m²
 * KID = the mean over `subsets` subsets; `std` is the population std over subsets (torch-fidelity's
 * `kernel_inception_distance_std`).
 *
 * Subset protocol (clean-fid): subset size m = min(nX, nY, maxSubsetSize) with maxSubsetSize 1000
 * and 100 subsets by default. With few samples (nX or nY below 1000) m shrinks to the smaller set,
 * as clean-fid does (torch-fidelity refuses instead). A side whose subset is the whole set gets the
 * same rows in every subset (the estimator does not depend on row order), so when m = nX = nY
 * every subset is the same and one is computed (the mean clean-fid would report is that value).
 * Subsets come from `Rng.derive(seed, 'kid-subset', side, s)` (partial Fisher-Yates), so a KID
 * depends only on the features and the seed, not on numpy's generator: checked against a numpy
 * reference on explicit index lists (`test/eval/kid.test.ts`).
 *
 * Unbiased: its expectation is the population MMD² at any m (it can be slightly negative when the
 * two distributions match), unlike FID, whose bias grows as the sample count falls below the
 * feature dimension (eval/architecture.md, "FID's bias").
 */
import { Rng } from '../training/rng.js';
import { ConfigError } from '../infra/errors.js';
import { multiplyABt } from './linalg.js';
import { FeatureStatisticsError } from './statistics.js';

/** clean-fid's `kernel_distance` defaults (torch-fidelity's `kid_subsets`, `kid_subset_size`). */
export const KID_DEFAULT_SUBSETS = 100;
export const KID_DEFAULT_MAX_SUBSET_SIZE = 1000;

export interface KidOptions {
  /** Number of random subsets (default 100). */
  subsets?: number;
  /** Largest subset size (default 1000); the size used is min(nX, nY, this). */
  maxSubsetSize?: number;
  /** Seed of the subset draws (default 0). */
  seed?: number;
}

export interface KidResult {
  /** Mean unbiased MMD² over the subsets. */
  kid: number;
  /** Population standard deviation over the subsets (0 when one subset is computed). */
  std: number;
  /** Rows per side in each subset. */
  subsetSize: number;
  /** Subsets actually computed (1 when both sides are used whole). */
  subsets: number;
}

/** Row-index lists of the subsets (each list has `subsetSize` distinct rows). */
export interface KidSubsets {
  subsetSize: number;
  x: Int32Array[];
  y: Int32Array[];
}

/** Features as rows of `d` values (float32 or float64; copied to float64 once). */
export interface FeatureRows {
  data: ArrayLike<number>;
  count: number;
}

/** The subsets clean-fid's protocol draws for nX and nY rows (see the module comment). */
export function kidSubsets(nX: number, nY: number, options: KidOptions = {}): KidSubsets {
  const subsets = options.subsets ?? KID_DEFAULT_SUBSETS;
  const maxSize = options.maxSubsetSize ?? KID_DEFAULT_MAX_SUBSET_SIZE;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(subsets) || subsets < 1)
    throw new ConfigError(
      `KID subsets ${subsets} is not a positive integer`,
      "use e.g. 100 subsets (clean-fid's default).",
    );
  if (!Number.isInteger(maxSize) || maxSize < 2)
    throw new ConfigError(
      `KID maxSubsetSize ${maxSize} must be an integer >= 2`,
      "use e.g. 1000 (clean-fid's default).",
    );
  const m = Math.min(nX, nY, maxSize);
  if (m < 2)
    throw new FeatureStatisticsError(
      `KID needs at least 2 samples on each side (got ${nX} and ${nY})`,
      'generate and reference at least 2 images (KID is meaningful from a few dozen).',
    );
  const whole = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  const draw = (n: number, side: string, s: number): Int32Array => {
    if (m === n) return whole(n);
    // Partial Fisher-Yates: the first m entries of a seeded shuffle, sorted (order is irrelevant).
    const rng = Rng.derive(seed, 'kid-subset', side, s);
    const p = whole(n);
    for (let i = 0; i < m; i++) {
      const j = i + rng.int(n - i);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p.slice(0, m).sort();
  };
  const count = m === nX && m === nY ? 1 : subsets;
  const x: Int32Array[] = [],
    y: Int32Array[] = [];
  for (let s = 0; s < count; s++) {
    x.push(draw(nX, 'x', s));
    y.push(draw(nY, 'y', s));
  }
  return { subsetSize: m, x, y };
}

/** KID of generated features X against reference features Y (rows of `dim`), clean-fid's protocol. */
export function kernelInceptionDistance(
  x: FeatureRows,
  y: FeatureRows,
  dim: number,
  options: KidOptions = {},
): KidResult {
  const plan = kidSubsets(x.count, y.count, options);
  const values = kidSubsetValues(x, y, dim, plan);
  let mean = 0;
  for (const v of values) mean += v;
  mean /= values.length;
  let sq = 0;
  for (const v of values) sq += (v - mean) ** 2;
  return { kid: mean, std: Math.sqrt(sq / values.length), subsetSize: plan.subsetSize, subsets: values.length };
}

/** The unbiased MMD² of each subset of `plan` (the numbers KID averages). */
export function kidSubsetValues(x: FeatureRows, y: FeatureRows, dim: number, plan: KidSubsets): Float64Array {
  const X = toF64(x, dim, 'generated'),
    Y = toF64(y, dim, 'reference');
  const m = plan.subsetSize;
  const n = plan.x.length;
  if (plan.y.length !== n) throw new RangeError('KID plan: x and y need the same number of subsets');
  for (const idx of [...plan.x, ...plan.y])
    if (idx.length !== m) throw new RangeError(`KID plan: every subset needs ${m} rows`);
  const sxx = blockSums(X, x.count, X, x.count, dim, plan.x, plan.x, true);
  const syy = blockSums(Y, y.count, Y, y.count, dim, plan.y, plan.y, true);
  const sxy = blockSums(X, x.count, Y, y.count, dim, plan.x, plan.y, false);
  const out = new Float64Array(n);
  for (let s = 0; s < n; s++) out[s] = (sxx[s]! + syy[s]!) / (m * (m - 1)) - (2 * sxy[s]!) / (m * m);
  return out;
}

/** Largest full dot-product matrix computed once and looked up (8M doubles = 64 MiB). */
const FULL_LIMIT = 8 * 1024 * 1024;

/**
 * Per subset s: Σ k(a_i, b_j) over rows i of A in subsetsA[s] and j of B in subsetsB[s]; when
 * `offDiagonal` (A = B, same subsets), over pairs of distinct positions i ≠ j. Dot products come
 * either from one full A·Bᵀ (when that is fewer products than the subsets need) or per subset.
 */
function blockSums(
  A: Float64Array,
  nA: number,
  B: Float64Array,
  nB: number,
  d: number,
  subsetsA: readonly Int32Array[],
  subsetsB: readonly Int32Array[],
  offDiagonal: boolean,
): Float64Array {
  const count = subsetsA.length;
  const m = subsetsA[0]!.length;
  const out = new Float64Array(count);
  const invD = 1 / d;
  const k = (dot: number) => {
    const t = dot * invD + 1;
    return t * t * t;
  };
  // Subsets identical to the first (a whole set used every time) reuse its sum.
  const same = (s: number) => equalIdx(subsetsA[s]!, subsetsA[0]!) && equalIdx(subsetsB[s]!, subsetsB[0]!);
  const full = nA * nB <= FULL_LIMIT && nA * nB <= count * m * m;
  let G: Float64Array | null = null;
  if (full) {
    G = new Float64Array(nA * nB);
    multiplyABt(A, nA, B, nB, d, G, offDiagonal ? { lowerOnly: true } : {});
  }
  const ga = new Float64Array(full ? 0 : m * d),
    gb = new Float64Array(full || offDiagonal ? 0 : m * d);
  const dots = new Float64Array(full ? 0 : m * m);
  for (let s = 0; s < count; s++) {
    if (s > 0 && same(s)) {
      out[s] = out[0]!;
      continue;
    }
    const ia = subsetsA[s]!,
      ib = subsetsB[s]!;
    let sum = 0;
    if (G) {
      if (offDiagonal) {
        for (let p = 1; p < m; p++) {
          const i = ia[p]!;
          for (let q = 0; q < p; q++) {
            const j = ia[q]!;
            sum += k(i > j ? G[i * nB + j]! : G[j * nB + i]!);
          }
        }
        sum *= 2;
      } else {
        for (let p = 0; p < m; p++) {
          const row = ia[p]! * nB;
          for (let q = 0; q < m; q++) sum += k(G[row + ib[q]!]!);
        }
      }
    } else {
      gather(A, ia, d, ga);
      if (offDiagonal) {
        multiplyABt(ga, m, ga, m, d, dots, { lowerOnly: true });
        for (let p = 1; p < m; p++) for (let q = 0; q < p; q++) sum += k(dots[p * m + q]!);
        sum *= 2;
      } else {
        gather(B, ib, d, gb);
        multiplyABt(ga, m, gb, m, d, dots);
        for (let i = 0; i < m * m; i++) sum += k(dots[i]!);
      }
    }
    out[s] = sum;
  }
  return out;
}

function gather(src: Float64Array, idx: Int32Array, d: number, dst: Float64Array): void {
  for (let p = 0; p < idx.length; p++) dst.set(src.subarray(idx[p]! * d, (idx[p]! + 1) * d), p * d);
}

function equalIdx(a: Int32Array, b: Int32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function toF64(f: FeatureRows, d: number, what: string): Float64Array {
  if (!Number.isInteger(d) || d < 1)
    throw new FeatureStatisticsError(
      `KID feature dimension ${d} is not a positive integer`,
      "pass the extractor's featureDim.",
    );
  if (f.data.length !== f.count * d)
    throw new FeatureStatisticsError(
      `KID: ${what} features hold ${f.data.length} values, not ${f.count} x ${d}`,
      'pass whole rows of featureDim values.',
    );
  const out = f.data instanceof Float64Array ? f.data : Float64Array.from(f.data);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i]!))
      throw new FeatureStatisticsError(
        `KID: ${what} feature ${i % d} of row ${Math.floor(i / d)} is ${out[i]}`,
        'the extractor produced non-finite features (diverged samples or a broken model).',
      );
  }
  return out;
}

/** Generated rows per block when {@link kidNoise} forms kernel rows (bounds memory to a block x n doubles). */
const NOISE_BLOCK = 128;

/**
 * The noise of a KID measured on these nX generated samples against this (cached, fixed) reference
 * set: the standard deviation to expect between two evaluations of the same model with different
 * sampling noise, which is what min_delta must exceed for an improvement to be real.
 *
 * Jackknife over the generated samples of the part of KID that depends on them,
 * f(X) = Σ_{i≠j} k(x_i, x_j) / (n(n-1)) - 2 Σ_i mean_j k(x_i, y_j) / n (the reference-only term is
 * the same at every evaluation): leave-one-out values in O(1) each from the kernel row sums,
 * var = (n-1)/n Σ (f_{-i} - mean)². The jackknife variance is biased upwards (Efron-Stein), most
 * where KID's second-order (pairwise) term dominates, i.e. few samples in many dimensions: an
 * upper-side estimate. bench/fid-bias.ts --noise compares it with the spread measured over fresh
 * generated sets (eval/architecture.md: 2-3x the measured std at 256 samples of 2048-d features;
 * within 35% at 64 samples of 32-d features, test/eval/kid.test.ts).
 * Cost: n² d / 2 + n nY d multiply-adds, memory O(block x (n + nY)).
 */
export function kidNoise(x: FeatureRows, y: FeatureRows, dim: number): { std: number; method: string } {
  const n = x.count,
    nY = y.count;
  const method = `jackknife over the ${n} generated samples, reference fixed (${nY} rows)`;
  if (n < 3 || nY < 1) return { std: NaN, method };
  const X = toF64(x, dim, 'generated'),
    Y = toF64(y, dim, 'reference');
  const invD = 1 / dim;
  const k = (dot: number) => {
    const t = dot * invD + 1;
    return t * t * t;
  };
  const r = new Float64Array(n); // Σ_{b≠i} k(x_i, x_b)
  const t = new Float64Array(n); // mean_j k(x_i, y_j)
  const dx = new Float64Array(NOISE_BLOCK * n),
    dy = new Float64Array(NOISE_BLOCK * nY);
  for (let i0 = 0; i0 < n; i0 += NOISE_BLOCK) {
    const rows = Math.min(NOISE_BLOCK, n - i0);
    const block = X.subarray(i0 * dim, (i0 + rows) * dim);
    multiplyABt(block, rows, X, n, dim, dx);
    multiplyABt(block, rows, Y, nY, dim, dy);
    for (let p = 0; p < rows; p++) {
      const i = i0 + p;
      let sx = 0,
        sy = 0;
      for (let b = 0; b < n; b++) if (b !== i) sx += k(dx[p * n + b]!);
      for (let j = 0; j < nY; j++) sy += k(dy[p * nY + j]!);
      r[i] = sx;
      t[i] = sy / nY;
    }
  }
  let S = 0,
    T = 0;
  for (let i = 0; i < n; i++) {
    S += r[i]!;
    T += t[i]!;
  }
  const loo = new Float64Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    loo[i] = (S - 2 * r[i]!) / ((n - 1) * (n - 2)) - (2 * (T - t[i]!)) / (n - 1);
    mean += loo[i]! / n;
  }
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (loo[i]! - mean) ** 2;
  return { std: Math.sqrt(((n - 1) / n) * sq), method };
}
