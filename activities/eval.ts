/**
 * Evaluation activities of the train workflow: thin adapters over eval/ (and training/inference.ts).
 * Inputs and results are small JSON (URIs, steps, numbers, the protocol), never images or tensors.
 *
 * - evaluateTrainingCheckpoint (kiln-gpu): FID (+ CLIP score) of one checkpoint with the fixed
 *   sample plan, the early-stopping decision over the run's evaluation history, and, when this
 *   checkpoint is the new best, its metric in `checkpoints/metrics.json` so retention keeps it.
 *   Idempotent: the record is `<runUri>/evals/step-NNNNNNNNN.json`; when it exists it is reused.
 *   Lineage run `${jobId}/eval/step-${step}`. Timeout: minutes to hours (sample count); heartbeats.
 * - promoteBestCheckpoint (kiln-io): writes `<runUri>/best.json` naming the best checkpoint and
 *   its hashes. Lineage run `${jobId}/train/best`.
 * - writeTrainingReport (kiln-io): the static HTML report (eval/report.ts) at
 *   `<runUri>/report/index.html`. Lineage run `${jobId}/train/report`.
 *
 * `resolveDatasetRef` (dataset `name@vN` or a manifest URI) is shared with activities/train.ts.
 * Heavy modules (TensorFlow.js, ONNX Runtime) are imported lazily, so a kiln-io-only worker never
 * loads them.
 */
import { Context } from '@temporalio/activity';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError, MissingFileError } from '../infra/errors.js';
import { sha256File, sha256Hex } from '../infra/hash.js';
import { traceArtifact } from '../infra/lineage/trace.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { manifestShardUris, parseManifest, type DatasetManifest } from '../datasets/shards/manifest.js';
import { earlyStoppingDecision, type EarlyStoppingDecision, type StoppingMetric } from '../eval/early-stopping.js';
import { renderRunReport, type EvalProtocol, type ReportEvaluation, type TrainingPoint } from '../eval/report.js';
import type { EvaluationRecord } from '../eval/evaluate.js';
import type { FeatureExtractor } from '../eval/features.js';
import type { ReferenceStats } from '../eval/reference-stats.js';
import type { RgbImage } from '../eval/clean-resize.js';
import type { ClipScorer } from '../datasets/filter/clip-scorer.js';
import { listCheckpoints, readCheckpointState, recordCheckpointMetric, TENSOR_FILES, type CheckpointState } from '../training/checkpoint.js';
import type { TfBackendChoice } from '../infra/tfjs-backend.js';
import { writeRecordedArtifact } from './recorded-artifact.js';
import type { ActivityDeps } from './deps.js';
import { withRun } from './run-lifecycle.js';

/** Evaluation options of a training run (issue 6): every N steps, FID (+ CLIP score), early stopping. */
export interface TrainEvalOptions {
  /** Evaluate every N steps (a multiple of the chunk size, so it lands on a checkpoint). */
  everySteps: number;
  /** Generated samples per evaluation (default 256; FID is biased at small counts). */
  sampleCount?: number;
  /** Evaluations in a row without improvement that stop training (default 3). */
  patience?: number;
  /** Minimum change that counts as an improvement (default 0). */
  minDelta?: number;
  /** Metric for early stopping and for keeping the best checkpoint (default 'fid'). */
  metric?: StoppingMetric;
  /** Feature extractor directory (extractor.json + model.onnx; see eval/architecture.md). */
  extractorDir: string;
  /**
   * Reference images: a dataset version's success rows (`name@vN` or its manifest URI)... Default
   * (neither given): the training dataset itself (the recipe uses a held-out set such as COCO val).
   */
  referenceDataset?: string;
  /** ...or a directory of images (png/jpg/jpeg/webp). At most one of the two. */
  referenceDir?: string;
  /** Use at most this many reference images (default all). */
  referenceMaxImages?: number;
  /** CLIP model directory (transformers.js ONNX layout) for the CLIP score; required for metric 'clip_score'. */
  clipModelDir?: string;
  /** Prompt set (default eval/eval-samples.ts DEFAULT_EVAL_PROMPTS). */
  prompts?: string[];
  /** Noise seed shared by every evaluation of the run (default 0). */
  seed?: number;
  /** Sampler steps (DDIM, or Euler for flow matching; default 50). */
  samplerSteps?: number;
  /** Classifier-free guidance scale (default 4.5; 1 disables guidance). */
  guidanceScale?: number;
  /** Samples per batch (default 16). */
  batchSize?: number;
  /** Samples shown in the grid (default 16). */
  gridSamples?: number;
}

