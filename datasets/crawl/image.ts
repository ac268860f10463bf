/**
 * Decode, check and resize one downloaded image with sharp (libvips). Resize modes follow
 * img2dataset: `no`, `keep_ratio` (smaller side = imageSize), `keep_ratio_largest` (larger side =
 * imageSize), `center_crop` (smaller side = imageSize, then a centred imageSize x imageSize crop),
 * `border` (larger side = imageSize, padded to a black imageSize x imageSize square); with
 * `resizeOnlyIfBigger`, images not larger than imageSize keep their size. The pixel limit is checked on the header before any
 * decoding, and again by libvips (`limitInputPixels`).
 *
 * JPEG in, JPEG out (the common case) goes through the native libjpeg-turbo path when it is built
 * (native-jpeg.ts): same geometry, about a quarter of sharp's CPU per image. Whatever it declines,
 * and every other format, goes through sharp.
 */
import sharp from 'sharp';
import type { CrawlOptions } from './options.js';
import type { RowFailure } from './failures.js';
import { describeBytes, sniffImageFormat } from './magic.js';
import { headerDimensions, type Dimensions } from './dims.js';
import { nativeJpeg } from '../../infra/imaging/native-jpeg.js';

export type ImageOptions = Pick<
  CrawlOptions,
  | 'imageSize'
  | 'resizeMode'
  | 'resizeOnlyIfBigger'
  | 'minImageSize'
  | 'maxAspectRatio'
  | 'maxPixels'
  | 'encodeFormat'
  | 'encodeQuality'
  | 'skipReencode'
>;

export interface ProcessedImage {
  /** The stored bytes (re-encoded, or the original when re-encoding was skipped). */
  data: Buffer;
  width: number;
  height: number;
  originalWidth: number;
  originalHeight: number;
}

export type ImageOutcome =
  | { ok: true; image: ProcessedImage }
  | { ok: false; failure: RowFailure; originalWidth?: number; originalHeight?: number };

// One libvips thread per image: the crawler runs several images at once instead. No libvips
// operation cache: every image is different, and the cache would only hold memory.
sharp.concurrency(1);
sharp.cache(false);

/** The resize options that decide geometry (resizeOnlyIfBigger defaults to false). */
export type GeometryOptions = Pick<ImageOptions, 'imageSize' | 'resizeMode'> &
  Partial<Pick<ImageOptions, 'resizeOnlyIfBigger'>>;

/** Output size for an input size, or undefined when the image needs no resizing. */
export function targetSize(d: Dimensions, o: GeometryOptions): Dimensions | undefined {
  const s = o.imageSize;
  const short = Math.min(d.width, d.height);
  const long = Math.max(d.width, d.height);
  switch (o.resizeMode) {
    case 'no':
      return undefined;
    case 'keep_ratio': {
      if (short === s || (o.resizeOnlyIfBigger && short <= s)) return undefined;
      const scale = s / short;
      return { width: Math.max(1, Math.round(d.width * scale)), height: Math.max(1, Math.round(d.height * scale)) };
    }
    case 'keep_ratio_largest':
      if (long === s || (o.resizeOnlyIfBigger && long <= s)) return undefined;
      return borderInnerSize(d, s);
    case 'center_crop':
      if (o.resizeOnlyIfBigger && short <= s) return undefined;
      return d.width === s && d.height === s ? undefined : { width: s, height: s };
    case 'border':
      if (o.resizeOnlyIfBigger && long <= s) return undefined;
      return d.width === s && d.height === s ? undefined : { width: s, height: s };
  }
}

/** The image's size inside the `size` square in border mode (larger side = size). */
export function borderInnerSize(d: Dimensions, size: number): Dimensions {
  const scale = size / Math.max(d.width, d.height);
  return {
    width: Math.min(size, Math.max(1, Math.round(d.width * scale))),
    height: Math.min(size, Math.max(1, Math.round(d.height * scale))),
  };
}

/** Where the resized image lands: resize to rw x rh, then place at (ox, oy) on a cw x ch canvas. */
export interface Placement {
  rw: number;
  rh: number;
  cw: number;
  ch: number;
  ox: number;
  oy: number;
}

/** The geometry of each resize mode as resize + place (the native path; sharp's pipeline matches it). */
export function placement(d: Dimensions, o: GeometryOptions): Placement {
  const target = targetSize(d, o);
  const s = o.imageSize;
  if (!target) return { rw: d.width, rh: d.height, cw: d.width, ch: d.height, ox: 0, oy: 0 };
  switch (o.resizeMode) {
    case 'center_crop': {
      const scale = Math.max(s / d.width, s / d.height);
      const rw = Math.max(s, Math.round(d.width * scale));
      const rh = Math.max(s, Math.round(d.height * scale));
      return { rw, rh, cw: s, ch: s, ox: -Math.floor((rw - s + 1) / 2), oy: -Math.floor((rh - s + 1) / 2) };
    }
    case 'border': {
      const inner = borderInnerSize(d, s);
      return {
        rw: inner.width,
        rh: inner.height,
        cw: s,
        ch: s,
        ox: Math.floor((s - inner.width) / 2),
        oy: Math.floor((s - inner.height) / 2),
      };
    }
    default:
      return { rw: target.width, rh: target.height, cw: target.width, ch: target.height, ox: 0, oy: 0 };
  }
}

