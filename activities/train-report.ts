/**
 * Closing activities of the train workflow (kiln-io):
 * - promoteBestCheckpoint: writes `<runUri>/best.json` naming the best checkpoint (by the early
 *   stopping metric, else the newest) and its hashes. Lineage run `${jobId}/train/best`.
 * - writeTrainingReport: the static HTML report (eval/report.ts) at `<runUri>/report/index.html`,
 *   with the loss curve, every evaluation and the lineage. Lineage run `${jobId}/train/report`.
 */
import { basename } from 'node:path';
import { MissingFileError } from '../infra/errors.js';
import { sha256Hex } from '../infra/hash.js';
import { traceArtifact } from '../infra/lineage/trace.js';
import type { EarlyStoppingDecision, StoppingMetric } from '../eval/early-stopping.js';
import { renderRunReport, type ReportEvaluation, type TrainingPoint } from '../eval/report.js';
import { listCheckpoints, readCheckpointState, TENSOR_FILES } from '../training/checkpoint.js';
import type { ActivityDeps } from './deps.js';
import { evalPointFromRecord, type StoredEvaluation } from './eval.js';
import { linkIfRecorded, writeRunArtifact, type DatasetPin } from './run-artifacts.js';
import { withRun } from './run-lifecycle.js';

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

export function createTrainReportActivities(deps: ActivityDeps) {
  const { storage, lineage } = deps;

  return {
    /** Write `<runUri>/best.json` naming the best checkpoint (by the metric, else the newest). */
    async promoteBestCheckpoint(input: PromoteBestInput): Promise<BestCheckpoint> {
      const runId = `${input.jobId}/train/best`;
      return withRun(deps, { id: runId, jobId: input.jobId, stage: 'train.promote', params: input }, async (run) => {
        const checkpoints = await listCheckpoints(storage, input.runUri);
        if (checkpoints.length === 0)
          throw new MissingFileError(
            `run ${input.runUri} has no checkpoint to promote`,
            'train at least one chunk first.',
          );
        const d = input.decision;
        const byMetric = d && d.bestStep !== null ? checkpoints.find((c) => c.step === d.bestStep) : undefined;
        const chosen = byMetric ?? checkpoints[checkpoints.length - 1]!;
        const state = await readCheckpointState(storage, chosen.uri);
        const sha256s: Record<string, string> = {
          'state.json': sha256Hex(await storage.read(storage.child(chosen.uri, 'state.json'))),
        };
        for (const f of TENSOR_FILES) sha256s[f] = state.files[f].sha256;
        for (const name of Object.keys(sha256s))
          linkIfRecorded(deps, runId, storage.child(chosen.uri, name), 'consumed');
        const body = {
          format: 'kiln-best-checkpoint-v1',
          runUri: input.runUri,
          step: chosen.step,
          checkpointUri: chosen.uri,
          sha256s,
          selectedBy: byMetric ? ('metric' as const) : ('final-step' as const),
          metric: byMetric ? d!.metric : null,
          value: byMetric ? d!.bestValue : null,
          reason: byMetric
            ? d!.reason
            : d && d.bestStep !== null
              ? `the best checkpoint (step ${d.bestStep}) is missing; the newest is promoted`
              : 'no evaluation: the newest checkpoint is promoted',
        };
        const written = await writeRunArtifact(deps, runId, {
          uri: storage.child(input.runUri, 'best.json'),
          kind: 'best-checkpoint',
          content: `${JSON.stringify(body, null, 1)}\n`,
          metadata: { step: chosen.step },
        });
        const best: BestCheckpoint = {
          uri: written.uri,
          sha256: written.sha256,
          step: chosen.step,
          checkpointUri: chosen.uri,
          sha256s,
          metric: body.metric,
          value: body.value,
          selectedBy: body.selectedBy,
        };
        run.summarize({ ...best, reason: body.reason });
        return best;
      });
    },

    /** Render the run's HTML report to `<runUri>/report/index.html` and record it. */
    async writeTrainingReport(
      input: TrainingReportInput,
    ): Promise<{ uri: string; sha256: string; evaluations: number; trainingPoints: number }> {
      const runId = `${input.jobId}/train/report`;
      return withRun(
        deps,
        {
          id: runId,
          jobId: input.jobId,
          stage: 'train.report',
          params: { runUri: input.runUri, status: input.status },
        },
        async (run) => {
          const reportDirUri = storage.child(input.runUri, 'report');
          const { training, parts } = await readTrainingCurve(input.runUri);
          const evaluations: ReportEvaluation[] = [];
          for (const name of await storage.list(storage.child(input.runUri, 'evals'))) {
            const uri = storage.child(input.runUri, 'evals', name);
            const s = JSON.parse(await storage.readText(uri)) as StoredEvaluation;
            const point = evalPointFromRecord(s.record);
            evaluations.push({
              step: s.record.step,
              fid: s.record.fid,
              kid: s.record.kid ?? null,
              kidParts: s.record.kidParts ?? null,
              clipScore: s.record.clipScore,
              ...(point.failed ? { failed: point.failed } : {}),
              protocol: s.record.protocol,
              sampleGrid: s.record.sampleGrid ?? null,
              samplePrompts: s.record.samplePrompts ?? [],
            });
            linkIfRecorded(deps, runId, uri, 'consumed');
            if (s.record.sampleGrid)
              linkIfRecorded(deps, runId, storage.child(reportDirUri, ...s.record.sampleGrid.split('/')), 'consumed');
          }
          const newest = (await listCheckpoints(storage, input.runUri)).at(-1);
          const state = newest ? await readCheckpointState(storage, newest.uri) : null;
          const c = state?.config;
          const html = renderRunReport({
            runId: input.runName,
            title: `Training run ${input.runName}`,
            generatedAt: input.generatedAt,
            status: input.status,
            summary: {
              job: input.jobId,
              status: input.status,
              dataset: input.dataset.datasetId,
              'dataset manifest sha256': input.dataset.manifestSha256,
              'steps trained': state?.step ?? 0,
              'total steps': input.totalSteps,
              'stop reason': input.stopReason,
              'best checkpoint': input.best ? `step ${input.best.step}` : null,
              backend: state ? `${state.backend} (${state.precision})` : null,
              resolution: c?.resolution ?? null,
              denoiser: c
                ? `DiT width ${c.denoiser.width}, depth ${c.denoiser.depth}, patch ${c.denoiser.patchSize}`
                : null,
              'text encoder': c
                ? c.textEncoder.clipDir
                  ? `CLIP ${basename(c.textEncoder.clipDir)}`
                  : `width ${c.textEncoder.width}, depth ${c.textEncoder.depth}`
                : null,
              batch: c ? `${c.optim.microBatchSize} x ${c.optim.gradAccumSteps} accumulation` : null,
              'peak LR': c?.optim.lr ?? null,
              objective: c ? objectiveText(c.objective) : null,
              PRX: c ? prxText(c.objective) : null,
              ...lossPartsSummary(parts),
            },
            training,
            evaluations,
            earlyStopping: input.decision,
            lineage: runLineage(input.jobId, input.dataset.manifestUri, input.best),
          });
          const written = await writeRunArtifact(deps, runId, {
            uri: storage.child(reportDirUri, 'index.html'),
            kind: 'run-report',
            content: html,
            metadata: { status: input.status },
          });
          run.summarize({ uri: written.uri, sha256: written.sha256 });
          return {
            uri: written.uri,
            sha256: written.sha256,
            evaluations: evaluations.length,
            trainingPoints: training.length,
          };
        },
      );
    },
  };

  /** Loss and LR per step from the chunk logs (`<runUri>/train-log/*.json`), merged by step, and the steps' loss parts. */
  async function readTrainingCurve(runUri: string): Promise<{ training: TrainingPoint[]; parts: LoggedParts[] }> {
    const byStep = new Map<number, TrainingPoint>();
    const parts = new Map<number, LoggedParts>();
    for (const name of await storage.list(storage.child(runUri, 'train-log'))) {
      const log = JSON.parse(await storage.readText(storage.child(runUri, 'train-log', name))) as {
        entries: (LoggedParts & { lr: number; lrText: number })[];
      };
      for (const e of log.entries) {
        byStep.set(e.step, { step: e.step, loss: e.loss, lr: e.lr, lrTextEncoder: e.lrText });
        if (e.diffusion !== undefined) parts.set(e.step, e);
      }
    }
    return {
      training: [...byStep.values()].sort((a, b) => a.step - b.step),
      parts: [...parts.values()].sort((a, b) => a.step - b.step),
    };
  }

  /** The lineage shown in the report: the dataset's upstream trace and this job's finished runs (no timestamps). */
  function runLineage(jobId: string, manifestUri: string, best: BestCheckpoint | null): unknown {
    const manifest = lineage.getArtifactByUri(manifestUri);
    const trace = manifest ? traceArtifact(lineage, manifest) : null;
    const runs = lineage
      .runsOfJob(jobId)
      .filter((r) => r.status !== 'running')
      .map((r) => ({
        run: r.id,
        stage: r.stage,
        status: r.status,
        code: r.codeVersion,
        environment: Object.entries(r.environment)
          .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
          .join(', '),
        produced: lineage.artifactsOfRun(r.id, 'produced').length,
      }));
    const checkpoints = lineage
      .runsOfJob(jobId)
      .filter((r) => r.stage === 'train.chunk')
      .flatMap((r) =>
        lineage
          .artifactsOfRun(r.id, 'produced')
          .filter((a) => a.kind === 'checkpoint-file')
          .map((a) => ({ step: a.metadata.step, file: a.metadata.file, sha256: a.sha256, bytes: a.bytes })),
      );
    const capped = <T>(list: T[], what: string) =>
      list.length <= REPORT_LIST_CAP
        ? list
        : [
            ...list.slice(-REPORT_LIST_CAP),
            { note: `${list.length - REPORT_LIST_CAP} earlier ${what} not shown (see kiln lineage)` },
          ];
    return {
      dataset: trace
        ? {
            manifest: { uri: manifestUri, sha256: manifest!.sha256 },
            versions: trace.datasetVersions.map((d) => ({
              id: d.id,
              parents: d.parents.join(', '),
              schema: d.schemaVersion,
            })),
            upstreamRuns: trace.runs.map((r) => ({ run: r.id, stage: r.stage, status: r.status, code: r.codeVersion })),
            sources: trace.sources.map((a) => ({ kind: a.kind, uri: a.uri, sha256: a.sha256 })),
          }
        : { manifest: manifestUri, note: 'not recorded in lineage' },
      best: best ? { step: best.step, checkpoint: best.checkpointUri, ...best.sha256s } : null,
      runs: capped(runs, 'runs'),
      checkpoints: capped(
        [...new Map(checkpoints.map((c) => [`${String(c.step)}/${String(c.file)}`, c])).values()],
        'checkpoint files',
      ),
    };
  }
}

