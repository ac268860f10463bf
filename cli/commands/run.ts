/**
 * `kiln run <stage>`: start a stage's workflow and (by default) wait for it, with an in-process
 * worker so one command does the whole job. `--detach` only starts it (a worker from `kiln up`
 * must be running); `--no-worker` relies on external workers.
 */
import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { loadConfig } from '../../infra/config.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { withTemporalSession, newJobId } from '../session.js';
import { EXIT } from '../exit-codes.js';

export interface RunFlags {
  detach?: boolean;
  worker?: boolean;
  json?: boolean;
  id?: string;
}

/** Start `workflowType` with `input`; wait and print its result unless detached. Returns the exit code. */
export async function runWorkflow(kind: string, workflowType: string, input: unknown, flags: RunFlags): Promise<number> {
  const config = loadConfig();
  const workflowId = flags.id ?? newJobId(kind);
  return withTemporalSession(config, { embeddedWorker: !flags.detach && flags.worker !== false }, async (client) => {
    let handle;
    try {
      handle = await client.workflow.start(workflowType, { taskQueue: WORKFLOW_TASK_QUEUE, workflowId, args: [input] });
      process.stderr.write(`kiln: started ${kind} job ${workflowId}\n`);
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      // The same id is still running (e.g. the CLI that started it died): attach to it instead.
      handle = client.workflow.getHandle(workflowId);
      process.stderr.write(`kiln: ${kind} job ${workflowId} is already running; attached to it\n`);
    }
    if (flags.detach) {
      process.stdout.write(flags.json ? `${JSON.stringify({ workflowId })}\n` : `${workflowId}\n`);
      return EXIT.ok;
    }
    try {
      const result: unknown = await handle.result();
      process.stdout.write(flags.json ? `${JSON.stringify({ workflowId, result })}\n` : `${kind} job ${workflowId} completed:\n${JSON.stringify(result, null, 2)}\n`);
      return EXIT.ok;
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message;
      process.stderr.write(`kiln: ${kind} job ${workflowId} failed: ${cause ?? String(err)}\n`);
      return EXIT.jobFailed;
    }
  });
}

function withRunFlags(cmd: Command): Command {
  return cmd
    .option('--detach', 'start the job and print its id without waiting (needs a running worker: kiln up)', false)
    .option('--no-worker', 'do not run an in-process worker (use workers started with kiln up / kiln worker)')
    .option('--id <workflowId>', 'workflow id (default <stage>-<timestamp>-<random>); reusing one resumes/dedups')
    .option('--json', 'print machine-readable JSON on stdout', false);
}

export function registerRun(program: Command): void {
  const run = program.command('run').description('Run a stage as a durable Temporal workflow and wait for it (see `kiln run <stage> --help`).');
  withRunFlags(run.command('hello')
    .description('The smallest stage: writes a greeting artifact and a summary, both recorded in lineage.')
    .option('--message <text>', 'the greeting to write', 'hello from kiln')
    .option('--pause-ms <ms>', 'durable pause between the two steps', (v) => Number(v), 0))
    .action(async (o: RunFlags & { message: string; pauseMs: number }) => {
      process.exitCode = await runWorkflow('hello', 'helloWorkflow', { message: o.message, pauseMs: o.pauseMs }, o);
    });
}
