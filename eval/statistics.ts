/**
 * Feature statistics for FID: mean and covariance (float64) accumulated from feature batches in a
 * single streaming pass, plus a safetensors-compatible binary encoding for caching them.
 *
 * Numerics: sums are taken of (x - shift), where `shift` is the mean of the first batch (the
 * "shifted data" algorithm), so the final `G - n·m·mᵀ` does not cancel catastrophically when the
 * features have a large mean relative to their spread (Inception pool features are non-negative).
 * Samples are buffered into a transposed panel of 256 and folded into the Gram matrix with a
 * register-blocked symmetric rank-k kernel (see linalg.ts).
 */
import { KilnError } from '../infra/errors.js';
import { accumulateGramLower, mirrorLowerToUpper } from './linalg.js';

/** Mean and covariance (unbiased, n-1 denominator, as numpy.cov) of `count` feature vectors. */
export interface FeatureStatistics {
  dim: number;
  count: number;
  mean: Float64Array;
  /** dim x dim row-major, symmetric. */
  cov: Float64Array;
}

/** Invalid feature input (wrong dimension, too few samples, non-finite values). */
export class FeatureStatisticsError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_EVAL_FEATURE_STATS', problem, fix);
  }
}

const PANEL = 256;

/** Streaming mean/covariance accumulator (constant memory: O(dim²)). */
export class FeatureStatisticsAccumulator {
  readonly dim: number;
  private n = 0;
  private shift: Float64Array | null = null;
  private readonly sum: Float64Array;
  private readonly gram: Float64Array;
  private readonly panel: Float64Array;
  private filled = 0;

  constructor(dim: number) {
    if (!Number.isInteger(dim) || dim < 1)
      throw new FeatureStatisticsError(
        `feature dimension ${dim} is not a positive integer`,
        'pass the extractor output size (2048 for Inception-v3 pool features).',
      );
    this.dim = dim;
    this.sum = new Float64Array(dim);
    this.gram = new Float64Array(dim * dim);
    this.panel = new Float64Array(dim * PANEL);
  }

  /** Number of feature vectors added so far. */
  get count(): number {
    return this.n;
  }

  /** Add a batch of feature vectors, row-major (rows x dim). */
  add(features: ArrayLike<number>): void {
    const d = this.dim;
    if (features.length % d !== 0) {
      throw new FeatureStatisticsError(
        `a feature batch of ${features.length} values is not a whole number of ${d}-dim vectors`,
        'check that the extractor output size matches the statistics dimension.',
      );
    }
    const rows = features.length / d;
    if (rows === 0) return;
    if (this.shift === null) {
      const shift = new Float64Array(d);
      for (let r = 0; r < rows; r++) for (let i = 0; i < d; i++) shift[i]! += features[r * d + i]!;
      for (let i = 0; i < d; i++) shift[i]! /= rows;
      this.shift = shift;
    }
    const shift = this.shift;
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      const col = this.filled;
      for (let i = 0; i < d; i++) {
        const x = features[o + i]!;
        if (!Number.isFinite(x))
          throw new FeatureStatisticsError(
            `feature ${i} of vector ${this.n} is ${x}`,
            'the extractor produced a non-finite value: check the input images and the model file.',
          );
        const y = x - shift[i]!;
        this.sum[i]! += y;
        this.panel[i * PANEL + col] = y;
      }
      this.n++;
      if (++this.filled === PANEL) this.flush();
    }
  }

  private flush(): void {
    if (this.filled === 0) return;
    if (this.filled < PANEL) {
      for (let i = 0; i < this.dim; i++) this.panel.fill(0, i * PANEL + this.filled, (i + 1) * PANEL);
    }
    accumulateGramLower(this.panel, this.dim, PANEL, this.gram);
    this.filled = 0;
  }

  /** Mean and unbiased covariance of everything added (needs at least 2 vectors). */
  finalize(): FeatureStatistics {
    if (this.n < 2 || this.shift === null) {
      throw new FeatureStatisticsError(
        `covariance needs at least 2 feature vectors, got ${this.n}`,
        'evaluate with a sample count of at least 2 (FID is only meaningful with thousands).',
      );
    }
    this.flush();
    const d = this.dim,
      n = this.n;
    const m = new Float64Array(d);
    const mean = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      m[i] = this.sum[i]! / n;
      mean[i] = this.shift[i]! + m[i]!;
    }
    const cov = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      const mi = m[i]!;
      for (let j = 0; j <= i; j++) cov[i * d + j] = (this.gram[i * d + j]! - n * mi * m[j]!) / (n - 1);
    }
    mirrorLowerToUpper(cov, d);
    return { dim: d, count: n, mean, cov };
  }
}

/** Statistics of an in-memory feature matrix (rows x dim). */
export function featureStatistics(features: ArrayLike<number>, dim: number): FeatureStatistics {
  const acc = new FeatureStatisticsAccumulator(dim);
  acc.add(features);
  return acc.finalize();
}

/** Feature rows kept beside the statistics (float32 [count, dim]; KID needs the rows themselves). */
export interface FeatureRowsF32 {
  data: Float32Array;
  count: number;
}

/**
 * Encode statistics as a safetensors file: tensors `mean` (F64, [dim]) and `cov` (F64, [dim, dim]),
 * optionally `features` (F32, [count, dim]: the rows, for KID), `__metadata__` string map (count plus
 * caller metadata). Readable with `safetensors.numpy.load_file`.
 */
