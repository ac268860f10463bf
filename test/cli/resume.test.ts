/**
 * Issue 19 through the real CLI against a real Temporal dev server: jobs no worker polls are marked
 * in `kiln status`, a running twin of the same spec is resumed instead of started again, `kiln
 * resume` / `kiln cancel` act on any job; a failed pipeline restarts from its first unfinished stage
 * (the crawl is not fetched again), and a changed spec says which earlier job it does not resume and
 * which fields changed. The tests run in order: the first needs a namespace no worker polled yet.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { PROJECT_ROOT } from '../../infra/config.js';
import { startDevServer, type TemporalServerHandle } from '../../infra/temporal/server.js';
import { startSyntheticWeb, type SyntheticWeb } from '../../demo/synthetic-web.js';
import { freePort, tempDir } from '../helpers/env.js';
import { kilnAsync, type KilnRun } from '../helpers/kiln-cli.js';

const FIXTURES = join(PROJECT_ROOT, 'fixtures');

let dir: { path: string; cleanup(): void };
let server: TemporalServerHandle;
let web: SyntheticWeb;
let env: Record<string, string>;

const kiln = (...args: string[]): Promise<KilnRun> => kilnAsync(args, env);
const lastJson = <T>(r: KilnRun): T => JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as T;

function writeSpec(file: string, spec: Record<string, unknown>): string {
  const path = join(dir.path, file);
  writeFileSync(path, stringify(spec));
  return path;
}

function crawlSpec(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    name,
    sources: [{ path: 'urls.csv' }],
    crawl: {
      rows_per_shard: 6,
      image_size: 16,
      resize_mode: 'center_crop',
      timeout_ms: 5000,
      allow_addresses: ['127.0.0.1'],
    },
    ...extra,
  };
}

type PipelineOut = {
  workflowId: string;
  result: {
    stages: {
      stage: string;
      status: string;
      result: { version: number; rows: number; countsByStatus?: Record<string, number>; datasetName: string };
    }[];
  };
};

before(async () => {
  dir = tempDir();
  const dataRoot = join(dir.path, 'data');
  const address = `127.0.0.1:${await freePort()}`;
  server = await startDevServer({ address, namespace: 'default', dataRoot });
  env = { KILN_DATA_ROOT: dataRoot, TEMPORAL_ADDRESS: address };
  web = await startSyntheticWeb({ count: 12, seed: 5, faultEvery: 6 });
  writeFileSync(join(dir.path, 'urls.csv'), web.urlListCsv());
});

after(async () => {
  await web.close().catch(() => undefined);
  await server.stop();
  dir.cleanup();
});

test(
  'no zombies: status marks jobs no worker polls; a twin of the same spec is resumed; kiln resume and kiln cancel',
  { timeout: 300_000 },
  async () => {
    // Jobs started with no worker anywhere (what a dead CLI leaves behind).
    const hello = await kiln('run', 'hello', '--detach', '--id', 'zombie-hello', '--pause-ms', '500');
    assert.equal(hello.status, 0, hello.stderr);
    const spec = writeSpec('zombie.yaml', crawlSpec('zombie-web'));
    const twin = await kiln('run', spec, '--detach', '--new');
    assert.equal(twin.status, 0, twin.stderr);
    const twinId = twin.stdout.trim();
    assert.match(twinId, /^pipeline-/, 'a --new job has a fresh id');

    const st = await kiln('status', '--json');
    assert.equal(st.status, 0, st.stderr);
    const rows = JSON.parse(st.stdout) as { workflowId: string; status: string; noWorker: boolean }[];
    for (const id of ['zombie-hello', twinId]) {
      const row = rows.find((r) => r.workflowId === id);
      assert.equal(row?.status, 'RUNNING', id);
      assert.equal(row?.noWorker, true, `${id} is marked as having no worker`);
    }
    const text = await kiln('status');
    assert.match(text.stdout, /RUNNING NO WORKER\s+helloWorkflow/);

    // The same spec again (no --new): the unfinished twin is resumed, not a second crawl started.
    const again = await kiln('run', spec, '--json');
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /unfinished .*resuming it instead of starting a twin/);
    const out = lastJson<PipelineOut>(again);
    assert.equal(out.workflowId, twinId);
    assert.equal(out.result.stages[0]?.result.rows, 12, 'every row once');

    // kiln run crawl: the spec's crawl block as flags, a derived id (the same command again reports it).
    const crawlArgs = [
      'run',
      'crawl',
      join(dir.path, 'urls.csv'),
      '--dataset',
      'crawl-cli',
      '--rows-per-shard',
      '6',
      '--image-size',
      '16',
      '--allow-address',
      '127.0.0.1',
      '--json',
    ];
    const crawled = await kiln(...crawlArgs);
    assert.equal(crawled.status, 0, crawled.stderr);
    const c1 = lastJson<{ workflowId: string; result: { rows: number; version: number } }>(crawled);
    assert.match(c1.workflowId, /^crawl-crawl-cli-[0-9a-f]{12}$/);
    assert.equal(c1.result.rows, 12);
    const recrawl = await kiln(...crawlArgs);
    assert.match(recrawl.stderr, /already finished for this input/);
    assert.deepEqual(lastJson(recrawl), c1);
    const bad = await kiln(
      'run',
      'crawl',
      join(dir.path, 'urls.csv'),
      '--dataset',
      'crawl-cli',
      '--resize-mode',
      'squash',
    );
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /crawl\.resize_mode[\s\S]*Fix: .*--image-size/);

    // Any CLI's in-process worker serves every job on its queues: the orphaned hello finished too.
    const hs = await kiln('status', 'zombie-hello', '--json');
    assert.equal((JSON.parse(hs.stdout) as { status: string }).status, 'COMPLETED');

    // kiln resume: runs an orphaned job to its end with an in-process worker.
    assert.equal((await kiln('run', 'hello', '--detach', '--id', 'orphan', '--pause-ms', '500')).status, 0);
    const resumed = await kiln('resume', 'orphan', '--json');
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, /is running; resuming it/);
    assert.equal(lastJson<{ workflowId: string }>(resumed).workflowId, 'orphan');

    // kiln cancel: the job closes as cancelled; kiln resume then starts it again with its input.
    assert.equal((await kiln('run', 'hello', '--detach', '--id', 'cancel-me', '--pause-ms', '1000')).status, 0);
    const cancel = await kiln('cancel', 'cancel-me');
    assert.equal(cancel.status, 0, cancel.stderr);
    assert.match(cancel.stderr, /job cancel-me cancelled/);
    const cs = await kiln('status', 'cancel-me', '--json');
    assert.equal((JSON.parse(cs.stdout) as { status: string }).status, 'CANCELLED');
    const restart = await kiln('resume', 'cancel-me', '--json');
    assert.equal(restart.status, 0, restart.stderr);
    assert.match(restart.stderr, /ended cancelled; started it again/);

    const unknown = await kiln('resume', 'no-such-job');
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /no job "no-such-job"[\s\S]*Fix: /);
  },
);

test(
  'a failed pipeline restarts from its first unfinished stage; a changed spec names the earlier job and the changed fields',
  { timeout: 300_000 },
  async () => {
    // A CLIP model directory that is missing a file: the filter stage fails (the crawl finished).
    cpSync(join(FIXTURES, 'models', 'clip-tiny'), join(dir.path, 'clip'), { recursive: true });
    const vision = join(dir.path, 'clip', 'onnx', 'vision_model.onnx');
    renameSync(vision, `${vision}.away`);
    const specA = crawlSpec('resume-web', { filter: { clip_model: 'clip', keep_top_fraction: 0.75 } });
    const path = writeSpec('spec.yaml', specA);
    const failed = await kiln('run', path, '--json');
    assert.notEqual(failed.status, 0, 'the filter stage fails');
    const idA = /started pipeline job (\S+)/.exec(failed.stderr)?.[1];
    assert.ok(idA, failed.stderr);
    assert.match(failed.stderr, /failed: .*vision_model\.onnx/);
    renameSync(`${vision}.away`, vision);

    // A changed spec is a new job, and says which earlier job it does not resume and what changed.
    writeSpec('spec.yaml', { ...specA, filter: { clip_model: 'clip', keep_top_fraction: 0.5 } });
    const changed = await kiln('run', path, '--json');
    assert.equal(changed.status, 0, changed.stderr);
    assert.notEqual(lastJson<PipelineOut>(changed).workflowId, idA);
    assert.match(changed.stderr, new RegExp(`does not resume earlier job ${idA} \\(failed\\) of the same name`));
    assert.match(changed.stderr, /spec\.filter\.keep_top_fraction: 0\.75 -> 0\.5/);

    // The first spec again, with the web gone: the failed job restarts at the filter, its crawl (v1) is reused.
    await web.close();
    writeSpec('spec.yaml', specA);
    const rerun = await kiln('run', path, '--json');
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.match(rerun.stderr, /ended failed; starting it again/);
    const out = lastJson<PipelineOut>(rerun);
    assert.equal(out.workflowId, idA, 'the same job');
    const [crawl, filter] = out.result.stages;
    assert.equal(crawl?.result.version, 1, 'the crawl made by the failed run is reused');
    assert.equal((crawl as { reused?: boolean } | undefined)?.reused, true);
    assert.ok(
      (crawl?.result.countsByStatus?.success ?? 0) > 0,
      'its images were not fetched again (the web is closed)',
    );
    assert.equal(filter?.status, 'completed');
    assert.equal(filter?.result.rows, 12);
  },
);
