/**
 * pipelineWorkflow: one durable parent for sources -> crawl -> filter/caption -> train + eval.
 * Each stage is a child workflow (its own history, its own continue-as-new), started with a
 * deterministic id `${pipelineId}/<stage>` so a retried or resumed pipeline never runs a stage twice.
 * Inputs are built by the CLI from a validated spec; each stage validates its own block again.
 * Query `progress`: the current stage and each stage's result summary.
 */
import { ApplicationFailure, defineQuery, executeChild, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { KilnActivities } from '../activities/index.js';
import type { CrawlWorkflowInput, CrawlWorkflowResult } from './crawl.js';
import { IO_QUEUE } from './queues.js';

export type StageName = 'crawl' | 'dedup' | 'filter' | 'train';

export interface PipelineInput {
  name: string;
  crawl: CrawlWorkflowInput;
  /** Exact dedup of image sha256 across the crawled version (dedupWorkflow input minus the source); omitted: no dedup. */
  dedup?: Record<string, unknown>;
  /** Input of filterWorkflow minus the source dataset (filled from the crawl's result). */
  filter?: Record<string, unknown>;
  /** Input of trainWorkflow minus the dataset (filled from the last curation stage's result). */
  train?: Record<string, unknown>;
}

export interface StageSummary {
  stage: StageName;
  status: 'pending' | 'running' | 'completed' | 'failed';
  jobId: string;
  workflowId: string;
  result?: Record<string, unknown>;
}

export interface PipelineProgress {
  stage: StageName | 'done';
  stages: StageSummary[];
}

export interface PipelineResult {
  jobId: string;
  stages: StageSummary[];
}

export const pipelineProgressQuery = defineQuery<PipelineProgress>('progress');

const acts = proxyActivities<KilnActivities>({
  taskQueue: IO_QUEUE,
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 10 },
});

const WORKFLOW_TYPE: Record<StageName, string> = { crawl: 'crawlWorkflow', dedup: 'dedupWorkflow', filter: 'filterWorkflow', train: 'trainWorkflow' };

export async function pipelineWorkflow(input: PipelineInput): Promise<PipelineResult> {
  const { workflowId } = workflowInfo();
  const jobId = workflowId;
  const planned: StageName[] = ['crawl', ...(input.dedup ? ['dedup' as const] : []), ...(input.filter ? ['filter' as const] : []), ...(input.train ? ['train' as const] : [])];
  const stages: StageSummary[] = planned.map((stage) => ({ stage, status: 'pending', jobId: `${jobId}.${stage}`, workflowId: `${workflowId}/${stage}` }));
  let current: PipelineProgress['stage'] = 'crawl';
  setHandler(pipelineProgressQuery, () => ({ stage: current, stages }));
  await acts.recordJobStarted({ jobId, kind: 'pipeline', workflowId, params: input });

  const runStage = async <R extends Record<string, unknown>>(stage: StageName, args: Record<string, unknown>): Promise<R> => {
    const s = stages.find((x) => x.stage === stage)!;
    current = stage;
    s.status = 'running';
    try {
      const result = await executeChild<(a: Record<string, unknown>) => Promise<R>>(WORKFLOW_TYPE[stage], {
        workflowId: s.workflowId, args: [{ ...args, jobId: s.jobId }],
      });
      s.status = 'completed';
      s.result = result;
      return result;
    } catch (err) {
      s.status = 'failed';
      throw err;
    } finally {
      await acts.recordJobParent({ jobId: s.jobId, parentJobId: jobId });
    }
  };

  try {
    const crawl = await runStage<CrawlWorkflowResult & Record<string, unknown>>('crawl', { ...input.crawl });
    let dataset = { datasetName: crawl.datasetName, version: crawl.version, manifestUri: crawl.manifestUri };
    if (input.dedup) {
      const d = await runStage<{ datasetName: string; version: number; manifestUri: string }>('dedup', { ...input.dedup, datasetName: crawl.datasetName, sourceVersion: crawl.version });
      dataset = { datasetName: d.datasetName, version: d.version, manifestUri: d.manifestUri };
    }
    if (input.filter) {
      const f = await runStage<{ datasetName: string; version: number; manifestUri: string }>('filter', {
        ...input.filter, datasetName: crawl.datasetName, sourceVersion: dataset.version,
      });
      dataset = { datasetName: f.datasetName, version: f.version, manifestUri: f.manifestUri };
    }
    if (input.train) {
      if ((crawl.countsByStatus.success ?? 0) === 0) {
        throw ApplicationFailure.nonRetryable(`the crawl of ${crawl.datasetName} produced no successful rows, so there is nothing to train on`,
          'EmptyDatasetError');
      }
      await runStage('train', { ...input.train, datasetManifestUri: dataset.manifestUri });
    }
    current = 'done';
    await acts.recordJobFinished({ jobId, status: 'completed' });
    return { jobId, stages };
  } catch (err) {
    await acts.recordJobFinished({ jobId, status: 'failed', error: String(err) });
    throw err;
  }
}
