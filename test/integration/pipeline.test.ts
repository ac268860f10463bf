/**
 * The whole pipeline as a user runs it: `kiln run spec.yaml` against a synthetic loopback web
 * (faults included), with the tiny models; then the lineage audits on what it made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { PROJECT_ROOT } from '../../infra/config.js';
import { startSyntheticWeb } from '../../demo/synthetic-web.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { freePort, tempDir } from '../helpers/env.js';
import { KILN, kilnAsync } from '../helpers/kiln-cli.js';

test(
  'kiln run spec.yaml: crawl -> filter -> train + eval, then trace, where-used-style lookups and verify',
  { timeout: 600_000 },
  async () => {
    const dir = tempDir();
    const web = await startSyntheticWeb({ count: 40, seed: 3, faultEvery: 8 });
    try {
      writeFileSync(join(dir.path, 'urls.csv'), web.urlListCsv());
      const fixtures = join(PROJECT_ROOT, 'fixtures');
      writeFileSync(
        join(dir.path, 'spec.yaml'),
        stringify({
          version: 1,
          name: 'pipe-web',
          sources: [{ path: 'urls.csv' }],
          crawl: {
            rows_per_shard: 20,
            image_size: 16,
            resize_mode: 'center_crop',
            timeout_ms: 5000,
            allow_addresses: ['127.0.0.1'],
          },
          filter: { clip_model: join(fixtures, 'models', 'clip-tiny'), keep_top_fraction: 0.75 },
          train: {
            run_name: 'pipe-run',
            total_steps: 8,
            chunk_steps: 4,
            config: { resolution: 16, optim: { lr: 1e-3 } },
          },
          eval: {
            every_steps: 4,
            extractor: join(fixtures, 'eval', 'fid-tiny'),
            sample_count: 4,
            patience: 3,
            sampler_steps: 4,
          },
        }),
      );
      const env = { KILN_DATA_ROOT: join(dir.path, 'data'), TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` };
      const r = await kilnAsync(['run', join(dir.path, 'spec.yaml'), '--json'], env);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout) as {
        workflowId: string;
        result: { stages: { stage: string; status: string; result: Record<string, unknown> }[] };
      };
      assert.deepEqual(
        out.result.stages.map((s) => [s.stage, s.status]),
        [
          ['crawl', 'completed'],
          ['filter', 'completed'],
          ['train', 'completed'],
        ],
      );
      const [crawl, filter, train] = out.result.stages.map((s) => s.result) as [
        Record<string, unknown>,
        Record<string, unknown>,
        Record<string, unknown>,
      ];
      assert.equal(crawl.rows, 40, 'every input row is in the crawl output');
      assert.equal(filter.rows, 40, 'every crawled row is in the filtered version');
      assert.equal(Number(filter.kept) + Number(filter.filtered) + Number(filter.failed), 40);
      assert.ok(existsSync(fileURLToPath(String(train.reportUri))), 'the report exists');

      const store = new LineageStore(join(env.KILN_DATA_ROOT, 'lineage.db'));
      try {
        assert.equal(store.getJob(out.workflowId)?.status, 'completed');
        assert.deepEqual(
          store
            .childJobs(out.workflowId)
            .map((j) => j.kind)
            .sort(),
          ['crawl', 'filter', 'train'],
        );
        assert.equal(store.verify().ok, true);
      } finally {
        store.close();
      }
      const best = train.best as { checkpointUri?: string; files?: Record<string, { uri: string }> };
      const ref = String(filter.datasetId);
      const trace = spawnSync(process.execPath, [KILN, 'lineage', 'trace', ref, '--json'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      assert.equal(trace.status, 0, trace.stderr);
      const t = JSON.parse(trace.stdout) as {
        runs: { stage: string }[];
        sources: { uri: string; kind: string }[];
        datasetVersions: { id: string }[];
      };
      const stages = new Set(t.runs.map((x) => x.stage));
      for (const s of ['filter.manifest', 'filter.shard', 'crawl.manifest', 'crawl.shard'])
        assert.ok(stages.has(s), `trace reaches ${s}: ${[...stages].join(', ')}`);
      assert.ok(
        t.sources.some((s) => s.uri.endsWith('urls.csv')),
        'trace reaches the source URL list',
      );
      assert.ok(
        t.sources.some((s) => s.kind === 'model.file'),
        'trace reaches the CLIP model files',
      );
      assert.deepEqual(t.datasetVersions.map((d) => d.id).sort(), ['pipe-web@v1', 'pipe-web@v2']);
      assert.ok(best, 'a best checkpoint is reported');
      // takedown audit: one image URL and the whole (loopback) domain
      const okItem = web.items.find((i) => i.fault === 'none')!;
      const wu = spawnSync(
        process.execPath,
        [KILN, 'lineage', 'where-used', `${web.baseUrl}${okItem.path}`, '--json'],
        { encoding: 'utf8', env: { ...process.env, ...env } },
      );
      assert.equal(wu.status, 0, wu.stderr);
      const w = JSON.parse(wu.stdout) as { rows: { datasetId: string }[]; checkpoints: { kind: string }[] };
      assert.deepEqual(
        w.rows.map((x) => x.datasetId).sort(),
        ['pipe-web@v1', 'pipe-web@v2'],
        'the URL is in both versions, once each',
      );
      assert.ok(
        w.checkpoints.length > 0 || String(filter.kept) === '0',
        'checkpoints trained on a version that contains it are listed',
      );
      const dom = spawnSync(process.execPath, [KILN, 'lineage', 'where-used', new URL(web.baseUrl).host, '--json'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      assert.equal(
        (JSON.parse(dom.stdout) as { rows: unknown[] }).rows.length,
        80,
        'every row of both versions is on that domain',
      );
      const verify = spawnSync(process.execPath, [KILN, 'lineage', 'verify'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      assert.equal(verify.status, 0, verify.stdout);
      const exp = spawnSync(process.execPath, [KILN, 'lineage', 'export'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      assert.equal(exp.status, 0);
      assert.ok(
        exp.stdout
          .trim()
          .split('\n')
          .every((l) => (JSON.parse(l) as { schemaURL: string }).schemaURL.includes('2-0-2')),
      );

      // Issue 19: the job id derives from the spec, so the same command again (comments and key order
      // do not count) reports the finished job instead of crawling into a third version.
      assert.match(out.workflowId, /^pipe-web-[0-9a-f]{12}$/);
      const text = readFileSync(join(dir.path, 'spec.yaml'), 'utf8');
      writeFileSync(join(dir.path, 'spec.yaml'), `# the same spec\n${text}`);
      const again = await kilnAsync(['run', join(dir.path, 'spec.yaml'), '--json'], env);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, /already finished for this spec/);
      const out2 = JSON.parse(again.stdout) as { workflowId: string; result: unknown };
      assert.equal(out2.workflowId, out.workflowId);
      assert.deepEqual(out2.result, out.result);
      const store2 = new LineageStore(join(env.KILN_DATA_ROOT, 'lineage.db'));
      try {
        assert.deepEqual(
          store2
            .childJobs(out.workflowId)
            .map((j) => j.kind)
            .sort(),
          ['crawl', 'filter', 'train'],
          'no stage ran again',
        );
      } finally {
        store2.close();
      }
    } finally {
      await web.close();
      dir.cleanup();
    }
  },
);
