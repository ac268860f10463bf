import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { pilResize, type PilResample } from '../../infra/imaging/pil-resample.js';
import {
  centerCrop,
  decodeBatch,
  decodeRgb,
  ImagePreprocessor,
  shortestEdgeSize,
  type ImageProcessorConfig,
} from '../../datasets/filter/preprocess.js';
import { defaultPreprocessThreads, PreprocessPool } from '../../datasets/filter/preprocess-pool.js';
import { assertClose, CAPTIONER_DIR, CLIP_DIR, MODELS, reference, referenceImages } from './fixtures.js';

interface ResizeCase {
  width: number;
  height: number;
  out_width: number;
  out_height: number;
  resample: PilResample;
  input: string;
  output: string;
}
const resize = JSON.parse(readFileSync(`${MODELS}/pil-resize.json`, 'utf8')) as { pillow: string; cases: ResizeCase[] };

void test('pilResize reproduces Pillow byte for byte (every filter, both pass orders)', () => {
  assert.ok(resize.cases.length >= 40);
  for (const c of resize.cases) {
    const img = { data: new Uint8Array(Buffer.from(c.input, 'base64')), width: c.width, height: c.height, channels: 3 };
    const out = pilResize(img, c.out_width, c.out_height, c.resample);
    const expected = new Uint8Array(Buffer.from(c.output, 'base64'));
    assert.equal(out.width, c.out_width);
    assert.equal(out.height, c.out_height);
    const diff = out.data.findIndex((v, i) => v !== expected[i]);
    assert.equal(
      diff,
      -1,
      `${c.width}x${c.height} -> ${c.out_width}x${c.out_height} resample=${c.resample}: first differing byte ${diff}`,
    );
  }
});

void test('shortest-edge size and centre crop follow transformers', () => {
  const table: [number, number, number, { width: number; height: number }][] = [
    [96, 64, 32, { width: 48, height: 32 }],
    [40, 56, 32, { width: 32, height: 44 }], // int(32 * 56 / 40) = 44
    [32, 32, 32, { width: 32, height: 32 }],
    [30, 20, 32, { width: 48, height: 32 }],
    [500, 333, 224, { width: 336, height: 224 }],
  ];
  for (const [w, h, s, want] of table) assert.deepEqual(shortestEdgeSize(w, h, s), want, `${w}x${h} -> ${s}`);
  // 2x2 image cropped to 4x4: zero-padded, image centred at rows/cols 1..2.
  const img = { data: new Uint8Array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]), width: 2, height: 2, channels: 3 };
  const out = centerCrop(img, 4, 4);
  assert.deepEqual(
    Array.from(out.data.filter((_, i) => i % 3 === 0)),
    [0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0],
  );
});

void test('every fixture format (PNG, RGBA PNG, JPEG, grey JPEG, WebP, 16-bit PNG) decodes to 8-bit RGB; bad bytes are per-row errors', async () => {
  const imgs = referenceImages();
  for (const [i, bytes] of imgs.entries()) {
    const d = await decodeRgb(bytes);
    assert.equal(d.channels, 3, reference.images[i]);
    assert.equal(d.data.length, d.width * d.height * 3);
  }
  const dec = await decodeBatch([imgs[0] as Uint8Array, null, new Uint8Array([1, 2, 3, 4]), imgs[1] as Uint8Array]);
  assert.deepEqual(dec.rows, [0, 3]);
  assert.equal(dec.errors[1], 'no image bytes');
  assert.match(dec.errors[2] ?? '', /^undecodable image/);
  // sharp-encoded 16-bit PNG still decodes to 8-bit RGB.
  const png16 = await sharp(Buffer.alloc(4 * 4 * 3, 200), { raw: { width: 4, height: 4, channels: 3 } })
    .toColourspace('rgb16')
    .png()
    .toBuffer();
  const d16 = await decodeRgb(png16);
  assert.equal(d16.data.length, 48);
});

async function pixelTensor(dir: string, images: Uint8Array[]): Promise<Float32Array> {
  const config = JSON.parse(readFileSync(`${dir}/preprocessor_config.json`, 'utf8')) as ImageProcessorConfig;
  const pre = new ImagePreprocessor(config);
  const decoded = await Promise.all(images.map(decodeRgb));
  return pre.batch(decoded).data;
}

void test('CLIPImageProcessor pixel tensor matches transformers to 1e-4', async () => {
  const px = await pixelTensor(CLIP_DIR, referenceImages());
  assertClose(px, reference.clip.pixel_values.data, 1e-4, 'CLIP pixel_values');
});

void test('ViTImageProcessor pixel tensor matches transformers to 1e-4', async () => {
  const px = await pixelTensor(CAPTIONER_DIR, referenceImages());
  assertClose(px, reference.captioner.pixel_values.data, 1e-4, 'ViT pixel_values');
});

void test('unsupported resample filter is a clear ConfigError', () => {
  assert.throws(
    () => new ImagePreprocessor({ resample: 0, size: { height: 8, width: 8 } }),
    (e: Error & { code?: string }) => e.code === 'KILN_CONFIG' && /resample=0/.test(e.message),
  );
});

