/**
 * One evaluation of a checkpoint, as the eval activity runs it: generate the fixed sample plan,
 * extract features (streaming mean/covariance, rows kept for KID), Frechet distance against the
 * cached reference statistics, KID against the cached reference rows (with its noise at this sample
 * count: a jackknife over the generated samples, eval/kid.ts kidNoise), CLIP score of the samples against their prompts, and a sample grid for the report.
 * Returns a small JSON-able record carrying the numbers and the protocol they were measured under.
 *
 * Dependencies are injected (the denoiser adapter, text encoding and latent decoding come from
 * training/, the CLIP scorer from datasets/filter), so this stays a pure library function.
 */
import sharp from 'sharp';
import type { ArtifactStorage } from '../infra/storage.js';
import type { RgbImage } from './clean-resize.js';
import { evalSamplePlan, generateEvalImages, type GenerateOptions } from './eval-samples.js';
import type { FeatureExtractor } from './features.js';
import { frechetDistance, type FrechetDistance } from './frechet.js';
import type { StoppingMetric } from './early-stopping.js';
import { kernelInceptionDistance, kidNoise, KID_DEFAULT_MAX_SUBSET_SIZE, KID_DEFAULT_SUBSETS } from './kid.js';
import type { ReferenceStats } from './reference-stats.js';
import type { EvalProtocol, ReportEvaluation } from './report.js';
import { writeSampleGrid } from './sample-grid.js';
import { FeatureStatisticsAccumulator } from './statistics.js';

/** Anything that scores encoded images against captions (datasets/filter ClipScorer fits). */
export interface ImageTextScorer {
  score(images: readonly Uint8Array[], captions: readonly string[]): Promise<Float32Array>;
}

export interface EvaluationDeps<C> {
  storage: ArtifactStorage;
  /** Denoiser, sampler options (seed!), prompt encoding, latent decoding, batch size. */
  generate: GenerateOptions<C>;
  extractor: FeatureExtractor;
  /** From referenceStatistics(): the cached reference mean/covariance and its file hash. */
  reference: ReferenceStats;
  /** CLIP model for the CLIP score; omitted -> clipScore null. */
  clip?: { scorer: ImageTextScorer; name: string };
  /** Where sample grids go (the run's report directory). */
  reportDirUri: string;
}

export interface EvaluationOptions {
  step: number;
  prompts: readonly string[];
  sampleCount: number;
  /** Samples shown in the grid (the first N of the plan; default 16). */
  gridSamples?: number;
  /** Name of the reference set, for the protocol. */
  referenceSetName?: string;
  /** Called after every batch with the number of samples done (heartbeats). */
  onProgress?: (done: number) => void;
  /** The stopping metric the run decides on (recorded in the protocol). */
  metric?: StoppingMetric;
  /** How reference images were brought to a fixed size before the extractor's resize (protocol). */
  referenceResize?: string;
  /** KID subsets (default 100) and largest subset size (default 1000), clean-fid's protocol. */
  kidSubsets?: number;
  kidMaxSubsetSize?: number;
}

/** KID's details: clean-fid's subset std, the subsets used, and the noise at this sample count. */
export interface KidParts {
  /** Population std over the subsets (clean-fid / torch-fidelity's kid_std; 0 with one subset). */
  subsetStd: number;
  subsetSize: number;
  subsets: number;
  /** Estimated standard deviation of this KID between two evaluations with different noise (kidNoise). */
  noiseStd: number;
  noiseMethod: string;
}

/** The evaluation's result: a ReportEvaluation plus the parts of the distance. */
export interface EvaluationRecord extends ReportEvaluation {
  fidParts: Omit<FrechetDistance, 'distance'>;
  /** Kernel Inception Distance (unbiased MMD², cubic kernel) against the reference rows. */
  kid: number | null;
  kidParts: KidParts | null;
  /** Mean cosine similarity of image and prompt embeddings (null without a CLIP model). */
  clipScore: number | null;
}

