/**
 * The multi-machine trial (issue 17), simulated on one host: two `kiln worker` processes ("A" and
 * "B"), each with its own scratch and cache directory and no shared filesystem, sharing only the
 * Temporal server, an S3 endpoint (moto, scripts/servers/s3-server.sh) and PostgreSQL
 * (scripts/servers/pg-cluster.sh); the CLIP and FID extractor model directories are s3:// too, so
 * each machine fetches them into its own cache. A pipeline (crawl of the loopback synthetic web, CLIP filter,
 * a short training run with one evaluation) runs across both; worker A is killed -9 mid-crawl and
 * worker B mid-training (each restarted). Checks: both workers ran activities (Temporal history
 * identities); every input row exactly once with a status in both dataset versions (hashes against
 * manifest against lineage); the final checkpoint equals a one-worker run on the same dataset
 * version; `kiln lineage verify` clean; `kiln lineage trace` of the checkpoint identical and
 * complete (crawl, filter, train runs) from either machine's environment.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { stringify } from 'yaml';
import pg from 'pg';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { PROJECT_ROOT } from '../infra/config.js';
import { WORKFLOW_TASK_QUEUE } from '../infra/constants.js';
import { LineageStore } from '../infra/lineage/store.js';
import { S3Storage, s3ClientFromEnv } from '../infra/storage-s3.js';
import { startDevServer, type TemporalServerHandle } from '../infra/temporal/server.js';
import { connectClient } from '../infra/temporal/client.js';
import { loadSpec } from '../cli/spec/load.js';
import { pipelineInputFromSpec } from '../cli/spec/to-input.js';
import { startSyntheticWeb } from '../demo/synthetic-web.js';
import type { PipelineResult } from '../workflows/pipeline.js';
import { databaseUrl, startPostgres, startS3Server, type TestServer } from '../test/helpers/servers.js';
import { freePort } from '../test/helpers/env.js';
import { checkDataset, expectedKeys } from './checks.js';
import { resultWithin, stageOf } from './pipeline-trials.js';
import { sleep } from './harness.js';
import { stuckReport } from './stuck-report.js';
import type { TrialSpec } from './types.js';
import { verdict } from './types.js';

const KILN_BIN = join(PROJECT_ROOT, 'bin', 'kiln.js');
const FIXTURES = join(PROJECT_ROOT, 'fixtures');
const TRAIN = { total: 8, chunk: 2 };
const TRAIN_CONFIG = { resolution: 16, seed: 7, optim: { lr: 1e-3 }, runtime: { backend: 'wasm' } };
const BUCKET = 'kiln-trial';
/** The models live in the bucket too: each machine fetches them into its own cache (issue 17). */
const MODELS = `s3://${BUCKET}/models`;
const MODEL_DIRS: [string, string][] = [
  [join(FIXTURES, 'models', 'clip-tiny'), 'clip-tiny'],
  [join(FIXTURES, 'eval', 'fid-tiny'), 'fid-tiny'],
];

/** Upload a local directory under an s3:// prefix (what `aws s3 cp --recursive` does). */
async function uploadDir(local: string, location: string): Promise<void> {
  const storage = new S3Storage(location);
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
  for (const f of walk(local))
    await storage.writeAtomic(storage.uri(...relative(local, f).split(sep)), readFileSync(f));
}

export interface MultiMachineShape {
  rows: number;
  rowsPerShard: number;
  kill: boolean;
  /** The trial fails past this, saying what it waited for (stuckReport), instead of hanging. */
  deadlineMs: number;
}
export const MULTI_SHORT: MultiMachineShape = { rows: 400, rowsPerShard: 40, kill: true, deadlineMs: 900_000 };
/** `npm run test:multi-machine`'s form (test/chaos/multi-machine.test.ts): 6 shards, still long enough to kill A mid-crawl. */
export const MULTI_TEST: MultiMachineShape = { rows: 120, rowsPerShard: 20, kill: true, deadlineMs: 420_000 };
export const MULTI_FULL: MultiMachineShape = { rows: 10_000, rowsPerShard: 250, kill: true, deadlineMs: 3_600_000 };

