/**
 * A whole evaluation with real parts: the sampler driving an analytic denoiser, the tiny ONNX
 * extractor, cached reference statistics, a stand-in CLIP scorer, the sample grid on disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { LocalStorage } from '../../infra/storage.js';
import { ddpmSchedule } from '../../training/noise-schedule.js';
import { evaluateCheckpoint, type ImageTextScorer } from '../../eval/evaluate.js';
import { evalSamplePlan, generateEvalImages, type GenerateOptions } from '../../eval/eval-samples.js';
import { loadFeatureExtractor } from '../../eval/features.js';
import { frechetDistance } from '../../eval/frechet.js';
import { hashReferenceSet, referenceStatistics } from '../../eval/reference-stats.js';
import { featureStatistics } from '../../eval/statistics.js';
import { kernelInceptionDistance } from '../../eval/kid.js';
import type { RgbImage } from '../../eval/clean-resize.js';
import type { SamplingDenoiser } from '../../eval/sampling.js';
import { REPO_ROOT, seededRandom } from './helpers.js';

const sched = ddpmSchedule('linear', 1e-4, 0.02, 1000);
const PROMPTS = ['dark', 'bright', 'medium'];

/** Exact epsilon for N(mu, 0.3²) pixels where the prompt sets mu (conditioning = per-sample mu). */
const denoiser: SamplingDenoiser<Float32Array> = {
  prediction: 'epsilon',
  predict(xt, t, mu) {
    const ab = sched.alphasCumprod[t.dataSync()[0]!]!;
    const a = Math.sqrt(ab),
      b = Math.sqrt(1 - ab),
      v = a * a * 0.09 + b * b;
    return tf.tidy(() => tf.mul(tf.sub(xt, tf.mul(tf.tensor4d(mu, [mu.length, 1, 1, 1]), a)), b / v) as tf.Tensor4D);
  },
};
const MU: Record<string, number> = { dark: -0.6, bright: 0.6, medium: 0 };
const generate: GenerateOptions<Float32Array> = {
  denoiser,
  sampler: { method: 'ddim', steps: 5, guidanceScale: 1, seed: 7, height: 16, width: 16, channels: 3, schedule: sched },
  encode: (prompts) => ({ cond: Float32Array.from(prompts, (p) => MU[p]!), uncond: null }),
  decode: (x) => Promise.resolve(x),
  batchSize: 8,
};

/** Stand-in CLIP: "similarity" = mean brightness of the decoded PNG (checks PNG encoding and pairing). */
const brightness: ImageTextScorer = {
  async score(images) {
    return Float32Array.from(
      await Promise.all(
        images.map(async (png) => {
          const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
          return data.reduce((s, v) => s + v, 0) / data.length / 255;
        }),
      ),
    );
  },
};

function referenceImages(n: number): RgbImage[] {
  const rnd = seededRandom(5);
  return Array.from({ length: n }, () => ({
    width: 24,
    height: 24,
    data: Uint8Array.from({ length: 24 * 24 * 3 }, () =>
      Math.max(0, Math.min(255, Math.round(128 + 60 * rnd.normal()))),
    ),
  }));
}

