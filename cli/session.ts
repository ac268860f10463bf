/**
 * A CLI session against Temporal: make sure a server answers (starting the embedded dev server if
 * none does), optionally run an in-process worker, hand a client to `fn`, then stop what was started.
 */
import type { Client } from '@temporalio/client';
import type { KilnConfig } from '../infra/config.js';
import { ensureTemporalServer } from '../infra/temporal/server.js';
import { connectClient } from '../infra/temporal/client.js';
import { createKilnWorkers } from '../infra/temporal/worker.js';
import type { TaskQueue } from '../infra/constants.js';

export interface SessionOptions {
  /** Run a worker inside this process for the session's duration (default true). */
  embeddedWorker?: boolean;
  queues?: TaskQueue[];
  log?: (line: string) => void;
}

export async function withTemporalSession<T>(
  config: KilnConfig,
  opts: SessionOptions,
  fn: (client: Client) => Promise<T>,
): Promise<T> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const server = await ensureTemporalServer(config);
  if (server.startedHere) log(`kiln: started embedded Temporal dev server at ${server.address} (db ${server.dbFile})`);
  let workers: Awaited<ReturnType<typeof createKilnWorkers>> | undefined;
  let running: Promise<void> | undefined;
  try {
    if (opts.embeddedWorker ?? true) {
      workers = await createKilnWorkers(config, { queues: opts.queues });
      running = workers.run();
      running.catch((err: unknown) => log(`kiln: worker stopped: ${String(err)}`));
    }
    const { client, close } = await connectClient(config);
    try {
      return await fn(client);
    } finally {
      await close();
    }
  } finally {
    if (workers) {
      workers.shutdown();
      await running?.catch(() => undefined);
    }
    if (server.startedHere) {
      await server.stop();
      log('kiln: stopped the embedded Temporal dev server');
    }
  }
}

/** A fresh, path-safe workflow id: `<kind>-<utc timestamp>-<random>`. */
export function newJobId(kind: string): string {
  const ts = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  return `${kind}-${ts}-${Math.random().toString(36).slice(2, 8)}`;
}
