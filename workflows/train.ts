/**
 * trainWorkflow: trains a PRX-recipe model on a dataset version, durably (issues 5 and 6).
 *
 * 1. prepareTrainingRun (kiln-io) validates the input, pins the dataset manifest (sha256) and finds
 *    where a run of the same name stands (its newest checkpoint and earlier evaluations).
 * 1b. With a frozen VAE (`config.codec = { vae }`), buildLatentCache (kiln-gpu) encodes the dataset
 *    version's images once (resumable per shard, reused by later runs); every chunk then reads the
 *    latents from that cache instead of encoding images at every step.
 * 2. Chunks of `chunkSteps` steps run as trainChunk activities on kiln-gpu; every chunk ends on a
 *    multiple of chunkSteps and writes a checkpoint. A chunk heartbeats {step, loss}; a killed
 *    worker's chunk is retried after the heartbeat timeout and resumes from the newest checkpoint.
 * 3. Every `eval.everySteps` steps, evaluateTrainingCheckpoint (kiln-gpu) measures FID, KID (+ CLIP
 *    score) and returns the early-stopping decision on the run's metric (prepareTrainingRun resolves
 *    it: KID below feature_dim samples, else FID); when it says stop, training stops. An evaluation
 *    that fails for good (retries spent or a non-retryable error, e.g. NaN features from a diverged
 *    model) is recorded by recordFailedEvaluation and counts as an evaluation without improvement,
 *    so a run whose evaluations keep failing stops after `patience` of them instead of failing.
 * 4. promoteBestCheckpoint writes `<runUri>/best.json`, writeTrainingReport the HTML report; the
 *    result names the report, the best step and value, and the stop reason.
 *
 * History stays bounded: after `chunksPerRun` chunks (or when Temporal suggests it) the workflow
 * continues as new, carrying {step, evals, decision}. Cancelling waits for the running chunk to
 * checkpoint (WAIT_CANCELLATION_COMPLETED; the cancel reaches the chunk with its next heartbeat,
 * within 0.8 x the heartbeat timeout), then, in a non-cancellable scope, records the final
 * checkpoint, promotes the best evaluated one, writes the report and marks the run and job
 * 'cancelled'. A non-retryable activity error (NaN loss, bad config, empty dataset...) fails the
 * workflow with that error's message; the last good checkpoint stays. Deterministic: no I/O here, activity types only.
 * Query `progress` returns {phase, step, totalSteps, lastLoss, evals}.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  continueAsNew,
  defineQuery,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type {
  BestCheckpoint,
  EvalPoint,
  FinalCheckpoint,
  LatentCacheRef,
  PreparedTraining,
  TrainActivities,
  TrainEvalOptions,
} from '../activities/train.js';
import type { createLineageActivities } from '../activities/lineage.js';
import type { EarlyStoppingDecision } from '../eval/early-stopping.js';
import type { TrainingConfigInput } from '../training/config.js';
import { GPU_QUEUE, IO_QUEUE } from './queues.js';
import { kilnFailure, stageRetryPolicy } from './retry.js';
import { withJobRecord } from './sharded-stage.js';

export interface TrainWorkflowInput {
  /** Dataset version: `name@vN`, `name` (newest recorded) or a manifest URI... */
  dataset?: string;
  /** ...or the manifest URI under this name (as the pipeline passes it). One of the two. */
  datasetManifestUri?: string;
  /** Run directory name under `runs/` (default: the job id). Reusing a name resumes that run. */
  runName?: string;
  /** Training config (training/config.ts); missing values take the recipe's defaults. */
  config?: TrainingConfigInput;
  /** Steps to train (default config.totalSteps, else 1000). */
  totalSteps?: number;
  /** Steps per chunk activity = checkpoint interval (K). */
  chunkSteps: number;
  /** FID / CLIP score every N steps with early stopping; omitted: no evaluation. */
  eval?: TrainEvalOptions;
  /** Chunks per workflow run before continue-as-new (default 100). */
  chunksPerRun?: number;
  /** Heartbeat timeout of a chunk (default '60s'): how soon a dead worker's chunk is retried. */
  chunkHeartbeatTimeout?: string;
  /** Start-to-close timeout of a chunk (default '12 hours'). */
  chunkTimeout?: string;
  /** Start-to-close and heartbeat timeouts of an evaluation (default '6 hours', '10 minutes'). */
  evalTimeout?: string;
  evalHeartbeatTimeout?: string;
  /** Lineage job id (default: the workflow id). */
  jobId?: string;
  /** Internal: state carried across continue-as-new. */
  carried?: TrainCarried;
}

