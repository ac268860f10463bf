/**
 * A model learns (issue 15, part 2): a tiny model trained on a tiny captioned set of 8 solid colours
 * (captions "red", "green", ..., "black"; 8x8 pixels, batch 8, 300 steps, lr 3e-3, dropout 0, EMA
 * decay 0.99) on the backend `auto` picks (native TensorFlow after setup). The loss must fall by LOSS_FACTOR, and with
 * classifier-free guidance the sample for each caption must be closer to its colour than to every
 * other colour. Its real parts: the shard reader, the trainer with the default objective (flow
 * matching) and caption dropout, checkpoints, EMA weights, and eval/'s Euler sampler with CFG.
 * Seeds and margins measured: see training/architecture.md ("A model that learns").
 * KILN_LEARN_SEED / KILN_LEARN_STEPS / KILN_LEARN_LR override the seed, steps and LR for such trials.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { sampleBatch } from '../../eval/sampling.js';
import type { TrainingConfigInput } from '../../training/config.js';
import { loadTrainedModel } from '../../training/inference.js';
import { runTrainingChunk } from '../../training/run-chunk.js';
import { tempStorage, writeFixtureShard, type FixtureRow } from './shard-fixtures.js';

const COLOURS: [string, [number, number, number]][] = [
  ['red', [220, 30, 30]],
  ['green', [30, 200, 60]],
  ['blue', [40, 60, 230]],
  ['yellow', [230, 220, 40]],
  ['cyan', [40, 210, 220]],
  ['magenta', [210, 40, 200]],
  ['white', [240, 240, 240]],
  ['black', [15, 15, 15]],
];
export const LEARN_CONFIG: TrainingConfigInput = {
  seed: Number(process.env.KILN_LEARN_SEED ?? 1),
  totalSteps: Number(process.env.KILN_LEARN_STEPS ?? 300),
  resolution: 8,
  textEncoder: { maxTokens: 8, width: 32, depth: 1, heads: 2, dropout: 0 },
  denoiser: { patchSize: 4, width: 32, depth: 2, heads: 2, mlpRatio: 2, timestepFeatures: 32, dropout: 0 },
  optim: { lr: Number(process.env.KILN_LEARN_LR ?? 3e-3), microBatchSize: 8, gradAccumSteps: 1, ema: { decay: 0.99 } },
};
/** The loss (mean of the first 20 steps) must fall at least this much (mean of the last 20). */
const LOSS_FACTOR = 2;
const GUIDANCE = 4;

const { storage, cleanup } = await tempStorage();
test.after(cleanup);

async function solidJpeg([r, g, b]: [number, number, number]): Promise<Uint8Array> {
  return new Uint8Array(
    await sharp({ create: { width: 16, height: 16, channels: 3, background: { r, g, b } } })
      .jpeg({ quality: 95 })
      .toBuffer(),
  );
}

void test('a tiny model learns solid colours from their captions: loss falls, and each caption samples its colour under CFG', async () => {
  const rows: FixtureRow[] = [];
  for (let i = 0; i < 8; i++) {
    const [name, colour] = COLOURS[i % COLOURS.length]!;
    rows.push({ key: `c${i}`, caption: name, status: 'success', color: colour, jpg: await solidJpeg(colour) });
  }
  const shard = storage.uri('data', 'colours.parquet');
  await writeFixtureShard(storage, shard, rows);
  const t0 = Date.now();
  const losses: number[] = [];
  const r = await runTrainingChunk({
    storage,
    runUri: storage.uri('runs', 'learn'),
    config: LEARN_CONFIG,
    datasetShardUris: [shard],
    fromStep: 0,
    steps: LEARN_CONFIG.totalSteps!,
    onProgress: (p) => {
      losses.push(p.loss);
    },
  });
  const trainMs = Date.now() - t0;
  const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
  const [first, last] = [mean(losses.slice(0, 20)), mean(losses.slice(-20))];
  const model = await loadTrainedModel(storage, r.checkpointUri);
  const names = COLOURS.map(([n]) => n);
  const c = model.encode(names);
  const x = await sampleBatch(
    model.denoiser,
    c.cond,
    c.uncond,
    names.map((_, i) => i),
    {
      method: model.sampler,
      steps: 20,
      guidanceScale: GUIDANCE,
      seed: 0,
      ...model.latentShape,
      schedule: model.schedule,
    },
  );
  const means = (await tf.mean(x, [1, 2]).array()) as number[][];
  c.dispose();
  model.dispose();
  const target = COLOURS.map(([, rgb]) => rgb.map((v) => (v / 255) * 2 - 1));
  const dist = (a: number[], b: number[]) => Math.hypot(...a.map((v, k) => v - b[k]!));
  const margins = means.map((m, i) => {
    const own = dist(m, target[i]!);
    const other = Math.min(...target.filter((_, j) => j !== i).map((t) => dist(m, t)));
    return {
      caption: names[i],
      own: +own.toFixed(3),
      nearestOther: +other.toFixed(3),
      margin: +(other - own).toFixed(3),
    };
  });
  console.log(
    JSON.stringify({
      seed: LEARN_CONFIG.seed,
      steps: LEARN_CONFIG.totalSteps,
      backend: r.backend,
      trainMs,
      first,
      last,
      factor: first / last,
      margins,
    }),
  );
  assert.ok(
    first / last >= LOSS_FACTOR,
    `loss fell ${first} -> ${last} (x${(first / last).toFixed(2)}), less than x${LOSS_FACTOR}`,
  );
  for (const m of margins)
    assert.ok(m.margin > 0, `"${m.caption}": distance to its colour ${m.own}, to the nearest other ${m.nearestOther}`);
});