export function encodeStatistics(
  stats: FeatureStatistics,
  metadata: Record<string, string> = {},
  features?: FeatureRowsF32,
): Uint8Array {
  const d = stats.dim;
  const meanBytes = d * 8,
    covBytes = d * d * 8;
  if (features && features.data.length !== features.count * d)
    throw new FeatureStatisticsError(
      `feature rows hold ${features.data.length} values, not ${features.count} x ${d}`,
      "pass whole rows of the statistics' dimension.",
    );
  const featBytes = features ? features.data.length * 4 : 0;
  const header: Record<string, unknown> = {
    __metadata__: {
      ...metadata,
      count: String(stats.count),
      format: 'kiln-fid-stats-v1',
      ...(features ? { feature_rows: String(features.count) } : {}),
    },
    mean: { dtype: 'F64', shape: [d], data_offsets: [0, meanBytes] },
    cov: { dtype: 'F64', shape: [d, d], data_offsets: [meanBytes, meanBytes + covBytes] },
    ...(features
      ? {
          features: {
            dtype: 'F32',
            shape: [features.count, d],
            data_offsets: [meanBytes + covBytes, meanBytes + covBytes + featBytes],
          },
        }
      : {}),
  };
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + meanBytes + covBytes + featBytes);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  const base = 8 + headerBytes.length;
  out.set(littleEndianBytes(stats.mean), base);
  out.set(littleEndianBytes(stats.cov), base + meanBytes);
  if (features) {
    if (HOST_LE)
      out.set(new Uint8Array(features.data.buffer, features.data.byteOffset, featBytes), base + meanBytes + covBytes);
    else
      for (let i = 0; i < features.data.length; i++)
        out.writeFloatLE(features.data[i]!, base + meanBytes + covBytes + i * 4);
  }
  return out;
}

/** Decode what {@link encodeStatistics} wrote; returns the statistics and the metadata map. */
export function decodeStatistics(bytes: Uint8Array): {
  stats: FeatureStatistics;
  metadata: Record<string, string>;
  features: FeatureRowsF32 | null;
} {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why: string) =>
    new FeatureStatisticsError(
      `feature statistics file is malformed: ${why}`,
      'delete the cached statistics file; it will be recomputed.',
    );
  if (buf.length < 8) throw bad('shorter than 8 bytes');
  const hlen = Number(buf.readBigUInt64LE(0));
  if (8 + hlen > buf.length) throw bad('header length past end of file');
  const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8')) as Record<
    string,
    { dtype?: string; shape?: number[]; data_offsets?: [number, number] } | Record<string, string>
  >;
  const meta = (header.__metadata__ ?? {}) as Record<string, string>;
  const meanH = header.mean as { dtype?: string; shape?: number[]; data_offsets?: [number, number] } | undefined;
  const covH = header.cov as typeof meanH;
  if (
    !meanH?.shape ||
    !covH?.shape ||
    meanH.dtype !== 'F64' ||
    covH.dtype !== 'F64' ||
    !meanH.data_offsets ||
    !covH.data_offsets
  )
    throw bad('missing F64 tensors "mean" and "cov"');
  const d = meanH.shape[0]!;
  if (covH.shape[0] !== d || covH.shape[1] !== d)
    throw bad(`cov shape ${JSON.stringify(covH.shape)} does not match mean [${d}]`);
  const base = 8 + hlen;
  if (base + covH.data_offsets[1] > buf.length) throw bad('tensor data past end of file');
  const mean = readF64(buf, base + meanH.data_offsets[0], d);
  const cov = readF64(buf, base + covH.data_offsets[0], d * d);
  const count = Number(meta.count ?? NaN);
  let features: FeatureRowsF32 | null = null;
  const fH = header.features as typeof meanH;
  if (fH) {
    if (fH.dtype !== 'F32' || !fH.shape || fH.shape.length !== 2 || fH.shape[1] !== d || !fH.data_offsets)
      throw bad(`features tensor must be F32 [n, ${d}]`);
    const n = fH.shape[0]!;
    if (fH.data_offsets[1] - fH.data_offsets[0] !== n * d * 4 || base + fH.data_offsets[1] > buf.length)
      throw bad('features tensor data does not fit');
    const data = new Float32Array(n * d);
    const off = base + fH.data_offsets[0];
    if (HOST_LE) new Uint8Array(data.buffer).set(buf.subarray(off, off + n * d * 4));
    else for (let i = 0; i < n * d; i++) data[i] = buf.readFloatLE(off + i * 4);
    features = { data, count: n };
  }
  return { stats: { dim: d, count, mean, cov }, metadata: meta, features };
}

const HOST_LE = new Uint8Array(new Float64Array([1]).buffer)[7] === 0x3f;

/** The bytes of a Float64Array in little-endian order (a view on little-endian hosts). */
function littleEndianBytes(a: Float64Array): Uint8Array {
  if (HOST_LE) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = Buffer.alloc(a.byteLength);
  for (let i = 0; i < a.length; i++) out.writeDoubleLE(a[i]!, i * 8);
  return out;
}

function readF64(buf: Buffer, offset: number, count: number): Float64Array {
  const out = new Float64Array(count);
  if (HOST_LE) {
    new Uint8Array(out.buffer).set(buf.subarray(offset, offset + count * 8));
  } else {
    for (let i = 0; i < count; i++) out[i] = buf.readDoubleLE(offset + i * 8);
  }
  return out;
}
