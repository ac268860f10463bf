/**
 * The native JPEG fast path (infra/imaging/native, libjpeg-turbo) against sharp: same output
 * geometry in every resize mode, pixels within JPEG noise of sharp's, and every image it must not
 * handle (grey, CMYK, ICC profile, truncated, garbage) going through sharp with sharp's exact result.
 * Skipped, saying why, when the addon is not built (setup.sh builds it where libjpeg-turbo's
 * headers are installed).
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { placement, processImage, type ImageOptions } from '../../datasets/crawl/image.js';
import { nativeJpeg, nativeJpegStatus } from '../../infra/imaging/native-jpeg.js';
import { makeImage, photoLikePixels } from './images.js';

const BASE: ImageOptions = {
  imageSize: 256,
  resizeMode: 'border',
  resizeOnlyIfBigger: false,
  minImageSize: 0,
  maxAspectRatio: 0,
  maxPixels: 50_000_000,
  encodeFormat: 'jpeg',
  encodeQuality: 95,
  skipReencode: false,
};
const MODES: ImageOptions['resizeMode'][] = ['border', 'center_crop', 'keep_ratio', 'keep_ratio_largest', 'no'];

/** PSNR in dB between two encoded images of the same size and bands. */
async function psnr(a: Buffer, b: Buffer): Promise<number> {
  const [x, y] = await Promise.all([
    sharp(a).raw().toBuffer({ resolveWithObject: true }),
    sharp(b).raw().toBuffer({ resolveWithObject: true }),
  ]);
  assert.deepEqual([x.info.width, x.info.height, x.info.channels], [y.info.width, y.info.height, y.info.channels]);
  let se = 0;
  for (let i = 0; i < x.data.length; i++) se += (x.data[i]! - y.data[i]!) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / x.data.length));
}

const skip = nativeJpeg ? false : `native JPEG path not built: ${nativeJpegStatus}`;

