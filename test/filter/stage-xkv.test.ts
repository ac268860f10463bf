/**
 * The cross-attention split through the filter stage (library level, no Temporal): the plan pins the
 * split graphs' hashes with the other model files, the shard's generated captions equal the merged
 * decoder's, and the shard stats and manifest record which decoder path ran.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { planFilter } from '../../datasets/filter/stage-plan.js';
import type { FilterShardStats } from '../../datasets/filter/stage.js';
import { buildFilterManifest } from '../../datasets/filter/stage-manifest.js';
import { tempDir } from '../helpers/env.js';
import { CAPTIONER_DIR, MODELS } from './fixtures.js';
import { captionSpec, filterEveryShard, shardZeroCaptions, withSourceDataset } from './stage-run.js';

const XKV_DIR = `${MODELS}/vit-gpt2-tiny-xkv`;
const tmp = tempDir('kiln-filter-xkv-');
after(() => tmp.cleanup());

for (const numBeams of [1, 3]) {
  void test(`numBeams ${numBeams}: a split captioner filters a dataset end to end with the merged decoder's captions, and records the split path`, async () => {
    await withSourceDataset(`${tmp.path}/data-${numBeams}`, async (root) => {
      const { storage } = root;
      const { plan } = await planFilter(storage, captionSpec(XKV_DIR, { numBeams }), 1);
      const pinned = plan.captioner?.files.map((f) => f.path) ?? [];
      for (const f of ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx', 'onnx/decoder_xkv.json'])
        assert.ok(pinned.includes(f), `plan pins ${f}`);

      await filterEveryShard(root, plan);
      const { generated, images } = await shardZeroCaptions(storage, plan);
      const merged = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: 6, numBeams });
      const want = await merged.captionRows(images);
      assert.equal(merged.options.decoder.path, 'merged');
      await merged.dispose();
      assert.deepEqual(generated, want.captions);
      assert.ok(want.captions.some((c) => c !== null && c.length > 0));

      const layout = new DatasetLayout(storage, 'web', plan.version);
      const stats = JSON.parse(await storage.readText(layout.statsUri(0))) as FilterShardStats;
      assert.deepEqual(stats.runtime.captionDecoder, {
        path: 'split',
        files: ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx'],
      });
      const { manifest } = await buildFilterManifest(storage, plan, null);
      assert.deepEqual((manifest.params as { captionDecoders: string[] }).captionDecoders, ['split']);
    });
  });
}
