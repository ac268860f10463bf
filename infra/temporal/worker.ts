/**
 * Worker bootstrap: one process serves `kiln-io` (workflows + I/O activities) and `kiln-gpu`
 * (model activities) by default; `queues` picks a subset (GPU machines run only `kiln-gpu`).
 */
import { inspect } from 'node:util';
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../../activities/index.js';
import type { ActivityDeps } from '../../activities/deps.js';
import type { KilnConfig } from '../config.js';
import { TASK_QUEUES, WORKFLOW_TASK_QUEUE, type TaskQueue } from '../constants.js';
import { openStorage } from '../storage-open.js';
import { LineageStore } from '../lineage/store.js';
import { codeVersion } from '../code-version.js';
import { cachedWorkflowBundle } from './workflow-bundle.js';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** The workflow bundle: once per process, from the on-disk cache keyed by the code (workflow-bundle.ts). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= cachedWorkflowBundle();
  return bundle;
}

/** The real dependencies of activities, rooted at config.dataRoot. */
export function createActivityDeps(config: KilnConfig): ActivityDeps {
  return {
    config,
    storage: openStorage(config.dataRoot),
    lineage: new LineageStore(config.lineagePath),
    codeVersion: codeVersion(),
  };
}

export interface KilnWorkers {
  workers: Worker[];
  deps: ActivityDeps;
  /** Runs all workers until shutdown() (or a fatal worker error). */
  run(): Promise<void>;
  shutdown(): void;
  /** Runs all workers until `work` settles, then shuts them down and waits for them. */
  runUntil<T>(work: Promise<T>): Promise<T>;
}

let runtimeInstalled = false;
/** Worker SDK logs at WARN (KILN_LOG_LEVEL=INFO|DEBUG for more); must run before the first connection. */
export function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level = (process.env.KILN_LOG_LEVEL ?? 'WARN').toUpperCase() as 'WARN';
  try {
    Runtime.install({
      logger: new DefaultLogger(level, (entry) => {
        // A kiln-gpu worker serves activities only, by design: its "no workflows registered" warning is noise.
        if (entry.message.startsWith('No workflows registered')) return;
        const meta =
          entry.meta && Object.keys(entry.meta).length
            ? ` ${inspect(entry.meta, { depth: 4, breakLength: Infinity })}`
            : '';
        process.stderr.write(
          `${new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString()} [${entry.level}] ${entry.message}${meta}\n`,
        );
      }),
    });
  } catch {
    // already installed by the embedding process (e.g. a test); keep its logger
  }
}

export const ALL_QUEUES: TaskQueue[] = [TASK_QUEUES.io, TASK_QUEUES.gpu];

/**
 * Activities one worker process runs at once, per queue (`kiln worker --io-concurrency/--gpu-concurrency`):
 * kiln-io activities are downloads and Parquet writes (I/O-bound, 8 overlap well on a few cores);
 * kiln-gpu activities are model work (one training chunk or scoring batch owns the accelerator).
 */
export const DEFAULT_CONCURRENCY: Record<TaskQueue, number> = { [TASK_QUEUES.io]: 8, [TASK_QUEUES.gpu]: 1 } as Record<
  TaskQueue,
  number
>;

export async function createKilnWorkers(
  config: KilnConfig,
  opts: {
    queues?: TaskQueue[];
    deps?: ActivityDeps;
    connection?: NativeConnection;
    concurrency?: Partial<Record<TaskQueue, number>>;
  } = {},
): Promise<KilnWorkers> {
  installRuntime();
  const queues = opts.queues ?? ALL_QUEUES;
  const deps = opts.deps ?? createActivityDeps(config);
  const connection = opts.connection ?? (await NativeConnection.connect({ address: config.temporalAddress }));
  const activities = createActivities(deps);
  const workers: Worker[] = [];
  for (const taskQueue of queues) {
    const servesWorkflows = taskQueue === WORKFLOW_TASK_QUEUE;
    workers.push(
      await Worker.create({
        connection,
        namespace: config.namespace,
        taskQueue,
        activities,
        ...(servesWorkflows ? { workflowBundle: await workflowBundle() } : {}),
        maxConcurrentActivityTaskExecutions: opts.concurrency?.[taskQueue] ?? DEFAULT_CONCURRENCY[taskQueue],
        shutdownGraceTime: '5s',
      }),
    );
  }
  const kiln: KilnWorkers = {
    workers,
    deps,
    async run() {
      try {
        await Promise.all(workers.map((w) => w.run()));
      } finally {
        if (!opts.connection) await connection.close();
        if (!opts.deps) deps.lineage.close();
      }
    },
    shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    },
    async runUntil<T>(work: Promise<T>): Promise<T> {
      const running = kiln.run();
      try {
        return await work;
      } finally {
        kiln.shutdown();
        await running;
      }
    },
  };
  return kiln;
}
