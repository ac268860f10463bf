/**
 * crawlWorkflow through a real Temporal dev server and a real worker (workflows from
 * dist/workflows/crawl.js, real activities on a temp data root): fan-out over child workflows with
 * continue-as-new, a shard attempt killed midway and retried, an interrupted crawl resumed by a
 * rerun that skips finished shards, and lineage records. Parquet is read back with pyarrow.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { createCrawlActivities, type CrawlActivityHooks } from '../../activities/crawl.js';
import { createLineageActivities } from '../../activities/lineage.js';
import type { ActivityDeps } from '../../activities/deps.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readDatasetManifest } from '../../datasets/shards/manifest.js';
import type { CrawlWorkflowInput, CrawlWorkflowResult } from '../../workflows/crawl.js';
import { IO_QUEUE } from '../../workflows/queues.js';
import { bundleTestWorkflows, tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';
import { startFixtureServer, type FixtureServer } from './fixture-server.js';
import { TEST_CRAWL_OPTIONS, pyJson, writeJsonl } from './helpers.js';

const ROWS = 30;
const PER_SHARD = 4; // -> 8 shards
const SHARDS = Math.ceil(ROWS / PER_SHARD);

describe('crawlWorkflow (Temporal)', () => {
  let env: TestWorkflowEnvironment;
  let server: FixtureServer;
  let bundle: WorkflowBundleWithSourceMap;
  let deps: ActivityDeps;
  let list: string;
  const hooks: CrawlActivityHooks = {};
  const tmp = tempDir('kiln-crawl-wf-');

  before(async () => {
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalBinary() } },
    });
    server = await startFixtureServer();
    bundle = await bundleTestWorkflows(new URL('../../workflows/crawl.js', import.meta.url));
    const config = testConfig(`${tmp.path}/data`, env.address);
    deps = {
      config,
      storage: new LocalStorage(config.dataRoot),
      lineage: new LineageStore(config.lineagePath),
      codeVersion: 'test',
    };
    const paths = [
      '/img/landscape.jpg',
      '/img/portrait.jpg',
      '/img/square.png',
      '/img/wide.webp',
      '/missing.jpg',
      '/text.txt',
      '/flaky500/x',
      '/robots/noai.jpg',
      '/redirect/private',
      '/truncated.jpg',
    ];
    const rows = Array.from({ length: ROWS }, (_, i) => ({
      url:
        i % 3 === 0
          ? `${server.baseUrl}${paths[(i / 3) % paths.length]!}?n=${i}`
          : `${server.baseUrl}${paths[i % paths.length]!}`,
      caption: `row ${i}`,
    }));
    list = writeJsonl(tmp.path, 'urls.jsonl', rows);
  });

  after(async () => {
    await server?.close();
    await env?.teardown();
    deps?.lineage.close();
    tmp.cleanup();
  });

  const run = async (workflowId: string, extra: Partial<CrawlWorkflowInput> = {}): Promise<CrawlWorkflowResult> => {
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: IO_QUEUE,
      workflowBundle: bundle,
      activities: { ...createLineageActivities(deps), ...createCrawlActivities(deps, hooks) },
    });
    const input: CrawlWorkflowInput = {
      datasetName: 'wf',
      inputs: [list],
      rowsPerShard: PER_SHARD,
      options: TEST_CRAWL_OPTIONS,
      maxConcurrentShards: 2,
      shardsPerPage: 2,
      pagesPerRun: 2,
      ...extra,
    };
    return worker.runUntil(
      env.client.workflow.execute('crawlWorkflow', { taskQueue: IO_QUEUE, workflowId, args: [input] }),
    ) as Promise<CrawlWorkflowResult>;
  };

  it('an interrupted crawl fails, a rerun resumes it (finished shards skipped), every row lands exactly once', async () => {
    const layout = new DatasetLayout(deps.storage, 'wf', 1);
    // Run 1: shard 1 is "killed" midway on its first attempt (retried, completes); shard 5 fails for good.
    const killedAt: { attempt: number; finalExisted: boolean; tempLeft: string[] }[] = [];
    hooks.onShardProgress = (shard, rowsDone, attempt) => {
      if (shard === 1 && rowsDone === 2) {
        const dir = deps.storage.localPath(layout.shardsDirUri);
        killedAt.push({ attempt, finalExisted: readdirSync(dir).includes('shard-000001.parquet'), tempLeft: [] });
        if (attempt === 1) throw new Error('simulated worker death in the middle of shard 1');
      }
      if (shard === 5)
        throw ApplicationFailure.create({
          message: 'permanent failure of shard 5',
          nonRetryable: true,
          type: 'TestFailure',
        });
    };
    const first = uniqueId('crawl-a');
    await assert.rejects(run(first), (err: unknown) => err instanceof WorkflowFailedError);
    assert.deepEqual(
      killedAt.map((k) => [k.attempt, k.finalExisted]),
      [
        [1, false],
        [2, false],
      ],
      'the retry of shard 1 found no partial output',
    );
    const shardsDir = deps.storage.localPath(layout.shardsDirUri);
    assert.deepEqual(
      readdirSync(shardsDir).filter((n) => n.startsWith('.kiln-tmp-')),
      [],
      'no temp file left behind',
    );
    assert.ok(!readdirSync(shardsDir).includes('shard-000005.parquet'));
    assert.equal(deps.lineage.getJob(first)?.status, 'failed');
    const shard1Run = deps.lineage.getRun(`${first}/crawl/shard-1`)!;
    assert.equal(shard1Run.status, 'completed');

    // Run 2: same inputs, no version -> resumes v1; the shards finished in run 1 are skipped.
    hooks.onShardProgress = undefined;
    const second = uniqueId('crawl-b');
    const r = await run(second);
    assert.equal(r.version, 1);
    assert.equal(r.resumed, true);
    assert.equal(r.shards, SHARDS);
    assert.ok(r.shardsCrawled >= 1 && r.shardsCrawled < SHARDS, `crawled ${r.shardsCrawled} of ${SHARDS}`);
    assert.equal(r.shardsCrawled + r.shardsSkipped, SHARDS);
    assert.ok(r.runs >= 2, 'continued as new at least once');
    assert.equal(r.rows, ROWS);
    assert.equal(
      Object.values(r.countsByStatus).reduce((a, b) => a + b, 0),
      ROWS,
    );

    // The manifest and an independent reader agree: every key once, schema as specified.
    const manifest = await readDatasetManifest(deps.storage, 'wf', 1);
    assert.equal(manifest.id, 'wf@v1');
    assert.equal(manifest.shards.length, SHARDS);
    assert.deepEqual(
      manifest.shards.map((s) => s.index),
      [...Array(SHARDS).keys()],
    );
    const paths = manifest.shards.map((s) => deps.storage.localPath(layout.resolve(s.path)));
    const py = pyJson(
      `
import json, sys, hashlib, pyarrow.parquet as pq
keys, rows, shas, statuses = [], [], [], {}
for p in sys.argv[1:]:
    t = pq.read_table(p)
    rows.append(t.num_rows)
    keys += t.column('key').to_pylist()
    for s in t.column('status').to_pylist(): statuses[s] = statuses.get(s, 0) + 1
    shas.append(hashlib.sha256(open(p, 'rb').read()).hexdigest())
print(json.dumps({'keys': keys, 'rows': rows, 'shas': shas, 'statuses': statuses, 'types': [str(f.type) for f in pq.read_schema(sys.argv[1])]}))
`,
      paths,
    ) as { keys: string[]; rows: number[]; shas: string[]; statuses: Record<string, number>; types: string[] };
    assert.equal(py.keys.length, ROWS);
    assert.equal(new Set(py.keys).size, ROWS, 'no duplicate rows');
    assert.deepEqual(
      py.rows,
      manifest.shards.map((s) => s.rows),
    );
    assert.deepEqual(
      py.shas,
      manifest.shards.map((s) => s.sha256),
    );
    assert.deepEqual(py.statuses, Object.fromEntries(Object.entries(r.countsByStatus).filter(([, n]) => n > 0)));
    assert.deepEqual(py.types.slice(0, 11), [
      'string',
      'string',
      'string',
      'string',
      'string',
      'int32',
      'int32',
      'int32',
      'int32',
      'string',
      'binary',
    ]);

    // Lineage: the dataset version, its manifest, each shard run's consumed input and produced files.
    const dv = deps.lineage.getDatasetVersion('wf@v1')!;
    assert.equal(dv.version, 1);
    assert.equal(deps.lineage.getArtifact(dv.manifestArtifactId)?.sha256, r.manifestSha256);
    assert.equal(deps.lineage.getJob(second)?.status, 'completed');
    for (let i = 0; i < SHARDS; i++) {
      const runId = deps.lineage.getRun(`${second}/crawl/shard-${i}`)
        ? `${second}/crawl/shard-${i}`
        : `${first}/crawl/shard-${i}`;
      const produced = deps.lineage
        .artifactsOfRun(runId, 'produced')
        .map((a) => a.kind)
        .sort();
      assert.deepEqual(produced, ['dataset-shard', 'shard-stats'], `shard ${i} produced`);
      assert.deepEqual(
        deps.lineage.artifactsOfRun(runId, 'consumed').map((a) => a.kind),
        ['crawl-input-shard'],
      );
    }

    // The recorded history replays deterministically against the current workflow code.
    const history = await env.client.workflow.getHandle(second).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: bundle }, history, second);

    // Run 3: explicit version 1 again -> nothing to crawl, same manifest.
    const third = await run(uniqueId('crawl-c'), { version: 1 });
    assert.equal(third.shardsCrawled, 0);
    assert.equal(third.shardsSkipped, SHARDS);
    assert.equal(third.manifestSha256, r.manifestSha256);
    assert.equal(deps.lineage.latestDatasetVersionNumber('wf'), 1);

    // Run 4: no version, the same inputs, v1 complete -> a new version v2.
    const fourth = await run(uniqueId('crawl-d'), { options: { ...TEST_CRAWL_OPTIONS, imageSize: 32 } });
    assert.equal(fourth.version, 2);
    assert.equal(fourth.resumed, false);
    assert.equal(fourth.rows, ROWS);
  });
});
