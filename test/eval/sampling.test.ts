/**
 * Samplers against closed forms. The test denoiser is exact for a Gaussian data distribution
 * x0 ~ N(mu, s² I): with x_t = a x0 + b eps and sigma² = a² s² + b²,
 *   E[eps | x_t] = b (x_t - a mu) / sigma²,   E[x0 | x_t] = mu + a s² (x_t - a mu) / sigma².
 * Every DDIM / Euler step is then affine in u = x_t - a mu, so the sampler's output is
 * mu + u_T · Π(step factors), a scalar recursion computed here in float64.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ddpmSchedule } from '../../training/noise-schedule.js';
import {
  ddimTimesteps,
  flowTimes,
  initialNoise,
  sampleBatch,
  type Prediction,
  type SamplerOptions,
  type SamplingDenoiser,
} from '../../eval/sampling.js';

const S = 0.5; // data std
const sched = ddpmSchedule('linear', 1e-4, 0.02, 1000);

/** Exact posterior-mean denoiser for N(mu_b, S²) data; cond = per-sample means. */
function gaussianDenoiser(prediction: Prediction): SamplingDenoiser<Float32Array> & { calls: number } {
  const d = {
    prediction,
    calls: 0,
    predict(xt: tf.Tensor4D, t: tf.Tensor1D, mu: Float32Array): tf.Tensor4D {
      d.calls++;
      const tv = t.dataSync()[0]!;
      let a: number, b: number;
      if (prediction === 'flow') {
        b = tv / 1000;
        a = 1 - b;
      } else {
        const ab = sched.alphasCumprod[tv]!;
        a = Math.sqrt(ab);
        b = Math.sqrt(1 - ab);
      }
      const var_ = a * a * S * S + b * b;
      return tf.tidy(() => {
        const m = tf.tensor4d(mu, [mu.length, 1, 1, 1]);
        const u = tf.sub(xt, tf.mul(m, a));
        const eps = tf.mul(u, b / var_);
        const x0 = tf.add(m, tf.mul(u, (a * S * S) / var_));
        if (prediction === 'epsilon') return eps as tf.Tensor4D;
        if (prediction === 'v') return tf.sub(tf.mul(eps, a), tf.mul(x0, b)) as tf.Tensor4D;
        return tf.sub(eps, x0) as tf.Tensor4D;
      });
    },
  };
  return d;
}

/** Output factor of the sampler for this data std: x_final = mu + u_T * factor. */
function closedFormFactor(o: SamplerOptions): { factor: number; aStart: number } {
  if (o.method === 'euler') {
    const times = flowTimes(o.steps, o.shift ?? 1);
    let f = 1;
    for (let i = 0; i < o.steps; i++) {
      const t = times[i]!,
        tn = times[i + 1]!;
      const a = 1 - t,
        b = t,
        v = a * a * S * S + b * b;
      f *= 1 + ((tn - t) * (b - a * S * S)) / v;
    }
    return { factor: f, aStart: 1 - times[0]! };
  }
  const ts = ddimTimesteps(1000, o.steps, o.timestepSpacing ?? 'trailing');
  let f = 1;
  for (let i = 0; i < ts.length; i++) {
    const ab = sched.alphasCumprod[ts[i]!]!,
      abp = i + 1 < ts.length ? sched.alphasCumprod[ts[i + 1]!]! : 1;
    const a = Math.sqrt(ab),
      b = Math.sqrt(1 - ab),
      ap = Math.sqrt(abp),
      bp = Math.sqrt(1 - abp);
    f *= (a * ap * S * S + b * bp) / (a * a * S * S + b * b);
  }
  return { factor: f, aStart: Math.sqrt(sched.alphasCumprod[ts[0]!]!) };
}

const BASE = { seed: 1234, height: 4, width: 4, channels: 3, schedule: sched } as const;

function expected(o: SamplerOptions, indices: number[], mu: Float32Array): Float32Array {
  const { factor, aStart } = closedFormFactor(o);
  const z = initialNoise(indices, o).noise;
  const zd = z.dataSync();
  z.dispose();
  const per = o.height * o.width * o.channels;
  return Float32Array.from(zd, (v, i) => mu[Math.floor(i / per)]! + (v - aStart * mu[Math.floor(i / per)]!) * factor);
}

async function run(
  pred: Prediction,
  o: SamplerOptions,
  indices: number[],
  mu: Float32Array,
  uncond: Float32Array | null = null,
): Promise<Float32Array> {
  const x = await sampleBatch(gaussianDenoiser(pred), mu, uncond, indices, o);
  const out = x.dataSync() as Float32Array;
  x.dispose();
  return out;
}

function assertClose(a: Float32Array, b: Float32Array, tol: number, what: string): void {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  assert.ok(worst <= tol, `${what}: max |diff| ${worst} > ${tol}`);
}

const MU = new Float32Array([0.3, -0.2]);
for (const [pred, method, steps] of [
  ['epsilon', 'ddim', 10],
  ['v', 'ddim', 10],
  ['epsilon', 'ddim', 50],
  ['flow', 'euler', 10],
  ['flow', 'euler', 40],
] as const) {
  void test(`${method} (${pred}, ${steps} steps) with the exact Gaussian denoiser matches the closed form`, async () => {
    const o: SamplerOptions = { ...BASE, method, steps, guidanceScale: 1 };
    assertClose(await run(pred, o, [0, 1], MU), expected(o, [0, 1], MU), 2e-5, 'samples');
  });
}

