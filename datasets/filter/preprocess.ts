/**
 * Image preprocessing for the filter models, reproducing transformers' (Python) image processors as
 * configured by a model's preprocessor_config.json: decode to RGB as PIL does (infra/imaging/decode-rgb.ts:
 * native libjpeg-turbo for JPEGs, sharp otherwise), resize with Pillow's resampling (shortest-edge or
 * fixed size), centre crop, rescale, normalise, NCHW float32. Plain JPEGs are decoded, resized and
 * cropped in one native call on the libuv pool (decodeToSize: the same bytes as the JS resize), so the
 * JS thread only normalises them.
 *
 * Supported processor types: CLIPImageProcessor, ViTImageProcessor, BlipImageProcessor and others
 * made of the same steps (size as {shortest_edge} or {height, width}).
 */
import { ConfigError } from '../../infra/errors.js';
import { decodeResizedRgb, decodeRgb, type RgbResize } from '../../infra/imaging/decode-rgb.js';
import { PIL_RESAMPLE, pilResize, type PilResample, type RawImage8 } from '../../infra/imaging/pil-resample.js';

/** The preprocessor_config.json fields Kiln uses (names as transformers writes them). */
export interface ImageProcessorConfig {
  image_processor_type?: string;
  do_resize?: boolean;
  size?: { shortest_edge?: number; height?: number; width?: number } | number;
  resample?: number;
  do_center_crop?: boolean;
  crop_size?: { height: number; width: number } | number;
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  image_mean?: number[] | number;
  image_std?: number[] | number;
}

/** A batch of preprocessed images: `data` is NCHW float32, `dims` = [n, 3, height, width]. */
export interface PixelBatch {
  data: Float32Array;
  dims: [number, number, number, number];
}

/** Decode encoded image bytes to 8-bit RGB as PIL's convert('RGB') (the shared decoder; re-exported for the filter's API). */
export { decodeRgb };

function triple(v: number[] | number | undefined, fallback: number): [number, number, number] {
  if (v === undefined) return [fallback, fallback, fallback];
  if (typeof v === 'number') return [v, v, v];
  return [v[0] ?? fallback, v[1] ?? fallback, v[2] ?? fallback];
}

/** transformers' get_resize_output_image_size(default_to_square=False) for a shortest-edge size. */
export function shortestEdgeSize(width: number, height: number, shortest: number): { width: number; height: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  if (short === shortest) return { width, height };
  const newLong = Math.trunc((shortest * long) / short);
  return width <= height ? { width: shortest, height: newLong } : { width: newLong, height: shortest };
}

/** transformers' center_crop, zero-padding when the image is smaller than the crop. */
export function centerCrop(img: RawImage8, cropW: number, cropH: number): RawImage8 {
  const { width: w, height: h, channels: c } = img;
  let top = Math.floor((h - cropH) / 2);
  let left = Math.floor((w - cropW) / 2);
  let src = img;
  if (top < 0 || left < 0 || top + cropH > h || left + cropW > w) {
    const nh = Math.max(cropH, h);
    const nw = Math.max(cropW, w);
    const topPad = Math.ceil((nh - h) / 2);
    const leftPad = Math.ceil((nw - w) / 2);
    const padded = new Uint8Array(nw * nh * c);
    for (let y = 0; y < h; y++)
      padded.set(img.data.subarray(y * w * c, (y + 1) * w * c), ((y + topPad) * nw + leftPad) * c);
    src = { data: padded, width: nw, height: nh, channels: c };
    top += topPad;
    left += leftPad;
  }
  if (top === 0 && left === 0 && cropW === src.width && cropH === src.height) return src;
  const out = new Uint8Array(cropW * cropH * c);
  for (let y = 0; y < cropH; y++) {
    const start = ((y + top) * src.width + left) * c;
    out.set(src.data.subarray(start, start + cropW * c), y * cropW * c);
  }
  return { data: out, width: cropW, height: cropH, channels: c };
}

/** The centre-crop box of transformers' center_crop when it lies inside the image (no padding), else undefined. */
function innerCropBox(
  w: number,
  h: number,
  cropW: number,
  cropH: number,
): { left: number; top: number; width: number; height: number } | undefined {
  const top = Math.floor((h - cropH) / 2);
  const left = Math.floor((w - cropW) / 2);
  if (top < 0 || left < 0 || top + cropH > h || left + cropW > w) return undefined;
  return { left, top, width: cropW, height: cropH };
}

