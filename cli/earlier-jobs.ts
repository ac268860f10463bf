/**
 * Earlier jobs of the same family (issue 19), found through Temporal's visibility list and the
 * identity memo each job carries: a running twin of the same input (left by an earlier CLI whose
 * embedded server died with it) is resumed instead of started again, and a changed input is told
 * which earlier job it does not resume and which fields differ.
 */
import type { Client } from '@temporalio/client';
import { identityOfMemo, type IdentityMemo } from './job-identity.js';

export interface JobSummary {
  workflowId: string;
  type: string;
  status: string;
  started: Date;
  identity?: IdentityMemo;
}

/** Jobs of `workflowType` whose identity memo names `name`, newest first (at most `scan` listed). */
export async function jobsOfName(
  client: Client,
  workflowType: string,
  name: string,
  scan = 500,
): Promise<JobSummary[]> {
  const out: JobSummary[] = [];
  let seen = 0;
  try {
    for await (const w of client.workflow.list({ query: `WorkflowType = '${workflowType.replace(/'/g, '')}'` })) {
      if (++seen > scan) break;
      const identity = identityOfMemo(w.memo);
      if (identity?.name === name)
        out.push({ workflowId: w.workflowId, type: w.type, status: w.status.name, started: w.startTime, identity });
    }
  } catch {
    return out; // a server without visibility queries: nothing to compare with
  }
  return out.sort((a, b) => b.started.getTime() - a.started.getTime());
}

/** What to do before starting a new derived-id job: resume a running twin, or explain what changed. */
export function twinOrEarlier(
  jobs: JobSummary[],
  hash: string,
  workflowId: string,
): { twin?: JobSummary; earlier?: JobSummary } {
  const twin = jobs.find((j) => j.status === 'RUNNING' && j.identity?.hash === hash && j.workflowId !== workflowId);
  const earlier = jobs.find((j) => j.identity?.hash !== hash);
  return { twin, earlier };
}
