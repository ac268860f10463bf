/**
 * Issue 19 for `kiln run filter` and `kiln run train` through the real CLI against a real Temporal
 * dev server: the same command twice (after it finished, or after `kill -9` of the first) attaches
 * to, resumes or reports the same job, with no second job and no second dataset version; a changed
 * option is a new job that names the changed field. A CLI killed mid-training leaves its worker in
 * Temporal's poller list: `kiln status` marks the job NO WORKER once that poller is older than the
 * staleness window (KILN_STALE_POLLER_MS), not only when no worker ever polled.
 * The tests run in order on one dataset: filter makes v2 (and v3), train trains on v2.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { startDevServer, type TemporalServerHandle } from '../../infra/temporal/server.js';
import { startSyntheticWeb } from '../../demo/synthetic-web.js';
import { freePort, tempDir } from '../helpers/env.js';

const KILN = join(PROJECT_ROOT, 'bin', 'kiln.js');
const CLIP = join(PROJECT_ROOT, 'fixtures', 'models', 'clip-tiny');

let dir: { path: string; cleanup(): void };
let server: TemporalServerHandle;
let env: Record<string, string>;
let dataRoot: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `kiln ...args`; with `killWhen`, the process is sent SIGKILL as soon as `killWhen()` holds (checked
 * every 100 ms), as a reboot or an OOM kill would; `killed` says whether that happened before it exited.
 */
function kiln(
  args: string[],
  o: { env?: Record<string, string>; killWhen?: () => boolean } = {},
): Promise<Run & { killed: boolean }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [KILN, ...args], { env: { ...process.env, ...env, ...o.env } });
    let stdout = '';
    let stderr = '';
    let killed = false;
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = o.killWhen
      ? setInterval(() => {
          if (!killed && o.killWhen!()) {
            killed = true;
            p.kill('SIGKILL');
          }
        }, 100)
      : undefined;
    p.on('close', (status) => {
      clearInterval(timer);
      resolve({ status, stdout, stderr, killed });
    });
  });
}

const lastJson = <T>(r: Run): T => JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as T;
const startedId = (r: Run, kind: string) => new RegExp(`started ${kind} job (\\S+)`).exec(r.stderr)?.[1];
const files = (d: string) => (existsSync(d) ? readdirSync(d) : []);

function versions(name: string): number[] {
  const store = new LineageStore(join(dataRoot, 'lineage.db'));
  try {
    return store.datasetVersions(name).map((d) => d.version);
  } finally {
    store.close();
  }
}

/** Jobs of one workflow type in `kiln status`, with their status. */
async function jobsOfType(type: string): Promise<{ workflowId: string; status: string; noWorker: boolean }[]> {
  const st = await kiln(['status', '--json', '--limit', '100']);
  assert.equal(st.status, 0, st.stderr);
  return (JSON.parse(st.stdout) as { workflowId: string; type: string; status: string; noWorker: boolean }[]).filter(
    (r) => r.type === type,
  );
}

before(async () => {
  dir = tempDir('kiln-rerun-');
  dataRoot = join(dir.path, 'data');
  const address = `127.0.0.1:${await freePort()}`;
  server = await startDevServer({ address, namespace: 'default', dataRoot });
  env = { KILN_DATA_ROOT: dataRoot, TEMPORAL_ADDRESS: address, KILN_LOG_LEVEL: 'ERROR' };
  const web = await startSyntheticWeb({ count: 24, seed: 19, faultEvery: 8 });
  try {
    writeFileSync(join(dir.path, 'urls.csv'), web.urlListCsv());
    const crawl = await kiln([
      'run',
      'crawl',
      join(dir.path, 'urls.csv'),
      '--dataset',
      'web',
      '--rows-per-shard',
      '6',
      '--image-size',
      '16',
      '--allow-address',
      '127.0.0.1',
      '--json',
    ]);
    assert.equal(crawl.status, 0, crawl.stderr);
  } finally {
    await web.close();
  }
});

after(async () => {
  await server.stop();
  dir.cleanup();
});

type FilterOut = { workflowId: string; result: { version: number; rows: number } };

