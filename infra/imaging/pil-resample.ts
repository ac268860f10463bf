/**
 * Pillow-compatible resampling (port of Pillow 13's `libImaging/Resample.c`), shared by the filter
 * models' preprocessing (8-bit RGB, as transformers' PIL image processors resize) and eval's clean-fid
 * preprocessing (float32 channels, PIL mode 'F').
 *
 * Separable convolution: per axis, `precompute_coeffs` gives each output pixel a window of input
 * pixels and weights (the kernel stretched by the reduction factor, so shrinking antialiases),
 * normalised in double precision. 8-bit images use the weights in 22-bit fixed point with
 * round-half-up and clip to 0..255; float images use them as doubles and store float32.
 * Pass order follows Pillow 13 for every mode: vertical first when the height shrinks by more than
 * twice as many pixels as the width, else horizontal first (Pillow <= 11 always went horizontal first).
 *
 * Coefficients are cached per (input size, output size, filter): a batch of same-size images
 * computes them once. resamplePlan() hands them, with the pass order, to the native 8-bit resampler
 * (native/pil_resample.c), which repeats pilResize's integer passes off the JS thread.
 */

/** PIL resampling filters by their `PIL.Image.Resampling` number (as in preprocessor_config.json). */
export const PIL_RESAMPLE = {
  lanczos: 1,
  bilinear: 2,
  bicubic: 3,
  box: 4,
  hamming: 5,
  mks2013: 6,
  mks2021: 7,
} as const;
export type PilResample = (typeof PIL_RESAMPLE)[keyof typeof PIL_RESAMPLE];

/** An 8-bit interleaved image: `data.length === width * height * channels`. */
export interface RawImage8 {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** The part of a resized image to compute: output columns left..left+width, rows top..top+height. */
export interface OutputBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

interface Filter {
  support: number;
  weight: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<PilResample, Filter> = {
  1: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  2: {
    support: 1,
    weight: (x) => {
      const a = x < 0 ? -x : x;
      return a < 1 ? 1 - a : 0;
    },
  },
  3: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const v = x < 0 ? -x : x;
      if (v < 1) return ((a + 2) * v - (a + 3)) * v * v + 1;
      if (v < 2) return (((v - 5) * v + 8) * v - 4) * a;
      return 0;
    },
  },
  4: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  5: {
    support: 1,
    weight: (x) => {
      if (x < 0) x = -x;
      if (x === 0) return 1;
      if (x >= 1) return 0;
      const px = x * Math.PI;
      // Pillow writes these constants as C floats (0.54f, 0.46f).
      return (Math.sin(px) / px) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(px));
    },
  },
  6: {
    support: 2.5,
    weight: (x) => {
      if (x < 0) x = -x;
      if (x < 0.5) return 17 / 16 - (7 / 4) * x ** 2;
      if (x < 1.5) return (1 - x) * (7 / 4 - x);
      if (x < 2.5) return (-1 / 8) * (x - 5 / 2) ** 2;
      return 0;
    },
  },
  7: {
    support: 4.5,
    weight: (x) => {
      if (x < 0) x = -x;
      if (x < 0.5) return 577 / 576 - (239 / 144) * x ** 2;
      if (x < 1.5) return (35 / 36) * (x - 1) * (x - 239 / 140);
      if (x < 2.5) return (1 / 6) * (x - 2) * (65 / 24 - x);
      if (x < 3.5) return (1 / 36) * (x - 3) * (x - 15 / 4);
      if (x < 4.5) return (-1 / 288) * (x - 9 / 2) ** 2;
      return 0;
    },
  },
};

/** One axis' resampling coefficients (Pillow's precompute_coeffs). */
export interface AxisCoefficients {
  /** Taps reserved per output pixel. */
  ksize: number;
  /** Per output pixel: first input index (bounds[2i]) and tap count (bounds[2i+1]). */
  bounds: Int32Array;
  /** outSize * ksize weights, normalised per output pixel (double precision). */
  weights: Float64Array;
  /** The same weights in Pillow's 8-bit fixed point (PRECISION_BITS = 22). */
  fixed: Int32Array;
}

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const cache = new Map<string, AxisCoefficients>();
const CACHE_LIMIT = 512;

