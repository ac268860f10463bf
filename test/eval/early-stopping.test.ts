/** Early-stopping policy, table-driven. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { earlyStoppingDecision, type EarlyStoppingOptions, type EvaluationPoint } from '../../eval/early-stopping.js';

const fids = (...v: (number | null)[]): EvaluationPoint[] => v.map((fid, i) => ({ step: (i + 1) * 5000, fid }));
const clips = (...v: number[]): EvaluationPoint[] => v.map((clipScore, i) => ({ step: (i + 1) * 1000, clipScore }));

const CASES: {
  name: string;
  history: EvaluationPoint[];
  opts: EarlyStoppingOptions;
  stop: boolean;
  bestStep: number | null;
  since: number;
  latestIsBest: boolean;
  reason?: RegExp;
}[] = [
  {
    name: 'empty history',
    history: [],
    opts: { metric: 'fid' },
    stop: false,
    bestStep: null,
    since: 0,
    latestIsBest: false,
    reason: /no evaluation/,
  },
  {
    name: 'first evaluation is the best',
    history: fids(40),
    opts: { metric: 'fid' },
    stop: false,
    bestStep: 5000,
    since: 0,
    latestIsBest: true,
    reason: /improved to 40 at step 5000/,
  },
  {
    name: 'steadily improving FID',
    history: fids(40, 30, 20, 10),
    opts: { metric: 'fid' },
    stop: false,
    bestStep: 20000,
    since: 0,
    latestIsBest: true,
  },
  {
    name: '2 of 3 without improvement',
    history: fids(40, 30, 31, 32),
    opts: { metric: 'fid' },
    stop: false,
    bestStep: 10000,
    since: 2,
    latestIsBest: false,
    reason: /2 of 3/,
  },
  {
    name: 'patience 3 reached: stop, keep best',
    history: fids(40, 30, 31, 32, 30),
    opts: { metric: 'fid' },
    stop: true,
    bestStep: 10000,
    since: 3,
    latestIsBest: false,
    reason: /steps 15000, 20000, 25000.*keep the checkpoint at step 10000/,
  },
  {
    name: 'equal value is not an improvement',
    history: fids(30, 30, 30, 30),
    opts: { metric: 'fid' },
    stop: true,
    bestStep: 5000,
    since: 3,
    latestIsBest: false,
  },
  {
    name: 'improvement resets the counter',
    history: fids(40, 41, 42, 39, 40),
    opts: { metric: 'fid' },
    stop: false,
    bestStep: 20000,
    since: 1,
    latestIsBest: false,
  },
  {
    name: 'min_delta: small gains do not count',
    history: fids(40, 39.9, 39.8, 39.7),
    opts: { metric: 'fid', minDelta: 0.5 },
    stop: true,
    bestStep: 5000,
    since: 3,
    latestIsBest: false,
    reason: /by more than 0.5/,
  },
  {
    name: 'min_delta: a large gain counts',
    history: fids(40, 39.9, 39.8, 39.4),
    opts: { metric: 'fid', minDelta: 0.5 },
    stop: false,
    bestStep: 20000,
    since: 0,
    latestIsBest: true,
  },
  {
    name: 'patience 1',
    history: fids(40, 41),
    opts: { metric: 'fid', patience: 1 },
    stop: true,
    bestStep: 5000,
    since: 1,
    latestIsBest: false,
  },
  {
    name: 'NaN FID counts as no improvement',
    history: fids(40, NaN, NaN, NaN),
    opts: { metric: 'fid' },
    stop: true,
    bestStep: 5000,
    since: 3,
    latestIsBest: false,
  },
  {
    name: 'leading NaN: best is the first finite value',
    history: fids(NaN, 50, 45),
    opts: { metric: 'fid' },
    stop: false,
    bestStep: 15000,
    since: 0,
    latestIsBest: true,
  },
  {
    name: 'missing metric values are ignored',
    history: fids(40, null, 41, null),
    opts: { metric: 'fid', patience: 2 },
    stop: false,
    bestStep: 5000,
    since: 1,
    latestIsBest: false,
  },
  {
    name: 'CLIP score: higher is better',
    history: clips(0.2, 0.25, 0.24, 0.23, 0.22),
    opts: { metric: 'clip_score' },
    stop: true,
    bestStep: 2000,
    since: 3,
    latestIsBest: false,
    reason: /CLIP score has not improved/,
  },
  {
    name: 'CLIP score improving',
    history: clips(0.2, 0.21, 0.26),
    opts: { metric: 'clip_score', minDelta: 0.01 },
    stop: false,
    bestStep: 3000,
    since: 0,
    latestIsBest: true,
  },
  {
    name: 'FID history ignored when stopping on CLIP score',
    history: [
      { step: 1, fid: 10, clipScore: 0.2 },
      { step: 2, fid: 90, clipScore: 0.3 },
    ],
    opts: { metric: 'clip_score', patience: 1 },
    stop: false,
    bestStep: 2,
    since: 0,
    latestIsBest: true,
  },
  {
    name: 'KID: lower is better',
    history: [0.05, 0.03, 0.031, 0.032, 0.033].map((kid, i) => ({ step: i + 1, kid, fid: 100 - i })),
    opts: { metric: 'kid' },
    stop: true,
    bestStep: 2,
    since: 3,
    latestIsBest: false,
    reason: /KID has not improved/,
  },
  {
    name: 'KID history decides, not FID',
    history: [
      { step: 1, kid: 0.05, fid: 10 },
      { step: 2, kid: 0.04, fid: 90 },
    ],
    opts: { metric: 'kid', patience: 1 },
    stop: false,
    bestStep: 2,
    since: 0,
    latestIsBest: true,
  },
  {
    name: 'failed evaluations (metric stored as null) count as no improvement',
    history: [
      { step: 1, fid: 40 },
      { step: 2, fid: null, failed: 'FID is NaN' },
      { step: 3, fid: null, failed: 'activity failed' },
      { step: 4, fid: null, failed: 'FID is NaN' },
    ],
    opts: { metric: 'fid' },
    stop: true,
    bestStep: 1,
    since: 3,
    latestIsBest: false,
  },
  {
    name: 'a failed evaluation with no metric at all counts for KID too',
    history: [
      { step: 1, kid: 0.1 },
      { step: 2, failed: 'sampling crashed' },
    ],
    opts: { metric: 'kid', patience: 1 },
    stop: true,
    bestStep: 1,
    since: 1,
    latestIsBest: false,
  },
  {
    name: 'failed flag does not hide a finite value of the stopping metric',
    history: [
      { step: 1, kid: 0.1 },
      { step: 2, kid: 0.05, fid: null, failed: 'FID is NaN' },
    ],
    opts: { metric: 'kid', patience: 1 },
    stop: false,
    bestStep: 2,
    since: 0,
    latestIsBest: true,
  },
  {
    name: 'unsorted history is sorted by step',
    history: [
      { step: 3, fid: 5 },
      { step: 1, fid: 10 },
      { step: 2, fid: 7 },
    ],
    opts: { metric: 'fid' },
    stop: false,
    bestStep: 3,
    since: 0,
    latestIsBest: true,
  },
];

for (const c of CASES) {
  void test(`early stopping: ${c.name}`, () => {
    const d = earlyStoppingDecision(c.history, c.opts);
    assert.equal(d.stop, c.stop, d.reason);
    assert.equal(d.bestStep, c.bestStep, d.reason);
    assert.equal(d.sinceImprovement, c.since, d.reason);
    assert.equal(d.latestIsBest, c.latestIsBest, d.reason);
    if (c.reason) assert.match(d.reason, c.reason);
  });
}

const BAD: { name: string; history: EvaluationPoint[]; opts: EarlyStoppingOptions }[] = [
  { name: 'patience 0', history: [], opts: { metric: 'fid', patience: 0 } },
  { name: 'fractional patience', history: [], opts: { metric: 'fid', patience: 1.5 } },
  { name: 'negative min_delta', history: [], opts: { metric: 'fid', minDelta: -1 } },
  { name: 'unknown metric', history: [], opts: { metric: 'is' as 'fid' } },
  { name: 'duplicate step', history: fids(1, 2).concat(fids(3)), opts: { metric: 'fid' } },
];
for (const c of BAD) {
  void test(`early stopping rejects ${c.name}`, () => {
    assert.throws(() => earlyStoppingDecision(c.history, c.opts), { code: 'KILN_CONFIG' });
  });
}
