/**
 * Beams through the filter stage (library level, no Temporal): the plan accepts and pins numBeams,
 * the shard's generated captions are the beam-search captions, and the manifest records numBeams.
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
import { filterShard } from '../../datasets/filter/stage.js';
import { FilterModelCache } from '../../datasets/filter/stage-models.js';
import { buildFilterManifest } from '../../datasets/filter/stage-manifest.js';
import { tempDir } from '../helpers/env.js';
import { sourceRows, writeSourceDataset } from '../integration/filter-source.js';
import { CAPTIONER_DIR, CLIP_DIR } from './fixtures.js';

const tmp = tempDir('kiln-filter-beams-');
after(() => tmp.cleanup());

void test('numBeams 3 is planned, pinned in the fingerprint, used for the shard captions and recorded in the manifest', async () => {
  const storage = new LocalStorage(`${tmp.path}/data`);
  const lineage = new LineageStore(`${tmp.path}/data/lineage.db`);
  const cache = new FilterModelCache();
  try {
    await writeSourceDataset(storage, lineage, 'web');
    const spec = {
      datasetName: 'web',
      sourceVersion: 1,
      clipModelDir: CLIP_DIR,
      captionerModelDir: CAPTIONER_DIR,
      threshold: 0,
      maxNewTokens: 6,
      batchSize: 3,
      device: 'cpu' as const,
    };
    const greedy = await planFilter(storage, spec, 1);
    const { plan } = await planFilter(storage, { ...spec, numBeams: 3 }, 1);
    assert.equal(plan.captioner?.options.numBeams, 3);
    assert.notEqual(plan.fingerprint, greedy.plan.fingerprint);
    assert.notEqual(plan.version, greedy.plan.version);

    for (const shard of plan.source.shards) {
      const out = await filterShard(
        storage,
        { plan, shardIndex: shard.index },
        { models: async () => (await cache.acquire(plan)).models, checkpointIntervalMs: 0 },
      );
      assert.equal(out.skipped, false);
    }
    const written: ShardRow[] = [];
    for await (const r of readShardRows(storage, new DatasetLayout(storage, 'web', plan.version).shardUri(0)))
      written.push(r);
    const src = (sourceRows()[0] as ShardRow[]).filter((r) => r.status === 'success');
    const cap = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: 6, numBeams: 3 });
    const want = await cap.captionRows(src.map((r) => r.jpg));
    await cap.dispose();
    const got = written.filter((r) => src.some((s) => s.key === r.key)).map((r) => r.caption_generated);
    assert.deepEqual(got, want.captions);
    assert.ok(want.captions.some((c) => c !== null && c.length > 0));

    const { manifest } = await buildFilterManifest(storage, plan, null);
    assert.equal((manifest.params as { captioner: { options: { numBeams: number } } }).captioner.options.numBeams, 3);
  } finally {
    await cache.dispose();
    lineage.close();
  }
});
