/**
 * The lineage run around an activity's work: start (or restart) the run, do the work, and close the
 * run as completed with its result summary, as cancelled (a CancelledFailure: workflow cancel or worker
 * shutdown; a summary recorded before it is kept) or as failed with the error, whichever way the work ends.
 * Every activity that records a run goes through `withRun`, so no path leaves a run `running`.
 */
import { CancelledFailure, Context } from '@temporalio/activity';
import type { ActivityDeps } from './deps.js';
import type { LineageStore } from '../infra/lineage/store.js';

export type RunStart = Omit<Parameters<LineageStore['startRun']>[0], 'codeVersion'>;

/** Lets the work record a summary other than its return value (e.g. with fields the caller does not need). */
export interface RunHandle {
  summarize(summary: unknown): void;
}

export async function withRun<R>(
  deps: ActivityDeps,
  run: RunStart & { environmentOfRetry?: 'first' | 'latest' },
  work: (handle: RunHandle) => Promise<R>,
): Promise<R> {
  const { environmentOfRetry, ...start } = run;
  deps.lineage.startRun({ ...start, codeVersion: deps.codeVersion }, { environment: environmentOfRetry });
  let summary: { value: unknown } | undefined;
  try {
    const result = await work({
      summarize: (value) => {
        summary = { value };
      },
    });
    deps.lineage.finishRun(run.id, 'completed', summary ? summary.value : result);
    return result;
  } catch (err) {
    const cancelled = err instanceof CancelledFailure;
    deps.lineage.finishRun(
      run.id,
      cancelled ? 'cancelled' : 'failed',
      cancelled ? summary?.value : undefined,
      String(err),
    );
    throw err;
  }
}

/** The current activity context, or undefined outside an activity (CLI, tests). */
export function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * Heartbeat `details()` every `everyMs` while `work` runs (and once at the start), so a worker killed
 * during work without natural progress points (hashing model files, planning) is noticed within the
 * workflow's heartbeat timeout instead of its start-to-close timeout. No-op outside an activity.
 */
export async function withHeartbeats<R>(details: () => unknown, work: () => Promise<R>, everyMs = 5_000): Promise<R> {
  const ctx = activityContext();
  if (!ctx) return work();
  ctx.heartbeat(details());
  const beat = setInterval(() => ctx.heartbeat(details()), everyMs);
  beat.unref();
  try {
    return await work();
  } finally {
    clearInterval(beat);
  }
}
