/**
 * The filter stage at library level (no Temporal) for the captioner stage tests: a fresh data root
 * holding the source dataset `web@v1` (test/integration/filter-source.ts), the spec they share,
 * every shard filtered, and shard 0's generated captions next to the source images they came from.
 */
import assert from 'node:assert/strict';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import type { ShardRow } from '../../datasets/shards/schema.js';
import type { FilterPlan, FilterPlanSpec } from '../../datasets/filter/stage-plan.js';
import { filterShard } from '../../datasets/filter/stage.js';
import { FilterModelCache } from '../../datasets/filter/stage-models.js';
import { sourceRows, writeSourceDataset } from '../integration/filter-source.js';
import { CLIP_DIR } from './fixtures.js';

export interface FilterStageRoot {
  storage: LocalStorage;
  lineage: LineageStore;
  cache: FilterModelCache;
}

/** Run `body` on a data root at `dir` holding `web@v1`, with a model cache; closes both after. */
export async function withSourceDataset(dir: string, body: (root: FilterStageRoot) => Promise<void>): Promise<void> {
  const storage = new LocalStorage(dir);
  const lineage = new LineageStore(`${dir}/lineage.db`);
  const cache = new FilterModelCache();
  try {
    await writeSourceDataset(storage, lineage, 'web');
    await body({ storage, lineage, cache });
  } finally {
    await cache.dispose();
    lineage.close();
  }
}

/** Caption `web@v1` with `captionerModelDir`: threshold 0, 6 new tokens, batches of 3, on the CPU. */
export function captionSpec(captionerModelDir: string, options: Partial<FilterPlanSpec> = {}) {
  return {
    datasetName: 'web',
    sourceVersion: 1,
    clipModelDir: CLIP_DIR,
    captionerModelDir,
    threshold: 0,
    maxNewTokens: 6,
    batchSize: 3,
    device: 'cpu' as const,
    ...options,
  };
}

/** Filter every shard of `plan`; each must be written by this call (none finished before). */
export async function filterEveryShard(root: FilterStageRoot, plan: FilterPlan): Promise<void> {
  for (const shard of plan.source.shards) {
    const out = await filterShard(
      root.storage,
      { plan, shardIndex: shard.index },
      { models: async () => (await root.cache.acquire(plan)).models, checkpointIntervalMs: 0 },
    );
    assert.equal(out.skipped, false, `shard ${shard.index} was written now`);
  }
}

/** Output shard 0's `caption_generated` of the source's `success` rows, and those rows' images. */
export async function shardZeroCaptions(
  storage: LocalStorage,
  plan: FilterPlan,
): Promise<{ generated: ShardRow['caption_generated'][]; images: ShardRow['jpg'][] }> {
  const written: ShardRow[] = [];
  for await (const r of readShardRows(storage, new DatasetLayout(storage, 'web', plan.version).shardUri(0)))
    written.push(r);
  const src = (sourceRows()[0] as ShardRow[]).filter((r) => r.status === 'success');
  return {
    generated: written.filter((r) => src.some((s) => s.key === r.key)).map((r) => r.caption_generated),
    images: src.map((r) => r.jpg),
  };
}