export interface TrainCarried {
  jobId: string;
  prepared: PreparedTraining;
  step: number;
  evals: EvalPoint[];
  decision: EarlyStoppingDecision | null;
  lastLoss: number | null;
  chunks: number;
  /** Workflow runs so far (1 + continue-as-new count). */
  runs: number;
  /** The dataset's latent cache when training with a VAE codec. */
  latentCache?: LatentCacheRef | null;
}

export interface TrainProgress {
  phase: string;
  step: number;
  totalSteps: number | null;
  lastLoss: number | null;
  evals: EvalPoint[];
}

export interface TrainWorkflowResult {
  jobId: string;
  runUri: string;
  status: 'completed' | 'stopped-early';
  finalStep: number;
  totalSteps: number;
  stopReason: string;
  bestStep: number;
  /** FID of the best checkpoint (null without FID evaluations). */
  bestFid: number | null;
  /** The metric early stopping decided on and the best checkpoint's value of it (null without evaluations). */
  metric: string | null;
  bestValue: number | null;
  best: BestCheckpoint;
  reportUri: string;
  finalCheckpoint: FinalCheckpoint | null;
  evaluations: EvalPoint[];
  chunks: number;
  runs: number;
}

export const trainProgressQuery = defineQuery<TrainProgress>('progress');

const retry = stageRetryPolicy({ maximumAttempts: 10 });

function activities(input: TrainWorkflowInput) {
  type Acts = TrainActivities & ReturnType<typeof createLineageActivities>;
  return {
    io: proxyActivities<Acts>({
      taskQueue: IO_QUEUE,
      startToCloseTimeout: '10 minutes',
      retry: { ...retry, maximumAttempts: 5 },
    }),
    /** Heartbeats (activities/train.ts): a worker killed while it runs costs a minute, not ten. */
    prepare: proxyActivities<TrainActivities>({
      taskQueue: IO_QUEUE,
      startToCloseTimeout: '10 minutes',
      heartbeatTimeout: '1 minute',
      retry: { ...retry, maximumAttempts: 5 },
    }),
    chunk: proxyActivities<TrainActivities>({
      taskQueue: GPU_QUEUE,
      startToCloseTimeout: input.chunkTimeout ?? '12 hours',
      heartbeatTimeout: input.chunkHeartbeatTimeout ?? '60s',
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry,
    }),
    eval: proxyActivities<TrainActivities>({
      taskQueue: GPU_QUEUE,
      startToCloseTimeout: input.evalTimeout ?? '6 hours',
      heartbeatTimeout: input.evalHeartbeatTimeout ?? '10 minutes',
      retry: { ...retry, maximumAttempts: 5 },
    }),
  };
}

/** A frozen VAE codec (`{ vae: dir }`) trains from a latent cache. */
function usesVae(config: TrainingConfigInput): boolean {
  return typeof config.codec === 'object' && config.codec !== null;
}

function configError(message: string): ApplicationFailure {
  return kilnFailure(
    'ConfigError',
    'KILN_CONFIG',
    `train: ${message}`,
    'fix the train input (kiln run train --help) and run it again.',
  );
}