void test('evaluateCheckpoint: FID vs cached reference, CLIP score, grid and protocol; deterministic', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kiln-evaluate-'));
  const extractor = await loadFeatureExtractor(join(REPO_ROOT, 'fixtures', 'eval', 'fid-tiny'));
  try {
    const storage = new LocalStorage(root);
    const refImgs = referenceImages(40);
    const key = {
      referenceSetHash: hashReferenceSet(
        refImgs.map((_, i) => ({ id: `ref-${i}`, sha256: String(i).padStart(64, '0') })),
      ),
      extractorSha256: extractor.modelSha256,
    };
    const reference = await referenceStatistics(storage, key, async () => {
      const data = await extractor.extractImages(refImgs);
      return { stats: featureStatistics(data, extractor.featureDim), features: { data, count: refImgs.length } };
    });
    const reportDirUri = storage.uri('runs', 'r1', 'report');
    const progress: number[] = [];
    const deps = {
      storage,
      generate,
      extractor,
      reference,
      clip: { scorer: brightness, name: 'brightness-stand-in' },
      reportDirUri,
    };
    const rec = await evaluateCheckpoint(deps, {
      step: 500,
      prompts: PROMPTS,
      sampleCount: 20,
      gridSamples: 9,
      referenceSetName: 'noise-40',
      metric: 'kid',
      referenceResize: 'as given (24x24)',
      onProgress: (n) => progress.push(n),
    });

    // Independent recomputation from the same plan.
    const imgs: RgbImage[] = [];
    for await (const { image } of generateEvalImages(evalSamplePlan(PROMPTS, 20), generate)) imgs.push(image);
    const genFeatures = await extractor.extractImages(imgs);
    const fd = frechetDistance(featureStatistics(genFeatures, extractor.featureDim), reference.stats);
    // KID on the same rows: 20 generated vs 40 reference -> subsets of 20, 100 of them, seeded by the sampler seed.
    const kid = kernelInceptionDistance({ data: genFeatures, count: 20 }, reference.features, extractor.featureDim, {
      seed: 7,
    });
    assert.equal(kid.subsetSize, 20);
    assert.equal(kid.subsets, 100);
    assert.ok(Math.abs(rec.kid! - kid.kid) <= 1e-12 * Math.abs(kid.kid), `kid ${rec.kid} vs ${kid.kid}`);
    assert.ok(rec.kid! > 0, `samples and noise reference differ: KID ${rec.kid}`);
    assert.ok(
      rec.kidParts!.noiseStd > 0 && rec.kidParts!.noiseStd < rec.kid!,
      `KID noise ${rec.kidParts!.noiseStd} vs KID ${rec.kid}`,
    );
    assert.ok(Math.abs(rec.fid! - fd.distance) <= 1e-9 * fd.distance, `fid ${rec.fid} vs ${fd.distance}`);
    assert.ok(rec.fid! > 0);
    const clipExpected =
      (
        await brightness.score(
          await Promise.all(
            imgs.map(async (im) =>
              sharp(im.data as Uint8Array, { raw: { width: 16, height: 16, channels: 3 } })
                .png()
                .toBuffer(),
            ),
          ),
          [],
        )
      ).reduce((s, v) => s + v, 0) / 20;
    assert.ok(Math.abs(rec.clipScore! - clipExpected) < 1e-6, `clip ${rec.clipScore} vs ${clipExpected}`);
    assert.deepEqual(progress, [8, 16, 20]);
    assert.deepEqual(rec.protocol, {
      extractor: extractor.descriptor.name,
      extractorSha256: extractor.modelSha256,
      sampleCount: 20,
      seed: 7,
      referenceStatsSha256: reference.statsSha256,
      referenceSet: 'noise-40',
      sampler: 'ddim, 5 steps, guidance 1',
      clipModel: 'brightness-stand-in',
      referenceCount: 40,
      featureDim: 64,
      metric: 'kid',
      kid: 'unbiased MMD², k(x,y) = (x·y/64 + 1)³, 100 subset(s) of 20 (clean-fid: min(n, ref, 1000), 100 subsets), seed 7',
      resize: 'reference: as given (24x24); samples at 16x16; both clean-fid "clean" resize to 32x32',
    });
    assert.equal(rec.samplePrompts!.length, 9);
    assert.equal(rec.samplePrompts![4], PROMPTS[4 % 3]);
    assert.ok(existsSync(join(storage.localPath(reportDirUri), rec.sampleGrid!)));
    assert.deepEqual(JSON.parse(JSON.stringify(rec)), rec, 'plain JSON');

    const again = await evaluateCheckpoint(deps, {
      step: 500,
      prompts: PROMPTS,
      sampleCount: 20,
      gridSamples: 9,
      referenceSetName: 'noise-40',
    });
    assert.equal(again.fid, rec.fid, 'same checkpoint and options, same FID');
    assert.equal(again.kid, rec.kid, 'same checkpoint and options, same KID');
  } finally {
    await extractor.close();
    rmSync(root, { recursive: true, force: true });
  }
});
