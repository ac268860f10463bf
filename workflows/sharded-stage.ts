/**
 * The skeleton every sharded stage workflow (crawl, filter, dedup) is built on, in workflow code
 * (deterministic, no I/O):
 * - `runShardedStage`: a whole sharded stage from its definition (`ShardedStage`): the job record,
 *   the progress query, planning on the first run, the page loop with one page child workflow per
 *   page, continue-as-new, and the stage's final step. A stage states only what differs.
 * - `withJobRecord`: the lineage job record around a stage: started once (not again after
 *   continue-as-new), finished as completed or failed, whichever way the stage ends.
 * - `runPages`: the continue-as-new page loop: one child workflow per page of shards, at most
 *   `pagesPerRun` pages per run (or fewer when Temporal suggests it), then continue-as-new carrying
 *   the progress, so no history grows without bound. Phases (score, then filter) run in turn.
 * - `pageBounds`: shard range [from, to) of a page.
 * - `slidingWindow`: inside a page child workflow, run one activity per pending shard with at most
 *   `maxConcurrent` at once.
 * A stage supplies its activities, its page child workflow and its progress type; see
 * workflows/dedup.ts for the smallest complete example.
 */
import {
  CancellationScope,
  ContinueAsNew,
  continueAsNew,
  executeChild,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
  type QueryDefinition,
} from '@temporalio/workflow';
import type { createLineageActivities, JobEndInput, JobStartInput } from '../activities/lineage.js';
import { IO_QUEUE } from './queues.js';
import { stageRetryPolicy } from './retry.js';

/** The job-record activities (activities/lineage.ts). */
export interface JobRecordActivities {
  recordJobStarted(input: JobStartInput): Promise<void>;
  recordJobFinished(input: JobEndInput): Promise<void>;
}

/** How a job ended when its body threw: the status and error to record, and what to throw. */
export interface JobStopped {
  status: 'failed' | 'cancelled';
  error?: string;
  rethrow: unknown;
}

/**
 * Run `body` as lineage job `job.jobId`: record its start first (skip with `started: true`, after
 * continue-as-new), its end as completed after `body` returns or, when it throws, as failed with
 * the error (continue-as-new passes through untouched). `stopped` lets a stage clean up first and
 * say how it ended (train: final checkpoint and report; a cancelled job is recorded `cancelled`, in
 * a non-cancellable scope).
 */
export async function withJobRecord<R>(
  acts: JobRecordActivities,
  job: JobStartInput & { started: boolean },
  body: () => Promise<R>,
  stopped?: (err: unknown) => Promise<JobStopped>,
): Promise<R> {
  const { jobId } = job;
  try {
    if (!job.started)
      await acts.recordJobStarted({ jobId, kind: job.kind, workflowId: job.workflowId, params: job.params });
    const result = await body();
    await acts.recordJobFinished({ jobId, status: 'completed' });
    return result;
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    const end = async (): Promise<unknown> => {
      const s = stopped ? await stopped(err) : { status: 'failed' as const, error: String(err), rethrow: err };
      await acts.recordJobFinished({ jobId, status: s.status, ...(s.error ? { error: s.error } : {}) });
      return s.rethrow;
    };
    throw stopped && isCancellation(err) ? await CancellationScope.nonCancellable(end) : await end();
  }
}

/** Where a stage's page loop stands (carried across continue-as-new inside the stage's progress). */
export interface PageCursor {
  nextPage: number;
  pages: number;
  runs: number;
}

export interface PageLoop<P extends PageCursor> {
  /** Pages per run before continue-as-new. */
  pagesPerRun: number;
  /** Run page `page` (a child workflow) and add its result to the progress. */
  runPage: (page: number) => Promise<void>;
  /** All pages of the current phase are done: start the next phase (reset `nextPage`) and return true, or return false when the stage is done. */
  nextPhase?: () => Promise<boolean>;
  /** Continue as new carrying `carried` (the stage passes its own input with it). */
  continueAsNew: (carried: P) => Promise<never>;
}

/** The continue-as-new page loop over `p` (see the module comment). */
export async function runPages<P extends PageCursor>(p: P, loop: PageLoop<P>): Promise<void> {
  let pagesThisRun = 0;
  for (;;) {
    if (p.nextPage >= p.pages) {
      if (loop.nextPhase && (await loop.nextPhase())) continue;
      return;
    }
    if (pagesThisRun >= loop.pagesPerRun || workflowInfo().continueAsNewSuggested) {
      await loop.continueAsNew({ ...p, runs: p.runs + 1 });
    }
    await loop.runPage(p.nextPage);
    p.nextPage++;
    pagesThisRun++;
  }
}

/** Shard range [from, to) of page `page`. */
export function pageBounds(page: number, perPage: number, shardCount: number): { from: number; to: number } {
  return { from: page * perPage, to: Math.min(shardCount, (page + 1) * perPage) };
}

/** Run `work` for every pending shard, at most `maxConcurrent` at once; results in completion order. */
export async function slidingWindow<R>(
  pending: readonly number[],
  maxConcurrent: number,
  work: (shardIndex: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < pending.length) results.push(await work(pending[next++]!));
  };
  await Promise.all(Array.from({ length: Math.min(maxConcurrent, pending.length) }, lane));
  return results;
}

/** The lineage job-record activities of the sharded stages (task queue kiln-io). */
const stageLineageActs = proxyActivities<ReturnType<typeof createLineageActivities>>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '1 minute',
  retry: stageRetryPolicy({ maximumAttempts: 5 }),
});

/** What every sharded stage's progress carries: the job, its plan and the page cursor. */
export interface StageProgress<Plan> extends PageCursor {
  jobId: string;
  plan: Plan;
}