/** Train, evaluate, stop early, promote the best checkpoint, write the report; see the module comment. */
export async function trainWorkflow(input: TrainWorkflowInput): Promise<TrainWorkflowResult> {
  const { workflowId } = workflowInfo();
  let s: TrainCarried | undefined = input.carried;
  let phase = s ? 'training' : 'starting';
  const jobId = s?.jobId ?? input.jobId ?? workflowId;
  setHandler(trainProgressQuery, () => ({
    phase,
    step: s?.step ?? 0,
    totalSteps: s?.prepared.totalSteps ?? input.totalSteps ?? null,
    lastLoss: s?.lastLoss ?? null,
    evals: s?.evals ?? [],
  }));
  const acts = activities(input);
  const datasetRef = input?.dataset ?? input?.datasetManifestUri;
  if (!s) {
    if (typeof datasetRef !== 'string' || datasetRef.length === 0)
      throw configError('input.dataset must name a dataset version (name@vN) or a manifest URI');
    if (!Number.isInteger(input.chunkSteps) || input.chunkSteps < 1)
      throw configError(`input.chunkSteps ${input.chunkSteps} must be a positive integer`);
  }
  const { carried: _carried, ...params } = input;
  return withJobRecord(
    acts.io,
    { jobId, kind: 'train', workflowId, params, started: s !== undefined },
    async () => {
      if (!s) {
        phase = 'preparing';
        const prepared = await acts.prepare.prepareTrainingRun({
          jobId,
          runName: input.runName ?? jobId,
          dataset: datasetRef!,
          config: input.config ?? {},
          totalSteps: input.totalSteps,
          chunkSteps: input.chunkSteps,
          eval: input.eval,
        });
        s = {
          jobId,
          prepared,
          step: prepared.startStep,
          evals: prepared.evals,
          decision: null,
          lastLoss: null,
          chunks: 0,
          runs: 1,
          latentCache: null,
        };
        if (usesVae(prepared.config)) {
          phase = 'caching latents';
          s.latentCache = await acts.chunk.buildLatentCache({
            jobId,
            dataset: prepared.dataset,
            config: prepared.config,
          });
        }
      }
      const st = s;
      const { runUri, totalSteps, config, dataset } = st.prepared;
      const K = input.chunkSteps;
      const ev = st.prepared.eval;
      let chunksThisRun = 0;
      while (st.step < totalSteps && !st.decision?.stop) {
        if (chunksThisRun >= (input.chunksPerRun ?? 100) || workflowInfo().continueAsNewSuggested) {
          await continueAsNew<typeof trainWorkflow>({ ...input, carried: { ...st, runs: st.runs + 1 } });
        }
        phase = 'training';
        const target = Math.min(totalSteps, (Math.floor(st.step / K) + 1) * K);
        const r = await acts.chunk.trainChunk({
          jobId,
          runUri,
          config,
          dataset,
          fromStep: st.step,
          steps: target - st.step,
          latentCache: st.latentCache ?? null,
        });
        st.step = r.step;
        st.lastLoss = r.lastLoss ?? st.lastLoss;
        st.chunks++;
        chunksThisRun++;
        if (ev && r.step % ev.everySteps === 0 && !st.evals.some((e) => e.step === r.step)) {
          phase = 'evaluating';
          const evalInput = {
            jobId,
            runUri,
            step: r.step,
            checkpointUri: r.checkpointUri,
            eval: ev,
            history: st.evals,
          };
          let e: Awaited<ReturnType<TrainActivities['evaluateTrainingCheckpoint']>>;
          try {
            e = await acts.eval.evaluateTrainingCheckpoint(evalInput);
          } catch (err) {
            if (isCancellation(err) || !(err instanceof ActivityFailure)) throw err;
            log.warn('train: evaluation failed; it counts as no improvement', {
              step: r.step,
              error: clearFailure(err).message,
            });
            e = await acts.io.recordFailedEvaluation({ ...evalInput, error: clearFailure(err).message });
          }
          st.evals.push(e.point);
          st.decision = e.decision;
        }
      }
      phase = 'promoting';
      const stopped = st.decision?.stop === true && st.step < totalSteps;
      const stopReason = stopped
        ? st.decision!.reason
        : `reached totalSteps ${totalSteps}${st.decision ? ` (${st.decision.reason})` : ''}`;
      const best = await acts.io.promoteBestCheckpoint({ jobId, runUri, decision: st.decision });
      const finalCheckpoint = await acts.io.recordFinalCheckpoint({ jobId, runUri });
      phase = 'report';
      const report = await acts.io.writeTrainingReport({
        jobId,
        runUri,
        runName: input.runName ?? jobId,
        generatedAt: new Date().toISOString(),
        status: stopped ? 'stopped early' : 'completed',
        decision: st.decision,
        dataset,
        best,
        stopReason,
        totalSteps,
      });
      const result: TrainWorkflowResult = {
        jobId,
        runUri,
        status: stopped ? 'stopped-early' : 'completed',
        finalStep: st.step,
        totalSteps,
        stopReason,
        bestStep: best.step,
        bestFid: st.evals.find((e) => e.step === best.step)?.fid ?? null,
        metric: st.decision?.metric ?? null,
        bestValue: st.decision?.bestValue ?? null,
        best,
        reportUri: report.uri,
        finalCheckpoint,
        evaluations: st.evals,
        chunks: st.chunks,
        runs: st.runs,
      };
      await acts.io.finishTrainingRun({
        jobId,
        status: 'completed',
        result: { ...result, evaluations: st.evals.length },
      });
      phase = 'done';
      return result;
    },
    async (err) => {
      // Cancelled: withJobRecord runs this (and records the job) in a non-cancellable scope.
      if (isCancellation(err)) {
        phase = 'cancelled';
        await finalizeStopped(acts, jobId, input, s, 'cancelled');
        return { status: 'cancelled', rethrow: err };
      }
      const failure = clearFailure(err);
      phase = 'failed';
      await finalizeStopped(acts, jobId, input, s, 'failed', failure.message);
      return { status: 'failed', error: failure.message, rethrow: failure };
    },
  );
}

