/** Workflow for errors-retry.test.ts: one activity call under the stage retry policy (short intervals). */
import { proxyActivities } from '@temporalio/workflow';
import { stageRetryPolicy } from '../../workflows/retry.js';

export interface ThrowingActivities {
  throwError(name: string): Promise<void>;
}

const acts = proxyActivities<ThrowingActivities>({
  startToCloseTimeout: '10 seconds',
  retry: { ...stageRetryPolicy({ maximumAttempts: 3 }), initialInterval: '10ms', maximumInterval: '20ms' },
});

export async function throwingStageWorkflow(name: string): Promise<void> {
  await acts.throwError(name);
}
