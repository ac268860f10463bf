/**
 * A BLIP captioner through the filter stage (library level, no Temporal): the stage picks the captioner
 * type from the model directory, the plan and manifest record it (lineage), and the shard's generated
 * captions are the BLIP captioner's (itself checked against transformers in captioner-blip.test.ts).
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
import { CLIP_DIR, MODELS } from './fixtures.js';

const BLIP_DIR = `${MODELS}/blip-tiny`;
const tmp = tempDir('kiln-filter-blip-');
after(() => tmp.cleanup());

void test('a BLIP captioner filters a dataset end to end: type picked from the model dir, recorded in plan and manifest, captions as the captioner writes them', async () => {
  const storage = new LocalStorage(`${tmp.path}/data`);
  const lineage = new LineageStore(`${tmp.path}/data/lineage.db`);
  const cache = new FilterModelCache();
  try {
    await writeSourceDataset(storage, lineage, 'web');
    const spec = {
      datasetName: 'web',
      sourceVersion: 1,
      clipModelDir: CLIP_DIR,
      captionerModelDir: BLIP_DIR,
      threshold: 0,
      maxNewTokens: 6,
      numBeams: 2,
      captionPrompt: 'a picture of',
      batchSize: 3,
      device: 'cpu' as const,
    };
    const { plan } = await planFilter(storage, spec, 1);
    assert.equal(plan.captioner?.type, 'blip');
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
    const cap = await loadCaptioner(BLIP_DIR, { device: 'cpu', maxNewTokens: 6, numBeams: 2, prompt: 'a picture of' });
    const want = await cap.captionRows(src.map((r) => r.jpg));
    await cap.dispose();
    assert.ok(want.captions.filter((c) => c !== null && c.length > 0).length >= 2);
    assert.deepEqual(
      written.filter((r) => src.some((s) => s.key === r.key)).map((r) => r.caption_generated),
      want.captions,
    );

    const stats = JSON.parse(await storage.readText(layout.statsUri(0))) as FilterShardStats;
    assert.deepEqual(stats.runtime.captionDecoder, {
      path: 'split',
      files: ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx'],
    });
    const { manifest } = await buildFilterManifest(storage, plan, null);
    const params = manifest.params as { captioner: { type: string; options: { prompt: string } } };
    assert.equal(params.captioner.type, 'blip');
    assert.equal(params.captioner.options.prompt, 'a picture of');
  } finally {
    await cache.dispose();
    lineage.close();
  }
});