void test('pilResize with an output box computes exactly that crop of the full resize (both pass orders)', () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return Math.floor((seed / 4294967296) * n);
  };
  let orders = 0;
  for (const c of resize.cases) {
    const img = { data: new Uint8Array(Buffer.from(c.input, 'base64')), width: c.width, height: c.height, channels: 3 };
    const full = new Uint8Array(Buffer.from(c.output, 'base64'));
    const width = 1 + rand(c.out_width),
      height = 1 + rand(c.out_height);
    const box = { left: rand(c.out_width - width + 1), top: rand(c.out_height - height + 1), width, height };
    const out = pilResize(img, c.out_width, c.out_height, c.resample, box);
    const want = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++)
      want.set(
        full.subarray(
          ((y + box.top) * c.out_width + box.left) * 3,
          ((y + box.top) * c.out_width + box.left + width) * 3,
        ),
        y * width * 3,
      );
    assert.deepEqual([out.width, out.height], [width, height]);
    assert.deepEqual(
      out.data,
      want,
      `${c.width}x${c.height} -> ${c.out_width}x${c.out_height} resample=${c.resample} box ${JSON.stringify(box)}`,
    );
    if (c.height - c.out_height > 2 * (c.width - c.out_width) && c.height > c.out_height) orders++;
  }
  assert.ok(orders > 0, 'some cases run the vertical pass first');
});

void test('the worker-thread preprocessing pool gives the same tensor and per-row errors as the calling thread', async () => {
  const config = JSON.parse(readFileSync(`${CLIP_DIR}/preprocessor_config.json`, 'utf8')) as ImageProcessorConfig;
  const imgs = referenceImages();
  const rows = [
    imgs[0] as Uint8Array,
    null,
    new Uint8Array([1, 2, 3]),
    imgs[1] as Uint8Array,
    imgs[2] as Uint8Array,
    imgs[3] as Uint8Array,
    imgs[4] as Uint8Array,
  ];
  const include = [true, true, true, false, true, true, true];
  const local = new PreprocessPool(config, 'clip', 0);
  const pooled = new PreprocessPool(config, 'clip', 3);
  try {
    const a = await local.prepare(rows, include);
    const b = await pooled.prepare(rows, include);
    assert.deepEqual(b.rows, [0, 4, 5, 6]);
    assert.deepEqual(b.rows, a.rows);
    assert.deepEqual(b.errors, a.errors);
    assert.equal(b.errors[1], 'no image bytes');
    assert.match(b.errors[2] ?? '', /^undecodable image/);
    assert.deepEqual(b.pixels?.dims, [4, 3, 32, 32]);
    assert.deepEqual(b.pixels?.data, a.pixels?.data);
    assertClose((await pooled.pixels(imgs)).data, reference.clip.pixel_values.data, 0, 'pooled CLIP pixel_values');
    await assert.rejects(
      pooled.pixels([imgs[0] as Uint8Array, new Uint8Array([9])]),
      /^Error: image 1: undecodable image/,
    );
  } finally {
    await pooled.close();
  }
});

void test('default preprocessing workers: none on 1-2 cores, a quarter of the cores above, at most 4', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 8, 16, 64].map((c) => defaultPreprocessThreads(c)),
    [0, 0, 1, 1, 2, 4, 4],
  );
});

void test('decodeToSize (native decode + resize for JPEGs) gives resizeAndCrop(decodeRgb()) exactly, crop inside or padded', async () => {
  const jpegs = await Promise.all(
    [
      [256, 192],
      [40, 56],
      [20, 12],
      [33, 700],
      [700, 33],
    ].map(([w, h]) => {
      const raw = Buffer.from(Array.from({ length: (w as number) * (h as number) * 3 }, (_, i) => (i * 7919) % 251));
      return sharp(raw, { raw: { width: w as number, height: h as number, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer();
    }),
  );
  const configs: ImageProcessorConfig[] = [
    JSON.parse(readFileSync(`${CLIP_DIR}/preprocessor_config.json`, 'utf8')) as ImageProcessorConfig,
    JSON.parse(readFileSync(`${CAPTIONER_DIR}/preprocessor_config.json`, 'utf8')) as ImageProcessorConfig,
    { size: { shortest_edge: 24 }, resample: 1, do_center_crop: true, crop_size: { height: 30, width: 30 } }, // crop larger than the resize: padded
  ];
  for (const config of configs) {
    const pre = new ImagePreprocessor(config);
    for (const bytes of [...referenceImages(), ...jpegs.map((b) => new Uint8Array(b))]) {
      const want = pre.resizeAndCrop(await decodeRgb(bytes));
      const got = await pre.decodeToSize(bytes);
      assert.deepEqual([got.width, got.height], [want.width, want.height]);
      assert.deepEqual(got.data, want.data, `${JSON.stringify(config.size)}: ${bytes.length} bytes`);
    }
  }
});