/** One evaluation's numbers as the workflow carries them (null: not measured or not finite). */
export interface EvalPoint {
  step: number;
  fid: number | null;
  clipScore: number | null;
}

export interface DatasetPin {
  datasetId: string;
  manifestUri: string;
  manifestSha256: string;
}

export interface EvaluateTrainingInput {
  jobId: string;
  runUri: string;
  step: number;
  checkpointUri: string;
  eval: TrainEvalOptions;
  /** Earlier evaluations of this run (the decision is over history + this one). */
  history: EvalPoint[];
}

export interface EvaluateTrainingResult {
  point: EvalPoint;
  evalUri: string;
  sampleGridUri: string | null;
  protocol: EvalProtocol;
  decision: EarlyStoppingDecision;
  /** true when the record already existed (a retried or repeated evaluation). */
  reused: boolean;
}

/** What `<runUri>/evals/step-N.json` holds: the eval record plus what it consumed, for lineage. */
interface StoredEvaluation {
  format: 'kiln-eval-v1';
  record: EvaluationRecord;
  checkpoint: { uri: string; step: number; sha256s: Record<string, string> };
  extractor: { modelUri: string; modelSha256: string; modelBytes: number; name: string };
  reference: { name: string; setHash: string; count: number; statsUri: string; statsSha256: string; dataset: DatasetPin | null };
  clip: { dir: string; files: { path: string; sha256: string; bytes: number }[] } | null;
  sampler: { method: string; steps: number; guidanceScale: number; seed: number; batchSize: number };
  backend: string;
}

export interface BestCheckpoint {
  uri: string;
  sha256: string;
  step: number;
  checkpointUri: string;
  sha256s: Record<string, string>;
  metric: StoppingMetric | null;
  value: number | null;
  selectedBy: 'metric' | 'final-step';
}

export interface PromoteBestInput {
  jobId: string;
  runUri: string;
  decision: EarlyStoppingDecision | null;
}

export interface TrainingReportInput {
  jobId: string;
  runUri: string;
  runName: string;
  /** ISO time from the workflow (so a retried activity renders the same bytes). */
  generatedAt: string;
  status: string;
  decision: EarlyStoppingDecision | null;
  dataset: DatasetPin;
  best: BestCheckpoint | null;
  stopReason: string | null;
  totalSteps: number;
}

/** Longest run / checkpoint lists shown in a report's lineage section (the newest are kept). */
const REPORT_LIST_CAP = 60;

export const pad9 = (n: number) => String(n).padStart(9, '0');
const finiteOrNull = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The current activity context, or undefined outside an activity (CLI, tests). */
export function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * Resolve a dataset reference: `name@v3`, `name@3`, `name` (newest version recorded in lineage) or
 * a manifest URI. Returns the pinned manifest (its sha256) and the parsed manifest.
 */
export async function resolveDatasetRef(deps: ActivityDeps, ref: string): Promise<{ pin: DatasetPin; manifest: DatasetManifest }> {
  let uri: string;
  if (ref.startsWith('file://')) {
    uri = ref;
  } else {
    const m = /^([A-Za-z0-9._=-]+?)(?:@v?(\d+))?$/.exec(ref);
    if (!m) throw new ConfigError(`dataset reference ${JSON.stringify(ref)} is not name@vN, name or a manifest URI`, 'pass e.g. laion-mini@v2 or file:///data/datasets/laion-mini/v2/manifest.json.');
    const version = m[2] ? Number(m[2]) : deps.lineage.latestDatasetVersionNumber(m[1]!);
    if (version < 1) throw new ConfigError(`no version of dataset ${JSON.stringify(m[1])} is recorded in lineage`, 'name the version (name@vN) or crawl the dataset first.');
    uri = new DatasetLayout(deps.storage, m[1]!, version).manifestUri;
  }
  if (!(await deps.storage.exists(uri))) throw new MissingFileError(`dataset manifest ${uri} does not exist`, 'check the dataset name and version (kiln lineage lists dataset versions), or run the stage that writes it.');
  const text = await deps.storage.readText(uri);
  const manifest = parseManifest(text, uri);
  return { pin: { datasetId: manifest.id, manifestUri: uri, manifestSha256: sha256Hex(text) }, manifest };
}

