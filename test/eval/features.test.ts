/**
 * Feature extraction against PyTorch and Pillow references computed by
 * scripts/fixtures/make_fid_extractor.py (fixtures/eval/fid-tiny/reference.json).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanResize } from '../../eval/clean-resize.js';
import { decodeRgb, imageSetStatistics, loadFeatureExtractor } from '../../eval/features.js';
import { featureStatistics } from '../../eval/statistics.js';
import sharp from 'sharp';
import { REPO_ROOT } from './helpers.js';

const DIR = join(REPO_ROOT, 'fixtures', 'eval', 'fid-tiny');
interface Reference {
  model_sha256: string;
  tensor_inputs: { features: number[][] };
  images: { file: string; width: number; height: number; features: number[]; resized_chw?: number[] }[];
}
const ref = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8')) as Reference;

/** Same formula as tensor_input() in the generator. */
function tensorInput(index: number, size: number): Float32Array {
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++)
    for (let h = 0; h < size; h++)
      for (let w = 0; w < size; w++) {
        out[(c * size + h) * size + w] = (c * 67 + h * 13 * (index + 1) + w * 7 + index * 31) % 256;
      }
  return out;
}

function assertAllClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0,
    at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  assert.ok(worst <= atol, `${what}: max |diff| ${worst} at ${at} (${actual[at]} vs ${expected[at]}) > ${atol}`);
}

void test('ONNX Runtime features of fixed tensors match PyTorch to 1e-4', async () => {
  const ex = await loadFeatureExtractor(DIR, { batchSize: 1 });
  try {
    assert.equal(ex.modelSha256, ref.model_sha256);
    assert.equal(ex.featureDim, 64);
    const input = new Float32Array(2 * 3 * 32 * 32);
    input.set(tensorInput(0, 32));
    input.set(tensorInput(1, 32), 3 * 32 * 32);
    const feats = await ex.extractTensors(input, 2); // batchSize 1: two runs, stitched
    assertAllClose(feats, ref.tensor_inputs.features.flat(), 1e-4, 'features');
  } finally {
    await ex.close();
  }
});

void test('clean resize matches Pillow float32 BICUBIC (clean-fid "clean") value by value', async () => {
  const first = ref.images[0]!;
  const img = await decodeRgb(readFileSync(join(DIR, first.file)));
  assert.deepEqual([img.width, img.height], [first.width, first.height]);
  assertAllClose(cleanResize(img, 32, 32), first.resized_chw!, 1e-4, 'resized tensor');
});

void test('features of PNG images (decode, clean resize, model) match PyTorch on Pillow-resized input', async () => {
  const ex = await loadFeatureExtractor(DIR, { batchSize: 2 });
  try {
    const imgs = await Promise.all(ref.images.map((r) => decodeRgb(readFileSync(join(DIR, r.file)))));
    const feats = await ex.extractImages(imgs);
    assertAllClose(
      feats,
      ref.images.flatMap((r) => r.features),
      1e-4,
      'image features',
    );
    const streamed = await imageSetStatistics(ex, imgs, { batchSize: 2 });
    const direct = featureStatistics(feats, 64);
    assert.equal(streamed.count, 3);
    assertAllClose(streamed.mean, direct.mean, 1e-12, 'streamed mean');
  } finally {
    await ex.close();
  }
});

void test('a missing extractor is a KilnError naming the path and the expected files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-extractor-'));
  try {
    await assert.rejects(loadFeatureExtractor(join(dir, 'nope')), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'KILN_MISSING_FILE');
      assert.match(err.message, /nope.extractor\.json/);
      assert.match(err.message, /model\.onnx/);
      return true;
    });
    cpSync(join(DIR, 'extractor.json'), join(dir, 'extractor.json'));
    await assert.rejects(loadFeatureExtractor(dir), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'KILN_MISSING_FILE');
      assert.ok(err.message.includes(join(dir, 'model.onnx')), err.message);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('decodeRgb: grey is replicated and alpha dropped, as PIL convert("RGB")', async () => {
  const grey = await sharp(Buffer.from([0, 100, 200, 255]), { raw: { width: 2, height: 2, channels: 1 } })
    .png()
    .toBuffer();
  assert.deepEqual(Array.from((await decodeRgb(grey)).data), [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
  const rgba = await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 128]), { raw: { width: 2, height: 1, channels: 4 } })
    .png()
    .toBuffer();
  assert.deepEqual(Array.from((await decodeRgb(rgba)).data), [10, 20, 30, 40, 50, 60]);
});
