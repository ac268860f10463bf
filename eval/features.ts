/**
 * Image features for FID from an ONNX feature extractor (ONNX Runtime, CPU by default).
 *
 * An extractor is a directory holding `model.onnx` and `extractor.json` (see eval/architecture.md
 * for the standard Inception-v3 export). Images go through clean-fid's "clean" preprocessing
 * (clean-resize.ts) to the extractor's input size as float values in [0, 255]; the model does its
 * own normalisation and returns one feature vector per image.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { KilnError, MissingFileError } from '../infra/errors.js';
import { sha256File } from '../infra/hash.js';
import { decodeRgb as decodeRgbShared } from '../infra/imaging/decode-rgb.js';
import { cleanResize, type RgbImage } from './clean-resize.js';
import { FeatureStatisticsAccumulator, type FeatureRowsF32, type FeatureStatistics } from './statistics.js';

/** Contents of `extractor.json`. */
export interface FeatureExtractorDescriptor {
  format: 'kiln-feature-extractor-v1';
  name: string;
  /** Model file name inside the directory (default model.onnx). */
  model: string;
  input: string;
  output: string;
  /** [width, height] the model expects (299 x 299 for Inception-v3). */
  input_size: [number, number];
  /** Value range of the model input (Kiln feeds [0, 255]). */
  input_range: [number, number];
  feature_dim: number;
  /** Only "clean-fid-clean" is implemented. */
  preprocessing: 'clean-fid-clean';
}

/** Files an extractor directory must contain. */
export const EXTRACTOR_FILES = ['extractor.json', 'model.onnx'] as const;

/** The extractor directory is missing a file or has an invalid descriptor. */
export class FeatureExtractorError extends KilnError {
  constructor(problem: string, fix: string, options?: { cause?: unknown }) {
    super('KILN_EVAL_EXTRACTOR', problem, fix, options);
  }
}

export interface FeatureExtractorOptions {
  /** Images per ONNX Runtime call (default 16). */
  batchSize?: number;
  /** ONNX Runtime execution providers (default ['cpu']; e.g. ['cuda', 'cpu'] on a GPU build). */
  executionProviders?: string[];
  /** Threads for one session (default: ONNX Runtime's choice). */
  intraOpNumThreads?: number;
}

/** A loaded feature extractor. Call `close()` when done (releases the native session). */
export interface FeatureExtractor {
  readonly dir: string;
  readonly descriptor: FeatureExtractorDescriptor;
  /** sha256 of the model file: part of every evaluation's protocol and of the reference-stats key. */
  readonly modelSha256: string;
  readonly featureDim: number;
  /** Features (count x featureDim) of preprocessed CHW tensors (count x 3 x H x W, values in [0, 255]). */
  extractTensors(tensors: Float32Array, count: number): Promise<Float32Array>;
  /** Features of RGB images (any size): clean resize, then the model, in batches. */
  extractImages(images: readonly RgbImage[]): Promise<Float32Array>;
  close(): Promise<void>;
}

/**
 * Load an extractor directory. Throws a {@link MissingFileError} (code KILN_MISSING_FILE) naming
 * the path and the expected files when something is missing; nothing is ever downloaded.
 */
