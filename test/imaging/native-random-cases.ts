/**
 * The randomized differential check of the native addon's three entry points (issue 13), run by
 * infra/imaging/native/sanitize.sh against the AddressSanitizer + UBSan build of the addon (loaded
 * through KILN_NATIVE_JPEG_ADDON). Not a test file itself: test/imaging/native-sanitized.test.ts runs
 * its short form, `npm run test:native-asan` the full one.
 *
 * Each case makes a JPEG with tools/make_jpeg (source 1x1 to 4000x3000, primes and odd sizes
 * included; 4:4:4, 4:2:2, 4:2:0, 4:4:0 or grey; progressive or baseline; with or without restart
 * markers; quality 30-100) and runs:
 *   - process() in one of the five resize modes, with or without resize_only_if_bigger, at a random
 *     image size: declined exactly for grey JPEGs (sharp's job), else a JPEG of the planned canvas
 *     size within a PSNR floor of sharp's result for the same options (the crawler's fallback);
 *   - decodeRgb(): byte for byte sharp's decode (both are libjpeg-turbo at its defaults, Pillow's
 *     bytes: the promise decode_rgb.c makes);
 *   - resizeRgb(): byte for byte pilResize() (the JS port, exact with Pillow) of sharp's decode, for a
 *     random Pillow filter, size and output box, from the JPEG and from raw pixels.
 * Prints one line per failure and a summary; exits 1 on any failure (a sanitizer report aborts the
 * process before that, which sanitize.sh reports).
 *
 * Usage: node dist/test/imaging/native-random-cases.js --cases N [--seed S] --make-jpeg PATH
 */
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { nativeJpeg, nativeJpegStatus } from '../../infra/imaging/native-jpeg.js';
import { placement, targetSize, type GeometryOptions } from '../../datasets/crawl/image.js';
import { processImage, type ImageOptions } from '../../datasets/crawl/image.js';
import { pilResize, resamplePlan, PIL_RESAMPLE, type PilResample } from '../../infra/imaging/pil-resample.js';
import { rng } from '../crawl/images.js';

interface Args {
  cases: number;
  seed: number;
  makeJpeg: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const makeJpeg = get('--make-jpeg');
  if (!makeJpeg) throw new Error('--make-jpeg PATH is required (sanitize.sh builds tools/make_jpeg.c)');
  return { cases: Number(get('--cases') ?? 300), seed: Number(get('--seed') ?? 1), makeJpeg };
}

const LAYOUTS = [
  { name: '4:4:4', comps: 3, h: 1, v: 1 },
  { name: '4:2:2', comps: 3, h: 2, v: 1 },
  { name: '4:2:0', comps: 3, h: 2, v: 2 },
  { name: '4:4:0', comps: 3, h: 1, v: 2 },
  { name: 'grey', comps: 1, h: 1, v: 1 },
] as const;
const MODES: GeometryOptions['resizeMode'][] = ['no', 'keep_ratio', 'keep_ratio_largest', 'center_crop', 'border'];
const PRIMES = [1, 2, 3, 5, 7, 11, 13, 17, 31, 61, 127, 251, 509, 1021, 2039, 3001];
const FILTERS = Object.values(PIL_RESAMPLE) as PilResample[];

/**
 * Root cause 1 of issue 13, run first: ordinary 4:2:0 JPEGs (q85) whose border / centre-crop
 * placement has an odd offset or an odd resized size, so the chroma plane gets one output sample
 * more than its scale maps; its resampler window started past the plane and its weights were
 * written past their row (heap overflow, `malloc(): invalid next size`). The sizes are the issue's.
 */
const REGRESSIONS: { size: [number, number]; geo: GeometryOptions }[] = [
  [809, 886],
  [930, 821],
  [586, 885],
  [896, 685],
  [873, 617],
  [399, 480],
].flatMap(([w, h]) =>
  [128, 224, 256].flatMap((imageSize) =>
    (['border', 'center_crop'] as const).map((resizeMode) => ({
      size: [w!, h!] as [number, number],
      geo: { imageSize, resizeMode },
    })),
  ),
);

