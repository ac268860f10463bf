/**
 * Evaluation activities of the train workflow: thin adapters over eval/ (and training/inference.ts).
 * Inputs and results are small JSON (URIs, steps, numbers, the protocol), never images or tensors.
 *
 * - evaluateTrainingCheckpoint (kiln-gpu): FID, KID (+ CLIP score) of one checkpoint with the fixed
 *   sample plan, the early-stopping decision over the run's evaluation history on the configured
 *   metric, and, when this checkpoint is the new best, its metric in `checkpoints/metrics.json`
 *   (direction from the metric: metricMode) so retention keeps it.
 *   Idempotent: the record is `<runUri>/evals/step-NNNNNNNNN.json`; when it exists it is reused.
 *   Lineage run `${jobId}/eval/step-${step}`. Timeout: minutes to hours (sample count); heartbeats.
 * - recordFailedEvaluation (kiln-io): when evaluateTrainingCheckpoint failed for good, records the
 *   failure as that step's evaluation (`failed`, no numbers) and returns the decision, in which it
 *   counts as an evaluation without improvement.
 * The closing activities (best checkpoint, HTML report) are in train-report.ts.
 * Heavy modules (TensorFlow.js, ONNX Runtime) are imported lazily, so a kiln-io-only worker never
 * loads them.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { MissingFileError } from '../infra/errors.js';
import { sha256File, sha256Hex } from '../infra/hash.js';
import { absoluteLocation, locationFileUri, locationName } from '../infra/location.js';
import { localModelDir } from '../infra/storage-cache.js';
import { manifestShardUris } from '../datasets/shards/manifest.js';
import {
  earlyStoppingDecision,
  metricMode,
  metricValue,
  METRIC_LABEL,
  type EarlyStoppingDecision,
  type StoppingMetric,
} from '../eval/early-stopping.js';
import { defaultStoppingMetric } from '../eval/protocol.js';
import { EVAL_DEFAULTS, resolveEvalOptions, type ResolvedEvalOptions, type TrainEvalOptions } from '../eval/options.js';
import type { EvalProtocol } from '../eval/report.js';
import type { EvaluationRecord } from '../eval/evaluate.js';
import type { FeatureExtractor } from '../eval/features.js';
import type { ReferenceStats } from '../eval/reference-stats.js';
import type { RgbImage } from '../eval/clean-resize.js';
import type { ClipScorer } from '../datasets/filter/clip-scorer.js';
import {
  readCheckpointState,
  recordCheckpointMetric,
  TENSOR_FILES,
  type CheckpointState,
} from '../training/checkpoint.js';
import type { TfBackendChoice } from '../infra/tfjs-backend.js';
import type { ActivityDeps } from './deps.js';
import { activityContext, withRun } from './run-lifecycle.js';
import { linkIfRecorded, pad9, resolveDatasetRef, type DatasetPin } from './run-artifacts.js';

/** Evaluation options of a training run: eval/options.ts (one zod schema, one set of defaults). */
export type { TrainEvalOptions } from '../eval/options.js';

/**
 * One evaluation's numbers as the workflow carries them (JSON: null when not measured or not
 * finite). `failed` says why an evaluation failed or which metrics were not finite, so a NaN stored
 * as null still counts as an evaluation without improvement.
 */
export interface EvalPoint {
  step: number;
  fid: number | null;
  kid?: number | null;
  clipScore: number | null;
  failed?: string | null;
}

/** The workflow's point for a stored evaluation record (what prepareTrainingRun reloads, too). */
export function evalPointFromRecord(r: {
  step: number;
  fid: number | null;
  kid?: number | null;
  clipScore: number | null;
  failed?: string | null;
}): EvalPoint {
  const fin = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  // fid and kid are always measured (kid from the KID release on): null or non-finite means NaN.
  const bad = [
    r.fid === null || !Number.isFinite(r.fid) ? 'FID' : null,
    'kid' in r && (r.kid === null || !Number.isFinite(r.kid!)) ? 'KID' : null,
  ].filter((x) => x);
  const failed = r.failed ?? (bad.length ? `${bad.join(' and ')} not finite` : null);
  return {
    step: r.step,
    fid: fin(r.fid),
    ...('kid' in r ? { kid: fin(r.kid) } : {}),
    clipScore: fin(r.clipScore),
    ...(failed ? { failed } : {}),
  };
}

