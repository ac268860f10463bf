import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  filterStats,
  mergeFilterStats,
  scoreHistogram,
  selectionPolicy,
  selectRows,
  topFractionCutoff,
  type SelectionOutcome,
} from '../../datasets/filter/selection.js';

const scores = [0.1, 0.5, 0.3, 0.2, 0.4, Number.NaN, 0.25];

void test('policy defaults and validation', () => {
  assert.deepEqual(selectionPolicy(), { threshold: 0.25, keepTopFraction: null, captionSource: 'original' });
  // Only a fraction: DataComp semantics, no absolute threshold.
  assert.deepEqual(selectionPolicy({ keepTopFraction: 0.3 }), {
    threshold: null,
    keepTopFraction: 0.3,
    captionSource: 'original',
  });
  assert.deepEqual(selectionPolicy({ keepTopFraction: 0.3, threshold: 0.2, captionSource: 'generated' }), {
    threshold: 0.2,
    keepTopFraction: 0.3,
    captionSource: 'generated',
  });
  assert.equal(selectionPolicy({ threshold: null }).threshold, null);
  const bad: Record<string, unknown>[] = [
    { threshold: 2 },
    { threshold: Number.NaN },
    { keepTopFraction: 0 },
    { keepTopFraction: 1.5 },
    { captionSource: 'both' },
  ];
  for (const b of bad)
    assert.throws(
      () => selectionPolicy(b as never),
      (e: Error & { code?: string }) => e.code === 'KILN_CONFIG',
      JSON.stringify(b),
    );
});

void test("top-fraction cutoff is DataComp's: sorted descending at floor(n * fraction)", () => {
  const table: [number, number | null][] = [
    [0.3, 0.4], // 6 finite, n = 1 -> second highest
    [0.5, 0.25], // n = 3
    [0.1, 0.5], // n = 0 -> the best
    [1, 0.1], // n clamped to the last
  ];
  for (const [f, want] of table) assert.equal(topFractionCutoff(scores, f), want, `fraction ${f}`);
  assert.equal(topFractionCutoff([Number.NaN], 0.3), null);
});

void test('row outcomes, table-driven', () => {
  const K = 'kept',
    T = 'below_threshold',
    F = 'below_top_fraction',
    U = 'unscored';
  const table: {
    name: string;
    opts: Parameters<typeof selectionPolicy>[0];
    cutoff?: number | null;
    want: SelectionOutcome[];
    cut: number | null;
  }[] = [
    { name: 'default threshold 0.25', opts: {}, want: [T, K, K, T, K, U, K], cut: null },
    { name: 'threshold 0.35', opts: { threshold: 0.35 }, want: [T, K, T, T, K, U, T], cut: null },
    { name: 'no threshold keeps every scored row', opts: { threshold: null }, want: [K, K, K, K, K, U, K], cut: null },
    { name: 'top 30% per shard', opts: { keepTopFraction: 0.3 }, want: [F, K, F, F, K, U, F], cut: 0.4 },
    {
      name: 'top 50% and threshold 0.3',
      opts: { keepTopFraction: 0.5, threshold: 0.3 },
      want: [T, K, K, T, K, U, T],
      cut: 0.25,
    },
    {
      name: 'dataset-wide cutoff given',
      opts: { keepTopFraction: 0.3 },
      cutoff: 0.45,
      want: [F, K, F, F, F, U, F],
      cut: 0.45,
    },
    { name: 'cutoff given but no fraction: ignored', opts: {}, cutoff: 0.45, want: [T, K, K, T, K, U, K], cut: null },
  ];
  for (const row of table) {
    const sel = selectRows(scores, selectionPolicy(row.opts), row.cutoff);
    assert.deepEqual(sel.outcomes, row.want, row.name);
    assert.equal(sel.topFractionCutoff, row.cut, row.name);
  }
  assert.deepEqual(selectRows([null, 0.3], selectionPolicy()).outcomes, [U, K]);
});

void test('histogram has fixed edges: out-of-range scores clamp to the end bins', () => {
  const h = scoreHistogram([-1, -0.99, 0, 0.26, 0.999, 1, 1.5, Number.NaN, null], { bins: 4 });
  assert.deepEqual(h, { min: -1, max: 1, counts: [2, 0, 2, 3] });
  assert.equal(scoreHistogram([0.251]).counts[62], 1); // 100 bins of 0.02: [0.24, 0.26)
});

void test('per-shard stats count every row once and merge across shards', () => {
  const policy = selectionPolicy({ threshold: 0.2, keepTopFraction: 0.5 });
  const a = filterStats(scores, selectRows(scores, policy), policy);
  assert.equal(a.rows, 7);
  assert.equal(a.scored, 6);
  assert.equal(a.unscored, 1);
  assert.equal(a.kept + a.filtered.below_threshold + a.filtered.below_top_fraction + a.unscored, a.rows);
  assert.deepEqual([a.kept, a.filtered.below_threshold, a.filtered.below_top_fraction], [4, 1, 1]);
  assert.equal(a.topFractionCutoff, 0.25);
  assert.ok(Math.abs(a.scoreSum - 1.75) < 1e-12);
  assert.deepEqual([a.scoreMin, a.scoreMax], [0.1, 0.5]);
  assert.equal(
    a.histogram.counts.reduce((x, y) => x + y, 0),
    6,
  );
  const b = filterStats([0.9, null], selectRows([0.9, null], policy), policy);
  const m = mergeFilterStats(a, b);
  assert.deepEqual([m.rows, m.scored, m.unscored, m.kept, m.scoreMax], [9, 7, 2, 5, 0.9]);
  assert.equal(m.topFractionCutoff, null); // per-shard cutoffs differ
  assert.equal(
    m.histogram.counts.reduce((x, y) => x + y, 0),
    7,
  );
  assert.throws(() => mergeFilterStats(a, { ...b, histogram: scoreHistogram([], { bins: 10 }) }), RangeError);
});