/** Photo-like pixels (smooth gradients and waves, mild noise), fast enough for 12 MP. */
function pixels(w: number, h: number, comps: number, r: () => number): Buffer {
  const buf = Buffer.allocUnsafe(w * h * comps);
  const base = [r() * 200, r() * 200, r() * 200],
    fx = 2 + r() * 10,
    fy = 2 + r() * 10;
  const col = new Float64Array(w);
  for (let x = 0; x < w; x++) col[x] = 50 * Math.sin((x / w) * fx);
  let o = 0;
  for (let y = 0; y < h; y++) {
    const row = 40 * Math.cos((y / h) * fy);
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < comps; c++) {
        const v = base[c]! + col[x]! * (c === 1 ? -1 : 1) + row + ((o * 2654435761) >>> 28); // + 0..15 of sensor-like noise
        buf[o++] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return buf;
}

function pickSize(r: () => number): [number, number] {
  const u = r();
  const dim = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const prime = () => PRIMES[Math.floor(r() * PRIMES.length)]!;
  if (u < 0.15) return [dim(1, 40), dim(1, 40)];
  if (u < 0.3) return [prime(), prime()].map((p) => Math.min(p, 3001)) as [number, number];
  if (u < 0.95) return [dim(40, 1300), dim(30, 1100)];
  return [dim(1000, 4000), dim(750, 3000)];
}

async function psnr(a: Buffer, b: Buffer): Promise<number> {
  const [x, y] = await Promise.all([
    sharp(a).raw().toBuffer({ resolveWithObject: true }),
    sharp(b).raw().toBuffer({ resolveWithObject: true }),
  ]);
  if (x.info.width !== y.info.width || x.info.height !== y.info.height || x.info.channels !== y.info.channels)
    return -1;
  let se = 0;
  for (let i = 0; i < x.data.length; i++) se += (x.data[i]! - y.data[i]!) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / x.data.length));
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const addon = nativeJpeg;
  if (!addon?.resizeRgb) throw new Error(`the native addon is not loaded: ${nativeJpegStatus}`);
  console.log(
    `addon: ${process.env.KILN_NATIVE_JPEG_ADDON ?? '(default build)'}; ${args.cases} cases from seed ${args.seed}`,
  );
  const r = rng(args.seed);
  const failures: string[] = [];
  const psnrs: number[] = [];
  const fail = (f: string) => {
    failures.push(f);
    console.log(`FAIL ${f}`);
  };
  const stats = {
    processed: 0,
    declined: 0,
    outOfRange: 0,
    overBudget: 0,
    minPsnr: Infinity,
    decodeExact: 0,
    resizeExact: 0,
    rawResizeExact: 0,
    largest: '',
  };
  let largestPx = 0;
  const started = Date.now();
  const total = REGRESSIONS.length + args.cases;
  for (let i = 0; i < total; i++) {
    const regression = REGRESSIONS[i];
    const [w, h] = regression ? regression.size : pickSize(r);
    const layout = regression ? LAYOUTS[2] : LAYOUTS[Math.floor(r() * LAYOUTS.length)]!;
    const quality = regression ? 85 : 30 + Math.floor(r() * 71);
    const progressive = !regression && r() < 0.3 ? 1 : 0;
    const restart = !regression && r() < 0.3 ? 1 + Math.floor(r() * 4) : 0;
    const src = pixels(w, h, layout.comps, r);
    const made = spawnSync(
      args.makeJpeg,
      [w, h, layout.comps, layout.h, layout.v, quality, progressive, restart].map(String),
      { input: src, maxBuffer: 1 << 28 },
    );
    if (made.status !== 0) throw new Error(`make_jpeg failed for ${w}x${h}: ${made.stderr.toString()}`);
    const jpg = made.stdout;
    const tag =
      `${regression ? 'regression' : 'case'} ${i}: ${w}x${h} ${layout.name} ` +
      `q${quality}${progressive ? ' progressive' : ''}${restart ? ` restart ${restart}` : ''}`;
    if (w * h > largestPx) {
      largestPx = w * h;
      stats.largest = `${w}x${h}`;
    }

    // process(): the crawler's geometry for a random mode and size.
    const geo: GeometryOptions = regression
      ? regression.geo
      : {
          imageSize: 8 + Math.floor(r() * 505),
          resizeMode: MODES[Math.floor(r() * MODES.length)]!,
          resizeOnlyIfBigger: r() < 0.3,
        };
    const p = placement({ width: w, height: h }, geo);
    let out: Buffer | undefined;
    const inRange = [p.rw, p.rh, p.cw, p.ch].every((v) => v <= 65535);
    try {
      out = await addon.process(jpg, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, 95, 50_000_000);
      if (!inRange) fail(`${tag}: process() accepted a size beyond 65535 (${p.rw}x${p.rh} on ${p.cw}x${p.ch})`);
    } catch (err) {
      // Geometry beyond JPEG's 65535 limit (keep_ratio of a 3001x1 image): a RangeError, and the
      // crawler then asks sharp (which fails it as a decode_error). Anything else is a failure.
      if (inRange || !(err instanceof RangeError)) fail(`${tag}: process() threw ${(err as Error).message}`);
      else stats.outOfRange++;
      continue;
    }
    if (layout.comps === 1) {
      if (out) fail(`${tag}: process() handled a grey JPEG (it must decline: sharp's job)`);
      else stats.declined++;
    } else if (!out) {
      // Declining is right when the decoded image + canvas pass the 64 MiB budget (sharp streams those).
      if ((w * h + p.cw * p.ch) * 3 > 64 * 1024 * 1024) stats.overBudget++;
      else fail(`${tag}: process() declined a plain YCbCr JPEG (${geo.resizeMode} ${geo.imageSize})`);
    } else {
      stats.processed++;
      const opts: ImageOptions = {
        ...geo,
        resizeOnlyIfBigger: geo.resizeOnlyIfBigger ?? false,
        minImageSize: 0,
        maxAspectRatio: 0,
        maxPixels: 50_000_000,
        encodeFormat: 'jpeg',
        encodeQuality: 95,
        skipReencode: false,
      };
      const ref = await processImage(jpg, opts, 'sharp');
      if (!ref.ok) fail(`${tag}: sharp failed on it: ${ref.failure.detail}`);
      else {
        const db = await psnr(out, ref.image.data);
        // The native path resamples with OpenCV's INTER_AREA (img2dataset's filter), sharp with
        // Lanczos 3: on blocky low-quality sources shrunk 10x and more they differ by 24-26 dB
        // (median 46.5 dB, 1st percentile 29.1 over 4,021 cases); a misplaced,
        // shifted or garbage image is far below (< 15 dB). Enlarging a few chroma samples ~100x
        // reconstructs colour differently again (see native-jpeg.test.ts).
        // Outputs under 32 px on a side (a 1-px-wide keep_ratio of a 3x2039 image, an 8 px centre
        // crop) are a few samples of steep gradients: a fraction of a pixel of phase between the two
        // resamplers (libvips shrinks on load first) moves them by 10+ levels, so 18 dB there. Sources
        // under 8 px a side get 15 dB: there sharp itself is far from the area mean (a 3x251 image
        // to 1x18: sharp's red 116 where the three columns average 140; Kiln 136-147 by layout).
        const target = targetSize({ width: w, height: h }, geo);
        const enlarged = target ? Math.max(target.width / w, target.height / h) : 1;
        const floor = Math.min(w, h) < 8 ? 15 : Math.min(p.cw, p.ch) < 32 || enlarged > 16 ? 18 : 24;
        if (db < floor)
          fail(
            `${tag}: process() ${geo.resizeMode} ` +
              `${geo.imageSize}${geo.resizeOnlyIfBigger ? ' only-if-bigger' : ''}: ` +
              `${db.toFixed(1)} dB from sharp (floor ${floor})`,
          );
        if (Number.isFinite(db)) stats.minPsnr = Math.min(stats.minPsnr, db);
        psnrs.push(Number.isFinite(db) ? db : 99);
      }
    }

    // decodeRgb(): sharp's (= Pillow's) bytes.
    const dec = await addon.decodeRgb(jpg, 50_000_000);
    const ref = await sharp(jpg).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    const refRgb = ref.info.channels === 3 ? ref.data : expandGrey(ref.data);
    if (!dec) fail(`${tag}: decodeRgb() declined a plain JPEG`);
    else if (dec.width !== w || dec.height !== h || firstDiff(dec.data, refRgb) !== -1) {
      fail(
        `${tag}: decodeRgb() differs from sharp at byte ${firstDiff(dec.data, refRgb)} (${dec.width}x${dec.height})`,
      );
    } else stats.decodeExact++;

    // resizeRgb(): pilResize of the decode, from the JPEG and from raw pixels.
    const ow = 1 + Math.floor(r() * Math.min(400, 2 * w + 8)),
      oh = 1 + Math.floor(r() * Math.min(400, 2 * h + 8));
    const bw = 1 + Math.floor(r() * ow),
      bh = 1 + Math.floor(r() * oh);
    const box =
      r() < 0.5
        ? undefined
        : { left: Math.floor(r() * (ow - bw + 1)), top: Math.floor(r() * (oh - bh + 1)), width: bw, height: bh };
    const filter = FILTERS[Math.floor(r() * FILTERS.length)]!;
    const img = { data: refRgb, width: w, height: h, channels: 3 };
    const want = pilResize(img, ow, oh, filter, box);
    const plan = resamplePlan(w, h, ow, oh, filter, box);
    for (const [jpeg, input] of [
      [true, jpg],
      [false, refRgb],
    ] as const) {
      const got = await addon.resizeRgb(input, jpeg, 50_000_000, plan);
      const what =
        `${tag}: resizeRgb(${jpeg ? 'jpeg' : 'raw'}) to ${ow}x${oh} filter ` +
        `${filter}${box ? ` box ${box.left},${box.top} ${box.width}x${box.height}` : ''}`;
      if (!got) fail(`${what}: declined`);
      else if (got.width !== want.width || got.height !== want.height || firstDiff(got.data, want.data) !== -1) {
        fail(`${what}: differs from pilResize at byte ${firstDiff(got.data, want.data)}`);
      } else if (jpeg) stats.resizeExact++;
      else stats.rawResizeExact++;
    }
    if ((i + 1) % 250 === 0)
      console.log(
        `  ${i + 1} of ${total} cases, ${failures.length} failures, ${((Date.now() - started) / 1000).toFixed(0)} s`,
      );
  }
  console.log(
    `native random cases: ${REGRESSIONS.length} regression + ${args.cases} random cases (largest ` +
      `${stats.largest}): process ${stats.processed} compared (PSNR min ${stats.minPsnr.toFixed(1)} / 1st ` +
      `percentile ${pct(psnrs, 0.01)} / median ${pct(psnrs, 0.5)} dB) ` +
      `+ ${stats.declined} grey declined + ${stats.outOfRange} over 65535 px refused + ` +
      `${stats.overBudget} over the 64 MiB budget declined; ` +
      `decodeRgb exact ${stats.decodeExact}; resizeRgb exact ${stats.resizeExact} jpeg + ` +
      `${stats.rawResizeExact} raw; ${failures.length} failures; ` +
      `${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
  process.exitCode = failures.length ? 1 : 0;
}

/** The q-quantile of xs, to one decimal. */
function pct(xs: number[], q: number): string {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(1) : '-';
}

/** Grey decodes (1 band) as RGB, as PIL's convert('RGB') and decodeRgb give them. */
function expandGrey(g: Buffer): Buffer {
  const out = Buffer.allocUnsafe(g.length * 3);
  for (let i = 0; i < g.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = g[i]!;
  return out;
}

await main();