class Machine {
  proc?: ChildProcess;
  log = '';
  exited?: Promise<void>;
  constructor(
    readonly name: string,
    readonly env: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [KILN_BIN, 'worker'], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    let ready = false;
    this.log += `--- ${new Date().toISOString()} worker ${this.name} pid ${child.pid} started\n`;
    child.once('exit', (code, sig) => {
      this.log += `--- ${new Date().toISOString()} worker ${this.name} pid ${child.pid} exited ${code ?? sig}\n`;
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-64_000);
      if (this.log.includes('worker serving')) ready = true;
    });
    for (let i = 0; i < 1200 && !ready && child.exitCode === null; i++) await sleep(100);
    if (!ready) throw new Error(`worker ${this.name} did not start: ${this.log.slice(-500)}`);
  }

  /** Alive or not, and the last lines of its log (stuckReport). */
  describe(lines = 15): string[] {
    const p = this.proc;
    const alive = p && p.exitCode === null && p.signalCode === null;
    const state = alive ? 'alive' : `exited ${p?.exitCode ?? p?.signalCode ?? '(never started)'}`;
    const tail = this.log.trimEnd().split('\n').slice(-lines);
    return [`worker ${this.name} pid ${p?.pid} ${state}; log tail:`, ...tail.map((l) => `  ${l.slice(0, 300)}`)];
  }

  async kill(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc?.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(t);
    }
  }

  /** `kiln <args>` with this machine's environment. */
  cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
    return spawnSync(process.execPath, [KILN_BIN, ...args], {
      env: { ...process.env, ...this.env },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      timeout: 120_000, // spawnSync blocks the event loop: the trial's deadline cannot fire meanwhile
    });
  }
}

interface Cluster {
  dir: string;
  temporal: TemporalServerHandle;
  s3: TestServer & { env: Record<string, string> };
  pgServer: TestServer;
  lineageUrl: string;
  env: Record<string, string>;
  machines: Machine[];
  dispose(): Promise<void>;
}