/**
 * After a cancel or a failure: record the final checkpoint (the running chunk has already written
 * it), promote the best evaluated checkpoint (if any), write the report, close the lineage run
 * (withJobRecord then closes the job). Each step is best effort, so a failing report never hides
 * the original error.
 */
async function finalizeStopped(
  acts: ReturnType<typeof activities>,
  jobId: string,
  input: TrainWorkflowInput,
  s: TrainCarried | undefined,
  status: 'cancelled' | 'failed',
  error?: string,
): Promise<void> {
  let finalCheckpoint: FinalCheckpoint | null = null;
  let reportUri: string | null = null;
  let best: BestCheckpoint | null = null;
  if (s) {
    const { runUri, dataset, totalSteps } = s.prepared;
    try {
      finalCheckpoint = await acts.io.recordFinalCheckpoint({ jobId, runUri });
      // The best evaluated checkpoint so far is still worth naming (retention keeps it).
      if (s.decision && s.decision.bestStep !== null)
        best = await acts.io.promoteBestCheckpoint({ jobId, runUri, decision: s.decision });
      reportUri = (
        await acts.io.writeTrainingReport({
          jobId,
          runUri,
          runName: input.runName ?? jobId,
          generatedAt: new Date().toISOString(),
          status,
          decision: s.decision,
          dataset,
          best,
          stopReason: error ?? status,
          totalSteps,
        })
      ).uri;
    } catch (e) {
      log.warn('train: could not record the final checkpoint or write the report', { error: String(e) });
    }
    try {
      await acts.io.finishTrainingRun({
        jobId,
        status,
        result: { finalCheckpoint, best, reportUri, step: finalCheckpoint?.step ?? s.step, evaluations: s.evals },
        error,
      });
    } catch (e) {
      log.warn('train: could not close the lineage run', { error: String(e) });
    }
  }
}

/** An activity's application error becomes the workflow's failure, with the same message and type. */
function clearFailure(err: unknown): ApplicationFailure {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    return ApplicationFailure.create({
      message: cause.message,
      type: cause.type ?? 'Error',
      nonRetryable: true,
      details: cause.details ?? undefined,
      cause: err instanceof Error ? err : undefined,
    });
  }
  if (err instanceof ApplicationFailure) return err;
  return ApplicationFailure.create({
    message: err instanceof Error ? err.message : String(err),
    type: 'TrainingFailed',
    nonRetryable: true,
  });
}
