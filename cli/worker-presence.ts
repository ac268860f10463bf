/**
 * Which task queues have a live worker (issue 19, no zombies): Temporal's DescribeTaskQueue lists
 * the pollers it saw recently with their last access time. A queue whose newest poll is older than
 * `STALE_POLLER_MS` (or that has none) has no worker: jobs on it are stalled until one starts
 * (`kiln resume <id>` runs one in-process, `kiln up` runs one in the foreground).
 */
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';

const { TaskQueueKind, TaskQueueType } = proto.temporal.api.enums.v1;

/** A worker long-polls about once a minute; two minutes without a poll means it is gone. */
export const STALE_POLLER_MS = 120_000;

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

/** Cached per (queue, kind) for one command: does a worker poll it now? */
export function workerPresence(client: Client): (queue: string, kind: QueueKind) => Promise<boolean> {
  const seen = new Map<string, Promise<boolean>>();
  return (queue, kind) => {
    const key = `${kind}:${queue}`;
    if (!seen.has(key))
      seen.set(
        key,
        msSinceLastPoll(client, queue, kind).then((ms) => ms < STALE_POLLER_MS),
      );
    return seen.get(key)!;
  };
}
