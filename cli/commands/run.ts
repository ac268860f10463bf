/**
 * `kiln run <stage>`: start a stage's workflow and (by default) wait for it, with an in-process
 * worker so one command does the whole job. `--detach` only starts it (a worker from `kiln up`
 * must be running); `--no-worker` relies on external workers.
 */
import type { Command } from 'commander';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { ensureDataRoot, loadConfig } from '../../infra/config.js';
import { assertSafeSegment } from '../../infra/storage.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { withTemporalSession, newJobId } from '../session.js';
import { EXIT, exitCodeOf } from '../exit-codes.js';
import { changedFields, identityMemo, type JobIdentity } from '../job-identity.js';
import { jobsOfName, twinOrEarlier } from '../earlier-jobs.js';
import { retryOrphanedActivities } from '../orphaned-activities.js';

export interface RunFlags {
  detach?: boolean;
  worker?: boolean;
  json?: boolean;
  id?: string;
  /** Do not print the raw result (a caller prints its own summary via onResult). */
  quiet?: boolean;
  /** `--new`: start a fresh job even though `identity` names an earlier one. */
  new?: boolean;
  /**
   * What the job does, for commands whose id derives from their input (a spec, a train run, a
   * filter). Without --id / --new the job id is `identity.id`: a finished job of it prints its
   * result, a failed one starts again (finished stages, versions and checkpoints are reused), a
   * running one is attached to. Stored with the job (memo) so a changed input can say what changed.
   */
  identity?: JobIdentity;
  /** The input for starting a failed / cancelled job again under the same id (e.g. with its finished stages' results). */
  restartInput?: (client: Client, workflowId: string) => Promise<unknown>;
  onResult?: (result: unknown) => void;
}

/** Start `workflowType` with `input`; wait and print its result unless detached. Returns the exit code. */
export async function runWorkflow(
  kind: string,
  workflowType: string,
  input: unknown,
  flags: RunFlags,
  progress?: ProgressFormatter,
): Promise<number> {
  const config = loadConfig();
  const derived = flags.identity !== undefined && flags.id === undefined && !flags.new;
  let workflowId = assertSafeSegment(flags.id ?? (derived ? flags.identity!.id : newJobId(kind)), '--id (workflow id)');
  ensureDataRoot(config);
  return withTemporalSession(config, { embeddedWorker: !flags.detach && flags.worker !== false }, async (client) => {
    let handle: WorkflowHandle | undefined;
    if (derived) {
      const prior = await describeJob(client, workflowId);
      if (prior === 'COMPLETED') {
        process.stderr.write(
          `kiln: ${kind} job ${workflowId} already finished for this ${kind === 'pipeline' ? 'spec' : 'input'}; ` +
            'its result follows (--new runs it again as a new job)\n',
        );
        return awaitJob(client.workflow.getHandle(workflowId), kind, workflowId, flags);
      }
      if (prior && prior !== 'RUNNING') {
        process.stderr.write(
          `kiln: ${kind} job ${workflowId} ended ${prior.toLowerCase()}; starting it again (finished stages, dataset versions and checkpoints are reused)\n`,
        );
        if (flags.restartInput) input = await flags.restartInput(client, workflowId);
      }
      if (!prior) {
        const identity = flags.identity!;
        const { twin, earlier } = twinOrEarlier(
          await jobsOfName(client, workflowType, identity.name),
          identity.hash,
          workflowId,
        );
        if (twin) {
          workflowId = twin.workflowId;
          handle = client.workflow.getHandle(workflowId);
          process.stderr.write(
            `kiln: ${kind} job ${workflowId} of this same input is unfinished (left by an earlier run); resuming it instead of starting a twin\n`,
          );
          await reportOrphans(client, workflowId);
        } else if (earlier) {
          const changed = changedFields(earlier.identity?.content, identity.content);
          process.stderr.write(
            `kiln: new ${kind} job ${workflowId}: it does not resume earlier job ${earlier.workflowId} ` +
              `(${earlier.status.toLowerCase()}) of the same name, because its input changed:\n` +
              `${changed
                .slice(0, 12)
                .map((c) => `  ${c}\n`)
                .join('')}${changed.length > 12 ? `  ... and ${changed.length - 12} more\n` : ''}`,
          );
        }
      }
    }
    if (!handle) {
      try {
        handle = await client.workflow.start(workflowType, {
          taskQueue: WORKFLOW_TASK_QUEUE,
          workflowId,
          args: [input],
          ...(flags.identity ? { memo: identityMemo(flags.identity) } : {}),
        });
        process.stderr.write(`kiln: started ${kind} job ${workflowId}\n`);
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
        // The same id is still running (e.g. the CLI that started it died): attach to it instead.
        handle = client.workflow.getHandle(workflowId);
        process.stderr.write(`kiln: ${kind} job ${workflowId} is already running; attached to it\n`);
        await reportOrphans(client, workflowId);
      }
    }
    if (flags.detach) {
      process.stdout.write(flags.json ? `${JSON.stringify({ workflowId })}\n` : `${workflowId}\n`);
      return EXIT.ok;
    }
    return awaitJob(handle, kind, workflowId, flags, progress);
  });
}