export async function loadFeatureExtractor(dir: string, opts: FeatureExtractorOptions = {}): Promise<FeatureExtractor> {
  const howTo =
    `put ${EXTRACTOR_FILES.join(' and ')} in ${dir}: see eval/architecture.md, ` +
    `"Standard Inception-v3 extractor", for exporting the TF inception-2015-12-05 weights to ONNX`;
  const descPath = join(dir, 'extractor.json');
  let raw: string;
  try {
    raw = await readFile(descPath, 'utf8');
  } catch {
    throw new MissingFileError(
      `FID feature extractor not found: ${descPath} is missing (an extractor directory holds ${EXTRACTOR_FILES.join(', ')})`,
      howTo,
    );
  }
  const descriptor = parseDescriptor(raw, descPath);
  const modelPath = join(dir, descriptor.model);
  let modelSha256: string;
  try {
    modelSha256 = await sha256File(modelPath);
  } catch {
    throw new MissingFileError(
      `FID feature extractor model not found: ${modelPath} is missing (named by ${descPath})`,
      howTo,
    );
  }
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: opts.executionProviders ?? ['cpu'],
    ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  }).catch((err: unknown) => {
    throw new FeatureExtractorError(
      `ONNX Runtime could not load ${modelPath}: ${(err as Error).message}`,
      're-export the model (opset 17, input NCHW float32) as described in eval/architecture.md.',
      { cause: err },
    );
  });
  if (!session.inputNames.includes(descriptor.input) || !session.outputNames.includes(descriptor.output)) {
    await session.release();
    throw new FeatureExtractorError(
      `${modelPath} has inputs [${session.inputNames.join(', ')}] and outputs ` +
        `[${session.outputNames.join(', ')}], but ${descPath} names input "${descriptor.input}" and ` +
        `output "${descriptor.output}"`,
      "make extractor.json name the model's real input and output.",
    );
  }
  const batchSize = Math.max(1, opts.batchSize ?? 16);
  const [w, h] = descriptor.input_size;
  const dim = descriptor.feature_dim;
  const plane = 3 * w * h;

  async function extractTensors(tensors: Float32Array, count: number): Promise<Float32Array> {
    if (tensors.length !== count * plane)
      throw new FeatureExtractorError(
        `expected ${count} x 3 x ${h} x ${w} input values, got ${tensors.length}`,
        'preprocess images with cleanResize to the extractor input size.',
      );
    const out = new Float32Array(count * dim);
    for (let s = 0; s < count; s += batchSize) {
      const n = Math.min(batchSize, count - s);
      const input = new ort.Tensor('float32', tensors.subarray(s * plane, (s + n) * plane), [n, 3, h, w]);
      const result = await session.run({ [descriptor.input]: input });
      const feats = result[descriptor.output];
      if (!feats || feats.data.length !== n * dim) {
        throw new FeatureExtractorError(
          `${modelPath} returned ${feats?.data.length ?? 0} values for ${n} images; extractor.json says feature_dim ${dim}`,
          'fix feature_dim in extractor.json (2048 for Inception-v3 pool features).',
        );
      }
      out.set(feats.data as Float32Array, s * dim);
    }
    return out;
  }

  return {
    dir,
    descriptor,
    modelSha256,
    featureDim: dim,
    extractTensors,
    async extractImages(images) {
      const out = new Float32Array(images.length * dim);
      const buf = new Float32Array(Math.min(batchSize, images.length) * plane);
      for (let s = 0; s < images.length; s += batchSize) {
        const n = Math.min(batchSize, images.length - s);
        for (let i = 0; i < n; i++) cleanResize(images[s + i]!, w, h, buf.subarray(i * plane, (i + 1) * plane));
        out.set(await extractTensors(buf.subarray(0, n * plane), n), s * dim);
      }
      return out;
    },
    async close() {
      await session.release();
    },
  };
}

