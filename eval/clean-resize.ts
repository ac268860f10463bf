/**
 * clean-fid's "clean" image preprocessing, ported exactly: each RGB channel becomes a float32
 * image (PIL mode 'F'), is resized with Pillow's BICUBIC filter (antialiased: the kernel is
 * stretched by the downscale factor), and clipped to [0, 255]. No uint8 quantisation after the
 * resize. The resampling is infra/imaging/pil-resample.ts (Pillow's `precompute_coeffs` and 32-bit
 * passes: double-precision coefficients normalised per output pixel, Pillow 13's pass order, each
 * pass rounded to float32). test/eval/features.test.ts checks it against Pillow's own output.
 */
import { PIL_RESAMPLE, pilResizeFloat } from '../infra/imaging/pil-resample.js';

/** Interleaved 8-bit (or float in [0, 255]) RGB pixels, row-major, HWC. */
export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 values. */
  data: Uint8Array | Uint8ClampedArray | Float32Array;
}

/**
 * Resize one float channel (row-major, inW x inH) to outW x outH exactly as Pillow resizes a
 * mode-'F' image with Image.BICUBIC. Returns float32 values (not clipped).
 */
export function resizeChannelBicubic(
  src: Float32Array,
  inW: number,
  inH: number,
  outW: number,
  outH: number,
): Float32Array {
  return pilResizeFloat(src, inW, inH, outW, outH, PIL_RESAMPLE.bicubic);
}

/**
 * clean-fid "clean" preprocessing of one RGB image to a CHW float32 tensor of outW x outH with
 * values in [0, 255] (what an Inception-v3 FID export expects, before its own (x-128)/128).
 * `out` (3 * outW * outH) may be given to write into a batch buffer.
 */
export function cleanResize(image: RgbImage, outW: number, outH: number, out?: Float32Array): Float32Array {
  const { width, height, data } = image;
  const plane = outW * outH;
  const dst = out ?? new Float32Array(3 * plane);
  const channel = new Float32Array(width * height);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < width * height; i++) channel[i] = data[i * 3 + c]!;
    const resized = resizeChannelBicubic(channel, width, height, outW, outH);
    const base = c * plane;
    for (let i = 0; i < plane; i++) {
      const v = resized[i]!;
      dst[base + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return dst;
}
