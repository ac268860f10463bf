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
 *
 * decodeResizedRgb() adds Pillow's resize (pil-resample.ts): for a plain JPEG the addon decodes and
 * resizes in one call on the libuv pool (native/pil_resample.c, the coefficients computed in JS), so
 * the JS thread does neither; otherwise decodeRgb() then pilResize(). Same bytes either way.
 */
import sharp from 'sharp';
import { nativeJpeg } from './native-jpeg.js';
import { pilResize, resamplePlan, type OutputBox, type PilResample, type RawImage8 } from './pil-resample.js';

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
    if (r)
      return {
        data: new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength),
        width: r.width,
        height: r.height,
        channels: 3,
      };
  }
  const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels })
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded image has ${info.channels} channels, expected 3`);
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
    channels: 3,
  };
}

/** A Pillow resize for a decoded image: `pilResize(img, width, height, resample, box)`. */
export interface RgbResize {
  width: number;
  height: number;
  resample: PilResample;
  box?: OutputBox;
}

/**
 * The frame size in a JPEG's SOF header (what libjpeg decodes to without scaling), read before
 * decoding so the resize can be planned; undefined when there is no usable SOF before the scan.
 */
export function jpegFrameSize(b: Uint8Array): { width: number; height: number } | undefined {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return undefined;
    const marker = b[i + 1] as number;
    if (marker === 0xff) {
      i++;
      continue;
    } // fill byte
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    } // no length field
    if (marker === 0xda || marker === 0xd9) return undefined; // scan or end before any frame header
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      const height = ((b[i + 5] as number) << 8) | (b[i + 6] as number);
      const width = ((b[i + 7] as number) << 8) | (b[i + 8] as number);
      return width > 0 && height > 0 ? { width, height } : undefined; // height 0: set later by a DNL marker
    }
    i += 2 + (((b[i + 2] as number) << 8) | (b[i + 3] as number));
  }
  return undefined;
}

/**
 * Decode like decodeRgbWithOptions(), then resize with `plan(width, height)` for the decoded size
 * (undefined: no resize). Returns the image and the resize applied. Plain JPEGs are decoded and
 * resized in one native call (the header's size plans the resize first); every other image, and a
 * JPEG the addon declines, goes through decodeRgb() and pilResize(): the same bytes.
 */
export async function decodeResizedRgb(
  bytes: Uint8Array,
  plan: (width: number, height: number) => RgbResize | undefined,
  opts: DecodeRgbOptions = {},
): Promise<{ image: RawImage8; resize: RgbResize | undefined }> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const size = opts.codec !== 'sharp' && nativeJpeg?.resizeRgb && isJpeg(bytes) ? jpegFrameSize(bytes) : undefined;
  const early = size && plan(size.width, size.height);
  if (size && early && nativeJpeg?.resizeRgb) {
    const steps = resamplePlan(size.width, size.height, early.width, early.height, early.resample, early.box);
    const r = await nativeJpeg.resizeRgb(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      true,
      maxPixels,
      steps,
    );
    if (r)
      return {
        image: {
          data: new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength),
          width: r.width,
          height: r.height,
          channels: 3,
        },
        resize: early,
      };
  }
  const img = await decodeRgbWithOptions(bytes, opts);
  const resize = plan(img.width, img.height);
  return { image: resize ? pilResize(img, resize.width, resize.height, resize.resample, resize.box) : img, resize };
}
