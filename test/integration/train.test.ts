/**
 * trainWorkflow end to end through a real Temporal dev server (TestWorkflowEnvironment.createLocal
 * with the project's temporal binary), real workers, a tiny Parquet dataset version, the tiny FID
 * extractor and CLIP fixtures, and a real lineage file: evaluations every N steps with early
 * stopping and the best checkpoint kept, the report, continue-as-new, a worker SIGKILLed in the
 * middle of a chunk (same final weights as an uninterrupted run), cancellation, and a NaN loss.
 * Training runs at 16x16 on the backend `auto` picks (native TensorFlow when setup built it;
 * `KILN_TF_BACKEND=wasm` runs the same suite on the wasm fallback).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { Context } from '@temporalio/activity';
import {
  createActivityDeps,
  createKilnWorkers,
  workflowBundle,
  type KilnWorkers,
} from '../../infra/temporal/worker.js';
import { createTrainActivities } from '../../activities/train.js';
import { TASK_QUEUES, WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { PROJECT_ROOT, type KilnConfig } from '../../infra/config.js';
import { sha256File } from '../../infra/hash.js';
import { ConfigError } from '../../infra/errors.js';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { formatTrainProgress, trainInputFromFlags } from '../../cli/commands/train.js';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout, shardRelativePath } from '../../datasets/shards/layout.js';
import { writeDatasetManifest } from '../../datasets/shards/manifest.js';
import type { TrainingConfigInput } from '../../training/config.js';
import type { TrainProgress, TrainWorkflowInput, TrainWorkflowResult } from '../../workflows/train.js';
import { colorRows, writeFixtureShard } from '../training/shard-fixtures.js';
import { TEST_CONFIG } from '../training/train-config.js';
import { tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';

const EXTRACTOR = join(PROJECT_ROOT, 'fixtures', 'eval', 'fid-tiny');
const CLIP = join(PROJECT_ROOT, 'fixtures', 'models', 'clip-tiny');
const VAE = join(PROJECT_ROOT, 'fixtures', 'models', 'tiny-vae');
/** Keep only the newest checkpoint (plus the best): retention must not drop the best one. */
const CONFIG: TrainingConfigInput = { ...TEST_CONFIG, checkpoint: { keepLast: 1 } };
/** The backend the in-process workers train on (and record in lineage). */
const BACKEND = (await selectTfBackend()).name;

/** Two shards of colour squares (some failed rows) as dataset version tiny@v1, recorded in lineage. */
async function writeDataset(storage: LocalStorage, lineagePath: string): Promise<void> {
  const layout = new DatasetLayout(storage, 'tiny', 1);
  const parts = [await colorRows('0', 10, 4), await colorRows('1', 7, 3)];
  const shards = [];
  for (const [i, rows] of parts.entries()) {
    const uri = layout.shardUri(i);
    await writeFixtureShard(storage, uri, rows, 4);
    shards.push({
      index: i,
      path: shardRelativePath(i),
      rows: rows.length,
      sha256: await sha256File(storage.localPath(uri)),
      bytes: (await storage.size(uri))!,
    });
  }
  const success = parts.flat().filter((r) => r.status === 'success').length;
  const written = await writeDatasetManifest(storage, {
    id: layout.id,
    name: 'tiny',
    version: 1,
    parents: [],
    schemaVersion: 1,
    stage: 'test',
    params: {},
    createdAt: '2025-01-01T00:00:00Z',
    rows: 17,
    countsByStatus: { success, failed_to_download: 17 - success },
    shards,
  });
  const lineage = new LineageStore(lineagePath);
  try {
    const a = lineage.recordArtifact({
      uri: written.uri,
      kind: 'dataset-manifest',
      sha256: written.sha256,
      bytes: written.bytes,
    });
    lineage.recordDatasetVersion({
      id: layout.id,
      name: 'tiny',
      version: 1,
      manifestArtifactId: a.id,
      parents: [],
      schemaVersion: 1,
      params: {},
      runId: null,
    });
  } finally {
    lineage.close();
  }
}

