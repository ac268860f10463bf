/**
 * Evaluation options of a training run: one zod schema with one set of defaults. The pipeline spec
 * (cli/spec/schema.ts, snake_case keys), the CLI (`kiln run train --eval-*`) and the activities
 * (prepareTrainingRun checks, evaluateTraining applies) all take their defaults from `EVAL_DEFAULTS`
 * and their checks from `evalOptionsSchema`; `referenceOf` is the one rule that says whether a
 * reference is a dataset version or a directory of images.
 */
import { resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../infra/errors.js';
import { isObjectLocation } from '../infra/location.js';
import { DEFAULT_EVAL_SAMPLE_COUNT, DEFAULT_REFERENCE_MAX_IMAGES } from './protocol.js';
import { STOPPING_METRICS, type StoppingMetric } from './early-stopping.js';

/** The defaults, in one place (see eval/protocol.ts for why 256 samples and 5,000 reference images). */
export const EVAL_DEFAULTS = {
  sampleCount: DEFAULT_EVAL_SAMPLE_COUNT,
  patience: 3,
  minDelta: 0,
  referenceMaxImages: DEFAULT_REFERENCE_MAX_IMAGES,
  seed: 0,
  samplerSteps: 50,
  guidanceScale: 4.5,
  batchSize: 16,
  gridSamples: 16,
} as const;

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

export const evalOptionsSchema = z
  .object({
    /** Evaluate every N steps (a multiple of the chunk size, so it lands on a checkpoint; prepareTrainingRun checks that). */
    everySteps: int(1),
    /** Feature extractor directory (extractor.json + model.onnx; see eval/architecture.md). */
    extractorDir: z.string().min(1, 'give the FID feature extractor directory'),
    /** Generated samples per evaluation. */
    sampleCount: int(2, 100_000).default(EVAL_DEFAULTS.sampleCount),
    /** Evaluations in a row without improvement that stop training. */
    patience: int(1, 1000).default(EVAL_DEFAULTS.patience),
    /** Minimum change that counts as an improvement. */
    minDelta: z.number().nonnegative().default(EVAL_DEFAULTS.minDelta),
    /** Early-stopping metric; omitted: KID below the extractor's feature_dim samples, else FID (prepareTrainingRun resolves it). */
    metric: z.enum(STOPPING_METRICS as [StoppingMetric, ...StoppingMetric[]]).optional(),
    /** Reference images: a dataset version's success rows (`name@vN` or its manifest URI)... default: the training dataset. */
    referenceDataset: z.string().min(1).optional(),
    /** ...or a directory of images (png/jpg/jpeg/webp). At most one of the two. */
    referenceDir: z.string().min(1).optional(),
    /** Use at most this many reference images. */
    referenceMaxImages: int(2).default(EVAL_DEFAULTS.referenceMaxImages),
    /** CLIP model directory for the CLIP score; required for metric 'clip_score'. */
    clipModelDir: z.string().min(1).optional(),
    /** Prompt set (default eval/eval-samples.ts DEFAULT_EVAL_PROMPTS). */
    prompts: z.array(z.string()).min(1).optional(),
    /** Noise seed shared by every evaluation of the run. */
    seed: int(0).default(EVAL_DEFAULTS.seed),
    /** Sampler steps (DDIM, or Euler for flow matching). */
    samplerSteps: int(1, 1000).default(EVAL_DEFAULTS.samplerSteps),
    /** Classifier-free guidance scale (1 disables guidance). */
    guidanceScale: z.number().min(1).default(EVAL_DEFAULTS.guidanceScale),
    /** Samples per batch. */
    batchSize: int(1, 4096).default(EVAL_DEFAULTS.batchSize),
    /** Samples shown in the grid. */
    gridSamples: int(0, 1024).default(EVAL_DEFAULTS.gridSamples),
  })
  .strict()
  .refine((o) => !(o.referenceDataset && o.referenceDir), {
    message: 'give one of referenceDataset and referenceDir, not both',
    path: ['referenceDataset'],
  })
  .refine((o) => o.metric !== 'clip_score' || o.clipModelDir !== undefined, {
    message: 'metric clip_score needs clipModelDir (a CLIP model directory)',
    path: ['clipModelDir'],
  });

/** What callers may pass (defaults optional). */
export type TrainEvalOptions = z.input<typeof evalOptionsSchema>;
/** The options with every default applied. */
export type ResolvedEvalOptions = z.output<typeof evalOptionsSchema>;

/** Apply the defaults and checks; a ConfigError names each bad field and the fix. */
export function resolveEvalOptions(input: TrainEvalOptions): ResolvedEvalOptions {
  const parsed = evalOptionsSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ');
  throw new ConfigError(
    `eval options: ${problems}`,
    'fix the named fields (spec: the eval section, docs/pipeline-spec.md; CLI: kiln run train --help; defaults in eval/options.ts).',
  );
}

const DATASET_VERSION = /^[A-Za-z0-9._=-]+@v?\d+$/;
const BARE_NAME = /^[A-Za-z0-9._=-]+$/;

/**
 * The one reference resolver: a dataset version (`name@vN`, `name@N`, a `file://...manifest.json`
 * URI) is a dataset; an `s3://` prefix or an existing directory is a directory of images; a bare name that is not a
 * directory is a dataset (its newest version); anything else is a directory (absolute; a missing one
 * fails at the first evaluation with a clear error, or in prepareTrainingRun's checks).
 */
export function referenceOf(
  ref: string,
  baseDir = process.cwd(),
): { referenceDataset: string } | { referenceDir: string } {
  if (DATASET_VERSION.test(ref) || (ref.startsWith('file://') && ref.endsWith('.json')))
    return { referenceDataset: ref };
  if (isObjectLocation(ref)) return { referenceDir: ref }; // images under an s3:// prefix
  const abs = resolve(baseDir, ref);
  if (existsSync(abs) && statSync(abs).isDirectory()) return { referenceDir: abs };
  if (BARE_NAME.test(ref)) return { referenceDataset: ref };
  return { referenceDir: abs };
}
