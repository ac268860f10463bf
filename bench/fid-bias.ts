/**
 * FID's sample-size bias next to KID's: the same two feature distributions measured with 256, 1k,
 * 5k and 10k generated samples against one fixed 10k reference set. Prints a Markdown table
 * (mean ± std over repeats with fresh generated samples) for eval/architecture.md.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/fid-bias.js [--dim 2048] [--repeats 2] [--kid-subsets 10] [--sizes 256,1000,5000,10000] [--ref 10000]
 *   node dist/bench/fid-bias.js --noise 256 --repeats 8 --ref 5000   # kidNoise's estimate vs the measured spread
 *
 * Features are synthetic, not images: a seeded factor model like bench/fid.ts (64 Gaussian factors
 * mixed into `dim` outputs plus independent noise, ReLU'd, non-negative like Inception pool3
 * features). Pairs: "same" (generated and reference from the same distribution: the true FID and
 * KID are 0, so everything measured is bias + noise) and "shifted" (generated factors scaled by
 * 1.1, a small real difference). KID uses clean-fid's subset size min(n, 1000) with `--kid-subsets`
 * subsets (clean-fid's default is 100; fewer only widens the spread, the mean stays unbiased).
 */
import { FeatureStatisticsAccumulator } from '../eval/statistics.js';
import { frechetDistance } from '../eval/frechet.js';
import { kernelInceptionDistance, kidNoise } from '../eval/kid.js';
import { seededRandom } from '../test/eval/helpers.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}

const DIM = Number(arg('dim', '2048'));
const REPEATS = Number(arg('repeats', '2'));
const KID_SUBSETS = Number(arg('kid-subsets', '10'));
const SIZES = arg('sizes', '256,1000,5000,10000').split(',').map(Number);
const REF = Number(arg('ref', '10000'));
const FACTORS = 64;

const wr = seededRandom(7);
const W = Float64Array.from({ length: FACTORS * DIM }, () => wr.normal() / Math.sqrt(FACTORS));

function features(n: number, seed: number, scale: number): Float32Array {
  const g = seededRandom(seed).normal;
  const out = new Float32Array(n * DIM);
  const z = new Float64Array(FACTORS);
  for (let r = 0; r < n; r++) {
    for (let f = 0; f < FACTORS; f++) z[f] = scale * g();
    for (let i = 0; i < DIM; i++) {
      let v = 0.3 + 0.3 * g();
      for (let f = 0; f < FACTORS; f++) v += z[f]! * W[f * DIM + i]!;
      out[r * DIM + i] = Math.max(v, 0);
    }
  }
  return out;
}

function stats(x: Float32Array) {
  const acc = new FeatureStatisticsAccumulator(DIM);
  acc.add(x);
  return acc.finalize();
}

const NOISE_N = Number(arg('noise', '0'));
const t0 = Date.now();
const refRows = features(REF, 1, 1);
const refStats = stats(refRows);
const ref = { data: refRows, count: REF };
const ms = (v: number[]) => {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : NaN;
  return { m, sd };
};
const fmt = (v: number[], digits: number) => {
  const { m, sd } = ms(v);
  return Number.isFinite(sd) ? `${m.toFixed(digits)} ± ${sd.toFixed(digits)}` : m.toFixed(digits);
};
if (NOISE_N > 0) {
  // The noise statement of the report (eval/kid.ts kidNoise) against the spread it predicts: KID
  // with clean-fid's defaults (100 subsets) on REPEATS fresh generated sets of NOISE_N samples.
  console.log(`dim ${DIM}, reference ${REF}, ${NOISE_N} generated samples, ${REPEATS} repeats, KID with 100 subsets\n`);
  console.log(
    '| pair | measured std of KID x 1e3 over repeats | kidNoise estimate x 1e3 (mean over repeats) | KID x 1e3 mean |',
  );
  console.log('| --- | ---: | ---: | ---: |');
  for (const [pair, scale] of [
    ['same', 1],
    ['shifted', 1.1],
  ] as const) {
    const kid: number[] = [],
      est: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const x = { data: features(NOISE_N, 5000 + 31 * r, scale), count: NOISE_N };
      kid.push(1e3 * kernelInceptionDistance(x, ref, DIM, { seed: r }).kid);
      est.push(1e3 * kidNoise(x, ref, DIM).std);
    }
    console.log(`| ${pair} | ${ms(kid).sd.toFixed(3)} | ${ms(est).m.toFixed(3)} | ${ms(kid).m.toFixed(3)} |`);
  }
  console.log(`\ntotal ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  process.exit(0);
}
console.log(
  `dim ${DIM}, reference ${REF} samples, ${REPEATS} repeats, KID subsets ${KID_SUBSETS} (size min(n, 1000))\n`,
);
console.log('| pair | samples | FID (mean ± std) | KID x 1e3 (mean ± std) | seconds |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const [pair, scale] of [
  ['same', 1],
  ['shifted', 1.1],
] as const) {
  for (const n of SIZES) {
    const t = Date.now();
    const fid: number[] = [],
      kid: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const x = features(n, 1000 + 17 * r + n, scale);
      fid.push(frechetDistance(stats(x), refStats).distance);
      kid.push(1e3 * kernelInceptionDistance({ data: x, count: n }, ref, DIM, { subsets: KID_SUBSETS, seed: r }).kid);
    }
    console.log(`| ${pair} | ${n} | ${fmt(fid, 3)} | ${fmt(kid, 4)} | ${((Date.now() - t) / 1000).toFixed(0)} |`);
  }
}
console.log(`\ntotal ${((Date.now() - t0) / 1000).toFixed(0)} s`);