/** Run the given workers until `work` settles. */
async function withWorkers<T>(workers: KilnWorkers[], work: () => Promise<T>): Promise<T> {
  const running = Promise.all(workers.map((w) => w.run()));
  try {
    return await work();
  } finally {
    for (const w of workers) w.shutdown();
    await running;
  }
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The last heartbeat details of the workflow's running activity, if any. */
async function heartbeat(handle: WorkflowHandle): Promise<{ phase?: string; step?: number } | undefined> {
  const p = (await handle.describe()).raw.pendingActivities?.[0]?.heartbeatDetails?.payloads?.[0];
  return p?.data ? (JSON.parse(Buffer.from(p.data).toString('utf8')) as { phase?: string; step?: number }) : undefined;
}

/** Replay the workflow's recorded history against today's workflow code (determinism check). */
async function replay(handle: WorkflowHandle): Promise<void> {
  await Worker.runReplayHistory(
    { workflowBundle: await workflowBundle() },
    await handle.fetchHistory(),
    handle.workflowId,
  );
}

describe('trainWorkflow (Temporal)', () => {
  let env: TestWorkflowEnvironment;
  let config: KilnConfig;
  let storage: LocalStorage;
  const dir = tempDir('kiln-train-wf-');
  const file = (uri: string) => storage.localPath(uri);
  const lineage = () => new LineageStore(config.lineagePath);
  const start = (input: TrainWorkflowInput, workflowId = uniqueId('train')) =>
    env.client.workflow.start('trainWorkflow', { taskQueue: WORKFLOW_TASK_QUEUE, workflowId, args: [input] });
  const workers = (queues = [TASK_QUEUES.io, TASK_QUEUES.gpu]) =>
    createKilnWorkers(config, { connection: env.nativeConnection, queues });
  let straight: TrainWorkflowResult;

  before(async () => {
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalBinary() } },
    });
    config = testConfig(dir.path, env.address);
    storage = new LocalStorage(config.dataRoot);
    await writeDataset(storage, config.lineagePath);
  });
  after(async () => {
    await env?.teardown();
    dir.cleanup();
  });

  it('evaluates every N steps, stops early when KID does not improve, keeps the best checkpoint, writes the report', async () => {
    // KID: the early-stopping metric by default below feature_dim samples.
    // The input shape the pipeline passes: the manifest URI, and no reference set (the training set is the default).
    const handle = await start({
      datasetManifestUri: new DatasetLayout(storage, 'tiny', 1).manifestUri,
      runName: 'early',
      config: CONFIG,
      totalSteps: 12,
      chunkSteps: 2,
      chunkHeartbeatTimeout: '10s',
      eval: {
        everySteps: 2,
        sampleCount: 8,
        patience: 1,
        minDelta: 1e9,
        extractorDir: EXTRACTOR,
        clipModelDir: CLIP,
        samplerSteps: 3,
        guidanceScale: 2,
        batchSize: 8,
        gridSamples: 4,
        seed: 1,
      },
    });
    const r = (await withWorkers([await workers()], () => handle.result())) as TrainWorkflowResult;
    await replay(handle);

    // minDelta is huge, so the second evaluation is no improvement and patience 1 stops the run.
    // 8 samples < the tiny extractor's 64 dimensions: the run stops on KID (no metric was configured).
    assert.equal(r.status, 'stopped-early');
    assert.equal(r.metric, 'kid');
    assert.ok(
      r.evaluations.every((e) => Number.isFinite(e.kid)),
      JSON.stringify(r.evaluations),
    );
    assert.equal(r.bestValue, r.evaluations[0]!.kid);
    assert.equal(r.finalStep, 4);
    assert.deepEqual(
      r.evaluations.map((e) => e.step),
      [2, 4],
    );
    assert.ok(
      r.evaluations.every((e) => Number.isFinite(e.fid) && e.fid! > 0),
      JSON.stringify(r.evaluations),
    );
    assert.ok(r.evaluations.every((e) => e.clipScore !== null && Math.abs(e.clipScore) <= 1));
    assert.equal(r.bestStep, 2);
    assert.equal(r.bestFid, r.evaluations[0]!.fid);
    assert.match(
      r.stopReason,
      /KID has not improved by more than 1000000000 for 1 evaluations in a row.*keep the checkpoint at step 2/,
    );

    // The best checkpoint survives retention (keepLast 1) and best.json names it with its hashes.
    const run = storage.uri('runs', 'early');
    assert.deepEqual(
      readdirSync(file(storage.child(run, 'checkpoints'))).filter((n) => n.startsWith('step-')),
      ['step-000000002', 'step-000000004'],
    );
    const best = JSON.parse(readFileSync(file(r.best.uri), 'utf8')) as {
      step: number;
      checkpointUri: string;
      sha256s: Record<string, string>;
      metric: string;
      value: number;
      reason: string;
    };
    assert.equal(r.best.uri, storage.child(run, 'best.json'));
    assert.equal(best.step, 2);
    assert.equal(best.metric, 'kid');
    assert.equal(best.value, r.evaluations[0]!.kid);
    for (const [name, sha] of Object.entries(best.sha256s))
      assert.equal(await sha256File(file(storage.child(best.checkpointUri, name))), sha, name);

    // Each evaluation's record carries its protocol; the reference statistics were computed once.
    const extractorSha = await sha256File(join(EXTRACTOR, 'model.onnx'));
    const records = [2, 4].map(
      (step) =>
        JSON.parse(readFileSync(file(storage.child(run, 'evals', `step-00000000${step}.json`)), 'utf8')) as {
          record: { fid: number; protocol: Record<string, unknown>; sampleGrid: string };
          reference: { statsUri: string; statsSha256: string; count: number };
        },
    );
    for (const rec of records) {
      assert.equal(rec.record.protocol.extractorSha256, extractorSha);
      assert.equal(rec.record.protocol.sampleCount, 8);
      assert.equal(rec.record.protocol.seed, 1);
      assert.equal(rec.record.protocol.referenceStatsSha256, await sha256File(file(rec.reference.statsUri)));
      assert.equal(
        rec.record.protocol.sampler,
        'euler, 3 steps, guidance 2',
        'flow matching (the default) samples with the Euler ODE solver',
      );
      assert.equal(rec.record.protocol.metric, 'kid');
      assert.equal(rec.record.protocol.featureDim, 64);
      assert.equal(rec.record.protocol.referenceCount, 13);
      assert.match(
        String(rec.record.protocol.resize),
        /reference: decoded and resized to 16x16 as training does.*first 5000 images; samples at 16x16; both clean-fid "clean" resize to 32x32/,
      );
      assert.equal(rec.reference.count, 13, 'the 13 success rows of tiny@v1');
    }
    assert.equal(records[0]!.reference.statsSha256, records[1]!.reference.statsSha256);

    // The report opens from disk and shows both sample grids (real PNG files beside it).
    assert.equal(r.reportUri, storage.child(run, 'report', 'index.html'));
    const html = readFileSync(file(r.reportUri), 'utf8');
    assert.match(html, /Early stopping: stop/);
    // The objective, the PRX setting and the loss parts are in the report's summary.
    assert.match(html, /flow matching/);
    assert.match(html, /off \(pixel space/);
    assert.match(html, /PRX share of the gradient/);
    for (const rec of records) {
      assert.ok(html.includes(`src="${rec.record.sampleGrid}"`), rec.record.sampleGrid);
      const png = readFileSync(join(file(storage.child(run, 'report')), rec.record.sampleGrid));
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    }
    assert.match(html, /tiny@v1/);

    // Lineage: chunk runs produced checkpoint files with their sha256 and consumed the manifest;
    // eval runs consumed the extractor and reference statistics; the run records the stop reason.
    const store = lineage();
    try {
      assert.equal(store.getJob(r.jobId)!.status, 'completed');
      const runs = store.runsOfJob(r.jobId);
      const chunks = runs.filter((x) => x.stage === 'train.chunk');
      assert.deepEqual(
        chunks.map((c) => [c.id, c.status, c.environment.backend, c.environment.precision]),
        [
          [`${r.jobId}/train/chunk-2`, 'completed', BACKEND, 'fp32'],
          [`${r.jobId}/train/chunk-4`, 'completed', BACKEND, 'fp32'],
        ],
      );
      for (const c of chunks) {
        const produced = store.artifactsOfRun(c.id, 'produced').filter((a) => a.kind === 'checkpoint-file');
        assert.equal(produced.length, 4);
        for (const a of produced) if (existsSync(file(a.uri))) assert.equal(await sha256File(file(a.uri)), a.sha256);
        assert.ok(store.artifactsOfRun(c.id, 'consumed').some((a) => a.kind === 'dataset-manifest'));
      }
      const evals = runs.filter((x) => x.stage === 'train.eval');
      assert.equal(evals.length, 2);
      const consumed = store.artifactsOfRun(evals[0]!.id, 'consumed').map((a) => a.kind);
      for (const kind of ['fid-extractor', 'fid-reference-stats', 'checkpoint-file', 'clip-model-file'])
        assert.ok(consumed.includes(kind), kind);
      assert.deepEqual(
        store
          .artifactsOfRun(evals[0]!.id, 'produced')
          .map((a) => a.kind)
          .sort(),
        ['eval-record', 'sample-grid'],
      );
      const trainRun = store.getRun(`${r.jobId}/train`)!;
      assert.equal(trainRun.status, 'completed');
      assert.equal((trainRun.result as { stopReason: string }).stopReason, r.stopReason);
      assert.ok(store.artifactsOfRun(`${r.jobId}/train/report`, 'produced').some((a) => a.uri === r.reportUri));
      const verified = store.verify();
      assert.ok(verified.ok, JSON.stringify(verified.problems));
    } finally {
      store.close();
    }
    // Losses are finite at every step.
    const logs = readdirSync(file(storage.child(run, 'train-log'))).map(
      (n) =>
        JSON.parse(readFileSync(join(file(storage.child(run, 'train-log')), n), 'utf8')) as {
          entries: {
            step: number;
            loss: number;
            diffusion: number;
            prxVar: number;
            prxCorr: number;
            prxGradShare: number;
          }[];
        },
    );
    const steps = logs.flatMap((l) => l.entries);
    assert.deepEqual(
      steps.map((e) => e.step),
      [1, 2, 3, 4],
    );
    assert.ok(steps.every((e) => Number.isFinite(e.loss)));
    // Loss parts per step; PRX is off in pixel space by default, so the loss is the diffusion loss.
    assert.ok(
      steps.every((e) => e.diffusion === e.loss && e.prxVar === 0 && e.prxCorr === 0 && e.prxGradShare === 0),
      JSON.stringify(steps[0]),
    );
  });

  it('an evaluation that fails for good counts as no improvement: the run stops after patience failures instead of failing', async () => {
    // A reference directory that does not exist passes the option checks (it could appear before the
    // first evaluation) but makes every evaluation fail with a non-retryable MissingFileError inside
    // the eval activity. (samplerSteps 0, used before, is now refused up front by eval/options.ts.)
    const handle = await start({
      dataset: 'tiny@v1',
      runName: 'evalfail',
      config: CONFIG,
      totalSteps: 8,
      chunkSteps: 2,
      chunkHeartbeatTimeout: '10s',
      eval: {
        everySteps: 2,
        sampleCount: 4,
        patience: 2,
        extractorDir: EXTRACTOR,
        referenceDir: '/nonexistent/kiln-eval-reference',
        guidanceScale: 1,
        batchSize: 4,
      },
    });
    const r = (await withWorkers([await workers()], () => handle.result())) as TrainWorkflowResult;
    await replay(handle);
    assert.equal(r.status, 'stopped-early', r.stopReason);
    assert.equal(r.finalStep, 4);
    assert.deepEqual(
      r.evaluations.map((e) => [e.step, e.kid ?? null, typeof e.failed]),
      [
        [2, null, 'string'],
        [4, null, 'string'],
      ],
    );
    assert.match(r.stopReason, /KID has not improved for 2 evaluations in a row/);
    assert.equal(r.best.selectedBy, 'final-step');
    const rec = JSON.parse(
      readFileSync(file(storage.child(storage.uri('runs', 'evalfail'), 'evals', 'step-000000002.json')), 'utf8'),
    ) as { format: string; record: { failed: string } };
    assert.equal(rec.format, 'kiln-eval-failed-v1');
    assert.match(rec.record.failed, /reference image directory .*kiln-eval-reference does not exist/);
  });

  it('trains straight through with continue-as-new between chunks', async () => {
    const handle = await start({
      dataset: 'tiny@v1',
      runName: 'straight',
      config: CONFIG,
      totalSteps: 6,
      chunkSteps: 2,
      chunksPerRun: 2,
    });
    straight = (await withWorkers([await workers()], () => handle.result())) as TrainWorkflowResult;
    await replay(handle);
    assert.equal(straight.status, 'completed');
    assert.equal(straight.finalStep, 6);
    assert.equal(straight.chunks, 3);
    assert.equal(straight.runs, 2, 'continued as new once');
    assert.equal(straight.best.selectedBy, 'final-step');
    assert.equal(straight.finalCheckpoint!.step, 6);
  });

  it("a VAE run caches the dataset's latents once (lineage: dataset version + VAE -> latent cache -> chunk); a second run reuses the cache", async () => {
    const vaeConfig: TrainingConfigInput = {
      ...CONFIG,
      codec: { vae: VAE },
      denoiser: { ...CONFIG.denoiser, patchSize: 2 },
    };
    const run = async (runName: string) => {
      const handle = await start({ dataset: 'tiny@v1', runName, config: vaeConfig, totalSteps: 2, chunkSteps: 2 });
      const r = (await withWorkers([await workers()], () => handle.result())) as TrainWorkflowResult;
      await replay(handle);
      return r;
    };
    const first = await run('vae-first');
    const second = await run('vae-second');
    assert.equal(first.finalStep, 2);
    assert.equal(second.finalCheckpoint!.step, 2);
    const store = lineage();
    try {
      type Cache = {
        manifestUri: string;
        sha256: string;
        vae: string;
        vaeSha256: string;
        shards: number;
        encodedShards: number;
        reusedShards: number;
      };
      const cacheRun = (jobId: string) => store.getRun(`${jobId}/latents`)!;
      const a = cacheRun(first.jobId).result as Cache;
      const b = cacheRun(second.jobId).result as Cache;
      assert.deepEqual([a.shards, a.encodedShards, a.reusedShards], [2, 2, 0]);
      assert.deepEqual([b.encodedShards, b.reusedShards], [0, 2], 'the second run encodes nothing');
      assert.deepEqual([b.manifestUri, b.sha256], [a.manifestUri, a.sha256]);
      assert.equal(a.vae, 'onnx-vae:tiny-vae');
      // Lineage: the cache run consumed the dataset version's manifest and produced the shards + manifest (with the VAE's hash).
      const manifestUri = new DatasetLayout(storage, 'tiny', 1).manifestUri;
      assert.ok(store.artifactsOfRun(`${first.jobId}/latents`, 'consumed').some((x) => x.uri === manifestUri));
      const produced = store.artifactsOfRun(`${first.jobId}/latents`, 'produced');
      assert.equal(produced.filter((x) => x.kind === 'latent-shard').length, 2);
      const cache = produced.find((x) => x.kind === 'latent-cache')!;
      assert.equal(cache.uri, a.manifestUri);
      assert.equal(cache.sha256, a.sha256);
      assert.equal((cache.metadata as { vaeSha256: string }).vaeSha256, a.vaeSha256);
      assert.equal((cache.metadata as { datasetManifestUri: string }).datasetManifestUri, manifestUri);
      // Each chunk consumed the cache, and the checkpoint records the same VAE.
      for (const r of [first, second]) {
        assert.ok(store.artifactsOfRun(`${r.jobId}/train/chunk-2`, 'consumed').some((x) => x.uri === a.manifestUri));
        const state = JSON.parse(
          readFileSync(file(storage.child(r.finalCheckpoint!.checkpointUri, 'state.json')), 'utf8'),
        ) as { codecSha256: string };
        assert.equal(state.codecSha256, a.vaeSha256);
      }
    } finally {
      store.close();
    }
    assert.deepEqual(
      second.finalCheckpoint!.sha256s,
      first.finalCheckpoint!.sha256s,
      'same config and data: the two runs train to the same bytes',
    );
  });

  it('evaluateTrainingCheckpoint against a reference directory; a repeat reuses the recorded evaluation', async () => {
    const deps = createActivityDeps(config);
    try {
      const acts = createTrainActivities(deps);
      deps.lineage.startJob({ id: 'direct-eval', kind: 'test', workflowId: 'none', params: {}, codeVersion: 'test' });
      const input = {
        jobId: 'direct-eval',
        runUri: straight.runUri,
        step: 6,
        checkpointUri: straight.finalCheckpoint!.checkpointUri,
        history: [],
        eval: {
          everySteps: 2,
          sampleCount: 4,
          extractorDir: EXTRACTOR,
          referenceDir: EXTRACTOR,
          samplerSteps: 2,
          guidanceScale: 1,
          batchSize: 4,
          gridSamples: 4,
        },
      };
      const first = await acts.evaluateTrainingCheckpoint(input);
      const stored = JSON.parse(readFileSync(file(first.evalUri), 'utf8')) as {
        reference: { name: string; count: number };
        record: { protocol: { sampler: string } };
      };
      assert.deepEqual([stored.reference.name, stored.reference.count], ['directory fid-tiny (3 images)', 3]);
      assert.equal(stored.record.protocol.sampler, 'euler, 2 steps, guidance 1');
      assert.equal(first.reused, false);
      assert.ok(first.decision.latestIsBest && first.decision.bestStep === 6 && !first.decision.stop);
      const again = await acts.evaluateTrainingCheckpoint(input);
      assert.equal(again.reused, true);
      assert.deepEqual(again.point, first.point);
      // The reference cap is part of the cache key and the protocol: 2 of the 3 images is another entry.
      const capped = await acts.evaluateTrainingCheckpoint({
        ...input,
        runUri: storage.uri('runs', 'capped-eval'),
        eval: { ...input.eval, referenceMaxImages: 2 },
      });
      const cappedStored = JSON.parse(readFileSync(file(capped.evalUri), 'utf8')) as {
        reference: { count: number; statsUri: string };
        record: { kid: number; protocol: { referenceCount: number; resize: string } };
      };
      const firstStored = JSON.parse(readFileSync(file(first.evalUri), 'utf8')) as { reference: { statsUri: string } };
      assert.equal(cappedStored.reference.count, 2);
      assert.equal(cappedStored.record.protocol.referenceCount, 2);
      assert.match(cappedStored.record.protocol.resize, /resized to 16x16 as training does.*first 2 images/);
      assert.notEqual(cappedStored.reference.statsUri, firstStored.reference.statsUri);
      assert.ok(Number.isFinite(cappedStored.record.kid));
    } finally {
      deps.lineage.close();
    }
  });

  it('a worker SIGKILLed mid-chunk: the chunk is retried elsewhere from the last checkpoint; same final weights', async () => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('./train-worker-child.js', import.meta.url)), config.dataRoot, env.address, '3'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (t: string) => {
      out += t;
    });
    const io = await workers([TASK_QUEUES.io]);
    const r = await withWorkers([io], async () => {
      await until('the child worker', () => out.includes('ready'));
      const handle = await start({
        dataset: 'tiny@v1',
        runName: 'killed',
        config: CONFIG,
        totalSteps: 6,
        chunkSteps: 2,
        chunkHeartbeatTimeout: '5s',
      });
      await until('step 3 in the child', () => out.includes('step 3'));
      const progress = await handle.query<TrainProgress>('progress');
      assert.deepEqual([progress.phase, progress.step, progress.totalSteps], ['training', 2, 6]);
      assert.ok(Number.isFinite(progress.lastLoss));
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      const ckpts = storage.child(storage.uri('runs', 'killed'), 'checkpoints');
      assert.deepEqual(
        readdirSync(file(ckpts)).filter((n) => n.startsWith('step-')),
        ['step-000000002'],
        'killed before the chunk checkpointed',
      );
      const gpu = await workers([TASK_QUEUES.gpu]);
      return withWorkers([gpu], () => handle.result()) as Promise<TrainWorkflowResult>;
    });
    assert.equal(r.finalStep, 6);
    assert.deepEqual(
      r.finalCheckpoint!.sha256s,
      straight.finalCheckpoint!.sha256s,
      'model, EMA, optimizer and state.json byte-identical to the uninterrupted run',
    );
    const store = lineage();
    try {
      const retried = store.getRun(`${r.jobId}/train/chunk-4`)!;
      assert.equal(retried.status, 'completed');
      // The run row keeps its first attempt's environment; its result is the attempt that finished.
      const result = retried.result as { attempt: number; resumedFromStep: number; step: number };
      assert.ok(result.attempt >= 2, `attempt ${result.attempt}`);
      assert.equal(result.resumedFromStep, 2);
      assert.equal(result.step, 4);
    } finally {
      store.close();
    }
  });

  it('a worker shut down mid-chunk checkpoints where it is; the next worker resumes from that step; same final weights', async () => {
    const deps = createActivityDeps(config);
    const holder: { gpu?: Worker } = {};
    const activities = createTrainActivities(deps, {
      onStep: async (p) => {
        if (p.step !== 4 || !holder.gpu) return;
        holder.gpu.shutdown();
        const signal = Context.current().cancellationSignal;
        await until('the shutdown to reach the activity', () => signal.aborted, 30_000);
      },
    });
    // Core cancels running activities (reason WORKER_SHUTDOWN) once the grace time has passed.
    const gpu = (holder.gpu = await Worker.create({
      connection: env.nativeConnection,
      namespace: config.namespace,
      taskQueue: TASK_QUEUES.gpu,
      activities,
      shutdownGraceTime: '1s',
    }));
    const io = await workers([TASK_QUEUES.io]);
    const r = await withWorkers([io], async () => {
      const handle = await start({
        dataset: 'tiny@v1',
        runName: 'shutdown',
        config: CONFIG,
        totalSteps: 6,
        chunkSteps: 3,
      });
      await gpu.run();
      const ckpts = readdirSync(file(storage.child(storage.uri('runs', 'shutdown'), 'checkpoints'))).filter((n) =>
        n.startsWith('step-'),
      );
      assert.deepEqual(
        ckpts,
        ['step-000000004'],
        'the interrupted chunk checkpointed at step 4 (keepLast 1 pruned step 3)',
      );
      return withWorkers([await workers([TASK_QUEUES.gpu])], () => handle.result()) as Promise<TrainWorkflowResult>;
    });
    deps.lineage.close();
    assert.deepEqual(r.finalCheckpoint!.sha256s, straight.finalCheckpoint!.sha256s);
    const store = lineage();
    try {
      const chunk = store.getRun(`${r.jobId}/train/chunk-6`)!;
      assert.deepEqual([chunk.status, (chunk.result as { resumedFromStep: number }).resumedFromStep], ['completed', 4]);
      assert.ok(
        store.artifactsOfRun(chunk.id, 'produced').some((a) => a.uri.includes('step-000000004')),
        'the step-4 checkpoint is recorded',
      );
    } finally {
      store.close();
    }
  });

  it('cancelling mid-chunk leaves a final checkpoint and records the run and job as cancelled', async () => {
    const handle = await start({
      dataset: 'tiny@v1',
      runName: 'cancelled',
      config: CONFIG,
      // A chunk far longer than cancellation takes to arrive (a heartbeat, <= 5 s), however fast the steps.
      totalSteps: 40_000,
      chunkSteps: 20_000,
      chunkHeartbeatTimeout: '5s',
    });
    await assert.rejects(
      withWorkers([await workers()], async () => {
        await until('a training heartbeat', async () => ((await heartbeat(handle))?.step ?? 0) >= 1);
        await handle.cancel();
        await handle.result();
      }),
      (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure,
    );
    await replay(handle);
    const store = lineage();
    try {
      assert.equal(store.getJob(handle.workflowId)!.status, 'cancelled');
      const trainRun = store.getRun(`${handle.workflowId}/train`)!;
      assert.equal(trainRun.status, 'cancelled');
      const final = (
        trainRun.result as { finalCheckpoint: { step: number; checkpointUri: string; sha256s: Record<string, string> } }
      ).finalCheckpoint;
      assert.ok(final.step > 0 && final.step < 20_000, `checkpointed mid-chunk at step ${final.step}`);
      for (const [name, sha] of Object.entries(final.sha256s)) {
        const uri = storage.child(final.checkpointUri, name);
        assert.equal(await sha256File(file(uri)), sha);
        assert.equal(store.getArtifactByUri(uri)?.sha256, sha, `${name} recorded in lineage`);
      }
      assert.equal(store.getRun(`${handle.workflowId}/train/chunk-20000`)!.status, 'cancelled');
      assert.ok(existsSync(file(storage.child(storage.uri('runs', 'cancelled'), 'report', 'index.html'))));
    } finally {
      store.close();
    }
  });

  it('a NaN loss fails the workflow with the NonFiniteLossError message and keeps the last good checkpoint', async () => {
    const handle = await start({
      dataset: 'tiny@v1',
      runName: 'nan',
      config: { ...CONFIG, optim: { ...CONFIG.optim, lr: 1e30 } },
      totalSteps: 6,
      chunkSteps: 2,
    });
    await assert.rejects(
      withWorkers([await workers()], () => handle.result()),
      (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.ok(err.cause instanceof ApplicationFailure);
        assert.equal(err.cause.type, 'NonFiniteLossError');
        assert.match(err.cause.message, /training diverged at step 3: loss is NaN.*step-000000002 is kept/);
        return true;
      },
    );
    await replay(handle);
    const ckpts = storage.child(storage.uri('runs', 'nan'), 'checkpoints');
    assert.deepEqual(
      readdirSync(file(ckpts)).filter((n) => n.startsWith('step-')),
      ['step-000000002'],
    );
    const store = lineage();
    try {
      const job = store.getJob(handle.workflowId)!;
      assert.equal(job.status, 'failed');
      assert.match(job.error!, /training diverged at step 3/);
      assert.equal(store.getRun(`${handle.workflowId}/train/chunk-4`)!.status, 'failed');
    } finally {
      store.close();
    }
  });
});

