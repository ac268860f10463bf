/**
 * Incremental curation: a second crawl with `incremental` adds only what earlier versions have not
 * seen, by URL and by image bytes; the rest stay in the output as `filtered` with the version that
 * holds them, and the seen index records which dataset version (and job) saw what.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { startSyntheticWeb, type SyntheticWeb } from '../../demo/synthetic-web.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import { manifestShardUris, parseManifest } from '../../datasets/shards/manifest.js';
import type { CrawlWorkflowResult } from '../../workflows/crawl.js';
import { tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';

let env: TestWorkflowEnvironment;
let web: SyntheticWeb;
const dir = tempDir();

before(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalBinary() } },
  });
  web = await startSyntheticWeb({ count: 15, seed: 9, faultEvery: 0 });
});
after(async () => {
  await web?.close();
  await env?.teardown();
  dir.cleanup();
});

function list(name: string, urls: string[]): string {
  const p = join(dir.path, name);
  writeFileSync(p, ['url,caption', ...urls.map((u, i) => `${u},caption ${i}`)].join('\n') + '\n');
  return p;
}

test('the second, incremental crawl fetches only unseen URLs and images', { timeout: 180_000 }, async () => {
  const config = testConfig(join(dir.path, 'data'), env.address);
  const kw = await createKilnWorkers(config, { connection: env.nativeConnection });
  const url = (i: number) => `${web.baseUrl}/img/${i}.jpg`;
  const crawl = (inputs: string[], incremental: boolean) =>
    env.client.workflow.execute('crawlWorkflow', {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId: uniqueId('incr'),
      args: [
        {
          datasetName: 'incr-web',
          inputs,
          incremental,
          rowsPerShard: 8,
          options: { imageSize: 16, allowAddresses: ['127.0.0.1'] },
        },
      ],
    }) as Promise<CrawlWorkflowResult>;
  const [first, second] = await kw.runUntil(
    (async () => {
      const a = await crawl([list('a.csv', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(url))], true);
      // 5..9 seen by URL; a mirror of image 0 (new URL, same bytes); 10..14 new
      const b = await crawl(
        [list('b.csv', [...[5, 6, 7, 8, 9, 10, 11, 12, 13, 14].map(url), `${url(0)}?mirror=1`])],
        true,
      );
      return [a, b];
    })(),
  );
  assert.equal(first.version, 1);
  assert.equal(first.countsByStatus.success, 10);
  assert.equal(second.version, 2);
  const storage = new LocalStorage(config.dataRoot);
  const manifest = parseManifest(await storage.readText(second.manifestUri), second.manifestUri);
  const rows: { url: string; status: string; error_message: string | null }[] = [];
  for (const u of manifestShardUris(storage, manifest))
    for await (const r of readShardRows(storage, u, { columns: ['url', 'status', 'error_message'] })) rows.push(r);
  assert.equal(rows.length, 11, 'every input row is in the output once');
  const byUrl = new Map(rows.map((r) => [r.url, r]));
  for (const i of [5, 6, 7, 8, 9]) {
    assert.equal(byUrl.get(url(i))?.status, 'filtered');
    assert.match(String(byUrl.get(url(i))?.error_message), /^seen_before: URL already crawled in incr-web@v1/);
  }
  for (const i of [10, 11, 12, 13, 14]) assert.equal(byUrl.get(url(i))?.status, 'success');
  assert.match(
    String(byUrl.get(`${url(0)}?mirror=1`)?.error_message),
    /^duplicate_content: same image bytes already in incr-web@v1/,
  );

  const lineage = new LineageStore(config.lineagePath);
  try {
    assert.equal(lineage.seenItemCount('incr-web@v1'), 10);
    assert.equal(lineage.seenItemCount('incr-web@v2'), 5, 'v2 adds only its new rows to the index');
    assert.equal(lineage.seenUrl(url(12), lineage.seenIndexPosition()), 'incr-web@v2');
  } finally {
    lineage.close();
  }
});
