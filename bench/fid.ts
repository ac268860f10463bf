/**
 * FID throughput benchmark: N x D feature vectors -> mean/covariance (streaming, float64) ->
 * Frechet distance against a second set. Prints seconds per stage.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/fid.js [--n 10000] [--dim 2048] [--batch 500]
 *
 * Features are synthetic (a seeded factor model, non-negative like Inception pool features);
 * they are generated outside the timed region, batch by batch as an extractor would emit them.
 */
import { FeatureStatisticsAccumulator, type FeatureStatistics } from '../eval/statistics.js';
import { frechetDistance } from '../eval/frechet.js';
import { pivotedCholesky, symmetricEigenvalues } from '../eval/symmetric.js';
import { seededRandom } from '../test/eval/helpers.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const FACTORS = 64;

function makeBatch(rows: number, dim: number, w: Float64Array, gauss: () => number, shift: number): Float32Array {
  const out = new Float32Array(rows * dim);
  const z = new Float64Array(FACTORS);
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < FACTORS; f++) z[f] = gauss();
    for (let i = 0; i < dim; i++) {
      let v = shift + 0.3 * gauss();
      for (let f = 0; f < FACTORS; f++) v += z[f]! * w[f * dim + i]!;
      out[r * dim + i] = Math.max(v, 0);
    }
  }
  return out;
}

function statsOf(
  n: number,
  dim: number,
  batch: number,
  seed: number,
  shift: number,
  w: Float64Array,
): { stats: FeatureStatistics; seconds: number } {
  const gauss = seededRandom(seed).normal;
  const acc = new FeatureStatisticsAccumulator(dim);
  let seconds = 0;
  for (let done = 0; done < n; done += batch) {
    const b = makeBatch(Math.min(batch, n - done), dim, w, gauss, shift);
    const t = performance.now();
    acc.add(b);
    seconds += (performance.now() - t) / 1000;
  }
  const t = performance.now();
  const stats = acc.finalize();
  seconds += (performance.now() - t) / 1000;
  return { stats, seconds };
}

function main(): void {
  const n = arg('n', 10000),
    dim = arg('dim', 2048),
    batch = arg('batch', 500);
  const g = seededRandom(1).normal;
  const w = new Float64Array(FACTORS * dim);
  for (let i = 0; i < w.length; i++) w[i] = g() * 0.15;
  console.log(`FID benchmark: ${n} x ${dim} features per set, batches of ${batch}, node ${process.version}`);
  const a = statsOf(n, dim, batch, 2, 0.4, w);
  console.log(`statistics set A (mean+cov, float64): ${a.seconds.toFixed(2)} s`);
  const b = statsOf(n, dim, batch, 3, 0.5, w);
  console.log(`statistics set B (mean+cov, float64): ${b.seconds.toFixed(2)} s`);
  if (process.argv.includes('--parts')) {
    let t = performance.now();
    const c = pivotedCholesky(a.stats.cov, dim);
    console.log(`  pivoted Cholesky: ${((performance.now() - t) / 1000).toFixed(2)} s (rank ${c.rank})`);
    t = performance.now();
    symmetricEigenvalues(a.stats.cov.slice(), dim);
    console.log(`  symmetric eigenvalues: ${((performance.now() - t) / 1000).toFixed(2)} s`);
  }
  const t = performance.now();
  const fd = frechetDistance(a.stats, b.stats);
  const distSeconds = (performance.now() - t) / 1000;
  console.log(
    `frechet distance: ${distSeconds.toFixed(2)} s  (d² = ${fd.distance.toFixed(6)}, rank ${fd.factoredRank})`,
  );
  console.log(
    `total, one set -> statistics -> distance vs cached reference: ${(a.seconds + distSeconds).toFixed(2)} s`,
  );
  console.log(`total, both sets + distance: ${(a.seconds + b.seconds + distSeconds).toFixed(2)} s`);
}

main();