void test('DDIM leading spacing matches its closed form too', async () => {
  const o: SamplerOptions = { ...BASE, method: 'ddim', steps: 20, guidanceScale: 1, timestepSpacing: 'leading' };
  assert.deepEqual(ddimTimesteps(1000, 4, 'leading'), [750, 500, 250, 0]);
  assert.deepEqual(ddimTimesteps(1000, 4, 'trailing'), [999, 749, 499, 249]);
  assertClose(await run('epsilon', o, [0, 1], MU), expected(o, [0, 1], MU), 2e-5, 'samples');
});

void test('with more steps DDIM and Euler converge to the probability-flow ODE map: x0 = mu + s (x_T - a_T mu) / sigma_T', async () => {
  for (const [pred, method] of [
    ['epsilon', 'ddim'],
    ['flow', 'euler'],
  ] as const) {
    const errors: number[] = [];
    for (const steps of [25, 200]) {
      const o: SamplerOptions = { ...BASE, method, steps, guidanceScale: 1 };
      const { aStart } = closedFormFactor(o);
      const sigmaT = Math.sqrt(aStart * aStart * S * S + (method === 'euler' ? 1 : 1 - aStart * aStart));
      const noise = initialNoise([0, 1], o).noise;
      const z = noise.dataSync();
      noise.dispose();
      const got = await run(pred, o, [0, 1], MU);
      let worst = 0;
      for (let i = 0; i < got.length; i++) {
        const m = MU[Math.floor(i / 48)]!;
        worst = Math.max(worst, Math.abs(got[i]! - (m + (S * (z[i]! - aStart * m)) / sigmaT)));
      }
      errors.push(worst);
    }
    assert.ok(
      errors[1]! < 0.03 && errors[1]! < errors[0]! / 4,
      `${method}: max |sample - ODE| ${errors.join(' -> ')} (25 -> 200 steps)`,
    );
  }
});

void test('classifier-free guidance: uncond + w (cond - uncond) samples the Gaussian at mu_u + w (mu_c - mu_u)', async () => {
  const w = 3;
  const cond = new Float32Array([0.4, 0.1]),
    uncond = new Float32Array([0.1, 0.1]);
  const guidedMu = cond.map((c, i) => uncond[i]! + w * (c - uncond[i]!));
  for (const [pred, method] of [
    ['epsilon', 'ddim'],
    ['v', 'ddim'],
    ['flow', 'euler'],
  ] as const) {
    const o: SamplerOptions = { ...BASE, method, steps: 8, guidanceScale: w };
    assertClose(
      await run(pred, o, [5, 6], cond, uncond),
      expected(o, [5, 6], guidedMu),
      3e-5,
      `${method}/${pred} guided`,
    );
  }
});

void test('fixed seeds: a sample does not depend on its batch; a different seed changes it; eta > 0 stays deterministic', async () => {
  for (const eta of [0, 1]) {
    const o: SamplerOptions = { ...BASE, method: 'ddim', steps: 6, guidanceScale: 1, eta };
    const all = await run('epsilon', o, [0, 1, 2, 3], new Float32Array(4).fill(0.2));
    const part = await run('epsilon', o, [2, 3], new Float32Array(2).fill(0.2));
    assert.deepEqual(Array.from(part), Array.from(all.subarray(2 * 48)), `eta ${eta}: batch-independent`);
    const again = await run('epsilon', o, [0, 1, 2, 3], new Float32Array(4).fill(0.2));
    assert.deepEqual(Array.from(again), Array.from(all), `eta ${eta}: repeatable`);
    const other = await run('epsilon', { ...o, seed: 99 }, [2, 3], new Float32Array(2).fill(0.2));
    assert.notDeepEqual(Array.from(other), Array.from(part));
  }
  const eta0 = await run(
    'epsilon',
    { ...BASE, method: 'ddim', steps: 6, guidanceScale: 1, eta: 0 },
    [0],
    new Float32Array([0.2]),
  );
  const eta1 = await run(
    'epsilon',
    { ...BASE, method: 'ddim', steps: 6, guidanceScale: 1, eta: 1 },
    [0],
    new Float32Array([0.2]),
  );
  assert.notDeepEqual(Array.from(eta0), Array.from(eta1), 'eta adds noise');
});

void test('sampler configuration errors are KilnErrors', async () => {
  const d = gaussianDenoiser('epsilon');
  await assert.rejects(sampleBatch(d, MU, null, [0], { ...BASE, method: 'euler', steps: 2, guidanceScale: 1 }), {
    code: 'KILN_CONFIG',
  });
  await assert.rejects(sampleBatch(d, MU, null, [0], { ...BASE, method: 'ddim', steps: 2, guidanceScale: 2 }), {
    code: 'KILN_CONFIG',
  });
  await assert.rejects(
    sampleBatch(gaussianDenoiser('flow'), MU, null, [0], { ...BASE, method: 'ddim', steps: 2, guidanceScale: 1 }),
    { code: 'KILN_CONFIG' },
  );
  assert.equal(d.calls, 0);
  assert.equal(tf.memory().numTensors < 50, true, `tensors leaked: ${tf.memory().numTensors}`);
});