/**
 * Write an immutable run artifact and record it. If lineage already holds this URI with other
 * content (the run was continued by a later job), the new content goes to a sibling named by its
 * hash (`index.<sha12>.html`) instead of editing a recorded artifact.
 */
export async function writeRunArtifact(deps: ActivityDeps, runId: string, a: { uri: string; kind: string; content: string | Uint8Array; metadata?: Record<string, unknown> }) {
  const sha = sha256Hex(a.content);
  const recorded = deps.lineage.getArtifactByUri(a.uri);
  let uri = a.uri;
  if (recorded && recorded.sha256 !== sha) {
    const slash = uri.lastIndexOf('/');
    const name = uri.slice(slash + 1);
    const dot = name.lastIndexOf('.');
    uri = deps.storage.child(uri.slice(0, slash), dot > 0 ? `${name.slice(0, dot)}.${sha.slice(0, 12)}${name.slice(dot)}` : `${name}.${sha.slice(0, 12)}`);
  }
  return writeRecordedArtifact(deps, runId, { ...a, uri });
}

/** Link an already-recorded artifact to a run (no-op when it is not recorded). */
export function linkIfRecorded(deps: ActivityDeps, runId: string, uri: string, role: 'consumed' | 'produced'): void {
  const a = deps.lineage.getArtifactByUri(uri);
  if (a) deps.lineage.linkArtifact(runId, a.id, role);
}

