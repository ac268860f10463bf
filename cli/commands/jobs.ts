/**
 * `kiln resume <id>` and `kiln cancel <id>` (issue 19, no zombies): act on a job by id, whatever
 * command started it. Both start the embedded Temporal server when none answers (its database under
 * the data root still holds the jobs a dead CLI left behind) and run an in-process worker, so a job
 * whose worker died still moves: resume runs it to the end, cancel lets it close cleanly.
 */
import type { Command } from 'commander';
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { loadConfig, ensureDataRoot } from '../../infra/config.js';
import { ConfigError } from '../../infra/errors.js';
import { withTemporalSession } from '../session.js';
import { EXIT } from '../exit-codes.js';
import { withFinishedStages } from '../finished-stages.js';
import type { PipelineInput } from '../../workflows/pipeline.js';
import { awaitJob, reportOrphans, type ProgressFormatter } from './run.js';
import { formatPipelineProgress } from './pipeline.js';
import { formatTrainProgress } from './train.js';
import { formatFilterProgress } from './filter.js';

const PROGRESS: Record<string, ProgressFormatter> = {
  pipelineWorkflow: formatPipelineProgress,
  trainWorkflow: formatTrainProgress,
  filterWorkflow: formatFilterProgress,
};

async function describeOrExplain(client: Client, id: string): Promise<WorkflowExecutionDescription> {
  try {
    return await client.workflow.getHandle(id).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new ConfigError(
        `no job ${JSON.stringify(id)} on this Temporal server`,
        '`kiln status` lists the jobs (check KILN_DATA_ROOT / TEMPORAL_ADDRESS point where the job ran).',
      );
    throw err;
  }
}

/** The input the job was first started with (its first run's WorkflowExecutionStarted event). */
async function firstInput(client: Client, d: WorkflowExecutionDescription): Promise<unknown[]> {
  const firstRunId = d.raw.workflowExecutionInfo?.firstRunId ?? d.runId;
  const history = await client.workflow.getHandle(d.workflowId, firstRunId).fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  if (!started)
    throw new ConfigError(
      `the history of job ${d.workflowId} has no start event`,
      'start the job again with the command that made it.',
    );
  return (started.input?.payloads ?? []).map((p) => defaultPayloadConverter.fromPayload(p));
}

const kindOf = (type: string) => type.replace(/Workflow$/, '');

export function registerJobCommands(program: Command): void {
  program
    .command('resume')
    .description(
      'Run a job on to its end with an in-process worker: attach to it if it runs (also when its worker died), ' +
        'start it again from its first unfinished stage if it failed or was cancelled (dataset versions and ' +
        'checkpoints already made are reused), or print its result if it finished.',
    )
    .argument('<workflowId>', 'the job id (kiln status lists them)')
    .option('--json', 'print machine-readable JSON on stdout', false)
    .action(async (id: string, o: { json: boolean }) => {
      const config = loadConfig();
      ensureDataRoot(config);
      process.exitCode = await withTemporalSession(config, { embeddedWorker: true }, async (client) => {
        const d = await describeOrExplain(client, id);
        const kind = kindOf(d.type);
        let handle = client.workflow.getHandle(id);
        if (d.status.name === 'RUNNING') {
          process.stderr.write(`kiln: ${kind} job ${id} is running; resuming it with an in-process worker\n`);
          await reportOrphans(client, id);
        } else if (d.status.name === 'COMPLETED')
          process.stderr.write(`kiln: ${kind} job ${id} already finished; its result follows\n`);
        else {
          const args = await firstInput(client, d);
          if (d.type === 'pipelineWorkflow') args[0] = await withFinishedStages(client, id, args[0] as PipelineInput);
          handle = await client.workflow.start(d.type, {
            workflowId: id,
            taskQueue: d.taskQueue,
            args,
            ...(d.memo ? { memo: d.memo } : {}),
          });
          process.stderr.write(
            `kiln: ${kind} job ${id} ended ${d.status.name.toLowerCase()}; started it again with its original ` +
              'input (finished stages, dataset versions and checkpoints are reused)\n',
          );
        }
        return awaitJob(handle, kind, id, o, PROGRESS[d.type]);
      });
    });

  program
    .command('cancel')
    .description(
      'Cancel a running job: its stages stop at their next step, record what they finished (checkpoints, shards ' +
        'stay) and close as cancelled. An in-process worker lets a job whose worker died close too.',
    )
    .argument('<workflowId>', 'the job id (kiln status lists them)')
    .option('--wait <seconds>', 'how long to wait for the job to close', (v) => Number(v), 120)
    .option(
      '--terminate',
      'end it at once, without letting its stages record anything (for a job that does not close)',
      false,
    )
    .action(async (id: string, o: { wait: number; terminate: boolean }) => {
      const config = loadConfig();
      ensureDataRoot(config);
      process.exitCode = await withTemporalSession(config, { embeddedWorker: !o.terminate }, async (client) => {
        const d = await describeOrExplain(client, id);
        const handle = client.workflow.getHandle(id);
        if (d.status.name !== 'RUNNING') {
          process.stderr.write(`kiln: job ${id} is not running (${d.status.name.toLowerCase()}); nothing to cancel\n`);
          return EXIT.ok;
        }
        if (o.terminate) {
          await handle.terminate('kiln cancel --terminate');
          process.stderr.write(`kiln: job ${id} terminated\n`);
          return EXIT.ok;
        }
        await handle.cancel();
        process.stderr.write(`kiln: cancellation of job ${id} requested; waiting up to ${o.wait} s for it to close\n`);
        const closed = await Promise.race([
          handle.result().then(
            () => true,
            () => true,
          ),
          new Promise<false>((r) => setTimeout(() => r(false), o.wait * 1000).unref()),
        ]);
        const status = (await handle.describe()).status.name;
        if (!closed || status === 'RUNNING') {
          process.stderr.write(
            `kiln: job ${id} has not closed within ${o.wait} s\nFix: wait longer (--wait), or end it at once: kiln cancel ${id} --terminate\n`,
          );
          return EXIT.jobFailed;
        }
        process.stderr.write(
          `kiln: job ${id} ${status === 'CANCELLED' ? 'cancelled' : `closed ${status.toLowerCase()}`}\n`,
        );
        return EXIT.ok;
      });
    });
}
