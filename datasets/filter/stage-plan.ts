/**
 * Planning a filter run: validate the options, check and hash the model directories, pin the
 * source dataset version (its manifest sha256) and pick the output version, then write `plan.json`
 * in the output version directory (the plan's commit record, written last).
 *
 * The output is always a NEW version of the same dataset name: the next free one, or the later
 * version (unfinished or finished) whose plan has the same fingerprint (source manifest, policy,
 * model file hashes, caption options), so a rerun with the same input resumes it and skips finished
 * shards. Batch size and device are not in the fingerprint: they change throughput, not content.
 * `plan.json` is the same file name the crawl planner uses, so neither stage ever claims a version
 * directory the other has planned.
 */
import { sha256Hex } from '../../infra/hash.js';
import { isObjectLocation } from '../../infra/location.js';
import { ConfigError, MissingFileError } from '../../infra/errors.js';
import { parseOnnxDeviceRequest, type OnnxDeviceRequest } from '../../infra/onnx-runtime.js';
import { sweepTempFiles, type ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout, datasetVersionId } from '../shards/layout.js';
import { chooseVersion, readVersionPlan } from '../shards/version-claim.js';
import { pinSourceVersion, type PinnedSource } from '../shards/source-version.js';
import { captionerType, checkModelDir, hashModelDir, type CaptionerType, type ModelFileHash } from './model-dir.js';
import { positiveInt } from './runtime.js';
import { selectionPolicy, type CaptionSource, type SelectionPolicy } from './selection.js';
import { scoresDirUri } from './stage-scores.js';

/** Bumped when the filter stage's output for the same input changes. */
export const FILTER_STAGE_VERSION = 1;

/** What a user asks the filter stage to do. */
export interface FilterPlanSpec {
  datasetName: string;
  sourceVersion: number;
  /** Explicit output version (create or resume exactly this one); default: matching or next. */
  outputVersion?: number;
  clipModelDir: string;
  captionerModelDir?: string | null;
  threshold?: number | null;
  keepTopFraction?: number | null;
  captionSource?: CaptionSource;
  captionPrompt?: string | null;
  maxNewTokens?: number;
  numBeams?: number;
  /**
   * CLIP reranking of candidate captions (LAION-COCO): `count` candidates per image (beam search's best
   * hypotheses; numBeams defaults to `count` and must be >= it), scored with the filter's CLIP, the best
   * kept as `caption_generated`; candidates and scores stored in the shard. Default null: off.
   */
  captionCandidates?: CaptionCandidatesSpec | null;
  batchSize?: number;
  device?: OnnxDeviceRequest;
}

/** How candidate captions are made and chosen: beam search's best `count` (or `count` seeded samples), the highest CLIP score kept. */
export interface CaptionCandidatesSpec {
  count: number;
  /** How the caption is chosen among the candidates: `clip` (the only one: highest CLIP score). */
  select?: 'clip';
  /** `beams` (default): beam search's best hypotheses; `sampling`: seeded samples (datasets/filter/sampling.ts). */
  from?: 'beams' | 'sampling';
  /** Sampling only: seed (default 0), temperature (default 1.0), top_p (default 1.0). */
  seed?: number;
  temperature?: number;
  topP?: number;
}

/** A model as the plan pins it: directory and sha256 of every file. */
export interface PlannedModel {
  dir: string;
  files: ModelFileHash[];
}

/** Captioner generation options (part of the fingerprint). */
export interface PlannedCaptionOptions {
  maxNewTokens: number;
  numBeams: number;
  prompt: string | null;
  /** Present only with reranking (so plans without it keep their fingerprints). */
  candidates?:
    | { count: number; select: 'clip'; from: 'beams' }
    | { count: number; select: 'clip'; from: 'sampling'; seed: number; temperature: number; topP: number };
}

/** The plan of one filter output version (`plan.json`). */
export interface FilterPlan {
  stage: 'filter';
  stageVersion: number;
  datasetName: string;
  version: number;
  datasetId: string;
  fingerprint: string;
  /** The source version pinned by its manifest's sha256 (datasets/shards/source-version.ts). */
  source: PinnedSource;
  policy: SelectionPolicy;
  clip: PlannedModel;
  /** `type`: the captioner architecture (config.json's model_type; absent in plans made before BLIP support: vit-gpt2). */
  captioner: (PlannedModel & { options: PlannedCaptionOptions; type?: CaptionerType }) | null;
  /** Throughput options (not in the fingerprint). */
  batchSize: number;
  device: OnnxDeviceRequest;
  createdAt: string;
}

export interface FilterPlanOutcome {
  plan: FilterPlan;
  resumed: boolean;
}