export function createEvalActivities(deps: ActivityDeps) {
  const { storage, lineage } = deps;

  /** Cached reference statistics for the configured reference set and extractor. */
  async function referenceFor(extractor: FeatureExtractor, o: TrainEvalOptions, onProgress: (n: number) => void): Promise<{ ref: ReferenceStats; name: string; setHash: string; dataset: DatasetPin | null }> {
    const [{ hashReferenceSet, referenceStatistics }, { decodeRgb, imageSetStatistics }] = await Promise.all([import('../eval/reference-stats.js'), import('../eval/features.js')]);
    const max = o.referenceMaxImages ?? Infinity;
    const selection = { id: `select:success-rows;max=${Number.isFinite(max) ? max : 'all'}`, sha256: sha256Hex(String(max)) };
    let setHash: string, name: string, dataset: DatasetPin | null = null;
    let images: () => AsyncGenerator<RgbImage>;
    if (o.referenceDataset) {
      const { pin, manifest } = await resolveDatasetRef(deps, o.referenceDataset);
      dataset = pin;
      name = `${manifest.id} (success rows${Number.isFinite(max) ? `, first ${max}` : ''})`;
      setHash = hashReferenceSet([...manifest.shards.map((s) => ({ id: `${manifest.id}/${s.path}`, sha256: s.sha256 })), selection]);
      const { readShardRows } = await import('../datasets/shards/reader.js');
      images = async function* () {
        let n = 0;
        for (const uri of manifestShardUris(storage, manifest)) {
          for await (const row of readShardRows(storage, uri, { columns: ['key', 'status', 'jpg'] })) {
            if (n >= max) return;
            if (row.status !== 'success' || !row.jpg) continue;
            const img = await decodeRgb(row.jpg).catch(() => null);
            if (img) { n++; yield img; }
          }
        }
      };
    } else {
      const dir = resolve(o.referenceDir!);
      const files = (await readdir(dir).catch(() => { throw new MissingFileError(`reference image directory ${dir} does not exist`, 'pass a directory of PNG/JPEG reference images (e.g. COCO val2014) or a reference dataset.'); }))
        .filter((f) => ['.png', '.jpg', '.jpeg', '.webp'].includes(extname(f).toLowerCase())).sort().slice(0, Number.isFinite(max) ? max : undefined);
      name = `directory ${basename(dir)} (${files.length} images)`;
      const members = [];
      for (const f of files) members.push({ id: f, sha256: await sha256File(join(dir, f)) });
      setHash = hashReferenceSet(members);
      images = async function* () {
        for (const f of files) yield await decodeRgb(await readFile(join(dir, f)));
      };
    }
    const ref = await referenceStatistics(storage, { referenceSetHash: setHash, extractorSha256: extractor.modelSha256 },
      () => imageSetStatistics(extractor, images(), { onProgress }));
    return { ref, name, setHash, dataset };
  }

  /** Generate samples from the checkpoint and measure them (the expensive part). */
  async function measure(input: EvaluateTrainingInput, reportDirUri: string, state: CheckpointState, backend: TfBackendChoice): Promise<StoredEvaluation> {
    const ctx = activityContext();
    const o = input.eval;
    const [{ loadTrainedModel }, { loadFeatureExtractor }, { evaluateCheckpoint }, { DEFAULT_EVAL_PROMPTS }] = await Promise.all([
      import('../training/inference.js'), import('../eval/features.js'), import('../eval/evaluate.js'), import('../eval/eval-samples.js')]);
    ctx?.heartbeat({ phase: 'loading', step: input.step });
    const extractor = await loadFeatureExtractor(resolve(o.extractorDir), { batchSize: o.batchSize ?? 16 });
    try {
      const reference = await referenceFor(extractor, o, (n) => ctx?.heartbeat({ phase: 'reference', images: n }));
      const model = await loadTrainedModel(storage, input.checkpointUri);
      let clip: ClipScorer | undefined;
      try {
        if (o.clipModelDir) clip = await (await import('../datasets/filter/clip-scorer.js')).loadClipScorer(resolve(o.clipModelDir));
        const guidanceScale = o.guidanceScale ?? 4.5;
        const sampler = {
          method: model.denoiser.prediction === 'flow' ? 'euler' as const : 'ddim' as const, steps: o.samplerSteps ?? 50, guidanceScale, seed: o.seed ?? 0,
          ...model.latentShape, schedule: model.schedule,
        };
        const batchSize = o.batchSize ?? 16;
        const record = await evaluateCheckpoint({
          storage, extractor, reference: reference.ref, reportDirUri,
          ...(clip ? { clip: { scorer: clip, name: `CLIP ${basename(clip.modelDir)}` } } : {}),
          generate: {
            denoiser: model.denoiser, sampler, batchSize, decode: (x) => model.decode(x),
            encode: (prompts) => {
              const e = model.encode(prompts);
              return { cond: e.cond, uncond: guidanceScale === 1 ? null : e.uncond, dispose: e.dispose };
            },
          },
        }, {
          step: input.step, prompts: o.prompts ?? DEFAULT_EVAL_PROMPTS, sampleCount: o.sampleCount ?? 256, gridSamples: o.gridSamples ?? 16,
          referenceSetName: reference.name, onProgress: (done) => ctx?.heartbeat({ phase: 'sampling', step: input.step, done }),
        });
        const sha256s: Record<string, string> = { 'state.json': sha256Hex(await storage.read(storage.child(input.checkpointUri, 'state.json'))) };
        for (const f of TENSOR_FILES) sha256s[f] = state.files[f].sha256;
        const modelPath = join(extractor.dir, extractor.descriptor.model);
        return {
          format: 'kiln-eval-v1', record,
          checkpoint: { uri: input.checkpointUri, step: state.step, sha256s },
          extractor: { modelUri: pathToFileURL(modelPath).href, modelSha256: extractor.modelSha256, modelBytes: (await stat(modelPath)).size, name: extractor.descriptor.name },
          reference: { name: reference.name, setHash: reference.setHash, count: reference.ref.stats.count, statsUri: reference.ref.uri, statsSha256: reference.ref.statsSha256, dataset: reference.dataset },
          clip: clip ? { dir: clip.modelDir, files: await clip.fileHashes() } : null,
          sampler: { method: sampler.method, steps: sampler.steps, guidanceScale, seed: sampler.seed, batchSize },
          backend: backend.name,
        };
      } finally {
        await clip?.dispose();
        model.dispose();
      }
    } finally {
      await extractor.close();
    }
  }

  /** Record what an evaluation consumed and produced. */
  async function recordEvaluationLineage(runId: string, s: StoredEvaluation, evalUri: string, evalSha256: string, evalBytes: number, reportDirUri: string): Promise<string | null> {
    for (const name of Object.keys(s.checkpoint.sha256s)) linkIfRecorded(deps, runId, storage.child(s.checkpoint.uri, name), 'consumed');
    lineage.recordArtifactOfRun(runId, 'consumed', { uri: s.extractor.modelUri, kind: 'fid-extractor', sha256: s.extractor.modelSha256, bytes: s.extractor.modelBytes, metadata: { name: s.extractor.name } });
    const statsBytes = (await storage.size(s.reference.statsUri)) ?? 0;
    lineage.recordArtifactOfRun(runId, 'consumed', { uri: s.reference.statsUri, kind: 'fid-reference-stats', sha256: s.reference.statsSha256, bytes: statsBytes, metadata: { referenceSet: s.reference.name, referenceSetHash: s.reference.setHash, count: s.reference.count } });
    if (s.reference.dataset) linkIfRecorded(deps, runId, s.reference.dataset.manifestUri, 'consumed');
    for (const f of s.clip?.files ?? []) {
      lineage.recordArtifactOfRun(runId, 'consumed', { uri: pathToFileURL(join(s.clip!.dir, f.path)).href, kind: 'clip-model-file', sha256: f.sha256, bytes: f.bytes });
    }
    lineage.recordArtifactOfRun(runId, 'produced', { uri: evalUri, kind: 'eval-record', sha256: evalSha256, bytes: evalBytes, metadata: { step: s.record.step, fid: s.record.fid, clipScore: s.record.clipScore, protocol: s.record.protocol } });
    return s.record.sampleGrid ? storage.child(reportDirUri, ...s.record.sampleGrid.split('/')) : null;
  }

  return {
    /** FID (+ CLIP score) of one checkpoint and the early-stopping decision; see the module comment. */
    async evaluateTrainingCheckpoint(input: EvaluateTrainingInput): Promise<EvaluateTrainingResult> {
      const ctx = activityContext();
      const o = input.eval;
      const metric: StoppingMetric = o.metric ?? 'fid';
      const runId = `${input.jobId}/eval/step-${input.step}`;
      const evalUri = storage.child(input.runUri, 'evals', `step-${pad9(input.step)}.json`);
      const reportDirUri = storage.child(input.runUri, 'report');
      // The backend the checkpoint trained on (sampling runs on it too), chosen before anything loads.
      const state = await readCheckpointState(storage, input.checkpointUri);
      const { selectTfBackend } = await import('../infra/tfjs-backend.js');
      const backend = await selectTfBackend(state.config.runtime.backend === 'auto' ? {} : { prefer: state.config.runtime.backend });
      return withRun(deps, {
        id: runId, jobId: input.jobId, stage: 'train.eval', params: { step: input.step, checkpointUri: input.checkpointUri, eval: o },
        environment: { backend: backend.name, precision: backend.precision, attempt: ctx?.info.attempt ?? 1, extractorDir: resolve(o.extractorDir), ...(o.clipModelDir ? { clipModelDir: resolve(o.clipModelDir) } : {}) },
      }, async (run) => {
        const reused = await storage.exists(evalUri);
        let stored: StoredEvaluation;
        if (reused) {
          stored = JSON.parse(await storage.readText(evalUri)) as StoredEvaluation;
        } else {
          stored = await measure(input, reportDirUri, state, backend);
          await storage.writeAtomic(evalUri, `${JSON.stringify(stored, null, 1)}\n`);
        }
        const bytes = await storage.read(evalUri);
        const gridUri = await recordEvaluationLineage(runId, stored, evalUri, sha256Hex(bytes), bytes.byteLength, reportDirUri);
        if (gridUri && (await storage.exists(gridUri))) {
          const png = await storage.read(gridUri);
          lineage.recordArtifactOfRun(runId, 'produced', { uri: gridUri, kind: 'sample-grid', sha256: sha256Hex(png), bytes: png.byteLength, metadata: { step: input.step } });
        }
        const r = stored.record;
        const point: EvalPoint = { step: input.step, fid: finiteOrNull(r.fid), clipScore: finiteOrNull(r.clipScore) };
        const history = [...input.history.filter((h) => h.step !== input.step), { step: input.step, fid: r.fid ?? NaN, clipScore: r.clipScore }];
        const decision = earlyStoppingDecision(history, { metric, patience: o.patience ?? 3, minDelta: o.minDelta ?? 0 });
        // Only improvements go to metrics.json, so retention keeps exactly the early-stopping best.
        if (decision.latestIsBest && decision.bestValue !== null) {
          await recordCheckpointMetric(storage, input.runUri, input.step, metric, decision.bestValue, metric === 'fid' ? 'min' : 'max');
        }
        const result: EvaluateTrainingResult = { point, evalUri, sampleGridUri: gridUri, protocol: r.protocol, decision, reused };
        run.summarize({ fid: r.fid, clipScore: r.clipScore, protocol: r.protocol, decision });
        return result;
      });
    },

    /** Write `<runUri>/best.json` naming the best checkpoint (by the metric, else the newest). */
    async promoteBestCheckpoint(input: PromoteBestInput): Promise<BestCheckpoint> {
      const runId = `${input.jobId}/train/best`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'train.promote', params: input }, async (run) => {
        const checkpoints = await listCheckpoints(storage, input.runUri);
        if (checkpoints.length === 0) throw new MissingFileError(`run ${input.runUri} has no checkpoint to promote`, 'train at least one chunk first.');
        const d = input.decision;
        const byMetric = d && d.bestStep !== null ? checkpoints.find((c) => c.step === d.bestStep) : undefined;
        const chosen = byMetric ?? checkpoints[checkpoints.length - 1]!;
        const state = await readCheckpointState(storage, chosen.uri);
        const sha256s: Record<string, string> = { 'state.json': sha256Hex(await storage.read(storage.child(chosen.uri, 'state.json'))) };
        for (const f of TENSOR_FILES) sha256s[f] = state.files[f].sha256;
        for (const name of Object.keys(sha256s)) linkIfRecorded(deps, runId, storage.child(chosen.uri, name), 'consumed');
        const body = {
          format: 'kiln-best-checkpoint-v1', runUri: input.runUri, step: chosen.step, checkpointUri: chosen.uri, sha256s,
          selectedBy: byMetric ? 'metric' as const : 'final-step' as const,
          metric: byMetric ? d!.metric : null, value: byMetric ? d!.bestValue : null,
          reason: byMetric ? d!.reason : d && d.bestStep !== null ? `the best checkpoint (step ${d.bestStep}) is missing; the newest is promoted` : 'no evaluation: the newest checkpoint is promoted',
        };
        const written = await writeRunArtifact(deps, runId, { uri: storage.child(input.runUri, 'best.json'), kind: 'best-checkpoint', content: `${JSON.stringify(body, null, 1)}\n`, metadata: { step: chosen.step } });
        const best: BestCheckpoint = { uri: written.uri, sha256: written.sha256, step: chosen.step, checkpointUri: chosen.uri, sha256s, metric: body.metric, value: body.value, selectedBy: body.selectedBy };
        run.summarize({ ...best, reason: body.reason });
        return best;
      });
    },

    /** Render the run's HTML report to `<runUri>/report/index.html` and record it. */
    async writeTrainingReport(input: TrainingReportInput): Promise<{ uri: string; sha256: string; evaluations: number; trainingPoints: number }> {
      const runId = `${input.jobId}/train/report`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'train.report', params: { runUri: input.runUri, status: input.status } }, async (run) => {
        const reportDirUri = storage.child(input.runUri, 'report');
        const training = await readTrainingCurve(input.runUri);
        const evaluations: ReportEvaluation[] = [];
        for (const name of await storage.list(storage.child(input.runUri, 'evals'))) {
          const uri = storage.child(input.runUri, 'evals', name);
          const s = JSON.parse(await storage.readText(uri)) as StoredEvaluation;
          evaluations.push({ step: s.record.step, fid: s.record.fid, clipScore: s.record.clipScore, protocol: s.record.protocol, sampleGrid: s.record.sampleGrid ?? null, samplePrompts: s.record.samplePrompts ?? [] });
          linkIfRecorded(deps, runId, uri, 'consumed');
          if (s.record.sampleGrid) linkIfRecorded(deps, runId, storage.child(reportDirUri, ...s.record.sampleGrid.split('/')), 'consumed');
        }
        const newest = (await listCheckpoints(storage, input.runUri)).at(-1);
        const state = newest ? await readCheckpointState(storage, newest.uri) : null;
        const c = state?.config;
        const html = renderRunReport({
          runId: input.runName, title: `Training run ${input.runName}`, generatedAt: input.generatedAt, status: input.status,
          summary: {
            job: input.jobId, status: input.status, dataset: input.dataset.datasetId, 'dataset manifest sha256': input.dataset.manifestSha256,
            'steps trained': state?.step ?? 0, 'total steps': input.totalSteps, 'stop reason': input.stopReason,
            'best checkpoint': input.best ? `step ${input.best.step}` : null, backend: state ? `${state.backend} (${state.precision})` : null,
            resolution: c?.resolution ?? null, denoiser: c ? `DiT width ${c.denoiser.width}, depth ${c.denoiser.depth}, patch ${c.denoiser.patchSize}` : null,
            'text encoder': c ? (c.textEncoder.clipDir ? `CLIP ${basename(c.textEncoder.clipDir)}` : `width ${c.textEncoder.width}, depth ${c.textEncoder.depth}`) : null,
            batch: c ? `${c.optim.microBatchSize} x ${c.optim.gradAccumSteps} accumulation` : null, 'peak LR': c?.optim.lr ?? null,
            objective: c ? `${c.objective.prediction}, PRX weight ${c.objective.prxWeight}` : null,
          },
          training, evaluations, earlyStopping: input.decision,
          lineage: runLineage(input.jobId, input.dataset.manifestUri, input.best),
        });
        const written = await writeRunArtifact(deps, runId, { uri: storage.child(reportDirUri, 'index.html'), kind: 'run-report', content: html, metadata: { status: input.status } });
        run.summarize({ uri: written.uri, sha256: written.sha256 });
        return { uri: written.uri, sha256: written.sha256, evaluations: evaluations.length, trainingPoints: training.length };
      });
    },
  };

  /** Loss and LR per step from the chunk logs (`<runUri>/train-log/*.json`), merged by step. */
  async function readTrainingCurve(runUri: string): Promise<TrainingPoint[]> {
    const byStep = new Map<number, TrainingPoint>();
    for (const name of await storage.list(storage.child(runUri, 'train-log'))) {
      const log = JSON.parse(await storage.readText(storage.child(runUri, 'train-log', name))) as { entries: { step: number; loss: number; lr: number; lrText: number }[] };
      for (const e of log.entries) byStep.set(e.step, { step: e.step, loss: e.loss, lr: e.lr, lrTextEncoder: e.lrText });
    }
    return [...byStep.values()].sort((a, b) => a.step - b.step);
  }

  /** The lineage shown in the report: the dataset's upstream trace and this job's finished runs (no timestamps). */
  function runLineage(jobId: string, manifestUri: string, best: BestCheckpoint | null): unknown {
    const manifest = lineage.getArtifactByUri(manifestUri);
    const trace = manifest ? traceArtifact(lineage, manifest) : null;
    const runs = lineage.runsOfJob(jobId).filter((r) => r.status !== 'running').map((r) => ({
      run: r.id, stage: r.stage, status: r.status, code: r.codeVersion,
      environment: Object.entries(r.environment).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', '),
      produced: lineage.artifactsOfRun(r.id, 'produced').length,
    }));
    const checkpoints = lineage.runsOfJob(jobId).filter((r) => r.stage === 'train.chunk')
      .flatMap((r) => lineage.artifactsOfRun(r.id, 'produced').filter((a) => a.kind === 'checkpoint-file').map((a) => ({ step: a.metadata.step, file: a.metadata.file, sha256: a.sha256, bytes: a.bytes })));
    const capped = <T>(list: T[], what: string) => (list.length <= REPORT_LIST_CAP ? list : [...list.slice(-REPORT_LIST_CAP), { note: `${list.length - REPORT_LIST_CAP} earlier ${what} not shown (see kiln lineage)` }]);
    return {
      dataset: trace ? {
        manifest: { uri: manifestUri, sha256: manifest!.sha256 },
        versions: trace.datasetVersions.map((d) => ({ id: d.id, parents: d.parents.join(', '), schema: d.schemaVersion })),
        upstreamRuns: trace.runs.map((r) => ({ run: r.id, stage: r.stage, status: r.status, code: r.codeVersion })),
        sources: trace.sources.map((a) => ({ kind: a.kind, uri: a.uri, sha256: a.sha256 })),
      } : { manifest: manifestUri, note: 'not recorded in lineage' },
      best: best ? { step: best.step, checkpoint: best.checkpointUri, ...best.sha256s } : null,
      runs: capped(runs, 'runs'),
      checkpoints: capped([...new Map(checkpoints.map((c) => [`${String(c.step)}/${String(c.file)}`, c])).values()], 'checkpoint files'),
    };
  }
}
