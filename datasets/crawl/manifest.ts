/**
 * The manifest of a crawled dataset version: every shard of the plan, from its stats file (the
 * shard's commit record), in index order. Fails when a shard is not finished, so a manifest never
 * describes a partial dataset.
 */
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import { KilnError } from '../../infra/errors.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout, shardRelativePath, statsRelativePath } from '../shards/layout.js';
import type { DatasetManifest, ManifestShard } from '../shards/manifest.js';
import { ROW_STATUSES, type RowStatus } from '../shards/schema.js';
import { findFinishedShard } from '../shards/stage-shard.js';
import type { CrawlPlan } from './plan.js';

/** A manifest was requested while some shards are not finished. */
export class ShardsNotFinishedError extends KilnError {
  constructor(datasetId: string, missing: number[]) {
    super(
      'KILN_SHARDS_NOT_FINISHED',
      `dataset ${datasetId} has ${missing.length} unfinished shard(s): ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`,
      'run the crawl again with the same inputs: finished shards are skipped and the missing ones crawled.',
    );
  }
}

/** Build the manifest of `plan` from the finished shards' stats (hashes are not re-computed here). */
export async function buildCrawlManifest(
  storage: ArtifactStorage,
  plan: CrawlPlan,
  onProgress?: (shardsDone: number) => void,
): Promise<DatasetManifest> {
  const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
  const shards: ManifestShard[] = [];
  const missing: number[] = [];
  const counts = Object.fromEntries(ROW_STATUSES.map((s) => [s, 0])) as Record<RowStatus, number>;
  let rows = 0;
  for (let i = 0; i < plan.shardCount; i++) {
    const done = await findFinishedShard(storage, layout, i, { verifyHash: false });
    if (!done) {
      missing.push(i);
      continue;
    }
    const s = done.stats;
    shards.push({
      index: i,
      path: shardRelativePath(i),
      rows: s.rows,
      sha256: s.shard.sha256,
      bytes: s.shard.bytes,
      stats: statsRelativePath(i),
    });
    rows += s.rows;
    for (const st of ROW_STATUSES) counts[st] += s.countsByStatus[st] ?? 0;
    if (i % 1000 === 999) onProgress?.(i + 1);
  }
  if (missing.length) throw new ShardsNotFinishedError(layout.id, missing);
  if (rows !== plan.rows)
    throw new KilnError(
      'KILN_ROW_COUNT_MISMATCH',
      `dataset ${layout.id}: shards hold ${rows} rows but the plan has ${plan.rows}`,
      'delete the version directory and crawl again; this is a bug, please report it.',
    );
  return {
    id: layout.id,
    name: plan.datasetName,
    version: plan.version,
    parents: [],
    schemaVersion: SHARD_SCHEMA_VERSION,
    stage: 'crawl',
    params: {
      fingerprint: plan.fingerprint,
      sources: plan.sources,
      rowsPerShard: plan.rowsPerShard,
      extraColumns: plan.extraColumns,
      options: plan.options,
    },
    createdAt: new Date().toISOString(),
    rows,
    countsByStatus: counts,
    shards,
  };
}
