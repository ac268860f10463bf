/**
 * Kill trials on whole pipelines (crawl, filter, train) and the Temporal-server restart trial.
 * Each trial: a fresh Sandbox (data root + dev server + `kiln worker` child), the synthetic web,
 * a spec loaded through the CLI's own loader, the pipeline started with the Temporal client; the
 * worker is SIGKILLed at a random moment in the target stage (or the server is stopped and
 * restarted on the same SQLite file), restarted, and the pipeline must complete with every check.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { PROJECT_ROOT } from '../infra/config.js';
import { WORKFLOW_TASK_QUEUE } from '../infra/constants.js';
import { LineageStore } from '../infra/lineage/store.js';
import { loadSpec } from '../cli/spec/load.js';
import { pipelineInputFromSpec } from '../cli/spec/to-input.js';
import { startSyntheticWeb } from '../demo/synthetic-web.js';
import type { PipelineProgress, PipelineResult } from '../workflows/pipeline.js';
import { Sandbox, sleep } from './harness.js';
import { checkDataset, checkLineage, checkNoPartialFiles, expectedKeys } from './checks.js';
import type { TrialSpec } from './types.js';
import { verdict } from './types.js';

const FIXTURES = join(PROJECT_ROOT, 'fixtures');
const SHAPE = {
  crawl: { count: 60, rowsPerShard: 10, windowMs: 2500 },
  filter: { count: 40, rowsPerShard: 20, windowMs: 3000 },
  train: { count: 24, rowsPerShard: 12, windowMs: 5000 },
} as const;
const TRAIN = { total: 8, chunk: 2 };
const TRAIN_CONFIG = { resolution: 16, optim: { lr: 1e-3 }, runtime: { backend: 'wasm' } };

type Shape = keyof typeof SHAPE;

function specOf(shape: Shape, sources: string): Record<string, unknown> {
  const s = SHAPE[shape];
  return {
    version: 1,
    name: 'chaos',
    sources: [{ path: sources }],
    crawl: {
      rows_per_shard: s.rowsPerShard,
      image_size: 16,
      resize_mode: 'center_crop',
      timeout_ms: 5000,
      allow_addresses: ['127.0.0.1'],
    },
    ...(shape === 'filter'
      ? { filter: { clip_model: join(FIXTURES, 'models', 'clip-tiny'), keep_top_fraction: 0.75 } }
      : {}),
    ...(shape === 'train'
      ? { train: { run_name: 'chaos-run', total_steps: TRAIN.total, chunk_steps: TRAIN.chunk, config: TRAIN_CONFIG } }
      : {}),
  };
}

/** Start the pipeline for `shape` in the sandbox (short heartbeat timeouts so a dead worker's work is retried quickly). */
export async function startPipeline(
  sb: Sandbox,
  client: Client,
  shape: Shape,
  seed: number,
): Promise<{ handle: WorkflowHandle; close(): Promise<void> }> {
  const web = await startSyntheticWeb({ count: SHAPE[shape].count, seed, faultEvery: 8 });
  writeFileSync(join(sb.dir, 'urls.csv'), web.urlListCsv());
  writeFileSync(join(sb.dir, 'spec.yaml'), stringify(specOf(shape, 'urls.csv')));
  const input = pipelineInputFromSpec(loadSpec(join(sb.dir, 'spec.yaml')));
  input.crawl.shardHeartbeatTimeout = '5s';
  if (input.filter) input.filter.shardHeartbeatTimeout = '5s';
  if (input.train) input.train.chunkHeartbeatTimeout = '5s';
  const handle = await client.workflow.start('pipelineWorkflow', {
    taskQueue: WORKFLOW_TASK_QUEUE,
    workflowId: `chaos-${shape}-${seed}`,
    args: [input],
  });
  return { handle, close: () => web.close() };
}

export async function stageOf(handle: WorkflowHandle): Promise<string | null> {
  try {
    return (await handle.query<PipelineProgress>('progress')).stage;
  } catch {
    return null;
  }
}

