/**
 * clean-fid's "clean" image preprocessing, ported exactly: each RGB channel becomes a float32
 * image (PIL mode 'F'), is resized with Pillow's BICUBIC filter (antialiased: the kernel is
 * stretched by the downscale factor), and clipped to [0, 255]. No uint8 quantisation after the
 * resize. This is a line-by-line port of Pillow's `precompute_coeffs` and the 32-bit
 * `ImagingResampleHorizontal/Vertical` passes (libImaging/Resample.c): double-precision
 * coefficients normalised per output pixel, horizontal pass first, each pass rounded to float32.
 * test/eval/features.test.ts checks it against Pillow's own output.
 */

/** Interleaved 8-bit (or float in [0, 255]) RGB pixels, row-major, HWC. */
export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 values. */
  data: Uint8Array | Uint8ClampedArray | Float32Array;
}

/** Pillow's bicubic kernel (a = -0.5), support 2. */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  ksize: number;
  /** xmin per output pixel. */
  start: Int32Array;
  /** number of taps per output pixel. */
  count: Int32Array;
  /** outSize * ksize weights. */
  weights: Float64Array;
}

/** Pillow precompute_coeffs for the whole input range [0, inSize). */
function precomputeCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    const o = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      weights[o + x] = w;
      ww += w;
    }
    if (ww !== 0) for (let x = 0; x < xmax; x++) weights[o + x]! /= ww;
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

/**
 * Resize one float channel (row-major, inW x inH) to outW x outH exactly as Pillow resizes a
 * mode-'F' image with Image.BICUBIC. Returns float32 values (not clipped).
 */
export function resizeChannelBicubic(src: Float32Array, inW: number, inH: number, outW: number, outH: number): Float32Array {
  let cur = src;
  let curW = inW;
  if (outW !== inW) {
    const c = precomputeCoefficients(inW, outW);
    const tmp = new Float32Array(outW * inH);
    for (let y = 0; y < inH; y++) {
      const row = y * inW;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = c.start[xx]!, n = c.count[xx]!, o = xx * c.ksize;
        let s = 0;
        for (let x = 0; x < n; x++) s += cur[row + xmin + x]! * c.weights[o + x]!;
        tmp[y * outW + xx] = s;
      }
    }
    cur = tmp;
    curW = outW;
  }
  if (outH !== inH) {
    const c = precomputeCoefficients(inH, outH);
    const out = new Float32Array(curW * outH);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = c.start[yy]!, n = c.count[yy]!, o = yy * c.ksize;
      for (let x = 0; x < curW; x++) {
        let s = 0;
        for (let y = 0; y < n; y++) s += cur[(ymin + y) * curW + x]! * c.weights[o + y]!;
        out[yy * curW + x] = s;
      }
    }
    cur = out;
  }
  return cur === src ? new Float32Array(src) : cur;
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