/** A train-log entry's loss parts (absent in logs written before they were logged, and for steps of an interrupted attempt). */
interface LoggedParts {
  step: number;
  loss: number;
  diffusion?: number;
  prx?: number;
  prxVar?: number;
  prxCorr?: number;
  prxGradShare?: number;
}

type ObjectiveConfig = NonNullable<Awaited<ReturnType<typeof readCheckpointState>>>['config']['objective'];

function objectiveText(o: ObjectiveConfig): string {
  if (o.prediction === 'flow')
    return (
      `flow matching (rectified flow, velocity; t ` +
      `${o.flowTimesteps === 'logit_normal' ? `logit-normal(${o.flowLogitMean}, ${o.flowLogitStd})` : 'uniform'})`
    );
  return `${o.prediction} prediction (${o.betaSchedule} betas, ${o.trainTimesteps} steps)`;
}

function prxText(o: ObjectiveConfig): string {
  if (o.prxTargets === 'off' || o.prxWeight === 0) return 'off (pixel space: unit targets would contradict the data)';
  const targets =
    o.prxTargets === 'measured'
      ? `targets measured from up to ${o.prxMeasureImages} images of the data (prx-targets.json)`
      : `targets variance ${o.prxTargetVar} and correlation I`;
  return (
    `weight ${o.prxWeight}, ${targets}, correlation weight ${o.prxCorrWeight}, ` +
    `${o.prxMaxGain === null ? 'every sample' : `samples with x0-hat error gain <= ${o.prxMaxGain}`}`
  );
}