/** Every check on a finished pipeline; `reference` = the sha256s of an uninterrupted run's final checkpoint. */
export async function checkPipeline(
  sb: Sandbox,
  shape: Shape,
  r: PipelineResult,
  reference?: Record<string, string>,
): Promise<{ problems: string[]; notes: string[] }> {
  const problems: string[] = [];
  const notes: string[] = [];
  const bad = r.stages.filter((s) => s.status !== 'completed');
  if (bad.length)
    return { problems: [`stages not completed: ${bad.map((s) => `${s.stage}:${s.status}`).join(', ')}`], notes };
  const crawl = r.stages.find((s) => s.stage === 'crawl')!.result as { version: number; datasetName: string };
  const keys = expectedKeys(SHAPE[shape].count, SHAPE[shape].rowsPerShard);
  const c = await checkDataset(sb.dataRoot, crawl.datasetName, crawl.version, keys);
  problems.push(...c.problems);
  notes.push(`${c.rows} rows ${JSON.stringify(c.byStatus)}`);
  const filter = r.stages.find((s) => s.stage === 'filter')?.result as
    { version: number; datasetName: string } | undefined;
  if (filter) problems.push(...(await checkDataset(sb.dataRoot, filter.datasetName, filter.version, keys)).problems);
  const train = r.stages.find((s) => s.stage === 'train');
  if (train) {
    const res = train.result as { finalCheckpoint: { step: number; sha256s: Record<string, string> } | null };
    const fc = res.finalCheckpoint;
    if (!fc || fc.step !== TRAIN.total) problems.push(`final checkpoint at step ${fc?.step}, want ${TRAIN.total}`);
    const ref =
      reference ?? (fc ? await sameDatasetReference(sb, (crawl as { manifestUri?: string }).manifestUri!) : undefined);
    if (fc && ref) {
      for (const [name, sha] of Object.entries(ref)) {
        if (fc.sha256s[name] !== sha)
          problems.push(
            `final ${name} sha256 ${fc.sha256s[name]?.slice(0, 12)} != uninterrupted run ${sha.slice(0, 12)}`,
          );
      }
    }
    const store = new LineageStore(sb.config.lineagePath);
    try {
      for (const run of store.runsOfJob(train.jobId).filter((x) => x.stage === 'train.chunk')) {
        const rr = run.result as {
          attempt?: number;
          resumedFromStep?: number;
          step?: number;
          alreadyDone?: boolean;
        } | null;
        if (!rr || (rr.attempt ?? 1) < 2) continue;
        const want = (rr.step ?? 0) - TRAIN.chunk;
        // A killed attempt may have written this chunk's checkpoint already: the retry then finds it and trains nothing.
        if (rr.alreadyDone && rr.resumedFromStep === rr.step)
          notes.push(`chunk retried, its checkpoint ${rr.step} was already written`);
        else if (rr.resumedFromStep !== want)
          problems.push(
            `${run.id} attempt ${rr.attempt} resumed from step ${rr.resumedFromStep}, last checkpoint was ${want}`,
          );
        else notes.push(`chunk retried, resumed from ckpt ${want}`);
      }
    } finally {
      store.close();
    }
  }
  const partial = await checkNoPartialFiles(sb.dataRoot);
  problems.push(...partial.problems, ...checkLineage(sb.dataRoot));
  if (partial.hiddenTemps) notes.push(`${partial.hiddenTemps} hidden temp file(s) left`);
  return { problems, notes };
}

