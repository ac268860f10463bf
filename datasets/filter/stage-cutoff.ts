/**
 * DataComp's "keep the top fraction" needs one cutoff over the whole pool, not per shard. This is
 * `topFractionCutoff` (selection.ts) over every shard's scores, computed exactly in bounded memory:
 *
 * 1. Count the finite scores in 65,536 equal bins over [-1, 1] (the cosine range; anything outside
 *    goes to the end bins), streaming the shards once.
 * 2. The cutoff is the score at descending rank n = floor(count * fraction) (clamped to count - 1):
 *    find the bin holding rank n from the counts, stream the shards again keeping only that bin's
 *    scores, sort them, and pick the one at rank n minus the count of the bins above.
 * The bin index is monotonic in the score, so the result equals sorting all scores.
 */
const BINS = 65536;

const binOf = (s: number) => Math.min(BINS - 1, Math.max(0, Math.floor(((s + 1) / 2) * BINS)));

/** One pass over every shard's scores (null / NaN: unscored, ignored). */
export type ScoreSource = () => AsyncIterable<ArrayLike<number | null>>;

/** The dataset-wide cutoff and how many finite scores it was taken over (cutoff null when none). */
export interface DatasetCutoff {
  cutoff: number | null;
  scored: number;
  keepRank: number;
}

/** Exact `topFractionCutoff(allScores, fraction)` over all shards, in two streaming passes. */
export async function datasetTopFractionCutoff(scores: ScoreSource, fraction: number): Promise<DatasetCutoff> {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`fraction must be in (0, 1], got ${fraction}`);
  const counts = new Float64Array(BINS);
  let scored = 0;
  for await (const shard of scores()) {
    for (let i = 0; i < shard.length; i++) {
      const s = shard[i];
      if (s === null || s === undefined || !Number.isFinite(s)) continue;
      counts[binOf(s)]! += 1;
      scored++;
    }
  }
  if (scored === 0) return { cutoff: null, scored: 0, keepRank: 0 };
  const n = Math.min(Math.floor(scored * fraction), scored - 1);
  let above = 0;
  let bin = BINS - 1;
  for (; bin >= 0; bin--) {
    const c = counts[bin] as number;
    if (above + c > n) break;
    above += c;
  }
  const inBin: number[] = [];
  for await (const shard of scores()) {
    for (let i = 0; i < shard.length; i++) {
      const s = shard[i];
      if (s === null || s === undefined || !Number.isFinite(s)) continue;
      if (binOf(s) === bin) inBin.push(s);
    }
  }
  inBin.sort((a, b) => b - a);
  const cutoff = inBin[n - above];
  if (cutoff === undefined)
    throw new Error(
      `scores changed between the two cutoff passes (bin ${bin} has ${inBin.length}, expected more than ${n - above})`,
    );
  return { cutoff, scored, keepRank: n };
}
