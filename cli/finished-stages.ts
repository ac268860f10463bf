/**
 * Restarting a failed or cancelled pipeline job (issue 19): its stages are child workflows with
 * fixed ids (`<job>/crawl`, `/dedup`, `/filter`, `/train`), so the ones that completed say so in Temporal. Their
 * results go into the restarted run's input (`finished`), and the pipeline starts at its first
 * unfinished stage, on the dataset versions those stages made (a crawl is never fetched again).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { PipelineInput, StageName } from '../workflows/pipeline.js';

const STAGES: StageName[] = ['crawl', 'dedup', 'filter', 'train'];

/** `input` with the results of the stages of job `workflowId` that completed in an earlier run. */
export async function withFinishedStages(
  client: Client,
  workflowId: string,
  input: PipelineInput,
): Promise<PipelineInput> {
  const finished: NonNullable<PipelineInput['finished']> = { ...input.finished };
  for (const stage of STAGES) {
    if (stage !== 'crawl' && !input[stage]) continue;
    const handle = client.workflow.getHandle(`${workflowId}/${stage}`);
    try {
      if ((await handle.describe()).status.name !== 'COMPLETED') break;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) break;
      throw err;
    }
    finished[stage] = (await handle.result()) as never; // the stage workflow's own result type
  }
  return Object.keys(finished).length ? { ...input, finished } : input;
}
