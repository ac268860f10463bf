import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { PROJECT_ROOT } from '../../infra/config.js';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { AdamW, clipByGlobalNorm, WeightEma } from '../../training/optimizer.js';
import { ParamStore } from '../../training/params.js';

await selectTfBackend();
const ref = JSON.parse(await readFile(join(PROJECT_ROOT, 'fixtures', 'training', 'reference.json'), 'utf8')) as {
  adamw: {
    lr: [number, number];
    initial: [number[], number[]];
    shapes: [number[], number[]];
    steps: { grads: [number[], number[]]; norm: number; params: [number[], number[]] }[];
  };
};

void test('AdamW with two param groups and global-norm clipping matches torch.optim.AdamW + clip_grad_norm_', async () => {
  const store = new ParamStore(0);
  store.add('denoiser.w', 'denoiser', ref.adamw.shapes[0], {
    kind: 'values',
    data: Float32Array.from(ref.adamw.initial[0]),
  });
  store.add('text.b', 'text', ref.adamw.shapes[1], { kind: 'values', data: Float32Array.from(ref.adamw.initial[1]) });
  const opt = new AdamW(store, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  for (const [i, step] of ref.adamw.steps.entries()) {
    const grads = new Map<string, tf.Tensor>([
      ['denoiser.w', tf.tensor(step.grads[0], ref.adamw.shapes[0])],
      ['text.b', tf.tensor(step.grads[1], ref.adamw.shapes[1])],
    ]);
    const clipped = clipByGlobalNorm(grads, 1.0);
    assert.ok(Math.abs(clipped.norm - step.norm) < 1e-5 * step.norm, `step ${i} norm ${clipped.norm} vs ${step.norm}`);
    opt.apply(clipped.grads, { denoiser: ref.adamw.lr[0], text: ref.adamw.lr[1] });
    for (const [k, name] of ['denoiser.w', 'text.b'].entries()) {
      const got = await store.get(name).data();
      const maxErr = step.params[k]!.reduce((m, v, j) => Math.max(m, Math.abs(v - got[j]!)), 0);
      assert.ok(maxErr < 2e-6, `step ${i} ${name}: max error ${maxErr}`);
    }
  }
  assert.equal(opt.step, ref.adamw.steps.length);
  opt.dispose();
  store.dispose();
});

void test('EMA follows diffusers EMAModel: copy on the first update, then min(decay, (1+k)/(10+k))', async () => {
  const store = new ParamStore(0);
  const w = store.add('w', 'denoiser', [2], { kind: 'values', data: Float32Array.from([1, 2]) });
  const ema = new WeightEma(store, 0.9999, true);
  assert.equal(ema.decayFor(1), 0);
  assert.equal(ema.decayFor(2), 2 / 11);
  assert.equal(ema.decayFor(1_000_000), 0.9999);
  w.assign(tf.tensor1d([3, 4]));
  ema.update();
  const shadow = async () => (await ema.toNamedArrays()).find((a) => a.name === 'w')!.data;
  assert.deepEqual([...(await shadow())], [3, 4]);
  w.assign(tf.tensor1d([5, 8]));
  ema.update();
  const d = 2 / 11;
  const got = await shadow();
  assert.ok(Math.abs(got[0]! - (d * 3 + (1 - d) * 5)) < 1e-6 && Math.abs(got[1]! - (d * 4 + (1 - d) * 8)) < 1e-6);
  ema.dispose();
  store.dispose();
});