/** A compiled image processor: turns decoded RGB images into the model's pixel tensor. */
export class ImagePreprocessor {
  readonly outWidth: number;
  readonly outHeight: number;
  private readonly resample: PilResample;
  private readonly mean: [number, number, number];
  private readonly std: [number, number, number];
  private readonly scale: number;
  /** Per channel, the normalised float32 value of each 8-bit level (exactly what writeTensor computed per pixel). */
  private readonly lut: Float32Array;

  constructor(
    readonly config: ImageProcessorConfig,
    source = 'preprocessor_config.json',
  ) {
    const resample = config.resample ?? PIL_RESAMPLE.bicubic;
    if (!Object.values(PIL_RESAMPLE).includes(resample as PilResample)) {
      throw new ConfigError(
        `${source} asks for resample=${resample}, which Kiln's PIL-compatible resizer does not implement`,
        'use resample 1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box) or 5 (hamming).',
      );
    }
    this.resample = resample as PilResample;
    const size = config.size;
    const crop =
      typeof config.crop_size === 'number' ? { height: config.crop_size, width: config.crop_size } : config.crop_size;
    if (config.do_center_crop && crop) {
      this.outWidth = crop.width;
      this.outHeight = crop.height;
    } else if (typeof size === 'number') {
      this.outWidth = this.outHeight = size;
    } else if (size?.height !== undefined && size.width !== undefined) {
      this.outWidth = size.width;
      this.outHeight = size.height;
    } else {
      throw new ConfigError(
        `${source} gives size ${JSON.stringify(size)} without a centre crop, so images of different shapes cannot be batched`,
        'use a processor with do_center_crop and crop_size, or a fixed {height, width} size.',
      );
    }
    this.mean = triple(config.do_normalize === false ? 0 : config.image_mean, 0.5);
    this.std = triple(config.do_normalize === false ? 1 : config.image_std, 0.5);
    this.scale = config.do_rescale === false ? 1 : (config.rescale_factor ?? 1 / 255);
    const f = Math.fround;
    this.lut = new Float32Array(3 * 256);
    for (let ch = 0; ch < 3; ch++) {
      const m = f(this.mean[ch] as number);
      const s = f(this.std[ch] as number);
      for (let v = 0; v < 256; v++) this.lut[ch * 256 + v] = f(f(f(v * this.scale) - m) / s);
    }
  }

  /**
   * The resize for a decoded width x height image (shortest-edge or fixed size; the centre crop as
   * its output box when the crop lies inside, so only the kept pixels are resampled); undefined
   * without do_resize.
   */
  resizeFor(width: number, height: number): RgbResize | undefined {
    const size = this.config.size;
    if (this.config.do_resize === false || size === undefined) return undefined;
    const target =
      typeof size === 'number'
        ? { width: size, height: size }
        : size.shortest_edge !== undefined
          ? shortestEdgeSize(width, height, size.shortest_edge)
          : { width: size.width ?? width, height: size.height ?? height };
    const box = this.config.do_center_crop
      ? innerCropBox(target.width, target.height, this.outWidth, this.outHeight)
      : undefined;
    return { ...target, resample: this.resample, box };
  }

  /** After `resize` (resizeFor's, or none): the centre crop if the resize's box was not it, and the size check. */
  private finishCrop(img: RawImage8, resize: RgbResize | undefined): RawImage8 {
    const out = this.config.do_center_crop && !resize?.box ? centerCrop(img, this.outWidth, this.outHeight) : img;
    if (out.width !== this.outWidth || out.height !== this.outHeight) {
      throw new Error(`preprocessed image is ${out.width}x${out.height}, expected ${this.outWidth}x${this.outHeight}`);
    }
    return out;
  }

  /** Resize and crop one decoded image to the model's input size (8-bit, as PIL produces it). */
  resizeAndCrop(img: RawImage8): RawImage8 {
    const r = this.resizeFor(img.width, img.height);
    return this.finishCrop(r ? pilResize(img, r.width, r.height, r.resample, r.box) : img, r);
  }

