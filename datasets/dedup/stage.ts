/**
 * Exact dedup, one shard and the manifest, as library functions (no Temporal). Output shard i holds
 * every row of source shard i, in order; a duplicate the plan names becomes `filtered` with
 * `duplicate_sha256: same image bytes as row <key> (shard <n>)`; every other row is copied as it is.
 * Shards are committed through the shared protocol (datasets/shards/stage-shard.ts).
 */
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import { KilnError } from '../../infra/errors.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout, shardRelativePath, statsRelativePath } from '../shards/layout.js';
import type { DatasetManifest, ManifestShard } from '../shards/manifest.js';
import { readShardInfo, readShardRows } from '../shards/reader.js';
import { BASE_COLUMNS, ROW_STATUSES, STAGE_COLUMNS, type RowStatus } from '../shards/schema.js';
import { verifyPinnedShard } from '../shards/source-version.js';
import { commitShard, findFinishedShard, type FileRef } from '../shards/stage-shard.js';
import type { ShardStats } from '../shards/stats.js';
import type { DedupPlan } from './plan.js';

/** Stats of a dedup shard: the common ShardStats plus its source and how many rows it marked. */
export interface DedupShardStats extends ShardStats {
  stage: 'dedup';
  source: { datasetId: string; uri: string; sha256: string; rows: number };
  duplicates: number;
}

export interface DedupShardOutcome {
  shardIndex: number;
  rows: number;
  duplicates: number;
  shard: FileRef;
  stats: FileRef;
  source: FileRef;
  skipped: boolean;
}

export const isDedupShardStats = (s: DedupShardStats): boolean => s.stage === 'dedup';

const SOURCE_FIX = 'restore the source dataset version (its manifest lists this shard), or dedup another version.';

/** Write output shard `index` of `plan` (or return it when already finished). */
export async function dedupShard(
  storage: ArtifactStorage,
  plan: DedupPlan,
  index: number,
  onRows?: (rows: number) => void,
): Promise<DedupShardOutcome> {
  const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
  const src = plan.source.shards.find((s) => s.index === index);
  if (!src) throw new RangeError(`source dataset ${plan.source.id} has no shard ${index}`);
  const source: FileRef = { uri: src.uri, sha256: src.sha256, bytes: src.bytes };
  const outcome = (stats: DedupShardStats, ref: FileRef, skipped: boolean): DedupShardOutcome => ({
    shardIndex: index,
    rows: stats.rows,
    duplicates: stats.duplicates,
    shard: stats.shard,
    stats: ref,
    source,
    skipped,
  });
  const done = await findFinishedShard<DedupShardStats>(storage, layout, index, { accept: isDedupShardStats });
  if (done) return outcome(done.stats, done.ref, true);
  await verifyPinnedShard(storage, src, SOURCE_FIX);
  const dups = new Map((plan.duplicates[String(index)] ?? []).map((d) => [d.row, d]));
  const info = await readShardInfo(storage, src.uri);
  const known = new Set<string>([...BASE_COLUMNS, ...STAGE_COLUMNS]);
  const { stats, ref } = await commitShard<DedupShardStats>(storage, {
    layout,
    shardIndex: index,
    inputUri: src.uri,
    expectedRows: src.rows,
    writer: {
      columns: {
        extra: info.columns.filter((c) => !known.has(c)),
        clipScore: info.columns.includes('clip_score'),
        captionGenerated: info.columns.includes('caption_generated'),
      },
      metadata: {
        'kiln.dataset': layout.id,
        'kiln.shard_index': String(index),
        'kiln.source': `${plan.source.id}#${index}`,
        'kiln.dedup_fingerprint': plan.fingerprint,
      },
    },
    fill: async (emit) => {
      let row = 0;
      for await (const r of readShardRows(storage, src.uri, { batchSize: 256 })) {
        const d = dups.get(row);
        if (d && r.sha256 !== d.sha256)
          throw new Error(`source shard ${src.uri} row ${row} has sha256 ${r.sha256}, the plan says ${d.sha256}`);
        await emit(
          d
            ? {
                ...r,
                status: 'filtered',
                error_message: `duplicate_sha256: same image bytes as row ${d.firstKey} (shard ${d.firstShard})`,
              }
            : r,
        );
        if (++row % 256 === 0) onRows?.(row);
      }
    },
    stats: (base) => ({
      ...base,
      stage: 'dedup',
      source: { datasetId: plan.source.id, uri: src.uri, sha256: src.sha256, rows: src.rows },
      duplicates: dups.size,
    }),
  });
  return outcome(stats, ref, false);
}

/** The manifest of a finished dedup version (parents: the source); fails when a shard is not finished. */
export async function buildDedupManifest(storage: ArtifactStorage, plan: DedupPlan): Promise<DatasetManifest> {
  const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
  const shards: ManifestShard[] = [];
  const counts = Object.fromEntries(ROW_STATUSES.map((s) => [s, 0])) as Record<RowStatus, number>;
  const missing: number[] = [];
  for (const src of plan.source.shards) {
    const done = await findFinishedShard<DedupShardStats>(storage, layout, src.index, {
      verifyHash: false,
      accept: isDedupShardStats,
    });
    if (!done) {
      missing.push(src.index);
      continue;
    }
    shards.push({
      index: src.index,
      path: shardRelativePath(src.index),
      rows: done.stats.rows,
      sha256: done.stats.shard.sha256,
      bytes: done.stats.shard.bytes,
      stats: statsRelativePath(src.index),
    });
    for (const st of ROW_STATUSES) counts[st] += done.stats.countsByStatus[st] ?? 0;
  }
  if (missing.length) {
    throw new KilnError(
      'KILN_SHARDS_NOT_FINISHED',
      `dataset ${layout.id} has ${missing.length} unfinished shard(s): ${missing.slice(0, 10).join(', ')}`,
      'run the dedup again with the same source: finished shards are skipped and the missing ones written.',
    );
  }
  const rows = shards.reduce((n, s) => n + s.rows, 0);
  if (rows !== plan.source.rows) {
    throw new KilnError(
      'KILN_ROW_COUNT_MISMATCH',
      `dataset ${layout.id}: shards hold ${rows} rows but the source ${plan.source.id} has ${plan.source.rows}`,
      'delete the version directory and run the dedup again; this is a bug, please report it.',
    );
  }
  return {
    id: layout.id,
    name: plan.datasetName,
    version: plan.version,
    parents: [plan.source.id],
    schemaVersion: SHARD_SCHEMA_VERSION,
    stage: 'dedup',
    params: {
      fingerprint: plan.fingerprint,
      source: { id: plan.source.id, manifestSha256: plan.source.manifestSha256 },
      duplicateRows: plan.duplicateRows,
      key: 'sha256',
    },
    createdAt: new Date().toISOString(),
    rows,
    countsByStatus: counts,
    shards,
  };
}