/** Read the filter plan of an output version; throws when it is missing or not a filter plan. */
export async function readFilterPlan(storage: ArtifactStorage, name: string, version: number): Promise<FilterPlan> {
  const layout = new DatasetLayout(storage, name, version);
  const plan = await readVersionPlan<FilterPlan>(storage, layout);
  if (!plan || plan.stage !== 'filter') {
    throw new MissingFileError(
      `dataset ${layout.id} has no filter plan at ${layout.planUri}`,
      'run the filter stage (kiln run filter) to plan it first.',
    );
  }
  return plan;
}

/** The reranking option, validated (null when off). */
function captionCandidates(spec: FilterPlanSpec, hasCaptioner: boolean): PlannedCaptionOptions['candidates'] | null {
  const c = spec.captionCandidates;
  if (c === undefined || c === null) return null;
  if (typeof c !== 'object' || typeof c.count !== 'number' || !Number.isInteger(c.count) || c.count < 1) {
    throw new ConfigError(
      `captionCandidates.count is ${JSON.stringify((c as { count?: unknown } | null)?.count)}; it must be an integer >= 1`,
      'give the number of candidate captions per image, e.g. captionCandidates: { count: 4 } (or omit captionCandidates to turn reranking off).',
    );
  }
  if (c.select !== undefined && c.select !== 'clip') {
    throw new ConfigError(
      `captionCandidates.select is ${JSON.stringify(c.select)}`,
      'use select "clip" (the candidate with the highest CLIP score is kept), or omit it.',
    );
  }
  if (!hasCaptioner) {
    throw new ConfigError(
      'captionCandidates is set but no captioner model was given, so there are no candidate captions to rerank',
      'pass a captioner model directory (captionerModelDir / --captioner DIR), or omit captionCandidates.',
    );
  }
  if (typeof spec.clipModelDir !== 'string' || spec.clipModelDir.length === 0) {
    throw new ConfigError(
      "captionCandidates is set but no CLIP model directory was given (clipModelDir): the candidates are scored with the filter's CLIP",
      'pass the CLIP model directory (clipModelDir / --clip DIR), or omit captionCandidates.',
    );
  }
  if (c.from === undefined || c.from === 'beams') {
    const extra = (['seed', 'temperature', 'topP'] as const).filter((k) => c[k] !== undefined);
    if (extra.length > 0)
      throw new ConfigError(
        `captionCandidates sets ${extra.join(', ')}, which only apply to sampled candidates`,
        'add from: "sampling", or remove them (beam search has no randomness).',
      );
    return { count: c.count, select: 'clip', from: 'beams' };
  }
  if (c.from !== 'sampling') {
    throw new ConfigError(
      `captionCandidates.from is ${JSON.stringify(c.from)}`,
      'use "beams" (beam search\'s best hypotheses, the default) or "sampling" (seeded samples).',
    );
  }
  const seed = c.seed ?? 0;
  const temperature = c.temperature ?? 1;
  const topP = c.topP ?? 1;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new ConfigError(`captionCandidates.seed is ${seed}`, 'pass an integer from 0 to 4294967295 (default 0).');
  if (!(typeof temperature === 'number' && temperature > 0 && Number.isFinite(temperature)))
    throw new ConfigError(`captionCandidates.temperature is ${temperature}`, 'pass a number > 0 (default 1.0).');
  if (!(typeof topP === 'number' && topP > 0 && topP <= 1))
    throw new ConfigError(
      `captionCandidates.topP is ${topP}`,
      'pass a number in (0, 1] (default 1.0: no nucleus cut).',
    );
  return { count: c.count, select: 'clip', from: 'sampling', seed, temperature, topP };
}