describe('native JPEG path', { skip }, () => {
  const native = nativeJpeg!;
  let photo: Buffer;
  before(async () => {
    photo = await makeImage(500, 375, 'jpeg', 11, { quality: 88 });
  });

  it('matches sharp in every resize mode: same dimensions, pixels within JPEG noise', async () => {
    const shapes: [number, number][] = [
      [500, 375],
      [375, 500],
      [1024, 768],
      [2000, 1500],
      [257, 255],
      [256, 256],
      [100, 60],
      [3, 2],
      [1, 1],
      [2000, 40],
      [513, 257],
    ];
    for (const [w, h] of shapes) {
      const jpg = await makeImage(w, h, 'jpeg', w + h, { quality: 90 });
      for (const resizeMode of MODES) {
        if (resizeMode === 'keep_ratio' && Math.max(w, h) / Math.min(w, h) > 10) continue; // 12,800 px wide: slow, not informative
        const o = { ...BASE, resizeMode };
        const [n, s] = await Promise.all([processImage(jpg, o), processImage(jpg, o, 'sharp')]);
        assert.ok(n.ok && s.ok, `${w}x${h} ${resizeMode}`);
        assert.deepEqual(
          [n.image.width, n.image.height, n.image.originalWidth, n.image.originalHeight],
          [s.image.width, s.image.height, s.image.originalWidth, s.image.originalHeight],
          `${w}x${h} ${resizeMode}`,
        );
        const meta = await sharp(n.image.data).metadata();
        assert.deepEqual(
          [meta.format, meta.width, meta.height, meta.channels],
          ['jpeg', n.image.width, n.image.height, 3],
        );
        const db = await psnr(n.image.data, s.image.data);
        // A 3x2 4:2:0 JPEG has 2x1 chroma samples: enlarged 85x, sharp (chroma upsampled to RGB first)
        // and the native path (chroma resampled in its own plane) reconstruct its colour differently.
        const min = w * h < 16 && resizeMode !== 'no' ? 25 : 30;
        assert.ok(db > min, `${w}x${h} ${resizeMode}: ${db.toFixed(1)} dB from sharp's result`);
      }
    }
  });

  it("is the path taken for plain JPEGs (its output differs from sharp's bytes)", async () => {
    const p = placement({ width: 500, height: 375 }, BASE);
    assert.deepEqual(p, { rw: 256, rh: 192, cw: 256, ch: 256, ox: 0, oy: 32 });
    const direct = await native.process(photo, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9);
    assert.ok(direct);
    const viaPipeline = await processImage(photo, BASE);
    assert.ok(viaPipeline.ok);
    assert.ok(viaPipeline.image.data.equals(direct));
    const viaSharp = await processImage(photo, BASE, 'sharp');
    assert.ok(viaSharp.ok && !viaSharp.image.data.equals(direct));
  });

  it('pads border bars exactly black and keeps a flat image flat', async () => {
    const grey = await sharp({
      create: { width: 400, height: 200, channels: 3, background: { r: 120, g: 130, b: 140 } },
    })
      .jpeg({ quality: 100 })
      .toBuffer();
    const r = await processImage(grey, { ...BASE, encodeQuality: 100 });
    assert.ok(r.ok);
    const { data } = await sharp(r.image.data).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [...data.subarray((y * 256 + x) * 3, (y * 256 + x) * 3 + 3)];
    // 400x200 -> 256x128 at y 64..191.
    for (const y of [0, 30, 56, 200, 255])
      assert.ok(
        at(128, y).every((v) => v <= 3),
        `bar at y=${y}: ${at(128, y)}`,
      );
    for (const [x, y] of [
      [10, 128],
      [128, 80],
      [250, 180],
    ] as const) {
      at(x, y).forEach((v, c) => assert.ok(Math.abs(v - [120, 130, 140][c]!) <= 3, `flat at ${x},${y}: ${at(x, y)}`));
    }
  });

  it("declines what sharp must handle, which then gives sharp's exact result", async () => {
    const w = 300;
    const h = 200;
    const rgb = photoLikePixels(w, h, 5);
    const samples: [string, Buffer][] = [
      [
        'grey',
        await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
          .toColourspace('b-w')
          .jpeg()
          .toBuffer(),
      ],
      [
        'cmyk',
        await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
          .toColourspace('cmyk')
          .jpeg()
          .toBuffer(),
      ],
      [
        'icc profile',
        await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
          .withIccProfile('p3')
          .jpeg()
          .toBuffer(),
      ],
    ];
    for (const [name, jpg] of samples) {
      const p = placement({ width: w, height: h }, BASE);
      assert.equal(
        await native.process(jpg, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9),
        undefined,
        `${name}: declined`,
      );
      const a = await processImage(jpg, BASE);
      const s = await processImage(jpg, BASE, 'sharp');
      assert.ok(a.ok && s.ok, name);
      assert.ok(a.image.data.equals(s.image.data), `${name}: sharp's bytes`);
    }
  });

  it('declines truncated data and rejects non-JPEG bytes; the pipeline reports decode_error as sharp does', async () => {
    const p = placement({ width: 500, height: 375 }, BASE);
    assert.equal(
      await native.process(photo.subarray(0, photo.length >> 1), p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9),
      undefined,
    );
    await assert.rejects(native.process(Buffer.from('definitely not a jpeg'), 8, 8, 8, 8, 0, 0, 95, 1e9), /JPEG/);
    assert.throws(() => native.process(photo, 0, 8, 8, 8, 0, 0, 95, 1e9), RangeError);
    // The pixel limit is enforced natively too (the header says 500x375).
    assert.equal(await native.process(photo, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 500 * 375 - 1), undefined);
    assert.ok(await native.process(photo, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 500 * 375));
    for (const cut of [photo.subarray(0, 2000), photo.subarray(0, photo.length >> 1)]) {
      // One at a time: libvips' error text is per thread, and concurrent failures can swap it.
      const a = await processImage(cut, BASE);
      const s = await processImage(cut, BASE, 'sharp');
      assert.deepEqual(a, s);
      assert.ok(!a.ok && a.failure.reason === 'decode_error', a.ok ? 'ok' : a.failure.detail);
    }
  });

  it('leaves sizes beyond its range to sharp instead of failing the shard', async () => {
    // keep_ratio on a 2x600 image asks for 256 x 76,800: past the addon's 65,535 limit.
    const tall = await sharp(photoLikePixels(2, 600, 3), { raw: { width: 2, height: 600, channels: 3 } })
      .jpeg()
      .toBuffer();
    assert.throws(() => native.process(tall, 256, 76_800, 256, 76_800, 0, 0, 95, 1e9), RangeError);
    // The row gets sharp's answer (JPEG cannot be that tall either), not a rejected shard.
    const r = await processImage(tall, { ...BASE, resizeMode: 'keep_ratio' });
    assert.deepEqual(r, await processImage(tall, { ...BASE, resizeMode: 'keep_ratio' }, 'sharp'));
    assert.ok(
      !r.ok && r.failure.reason === 'decode_error' && /too large/.test(r.failure.detail),
      r.ok ? 'ok' : r.failure.detail,
    );
  });

  it('declines images whose decoded + output pixels exceed its 64 MiB buffer budget (sharp streams them)', async () => {
    const big = await sharp({
      create: { width: 3400, height: 3400, channels: 3, background: { r: 10, g: 200, b: 90 } },
    })
      .jpeg()
      .toBuffer();
    assert.equal(await native.process(big, 3400, 3400, 3400, 3400, 0, 0, 95, 1e9), undefined);
    assert.ok(await native.process(big, 256, 256, 256, 256, 0, 0, 95, 1e9)); // shrink-on-load 1/8: 425x425 decoded
  });

  it('issue 13: ordinary 4:2:0 JPEGs with odd border / centre-crop placements stay inside their buffers and match sharp', async () => {
    // Root cause: the chroma plane of such a placement has one output sample more than its scale
    // maps; its resampler window started past the plane and its weights were written past their row
    // (heap corruption in ~1 image in 10). A child process with glibc's strict heap checks
    // (MALLOC_CHECK_=3) runs them first, so a regression fails here instead of killing the runner;
    // the sanitizer build (native-sanitized.test.ts) checks every access of the same cases.
    const sizes: [number, number][] = [
      [809, 886],
      [930, 821],
      [586, 885],
      [896, 685],
      [873, 617],
      [399, 480],
    ];
    const imageUrl = new URL('../../datasets/crawl/image.js', import.meta.url).href;
    const nativeUrl = new URL('../../infra/imaging/native-jpeg.js', import.meta.url).href;
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      const { default: sharp } = await import('sharp');
      const { placement } = await import(${JSON.stringify(imageUrl)});
      const { nativeJpeg } = await import(${JSON.stringify(nativeUrl)});
      let n = 0;
      for (const [w, h] of ${JSON.stringify(sizes)}) {
        const px = Buffer.alloc(w * h * 3, 0).map((_, i) => (i * 7 + (i >> 9)) & 255);
        const jpg = await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85, chromaSubsampling: '4:2:0' }).toBuffer();
        for (const imageSize of [128, 224, 256]) for (const resizeMode of ['border', 'center_crop']) {
          const p = placement({ width: w, height: h }, { imageSize, resizeMode });
          if (await nativeJpeg.process(jpg, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9)) n++;
        }
      }
      console.log(n);`,
      ],
      { encoding: 'utf8', env: { ...process.env, MALLOC_CHECK_: '3', MALLOC_PERTURB_: '165' } },
    );
    assert.equal(child.status, 0, `child died (signal ${child.signal}): ${child.stderr.slice(-2000)}`);
    assert.equal(Number(child.stdout.trim()), sizes.length * 6);
    for (const [w, h] of sizes) {
      const jpg = await makeImage(w, h, 'jpeg', w, { quality: 85 });
      for (const imageSize of [128, 224, 256]) {
        for (const resizeMode of ['border', 'center_crop'] as const) {
          const o = { ...BASE, imageSize, resizeMode };
          const [n, s] = await Promise.all([processImage(jpg, o), processImage(jpg, o, 'sharp')]);
          assert.ok(n.ok && s.ok);
          const db = await psnr(n.image.data, s.image.data);
          assert.ok(db > 30, `${w}x${h} ${resizeMode} ${imageSize}: ${db.toFixed(1)} dB from sharp`);
        }
      }
    }
  });

  it('works on its own copy of the input: the caller may overwrite or transfer the Buffer at once', async () => {
    const p = placement({ width: 500, height: 375 }, BASE);
    const want = await native.process(photo, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9);
    const reused = Buffer.from(photo);
    const pending = native.process(reused, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9);
    reused.fill(0);
    const moved = new Uint8Array(photo.length);
    moved.set(photo);
    const pending2 = native.decodeRgb(Buffer.from(moved.buffer), 1e9);
    structuredClone(moved.buffer, { transfer: [moved.buffer] }); // detaches it: its memory now belongs elsewhere
    assert.deepEqual(await pending, want);
    assert.equal((await pending2)?.width, 500);
  });

  it('refuses a progressive JPEG with more than 500 scans (a decompression bomb) instead of decoding it', async () => {
    const prog = await sharp(photoLikePixels(64, 48, 5), { raw: { width: 64, height: 48, channels: 3 } })
      .jpeg({ progressive: true })
      .toBuffer();
    // Repeat the last scan (SOS header + entropy-coded data, up to EOI) 600 times: libjpeg decodes
    // every copy (warning of a bogus progression), each a full pass over the coefficients.
    const lastSos = prog.lastIndexOf(Buffer.from([0xff, 0xda]));
    const scan = prog.subarray(lastSos, prog.length - 2);
    const bomb = Buffer.concat([
      prog.subarray(0, prog.length - 2),
      ...Array.from({ length: 600 }, () => scan),
      Buffer.from([0xff, 0xd9]),
    ]);
    const p = placement({ width: 64, height: 48 }, BASE);
    await assert.rejects(native.process(bomb, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9), /more than 500 scans/);
    await assert.rejects(native.decodeRgb(bomb, 1e9), /more than 500 scans/);
    const row = await processImage(bomb, BASE);
    assert.ok(
      !row.ok && row.failure.reason === 'decode_error' && /decompression bomb/.test(row.failure.detail),
      row.ok ? 'ok' : row.failure.detail,
    );
    // The same JPEG with 100 repeats is still an image (a warning: left to sharp, as before).
    const fine = Buffer.concat([
      prog.subarray(0, prog.length - 2),
      ...Array.from({ length: 100 }, () => scan),
      Buffer.from([0xff, 0xd9]),
    ]);
    assert.equal(await native.decodeRgb(fine, 1e9), undefined);
  });

  it('handles progressive and 4:4:4 JPEGs', async () => {
    const raw = sharp(photoLikePixels(333, 222, 9), { raw: { width: 333, height: 222, channels: 3 } });
    for (const jpg of [
      await raw.clone().jpeg({ progressive: true }).toBuffer(),
      await raw.clone().jpeg({ chromaSubsampling: '4:4:4' }).toBuffer(),
    ]) {
      const p = placement({ width: 333, height: 222 }, BASE);
      const out = await native.process(jpg, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 1e9);
      assert.ok(out);
      const s = await processImage(jpg, BASE, 'sharp');
      assert.ok(s.ok && (await psnr(out, s.image.data)) > 30);
    }
  });
});

describe('native JPEG path switch', () => {
  it('KILN_NATIVE_JPEG=0 leaves every image to sharp', () => {
    const url = new URL('../../infra/imaging/native-jpeg.js', import.meta.url).href;
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(url)}); console.log(JSON.stringify([m.nativeJpeg === undefined, m.nativeJpegStatus]))`,
      ],
      { env: { ...process.env, KILN_NATIVE_JPEG: '0' }, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [true, 'disabled by KILN_NATIVE_JPEG=0']);
  });
});
