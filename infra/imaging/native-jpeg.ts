/**
 * The optional native JPEG fast path (infra/imaging/native/kiln_jpeg.c on the system
 * libjpeg-turbo, built by scripts/setup.sh through native/build.sh): one call decodes a plain
 * YCbCr JPEG, resizes it and re-encodes it as JPEG on the libuv pool, at about a quarter of
 * sharp's CPU per image (sharp's per-call option marshalling and libvips pipeline setup dominate for small
 * images). It answers `undefined` for anything it does not handle exactly as sharp would (grey or
 * CMYK JPEGs, embedded ICC profiles, corrupt or truncated data), and image.ts then uses sharp.
 * Absent when the addon was not built, or when KILN_NATIVE_JPEG=0.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface NativeJpeg {
  /**
   * Decode `input`, resize it to rw x rh, place it at (ox, oy) on a black cw x ch canvas (negative
   * offsets crop) and encode JPEG at `quality` (baseline, 4:2:0). `undefined`: not handled here
   * (including images with more than `maxPixels` pixels, declined before decoding).
   */
  process(
    input: Buffer,
    rw: number,
    rh: number,
    cw: number,
    ch: number,
    ox: number,
    oy: number,
    quality: number,
    maxPixels: number,
  ): Promise<Buffer | undefined>;
  /**
   * Decode `input` to 8-bit RGB (width * height * 3 bytes) exactly as Pillow's
   * `Image.open().convert('RGB')` (YCbCr or grey JPEGs; ICC profiles ignored, as PIL does).
   * `undefined`: not handled here (other colour spaces, corrupt or truncated data, more than
   * `maxPixels` pixels); see decode_rgb.c. Used through infra/imaging/decode-rgb.ts.
   */
  decodeRgb(input: Buffer, maxPixels: number): Promise<{ data: Buffer; width: number; height: number } | undefined>;
  /**
   * Pillow's 8-bit resize of `input` (a JPEG decoded as decodeRgb does when `jpeg`, else raw RGB of
   * the plan's input size), restricted to an output box: `plan` comes from pil-resample.ts's
   * resamplePlan() (layout in native/pil_resample.c). `undefined`: the JPEG is declined as by
   * decodeRgb, or is not the plan's size. Used through decode-rgb.ts's decodeResizedRgb().
   */
  resizeRgb?(
    input: Buffer,
    jpeg: boolean,
    maxPixels: number,
    plan: Int32Array,
  ): Promise<{ data: Buffer; width: number; height: number } | undefined>;
  libjpegTurboVersion: number;
}

/** Where build.sh puts the addon (from dist/datasets/crawl/ or datasets/crawl/). */
export function nativeJpegPath(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const root = here.includes('/dist/') ? new URL('../../../', import.meta.url) : new URL('../../', import.meta.url);
  return fileURLToPath(new URL('infra/imaging/native/build/kiln_jpeg.node', root));
}

function load(): { addon?: NativeJpeg; why: string } {
  if (process.env.KILN_NATIVE_JPEG === '0') return { why: 'disabled by KILN_NATIVE_JPEG=0' };
  // KILN_NATIVE_JPEG_ADDON: another build of the same addon (the sanitizer build of native/sanitize.sh).
  const path = process.env.KILN_NATIVE_JPEG_ADDON || nativeJpegPath();
  if (!existsSync(path)) return { why: `not built (${path} is missing; run bash infra/imaging/native/build.sh)` };
  try {
    return { addon: createRequire(import.meta.url)(path) as NativeJpeg, why: 'loaded' };
  } catch (err) {
    return { why: `cannot load ${path}: ${(err as Error).message}` };
  }
}

const loaded = load();

/** The addon, or undefined (sharp does every image). */
export const nativeJpeg: NativeJpeg | undefined = loaded.addon;
/** Why the addon is or is not in use (for logs and the benchmark). */
export const nativeJpegStatus: string = loaded.why;

/**
 * The image codecs this worker crawls with, recorded with every crawl.shard run in lineage. With
 * `codec` = `sharp` (a shard whose earlier attempts died, see datasets/crawl/attempts.ts), sharp
 * does every image whether or not the addon is loaded, and `why` says so.
 */
export async function imageCodecEnvironment(
  codec: 'auto' | 'sharp' = 'auto',
  why?: string,
): Promise<{ imageCodec: string }> {
  const { default: sharp } = await import('sharp');
  const viaSharp = `sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips})`;
  if (codec === 'sharp')
    return { imageCodec: `${viaSharp} for every image (${why ?? 'native JPEG path off for this shard'})` };
  const v = nativeJpeg?.libjpegTurboVersion ?? 0;
  const turbo = `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`;
  return {
    imageCodec: nativeJpeg
      ? `libjpeg-turbo ${turbo} for JPEG->JPEG, ${viaSharp} otherwise`
      : `${viaSharp} (native JPEG path: ${nativeJpegStatus})`,
  };
}
