/**
 * pipelineWorkflow: one durable parent for sources -> crawl -> filter/caption -> train + eval.
 * Each stage is a child workflow (its own history, its own continue-as-new), started with a
 * deterministic id `${pipelineId}/<stage>` so a retried or resumed pipeline never runs a stage twice.
 * Inputs are built by the CLI from a validated spec; each stage validates its own block again.
 * Query `progress`: the current stage and each stage's result summary.
 */
import {
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  executeChild,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { KilnActivities } from '../activities/index.js';
import { crawlWorkflow, type CrawlWorkflowInput, type CrawlWorkflowResult } from './crawl.js';
import { filterWorkflow, type FilterWorkflowInput, type FilterWorkflowResult } from './filter.js';
import { trainWorkflow, type TrainWorkflowInput, type TrainWorkflowResult } from './train.js';
import { dedupWorkflow, type DedupWorkflowInput, type DedupWorkflowResult } from './dedup.js';
import { IO_QUEUE } from './queues.js';

export type StageName = 'crawl' | 'dedup' | 'filter' | 'train';

export interface PipelineInput {
  name: string;
  crawl: CrawlWorkflowInput;
  /** Exact dedup of image sha256 across the crawled version (dedupWorkflow input minus the source); omitted: no dedup. */
  dedup?: PipelineDedupInput;
  /** Input of filterWorkflow minus the source dataset (filled from the crawl's result). */
  filter?: PipelineFilterInput;
  /** Input of trainWorkflow minus the dataset (filled from the last curation stage's result). */
  train?: PipelineTrainInput;
  /**
   * Results of stages an earlier run of this job finished (set by the CLI when it restarts a failed
   * or cancelled job): those stages are not run again, later ones start from their outputs.
   */
  finished?: {
    crawl?: CrawlWorkflowResult;
    dedup?: DedupWorkflowResult;
    filter?: FilterWorkflowResult;
    train?: TrainWorkflowResult;
  };
}

/** The stage inputs a pipeline passes on are the stage workflows' own input types, minus what it fills in. */
export type PipelineDedupInput = Omit<DedupWorkflowInput, 'datasetName' | 'sourceVersion' | 'jobId' | 'carried'>;
export type PipelineFilterInput = Omit<FilterWorkflowInput, 'datasetName' | 'sourceVersion' | 'jobId' | 'carried'>;
export type PipelineTrainInput = Omit<TrainWorkflowInput, 'dataset' | 'datasetManifestUri' | 'jobId' | 'carried'>;

export interface StageSummary {
  stage: StageName;
  status: 'pending' | 'running' | 'completed' | 'failed';
  jobId: string;
  workflowId: string;
  result?: Record<string, unknown>;
  /** The result comes from an earlier run of this job (the stage did not run again). */
  reused?: boolean;
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

export async function pipelineWorkflow(input: PipelineInput): Promise<PipelineResult> {
  const { workflowId } = workflowInfo();
  const jobId = workflowId;
  const planned: StageName[] = [
    'crawl',
    ...(input.dedup ? ['dedup' as const] : []),
    ...(input.filter ? ['filter' as const] : []),
    ...(input.train ? ['train' as const] : []),
  ];
  const stages: StageSummary[] = planned.map((stage) => ({
    stage,
    status: 'pending',
    jobId: `${jobId}.${stage}`,
    workflowId: `${workflowId}/${stage}`,
  }));
  let current: PipelineProgress['stage'] = 'crawl';
  setHandler(pipelineProgressQuery, () => ({ stage: current, stages }));
  await acts.recordJobStarted({ jobId, kind: 'pipeline', workflowId, params: input });

  /** Run one stage as a child workflow with a fixed id (or take its result from an earlier run of this job). */
  const runStage = async <A extends { jobId?: string }, R>(
    stage: StageName,
    workflow: (a: A) => Promise<R>,
    args: A,
    earlier: R | undefined,
  ): Promise<R> => {
    const s = stages.find((x) => x.stage === stage)!;
    current = stage;
    if (earlier) {
      Object.assign(s, { status: 'completed', result: earlier, reused: true });
      return earlier;
    }
    s.status = 'running';
    try {
      const result = await executeChild(workflow, { workflowId: s.workflowId, args: [{ ...args, jobId: s.jobId }] });
      s.status = 'completed';
      s.result = result as Record<string, unknown>;
      return result;
    } catch (err) {
      s.status = 'failed';
      throw err;
    } finally {
      await CancellationScope.nonCancellable(() => acts.recordJobParent({ jobId: s.jobId, parentJobId: jobId }));
    }
  };

  try {
    const crawl = await runStage('crawl', crawlWorkflow, input.crawl, input.finished?.crawl);
    let dataset = { datasetName: crawl.datasetName, version: crawl.version, manifestUri: crawl.manifestUri };
    if (input.dedup) {
      const d = await runStage(
        'dedup',
        dedupWorkflow,
        { ...input.dedup, datasetName: crawl.datasetName, sourceVersion: crawl.version },
        input.finished?.dedup,
      );
      dataset = { datasetName: d.datasetName, version: d.version, manifestUri: d.manifestUri };
    }
    if (input.filter) {
      const f = await runStage(
        'filter',
        filterWorkflow,
        { ...input.filter, datasetName: crawl.datasetName, sourceVersion: dataset.version },
        input.finished?.filter,
      );
      dataset = { datasetName: f.datasetName, version: f.version, manifestUri: f.manifestUri };
    }
    if (input.train) {
      if ((crawl.countsByStatus.success ?? 0) === 0) {
        throw ApplicationFailure.nonRetryable(
          `the crawl of ${crawl.datasetName} produced no successful rows, so there is nothing to train on`,
          'EmptyDatasetError',
        );
      }
      await runStage(
        'train',
        trainWorkflow,
        { ...input.train, datasetManifestUri: dataset.manifestUri },
        input.finished?.train,
      );
    }
    current = 'done';
    await acts.recordJobFinished({ jobId, status: 'completed' });
    return { jobId, stages };
  } catch (err) {
    // A cancelled job (kiln cancel) still records how it ended.
    await CancellationScope.nonCancellable(() =>
      acts.recordJobFinished({ jobId, status: isCancellation(err) ? 'cancelled' : 'failed', error: String(err) }),
    );
    throw err;
  }
}