test(
  'kiln run filter twice: a finished job is reported; a changed option names the field; after kill -9 the same command resumes it',
  { timeout: 300_000 },
  async () => {
    const args = (fraction: string) => [
      'run',
      'filter',
      '--dataset',
      'web',
      '--from-version',
      '1',
      '--clip-model',
      CLIP,
      '--keep-top-fraction',
      fraction,
      '--json',
    ];
    const first = await kiln(args('0.75'));
    assert.equal(first.status, 0, first.stderr);
    const f1 = lastJson<FilterOut>(first);
    assert.match(f1.workflowId, /^filter-web-v1-[0-9a-f]{12}$/);
    assert.equal(f1.result.version, 2);
    assert.equal(f1.result.rows, 24, 'every row once (kept or marked filtered)');

    // The same command after it finished: its result again, no work, no second version.
    const again = await kiln(args('0.75'));
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`filter job ${f1.workflowId} already finished for this input`));
    assert.deepEqual(lastJson(again), f1);
    assert.deepEqual(versions('web'), [1, 2], 'no second dataset version');

    // A changed option: a new job that names the earlier one and the changed field; kill -9 once it writes v3.
    const v3 = join(dataRoot, 'datasets', 'web', 'v3');
    const killed = await kiln(args('0.5'), {
      killWhen: () => existsSync(join(v3, 'plan.json')) || files(join(v3, 'shards')).length > 0,
    });
    assert.ok(killed.killed, `the filter was killed mid-run (it ended first: ${killed.stderr})`);
    const id2 = startedId(killed, 'filter');
    assert.ok(id2 && id2 !== f1.workflowId, killed.stderr);
    assert.match(
      killed.stderr,
      new RegExp(`does not resume earlier job ${f1.workflowId} \\(completed\\) of the same name`),
    );
    assert.match(killed.stderr, /keepTopFraction: 0\.75 -> 0\.5/);

    const resumed = await kiln(args('0.5'));
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`filter job ${id2} is already running; attached to it`));
    const f2 = lastJson<FilterOut>(resumed);
    assert.equal(f2.workflowId, id2);
    assert.equal(f2.result.version, 3, 'the killed job finished the version it had started');
    assert.equal(f2.result.rows, 24);
    assert.deepEqual(versions('web'), [1, 2, 3], 'no version made twice');
    const jobs = await jobsOfType('filterWorkflow');
    assert.deepEqual(
      jobs.map((j) => [j.workflowId, j.status]).sort(),
      [
        [f1.workflowId, 'COMPLETED'],
        [id2, 'COMPLETED'],
      ].sort(),
    );
  },
);

type TrainOut = {
  workflowId: string;
  result: { jobId: string; finalStep: number; finalCheckpoint: { step: number; sha256s: Record<string, string> } };
};

