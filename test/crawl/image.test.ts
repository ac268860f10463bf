/** Image pipeline: magic bytes, header dimensions vs libvips, resize modes, filters, encode options. */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { processImage, targetSize, type ImageOptions } from '../../datasets/crawl/image.js';
import { headerDimensions } from '../../datasets/crawl/dims.js';
import { sniffImageFormat } from '../../datasets/crawl/magic.js';
import { photoLikePixels, makeImage } from './images.js';

const BASE: ImageOptions = {
  imageSize: 256,
  resizeMode: 'border',
  resizeOnlyIfBigger: false,
  minImageSize: 0,
  maxAspectRatio: 0,
  maxPixels: 50_000_000,
  encodeFormat: 'jpeg',
  encodeQuality: 90,
  skipReencode: false,
};

describe('image pipeline', () => {
  let jpg: Buffer;
  before(async () => {
    jpg = await makeImage(640, 480, 'jpeg', 7);
  });

  it('reads dimensions from headers exactly as libvips does', async () => {
    const raw = (w: number, h: number, c: 3 | 4 = 3) =>
      sharp(photoLikePixels(w, h, w + h, c), { raw: { width: w, height: h, channels: c } });
    const samples: [string, Buffer][] = [
      ['jpeg', await raw(321, 123).jpeg().toBuffer()],
      ['progressive jpeg', await raw(123, 321).jpeg({ progressive: true }).toBuffer()],
      ['png', await raw(77, 55).png().toBuffer()],
      ['webp lossy', await raw(301, 97).webp().toBuffer()],
      ['webp lossless', await raw(97, 301).webp({ lossless: true }).toBuffer()],
      ['webp alpha (VP8X)', await raw(150, 60, 4).webp().toBuffer()],
      ['gif', await raw(40, 30).gif().toBuffer()],
    ];
    for (const [name, b] of samples) {
      const fmt = sniffImageFormat(b);
      assert.ok(fmt, `${name}: sniffed`);
      const meta = await sharp(b).metadata();
      assert.deepEqual(headerDimensions(b, fmt), { width: meta.width, height: meta.height }, name);
    }
  });

  it('rejects non-images by magic bytes', () => {
    assert.equal(sniffImageFormat(Buffer.from('<!doctype html><html></html>')), undefined);
    assert.equal(sniffImageFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"></svg>')), undefined);
    assert.equal(sniffImageFormat(Buffer.alloc(4)), undefined);
  });

  it('computes img2dataset target sizes', () => {
    const d = { width: 640, height: 480 };
    assert.equal(targetSize(d, { imageSize: 256, resizeMode: 'no' }), undefined);
    assert.deepEqual(targetSize(d, { imageSize: 256, resizeMode: 'keep_ratio' }), { width: 341, height: 256 });
    assert.deepEqual(targetSize(d, { imageSize: 256, resizeMode: 'center_crop' }), { width: 256, height: 256 });
    assert.deepEqual(targetSize({ width: 256, height: 256 }, { imageSize: 256, resizeMode: 'border' }), undefined);
    assert.deepEqual(targetSize(d, { imageSize: 256, resizeMode: 'keep_ratio_largest' }), { width: 256, height: 192 });
    assert.deepEqual(targetSize({ width: 100, height: 50 }, { imageSize: 256, resizeMode: 'keep_ratio_largest' }), {
      width: 256,
      height: 128,
    });
  });

  it('resizes only images larger than imageSize with resizeOnlyIfBigger (img2dataset semantics)', async () => {
    const only = (w: number, h: number, resizeMode: ImageOptions['resizeMode']) =>
      targetSize({ width: w, height: h }, { imageSize: 256, resizeMode, resizeOnlyIfBigger: true });
    // keep_ratio / center_crop look at the smaller side, border / keep_ratio_largest at the larger one.
    assert.equal(only(640, 200, 'keep_ratio'), undefined);
    assert.deepEqual(only(640, 480, 'keep_ratio'), { width: 341, height: 256 });
    assert.equal(only(640, 256, 'center_crop'), undefined);
    assert.deepEqual(only(640, 257, 'center_crop'), { width: 256, height: 256 });
    assert.equal(only(200, 256, 'border'), undefined);
    assert.deepEqual(only(300, 100, 'border'), { width: 256, height: 256 });
    assert.equal(only(120, 90, 'keep_ratio_largest'), undefined);
    assert.deepEqual(only(640, 480, 'keep_ratio_largest'), { width: 256, height: 192 });
    // A small image is stored at its own size: not upscaled, not padded, not cropped.
    const small = await makeImage(120, 90, 'jpeg', 3);
    for (const resizeMode of ['border', 'center_crop', 'keep_ratio', 'keep_ratio_largest'] as const) {
      for (const codec of ['auto', 'sharp'] as const) {
        const r = await processImage(small, { ...BASE, resizeMode, resizeOnlyIfBigger: true }, codec);
        assert.ok(r.ok, resizeMode);
        const meta = await sharp(r.image.data).metadata();
        assert.deepEqual(
          [r.image.width, r.image.height, meta.width, meta.height],
          [120, 90, 120, 90],
          `${resizeMode} ${codec}`,
        );
      }
      const kept = await processImage(small, { ...BASE, resizeMode, resizeOnlyIfBigger: true, skipReencode: true });
      assert.ok(kept.ok && kept.image.data.equals(small), `${resizeMode}: original bytes kept with skipReencode`);
    }
  });

  it('resizes in each mode', async () => {
    const cases: [ImageOptions['resizeMode'], number, number][] = [
      ['no', 640, 480],
      ['keep_ratio', 341, 256],
      ['keep_ratio_largest', 256, 192],
      ['center_crop', 256, 256],
      ['border', 256, 256],
    ];
    for (const [mode, w, h] of cases) {
      const r = await processImage(jpg, { ...BASE, resizeMode: mode });
      assert.ok(r.ok, mode);
      assert.deepEqual(
        [r.image.width, r.image.height, r.image.originalWidth, r.image.originalHeight],
        [w, h, 640, 480],
        mode,
      );
      const meta = await sharp(r.image.data).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', w, h], mode);
    }
  });

  it('border pads with black bars; center_crop does not', async () => {
    const pixel = async (b: Buffer, x: number, y: number) => {
      const { data, info } = await sharp(b).raw().toBuffer({ resolveWithObject: true });
      const o = (y * info.width + x) * info.channels;
      return [data[o]!, data[o + 1]!, data[o + 2]!];
    };
    const border = await processImage(jpg, BASE);
    assert.ok(border.ok);
    // 640x480 -> 256x192 inside 256x256: 32 px bars at top and bottom.
    for (const y of [2, 20, 240, 253])
      assert.ok(
        (await pixel(border.image.data, 128, y)).every((v) => v < 16),
        `black at y=${y}`,
      );
    assert.ok(
      (await pixel(border.image.data, 128, 128)).some((v) => v > 16),
      'image in the middle',
    );
    const crop = await processImage(jpg, { ...BASE, resizeMode: 'center_crop' });
    assert.ok(crop.ok);
    assert.ok((await pixel(crop.image.data, 128, 2)).some((v) => v > 16));
  });

  it('skips re-encoding only when no resize is needed', async () => {
    const same = await processImage(jpg, { ...BASE, resizeMode: 'no', skipReencode: true });
    assert.ok(same.ok && same.image.data === jpg);
    const resized = await processImage(jpg, { ...BASE, skipReencode: true });
    assert.ok(resized.ok && resized.image.data !== jpg && resized.image.width === 256);
  });

  it('encodes webp when asked, flattening nothing it need not', async () => {
    const png = await makeImage(120, 80, 'png', 3, { alpha: true });
    const r = await processImage(png, { ...BASE, encodeFormat: 'webp', imageSize: 64 });
    assert.ok(r.ok);
    assert.equal(sniffImageFormat(r.image.data), 'webp');
    const j = await processImage(png, { ...BASE, imageSize: 64 });
    assert.ok(j.ok);
    assert.equal((await sharp(j.image.data).metadata()).hasAlpha, false);
  });

  it('filters by minimum size and aspect ratio, refuses pixel bombs before decoding', async () => {
    const small = await processImage(jpg, { ...BASE, minImageSize: 500 });
    assert.ok(!small.ok && small.failure.reason === 'image_too_small' && small.originalWidth === 640);
    const aspect = await processImage(await makeImage(400, 100, 'png', 2), { ...BASE, maxAspectRatio: 3 });
    assert.ok(!aspect.ok && aspect.failure.reason === 'aspect_ratio_too_large');
    const bomb = await processImage(jpg, { ...BASE, maxPixels: 640 * 480 - 1 });
    assert.ok(!bomb.ok && bomb.failure.reason === 'pixel_limit');
    const broken = await processImage(Buffer.concat([jpg.subarray(0, 2000)]), BASE);
    assert.ok(!broken.ok && broken.failure.reason === 'decode_error');
  });
});