export async function resultWithin(handle: WorkflowHandle, ms: number): Promise<PipelineResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`pipeline not done within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([handle.result() as Promise<PipelineResult>, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run one pipeline in a fresh sandbox; `fault` injects the chaos once the pipeline is started. */
export async function inSandbox<T>(fn: (sb: Sandbox) => Promise<T>): Promise<T> {
  const sb = new Sandbox();
  try {
    await sb.startServer();
    await sb.startWorker();
    return await fn(sb);
  } finally {
    await sb.dispose();
  }
}

/**
 * The final checkpoint sha256s of an uninterrupted training run on the SAME dataset version, in the
 * same sandbox (crawled shards keep rows in completion order, so two crawls of one web differ).
 */
async function sameDatasetReference(sb: Sandbox, datasetManifestUri: string): Promise<Record<string, string>> {
  const { client, close } = await sb.client();
  try {
    const r = (await client.workflow.execute('trainWorkflow', {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId: `chaos-ref-${Date.now().toString(36)}`,
      args: [
        {
          datasetManifestUri,
          runName: 'chaos-reference',
          totalSteps: TRAIN.total,
          chunkSteps: TRAIN.chunk,
          config: TRAIN_CONFIG,
        },
      ],
    })) as { finalCheckpoint: { sha256s: Record<string, string> } };
    return Object.fromEntries(Object.entries(r.finalCheckpoint.sha256s).filter(([n]) => n !== 'state.json'));
  } finally {
    await close();
  }
}

/** An uninterrupted train pipeline's final checkpoint sha256s (model, EMA, optimizer; state.json names paths). */
export async function trainReference(seed: number): Promise<Record<string, string>> {
  return inSandbox(async (sb) => {
    const { client, close } = await sb.client();
    const p = await startPipeline(sb, client, 'train', seed);
    try {
      const r = await resultWithin(p.handle, 300_000);
      const fc = (
        r.stages.find((s) => s.stage === 'train')!.result as { finalCheckpoint: { sha256s: Record<string, string> } }
      ).finalCheckpoint;
      return Object.fromEntries(Object.entries(fc.sha256s).filter(([n]) => n !== 'state.json'));
    } finally {
      await p.close();
      await close();
    }
  });
}

/** kill -9 the worker at a random moment while `stage` runs, restart it, check everything. */
export function killTrial(
  stage: Shape,
  index: number,
  seed: number,
  reference: () => Promise<Record<string, string> | undefined>,
): TrialSpec {
  return {
    name: `${stage}-kill#${index}`,
    stage,
    run: () =>
      inSandbox(async (sb) => {
        const ref = await reference();
        const { client, close } = await sb.client();
        const p = await startPipeline(sb, client, stage, seed);
        try {
          const started = Date.now();
          let seen: string | null = null;
          while (Date.now() - started < 120_000) {
            seen = await stageOf(p.handle);
            if (seen === stage || seen === 'done' || (stage === 'crawl' && seen !== null)) break;
            await sleep(100);
          }
          const delay = Math.floor(Math.random() * SHAPE[stage].windowMs);
          await sleep(delay);
          const at = await stageOf(p.handle);
          await sb.killWorker();
          const downMs = Math.floor(Math.random() * 1000);
          await sleep(downMs);
          await sb.startWorker();
          const action = `kill -9 worker ${delay} ms into ${stage} (running: ${at ?? '?'}), restart after ${downMs} ms`;
          let r: PipelineResult;
          try {
            r = await resultWithin(p.handle, 300_000);
          } catch (err) {
            return { action, outcome: 'FAIL' as const, detail: (err as Error).message.split('\n')[0]! };
          }
          const { problems, notes } = await checkPipeline(sb, stage, r, stage === 'train' ? ref : undefined);
          return verdict(action, problems, notes.join('; '));
        } finally {
          await p.close();
          await close();
        }
      }),
  };
}

