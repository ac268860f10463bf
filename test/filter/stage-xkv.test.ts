/**
 * The cross-attention split through the filter stage (library level, no Temporal): the plan pins the
 * split graphs' hashes with the other model files, the shard's generated captions equal the merged
 * decoder's, and the shard stats and manifest record which decoder path ran.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import type { ShardRow } from '../../datasets/shards/schema.js';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { planFilter } from '../../datasets/filter/stage-plan.js';
import { filterShard, type FilterShardStats } from '../../datasets/filter/stage.js';
import { FilterModelCache } from '../../datasets/filter/stage-models.js';
import { buildFilterManifest } from '../../datasets/filter/stage-manifest.js';
import { tempDir } from '../helpers/env.js';
import { sourceRows, writeSourceDataset } from '../integration/filter-source.js';
import { CAPTIONER_DIR, CLIP_DIR, MODELS } from './fixtures.js';

const XKV_DIR = `${MODELS}/vit-gpt2-tiny-xkv`;
const tmp = tempDir('kiln-filter-xkv-');
after(() => tmp.cleanup());

for (const numBeams of [1, 3]) {
  void test(`numBeams ${numBeams}: a split captioner filters a dataset end to end with the merged decoder's captions, and records the split path`, async () => {
    const storage = new LocalStorage(`${tmp.path}/data-${numBeams}`);
    const lineage = new LineageStore(`${tmp.path}/data-${numBeams}/lineage.db`);
    const cache = new FilterModelCache();
    try {
      await writeSourceDataset(storage, lineage, 'web');
      const spec = {
        datasetName: 'web',
        sourceVersion: 1,
        clipModelDir: CLIP_DIR,
        captionerModelDir: XKV_DIR,
        threshold: 0,
        maxNewTokens: 6,
        numBeams,
        batchSize: 3,
        device: 'cpu' as const,
      };
      const { plan } = await planFilter(storage, spec, 1);
      const pinned = plan.captioner?.files.map((f) => f.path) ?? [];
      for (const f of ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx', 'onnx/decoder_xkv.json'])
        assert.ok(pinned.includes(f), `plan pins ${f}`);

      for (const shard of plan.source.shards) {
        const out = await filterShard(
          storage,
          { plan, shardIndex: shard.index },
          { models: async () => (await cache.acquire(plan)).models, checkpointIntervalMs: 0 },
        );
        assert.equal(out.skipped, false);
      }
      const layout = new DatasetLayout(storage, 'web', plan.version);
      const written: ShardRow[] = [];
      for await (const r of readShardRows(storage, layout.shardUri(0))) written.push(r);
      const src = (sourceRows()[0] as ShardRow[]).filter((r) => r.status === 'success');
      const merged = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: 6, numBeams });
      const want = await merged.captionRows(src.map((r) => r.jpg));
      assert.equal(merged.options.decoder.path, 'merged');
      await merged.dispose();
      assert.deepEqual(
        written.filter((r) => src.some((s) => s.key === r.key)).map((r) => r.caption_generated),
        want.captions,
      );
      assert.ok(want.captions.some((c) => c !== null && c.length > 0));

      const stats = JSON.parse(await storage.readText(layout.statsUri(0))) as FilterShardStats;
      assert.deepEqual(stats.runtime.captionDecoder, {
        path: 'split',
        files: ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx'],
      });
      const { manifest } = await buildFilterManifest(storage, plan, null);
      assert.deepEqual((manifest.params as { captionDecoders: string[] }).captionDecoders, ['split']);
    } finally {
      await cache.dispose();
      lineage.close();
    }
  });
}
