/**
 * What a trial that ran past its deadline was waiting for (issue 17): every workflow the Temporal
 * server knows with its status, and for each open one its pending activities (type, state, attempt,
 * worker that last ran it, last heartbeat, last failure) and pending children. Read through the
 * Temporal client, the same data `temporal workflow describe` prints.
 */
import type { Client } from '@temporalio/client';

const STATES = ['UNSPECIFIED', 'SCHEDULED', 'STARTED', 'CANCEL_REQUESTED', 'PAUSED', 'PAUSE_REQUESTED'];

function when(t: unknown): string {
  if (!t || typeof t !== 'object') return '-';
  const s = Number((t as { seconds?: unknown }).seconds ?? 0);
  return s ? new Date(s * 1000).toISOString().slice(11, 19) : '-';
}

/** One line per workflow, and one indented line per pending activity or child. */
export async function stuckReport(client: Client, query = ''): Promise<string[]> {
  const lines: string[] = [];
  for await (const w of client.workflow.list(query ? { query } : {})) {
    lines.push(`workflow ${w.workflowId} (${w.type}) ${w.status.name}`);
    if (w.status.name !== 'RUNNING') continue;
    const d = await client.workflow.getHandle(w.workflowId, w.runId).describe();
    for (const p of d.raw.pendingActivities ?? []) {
      const failure = p.lastFailure?.message ? ` last failure: ${p.lastFailure.message.slice(0, 200)}` : '';
      lines.push(
        `  activity ${p.activityType?.name} id=${p.activityId} state=${STATES[Number(p.state)] ?? p.state} attempt=${p.attempt}` +
          ` worker=${p.lastWorkerIdentity || '-'} started=${when(p.lastStartedTime)}` +
          ` heartbeat=${when(p.lastHeartbeatTime)}${failure}`,
      );
    }
    for (const c of d.raw.pendingChildren ?? []) lines.push(`  child ${c.workflowId} (${c.workflowTypeName})`);
  }
  return lines;
}
