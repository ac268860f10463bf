/**
 * Beam search's continuation selection (beam-search.ts topContinuations: log_softmax + running score,
 * selected in one pass per beam without a beams x vocab array) against the plain definition: every
 * score materialised in a float32 array, then a stable sort, best first. Logits are quantised and rows
 * repeated so that equal scores (ties, broken by the lower flat index) are common.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TopContinuations, topContinuations } from '../../datasets/filter/beam-search.js';

/** The definition: float32(float32(log_softmax(row)[v]) + score) for all beams x vocab, stable top `keep`. */
function plainTop(
  logits: Float32Array,
  firstRow: number,
  scores: number[],
  vocab: number,
  keep: number,
): { idx: number[]; vals: number[] } {
  const all = new Float32Array(scores.length * vocab);
  scores.forEach((score, j) => {
    const row = logits.subarray((firstRow + j) * vocab, (firstRow + j + 1) * vocab);
    const max = row.reduce((m, x) => (x > m ? x : m), Number.NEGATIVE_INFINITY);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    row.forEach((x, v) => {
      all[j * vocab + v] = Math.fround(Math.fround(x - lse) + score);
    });
  });
  const order = Array.from(all.keys()).sort((a, b) => (all[b] as number) - (all[a] as number)); // stable: ties keep index order
  const idx = order.slice(0, keep);
  return { idx, vals: idx.map((i) => all[i] as number) };
}

void test('topContinuations equals scoring every beam x token and taking a stable top-k (ties, dead beams, -Infinity)', () => {
  let seed = 99;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return Math.floor((seed / 4294967296) * n);
  };
  let ties = 0;
  for (let c = 0; c < 400; c++) {
    const beams = 1 + rand(4),
      vocab = 1 + rand(c % 5 === 0 ? 3000 : 60),
      rows = beams * (1 + rand(3));
    const step = [1, 0.5, 1 / 64, 1e-6][rand(4)] as number; // coarse steps: many equal logits
    const logits = Float32Array.from({ length: rows * vocab }, () =>
      rand(9) === 0 ? Number.NEGATIVE_INFINITY : (rand(200) - 100) * step,
    );
    for (let r = 0; r < rows; r++) logits[r * vocab + rand(vocab)] = rand(10); // one finite logit per row (an all -Infinity row is NaN)
    if (rand(3) === 0) logits.copyWithin(vocab, 0, vocab); // row 1 repeats row 0 (same scores if beams tie too)
    const scores = Array.from({ length: beams }, (_, j) =>
      j > 0 && rand(4) === 0 ? -1e9 : rand(3) === 0 ? 0 : Math.fround(-rand(50) / 8),
    );
    const keep = 1 + rand(2 * beams + 2);
    const firstRow = beams * rand(rows / beams);
    const top = new TopContinuations(keep);
    topContinuations(logits, firstRow, scores, vocab, top);
    const want = plainTop(logits, firstRow, scores, vocab, keep);
    const what = `case ${c}: ${beams} beams, vocab ${vocab}, keep ${keep}`;
    assert.deepEqual(Array.from(top.idx.subarray(0, top.size)), want.idx, what);
    assert.deepEqual(Array.from(top.vals.subarray(0, top.size)), want.vals, what);
    if (want.vals.some((v, i) => i > 0 && v === want.vals[i - 1])) ties++;
  }
  assert.ok(ties >= 40, `only ${ties} cases with tied scores in the top list`);
});
