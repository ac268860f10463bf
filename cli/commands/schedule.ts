/**
 * `kiln schedule create | list | pause | unpause | trigger | delete`: recurring pipelines on Temporal
 * Schedules (durable, server-side timers; a worker from `kiln up` runs each action). Overlap policy
 * SKIP: a run still curating when the next one is due is not doubled up.
 */
import type { Command } from 'commander';
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { loadConfig } from '../../infra/config.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { ConfigError } from '../../infra/errors.js';
import { assertSafeSegment } from '../../infra/storage.js';
import { connectClient } from '../../infra/temporal/client.js';
import { loadSpec } from '../spec/load.js';
import { pipelineInputFromSpec } from '../spec/to-input.js';

async function withClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const { client, close } = await connectClient(loadConfig());
  try {
    return await fn(client);
  } finally {
    await close();
  }
}

function parseEvery(v: string): string {
  if (!/^\d+\s*(s|m|h|d)$/.test(v.trim()))
    throw new ConfigError(`--every ${JSON.stringify(v)} is not a duration`, 'use a number and a unit: 30m, 6h, 1d.');
  return v.replace(/\s+/g, '');
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('Recurring pipelines (Temporal Schedules). Needs a running server and worker: kiln up.');
  schedule
    .command('create')
    .description('Schedule a pipeline spec to run every interval or on a cron expression.')
    .argument('<spec>', 'pipeline spec file (.yaml or .json); read and validated now')
    .requiredOption('--id <name>', 'schedule id (letters, digits, ".", "_", "-")')
    .option('--every <duration>', 'interval, e.g. 6h or 1d', parseEvery)
    .option('--cron <expr>', 'cron expression, e.g. "0 3 * * *"')
    .option('--paused', 'create it paused', false)
    .action(async (specPath: string, o: { id: string; every?: string; cron?: string; paused: boolean }) => {
      assertSafeSegment(o.id, 'schedule id');
      if (!o.every === !o.cron)
        throw new ConfigError('give exactly one of --every and --cron', 'e.g. --every 1d, or --cron "0 3 * * *".');
      const input = pipelineInputFromSpec(loadSpec(specPath));
      await withClient(async (client) => {
        await client.schedule.create({
          scheduleId: o.id,
          spec: o.every ? { intervals: [{ every: o.every as `${number}d` }] } : { cronExpressions: [o.cron!] },
          action: {
            type: 'startWorkflow',
            workflowType: 'pipelineWorkflow',
            taskQueue: WORKFLOW_TASK_QUEUE,
            workflowId: `sched-${o.id}`,
            args: [input],
          },
          policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
          state: { paused: o.paused, note: `kiln schedule create ${specPath}` },
        });
        process.stdout.write(
          `schedule ${o.id} created (${o.every ? `every ${o.every}` : `cron ${o.cron}`}${o.paused ? ', paused' : ''})\n`,
        );
      });
    });
  schedule
    .command('list')
    .description('List schedules with their state and next run.')
    .option('--json', 'machine-readable output', false)
    .action(async (o: { json: boolean }) =>
      withClient(async (client) => {
        const rows: { id: string; paused: boolean; next: string | null; recentActions: number }[] = [];
        for await (const s of client.schedule.list()) {
          rows.push({
            id: s.scheduleId,
            paused: s.state.paused,
            next: s.info.nextActionTimes[0]?.toISOString() ?? null,
            recentActions: s.info.recentActions.length,
          });
        }
        if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else if (rows.length === 0) process.stdout.write('no schedules\n');
        else
          for (const r of rows)
            process.stdout.write(
              `${r.id.padEnd(24)} ${r.paused ? 'paused ' : 'active '} next ${r.next ?? '-'}  recent runs ${r.recentActions}\n`,
            );
      }),
    );
  for (const [name, description] of [
    ['pause', 'Pause a schedule.'],
    ['unpause', 'Resume a paused schedule.'],
    ['trigger', "Run a schedule's pipeline now."],
    ['delete', 'Delete a schedule (runs already started continue).'],
  ] as const) {
    schedule
      .command(name)
      .description(description)
      .argument('<id>', 'schedule id')
      .action(async (id: string) =>
        withClient(async (client) => {
          const h = client.schedule.getHandle(id);
          if (name === 'pause') await h.pause('kiln schedule pause');
          else if (name === 'unpause') await h.unpause('kiln schedule unpause');
          else if (name === 'trigger') await h.trigger();
          else await h.delete();
          process.stdout.write(
            `schedule ${id}: ${{ pause: 'paused', unpause: 'unpaused', trigger: 'triggered', delete: 'deleted' }[name]}\n`,
          );
        }),
      );
  }
}
