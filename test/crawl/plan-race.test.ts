/**
 * Two jobs planning the same dataset name at the same moment (different URL lists) each get their
 * own version; neither version's input shards hold the other's rows. Before version claims both
 * saw the same free version and split into one directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage } from '../../infra/storage.js';
import { planCrawl } from '../../datasets/crawl/plan.js';
import { tempDir } from '../helpers/env.js';
import { TEST_CRAWL_OPTIONS, writeJsonl } from './helpers.js';

test('concurrent plans of one dataset name claim distinct versions; a rerun resumes its own', async () => {
  const tmp = tempDir('kiln-plan-race-');
  try {
    const storage = new LocalStorage(join(tmp.path, 'data'));
    const lists = ['a', 'b', 'c'].map((tag) =>
      writeJsonl(
        tmp.path,
        `${tag}.jsonl`,
        Array.from({ length: 3000 }, (_, i) => ({
          url: `http://example.test/${tag}/${i}.jpg`,
          caption: `${tag} ${i}`,
        })),
      ),
    );
    const plans = await Promise.all(
      lists.map((path) =>
        planCrawl(
          storage,
          { datasetName: 'race', sources: [{ path }], rowsPerShard: 500, options: TEST_CRAWL_OPTIONS },
          0,
        ),
      ),
    );
    const versions = plans.map((p) => p.plan.version).sort();
    assert.deepEqual(versions, [1, 2, 3]);
    for (const [i, { plan }] of plans.entries()) {
      const tag = ['a', 'b', 'c'][i]!;
      const inputDir = join(tmp.path, 'data', 'datasets', 'race', `v${plan.version}`, 'input');
      const rows = readdirSync(inputDir).flatMap((f) =>
        readFileSync(join(inputDir, f), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { url: string }),
      );
      assert.equal(rows.length, 3000, `v${plan.version} holds exactly its own 3000 rows`);
      assert.ok(
        rows.every((r) => r.url.includes(`/${tag}/`)),
        `v${plan.version} holds only list ${tag}`,
      );
    }
    const again = await planCrawl(
      storage,
      { datasetName: 'race', sources: [{ path: lists[1]! }], rowsPerShard: 500, options: TEST_CRAWL_OPTIONS },
      0,
    );
    assert.equal(again.resumed, true);
    assert.equal(again.plan.version, plans[1]!.plan.version);
  } finally {
    tmp.cleanup();
  }
});