/** Report lines on the loss parts: means over the logged steps, and PRX's share of the loss and gradient. */
function lossPartsSummary(parts: readonly LoggedParts[]): Record<string, string> {
  const logged = parts.filter((p) => p.prxVar !== undefined);
  if (logged.length === 0) return {};
  const mean = (f: (p: LoggedParts) => number) => logged.reduce((a, p) => a + f(p), 0) / logged.length;
  const fmt = (v: number) => String(+v.toPrecision(3));
  const last = logged.slice(-Math.max(1, Math.ceil(logged.length / 10)));
  const lastMean = (f: (p: LoggedParts) => number) => last.reduce((a, p) => a + f(p), 0) / last.length;
  return {
    'loss parts (mean over logged steps)':
      `diffusion ${fmt(mean((p) => p.diffusion!))}, ` +
      `PRX variance ${fmt(mean((p) => p.prxVar!))}, PRX correlation ${fmt(mean((p) => p.prxCorr!))} ` +
      `(${logged.length} steps)`,
    'loss parts (last 10% of logged steps)':
      `diffusion ${fmt(lastMean((p) => p.diffusion!))}, ` +
      `PRX variance ${fmt(lastMean((p) => p.prxVar!))}, PRX correlation ` +
      `${fmt(lastMean((p) => p.prxCorr!))}`,
    'PRX share of the loss': `mean ${fmt(mean((p) => (p.loss > 0 ? (p.loss - p.diffusion!) / p.loss : 0)))}`,
    'PRX share of the gradient (on the prediction)': `mean ${fmt(mean((p) => p.prxGradShare!))}, max ${fmt(Math.max(...logged.map((p) => p.prxGradShare!)))}`,
  };
}
