/** `kiln up` and `kiln worker`: long-running processes serving the task queues. */
import type { Command } from 'commander';
import { ensureDataRoot, loadConfig } from '../../infra/config.js';
import { TASK_QUEUES, type TaskQueue } from '../../infra/constants.js';
import { ConfigError } from '../../infra/errors.js';
import { ensureTemporalServer } from '../../infra/temporal/server.js';
import { createKilnWorkers, ALL_QUEUES } from '../../infra/temporal/worker.js';

export function parseQueues(value: string): TaskQueue[] {
  const known = Object.values(TASK_QUEUES) as string[];
  const qs = value.split(',').map((q) => q.trim()).filter(Boolean);
  for (const q of qs) if (!known.includes(q)) throw new ConfigError(`unknown task queue ${JSON.stringify(q)}`, `use one or more of ${known.join(', ')} (comma separated).`);
  if (qs.length === 0) throw new ConfigError('--queues is empty', `use one or more of ${known.join(', ')}.`);
  return qs as TaskQueue[];
}

async function serve(queues: TaskQueue[], startServer: boolean, ui: boolean): Promise<void> {
  const config = loadConfig();
  ensureDataRoot(config);
  const server = startServer ? await ensureTemporalServer(config, { ui }) : null;
  if (server?.startedHere) console.error(`kiln: Temporal dev server started at ${server.address}${ui ? ` (UI on port ${Number(server.address.split(':').pop()) + 1000})` : ''}`);
  const workers = await createKilnWorkers(config, { queues });
  console.error(`kiln: worker serving ${queues.join(', ')} on ${config.temporalAddress}, data root ${config.dataRoot}. Ctrl-C stops.`);
  const stop = () => workers.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await workers.run();
  } finally {
    await server?.stop();
  }
}

export function registerUp(program: Command): void {
  program.command('up')
    .description('Start Temporal (embedded dev server, if none answers at TEMPORAL_ADDRESS) and a worker on all queues, in the foreground. Ctrl-C stops both.')
    .option('--queues <list>', 'task queues to serve, comma separated', parseQueues, ALL_QUEUES)
    .option('--ui', 'also serve the Temporal web UI (port + 1000)', false)
    .action(async (o: { queues: TaskQueue[]; ui: boolean }) => serve(o.queues, true, o.ui));
  program.command('worker')
    .description('Run a worker against an already running Temporal server (GPU machines: --queues kiln-gpu).')
    .option('--queues <list>', 'task queues to serve, comma separated', parseQueues, ALL_QUEUES)
    .action(async (o: { queues: TaskQueue[] }) => serve(o.queues, false, false));
}
