/**
 * The filter plan pins its source through the one source-version helper (datasets/shards/source-version.ts),
 * as dedup does: the plan's source is exactly what the helper pins, and a source version without a
 * manifest is refused before anything is written, naming the version and the fix.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { MissingFileError } from '../../infra/errors.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { pinSourceVersion } from '../../datasets/shards/source-version.js';
import { planFilter } from '../../datasets/filter/stage-plan.js';
import { tempDir } from '../helpers/env.js';
import { SOURCE_ROWS } from '../integration/filter-source.js';
import { CLIP_DIR } from './fixtures.js';
import { withSourceDataset } from './stage-run.js';

const tmp = tempDir('kiln-filter-plan-source-');
after(() => tmp.cleanup());

void test('the filter plan pins the source version with the shared helper; a version with no manifest is refused', async () => {
  await withSourceDataset(`${tmp.path}/data`, async ({ storage }) => {
    const spec = { datasetName: 'web', sourceVersion: 1, clipModelDir: CLIP_DIR, threshold: 0, device: 'cpu' as const };
    const { plan } = await planFilter(storage, spec, 1);
    assert.deepEqual(plan.source, await pinSourceVersion(storage, 'web', 1, 'filter'));
    assert.equal(plan.source.id, 'web@v1');
    assert.equal(plan.source.shards.length, SOURCE_ROWS.length);
    assert.equal(
      plan.source.rows,
      SOURCE_ROWS.reduce((n, s) => n + s.length, 0),
    );

    await assert.rejects(planFilter(storage, { ...spec, sourceVersion: 3 }, 1), (err: unknown) => {
      assert.ok(err instanceof MissingFileError, String(err));
      assert.match(err.message, /source dataset web@v3 has no manifest at /);
      assert.match(err.fix, /^filter a finished dataset version: crawl web first/);
      return true;
    });
    // The refused run would have planned v4 (the first version after its source).
    const refused = new DatasetLayout(storage, 'web', 4);
    assert.equal(await storage.exists(refused.planUri), false, 'no plan written for the refused run');
  });
});