/** The input fields every sharded stage workflow takes. */
export interface StageInput<P> {
  /** Lineage job id (default: the workflow id). */
  jobId?: string;
  /** Shards per child workflow (default 100). */
  shardsPerPage?: number;
  /** Pages per run before continue-as-new (default 10). */
  pagesPerRun?: number;
  /** Internal: progress carried across continue-as-new. */
  carried?: P;
}

/** What every sharded stage's result carries: the job, the version written and its manifest. */
export interface StageResult {
  jobId: string;
  datasetId: string;
  datasetName: string;
  version: number;
  manifestUri: string;
  manifestSha256: string;
  rows: number;
  shards: number;
  /** The version was planned by an earlier run (an incremental rerun or a restart) and resumed. */
  resumed: boolean;
  /** Workflow runs used (1 + continue-as-new count). */
  runs: number;
}

/** The job and the output version a stage's page children and final step work on. */
export function stageTarget(p: StageProgress<{ datasetName: string; version: number }>): {
  jobId: string;
  datasetName: string;
  version: number;
} {
  return { jobId: p.jobId, datasetName: p.plan.datasetName, version: p.plan.version };
}

/** The shared part of a stage's result from its progress and the manifest its final step wrote. */
export function stageResult(
  p: StageProgress<{ datasetName: string; version: number; resumed: boolean }>,
  m: { datasetId: string; manifest: { uri: string; sha256: string }; rows: number; shards: number },
): StageResult {
  return {
    jobId: p.jobId,
    datasetId: m.datasetId,
    datasetName: p.plan.datasetName,
    version: p.plan.version,
    manifestUri: m.manifest.uri,
    manifestSha256: m.manifest.sha256,
    rows: m.rows,
    shards: m.shards,
    resumed: p.plan.resumed,
    runs: p.runs,
  };
}

/** What every page child workflow takes: the job, the output version, its shards [from, to). */
export interface StagePageInput {
  jobId: string;
  datasetName: string;
  version: number;
  from: number;
  to: number;
  /** Shard activities running at once. */
  maxConcurrentShards: number;
}

/** The page child workflow of a stage, how to call it, and how its result adds to the progress. */
export interface StagePage<P, PI, PR> {
  workflow: (input: PI) => Promise<PR>;
  /** The child's id under the stage's workflow id (default `page-${page}`). */
  id?: (p: P, page: number) => string;
  /** The child's input for shards [from, to). */
  input: (p: P, bounds: { from: number; to: number }) => PI;
  /** Add the child's result to the progress. */
  add: (p: P, result: PR) => void;
}

/** A sharded stage: what differs between crawl, filter and dedup. */
export interface ShardedStage<Plan extends { shardCount: number }, P extends StageProgress<Plan>, PI, PR, R> {
  /** Lineage job kind. */
  kind: string;
  progressQuery: QueryDefinition<P | null>;
  /** Plan the stage (first run only; later runs carry the plan in the progress). */
  plan: (ids: { jobId: string; workflowId: string }) => Promise<Plan>;
  /** The stage's own progress fields (counters, phase) at the start. */
  start: (plan: Plan) => Omit<P, keyof StageProgress<Plan>>;
  page: StagePage<P, PI, PR>;
  /** Phases: all pages of the current phase are done; start the next (see PageLoop.nextPhase). */
  nextPhase?: (p: P) => Promise<boolean>;
  /** After the last page: write the manifest and return the stage's result. */
  finish: (p: P) => Promise<R>;
}

/**
 * Run a sharded stage workflow from its definition: the lineage job record (withJobRecord), the
 * progress query, planning on the first run, `runPages` with one `stage.page.workflow` child per
 * page (id `${workflowId}/${stage.page.id}`), continue-as-new carrying the progress, then
 * `stage.finish`. Call it from the stage workflow with the workflow's own input.
 */
export async function runShardedStage<
  Plan extends { shardCount: number },
  P extends StageProgress<Plan>,
  I extends StageInput<P>,
  PI,
  PR,
  R,
>(input: I, stage: ShardedStage<Plan, P, PI, PR, R>): Promise<R> {
  const { workflowId } = workflowInfo();
  let progress: P | null = input.carried ?? null;
  setHandler(stage.progressQuery, () => progress);
  const jobId = progress?.jobId ?? input.jobId ?? workflowId;
  const perPage = input.shardsPerPage ?? 100;
  const { carried: _carried, ...params } = input;
  return withJobRecord(
    stageLineageActs,
    { jobId, kind: stage.kind, workflowId, params, started: progress !== null },
    async () => {
      if (!progress) {
        const plan = await stage.plan({ jobId, workflowId });
        const cursor = { nextPage: 0, pages: Math.ceil(plan.shardCount / perPage), runs: 1 };
        progress = { jobId, plan, ...stage.start(plan), ...cursor } as P;
      }
      const p = progress;
      const { page: def } = stage;
      await runPages(p, {
        pagesPerRun: input.pagesPerRun ?? 10,
        continueAsNew: (carried) => continueAsNew<(i: I) => Promise<R>>({ ...input, carried }),
        ...(stage.nextPhase ? { nextPhase: () => stage.nextPhase!(p) } : {}),
        runPage: async (page) => {
          const result = await executeChild(def.workflow, {
            workflowId: `${workflowId}/${def.id ? def.id(p, page) : `page-${page}`}`,
            args: [def.input(p, pageBounds(page, perPage, p.plan.shardCount))],
          });
          def.add(p, result);
        },
      });
      return stage.finish(p);
    },
  );
}
