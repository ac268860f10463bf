/** `kiln up` and `kiln worker`: long-running processes serving the task queues. */
import type { Command } from 'commander';
import { ensureDataRoot, loadConfig } from '../../infra/config.js';
import { TASK_QUEUES, type TaskQueue } from '../../infra/constants.js';
import { ConfigError } from '../../infra/errors.js';
import { ensureTemporalServer } from '../../infra/temporal/server.js';
import { createKilnWorkers, ALL_QUEUES, DEFAULT_CONCURRENCY } from '../../infra/temporal/worker.js';

export function parseQueues(value: string): TaskQueue[] {
  const known = Object.values(TASK_QUEUES) as string[];
  const qs = value
    .split(',')
    .map((q) => q.trim())
    .filter(Boolean);
  for (const q of qs)
    if (!known.includes(q))
      throw new ConfigError(
        `unknown task queue ${JSON.stringify(q)}`,
        `use one or more of ${known.join(', ')} (comma separated).`,
      );
  if (qs.length === 0) throw new ConfigError('--queues is empty', `use one or more of ${known.join(', ')}.`);
  return qs as TaskQueue[];
}

/** A per-queue concurrency flag: a whole number from 1 to 256. */
export function parseConcurrency(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 256)
      throw new ConfigError(`${flag} ${JSON.stringify(v)} is not a whole number from 1 to 256`, `pass e.g. ${flag} 4.`);
    return n;
  };
}

interface WorkerFlags {
  queues: TaskQueue[];
  ioConcurrency: number;
  gpuConcurrency: number;
}

async function serve(o: WorkerFlags, startServer: boolean, ui: boolean): Promise<void> {
  const queues = o.queues;
  const config = loadConfig();
  ensureDataRoot(config);
  const server = startServer ? await ensureTemporalServer(config, { ui }) : null;
  if (server?.startedHere)
    console.error(
      `kiln: Temporal dev server started at ${server.address}${ui ? ` (UI on port ${Number(server.address.split(':').pop()) + 1000})` : ''}`,
    );
  const concurrency = { [TASK_QUEUES.io]: o.ioConcurrency, [TASK_QUEUES.gpu]: o.gpuConcurrency } as Record<
    TaskQueue,
    number
  >;
  const workers = await createKilnWorkers(config, { queues, concurrency });
  console.error(
    `kiln: worker serving ${queues.map((q) => `${q} (${concurrency[q]} at once)`).join(', ')} ` +
      `on ${config.temporalAddress}, data root ${config.dataRoot}, lineage ${workers.deps.lineage.path}. Ctrl-C stops.`,
  );
  const stop = () => workers.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await workers.run();
  } finally {
    await server?.stop();
  }
}

function workerOptions(cmd: Command): Command {
  return cmd
    .option('--queues <list>', 'task queues to serve, comma separated', parseQueues, ALL_QUEUES)
    .option(
      '--io-concurrency <n>',
      'kiln-io activities at once in this process (downloads, Parquet writes)',
      parseConcurrency('--io-concurrency'),
      DEFAULT_CONCURRENCY[TASK_QUEUES.io],
    )
    .option(
      '--gpu-concurrency <n>',
      'kiln-gpu activities at once in this process (model work: keep 1 per GPU)',
      parseConcurrency('--gpu-concurrency'),
      DEFAULT_CONCURRENCY[TASK_QUEUES.gpu],
    );
}

export function registerUp(program: Command): void {
  workerOptions(
    program
      .command('up')
      .description(
        'Start Temporal (embedded dev server, if none answers at TEMPORAL_ADDRESS) and a worker on all queues, in the foreground. Ctrl-C stops both.',
      ),
  )
    .option('--ui', 'also serve the Temporal web UI (port + 1000)', false)
    .action(async (o: WorkerFlags & { ui: boolean }) => serve(o, true, o.ui));
  workerOptions(
    program
      .command('worker')
      .description(
        'Run a worker against an already running Temporal server (CPU machines: --queues kiln-io; GPU machines: ' +
          '--queues kiln-gpu, one process per GPU). See README "Running on many machines".',
      ),
  ).action(async (o: WorkerFlags) => serve(o, false, false));
}