/** Run one evaluation (see the module comment). Deterministic for a given checkpoint and options. */
export async function evaluateCheckpoint<C>(deps: EvaluationDeps<C>, o: EvaluationOptions): Promise<EvaluationRecord> {
  const plan = evalSamplePlan(o.prompts, o.sampleCount);
  const dim = deps.extractor.featureDim;
  const acc = new FeatureStatisticsAccumulator(dim);
  const rows = new Float32Array(plan.length * dim);
  const gridCount = Math.min(o.gridSamples ?? 16, plan.length);
  const grid: RgbImage[] = [];
  let clipSum = 0,
    clipN = 0;
  let sampleSize: string | undefined;
  let batch: { image: RgbImage; prompt: string }[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const f = await deps.extractor.extractImages(batch.map((b) => b.image));
    rows.set(f, acc.count * dim);
    acc.add(f);
    if (deps.clip) {
      const png = await Promise.all(batch.map((b) => rgbToPng(b.image)));
      const scores = await deps.clip.scorer.score(
        png,
        batch.map((b) => b.prompt),
      );
      for (const s of scores)
        if (Number.isFinite(s)) {
          clipSum += s;
          clipN++;
        }
    }
    batch = [];
    o.onProgress?.(acc.count);
  };
  for await (const { sample, image } of generateEvalImages(plan, deps.generate)) {
    if (grid.length < gridCount) grid.push(image);
    sampleSize ??= `${image.width}x${image.height}`;
    batch.push({ image, prompt: sample.prompt });
    if (batch.length >= deps.generate.batchSize) await flush();
  }
  await flush();
  const stats = acc.finalize();
  const { distance, ...fidParts } = frechetDistance(stats, deps.reference.stats);
  const kidSubsets = o.kidSubsets ?? KID_DEFAULT_SUBSETS,
    kidMax = o.kidMaxSubsetSize ?? KID_DEFAULT_MAX_SUBSET_SIZE;
  const gen = { data: rows, count: acc.count };
  const kid = kernelInceptionDistance(gen, deps.reference.features, dim, {
    subsets: kidSubsets,
    maxSubsetSize: kidMax,
    seed: deps.generate.sampler.seed,
  });
  const noise = kidNoise(gen, deps.reference.features, dim);
  const written = grid.length ? await writeSampleGrid(deps.storage, deps.reportDirUri, o.step, grid) : null;
  const s = deps.generate.sampler;
  const protocol: EvalProtocol = {
    extractor: deps.extractor.descriptor.name,
    extractorSha256: deps.extractor.modelSha256,
    sampleCount: o.sampleCount,
    seed: s.seed,
    referenceStatsSha256: deps.reference.statsSha256,
    referenceCount: deps.reference.stats.count,
    featureDim: dim,
    ...(o.metric ? { metric: o.metric } : {}),
    kid:
      `unbiased MMD², k(x,y) = (x·y/${dim} + 1)³, ${kid.subsets} subset(s) ` +
      `of ${kid.subsetSize} (clean-fid: min(n, ref, ${kidMax}), ${kidSubsets} subsets), seed ${s.seed}`,
    resize:
      `${o.referenceResize ? `reference: ${o.referenceResize}; ` : ''}samples at ${sampleSize}; ` +
      `both clean-fid "clean" resize to ${deps.extractor.descriptor.input_size.join('x')}`,
    ...(o.referenceSetName ? { referenceSet: o.referenceSetName } : {}),
    sampler: `${s.method}, ${s.steps} steps, guidance ${s.guidanceScale}${s.method === 'ddim' && s.eta ? `, eta ${s.eta}` : ''}`,
    ...(deps.clip ? { clipModel: deps.clip.name } : {}),
  };
  return {
    step: o.step,
    fid: distance,
    kid: kid.kid,
    clipScore: deps.clip && clipN > 0 ? clipSum / clipN : null,
    protocol,
    sampleGrid: written?.relativePath ?? null,
    samplePrompts: plan.slice(0, gridCount).map((p) => p.prompt),
    fidParts,
    kidParts: {
      subsetStd: kid.std,
      subsetSize: kid.subsetSize,
      subsets: kid.subsets,
      noiseStd: noise.std,
      noiseMethod: noise.method,
    },
  };
}

/** Encode an 8-bit RGB image as PNG (what a saved sample would be). */
export async function rgbToPng(img: RgbImage): Promise<Uint8Array> {
  const data =
    img.data instanceof Uint8Array
      ? img.data
      : Uint8Array.from(img.data, (v) => Math.max(0, Math.min(255, Math.round(v))));
  return sharp(data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
}
