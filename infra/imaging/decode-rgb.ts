/**
 * Kiln's one image decode to 8-bit RGB, as PIL's `Image.open(...).convert('RGB')` (what the
 * reference pipelines decode with: transformers' image processors for the filter models, clean-fid
 * for eval). Alpha is dropped (not composited), grey is replicated to three channels.
 *
 * JPEGs (magic bytes FF D8 FF) go to the native addon's `decodeRgb` (native/decode_rgb.c, on the
 * system libjpeg-turbo): Pillow's exact bytes at about PIL's own CPU cost (~0.4-0.55 ms for a
 * 256x192 JPEG, sharp ~1.2-2 ms: its per-call pipeline setup dominates for small images). It ignores embedded ICC profiles, as PIL does.
 * Everything else, and every JPEG the addon declines (CMYK/YCCK, corrupt or truncated data, over
 * `maxPixels`) or when the addon is absent (KILN_NATIVE_JPEG=0, not built), goes through sharp,
 * which converts to sRGB (including from an embedded ICC profile).
 */
import sharp from 'sharp';
import { nativeJpeg } from './native-jpeg.js';
import type { RawImage8 } from './pil-resample.js';

/** sharp's own default input limit (0x3FFF * 0x3FFF pixels), kept as Kiln's default. */
export const DEFAULT_MAX_PIXELS = 0x3fff * 0x3fff;

export interface DecodeRgbOptions {
  /** Images with more pixels fail (sharp: "Input image exceeds pixel limit"). Default DEFAULT_MAX_PIXELS. */
  maxPixels?: number;
  /** 'sharp' skips the native JPEG path (tests and comparisons). Default 'auto'. */
  codec?: 'auto' | 'sharp';
}

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

/**
 * Decode encoded image bytes (JPEG, PNG, WebP, ...) to 8-bit RGB. Throws on undecodable bytes
 * (libjpeg's message for a JPEG the native path cannot read, else sharp's).
 */
export function decodeRgb(bytes: Uint8Array): Promise<RawImage8> {
  return decodeRgbWithOptions(bytes, {});
}

/** decodeRgb() with a pixel limit or the codec forced (one argument above, so `images.map(decodeRgb)` works). */
export async function decodeRgbWithOptions(bytes: Uint8Array, opts: DecodeRgbOptions): Promise<RawImage8> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (opts.codec !== 'sharp' && nativeJpeg?.decodeRgb && isJpeg(bytes)) {
    const r = await nativeJpeg.decodeRgb(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), maxPixels);
    if (r) return { data: new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength), width: r.width, height: r.height, channels: 3 };
  }
  const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels })
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded image has ${info.channels} channels, expected 3`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: 3 };
}