test(
  'kiln run train: kill -9 mid-run leaves a stale worker (NO WORKER); the same command resumes from the last ' +
    'checkpoint to the same weights; again reports it; a changed option names the field',
  { timeout: 400_000 },
  async () => {
    const cfg = join(dir.path, 'train.json');
    writeFileSync(cfg, JSON.stringify({ resolution: 16, optim: { lr: 1e-3 }, runtime: { backend: 'wasm' } }));
    const args = (runName: string, chunk = '2') => [
      'run',
      'train',
      '--dataset',
      'web@v2',
      '--run-name',
      runName,
      '--total-steps',
      '8',
      '--chunk-steps',
      chunk,
      '--config',
      cfg,
      '--json',
    ];
    const runDir = join(dataRoot, 'runs', 'r');
    let underWaySince = 0;
    const first = await kiln(args('r'), {
      // Once its first checkpoint exists, and 1 s more: the next chunk is under way.
      killWhen: () => {
        if (
          !underWaySince &&
          files(join(runDir, 'checkpoints')).length + files(runDir).filter((f) => f.startsWith('step-')).length > 0
        )
          underWaySince = Date.now();
        return underWaySince > 0 && Date.now() - underWaySince > 1000;
      },
    });
    assert.ok(first.killed, `training was killed mid-run (it ended first: ${first.stderr})`);
    const id = startedId(first, 'train');
    assert.match(id ?? '', /^train-r-[0-9a-f]{12}$/, first.stderr);

    // The killed CLI's worker polled, so Temporal still lists it: within a long window it counts as present,
    const lenient = await kiln(['status', id!, '--json'], { env: { KILN_STALE_POLLER_MS: '600000' } });
    assert.equal(lenient.status, 0, lenient.stderr);
    assert.deepEqual(
      ((j: { status: string; noWorker: boolean }) => [j.status, j.noWorker])(JSON.parse(lenient.stdout)),
      ['RUNNING', false],
      'a poller seen within the window counts as a worker',
    );
    // and once its last poll is older than the window it is marked NO WORKER.
    const strict = { KILN_STALE_POLLER_MS: '2000' };
    let text = '';
    for (let i = 0; i < 30 && !/NO WORKER/.test(text); i++) {
      await new Promise((r) => setTimeout(r, 1000));
      text = (await kiln(['status'], { env: strict })).stdout;
    }
    assert.match(text, new RegExp(`RUNNING NO WORKER\\s+trainWorkflow\\s+\\S+\\s+${id}`));
    assert.match(text, /no worker has polled the job's task queue for 2 s/);
    const bad = await kiln(['status'], { env: { KILN_STALE_POLLER_MS: '2m' } });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /KILN_STALE_POLLER_MS is "2m"[\s\S]*Fix: /);

    // The same command again: attaches to the same job and trains on from the last checkpoint.
    const rerun = await kiln(args('r'));
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.match(rerun.stderr, new RegExp(`train job ${id} is already running; attached to it`));
    const out = lastJson<TrainOut>(rerun);
    assert.equal(out.workflowId, id);
    assert.equal(out.result.finalCheckpoint.step, 8);
    const store = new LineageStore(join(dataRoot, 'lineage.db'));
    try {
      for (const run of store.runsOfJob(out.result.jobId).filter((x) => x.stage === 'train.chunk')) {
        const rr = run.result as { attempt?: number; resumedFromStep?: number; step?: number; alreadyDone?: boolean };
        if ((rr?.attempt ?? 1) < 2) continue;
        // A retried chunk starts from the checkpoint before it (or finds its own, written just before the kill).
        const from = rr.alreadyDone ? rr.step : (rr.step ?? 0) - 2;
        assert.equal(rr.resumedFromStep, from, `${run.id}: retried chunk resumed from its last checkpoint`);
      }
    } finally {
      store.close();
    }

    // Byte-identical to an uninterrupted run of the same config on the same dataset version.
    const ref = await kiln(args('ref'));
    assert.equal(ref.status, 0, ref.stderr);
    const weights = (t: TrainOut) =>
      Object.fromEntries(Object.entries(t.result.finalCheckpoint.sha256s).filter(([n]) => n !== 'state.json'));
    assert.deepEqual(weights(out), weights(lastJson<TrainOut>(ref)), 'model, EMA and optimizer as uninterrupted');

    // Once more: the finished job's result, no second job.
    const done = await kiln(args('r'));
    assert.equal(done.status, 0, done.stderr);
    assert.match(done.stderr, new RegExp(`train job ${id} already finished for this input`));
    assert.deepEqual(lastJson(done), out);

    // A changed option: a new job that names the changed field; on the same run directory it finds step 8 done.
    const rechunked = await kiln(args('r', '4'));
    assert.equal(rechunked.status, 0, rechunked.stderr);
    assert.match(rechunked.stderr, new RegExp(`does not resume earlier job ${id} \\(completed\\) of the same name`));
    assert.match(rechunked.stderr, /chunkSteps: 2 -> 4/);
    assert.deepEqual(weights(lastJson<TrainOut>(rechunked)), weights(out), 'nothing trained twice');

    const jobs = await jobsOfType('trainWorkflow');
    assert.equal(jobs.filter((j) => j.workflowId === id).length, 1, 'one job for the same command');
    assert.deepEqual(
      jobs.map((j) => j.status),
      ['COMPLETED', 'COMPLETED', 'COMPLETED'],
      'r, ref, r rechunked: nothing running',
    );
    assert.deepEqual(versions('web'), [1, 2, 3], 'training made no dataset version');
  },
);
