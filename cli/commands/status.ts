/**
 * `kiln status [id]`: recent jobs and their state, or one job's progress (Temporal query). A running
 * job whose task queue no worker has polled for a while is marked `NO WORKER` (a zombie left by a
 * dead CLI or worker): `kiln resume <id>` runs it on, `kiln cancel <id>` ends it. When no server
 * answers, the embedded one is started on the data root's database, so jobs left behind show up.
 */
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import { loadConfig } from '../../infra/config.js';
import { TASK_QUEUES } from '../../infra/constants.js';
import { withTemporalSession } from '../session.js';
import { DEFAULT_STALE_POLLER_MS, stalePollerMs, staleWindowText, workerPresence } from '../worker-presence.js';

interface JobRow {
  workflowId: string;
  type: string;
  status: string;
  started: string;
  taskQueue: string;
  noWorker: boolean;
}

const NO_WORKER = 'NO WORKER';

/** Activity queues that no worker polls now (work scheduled there waits). */
async function idleActivityQueues(client: Client, staleMs: number): Promise<string[]> {
  const present = workerPresence(client, staleMs);
  const out: string[] = [];
  for (const q of Object.values(TASK_QUEUES)) if (!(await present(q, 'activity'))) out.push(q);
  return out;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      "Show recent Kiln jobs (Temporal workflows) and their status, or one job's live progress. Running jobs " +
        `that no worker has polled for ${staleWindowText(DEFAULT_STALE_POLLER_MS)} (KILN_STALE_POLLER_MS) ` +
        `are marked ${NO_WORKER}.`,
    )
    .argument('[workflowId]', 'a job id to describe')
    .option('--limit <n>', 'how many recent jobs', (v) => Number(v), 20)
    .option('--json', 'machine-readable output', false)
    .action(async (id: string | undefined, o: { limit: number; json: boolean }) => {
      const staleMs = stalePollerMs();
      await withTemporalSession(loadConfig(), { embeddedWorker: false }, async (client) => {
        const present = workerPresence(client, staleMs);
        if (id) {
          const h = client.workflow.getHandle(id);
          const d = await h.describe();
          let progress: unknown = null;
          const running = d.status.name === 'RUNNING';
          if (running) progress = await h.query('progress').catch(() => null);
          const noWorker = running && !(await present(d.taskQueue, 'workflow'));
          const out = {
            workflowId: id,
            type: d.type,
            status: d.status.name,
            started: d.startTime,
            closed: d.closeTime ?? null,
            taskQueue: d.taskQueue,
            noWorker,
            progress,
          };
          process.stdout.write(
            o.json
              ? `${JSON.stringify(out)}\n`
              : `${id}  ${d.type}  ${d.status.name}${noWorker ? ` (${NO_WORKER}: kiln resume ${id})` : ''}` +
                  `  started ${d.startTime.toISOString()}${progress ? `  progress ${JSON.stringify(progress)}` : ''}\n`,
          );
          return;
        }
        const rows: JobRow[] = [];
        for await (const w of client.workflow.list()) {
          const running = w.status.name === 'RUNNING';
          rows.push({
            workflowId: w.workflowId,
            type: w.type,
            status: w.status.name,
            started: w.startTime.toISOString(),
            taskQueue: w.taskQueue,
            noWorker: running && !(await present(w.taskQueue, 'workflow')),
          });
          if (rows.length >= o.limit) break;
        }
        const idle = rows.some((r) => r.status === 'RUNNING') ? await idleActivityQueues(client, staleMs) : [];
        if (o.json) {
          process.stdout.write(`${JSON.stringify(rows)}\n`);
          return;
        }
        if (rows.length === 0) process.stdout.write('no jobs yet (start one with `kiln run hello` or `kiln demo`)\n');
        for (const r of rows)
          process.stdout.write(
            `${(r.noWorker ? `${r.status} ${NO_WORKER}` : r.status).padEnd(19)} ${r.type.padEnd(20)} ${r.started}  ${r.workflowId}\n`,
          );
        if (rows.some((r) => r.noWorker)) {
          process.stdout.write(
            `\n${NO_WORKER}: no worker has polled the job's task queue for ${staleWindowText(staleMs)} (its CLI or worker died). ` +
              'Rerun the same command, or `kiln resume <id>` to run it on here, or `kiln cancel <id>` to end it.\n',
          );
        }
        if (idle.length)
          process.stdout.write(
            `no worker polls the activity queue(s) ${idle.join(', ')}: running jobs wait for one (kiln up, or kiln worker --queues ${idle.join(',')}).\n`,
          );
      });
    });
}