function parseDescriptor(raw: string, path: string): FeatureExtractorDescriptor {
  let d: Partial<FeatureExtractorDescriptor>;
  try {
    d = JSON.parse(raw) as Partial<FeatureExtractorDescriptor>;
  } catch (err) {
    throw new FeatureExtractorError(
      `${path} is not valid JSON: ${(err as Error).message}`,
      'rewrite extractor.json as described in eval/architecture.md.',
    );
  }
  const problems: string[] = [];
  if (d.format !== 'kiln-feature-extractor-v1')
    problems.push(`format must be "kiln-feature-extractor-v1" (got ${JSON.stringify(d.format)})`);
  if (
    !Array.isArray(d.input_size) ||
    d.input_size.length !== 2 ||
    !d.input_size.every((v) => Number.isInteger(v) && v > 0)
  )
    problems.push('input_size must be [width, height]');
  if (!Number.isInteger(d.feature_dim) || (d.feature_dim ?? 0) < 1)
    problems.push('feature_dim must be a positive integer');
  if (typeof d.input !== 'string' || typeof d.output !== 'string')
    problems.push("input and output must name the model's tensors");
  if (d.preprocessing !== 'clean-fid-clean')
    problems.push(`preprocessing must be "clean-fid-clean" (got ${JSON.stringify(d.preprocessing)})`);
  if (!Array.isArray(d.input_range) || d.input_range[0] !== 0 || d.input_range[1] !== 255)
    problems.push('input_range must be [0, 255]');
  if (problems.length > 0)
    throw new FeatureExtractorError(
      `${path} is invalid: ${problems.join('; ')}`,
      'fix extractor.json as described in eval/architecture.md.',
    );
  return { ...(d as FeatureExtractorDescriptor), model: d.model ?? 'model.onnx', name: d.name ?? 'unnamed' };
}

/**
 * Decode an encoded image (PNG, JPEG, WebP...) to 8-bit RGB like PIL's `Image.open().convert('RGB')`
 * (clean-fid decodes with PIL): alpha is dropped (not composited), grey is replicated. The project's
 * one decoder, infra/imaging/decode-rgb.ts (Pillow's exact bytes for YCbCr and grey JPEGs, ICC
 * profiles ignored as PIL does; sharp for the rest, which converts CMYK and ICC-tagged non-JPEGs to
 * sRGB); see eval/architecture.md.
 */
export async function decodeRgb(bytes: Uint8Array): Promise<RgbImage> {
  const { width, height, data } = await decodeRgbShared(bytes);
  return { width, height, data };
}

type ImageStream = AsyncIterable<RgbImage> | Iterable<RgbImage>;
interface BatchOptions {
  batchSize?: number;
  onProgress?: (done: number) => void;
}

/** Extract features batch by batch (memory: one batch of images), accumulating statistics; `onBatch` sees each batch's rows. */
async function accumulateFeatures(
  extractor: FeatureExtractor,
  images: ImageStream,
  opts: BatchOptions,
  onBatch?: (rows: Float32Array) => void,
): Promise<FeatureStatistics> {
  const acc = new FeatureStatisticsAccumulator(extractor.featureDim);
  const batchSize = opts.batchSize ?? 32;
  let batch: RgbImage[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const f = await extractor.extractImages(batch);
    acc.add(f);
    onBatch?.(Float32Array.from(f));
    batch = [];
    opts.onProgress?.(acc.count);
  };
  for await (const img of images) {
    batch.push(img);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  return acc.finalize();
}

/**
 * Statistics of a stream of images plus the feature rows themselves (float32 [n, dim], for KID):
 * what the reference cache stores. Memory: n x dim x 4 bytes (5,000 x 2048: 41 MB).
 */
export async function imageSetFeatures(
  extractor: FeatureExtractor,
  images: ImageStream,
  opts: BatchOptions = {},
): Promise<{ stats: FeatureStatistics; features: FeatureRowsF32 }> {
  const chunks: Float32Array[] = [];
  const stats = await accumulateFeatures(extractor, images, opts, (rows) => chunks.push(rows));
  const data = new Float32Array(stats.count * extractor.featureDim);
  let o = 0;
  for (const c of chunks) {
    data.set(c, o);
    o += c.length;
  }
  return { stats, features: { data, count: stats.count } };
}

/**
 * Mean and covariance of the features of a stream of images, batch by batch (memory is one batch
 * of images plus the dim² statistics). `onProgress` gets the number of images done (for heartbeats).
 */
export function imageSetStatistics(
  extractor: FeatureExtractor,
  images: ImageStream,
  opts: BatchOptions = {},
): Promise<FeatureStatistics> {
  return accumulateFeatures(extractor, images, opts);
}
