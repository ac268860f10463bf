/**
 * The whole pipeline on an s3:// data root with PostgreSQL lineage (issue 17), as a user runs it:
 * `kiln demo` must run to its summary (it printed fileURLToPath of the report URI before) and
 * `kiln run pipeline` with every model and reference directory in object storage must give the
 * filter results of the local models and record the s3:// locations, never a worker's cache path.
 * Real servers from the project's scripts: moto (s3-server.sh) and PostgreSQL (pg-cluster.sh); each
 * CLI run starts and stops its own embedded Temporal dev server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { stringify } from 'yaml';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { PROJECT_ROOT } from '../../infra/config.js';
import { S3Storage, s3ClientFromEnv } from '../../infra/storage-s3.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { demoSpec } from '../../cli/commands/demo.js';
import { startSyntheticWeb } from '../../demo/synthetic-web.js';
import type { PipelineResult } from '../../workflows/pipeline.js';
import { freePort, tempDir } from '../helpers/env.js';
import { startPostgres, startS3Server, type TestServer } from '../helpers/servers.js';

const KILN = join(PROJECT_ROOT, 'bin', 'kiln.js');
const FIXTURES = join(PROJECT_ROOT, 'fixtures');
const BUCKET = `kiln-demo-${process.pid}`;
const DATA_ROOT = `s3://${BUCKET}/root`;
const MODELS = `s3://${BUCKET}/models`;
const servers: TestServer[] = [];
const cleanups: (() => void)[] = [];
let env: Record<string, string> = {};

function kiln(args: string[], extra: Record<string, string> = {}) {
  return spawnSync(process.execPath, [KILN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env, ...extra },
    timeout: 240_000,
  });
}

/** Like kiln(), without blocking this process (which serves the synthetic web the crawl fetches). */
function kilnAsync(args: string[], extra: Record<string, string> = {}) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((res, rej) => {
    const child = spawn(process.execPath, [KILN, ...args], { env: { ...process.env, ...env, ...extra } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', rej);
    child.once('close', (status) => res({ status, stdout, stderr }));
  });
}

async function upload(local: string, name: string): Promise<string> {
  const storage = new S3Storage(`${MODELS}/${name}`);
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
  for (const f of walk(local))
    await storage.writeAtomic(storage.uri(...relative(local, f).split(sep)), readFileSync(f));
  return `${MODELS}/${name}`;
}

before(async () => {
  const s3 = await startS3Server();
  servers.push(s3);
  const pg = await startPostgres();
  servers.push(pg);
  const scratch = tempDir('kiln-scratch-');
  cleanups.push(scratch.cleanup);
  env = {
    ...s3.env,
    KILN_DATA_ROOT: DATA_ROOT,
    KILN_LINEAGE_URL: pg.url,
    KILN_SCRATCH_DIR: scratch.path,
    KILN_CACHE_DIR: join(scratch.path, 'cache'),
    TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`,
  };
  Object.assign(process.env, s3.env);
  await s3ClientFromEnv().send(new CreateBucketCommand({ Bucket: BUCKET }));
});
after(async () => {
  for (const c of cleanups) c();
  for (const s of servers.reverse()) await s.stop();
});

let demoFilterLine = '';

test('kiln demo on an s3:// data root with PostgreSQL lineage runs to its summary', { timeout: 300_000 }, async () => {
  const r = kiln(['demo', '--images', '24', '--steps', '20']);
  assert.equal(r.status, 0, r.stderr);
  const report = `${DATA_ROOT}/runs/demo-run/report/index.html`;
  assert.match(r.stdout, new RegExp(`^Report: +${report.replace(/[./]/g, '\\$&')}$`, 'm'));
  assert.match(r.stdout, /crawl: +24 rows -> demo-web@v1: 23 success, 1 failed_to_download/);
  assert.match(r.stdout, /train: +20 steps \(completed\)/);
  demoFilterLine = /filter: demo-web@v2: (.*)$/m.exec(r.stdout)?.[1] ?? '';
  assert.match(demoFilterLine, /^\d+ kept, \d+ filtered by CLIP score \(cutoff \d\.\d{4}\)/);
  const storage = new S3Storage(DATA_ROOT);
  assert.match(await storage.readText(report), /<html/i, 'the report is in the bucket');
  const verify = kiln(['lineage', 'verify']);
  assert.equal(verify.status, 0, `${verify.stdout}\n${verify.stderr}`);
});

test(
  'a pipeline whose CLIP, captioner, FID extractor and reference images are all s3:// gives the local models’ filter results',
  { timeout: 300_000 },
  async () => {
    const clip = await upload(join(FIXTURES, 'models', 'clip-tiny'), 'clip-tiny');
    const captioner = await upload(join(FIXTURES, 'models', 'vit-gpt2-tiny'), 'vit-gpt2-tiny');
    const extractor = await upload(join(FIXTURES, 'eval', 'fid-tiny'), 'fid-tiny');
    const reference = await upload(join(FIXTURES, 'models', 'images'), 'reference-images');
    const web = await startSyntheticWeb({ count: 24, seed: 1 }); // the demo's web
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    try {
      const urlList = join(dir.path, 'urls.csv');
      writeFileSync(urlList, web.urlListCsv());
      const spec = demoSpec({ urlList, steps: 20 }) as {
        name: string;
        filter: Record<string, unknown>;
        train: Record<string, unknown>;
        eval: Record<string, unknown>;
      };
      spec.name = 'demo-s3-models';
      spec.filter.clip_model = clip;
      spec.filter.captioner_model = captioner;
      spec.train.run_name = 'demo-s3-models-run';
      spec.eval.extractor = extractor;
      spec.eval.reference = reference;
      const specPath = join(dir.path, 'pipeline.yaml');
      writeFileSync(specPath, stringify(spec));
      // A fresh cache: every model comes from the bucket.
      const r = await kilnAsync(['run', 'pipeline', specPath, '--json'], { KILN_CACHE_DIR: join(dir.path, 'cache') });
      assert.equal(r.status, 0, r.stderr);
      const result = (JSON.parse(r.stdout) as { result: PipelineResult }).result;
      const filter = result.stages.find((s) => s.stage === 'filter')!.result as Record<string, number>;
      assert.equal(
        `${filter.kept} kept, ${filter.filtered} filtered by CLIP score (cutoff ${Number(filter.topFractionCutoff).toFixed(4)})`,
        demoFilterLine.replace(/, \d+ failed rows carried$/, ''),
        'same CLIP scores as the local model directory (kiln demo)',
      );
      const storage = new S3Storage(DATA_ROOT);
      const manifest = JSON.parse(
        await storage.readText(new DatasetLayout(storage, 'demo-s3-models', 2).manifestUri),
      ) as {
        params: { clip: { dir: string }; captioner: { dir: string } };
      };
      assert.equal(manifest.params.clip.dir, clip, 'the manifest names the location, not a cache path');
      assert.equal(manifest.params.captioner.dir, captioner);
      const evals = await storage.list(`${DATA_ROOT}/runs/demo-s3-models-run/evals/`);
      assert.ok(evals.length >= 1, 'at least one evaluation');
      const stored = JSON.parse(await storage.readText(`${DATA_ROOT}/runs/demo-s3-models-run/evals/${evals[0]}`)) as {
        extractor: { modelUri: string };
        reference: { name: string; count: number };
      };
      assert.equal(stored.extractor.modelUri, `${extractor}/model.onnx`);
      assert.equal(stored.reference.name, 'directory reference-images (5 images)');
      assert.equal(stored.reference.count, 5);
      const verify = kiln(['lineage', 'verify']);
      assert.equal(verify.status, 0, `${verify.stdout}\n${verify.stderr}`);
    } finally {
      await web.close();
    }
  },
);
