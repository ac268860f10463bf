import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { PROJECT_ROOT } from '../../infra/config.js';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { defineDenoiser, runDenoiser, type DenoiserShape } from '../../training/denoiser.js';
import { attentionMask, DropoutStream } from '../../training/layers.js';
import { ddpmSchedule } from '../../training/noise-schedule.js';
import { drawNoise, noisyLatents, objectiveTerms } from '../../training/objective.js';
import { ParamStore } from '../../training/params.js';
import { prxRegularization } from '../../training/prx.js';
import { Rng } from '../../training/rng.js';

await selectTfBackend();
const ref = JSON.parse(await readFile(join(PROJECT_ROOT, 'fixtures', 'training', 'reference.json'), 'utf8')) as {
  prx: { shape: number[]; x: number[]; total: number; varTerm: number; corrTerm: number; grad: number[] };
};
const OPTS = { targetVar: 1.0, corrWeight: 0.1 };

void test('PRX terms and their input gradient match the PyTorch reference', async () => {
  const x = tf.tensor(ref.prx.x, ref.prx.shape);
  const terms = prxRegularization(x, OPTS);
  assert.ok(Math.abs((await terms.varTerm.data())[0]! - ref.prx.varTerm) < 1e-5);
  assert.ok(Math.abs((await terms.corrTerm.data())[0]! - ref.prx.corrTerm) < 1e-5);
  assert.ok(Math.abs((await terms.total.data())[0]! - ref.prx.total) < 1e-5);
  const grad = await tf
    .grad((t: tf.Tensor) => prxRegularization(t, OPTS).total)(x)
    .data();
  const maxErr = ref.prx.grad.reduce((m, g, i) => Math.max(m, Math.abs(g - grad[i]!)), 0);
  assert.ok(maxErr < 1e-5, `max gradient error ${maxErr}`);
});

/** Per-channel zero mean, unit (population) variance, zero cross-correlation, via Cholesky whitening. */
function whiten(data: Float64Array, channels: number): Float32Array {
  const n = data.length / channels;
  const mean = new Array<number>(channels).fill(0);
  for (let i = 0; i < n; i++) for (let c = 0; c < channels; c++) mean[c]! += data[i * channels + c]! / n;
  const cov = Array.from({ length: channels }, () => new Array<number>(channels).fill(0));
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < channels; a++)
      for (let b = 0; b < channels; b++)
        cov[a]![b]! += ((data[i * channels + a]! - mean[a]!) * (data[i * channels + b]! - mean[b]!)) / n;
  }
  const L = Array.from({ length: channels }, () => new Array<number>(channels).fill(0));
  for (let i = 0; i < channels; i++) {
    for (let j = 0; j <= i; j++) {
      let s = cov[i]![j]!;
      for (let k = 0; k < j; k++) s -= L[i]![k]! * L[j]![k]!;
      L[i]![j] = i === j ? Math.sqrt(s) : s / L[j]![j]!;
    }
  }
  const out = new Float32Array(data.length);
  for (let i = 0; i < n; i++) {
    const y = new Array<number>(channels).fill(0);
    for (let a = 0; a < channels; a++) {
      let s = data[i * channels + a]! - mean[a]!;
      for (let k = 0; k < a; k++) s -= L[a]![k]! * y[k]!;
      y[a] = s / L[a]![a]!;
    }
    for (let c = 0; c < channels; c++) out[i * channels + c] = y[c]!;
  }
  return out;
}

void test('PRX is ~0 for whitened latents and large for correlated, low-variance ones', async () => {
  const rng = Rng.derive(5, 'whiten');
  const raw = Float64Array.from(rng.fillNormal(new Float32Array(4 * 8 * 8 * 4)));
  for (let i = 0; i < raw.length; i += 4) raw[i + 1] = 0.7 * raw[i]! + 0.3 * raw[i + 1]!;
  const white = prxRegularization(tf.tensor(whiten(raw, 4), [4, 8, 8, 4]), OPTS);
  assert.ok((await white.total.data())[0]! < 1e-4, `whitened prx ${(await white.total.data())[0]}`);
  const correlated = prxRegularization(tf.mul(tf.tensor(Float32Array.from(raw), [4, 8, 8, 4]), 0.2), OPTS);
  assert.ok((await correlated.varTerm.data())[0]! > 0.9);
  assert.ok((await correlated.corrTerm.data())[0]! > 1);
});

