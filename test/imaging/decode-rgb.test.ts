/**
 * The shared RGB decode (infra/imaging/decode-rgb.ts) and its native JPEG path (native/decode_rgb.c):
 * Pillow's `Image.open().convert('RGB')` bytes exactly on the committed fixture (written by
 * scripts/fixtures/make_pil_jpeg_decode.py: 4:2:0, 4:2:2, 4:4:4, progressive, grey, ICC-tagged, odd
 * sizes), and every JPEG the native path must not handle (CMYK, truncated, over the pixel limit)
 * going through sharp. The native-only checks are skipped, saying why, when the addon is not built.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { inflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { decodeRgb, decodeRgbWithOptions } from '../../infra/imaging/decode-rgb.js';
import { nativeJpeg, nativeJpegStatus } from '../../infra/imaging/native-jpeg.js';

const DIR = fileURLToPath(new URL('../../../fixtures/imaging/pil-jpeg-decode/', import.meta.url));
interface Case {
  file: string;
  width: number;
  height: number;
  rgb_zlib: string;
}
const ref = JSON.parse(readFileSync(`${DIR}reference.json`, 'utf8')) as {
  pillow: string;
  libjpeg_turbo: string;
  cases: Case[];
};
const cases = ref.cases.map((c) => ({
  ...c,
  jpeg: readFileSync(`${DIR}${c.file}`),
  pil: inflateSync(Buffer.from(c.rgb_zlib, 'base64')),
}));
const byName = (file: string) => cases.find((c) => c.file === file)!;

/** Index of the first byte that differs (-1: identical), for a readable failure. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  return a.findIndex((v, i) => v !== b[i]);
}

/** sharp re-encodes a fixture's pixels as JPEG with these options. */
async function reencode(c: (typeof cases)[number], make: (s: Sharp) => Sharp): Promise<Buffer> {
  return make(sharp(c.pil, { raw: { width: c.width, height: c.height, channels: 3 } }))
    .jpeg({ quality: 90 })
    .toBuffer();
}