/** Stop the Temporal dev server mid-pipeline, start it again on the same SQLite file; the pipeline completes. */
export function serverRestartTrial(
  index: number,
  seed: number,
  reference: () => Promise<Record<string, string> | undefined>,
): TrialSpec {
  return {
    name: `server-restart#${index}`,
    stage: 'server',
    run: () =>
      inSandbox(async (sb) => {
        const ref = await reference();
        const first = await sb.client();
        const p = await startPipeline(sb, first.client, 'train', seed);
        const workflowId = p.handle.workflowId;
        try {
          const target = index % 2 === 0 ? 'crawl' : 'train';
          const t0 = Date.now();
          while (Date.now() - t0 < 120_000 && (await stageOf(p.handle)) !== target) await sleep(100);
          const delay = Math.floor(Math.random() * 1500);
          await sleep(delay);
          const at = await stageOf(p.handle);
          await first.close();
          await sb.stopServer();
          const downMs = 1000 + Math.floor(Math.random() * 2000);
          await sleep(downMs);
          await sb.startServer();
          await sleep(3000);
          const restarted = !sb.workerAlive;
          if (restarted) await sb.startWorker();
          const action =
            `stop Temporal ${delay} ms into ${target} (running: ${at ?? '?'}), down ${downMs} ms, same SQLite file` +
            (restarted ? '; worker had exited, restarted' : '');
          const again = await sb.client();
          try {
            let r: PipelineResult;
            try {
              r = await resultWithin(again.client.workflow.getHandle(workflowId), 300_000);
            } catch (err) {
              return { action, outcome: 'FAIL' as const, detail: (err as Error).message.split('\n')[0]! };
            }
            const { problems, notes } = await checkPipeline(sb, 'train', r, ref);
            return verdict(action, problems, notes.join('; '));
          } finally {
            await again.close();
          }
        } finally {
          await p.close();
        }
      }),
  };
}

/** Names of the activities the stage's child workflow is running now ([] when it is not there yet). */
async function pendingActivities(client: Client, pipelineId: string, stage: Shape): Promise<string[]> {
  try {
    const d = await client.workflow.getHandle(`${pipelineId}/${stage}`).describe();
    return (d.raw.pendingActivities ?? []).map((a) => a.activityType?.name ?? '');
  } catch {
    return [];
  }
}

/**
 * kill -9 the worker while the `stage` workflow runs `activity` itself (seen in its pending
 * activities), e.g. `planFilter`; the pipeline must then complete within `limitS` seconds, i.e. the
 * killed activity is retried after a heartbeat timeout, not after its start-to-close timeout.
 */
export function activityKillTrial(
  stage: Shape,
  activity: string,
  index: number,
  seed: number,
  limitS: number,
): TrialSpec {
  return {
    name: `${stage}-${activity}-kill#${index}`,
    stage,
    run: () =>
      inSandbox(async (sb) => {
        const { client, close } = await sb.client();
        const p = await startPipeline(sb, client, stage, seed);
        try {
          const t0 = Date.now();
          let seen = false;
          while (!seen && Date.now() - t0 < 180_000) {
            seen = (await pendingActivities(client, p.handle.workflowId, stage)).includes(activity);
            if (!seen) {
              if ((await stageOf(p.handle)) === 'done') break;
              await sleep(30);
            }
          }
          if (!seen)
            return {
              action: `wait for ${activity}`,
              outcome: 'FAIL' as const,
              detail: `never saw ${activity} running (stage finished first?)`,
            };
          await sb.killWorker();
          const downMs = Math.floor(Math.random() * 1000);
          await sleep(downMs);
          await sb.startWorker();
          const action = `kill -9 worker while ${stage} runs ${activity}, restart after ${downMs} ms`;
          let r: PipelineResult;
          try {
            r = await resultWithin(p.handle, limitS * 1000);
          } catch (err) {
            const running = (await pendingActivities(client, p.handle.workflowId, stage)).join(', ') || '-';
            return verdict(
              action,
              [`${(err as Error).message.split('\n')[0]} of the kill (now running: ${running})`],
              '',
            );
          }
          const { problems, notes } = await checkPipeline(sb, stage, r);
          return verdict(action, problems, notes.join('; '));
        } finally {
          await p.close();
          await close();
        }
      }),
  };
}
