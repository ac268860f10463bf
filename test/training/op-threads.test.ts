/**
 * The intra-op thread choice (training/op-threads.ts, infra/tfjs-backend.ts `applyOpThreads`): one
 * thread for models whose activations are small, TensorFlow's default for large ones, and the
 * environment's word over Kiln's, with a clear error for a bad KILN_TF_THREADS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../infra/errors.js';
import { applyOpThreads } from '../../infra/tfjs-backend.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { opThreadsFor, SMALL_OP_ELEMENTS } from '../../training/op-threads.js';

const tiny = resolveTrainingConfig({});
const tenM = resolveTrainingConfig({
  resolution: 64,
  denoiser: { patchSize: 4, width: 256, depth: 6, heads: 4 },
  textEncoder: { width: 256, depth: 2, heads: 4 },
  optim: { microBatchSize: 8 },
});

void test('the tiny config trains on one thread per op, the 10.6M and dit-s2-256 configs on TensorFlow default', () => {
  // tiny: 4 x (32/4)^2 tokens x 64 wide = 16,384 elements.
  assert.deepEqual(opThreadsFor(tiny).threads, 1);
  assert.match(opThreadsFor(tiny).reason, /16384 elements/);
  // 10.6M: 8 x (64/4)^2 x 256 = 524,288.
  assert.equal(opThreadsFor(tenM).threads, null);
  assert.match(opThreadsFor(tenM).reason, /524288 elements/);
  // dit-s2-256: 256 px in an f8 latent, patch 2: 4 x 16^2 x 384 = 393,216 even at micro-batch 4.
  const dit = resolveTrainingConfig({
    preset: 'dit-s2-256',
    codec: { vae: '/models/sd-vae' },
    optim: { microBatchSize: 4, gradAccumSteps: 1 },
  });
  assert.equal(opThreadsFor(dit).threads, null);
  // The line sits between the two measured configs.
  assert.ok(16_384 < SMALL_OP_ELEMENTS && SMALL_OP_ELEMENTS < 393_216);
});

void test('TF_NUM_INTRAOP_THREADS wins over KILN_TF_THREADS, which wins over the hint; the hint sets TensorFlow env', () => {
  const hint = { threads: 1, reason: 'small' };
  const env1: NodeJS.ProcessEnv = { TF_NUM_INTRAOP_THREADS: '3', KILN_TF_THREADS: '2' };
  assert.deepEqual(applyOpThreads({ opThreads: hint }, env1), {
    threads: 3,
    source: 'TF_NUM_INTRAOP_THREADS',
    reason: 'TF_NUM_INTRAOP_THREADS=3 in the environment',
  });
  const env2: NodeJS.ProcessEnv = { KILN_TF_THREADS: '2' };
  assert.equal(applyOpThreads({ opThreads: hint }, env2).source, 'KILN_TF_THREADS');
  assert.equal(env2.TF_NUM_INTRAOP_THREADS, '2');
  const env3: NodeJS.ProcessEnv = { KILN_TF_THREADS: 'auto' };
  assert.deepEqual(applyOpThreads({ opThreads: hint }, env3), { threads: 1, source: 'hint', reason: 'small' });
  assert.equal(env3.TF_NUM_INTRAOP_THREADS, '1');
  const env4: NodeJS.ProcessEnv = {};
  assert.deepEqual(applyOpThreads({ opThreads: { threads: null, reason: 'large' } }, env4), {
    threads: null,
    source: 'default',
    reason: 'large',
  });
  assert.equal(env4.TF_NUM_INTRAOP_THREADS, undefined);
});

void test('a KILN_TF_THREADS that is not a positive integer is a ConfigError naming the variable and the fix', () => {
  for (const bad of ['0', '-2', '1.5', 'two']) {
    assert.throws(
      () => applyOpThreads({}, { KILN_TF_THREADS: bad }),
      (e: unknown) =>
        e instanceof ConfigError && e.message.includes(`KILN_TF_THREADS="${bad}"`) && /positive integer/.test(e.fix),
    );
  }
});
