/**
 * A BLIP captioner through the filter stage (library level, no Temporal): the stage picks the captioner
 * type from the model directory, the plan and manifest record it (lineage), and the shard's generated
 * captions are the BLIP captioner's (itself checked against transformers in captioner-blip.test.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { planFilter } from '../../datasets/filter/stage-plan.js';
import type { FilterShardStats } from '../../datasets/filter/stage.js';
import { buildFilterManifest } from '../../datasets/filter/stage-manifest.js';
import { tempDir } from '../helpers/env.js';
import { MODELS } from './fixtures.js';
import { captionSpec, filterEveryShard, shardZeroCaptions, withSourceDataset } from './stage-run.js';

const BLIP_DIR = `${MODELS}/blip-tiny`;
const tmp = tempDir('kiln-filter-blip-');
after(() => tmp.cleanup());

void test('a BLIP captioner filters a dataset end to end: its type from the model dir, in plan and manifest, its captions', async () => {
  // The type is picked from the model dir and recorded in the plan and manifest; captions as the captioner writes them.
  await withSourceDataset(`${tmp.path}/data`, async (root) => {
    const { storage } = root;
    const spec = captionSpec(BLIP_DIR, { numBeams: 2, captionPrompt: 'a picture of' });
    const { plan } = await planFilter(storage, spec, 1);
    assert.equal(plan.captioner?.type, 'blip');
    await filterEveryShard(root, plan);
    const { generated, images } = await shardZeroCaptions(storage, plan);
    const cap = await loadCaptioner(BLIP_DIR, { device: 'cpu', maxNewTokens: 6, numBeams: 2, prompt: 'a picture of' });
    const want = await cap.captionRows(images);
    await cap.dispose();
    assert.ok(want.captions.filter((c) => c !== null && c.length > 0).length >= 2);
    assert.deepEqual(generated, want.captions);

    const layout = new DatasetLayout(storage, 'web', plan.version);
    const stats = JSON.parse(await storage.readText(layout.statsUri(0))) as FilterShardStats;
    assert.deepEqual(stats.runtime.captionDecoder, {
      path: 'split',
      files: ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx'],
    });
    const { manifest } = await buildFilterManifest(storage, plan, null);
    const params = manifest.params as { captioner: { type: string; options: { prompt: string } } };
    assert.equal(params.captioner.type, 'blip');
    assert.equal(params.captioner.options.prompt, 'a picture of');
  });
});
