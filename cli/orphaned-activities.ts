/**
 * Activity attempts whose worker is known dead (issue 19): after `kill -9` of a `kiln run`, its job's
 * running activities (a crawl shard, a training chunk) stay "started" until their heartbeat timeout
 * (up to 2 minutes) before Temporal retries them. A worker's identity is `<pid>@<host>`; when that
 * host is this one and the pid is gone, the attempt can never finish, so the rerun fails it at once
 * (RespondActivityTaskFailedById, with its last heartbeat details kept) and the retry starts now.
 * Attempts of live or remote workers are left alone.
 */
import { hostname } from 'node:os';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';

const { PendingActivityState } = proto.temporal.api.enums.v1;

/** True when `identity` (`pid@host`) names a process of this host that no longer exists. */
export function deadLocalWorker(identity: string | null | undefined, host = hostname()): boolean {
  const m = /^(\d+)@(.+)$/.exec(identity ?? '');
  if (!m || m[2] !== host) return false;
  try {
    process.kill(Number(m[1]), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Fail the started attempts of dead local workers in job `workflowId` and its running children; returns how many. */
export async function retryOrphanedActivities(client: Client, workflowId: string): Promise<number> {
  const namespace = client.options.namespace;
  const d = await client.workflowService.describeWorkflowExecution({ namespace, execution: { workflowId } });
  let n = 0;
  for (const a of d.pendingActivities ?? []) {
    if (a.state !== PendingActivityState.PENDING_ACTIVITY_STATE_STARTED || !deadLocalWorker(a.lastWorkerIdentity))
      continue;
    try {
      await client.workflowService.respondActivityTaskFailedById({
        namespace,
        workflowId,
        runId: d.workflowExecutionInfo?.execution?.runId ?? '',
        activityId: a.activityId,
        identity: `kiln-cli-${process.pid}`,
        lastHeartbeatDetails: a.heartbeatDetails,
        failure: {
          message: `the worker running this attempt (${a.lastWorkerIdentity}) is gone from this host; retried at once`,
          source: 'kiln',
          applicationFailureInfo: { type: 'WorkerGoneError', nonRetryable: false },
        },
      });
      n++;
    } catch {
      // The attempt ended meanwhile (completed, timed out): nothing to do.
    }
  }
  for (const c of d.pendingChildren ?? []) if (c.workflowId) n += await retryOrphanedActivities(client, c.workflowId);
  return n;
}
