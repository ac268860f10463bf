/**
 * The shard commit protocol every sharded stage uses (crawl, filter, dedup): output shard i of a
 * dataset version is written through ShardWriter (temp file, fsync, rename), then its stats JSON,
 * which names the Parquet file's sha256 and is the shard's commit record. A shard counts as finished
 * only when both exist and agree; a finished shard is returned as is, so a retried or duplicated
 * shard activity never writes a second copy of a row. Output paths depend only on
 * (dataset name, version, shard index).
 */
import { sha256Hex } from '../../infra/hash.js';
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import type { DatasetLayout } from './layout.js';
import type { ShardRow } from './schema.js';
import { ShardStatsCollector, type ShardStats } from './stats.js';
import { ShardWriter, type ShardWriterOptions } from './writer.js';

/** A written artifact: where, its sha256 and its size. */
export interface FileRef {
  uri: string;
  sha256: string;
  bytes: number;
}

/**
 * Shard `i`'s stats when it is finished: stats present (and accepted by `accept`, e.g. written by
 * this stage), Parquet present with the recorded size and, with `verifyHash`, the recorded sha256.
 */
export async function findFinishedShard<S extends ShardStats = ShardStats>(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  i: number,
  opts: { verifyHash?: boolean; accept?: (stats: S) => boolean } = {},
): Promise<{ stats: S; ref: FileRef } | undefined> {
  const statsUri = layout.statsUri(i);
  if (!(await storage.exists(statsUri))) return undefined;
  const text = await storage.readText(statsUri);
  let stats: S;
  try {
    stats = JSON.parse(text) as S;
  } catch {
    return undefined;
  }
  if (opts.accept && !opts.accept(stats)) return undefined;
  const size = await storage.size(layout.shardUri(i));
  if (size === null || size !== stats.shard?.bytes) return undefined;
  if ((opts.verifyHash ?? true) && (await storage.sha256(layout.shardUri(i))) !== stats.shard.sha256) return undefined;
  return { stats, ref: { uri: statsUri, sha256: sha256Hex(text), bytes: Buffer.byteLength(text) } };
}

/** Indices in [from, to) whose shard is not finished (cheap: stats + Parquet size, no hashing). */
export async function pendingShards<S extends ShardStats>(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  from: number,
  to: number,
  accept?: (stats: S) => boolean,
): Promise<number[]> {
  const pending: number[] = [];
  for (let i = from; i < to; i++)
    if (!(await findFinishedShard<S>(storage, layout, i, { verifyHash: false, accept }))) pending.push(i);
  return pending;
}

/** Hands rows to the shard writer and the stats collector (timings feed the stats' durations). */
export type EmitRow = (row: ShardRow, timing?: Parameters<ShardStatsCollector['addRow']>[1]) => Promise<void>;

export interface CommitShardSpec<S extends ShardStats> {
  layout: DatasetLayout;
  shardIndex: number;
  /** What the shard was made from (recorded in its stats). */
  inputUri: string;
  writer: ShardWriterOptions;
  /** Stream every row of the shard through `emit`, in order. */
  fill: (emit: EmitRow, rowsWritten: () => number) => Promise<void>;
  /** Rows the shard must hold, when known up front (a shard never silently drops a row). */
  expectedRows?: number;
  /** The stats file's content, from the collected base stats (add the stage's own fields). */
  stats: (base: ShardStats) => S;
}

/** Write output shard `spec.shardIndex`: open, stream, commit, write its stats; abort on any error (nothing partial is visible). */
export async function commitShard<S extends ShardStats>(
  storage: ArtifactStorage,
  spec: CommitShardSpec<S>,
): Promise<{ stats: S; ref: FileRef }> {
  const i = spec.shardIndex;
  const collector = new ShardStatsCollector();
  const writer = await ShardWriter.open(storage, spec.layout.shardUri(i), spec.writer);
  try {
    await spec.fill(
      async (row, timing) => {
        collector.addRow(row, timing);
        const t = performance.now();
        await writer.append(row);
        collector.addWriteTime(performance.now() - t);
      },
      () => writer.rows,
    );
    if (spec.expectedRows !== undefined && writer.rows !== spec.expectedRows)
      throw new Error(`shard ${i}: wrote ${writer.rows} rows for ${spec.expectedRows} input rows`);
    const t = performance.now();
    const shard = await writer.commit();
    collector.addWriteTime(performance.now() - t);
    const stats = spec.stats(
      collector.finish({
        schemaVersion: SHARD_SCHEMA_VERSION,
        shardIndex: i,
        inputUri: spec.inputUri,
        shard: { uri: shard.uri, sha256: shard.sha256, bytes: shard.bytes },
      }),
    );
    const w = await storage.writeAtomic(spec.layout.statsUri(i), `${JSON.stringify(stats, null, 2)}\n`);
    return { stats, ref: { uri: w.uri, sha256: w.sha256, bytes: w.bytes } };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}
