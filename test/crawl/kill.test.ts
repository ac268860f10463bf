/**
 * A worker process killed (SIGKILL) in the middle of a shard leaves no visible partial file; the
 * next run sweeps its temp file and completes the shard with every row exactly once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LocalStorage } from '../../infra/storage.js';
import { planCrawl } from '../../datasets/crawl/plan.js';
import { crawlShardToParquet, findFinishedShard } from '../../datasets/crawl/crawl-shard.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { tempDir } from '../helpers/env.js';
import { startFixtureServer, type FixtureServer } from './fixture-server.js';
import { TEST_CRAWL_OPTIONS, pyarrowDescribe, writeJsonl } from './helpers.js';

describe('killed shard writer', () => {
  let server: FixtureServer;
  const tmp = tempDir('kiln-crawl-kill-');
  before(async () => {
    server = await startFixtureServer();
  });
  after(async () => {
    await server.close();
    tmp.cleanup();
  });

  it('SIGKILL mid-shard: nothing visible, the rerun completes the shard', async () => {
    const dataRoot = `${tmp.path}/data`;
    const storage = new LocalStorage(dataRoot);
    const images = [
      '/img/landscape.jpg',
      '/img/portrait.jpg',
      '/img/square.png',
      '/img/wide.webp',
      '/img/exact.jpg',
      '/img/alpha.png',
    ];
    const urls = [
      ...images.map((p) => `${server.baseUrl}${p}`),
      `${server.baseUrl}/slow.jpg`,
      `${server.baseUrl}/slow.jpg?again`,
    ];
    const list = writeJsonl(
      tmp.path,
      'urls.jsonl',
      urls.map((url) => ({ url })),
    );
    const options = { ...TEST_CRAWL_OPTIONS, concurrency: 2 };
    const { plan } = await planCrawl(storage, { datasetName: 'kill', sources: [{ path: list }], options }, 0);
    const layout = new DatasetLayout(storage, 'kill', plan.version);

    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('./kill-child.js', import.meta.url)),
        dataRoot,
        'kill',
        String(plan.version),
        '0',
        JSON.stringify(options),
        JSON.stringify(plan.extraColumns),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exit = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    let seen = 0;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      for (const m of text.matchAll(/rows (\d+)/g)) seen = Math.max(seen, Number(m[1]));
      if (seen >= 4 && !child.killed) child.kill('SIGKILL');
    });
    assert.equal(await exit, 'SIGKILL');
    assert.ok(seen >= 4 && seen < urls.length, `killed midway (after ${seen} rows)`);

    const dir = storage.localPath(layout.shardsDirUri);
    assert.deepEqual(await storage.list(layout.shardsDirUri), [], 'no visible file');
    assert.equal(
      readdirSync(dir).filter((n) => n.startsWith('.kiln-tmp-')).length,
      1,
      'the killed writer left only its hidden temp file',
    );
    assert.equal(await findFinishedShard(storage, layout, 0), undefined);

    // The rerun: planning resumes the version and sweeps the temp file, the shard completes.
    const again = await planCrawl(storage, { datasetName: 'kill', sources: [{ path: list }], options }, 0);
    assert.equal(again.resumed, true);
    assert.deepEqual(readdirSync(dir), []);
    const out = await crawlShardToParquet(storage, {
      datasetName: 'kill',
      version: plan.version,
      shardIndex: 0,
      extraColumns: plan.extraColumns,
      options: { ...options, concurrency: 8 },
    });
    assert.equal(out.rows, urls.length);
    const py = pyarrowDescribe(storage.localPath(layout.shardUri(0)));
    assert.equal(py.rows, urls.length);
    assert.equal(Object.keys(py.byKey).length, urls.length);
    assert.equal(Object.values(py.byKey).filter((r) => r.status === 'success').length, images.length);
    assert.deepEqual(readdirSync(dir).sort(), ['shard-000000.parquet', 'shard-000000.stats.json']);
    const skipped = await crawlShardToParquet(storage, {
      datasetName: 'kill',
      version: plan.version,
      shardIndex: 0,
      extraColumns: plan.extraColumns,
      options,
    });
    assert.equal(skipped.skipped, true);
    assert.equal(skipped.shard.sha256, out.shard.sha256);
  });
});
