/**
 * Job bookkeeping activities: a workflow records its own start and end in lineage, so the record
 * exists even when the client that started it has gone away.
 */
import { temporalFailures } from './failures.js';
import type { ActivityDeps } from './deps.js';

export interface JobStartInput {
  jobId: string;
  kind: string;
  workflowId: string;
  params: unknown;
}

export interface JobEndInput {
  jobId: string;
  status: 'completed' | 'failed' | 'cancelled';
  error?: string;
}

export function createLineageActivities(deps: ActivityDeps) {
  return temporalFailures({
    /** Record a job start. Idempotent (same jobId -> one row). Retry: default. */
    async recordJobStarted(input: JobStartInput): Promise<void> {
      deps.lineage.startJob({
        id: input.jobId,
        kind: input.kind,
        workflowId: input.workflowId,
        params: input.params,
        codeVersion: deps.codeVersion,
      });
    },
    /** Link a stage job to the pipeline job that ran it. Idempotent. */
    async recordJobParent(input: { jobId: string; parentJobId: string }): Promise<void> {
      deps.lineage.setJobParent(input.jobId, input.parentJobId);
    },
    /** Record a job's end state. Idempotent. */
    async recordJobFinished(input: JobEndInput): Promise<void> {
      deps.lineage.finishJob(input.jobId, input.status, input.error);
    },
  });
}