/** Retry at once the activity attempts of job `workflowId` whose worker died with an earlier kiln process. */
export async function reportOrphans(client: Client, workflowId: string): Promise<void> {
  const n = await retryOrphanedActivities(client, workflowId).catch(() => 0);
  if (n)
    process.stderr.write(
      `kiln: retrying ${n} activity attempt(s) at once: their worker died with an earlier kiln process\n`,
    );
}

/** Wait for a job and print its result (or its failure with a Fix). Returns the exit code. */
export async function awaitJob(
  handle: WorkflowHandle,
  kind: string,
  workflowId: string,
  flags: Pick<RunFlags, 'json' | 'quiet' | 'onResult'>,
  progress?: ProgressFormatter,
): Promise<number> {
  const stopWatching = progress ? watchProgress(handle, progress) : () => undefined;
  try {
    const result: unknown = await handle.result().finally(stopWatching);
    if (flags.json) process.stdout.write(`${JSON.stringify({ workflowId, result })}\n`);
    else if (!flags.quiet)
      process.stdout.write(`${kind} job ${workflowId} completed:\n${JSON.stringify(result, null, 2)}\n`);
    flags.onResult?.(result);
    return EXIT.ok;
  } catch (err) {
    const root = rootCause(err);
    const fix = /\nFix: /.test(root.message) ? '' : `\nFix: ${genericFix(root.message)}`;
    process.stderr.write(
      `kiln: ${kind} job ${workflowId} failed: ${root.type ? `${root.type}: ` : ''}${root.message}${fix}\n`,
    );
    return exitCodeOf(err);
  }
}

/** The status name of the latest run of `workflowId` (COMPLETED, RUNNING, FAILED, ...), or undefined when there is none. */
export async function describeJob(client: Client, workflowId: string): Promise<string | undefined> {
  try {
    return (await client.workflow.getHandle(workflowId).describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/**
 * The innermost cause of a workflow failure: Temporal wraps the real error (with its `Fix:`) in
 * "Child Workflow execution failed" / "Activity task failed" layers.
 */
export function rootCause(err: unknown): { message: string; type: string | null } {
  let e = err as { cause?: unknown; message?: string; type?: string } | undefined;
  let last = { message: String(err), type: null as string | null };
  while (e) {
    if (typeof e.message === 'string')
      last = { message: e.message, type: typeof e.type === 'string' ? e.type : last.type };
    e = e.cause as typeof e;
  }
  return last;
}

/** A fix for failures that carry none of their own (system errors surfacing from an activity). */
export function genericFix(message: string): string {
  if (/ENOSPC|SQLITE_FULL|database or disk is full/i.test(message))
    return (
      'free space on the disk holding KILN_DATA_ROOT (or point it at a larger disk), then rerun the same command ' +
      '(for a spec, or with the same --id): finished work is kept and the job resumes.'
    );
  if (/EACCES|EPERM|EROFS/.test(message))
    return 'make KILN_DATA_ROOT writable by this user (or point it elsewhere), then rerun the same command (or with the same --id) to resume.';
  return (
    'read the error above; after fixing its cause, rerun the same command (a spec keeps its job id; elsewhere pass ' +
    'the same --id) to resume (finished shards and checkpoints are kept). `kiln lineage show <id>` lists what finished.'
  );
}

/** Renders a workflow's `progress` query result as one status line (null: nothing to show). */
export type ProgressFormatter = (p: unknown) => string | null;

/** Poll the `progress` query and redraw one status line on stderr (a TTY) or log changes (not a TTY). */
function watchProgress(handle: { query<T>(name: string): Promise<T> }, format: ProgressFormatter): () => void {
  const tty = process.stderr.isTTY === true;
  let last = '';
  const timer = setInterval(
    () => {
      handle
        .query<unknown>('progress')
        .then((p) => {
          const line = format(p);
          if (!line || line === last) return;
          last = line;
          process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
        })
        .catch(() => undefined);
    },
    tty ? 500 : 5000,
  );
  return () => {
    clearInterval(timer);
    if (tty && last) process.stderr.write('\n');
  };
}

/** A text progress bar: `[#####.....] 50%`. */
export function bar(done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.min(1, done / total) : 0;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(0).padStart(3)}%`;
}

/**
 * The flags every `kiln run <stage>` takes, defined once. Stages whose job id derives from their
 * input (pipeline, crawl, filter, train) also take `--new`.
 */
export function withRunFlags(cmd: Command, o: { derivedId?: boolean } = {}): Command {
  cmd
    .option('--detach', 'start the job and print its id without waiting (needs a running worker: kiln up)', false)
    .option('--no-worker', 'do not run an in-process worker (use workers started with kiln up / kiln worker)')
    .option(
      '--id <workflowId>',
      o.derivedId
        ? 'workflow id (default: derived from the input, so the same command again attaches to, resumes or reports the same job)'
        : 'workflow id (default <stage>-<timestamp>-<random>); reusing one resumes/dedups',
    )
    .option('--json', 'print machine-readable JSON on stdout', false);
  if (o.derivedId)
    cmd.option('--new', 'start a new job even if this same input already ran (new dataset versions / a new run)');
  return cmd;
}