async function startCluster(): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-multi-'));
  const s3 = await startS3Server();
  const pgServer = await startPostgres();
  const c = new pg.Client({ connectionString: pgServer.url });
  await c.connect();
  await c.query('CREATE DATABASE kiln_lineage');
  await c.end();
  const lineageUrl = databaseUrl(pgServer.url, 'kiln_lineage');
  Object.assign(process.env, s3.env);
  await s3ClientFromEnv().send(new CreateBucketCommand({ Bucket: BUCKET }));
  for (const [local, name] of MODEL_DIRS) await uploadDir(local, `${MODELS}/${name}`);
  const address = `127.0.0.1:${await freePort()}`;
  mkdirSync(join(dir, 'temporal-host'));
  const temporal = await startDevServer({
    address,
    namespace: 'default',
    dataRoot: join(dir, 'temporal-host'),
    readyTimeoutMs: 90_000,
  });
  const env = {
    ...s3.env,
    TEMPORAL_ADDRESS: address,
    KILN_DATA_ROOT: `s3://${BUCKET}/data`,
    KILN_LINEAGE_URL: lineageUrl,
    KILN_LOG_LEVEL: 'WARN',
  };
  const machines = ['a', 'b'].map((n) => {
    mkdirSync(join(dir, n));
    return new Machine(n, {
      ...env,
      KILN_SCRATCH_DIR: join(dir, n, 'scratch'),
      KILN_CACHE_DIR: join(dir, n, 'cache'),
      HOME: join(dir, n),
    });
  });
  return {
    dir,
    temporal,
    s3,
    pgServer,
    lineageUrl,
    env,
    machines,
    async dispose() {
      for (const m of machines) await m.stop();
      await temporal.stop();
      await pgServer.stop();
      await s3.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function specOf(shape: MultiMachineShape, urls: string): Record<string, unknown> {
  return {
    version: 1,
    name: 'multi',
    sources: [{ path: urls }],
    crawl: {
      rows_per_shard: shape.rowsPerShard,
      image_size: 16,
      resize_mode: 'center_crop',
      timeout_ms: 5000,
      allow_addresses: ['127.0.0.1'],
    },
    filter: { clip_model: `${MODELS}/clip-tiny`, keep_top_fraction: 0.75 },
    train: { run_name: 'multi-run', total_steps: TRAIN.total, chunk_steps: TRAIN.chunk, config: TRAIN_CONFIG },
    eval: { every_steps: TRAIN.total, extractor: `${MODELS}/fid-tiny`, sample_count: 8, patience: 3 },
  };
}

/** Distinct worker identities that ran activities of a workflow (Temporal history). */
async function activityWorkers(client: Client, workflowId: string): Promise<Set<string>> {
  const h = await client.workflow.getHandle(workflowId).fetchHistory();
  const ids = new Set<string>();
  for (const e of h.events ?? []) {
    const id = e.activityTaskStartedEventAttributes?.identity;
    if (id) ids.add(id);
  }
  return ids;
}

async function waitForStage(
  handle: Parameters<typeof stageOf>[0],
  want: string,
  ms: number,
  stop: AbortSignal,
): Promise<string | null> {
  const t0 = Date.now();
  let seen: string | null = null;
  while (Date.now() - t0 < ms) {
    stop.throwIfAborted();
    seen = await stageOf(handle);
    if (seen === want || seen === 'done') return seen;
    await sleep(100);
  }
  return seen;
}

export function multiMachineTrial(shape: MultiMachineShape, index = 1): TrialSpec {
  return {
    name: `multi-machine#${index}`,
    stage: 'multi',
    run: async () => {
      const cl = await startCluster();
      const web = await startSyntheticWeb({ count: shape.rows, seed: 11, faultEvery: 50 });
      const actions: string[] = [];
      const problems: string[] = [];
      const notes: string[] = [];
      let client: Client | undefined;
      let closeClient: (() => Promise<void>) | undefined;
      const stop = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((r) => (timer = setTimeout(() => r('deadline'), shape.deadlineMs)));
      const work = (async () => {
        const [a, b] = cl.machines as [Machine, Machine];
        await a.start();
        await b.start();
        writeFileSync(join(cl.dir, 'urls.csv'), web.urlListCsv());
        writeFileSync(join(cl.dir, 'spec.yaml'), stringify(specOf(shape, 'urls.csv')));
        const input = pipelineInputFromSpec(loadSpec(join(cl.dir, 'spec.yaml')));
        input.crawl.shardHeartbeatTimeout = '5s';
        if (input.filter) input.filter.shardHeartbeatTimeout = '5s';
        if (input.train) input.train.chunkHeartbeatTimeout = '5s';
        const conn = await connectClient({
          temporalAddress: cl.env.TEMPORAL_ADDRESS!,
          namespace: 'default',
        } as Parameters<typeof connectClient>[0]);
        client = conn.client;
        const close = (closeClient = conn.close);
        try {
          const workflowId = `multi-${Date.now().toString(36)}`;
          const handle = await client.workflow.start('pipelineWorkflow', {
            taskQueue: WORKFLOW_TASK_QUEUE,
            workflowId,
            args: [input],
          });
          if (shape.kill) {
            await waitForStage(handle, 'crawl', 120_000, stop.signal);
            await sleep(1500);
            await a.kill();
            actions.push(`kill -9 A mid-crawl (${await stageOf(handle)})`);
            await sleep(500);
            await a.start();
            const at = await waitForStage(handle, 'train', 900_000, stop.signal);
            await sleep(1000);
            await b.kill();
            actions.push(`kill -9 B mid-training (${at})`);
            await sleep(500);
            await b.start();
          }
          const r = (await resultWithin(handle, 1_500_000)) as PipelineResult;
          const bad = r.stages.filter((s) => s.status !== 'completed');
          if (bad.length)
            throw new Error(`stages not completed: ${bad.map((s) => `${s.stage}:${s.status}`).join(', ')}`);
          const crawl = r.stages.find((s) => s.stage === 'crawl')!.result as { version: number; datasetName: string };
          const filter = r.stages.find((s) => s.stage === 'filter')!.result as {
            version: number;
            datasetName: string;
            manifestUri: string;
          };
          const train = r.stages.find((s) => s.stage === 'train')!.result as {
            finalCheckpoint: { step: number; sha256s: Record<string, string> } | null;
            evaluations: unknown[];
            reportUri: string;
          };
          const storage = new S3Storage(cl.env.KILN_DATA_ROOT!);
          if (train.evaluations.length < 1) problems.push('no evaluation ran');
          if (!train.reportUri.startsWith('s3://') || !(await storage.exists(train.reportUri)))
            problems.push(`report ${train.reportUri} is not in S3`);
          notes.push(`${train.evaluations.length} evaluation(s), report in S3`);
          const keys = expectedKeys(shape.rows, shape.rowsPerShard);
          for (const d of [crawl, filter]) {
            const c = await checkDataset('', d.datasetName, d.version, keys, { storage, lineagePath: cl.lineageUrl });
            problems.push(...c.problems);
            notes.push(`${d.datasetName}@v${d.version}: ${c.rows} rows ${JSON.stringify(c.byStatus)}`);
          }
          // both machines did work
          const ids = new Set<string>();
          for (const id of [`${workflowId}/crawl`, `${workflowId}/filter`, `${workflowId}/train`])
            for (const x of await activityWorkers(client, id)) ids.add(x);
          if (ids.size < 2) problems.push(`activities ran on ${ids.size} worker identity(ies): ${[...ids].join(', ')}`);
          notes.push(`${ids.size} worker processes ran activities`);
          // identical checkpoints to a one-worker run on the same dataset version
          const fc = train.finalCheckpoint;
          if (!fc || fc.step !== TRAIN.total)
            problems.push(`final checkpoint at step ${fc?.step}, want ${TRAIN.total}`);
          await b.stop();
          const ref = (await client.workflow.execute('trainWorkflow', {
            taskQueue: WORKFLOW_TASK_QUEUE,
            workflowId: `${workflowId}-reference`,
            args: [
              {
                datasetManifestUri: filter.manifestUri,
                runName: 'multi-reference',
                totalSteps: TRAIN.total,
                chunkSteps: TRAIN.chunk,
                config: TRAIN_CONFIG,
              },
            ],
          })) as { finalCheckpoint: { sha256s: Record<string, string> } };
          for (const [name, sha] of Object.entries(ref.finalCheckpoint.sha256s)) {
            if (name === 'state.json') continue;
            if (fc?.sha256s[name] !== sha)
              problems.push(
                `final ${name} sha256 ${fc?.sha256s[name]?.slice(0, 12)} != one-worker run ${sha.slice(0, 12)}`,
              );
          }
          notes.push(
            `checkpoint files equal to the one-worker run: ${Object.keys(ref.finalCheckpoint.sha256s)
              .filter((n) => n !== 'state.json')
              .join(', ')}`,
          );
          // lineage verify + trace from either machine
          const v = a.cli(['lineage', 'verify']);
          if (v.status !== 0) problems.push(`kiln lineage verify: ${v.stdout.trim().slice(0, 300)}`);
          else notes.push(v.stdout.trim().replace(/\(postgres.*\)$/, '(postgres)'));
          const ckptRef = Object.values(fc?.sha256s ?? {})[0] ?? '';
          const traces = [a, b].map((m) => m.cli(['lineage', 'trace', ckptRef, '--json']));
          for (const [i, t] of traces.entries())
            if (t.status !== 0)
              problems.push(`kiln lineage trace on ${'ab'[i]}: exit ${t.status} ${t.stderr.slice(0, 200)}`);
          if (traces[0]!.stdout !== traces[1]!.stdout) problems.push('lineage trace differs between the two machines');
          for (const stage of ['crawl', 'filter', 'train'])
            if (!traces[0]!.stdout.includes(`"stage":"${stage}`)) problems.push(`trace has no ${stage} run`);
          const store = new LineageStore(cl.lineageUrl);
          try {
            notes.push(`lineage: ${store.verify().entries} log entries`);
          } finally {
            store.close();
          }
        } finally {
          await close();
        }
      })();
      try {
        if ((await Promise.race([work, deadline])) === 'deadline') {
          work.catch(() => {}); // it fails once the cluster below is gone
          const report = [`not done within ${shape.deadlineMs / 1000} s (actions so far: ${actions.join('; ')})`];
          try {
            if (client) report.push(...(await stuckReport(client)));
          } catch (err) {
            report.push(`stuckReport: ${(err as Error).message}`);
          }
          for (const m of cl.machines) report.push(...m.describe());
          console.error(report.join('\n'));
          problems.push(report.join('\n'));
          stop.abort(new Error('past the deadline')); // ends the waits; closing the client ends handle.result()
          await closeClient?.().catch(() => {});
        }
      } catch (err) {
        const chain: string[] = [];
        for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause)
          chain.push((e as Error).message.split('\n').slice(0, 2).join(' '));
        problems.push(chain.join(' <- '));
      } finally {
        clearTimeout(timer);
        await web.close();
        await cl.dispose();
      }
      return verdict(`${shape.rows} rows, 2 workers; ${actions.join('; ') || 'no kills'}`, problems, notes.join('; '));
    },
  };
}