/** The stopping metric of these options with the extractor's feature dimension (see TrainEvalOptions.metric). */
export function resolveStoppingMetric(
  o: Pick<TrainEvalOptions, 'metric' | 'sampleCount'>,
  featureDim: number,
): StoppingMetric {
  return o.metric ?? defaultStoppingMetric(o.sampleCount ?? EVAL_DEFAULTS.sampleCount, featureDim);
}

export interface RecordFailedEvaluationInput extends EvaluateTrainingInput {
  /** The failure, as the workflow saw it. */
  error: string;
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
export interface StoredEvaluation {
  format: 'kiln-eval-v1';
  record: EvaluationRecord;
  checkpoint: { uri: string; step: number; sha256s: Record<string, string> };
  extractor: { modelUri: string; modelSha256: string; modelBytes: number; name: string };
  reference: {
    name: string;
    setHash: string;
    count: number;
    statsUri: string;
    statsSha256: string;
    dataset: DatasetPin | null;
  };
  clip: { dir: string; files: { path: string; sha256: string; bytes: number }[] } | null;
  sampler: { method: string; steps: number; guidanceScale: number; seed: number; batchSize: number };
  backend: string;
}

/** What `<runUri>/evals/step-N.json` holds for an evaluation that failed. */
export interface FailedEvaluation {
  format: 'kiln-eval-failed-v1';
  record: {
    step: number;
    fid: null;
    kid: null;
    clipScore: null;
    failed: string;
    protocol: EvalProtocol;
    sampleGrid: null;
    samplePrompts: string[];
  };
  checkpoint: { uri: string; step: number };
}

export function createEvalActivities(deps: ActivityDeps) {
  const { storage, lineage } = deps;

  /** Cached reference statistics for the configured reference set and extractor. */
  /**
   * Cached reference statistics and rows for the configured reference set and extractor: at most
   * `referenceMaxImages` (5,000) images, each decoded and brought to the training resolution as
   * training decodes them (training/image-decode.ts: sharp cover/centre crop), so the cache entry is
   * a function of (set, cap, resolution, extractor) and never holds native-resolution work.
   */
  async function referenceFor(
    extractor: FeatureExtractor,
    o: ResolvedEvalOptions,
    resolution: number,
    onProgress: (n: number) => void,
  ): Promise<{ ref: ReferenceStats; name: string; setHash: string; dataset: DatasetPin | null; resize: string }> {
    const [{ hashReferenceSet, referenceStatistics }, { imageSetFeatures }, { decodeTrainingImage }] =
      await Promise.all([
        import('../eval/reference-stats.js'),
        import('../eval/features.js'),
        import('../training/image-decode.js'),
      ]);
    const max = o.referenceMaxImages;
    const resize = `decoded and resized to ${resolution}x${resolution} as training does (sharp cover/centre), first ${max} images`;
    const selection = {
      id: `select:success-rows;max=${max};resize=train-cover-centre-${resolution}`,
      sha256: sha256Hex(`${max}|${resolution}`),
    };
    const decodeRgb = async (bytes: Uint8Array): Promise<RgbImage | null> => {
      const x = await decodeTrainingImage(bytes, resolution);
      return x
        ? {
            width: resolution,
            height: resolution,
            data: Uint8Array.from(x, (v) => Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)))),
          }
        : null;
    };
    let setHash: string,
      name: string,
      dataset: DatasetPin | null = null;
    let images: () => AsyncGenerator<RgbImage>;
    if (o.referenceDataset) {
      const { pin, manifest } = await resolveDatasetRef(deps, o.referenceDataset);
      dataset = pin;
      name = `${manifest.id} (success rows, first ${max})`;
      setHash = hashReferenceSet([
        ...manifest.shards.map((s) => ({ id: `${manifest.id}/${s.path}`, sha256: s.sha256 })),
        selection,
      ]);
      const { readShardRows } = await import('../datasets/shards/reader.js');
      images = async function* () {
        let n = 0;
        for (const uri of manifestShardUris(storage, manifest)) {
          for await (const row of readShardRows(storage, uri, { columns: ['key', 'status', 'jpg'] })) {
            if (n >= max) return;
            if (row.status !== 'success' || !row.jpg) continue;
            const img = await decodeRgb(row.jpg);
            if (img) {
              n++;
              yield img;
            }
          }
        }
      };
    } else {
      const location = absoluteLocation(o.referenceDir!);
      const dir = await localModelDir(location); // s3:// reference images come through the local cache
      const files = (
        await readdir(dir).catch(() => {
          throw new MissingFileError(
            `reference image directory ${dir} does not exist`,
            'pass a directory of PNG/JPEG reference images (e.g. COCO val2014) or a reference dataset.',
          );
        })
      )
        .filter((f) => ['.png', '.jpg', '.jpeg', '.webp'].includes(extname(f).toLowerCase()))
        .sort()
        .slice(0, max);
      name = `directory ${locationName(location)} (${files.length} images)`;
      const members = [];
      for (const f of files) members.push({ id: f, sha256: await sha256File(join(dir, f)) });
      setHash = hashReferenceSet(members);
      images = async function* () {
        for (const f of files) {
          const img = await decodeRgb(await readFile(join(dir, f)));
          if (img) yield img;
        }
      };
    }
    const ref = await referenceStatistics(
      storage,
      { referenceSetHash: setHash, extractorSha256: extractor.modelSha256 },
      () => imageSetFeatures(extractor, images(), { onProgress }),
    );
    return { ref, name, setHash, dataset, resize };
  }

  /** Generate samples from the checkpoint and measure them (the expensive part). */
  async function measure(
    input: EvaluateTrainingInput,
    reportDirUri: string,
    state: CheckpointState,
    backend: TfBackendChoice,
  ): Promise<StoredEvaluation> {
    const ctx = activityContext();
    const o = resolveEvalOptions(input.eval);
    const [{ loadTrainedModel }, { loadFeatureExtractor }, { evaluateCheckpoint }, { DEFAULT_EVAL_PROMPTS }] =
      await Promise.all([
        import('../training/inference.js'),
        import('../eval/features.js'),
        import('../eval/evaluate.js'),
        import('../eval/eval-samples.js'),
      ]);
    ctx?.heartbeat({ phase: 'loading', step: input.step });
    const extractor = await loadFeatureExtractor(absoluteLocation(o.extractorDir), { batchSize: o.batchSize });
    try {
      const reference = await referenceFor(extractor, o, state.config.resolution, (n) =>
        ctx?.heartbeat({ phase: 'reference', images: n }),
      );
      const model = await loadTrainedModel(storage, input.checkpointUri);
      let clip: ClipScorer | undefined;
      try {
        if (o.clipModelDir)
          clip = await (
            await import('../datasets/filter/clip-scorer.js')
          ).loadClipScorer(absoluteLocation(o.clipModelDir));
        const guidanceScale = o.guidanceScale;
        const sampler = {
          method: model.sampler,
          steps: o.samplerSteps,
          guidanceScale,
          seed: o.seed,
          ...model.latentShape,
          schedule: model.schedule,
        };
        const batchSize = o.batchSize;
        const record = await evaluateCheckpoint(
          {
            storage,
            extractor,
            reference: reference.ref,
            reportDirUri,
            ...(clip
              ? { clip: { scorer: clip, name: `CLIP ${locationName(absoluteLocation(o.clipModelDir!))}` } }
              : {}),
            generate: {
              denoiser: model.denoiser,
              sampler,
              batchSize,
              decode: (x) => model.decode(x),
              encode: (prompts) => {
                const e = model.encode(prompts);
                return { cond: e.cond, uncond: guidanceScale === 1 ? null : e.uncond, dispose: e.dispose };
              },
            },
          },
          {
            step: input.step,
            prompts: o.prompts ?? DEFAULT_EVAL_PROMPTS,
            sampleCount: o.sampleCount,
            gridSamples: o.gridSamples,
            referenceSetName: reference.name,
            metric: resolveStoppingMetric(o, extractor.featureDim),
            referenceResize: reference.resize,
            onProgress: (done) => ctx?.heartbeat({ phase: 'sampling', step: input.step, done }),
          },
        );
        const sha256s: Record<string, string> = {
          'state.json': sha256Hex(await storage.read(storage.child(input.checkpointUri, 'state.json'))),
        };
        for (const f of TENSOR_FILES) sha256s[f] = state.files[f].sha256;
        const modelPath = join(extractor.dir, extractor.descriptor.model);
        return {
          format: 'kiln-eval-v1',
          record,
          checkpoint: { uri: input.checkpointUri, step: state.step, sha256s },
          extractor: {
            modelUri: locationFileUri(absoluteLocation(o.extractorDir), extractor.descriptor.model),
            modelSha256: extractor.modelSha256,
            modelBytes: (await stat(modelPath)).size,
            name: extractor.descriptor.name,
          },
          reference: {
            name: reference.name,
            setHash: reference.setHash,
            count: reference.ref.stats.count,
            statsUri: reference.ref.uri,
            statsSha256: reference.ref.statsSha256,
            dataset: reference.dataset,
          },
          clip: clip ? { dir: absoluteLocation(o.clipModelDir!), files: await clip.fileHashes() } : null,
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
  async function recordEvaluationLineage(
    runId: string,
    s: StoredEvaluation,
    evalUri: string,
    evalSha256: string,
    evalBytes: number,
    reportDirUri: string,
  ): Promise<string | null> {
    for (const name of Object.keys(s.checkpoint.sha256s))
      linkIfRecorded(deps, runId, storage.child(s.checkpoint.uri, name), 'consumed');
    lineage.recordArtifactOfRun(runId, 'consumed', {
      uri: s.extractor.modelUri,
      kind: 'fid-extractor',
      sha256: s.extractor.modelSha256,
      bytes: s.extractor.modelBytes,
      metadata: { name: s.extractor.name },
    });
    const statsBytes = (await storage.size(s.reference.statsUri)) ?? 0;
    lineage.recordArtifactOfRun(runId, 'consumed', {
      uri: s.reference.statsUri,
      kind: 'fid-reference-stats',
      sha256: s.reference.statsSha256,
      bytes: statsBytes,
      metadata: { referenceSet: s.reference.name, referenceSetHash: s.reference.setHash, count: s.reference.count },
    });
    if (s.reference.dataset) linkIfRecorded(deps, runId, s.reference.dataset.manifestUri, 'consumed');
    for (const f of s.clip?.files ?? []) {
      lineage.recordArtifactOfRun(runId, 'consumed', {
        uri: locationFileUri(s.clip!.dir, f.path),
        kind: 'clip-model-file',
        sha256: f.sha256,
        bytes: f.bytes,
      });
    }
    lineage.recordArtifactOfRun(runId, 'produced', {
      uri: evalUri,
      kind: 'eval-record',
      sha256: evalSha256,
      bytes: evalBytes,
      metadata: {
        step: s.record.step,
        fid: s.record.fid,
        kid: s.record.kid,
        kidNoiseStd: s.record.kidParts?.noiseStd ?? null,
        clipScore: s.record.clipScore,
        protocol: s.record.protocol,
      },
    });
    return s.record.sampleGrid ? storage.child(reportDirUri, ...s.record.sampleGrid.split('/')) : null;
  }

  /** The decision over history + this point; a new best goes to metrics.json (retention keeps exactly it). */
  async function decide(
    input: EvaluateTrainingInput,
    point: EvalPoint,
    metric: StoppingMetric,
  ): Promise<EarlyStoppingDecision> {
    const o = resolveEvalOptions(input.eval);
    const history = [...input.history.filter((h) => h.step !== input.step), point];
    const decision = earlyStoppingDecision(history, { metric, patience: o.patience, minDelta: o.minDelta });
    if (decision.latestIsBest && decision.bestValue !== null) {
      await recordCheckpointMetric(storage, input.runUri, input.step, metric, decision.bestValue, metricMode(metric));
    }
    return decision;
  }

  return {
    /**
     * After evaluateTrainingCheckpoint failed for good (retries spent, or a non-retryable error such
     * as non-finite features from a diverged model): store the failure as this step's evaluation and
     * return the decision, in which it counts as an evaluation without improvement. Idempotent: an
     * existing record for the step (failed or not) is kept.
     */
    async recordFailedEvaluation(input: RecordFailedEvaluationInput): Promise<EvaluateTrainingResult> {
      const o = input.eval;
      const evalUri = storage.child(input.runUri, 'evals', `step-${pad9(input.step)}.json`);
      const runId = `${input.jobId}/eval/step-${input.step}/failure`;
      return withRun(
        deps,
        {
          id: runId,
          jobId: input.jobId,
          stage: 'train.eval',
          params: { step: input.step, checkpointUri: input.checkpointUri, eval: o, failed: input.error },
        },
        async (run) => {
          let record: StoredEvaluation['record'] | FailedEvaluation['record'];
          if (await storage.exists(evalUri)) {
            record = (JSON.parse(await storage.readText(evalUri)) as StoredEvaluation | FailedEvaluation).record;
          } else {
            const protocol: EvalProtocol = {
              extractor: locationName(absoluteLocation(o.extractorDir)),
              extractorSha256: '',
              sampleCount: o.sampleCount ?? EVAL_DEFAULTS.sampleCount,
              seed: o.seed ?? EVAL_DEFAULTS.seed,
              referenceStatsSha256: '',
              ...(o.metric ? { metric: o.metric } : {}),
            };
            const failed: FailedEvaluation = {
              format: 'kiln-eval-failed-v1',
              checkpoint: { uri: input.checkpointUri, step: input.step },
              record: {
                step: input.step,
                fid: null,
                kid: null,
                clipScore: null,
                failed: input.error.slice(0, 2000),
                protocol,
                sampleGrid: null,
                samplePrompts: [],
              },
            };
            const content = `${JSON.stringify(failed, null, 1)}\n`;
            const written = await storage.writeAtomic(evalUri, content);
            lineage.recordArtifactOfRun(runId, 'produced', {
              uri: evalUri,
              kind: 'eval-record',
              sha256: written.sha256,
              bytes: Buffer.byteLength(content),
              metadata: { step: input.step, failed: failed.record.failed },
            });
            record = failed.record;
          }
          const metric = resolveStoppingMetric(o, record.protocol.featureDim ?? 2048);
          const point = evalPointFromRecord(record);
          if (metricValue(point, metric) === undefined) point.failed = `${METRIC_LABEL[metric]} was not measured`;
          const decision = await decide(input, point, metric);
          run.summarize({ failed: point.failed ?? null, metric, decision });
          return { point, evalUri, sampleGridUri: null, protocol: record.protocol, decision, reused: false };
        },
      );
    },

    /** FID, KID (+ CLIP score) of one checkpoint and the early-stopping decision; see the module comment. */
    async evaluateTrainingCheckpoint(input: EvaluateTrainingInput): Promise<EvaluateTrainingResult> {
      const ctx = activityContext();
      const o = input.eval;
      const runId = `${input.jobId}/eval/step-${input.step}`;
      const evalUri = storage.child(input.runUri, 'evals', `step-${pad9(input.step)}.json`);
      const reportDirUri = storage.child(input.runUri, 'report');
      // The backend the checkpoint trained on (sampling runs on it too), chosen before anything loads.
      const state = await readCheckpointState(storage, input.checkpointUri);
      const [{ selectTfBackend }, { backendOptionsFor }] = await Promise.all([
        import('../infra/tfjs-backend.js'),
        import('../training/op-threads.js'),
      ]);
      const backend = await selectTfBackend(backendOptionsFor(state.config));
      return withRun(
        deps,
        {
          id: runId,
          jobId: input.jobId,
          stage: 'train.eval',
          params: { step: input.step, checkpointUri: input.checkpointUri, eval: o },
          environment: {
            backend: backend.name,
            precision: backend.precision,
            attempt: ctx?.info.attempt ?? 1,
            extractorDir: absoluteLocation(o.extractorDir),
            ...(o.clipModelDir ? { clipModelDir: absoluteLocation(o.clipModelDir) } : {}),
          },
        },
        async (run) => {
          const reused = await storage.exists(evalUri);
          let stored: StoredEvaluation;
          if (reused) {
            stored = JSON.parse(await storage.readText(evalUri)) as StoredEvaluation;
          } else {
            stored = await measure(input, reportDirUri, state, backend);
            await storage.writeAtomic(evalUri, `${JSON.stringify(stored, null, 1)}\n`);
          }
          const bytes = await storage.read(evalUri);
          const gridUri = await recordEvaluationLineage(
            runId,
            stored,
            evalUri,
            sha256Hex(bytes),
            bytes.byteLength,
            reportDirUri,
          );
          if (gridUri && (await storage.exists(gridUri))) {
            const png = await storage.read(gridUri);
            lineage.recordArtifactOfRun(runId, 'produced', {
              uri: gridUri,
              kind: 'sample-grid',
              sha256: sha256Hex(png),
              bytes: png.byteLength,
              metadata: { step: input.step },
            });
          }
          const r = stored.record;
          const metric = resolveStoppingMetric(o, r.protocol.featureDim ?? 2048);
          const point = evalPointFromRecord(r);
          if (metricValue(point, metric) === undefined) point.failed = `${METRIC_LABEL[metric]} was not measured`;
          const decision = await decide(input, point, metric);
          const result: EvaluateTrainingResult = {
            point,
            evalUri,
            sampleGridUri: gridUri,
            protocol: r.protocol,
            decision,
            reused,
          };
          run.summarize({
            fid: r.fid,
            kid: r.kid,
            kidNoiseStd: r.kidParts?.noiseStd ?? null,
            clipScore: r.clipScore,
            metric,
            protocol: r.protocol,
            decision,
          });
          return result;
        },
      );
    },
  };
}