/** Pillow's precompute_coeffs (+ normalize_coeffs_8bpc) for one axis, cached. */
export function axisCoefficients(inSize: number, outSize: number, resample: PilResample): AxisCoefficients {
  const key = `${inSize}:${outSize}:${resample}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const filter = FILTERS[resample];
  if (!filter) throw new RangeError(`unsupported PIL resample filter ${String(resample)}`);
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * ksize);
  const fixed = new Int32Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const o = xx * ksize;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * ss);
      weights[o + x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? (weights[o + x] as number) / ww : (weights[o + x] as number);
      weights[o + x] = w;
      fixed[o + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const co = { ksize, bounds, weights, fixed };
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, co);
  return co;
}

/** Pillow 13's pass order: vertical first when the height shrinks by more than twice the width's shrink. */
export function verticalFirst(inW: number, inH: number, outW: number, outH: number): boolean {
  const dy = inH - outH;
  return dy > 0 && dy > (inW - outW) * 2;
}

/** Pillow's clip8: fixed-point sum -> 0..255 (arithmetic shift, like the C lookup table). */
function clip8(v: number): number {
  const x = v >> PRECISION_BITS;
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

/**
 * Horizontal 8-bit pass: output columns x0..x0+width of input rows y0..y0+rows, reading input
 * columns from `inX0` on (the input image may itself be a window).
 */
function horizontal8(
  img: RawImage8,
  co: AxisCoefficients,
  x0: number,
  width: number,
  y0: number,
  rows: number,
  inX0: number,
): RawImage8 {
  const c = img.channels;
  const out = new Uint8Array(width * rows * c);
  const src = img.data,
    kk = co.fixed,
    bounds = co.bounds,
    ksize = co.ksize,
    stride = img.width * c;
  for (let y = 0; y < rows; y++) {
    const rowIn = (y + y0) * stride;
    let o = y * width * c;
    for (let xx = x0; xx < x0 + width; xx++) {
      const xmin = (bounds[xx * 2] as number) - inX0;
      const n = bounds[xx * 2 + 1] as number;
      const kOff = xx * ksize;
      if (c === 3) {
        let s0 = HALF,
          s1 = HALF,
          s2 = HALF;
        let p = rowIn + xmin * 3;
        // int32 arithmetic, as Pillow's C `int` sums (they cannot overflow: 22-bit weights x 8-bit values).
        for (let x = 0; x < n; x++, p += 3) {
          const k = kk[kOff + x] as number;
          s0 = (s0 + (src[p] as number) * k) | 0;
          s1 = (s1 + (src[p + 1] as number) * k) | 0;
          s2 = (s2 + (src[p + 2] as number) * k) | 0;
        }
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
        o += 3;
      } else {
        for (let ch = 0; ch < c; ch++, o++) {
          let s = HALF;
          for (let x = 0; x < n; x++)
            s = (s + (src[rowIn + (x + xmin) * c + ch] as number) * (kk[kOff + x] as number)) | 0;
          out[o] = clip8(s);
        }
      }
    }
  }
  return { data: out, width, height: rows, channels: c };
}

/** Vertical 8-bit pass: output rows y0..y0+height; the input holds input rows from `inY0` on. */
function vertical8(img: RawImage8, co: AxisCoefficients, y0: number, height: number, inY0: number): RawImage8 {
  const stride = img.width * img.channels;
  const out = new Uint8Array(stride * height);
  const acc = new Int32Array(stride);
  const src = img.data,
    kk = co.fixed,
    ksize = co.ksize;
  for (let yy = 0; yy < height; yy++) {
    const ymin = (co.bounds[(yy + y0) * 2] as number) - inY0;
    const n = co.bounds[(yy + y0) * 2 + 1] as number;
    const kOff = (yy + y0) * ksize;
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const k = kk[kOff + y] as number;
      const row = (y + ymin) * stride;
      for (let i = 0; i < stride; i++) acc[i] = ((acc[i] as number) + (src[row + i] as number) * k) | 0;
    }
    const o = yy * stride;
    for (let i = 0; i < stride; i++) out[o + i] = clip8(acc[i] as number);
  }
  return { data: out, width: img.width, height, channels: img.channels };
}

/** Input index range [first, last) that output pixels from..from+count read on one axis. */
function inputSpan(co: AxisCoefficients, from: number, count: number): [number, number] {
  let first = Number.POSITIVE_INFINITY,
    last = 0;
  for (let i = from; i < from + count; i++) {
    const s = co.bounds[i * 2] as number;
    first = Math.min(first, s);
    last = Math.max(last, s + (co.bounds[i * 2 + 1] as number));
  }
  return [first, last];
}

/** The output box of a resize to width x height (the whole image by default), checked with the filter and size. */
function checkedBox(width: number, height: number, resample: PilResample, box: OutputBox | undefined): OutputBox {
  if (!FILTERS[resample]) throw new RangeError(`unsupported PIL resample filter ${String(resample)}`);
  if (width < 1 || height < 1) throw new RangeError(`cannot resize to ${width}x${height}`);
  const b = box ?? { left: 0, top: 0, width, height };
  if (b.left < 0 || b.top < 0 || b.width < 1 || b.height < 1 || b.left + b.width > width || b.top + b.height > height) {
    throw new RangeError(`box ${JSON.stringify(b)} is outside ${width}x${height}`);
  }
  return b;
}

/**
 * Resize like `PIL.Image.resize((width, height), resample)` (Pillow 13) on an 8-bit RGB/L image: no
 * reducing_gap, full box. Returns the input unchanged when the size is the same, as Pillow does.
 * With `box`, only that part of the resized image is computed and returned (the same bytes as
 * resizing fully and cropping, with less work: a centre crop after a resize costs only the crop).
 */
export function pilResize(
  img: RawImage8,
  width: number,
  height: number,
  resample: PilResample,
  box?: OutputBox,
): RawImage8 {
  const b = checkedBox(width, height, resample, box);
  const needH = width !== img.width;
  const needV = height !== img.height;
  if (!needH && !needV) return box ? cropRaw(img, b) : img;
  const horiz = axisCoefficients(img.width, width, resample);
  const vert = axisCoefficients(img.height, height, resample);
  if (!needV) return horizontal8(img, horiz, b.left, b.width, b.top, b.height, 0);
  if (!needH)
    return vertical8(
      cropRaw(img, { left: b.left, top: 0, width: b.width, height: img.height }),
      vert,
      b.top,
      b.height,
      0,
    );
  if (!verticalFirst(img.width, img.height, width, height)) {
    // Only the input rows the vertical pass reads (Pillow's ybox_first..ybox_last, narrowed to the box).
    const [yFirst, yLast] = inputSpan(vert, b.top, b.height);
    const tmp = horizontal8(img, horiz, b.left, b.width, yFirst, yLast - yFirst, 0);
    return vertical8(tmp, vert, b.top, b.height, yFirst);
  }
  // Vertical first over the input columns the horizontal pass reads.
  const [xFirst, xLast] = inputSpan(horiz, b.left, b.width);
  const tmp = vertical8(
    cropRaw(img, { left: xFirst, top: 0, width: xLast - xFirst, height: img.height }),
    vert,
    b.top,
    b.height,
    0,
  );
  return horizontal8(tmp, horiz, b.left, b.width, 0, b.height, xFirst);
}

/**
 * What `pilResize(img, width, height, resample, box)` does to an inW x inH image, as the Int32Array
 * the native resampler takes (`resizeRgb` in native/pil_resample.c, which documents the layout):
 * the box, the pass order and, per box column and row, the bounds and 22-bit fixed-point weights of
 * axisCoefficients(). The coefficients are computed here, in the same JS as pilResize, so the
 * native passes give its bytes exactly. (Built per call: a few KB copied from the cached coefficients.)
 */
export function resamplePlan(
  inW: number,
  inH: number,
  width: number,
  height: number,
  resample: PilResample,
  box?: OutputBox,
): Int32Array {
  const b = checkedBox(width, height, resample, box);
  const horiz = width !== inW ? axisCoefficients(inW, width, resample) : undefined;
  const vert = height !== inH ? axisCoefficients(inH, height, resample) : undefined;
  const axisLength = (co: AxisCoefficients | undefined, n: number) => (co ? n * (2 + co.ksize) : 0);
  const plan = new Int32Array(9 + axisLength(horiz, b.width) + axisLength(vert, b.height));
  plan.set([
    inW,
    inH,
    b.left,
    b.top,
    b.width,
    b.height,
    horiz && vert && verticalFirst(inW, inH, width, height) ? 1 : 0,
    horiz?.ksize ?? 0,
    vert?.ksize ?? 0,
  ]);
  let o = 9;
  for (const [co, from, n] of [
    [horiz, b.left, b.width],
    [vert, b.top, b.height],
  ] as const) {
    if (!co) continue;
    plan.set(co.bounds.subarray(from * 2, (from + n) * 2), o);
    plan.set(co.fixed.subarray(from * co.ksize, (from + n) * co.ksize), o + n * 2);
    o += n * (2 + co.ksize);
  }
  return plan;
}

function cropRaw(img: RawImage8, b: OutputBox): RawImage8 {
  if (b.left === 0 && b.top === 0 && b.width === img.width && b.height === img.height) return img;
  const c = img.channels;
  const out = new Uint8Array(b.width * b.height * c);
  for (let y = 0; y < b.height; y++) {
    const start = ((y + b.top) * img.width + b.left) * c;
    out.set(img.data.subarray(start, start + b.width * c), y * b.width * c);
  }
  return { data: out, width: b.width, height: b.height, channels: c };
}

/**
 * Resize one float channel (row-major inW x inH) to outW x outH as Pillow resizes a mode-'F' image
 * (double-precision accumulation, float32 results, not clipped). Always returns a new array.
 */
export function pilResizeFloat(
  src: Float32Array,
  inW: number,
  inH: number,
  outW: number,
  outH: number,
  resample: PilResample,
): Float32Array {
  const needH = outW !== inW;
  const needV = outH !== inH;
  if (!needH && !needV) return new Float32Array(src);
  const horizontal = (data: Float32Array, w: number, h: number): Float32Array => {
    const co = axisCoefficients(w, outW, resample);
    const out = new Float32Array(outW * h);
    for (let y = 0; y < h; y++) {
      const row = y * w;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = co.bounds[xx * 2] as number,
          n = co.bounds[xx * 2 + 1] as number,
          o = xx * co.ksize;
        let s = 0;
        for (let x = 0; x < n; x++) s += (data[row + xmin + x] as number) * (co.weights[o + x] as number);
        out[y * outW + xx] = s;
      }
    }
    return out;
  };
  const vertical = (data: Float32Array, w: number, h: number): Float32Array => {
    const co = axisCoefficients(h, outH, resample);
    const out = new Float32Array(w * outH);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = co.bounds[yy * 2] as number,
        n = co.bounds[yy * 2 + 1] as number,
        o = yy * co.ksize;
      for (let x = 0; x < w; x++) {
        let s = 0;
        for (let y = 0; y < n; y++) s += (data[(ymin + y) * w + x] as number) * (co.weights[o + y] as number);
        out[yy * w + x] = s;
      }
    }
    return out;
  };
  if (!needV) return horizontal(src, inW, inH);
  if (!needH) return vertical(src, inW, inH);
  return verticalFirst(inW, inH, outW, outH)
    ? horizontal(vertical(src, inW, inH), inW, outH)
    : vertical(horizontal(src, inW, inH), outW, inH);
}