  /**
   * Encoded bytes -> the model-size 8-bit image, as decodeRgb() then resizeAndCrop(): a plain JPEG
   * is decoded and resized in one native call on the libuv pool (infra/imaging/decode-rgb.ts).
   */
  async decodeToSize(bytes: Uint8Array): Promise<RawImage8> {
    const { image, resize } = await decodeResizedRgb(bytes, (w, h) => this.resizeFor(w, h));
    return this.finishCrop(image, resize);
  }

  /** Rescale + normalise (float32 arithmetic, as numpy does; via a per-level table) into `dst` at image slot `index`. */
  writeTensor(img: RawImage8, dst: Float32Array, index: number): void {
    const plane = this.outWidth * this.outHeight;
    const base = index * 3 * plane;
    const data = img.data,
      lut = this.lut;
    for (let ch = 0; ch < 3; ch++) {
      const o = base + ch * plane;
      const l = ch * 256;
      for (let p = 0, q = ch; p < plane; p++, q += 3) dst[o + p] = lut[l + (data[q] as number)] as number;
    }
  }

  /** Preprocess decoded images into one NCHW batch. */
  batch(images: readonly RawImage8[]): PixelBatch {
    return this.tensor(images.map((img) => this.resizeAndCrop(img)));
  }

  /** One NCHW batch of images already at the model's size (resizeAndCrop's or decodeToSize's). */
  tensor(images: readonly RawImage8[]): PixelBatch {
    const data = new Float32Array(images.length * 3 * this.outWidth * this.outHeight);
    images.forEach((img, i) => this.writeTensor(img, data, i));
    return { data, dims: [images.length, 3, this.outHeight, this.outWidth] };
  }
}

/** Outcome of decoding a batch: images for the rows that decoded, errors (by row) for the rest. */
export interface DecodedBatch {
  images: RawImage8[];
  rows: number[];
  errors: (string | null)[];
}

/** Decode many images concurrently (on the libuv pool: native JPEG decode or sharp); failures are per-row data, not exceptions. */
export async function decodeBatch(bytes: readonly (Uint8Array | null)[]): Promise<DecodedBatch> {
  const results = await Promise.all(
    bytes.map(async (b) => {
      if (!b || b.length === 0) return { error: 'no image bytes' };
      try {
        return { img: await decodeRgb(b) };
      } catch (err) {
        return { error: `undecodable image: ${(err as Error).message}` };
      }
    }),
  );
  const out: DecodedBatch = { images: [], rows: [], errors: [] };
  results.forEach((r, i) => {
    if ('img' in r && r.img) {
      out.images.push(r.img);
      out.rows.push(i);
      out.errors.push(null);
    } else out.errors.push(r.error ?? 'unknown decode error');
  });
  return out;
}

/** A preprocessed batch: the pixel tensor of the rows that decoded (and were asked for), errors by row. */
export interface PreparedBatch {
  /** Tensor of `rows` (null when no row is in it). */
  pixels: PixelBatch | null;
  /** Indices (into the input) of the images in `pixels`, in order. */
  rows: number[];
  /** Per input row: the decode failure, or null. */
  errors: (string | null)[];
}

/**
 * Decode and preprocess a batch (decode + resize on the libuv pool for plain JPEGs, see
 * ImagePreprocessor.decodeToSize; the rest on this thread). `include[k] === false` decodes row k (so
 * its decode error is reported) but leaves it out of the tensor.
 */
export async function prepareBatch(
  pre: ImagePreprocessor,
  images: readonly (Uint8Array | null)[],
  include?: readonly boolean[],
): Promise<PreparedBatch> {
  const decoded = await Promise.all(
    images.map(async (b) => {
      if (!b || b.length === 0) return 'no image bytes';
      try {
        return await pre.decodeToSize(b);
      } catch (err) {
        return `undecodable image: ${(err as Error).message}`;
      }
    }),
  );
  const rows: number[] = [];
  const imgs: RawImage8[] = [];
  decoded.forEach((d, k) => {
    if (typeof d !== 'string' && include?.[k] !== false) {
      rows.push(k);
      imgs.push(d);
    }
  });
  return {
    pixels: imgs.length > 0 ? pre.tensor(imgs) : null,
    rows,
    errors: decoded.map((d) => (typeof d === 'string' ? d : null)),
  };
}