/** Which decoder/encoder may handle an image: `auto` (native JPEG path when built, else sharp) or `sharp` only. */
export type ImageCodec = 'auto' | 'sharp';

const failure = (reason: RowFailure['reason'], detail: string, d?: Dimensions): ImageOutcome => ({
  ok: false,
  failure: { reason, detail },
  originalWidth: d?.width,
  originalHeight: d?.height,
});

/** Validate and resize `bytes` according to `o`. Never throws for bad images: returns a failure. */
export async function processImage(bytes: Buffer, o: ImageOptions, codec: ImageCodec = 'auto'): Promise<ImageOutcome> {
  const format = sniffImageFormat(bytes);
  if (!format) return failure('not_an_image', `content starts with ${describeBytes(bytes)}`);
  const input = { limitInputPixels: o.maxPixels, failOn: 'error' as const, sequentialRead: true };
  let dims = headerDimensions(bytes, format);
  let hasAlpha: boolean | undefined = format === 'jpeg' ? false : undefined;
  if (!dims) {
    try {
      const meta = await sharp(bytes, { ...input, limitInputPixels: false }).metadata();
      if (!meta.width || !meta.height) return failure('decode_error', `${format} without dimensions`);
      dims = { width: meta.width, height: meta.pageHeight ?? meta.height };
      hasAlpha = meta.hasAlpha;
    } catch (err) {
      return failure('decode_error', `${format}: ${(err as Error).message}`);
    }
  }
  if (dims.width * dims.height > o.maxPixels) {
    return failure('pixel_limit', `${dims.width}x${dims.height} exceeds the ${o.maxPixels} pixel limit`, dims);
  }
  const short = Math.min(dims.width, dims.height);
  if (o.minImageSize > 0 && short < o.minImageSize)
    return failure('image_too_small', `${dims.width}x${dims.height} is below ${o.minImageSize} px`, dims);
  if (o.maxAspectRatio > 0 && Math.max(dims.width, dims.height) / short > o.maxAspectRatio) {
    return failure(
      'aspect_ratio_too_large',
      `${dims.width}x${dims.height} exceeds aspect ratio ${o.maxAspectRatio}`,
      dims,
    );
  }
  const target = targetSize(dims, o);
  if (!target && o.skipReencode) {
    return {
      ok: true,
      image: {
        data: bytes,
        width: dims.width,
        height: dims.height,
        originalWidth: dims.width,
        originalHeight: dims.height,
      },
    };
  }
  if (codec === 'auto' && nativeJpeg && format === 'jpeg' && o.encodeFormat === 'jpeg') {
    const p = placement(dims, o);
    let data: Buffer | undefined;
    try {
      data = await nativeJpeg.process(bytes, p.rw, p.rh, p.cw, p.ch, p.ox, p.oy, o.encodeQuality, o.maxPixels);
    } catch (err) {
      // A progressive JPEG with more scans than any encoder writes costs minutes of CPU in any decoder:
      // the row fails here instead of being handed to sharp.
      const msg = (err as Error).message;
      if (/decompression bomb/.test(msg)) return failure('decode_error', `jpeg: ${msg}`, dims);
      data = undefined; // a hard libjpeg error, or sizes beyond its range: sharp decides (and words any decode_error)
    }
    if (data)
      return {
        ok: true,
        image: { data, width: p.cw, height: p.ch, originalWidth: dims.width, originalHeight: dims.height },
      };
  }
  try {
    let img = sharp(bytes, input);
    if (hasAlpha !== false && o.encodeFormat === 'jpeg') img = img.flatten({ background: '#ffffff' });
    if (target) {
      const s = o.imageSize;
      if (o.resizeMode === 'keep_ratio' || o.resizeMode === 'keep_ratio_largest')
        img = img.resize(target.width, target.height, { fit: 'fill' });
      else if (o.resizeMode === 'center_crop') img = img.resize(s, s, { fit: 'cover', position: 'centre' });
      else {
        // resize + extend with an opaque RGB background: same result as fit 'contain', but
        // libvips then needs no alpha band for the bars (measurably cheaper per image).
        const inner = borderInnerSize(dims, s);
        img = img.resize(inner.width, inner.height, { fit: 'fill' });
        const left = Math.floor((s - inner.width) / 2);
        const top = Math.floor((s - inner.height) / 2);
        if (left > 0 || top > 0 || inner.width < s || inner.height < s) {
          img = img.extend({
            top,
            bottom: s - inner.height - top,
            left,
            right: s - inner.width - left,
            background: { r: 0, g: 0, b: 0 },
          });
        }
      }
    }
    // No Huffman optimisation pass: it costs about as much CPU as the rest of the encode for a
    // few % of bytes (OpenCV, hence img2dataset, does not optimise either).
    img =
      o.encodeFormat === 'jpeg'
        ? img.jpeg({ quality: o.encodeQuality, optimiseCoding: false })
        : img.webp({ quality: o.encodeQuality });
    const { data, info } = await img.toBuffer({ resolveWithObject: true });
    return {
      ok: true,
      image: { data, width: info.width, height: info.height, originalWidth: dims.width, originalHeight: dims.height },
    };
  } catch (err) {
    const msg = (err as Error).message;
    if (/pixel limit/i.test(msg)) return failure('pixel_limit', msg, dims);
    return failure('decode_error', `${format}: ${msg}`, dims);
  }
}