/** Validate options and the source; check and hash the models (no file is written). */
async function resolvePlan(
  storage: ArtifactStorage,
  spec: FilterPlanSpec,
): Promise<Omit<FilterPlan, 'version' | 'datasetId' | 'createdAt'>> {
  const policy = selectionPolicy({
    threshold: spec.threshold,
    keepTopFraction: spec.keepTopFraction,
    captionSource: spec.captionSource,
  });
  const batchSize = positiveInt('batchSize', spec.batchSize ?? 32);
  const device = parseOnnxDeviceRequest(spec.device, 'the device option');
  const hasCaptioner = typeof spec.captionerModelDir === 'string' && spec.captionerModelDir.length > 0;
  if (policy.captionSource === 'generated' && !hasCaptioner) {
    throw new ConfigError(
      'the threshold applies to the generated caption, but no captioner model was given',
      'pass a captioner model directory (--captioner DIR), or apply the threshold to the original captions (--threshold-caption original).',
    );
  }
  const candidates = captionCandidates(spec, hasCaptioner);
  const options: PlannedCaptionOptions = {
    maxNewTokens: positiveInt('maxNewTokens', spec.maxNewTokens ?? 30),
    numBeams: positiveInt('numBeams', spec.numBeams ?? (candidates?.from === 'beams' ? candidates.count : 1)),
    prompt: spec.captionPrompt && spec.captionPrompt.length > 0 ? spec.captionPrompt : null,
    ...(candidates ? { candidates } : {}),
  };
  if (candidates && candidates.from === 'beams' && options.numBeams < candidates.count) {
    throw new ConfigError(
      `captionCandidates.count is ${candidates.count} but numBeams is ${options.numBeams}: ` +
        "the candidates are beam search's best hypotheses, at most numBeams per image",
      `set numBeams to at least ${candidates.count} (or omit it: it defaults to captionCandidates.count), or lower captionCandidates.count.`,
    );
  }
  const clipDir = await checkModelDir(spec.clipModelDir, 'clip');
  const captionerDir = hasCaptioner ? await checkModelDir(spec.captionerModelDir as string, 'captioner') : null;
  // The plan names an s3:// model by its location, never by this machine's cache copy: every
  // worker that runs a shard resolves it through its own cache (and checks the planned hashes).
  const planned = (location: string, local: string) => (isObjectLocation(location) ? location : local);
  const clip: PlannedModel = { dir: planned(spec.clipModelDir, clipDir), files: await hashModelDir(clipDir) };
  const captioner = captionerDir
    ? {
        dir: planned(spec.captionerModelDir as string, captionerDir),
        files: await hashModelDir(captionerDir),
        options,
        type: await captionerType(captionerDir),
      }
    : null;

  const source = await pinSourceVersion(storage, spec.datasetName, spec.sourceVersion, 'filter');
  const fingerprint = sha256Hex(
    JSON.stringify({
      stage: 'filter',
      stageVersion: FILTER_STAGE_VERSION,
      source: [source.id, source.manifestSha256],
      policy,
      clip: clip.files.map((f) => [f.path, f.sha256]),
      captioner: captioner ? { files: captioner.files.map((f) => [f.path, f.sha256]), options } : null,
    }),
  );
  return {
    stage: 'filter',
    stageVersion: FILTER_STAGE_VERSION,
    datasetName: spec.datasetName,
    fingerprint,
    source,
    policy,
    clip,
    captioner,
    batchSize,
    device,
  };
}

/**
 * Plan (or find the existing plan of) a filter run. `latestRecordedVersion` is the highest version
 * of this dataset name recorded in lineage; new versions are numbered after it and the source.
 * Throws MissingFileError (model dir, source manifest) and ConfigError (options) before writing.
 */
export async function planFilter(
  storage: ArtifactStorage,
  spec: FilterPlanSpec,
  latestRecordedVersion: number,
): Promise<FilterPlanOutcome> {
  datasetVersionId(spec.datasetName, spec.sourceVersion);
  if (spec.outputVersion !== undefined && spec.outputVersion === spec.sourceVersion) {
    throw new ConfigError(
      `the output version v${spec.outputVersion} is the source version`,
      'datasets are immutable: omit the output version to write the next one.',
    );
  }
  const resolved = await resolvePlan(storage, spec);
  // From the version after the source: a version with the same plan is resumed (finished or not);
  // a new one takes the first free version after the newest one recorded in lineage.
  const chosen = await chooseVersion(storage, {
    datasetName: spec.datasetName,
    fingerprint: resolved.fingerprint,
    explicit: spec.outputVersion,
    first: spec.sourceVersion + 1,
    latestRecorded: latestRecordedVersion,
  });
  if (chosen.resumed) {
    // Temp files of writers killed in an earlier run of this version.
    if (!(await storage.exists(chosen.layout.manifestUri))) await sweepVersion(storage, chosen.layout);
    return { plan: (await readVersionPlan<FilterPlan>(storage, chosen.layout))!, resumed: true };
  }
  const version = chosen.layout.version;
  const layout = new DatasetLayout(storage, spec.datasetName, version);
  await sweepVersion(storage, layout);
  const plan: FilterPlan = { ...resolved, version, datasetId: layout.id, createdAt: new Date().toISOString() };
  await storage.writeAtomic(layout.planUri, `${JSON.stringify(plan, null, 2)}\n`);
  return { plan, resumed: false };
}

async function sweepVersion(storage: ArtifactStorage, layout: DatasetLayout): Promise<void> {
  await sweepTempFiles(storage, layout.shardsDirUri);
  await sweepTempFiles(storage, scoresDirUri(storage, layout));
}
