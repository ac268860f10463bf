/** `kiln status [id]`: recent jobs and their state, or one job's progress (Temporal query). */
import type { Command } from 'commander';
import { loadConfig } from '../../infra/config.js';
import { connectClient } from '../../infra/temporal/client.js';

export function registerStatus(program: Command): void {
  program.command('status')
    .description('Show recent Kiln jobs (Temporal workflows) and their status, or one job\'s live progress.')
    .argument('[workflowId]', 'a job id to describe')
    .option('--limit <n>', 'how many recent jobs', (v) => Number(v), 20)
    .option('--json', 'machine-readable output', false)
    .action(async (id: string | undefined, o: { limit: number; json: boolean }) => {
      const { client, close } = await connectClient(loadConfig());
      try {
        if (id) {
          const h = client.workflow.getHandle(id);
          const d = await h.describe();
          let progress: unknown = null;
          if (d.status.name === 'RUNNING') progress = await h.query('progress').catch(() => null);
          const out = { workflowId: id, type: d.type, status: d.status.name, started: d.startTime, closed: d.closeTime ?? null, progress };
          process.stdout.write(o.json ? `${JSON.stringify(out)}\n` : `${id}  ${d.type}  ${d.status.name}  started ${d.startTime.toISOString()}${progress ? `  progress ${JSON.stringify(progress)}` : ''}\n`);
          return;
        }
        const rows: { workflowId: string; type: string; status: string; started: string }[] = [];
        for await (const w of client.workflow.list()) {
          rows.push({ workflowId: w.workflowId, type: w.type, status: w.status.name, started: w.startTime.toISOString() });
          if (rows.length >= o.limit) break;
        }
        if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else if (rows.length === 0) process.stdout.write('no jobs yet (start one with `kiln run hello` or `kiln demo`)\n');
        else for (const r of rows) process.stdout.write(`${r.status.padEnd(11)} ${r.type.padEnd(20)} ${r.started}  ${r.workflowId}\n`);
      } finally {
        await close();
      }
    });
}