describe('decodeRgb (whichever path is in use)', () => {
  it(`gives Pillow ${ref.pillow}'s convert('RGB') bytes for every fixture JPEG`, async () => {
    assert.ok(cases.length >= 9);
    for (const c of cases) {
      const d = await decodeRgb(c.jpeg);
      assert.deepEqual([d.width, d.height, d.channels], [c.width, c.height, 3], c.file);
      assert.equal(firstDiff(d.data, c.pil), -1, `${c.file}: first differing byte`);
    }
  });

  it('still decodes with the native path disabled (KILN_NATIVE_JPEG=0: sharp for every image)', () => {
    const url = new URL('../../infra/imaging/decode-rgb.js', import.meta.url).href;
    const nativeUrl = new URL('../../infra/imaging/native-jpeg.js', import.meta.url).href;
    const file = `${DIR}${cases[0]!.file}`;
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(url)}); const n = await import(${JSON.stringify(nativeUrl)});
       const d = await m.decodeRgb((await import('node:fs')).readFileSync(${JSON.stringify(file)}));
       console.log(JSON.stringify([n.nativeJpeg === undefined, d.width, d.height, Buffer.from(d.data).toString('base64')]))`,
      ],
      { env: { ...process.env, KILN_NATIVE_JPEG: '0' }, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const [off, w, h, b64] = JSON.parse(r.stdout) as [boolean, number, number, string];
    assert.deepEqual([off, w, h], [true, cases[0]!.width, cases[0]!.height]);
    assert.equal(firstDiff(Buffer.from(b64, 'base64'), cases[0]!.pil), -1);
  });

  it("enforces maxPixels on every path, with sharp's error", async () => {
    const c = byName('420-wide.jpg');
    const limit = c.width * c.height;
    assert.equal((await decodeRgbWithOptions(c.jpeg, { maxPixels: limit })).width, c.width);
    for (const codec of ['auto', 'sharp'] as const) {
      await assert.rejects(decodeRgbWithOptions(c.jpeg, { maxPixels: limit - 1, codec }), /exceeds pixel limit/, codec);
    }
  });
});

const skip = nativeJpeg ? false : `native JPEG path not built: ${nativeJpegStatus}`;

describe('native JPEG decode', { skip }, () => {
  const native = nativeJpeg!;

  it("decodes every fixture itself (not declined), Pillow's bytes exactly", async () => {
    for (const c of cases) {
      const r = await native.decodeRgb(c.jpeg, 1e9);
      assert.ok(r, `${c.file}: declined`);
      assert.deepEqual([r.width, r.height], [c.width, c.height], c.file);
      assert.equal(firstDiff(r.data, c.pil), -1, `${c.file}: first differing byte`);
    }
  });

  it('runs concurrently on the libuv pool with the same results', async () => {
    const jobs = Array.from({ length: 48 }, (_, i) => cases[i % cases.length]!);
    const out = await Promise.all(jobs.map((c) => native.decodeRgb(c.jpeg, 1e9)));
    out.forEach((r, i) => assert.equal(firstDiff(r!.data, jobs[i]!.pil), -1, jobs[i]!.file));
  });

  it('ignores an embedded ICC profile as PIL does (sharp would convert to sRGB)', async () => {
    const c = byName('420-wide.jpg');
    const plain = await reencode(c, (s) => s);
    // sharp's P3 profile segment (APP2 ICC_PROFILE) spliced in after SOI: same coded pixels, now tagged.
    const donor = await reencode(c, (s) => s.withIccProfile('p3'));
    const app2 = donor.indexOf(Buffer.from('\xff\xe2', 'latin1'));
    assert.ok(app2 > 0 && donor.subarray(app2 + 4, app2 + 15).toString('latin1') === 'ICC_PROFILE');
    const p3 = Buffer.concat([
      plain.subarray(0, 2),
      donor.subarray(app2, app2 + 2 + donor.readUInt16BE(app2 + 2)),
      plain.subarray(2),
    ]);
    const [a, b] = [await decodeRgb(plain), await decodeRgb(p3)];
    assert.equal(firstDiff(b.data, a.data), -1, 'same pixels with and without the profile');
    const viaSharp = await decodeRgbWithOptions(p3, { codec: 'sharp' });
    assert.notEqual(firstDiff(viaSharp.data, a.data), -1, 'sharp colour-manages the P3 pixels');
  });

  it("declines CMYK and over-limit images; decodeRgb then gives sharp's result", async () => {
    const c = byName('420.jpg');
    const cmyk = await reencode(c, (s) => s.toColourspace('cmyk'));
    assert.equal(await native.decodeRgb(cmyk, 1e9), undefined, 'cmyk declined');
    const a = await decodeRgb(cmyk);
    const s = await decodeRgbWithOptions(cmyk, { codec: 'sharp' });
    assert.deepEqual([a.width, a.height], [c.width, c.height]);
    assert.equal(firstDiff(a.data, s.data), -1, "cmyk: sharp's bytes");
    // The limit is checked on the header (67x45), before decoding.
    assert.equal(await native.decodeRgb(c.jpeg, c.width * c.height - 1), undefined);
    assert.ok(await native.decodeRgb(c.jpeg, c.width * c.height));
  });

  it("declines truncated data (sharp's decision, as before) and rejects hard errors with libjpeg's message", async () => {
    const c = byName('420-wide.jpg');
    for (const cut of [c.jpeg.subarray(0, 40), c.jpeg.subarray(0, c.jpeg.length >> 1)]) {
      assert.equal(await native.decodeRgb(cut, 1e9), undefined, `${cut.length} bytes: declined`);
      // One at a time: libvips' error text is per thread, and concurrent failures can swap it.
      const a = await decodeRgb(cut).then(
        () => 'decoded',
        (e: Error) => e.message,
      );
      const s = await decodeRgbWithOptions(cut, { codec: 'sharp' }).then(
        () => 'decoded',
        (e: Error) => e.message,
      );
      assert.equal(a, s, `${cut.length} bytes: same outcome as sharp`);
    }
    const sof = c.jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    const twelveBit = Buffer.from(c.jpeg);
    twelveBit[sof + 4] = 12; // SOF0 sample precision
    await assert.rejects(native.decodeRgb(twelveBit, 1e9), /^Error: Unsupported JPEG data precision 12$/);
    await assert.rejects(decodeRgb(twelveBit), /precision 12/);
    assert.throws(() => native.decodeRgb('not bytes' as unknown as Buffer, 1e9), TypeError);
  });

  it("loads and decodes in worker threads (the filter's preprocessing pool)", async () => {
    const url = new URL('../../infra/imaging/decode-rgb.js', import.meta.url).href;
    const nj = new URL('../../infra/imaging/native-jpeg.js', import.meta.url).href;
    const c = byName('422.jpg');
    const w = new Worker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      (async () => {
        const [m, n] = await Promise.all([import(${JSON.stringify(url)}), import(${JSON.stringify(nj)})]);
        const d = await m.decodeRgb(workerData);
        parentPort.postMessage({ status: n.nativeJpegStatus, data: d.data });
      })().catch((e) => parentPort.postMessage({ status: String(e) }));`,
      { eval: true, workerData: c.jpeg },
    );
    try {
      const msg = await new Promise<{ status: string; data?: Uint8Array }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      assert.equal(msg.status, 'loaded');
      assert.equal(firstDiff(msg.data!, c.pil), -1);
    } finally {
      await w.terminate();
    }
  });
});
