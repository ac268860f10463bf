/**
 * The native 8-bit resampler (native/pil_resample.c, `resizeRgb`, fed by pil-resample.ts's
 * resamplePlan) against Pillow 13's bytes (fixtures/models/pil-resize.json) and against the JS port
 * (pilResize) over many random sizes, filters, boxes and both pass orders; the fused JPEG decode +
 * resize against PIL's decode (fixtures/imaging/pil-jpeg-decode) resized in JS; and what it declines.
 * The native checks are skipped, saying why, when the addon is not built.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import {
  decodeResizedRgb,
  decodeRgbWithOptions,
  jpegFrameSize,
  type RgbResize,
} from '../../infra/imaging/decode-rgb.js';
import { nativeJpeg, nativeJpegStatus } from '../../infra/imaging/native-jpeg.js';
import {
  PIL_RESAMPLE,
  pilResize,
  resamplePlan,
  verticalFirst,
  type OutputBox,
  type PilResample,
  type RawImage8,
} from '../../infra/imaging/pil-resample.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
interface ResizeCase {
  width: number;
  height: number;
  out_width: number;
  out_height: number;
  resample: PilResample;
  input: string;
  output: string;
}
const pillow = JSON.parse(readFileSync(`${ROOT}fixtures/models/pil-resize.json`, 'utf8')) as {
  pillow: string;
  cases: ResizeCase[];
};
const JPEG_DIR = `${ROOT}fixtures/imaging/pil-jpeg-decode/`;
interface JpegCase {
  file: string;
  width: number;
  height: number;
  rgb_zlib: string;
}
const jpegRef = JSON.parse(readFileSync(`${JPEG_DIR}reference.json`, 'utf8')) as { cases: JpegCase[] };
const jpegs = jpegRef.cases.map((c) => ({
  ...c,
  jpeg: readFileSync(`${JPEG_DIR}${c.file}`),
  pil: inflateSync(Buffer.from(c.rgb_zlib, 'base64')),
}));
const FILTERS = Object.values(PIL_RESAMPLE);

function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return Math.floor((s / 4294967296) * n);
  };
}

function randomBox(rand: (n: number) => number, w: number, h: number): OutputBox {
  const width = 1 + rand(w),
    height = 1 + rand(h);
  return { left: rand(w - width + 1), top: rand(h - height + 1), width, height };
}

function crop(data: Uint8Array, w: number, b: OutputBox): Uint8Array {
  const out = new Uint8Array(b.width * b.height * 3);
  for (let y = 0; y < b.height; y++)
    out.set(data.subarray(((y + b.top) * w + b.left) * 3, ((y + b.top) * w + b.left + b.width) * 3), y * b.width * 3);
  return out;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  return a.findIndex((v, i) => v !== b[i]);
}

const skip = nativeJpeg?.resizeRgb ? false : `native resizeRgb not available: ${nativeJpegStatus}`;

describe('native Pillow resize (resizeRgb)', { skip }, () => {
  const resizeRgb = nativeJpeg!.resizeRgb!.bind(nativeJpeg);
  const raw = async (img: RawImage8, w: number, h: number, f: PilResample, box?: OutputBox) => {
    const r = await resizeRgb(Buffer.from(img.data), false, 1e9, resamplePlan(img.width, img.height, w, h, f, box));
    assert.ok(r, 'raw input is never declined');
    return r;
  };

  it(`gives Pillow ${pillow.pillow}'s bytes for every fixture case, whole and boxed`, async () => {
    const rand = rng(11);
    for (const c of pillow.cases) {
      const img = {
        data: new Uint8Array(Buffer.from(c.input, 'base64')),
        width: c.width,
        height: c.height,
        channels: 3,
      };
      const expected = new Uint8Array(Buffer.from(c.output, 'base64'));
      const what = `${c.width}x${c.height} -> ${c.out_width}x${c.out_height} resample=${c.resample}`;
      const full = await raw(img, c.out_width, c.out_height, c.resample);
      assert.deepEqual([full.width, full.height], [c.out_width, c.out_height], what);
      assert.equal(firstDiff(full.data, expected), -1, what);
      const box = randomBox(rand, c.out_width, c.out_height);
      const part = await raw(img, c.out_width, c.out_height, c.resample, box);
      assert.equal(firstDiff(part.data, crop(expected, c.out_width, box)), -1, `${what} box ${JSON.stringify(box)}`);
    }
  });

  it('equals pilResize over 600 random sizes, filters and boxes (both pass orders, one-axis and same-size resizes)', async () => {
    const rand = rng(2024);
    const kinds = { verticalFirst: 0, horizontalFirst: 0, oneAxis: 0, sameSize: 0 };
    for (let i = 0; i < 600; i++) {
      const w = 1 + rand(90),
        h = 1 + rand(90);
      const img = { data: Uint8Array.from({ length: w * h * 3 }, () => rand(256)), width: w, height: h, channels: 3 };
      // Per axis: shrink, shrink a lot, enlarge, or keep.
      const pick = (n: number) =>
        [1 + rand(n), 1 + rand(Math.max(1, n >> 2)), n + 1 + rand(2 * n), n][rand(4)] as number;
      const ow = pick(w),
        oh = pick(h);
      const f = FILTERS[rand(FILTERS.length)] as PilResample;
      const box = rand(3) === 0 ? undefined : randomBox(rand, ow, oh);
      const js = pilResize(img, ow, oh, f, box);
      const nat = await raw(img, ow, oh, f, box);
      const what = `${w}x${h} -> ${ow}x${oh} resample=${f} box ${JSON.stringify(box)}`;
      assert.deepEqual([nat.width, nat.height], [js.width, js.height], what);
      assert.equal(firstDiff(nat.data, js.data), -1, what);
      if (ow === w && oh === h) kinds.sameSize++;
      else if (ow === w || oh === h) kinds.oneAxis++;
      else if (verticalFirst(w, h, ow, oh)) kinds.verticalFirst++;
      else kinds.horizontalFirst++;
    }
    for (const [kind, n] of Object.entries(kinds)) assert.ok(n >= 10, `only ${n} ${kind} cases`);
  });

  it("decodes and resizes a JPEG in one call: PIL's decode resized by pilResize, byte for byte", async () => {
    const rand = rng(5);
    for (const c of jpegs) {
      assert.deepEqual(jpegFrameSize(c.jpeg), { width: c.width, height: c.height }, c.file);
      const pil = { data: new Uint8Array(c.pil), width: c.width, height: c.height, channels: 3 };
      for (const [ow, oh] of [
        [32, 32],
        [Math.max(1, c.width >> 2), c.height * 3],
        [c.width + 7, Math.max(1, c.height >> 3)],
        [c.width, 9],
      ] as const) {
        const f = FILTERS[rand(FILTERS.length)] as PilResample;
        const box = randomBox(rand, ow, oh);
        const r = await resizeRgb(c.jpeg, true, 1e9, resamplePlan(c.width, c.height, ow, oh, f, box));
        const what = `${c.file} -> ${ow}x${oh} resample=${f} box ${JSON.stringify(box)}`;
        assert.ok(r, `${what}: declined`);
        assert.equal(firstDiff(r.data, pilResize(pil, ow, oh, f, box).data), -1, what);
      }
    }
  });

  it("declines what decodeRgb declines and a JPEG of another size; decodeResizedRgb then gives the JS path's bytes", async () => {
    const c = jpegs.find((j) => j.file === '420.jpg')!;
    const plan = resamplePlan(c.width, c.height, 20, 16, PIL_RESAMPLE.bicubic);
    assert.equal(await resizeRgb(c.jpeg, true, c.width * c.height - 1, plan), undefined, 'over maxPixels');
    assert.equal(
      await resizeRgb(c.jpeg, true, 1e9, resamplePlan(c.width + 1, c.height, 20, 16, PIL_RESAMPLE.bicubic)),
      undefined,
      'other size',
    );
    const cmyk = await sharp(c.pil, { raw: { width: c.width, height: c.height, channels: 3 } })
      .toColourspace('cmyk')
      .jpeg()
      .toBuffer();
    assert.equal(await resizeRgb(cmyk, true, 1e9, plan), undefined, 'cmyk');
    const resize: RgbResize = {
      width: 20,
      height: 16,
      resample: PIL_RESAMPLE.bicubic,
      box: { left: 2, top: 3, width: 10, height: 9 },
    };
    const got = await decodeResizedRgb(cmyk, () => resize);
    const viaSharp = await decodeRgbWithOptions(cmyk, { codec: 'sharp' });
    assert.equal(got.resize, resize);
    assert.equal(firstDiff(got.image.data, pilResize(viaSharp, 20, 16, resize.resample, resize.box).data), -1);
    await assert.rejects(
      decodeResizedRgb(c.jpeg, () => resize, { maxPixels: c.width * c.height - 1 }),
      /exceeds pixel limit/,
    );
  });

  it("rejects hard JPEG errors with libjpeg's message and throws at once on a plan that does not fit", async () => {
    const c = jpegs.find((j) => j.file === '420-wide.jpg')!;
    const twelveBit = Buffer.from(c.jpeg);
    twelveBit[twelveBit.indexOf(Buffer.from([0xff, 0xc0])) + 4] = 12; // SOF0 sample precision
    const plan = resamplePlan(c.width, c.height, 16, 16, PIL_RESAMPLE.bilinear);
    await assert.rejects(resizeRgb(twelveBit, true, 1e9, plan), /^Error: Unsupported JPEG data precision 12$/);
    assert.throws(() => resizeRgb(Buffer.alloc(5), false, 1e9, plan), RangeError, 'raw input of the wrong length');
    const broken = Int32Array.from(plan);
    broken[9] = c.width; // first column's xmin past the input
    assert.throws(() => resizeRgb(c.jpeg, true, 1e9, broken), RangeError);
    assert.throws(() => resizeRgb(c.jpeg, true, 1e9, plan.subarray(0, plan.length - 1)), RangeError);
    assert.throws(() => resizeRgb(c.jpeg, true, 1e9, new Float64Array(plan) as unknown as Int32Array), TypeError);
    // Found by fuzz/fuzz_resize_rgb.c: weights whose int32 sums overflow (UB) are refused, not run.
    const huge = Int32Array.from(plan);
    huge.fill(1 << 30, 9 + 2 * 16, 9 + 2 * 16 + 16 * plan[7]!);
    assert.throws(() => resizeRgb(c.jpeg, true, 1e9, huge), RangeError);
  });
});

describe('decodeResizedRgb (whichever path is in use)', () => {
  it('equals decodeRgb + pilResize for JPEG, PNG and no-resize plans', async () => {
    const c = jpegs[0]!;
    const png = await sharp(c.pil, { raw: { width: c.width, height: c.height, channels: 3 } })
      .png()
      .toBuffer();
    for (const bytes of [c.jpeg, png]) {
      for (const resize of [{ width: 24, height: 40, resample: PIL_RESAMPLE.lanczos }, undefined] as const) {
        const got = await decodeResizedRgb(bytes, () => resize);
        const dec = { data: new Uint8Array(c.pil), width: c.width, height: c.height, channels: 3 };
        const want = resize ? pilResize(dec, resize.width, resize.height, resize.resample) : dec;
        assert.equal(firstDiff(got.image.data, want.data), -1);
      }
    }
  });
});
