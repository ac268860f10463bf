/**
 * The skeleton every sharded stage workflow (crawl, filter, dedup) is built on, in workflow code
 * (deterministic, no I/O):
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
import { CancellationScope, ContinueAsNew, isCancellation, workflowInfo } from '@temporalio/workflow';
import type { JobEndInput, JobStartInput } from '../activities/lineage.js';

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
