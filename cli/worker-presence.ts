/**
 * Which task queues have a live worker (issue 19, no zombies): Temporal's DescribeTaskQueue lists
 * the pollers it saw recently with their last access time. A queue whose newest poll is older than
 * the staleness window (`stalePollerMs`: 2 minutes, or `KILN_STALE_POLLER_MS`) or that has none has
 * no worker: a worker that never polled, and one that polled and then died (kill -9, OOM, reboot;
 * Temporal keeps listing it with its last poll time for minutes). Jobs on it are stalled until one
 * starts (`kiln resume <id>` runs one in-process, `kiln up` runs one in the foreground).
 */
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { ConfigError } from '../infra/errors.js';

const { TaskQueueKind, TaskQueueType } = proto.temporal.api.enums.v1;

/**
 * A live worker renews its long poll at least about once a minute (the server ends an idle poll
 * after a minute); two minutes without a poll means it is gone.
 */
export const DEFAULT_STALE_POLLER_MS = 120_000;

/**
 * The staleness window: `KILN_STALE_POLLER_MS` (milliseconds, an integer >= 1000) or 2 minutes. A
 * window shorter than a minute can mark a live but idle worker as gone; it exists for tests.
 */
export function stalePollerMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.KILN_STALE_POLLER_MS;
  if (raw === undefined || raw.trim() === '') return DEFAULT_STALE_POLLER_MS;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 1000)
    throw new ConfigError(
      `KILN_STALE_POLLER_MS is ${JSON.stringify(raw)}, not a whole number of milliseconds >= 1000`,
      `set KILN_STALE_POLLER_MS to e.g. ${DEFAULT_STALE_POLLER_MS} (the default, 2 minutes), or unset it.`,
    );
  return ms;
}

/** "2 minutes", "90 s": the window as `kiln status` prints it. */
export function staleWindowText(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}` : `${ms / 1000} s`;
}

export type QueueKind = 'workflow' | 'activity';

/** Milliseconds since the newest poll on `queue` (Infinity when no poller is known). */
export async function msSinceLastPoll(
  client: Client,
  queue: string,
  kind: QueueKind,
  now = Date.now(),
): Promise<number> {
  const r = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: queue, kind: TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType:
      kind === 'workflow' ? TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW : TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
  });
  let newest = -Infinity;
  for (const p of r.pollers ?? []) {
    const t = p.lastAccessTime;
    if (t?.seconds != null) newest = Math.max(newest, Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6));
  }
  return newest === -Infinity ? Infinity : Math.max(0, now - newest);
}

/** Cached per (queue, kind) for one command: has a worker polled it within `staleMs`? */
export function workerPresence(
  client: Client,
  staleMs = stalePollerMs(),
): (queue: string, kind: QueueKind) => Promise<boolean> {
  const seen = new Map<string, Promise<boolean>>();
  return (queue, kind) => {
    const key = `${kind}:${queue}`;
    if (!seen.has(key))
      seen.set(
        key,
        msSinceLastPoll(client, queue, kind).then((ms) => ms < staleMs),
      );
    return seen.get(key)!;
  };
}
