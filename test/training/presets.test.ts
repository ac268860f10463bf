/**
 * Training presets (training/presets.ts) and the memory check's device (training/memory.ts): the
 * dit-s2-256 preset resolves to the sizes it names, the config's own values win, it refuses pixel
 * space, and its memory estimate is checked against the GPU's memory when the native GPU build runs
 * on a GPU (host RAM otherwise).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../infra/errors.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { ModelTooLargeError } from '../../training/errors.js';
import type { LatentCodec } from '../../training/latent-codec.js';
import { assertFitsInMemory, estimateTrainingMemory, trainingDevice, type GpuMemory } from '../../training/memory.js';
import { resolveModel } from '../../training/model.js';

const GiB = 1024 ** 3;
/** The latent side of an SD-style VAE (f = 8, 4 channels); resolveModel reads only these fields. */
const SD_VAE_SHAPE = { name: 'onnx-vae:sd-vae', sha256: 'a'.repeat(64), channels: 4, downsample: 8 } as LatentCodec;
const preset = { preset: 'dit-s2-256', codec: { vae: '/models/sd-vae' } } as const;

void test('dit-s2-256: 256 px in a 32x32x4 latent, patch 2, width 384, depth 12, CLIP-L-sized text, batch 32 x 64 = 2048', async () => {
  const cfg = resolveTrainingConfig(preset);
  assert.equal(cfg.preset, 'dit-s2-256');
  assert.equal(cfg.resolution, 256);
  assert.deepEqual(
    [cfg.denoiser.patchSize, cfg.denoiser.width, cfg.denoiser.depth, cfg.denoiser.heads],
    [2, 384, 12, 6],
  );
  assert.deepEqual(
    [
      cfg.textEncoder.maxTokens,
      cfg.textEncoder.width,
      cfg.textEncoder.depth,
      cfg.textEncoder.heads,
      cfg.textEncoder.activation,
    ],
    [77, 768, 12, 12, 'quick_gelu'],
  );
  assert.equal(cfg.optim.microBatchSize * cfg.optim.gradAccumSteps, 2048);
  // Recipe values the preset does not name keep their defaults.
  assert.equal(cfg.optim.lr, 1e-4);
  assert.equal(cfg.denoiser.dropout, 0.1);
  const { spec } = await resolveModel(cfg, SD_VAE_SHAPE);
  assert.deepEqual(
    [spec.denoiser.size, spec.denoiser.channels, (spec.denoiser.size / spec.denoiser.patchSize) ** 2],
    [32, 4, 256],
  );
  // The config's own values win, field by field.
  const mine = resolveTrainingConfig({ ...preset, optim: { microBatchSize: 16 }, denoiser: { depth: 6 } });
  assert.deepEqual(
    [mine.optim.microBatchSize, mine.optim.gradAccumSteps, mine.denoiser.depth, mine.denoiser.width],
    [16, 64, 6, 384],
  );
});

void test('dit-s2-256 in pixel space, or an unknown preset, is a ConfigError naming the fix', () => {
  assert.throws(
    () => resolveTrainingConfig({ preset: 'dit-s2-256' }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /preset dit-s2-256 trains in a VAE's latent space/.test(err.message) &&
      /codec/.test(err.fix),
  );
  assert.throws(
    () => resolveTrainingConfig({ preset: 'dit-xl' } as never),
    (err: unknown) => err instanceof ConfigError && /preset/.test(err.message) && /dit-s2-256/.test(err.message),
  );
});

void test("the memory check uses the GPU's memory on the native GPU build with a GPU, host RAM otherwise", async () => {
  const cfg = resolveTrainingConfig(preset);
  const { spec } = await resolveModel(cfg, SD_VAE_SHAPE);
  const h100: GpuMemory[] = [{ index: 0, name: 'NVIDIA H100 80GB HBM3', totalBytes: 80 * GiB }];
  const small: GpuMemory[] = [{ index: 0, name: 'NVIDIA GeForce RTX 3060', totalBytes: 12 * GiB }];
  const gpuBuild = { name: 'tensorflow', build: { variant: 'gpu' as const } };
  assert.deepEqual(
    trainingDevice(gpuBuild, () => h100),
    { backend: 'tensorflow', gpu: h100[0] },
  );
  assert.deepEqual(
    trainingDevice(gpuBuild, () => []),
    { backend: 'tensorflow', gpu: null },
    'the GPU build without a GPU runs on the CPU',
  );
  assert.deepEqual(
    trainingDevice({ name: 'tensorflow', build: { variant: 'cpu' } }, () => h100),
    { backend: 'tensorflow', gpu: null },
  );
  const onH100 = assertFitsInMemory(
    cfg,
    spec.text,
    spec.denoiser,
    trainingDevice(gpuBuild, () => h100),
  );
  assert.equal(onH100.device, 'GPU 0 (NVIDIA H100 80GB HBM3)');
  assert.equal(onH100.limitBytes, Math.floor(80 * GiB * 0.9));
  // Without clipDir the text tower has the byte vocabulary (259 tokens), so CLIP-L's 38M-parameter token table is absent.
  assert.ok(
    onH100.parameters > 120e6 && onH100.parameters < 135e6,
    `${onH100.parameters} parameters (DiT-S/2 with cross-attention ~43M + CLIP-L text tower ~85M)`,
  );
  assert.ok(onH100.totalBytes > 12 * GiB, `estimate ${(onH100.totalBytes / GiB).toFixed(1)} GiB at micro-batch 32`);
  assert.throws(
    () =>
      assertFitsInMemory(
        cfg,
        spec.text,
        spec.denoiser,
        trainingDevice(gpuBuild, () => small),
      ),
    (err: unknown) =>
      err instanceof ModelTooLargeError &&
      /GPU 0 \(NVIDIA GeForce RTX 3060\)/.test(err.message) &&
      /microBatchSize/.test(err.fix),
  );
  // A smaller micro-batch with more accumulation (same effective batch) fits the small GPU.
  const fitted = resolveTrainingConfig({ ...preset, optim: { microBatchSize: 4, gradAccumSteps: 512 } });
  assert.equal(
    estimateTrainingMemory(
      fitted,
      spec.text,
      spec.denoiser,
      trainingDevice(gpuBuild, () => small),
    ).totalBytes <
      12 * GiB * 0.9,
    true,
  );
  // On the CPU the same estimate is checked against host RAM.
  const host = estimateTrainingMemory(cfg, spec.text, spec.denoiser, { backend: 'tensorflow', gpu: null });
  assert.equal(host.device, 'host RAM');
  assert.equal(host.totalBytes, onH100.totalBytes);
});
