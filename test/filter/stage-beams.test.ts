/**
 * Beams through the filter stage (library level, no Temporal): the plan accepts and pins numBeams,
 * the shard's generated captions are the beam-search captions, and the manifest records numBeams.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { planFilter } from '../../datasets/filter/stage-plan.js';
import { buildFilterManifest } from '../../datasets/filter/stage-manifest.js';
import { tempDir } from '../helpers/env.js';
import { CAPTIONER_DIR } from './fixtures.js';
import { captionSpec, filterEveryShard, shardZeroCaptions, withSourceDataset } from './stage-run.js';

const tmp = tempDir('kiln-filter-beams-');
after(() => tmp.cleanup());

void test('numBeams 3 is planned, pinned in the fingerprint, used for the shard captions and recorded in the manifest', async () => {
  await withSourceDataset(`${tmp.path}/data`, async (root) => {
    const { storage } = root;
    const spec = captionSpec(CAPTIONER_DIR);
    const greedy = await planFilter(storage, spec, 1);
    const { plan } = await planFilter(storage, { ...spec, numBeams: 3 }, 1);
    assert.equal(plan.captioner?.options.numBeams, 3);
    assert.notEqual(plan.fingerprint, greedy.plan.fingerprint);
    assert.notEqual(plan.version, greedy.plan.version);

    await filterEveryShard(root, plan);
    const { generated, images } = await shardZeroCaptions(storage, plan);
    const cap = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: 6, numBeams: 3 });
    const want = await cap.captionRows(images);
    await cap.dispose();
    assert.deepEqual(generated, want.captions);
    assert.ok(want.captions.some((c) => c !== null && c.length > 0));

    const { manifest } = await buildFilterManifest(storage, plan, null);
    assert.equal((manifest.params as { captioner: { options: { numBeams: number } } }).captioner.options.numBeams, 3);
  });
});