describe('kiln run train flags', () => {
  const base = { chunkSteps: 100, patience: 3, minDelta: 0, metric: 'fid' as const };
  it('map to the workflow input with absolute paths; a directory reference becomes referenceDir', () => {
    const input = trainInputFromFlags({
      ...base,
      dataset: 'laion@v2',
      runName: 'r1',
      totalSteps: 5000,
      backend: 'cpu',
      evalEvery: 500,
      evalSamples: 64,
      extractorDir: 'fixtures/eval/fid-tiny',
      reference: EXTRACTOR,
      clipModelDir: 'fixtures/models/clip-tiny',
      guidance: 3,
    });
    assert.deepEqual(input, {
      dataset: 'laion@v2',
      runName: 'r1',
      totalSteps: 5000,
      chunkSteps: 100,
      config: { runtime: { backend: 'cpu' } },
      eval: {
        everySteps: 500,
        patience: 3,
        minDelta: 0,
        metric: 'fid',
        extractorDir: join(process.cwd(), 'fixtures/eval/fid-tiny'),
        referenceDir: EXTRACTOR,
        sampleCount: 64,
        clipModelDir: join(process.cwd(), 'fixtures/models/clip-tiny'),
        guidanceScale: 3,
      },
    });
    assert.equal(
      trainInputFromFlags({
        ...base,
        dataset: 'd@v1',
        evalEvery: 100,
        extractorDir: EXTRACTOR,
        reference: 'coco-val@v1',
      }).eval!.referenceDataset,
      'coco-val@v1',
    );
  });
  it('progress renders as one status line', () => {
    assert.equal(
      formatTrainProgress({
        phase: 'training',
        step: 50,
        totalSteps: 200,
        lastLoss: 0.123456,
        evals: [{ step: 40, fid: 12.34567, clipScore: null }],
      }),
      'train [######..................]  25% step 50/200 training · loss 0.1235 · FID 12.35 at step 40',
    );
    assert.equal(
      formatTrainProgress({ phase: 'starting', step: 0, totalSteps: null, lastLoss: null, evals: [] }),
      null,
    );
  });
  it('--eval-every without an extractor is a ConfigError; without a reference it defaults to the training dataset', () => {
    assert.throws(
      () => trainInputFromFlags({ ...base, dataset: 'd@v1', evalEvery: 100 }),
      (err: unknown) => err instanceof ConfigError && /--eval-every needs --extractor-dir/.test(err.message),
    );
    const e = trainInputFromFlags({ ...base, dataset: 'd@v1', evalEvery: 100, extractorDir: EXTRACTOR }).eval!;
    assert.equal(e.referenceDataset ?? e.referenceDir, undefined);
  });
});
