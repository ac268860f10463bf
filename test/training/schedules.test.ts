import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { learningRateAt, lrBreakpoints } from '../../training/lr-schedule.js';
import { ddpmSchedule } from '../../training/noise-schedule.js';
import { drawNoise } from '../../training/objective.js';
import { Rng } from '../../training/rng.js';

const ref = JSON.parse(await readFile(join(PROJECT_ROOT, 'fixtures', 'training', 'reference.json'), 'utf8')) as {
  ddpm: Record<'linear' | 'scaled_linear', { t: number[]; alphasCumprod: number[] }>;
};

const close = (a: number, b: number, rel = 1e-9) =>
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(b), 1e-30), `${a} != ${b}`);

void test('LR schedule at its breakpoints: 10% linear warmup from 1e-6, 60% constant, 30% exponential decay to 1e-6', () => {
  const o = { totalSteps: 1000, peak: 1e-4, minLr: 1e-6, warmupFraction: 0.1, constantFraction: 0.6 };
  assert.deepEqual(lrBreakpoints(o), { warmupEnd: 100, decayStart: 700, end: 1000 });
  close(learningRateAt(0, o), 1e-6);
  close(learningRateAt(50, o), 1e-6 + (1e-4 - 1e-6) / 2);
  close(learningRateAt(99, o), 1e-6 + ((1e-4 - 1e-6) * 99) / 100);
  close(learningRateAt(100, o), 1e-4);
  close(learningRateAt(400, o), 1e-4);
  close(learningRateAt(700, o), 1e-4);
  // exponential: the midpoint of the decay is the geometric mean of peak and floor
  close(learningRateAt(850, o), Math.sqrt(1e-4 * 1e-6));
  close(learningRateAt(1000, o), 1e-6);
  close(learningRateAt(5000, o), 1e-6);
  // strictly decreasing through the decay, ratio constant per step (exponential)
  const r1 = learningRateAt(801, o) / learningRateAt(800, o);
  const r2 = learningRateAt(951, o) / learningRateAt(950, o);
  close(r1, r2, 1e-9);
  assert.ok(r1 < 1);
});

void test('text encoder group peaks at 1/10 of the denoiser LR by default (1e-5)', () => {
  const cfg = resolveTrainingConfig({});
  assert.equal(cfg.optim.lr, 1e-4);
  assert.equal(cfg.optim.lr * cfg.optim.textLrRatio, 1e-5);
  close(
    learningRateAt(500, {
      totalSteps: 1000,
      peak: cfg.optim.lr * cfg.optim.textLrRatio,
      minLr: 1e-6,
      warmupFraction: 0.1,
      constantFraction: 0.6,
    }),
    1e-5,
  );
});

void test('DDPM alphas_cumprod match torch (linear 1e-4..0.02 and scaled_linear 0.00085..0.012, 1000 steps)', () => {
  const lin = ddpmSchedule('linear', 1e-4, 0.02, 1000);
  const sl = ddpmSchedule('scaled_linear', 0.00085, 0.012, 1000);
  for (const [sched, r] of [
    [lin, ref.ddpm.linear],
    [sl, ref.ddpm.scaled_linear],
  ] as const) {
    r.t.forEach((t, i) => close(sched.alphasCumprod[t]!, r.alphasCumprod[i]!, 2e-5));
  }
});

void test('Min-SNR-gamma weights: min(snr,5)/snr for epsilon, min(snr,5)/(snr+1) for v', () => {
  const sched = ddpmSchedule('linear', 1e-4, 0.02, 1000);
  const base = resolveTrainingConfig({}).objective;
  for (const prediction of ['epsilon', 'v'] as const) {
    const d = drawNoise(Rng.derive(0, 'w'), 64, 1, { ...base, prediction, minSnrGamma: 5 }, sched);
    for (let b = 0; b < 64; b++) {
      const ab = sched.alphasCumprod[d.modelTimesteps[b]!]!;
      const snr = ab / (1 - ab);
      const want = prediction === 'epsilon' ? Math.min(snr, 5) / snr : Math.min(snr, 5) / (snr + 1);
      close(d.weights[b]!, Math.fround(want), 1e-6);
      close(d.signal[b]!, Math.fround(Math.sqrt(ab)), 1e-6);
    }
  }
  const plain = drawNoise(Rng.derive(0, 'w'), 8, 1, base, sched);
  assert.deepEqual([...plain.weights], new Array(8).fill(1));
});