const SHAPE: DenoiserShape = {
  size: 8,
  channels: 3,
  patchSize: 4,
  width: 16,
  depth: 1,
  heads: 2,
  mlpRatio: 2,
  dropout: 0.1,
  timestepFeatures: 16,
  zeroInit: false,
  contextWidth: 8,
};

async function prxGradNorms(zeroInit: boolean): Promise<Map<string, number>> {
  const shape = { ...SHAPE, zeroInit };
  const store = new ParamStore(0);
  defineDenoiser(store, shape);
  const o = { ...resolveTrainingConfig({}).objective, prxWeight: 1 };
  const rng = Rng.derive(0, 'g');
  const x0 = tf.tensor4d(rng.fillNormal(new Float32Array(2 * 8 * 8 * 3)), [2, 8, 8, 3]);
  const draw = drawNoise(rng, 2, 8 * 8 * 3, o, ddpmSchedule('linear', 1e-4, 0.02, 1000));
  const xt = noisyLatents(x0, draw);
  const context = tf.tensor3d(rng.fillNormal(new Float32Array(2 * 4 * 8)), [2, 4, 8]);
  const contextMask = attentionMask(new Float32Array(8).fill(1), 2, 2, 1, 4, false);
  const vars = store.list().map((p) => p.variable);
  // Only the PRX term: the gradient of prx(x0hat) alone must reach the denoiser weights.
  const { grads } = tf.variableGrads(() => {
    const pred = runDenoiser(
      store,
      shape,
      { latents: xt, timesteps: draw.modelTimesteps, context, contextMask },
      new DropoutStream(7),
    );
    return prxRegularization(objectiveTerms(pred, x0, xt, draw, o).x0hat, OPTS).total;
  }, vars);
  const norms = new Map<string, number>();
  for (const [v, g] of Object.entries(grads))
    norms.set(store.byVariableName(v)!.name, Math.sqrt((await tf.sum(tf.square(g)).data())[0]!));
  store.dispose();
  return norms;
}

void test('the PRX term (on x0-hat) has a non-zero gradient with respect to the denoiser weights', async () => {
  const dense = await prxGradNorms(false);
  for (const name of [
    'denoiser.final.linear.weight',
    'denoiser.blocks.0.attn.q.weight',
    'denoiser.blocks.0.cross.k.weight',
    'denoiser.blocks.0.mlp.fc1.weight',
    'denoiser.patch_embed.weight',
  ]) {
    assert.ok(dense.get(name)! > 1e-8, `${name}: ${dense.get(name)}`);
  }
  // DiT's zero init: at step 0 the gradient reaches the (zero) output layer first.
  const zero = await prxGradNorms(true);
  assert.ok(zero.get('denoiser.final.linear.weight')! > 1e-8);
});

void test('loss = diffusion + 0.01 * (var_term + 0.1 * corr_term) on x0-hat', async () => {
  const o = resolveTrainingConfig({
    objective: { prediction: 'epsilon', prxTargets: 'unit', prxMaxGain: null },
  }).objective;
  assert.deepEqual([o.prxWeight, o.prxCorrWeight, o.prxTargetVar, o.captionDropout], [0.01, 0.1, 1.0, 0.1]);
  const rng = Rng.derive(1, 'l');
  const x0 = tf.tensor4d(rng.fillNormal(new Float32Array(2 * 4 * 4 * 3)), [2, 4, 4, 3]);
  const draw = drawNoise(rng, 2, 4 * 4 * 3, o, ddpmSchedule('linear', 1e-4, 0.02, 1000));
  const xt = noisyLatents(x0, draw);
  const pred = tf.tensor4d(rng.fillNormal(new Float32Array(2 * 4 * 4 * 3)), [2, 4, 4, 3]);
  const t = objectiveTerms(pred, x0, xt, draw, o);
  const eps = tf.tensor(draw.eps, [2, 4, 4, 3]);
  const mse = (await tf.mean(tf.squaredDifference(pred, eps)).data())[0]!;
  const a = tf.tensor4d(draw.signal, [2, 1, 1, 1]);
  const s = tf.tensor4d(draw.noiseScale, [2, 1, 1, 1]);
  const x0hat = tf.div(tf.sub(xt, tf.mul(s, pred)), a);
  const p = prxRegularization(x0hat, OPTS);
  const want = mse + 0.01 * ((await p.varTerm.data())[0]! + 0.1 * (await p.corrTerm.data())[0]!);
  const got = (await t.loss.data())[0]!;
  assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want), `${got} vs ${want}`);
});
