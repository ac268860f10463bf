/**
 * helloWorkflow: the smallest end-to-end stage. Records the job, writes a greeting artifact
 * (kiln-io), waits `pauseMs` on a durable timer (tests stop the server during it), writes a
 * summary that consumes the greeting, records the job's end.
 * Deterministic: no I/O here; activities do it. Query `progress` returns the current phase.
 */
import { defineQuery, proxyActivities, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { KilnActivities } from '../activities/index.js';
import type { ArtifactRef } from '../activities/hello.js';
import { IO_QUEUE } from './queues.js';
import { kilnFailure } from './retry.js';

export interface HelloInput {
  message: string;
  /** Durable pause between the two steps, in ms (default 0). */
  pauseMs?: number;
}

export interface HelloResult {
  jobId: string;
  greeting: ArtifactRef;
  summary: ArtifactRef;
}

export const progressQuery = defineQuery<{ phase: string }>('progress');

const acts = proxyActivities<KilnActivities>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

export async function helloWorkflow(input: HelloInput): Promise<HelloResult> {
  if (typeof input?.message !== 'string' || input.message.length === 0) {
    throw kilnFailure(
      'ConfigError',
      'KILN_CONFIG',
      'hello: input.message must be a non-empty string',
      'pass a message, e.g. `kiln run hello --message hi`.',
    );
  }
  let phase = 'starting';
  setHandler(progressQuery, () => ({ phase }));
  const { workflowId } = workflowInfo();
  const jobId = workflowId;
  await acts.recordJobStarted({ jobId, kind: 'hello', workflowId, params: input });
  try {
    phase = 'greeting';
    const greeting = await acts.writeGreeting({ jobId, message: input.message });
    phase = 'waiting';
    if (input.pauseMs) await sleep(input.pauseMs);
    phase = 'summary';
    const summary = await acts.writeSummary({ jobId, greeting });
    phase = 'done';
    await acts.recordJobFinished({ jobId, status: 'completed' });
    return { jobId, greeting, summary };
  } catch (err) {
    await acts.recordJobFinished({ jobId, status: 'failed', error: String(err) });
    throw err;
  }
}
