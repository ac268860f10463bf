/**
 * One shard, end to end, as a library function: read input shard i, crawl its rows, stream them to
 * the Parquet writer, commit the shard (temp + fsync + rename), then commit its stats JSON. The
 * stats file is the shard's commit record: it names the Parquet file's sha256, so a shard counts
 * as finished only when both exist and agree. Output paths depend only on (name, version, index).
 */
import { availableParallelism } from 'node:os';
import type { ArtifactStorage } from '../../infra/storage.js';
import { sha256Hex } from '../../infra/hash.js';
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import { DatasetLayout } from '../shards/layout.js';
import { ShardWriter } from '../shards/writer.js';
import { ShardStatsCollector, type ShardStats } from '../shards/stats.js';
import type { RowStatus } from '../shards/schema.js';
import { readInputShard } from '../input/input-shards.js';
import { resolveCrawlOptions, type CrawlOptions } from './options.js';
import { ImageFetcher } from './fetcher.js';
import { crawlRows } from './crawl-rows.js';
import type { ImageCodec } from './image.js';
import { ShardAttemptJournal, decideCodec, type CodecDecision } from './attempts.js';

export interface CrawlShardSpec {
  datasetName: string;
  version: number;
  shardIndex: number;
  options?: Partial<CrawlOptions>;
  /** Extra input columns to write (from the plan). */
  extraColumns: string[];
  /** Rows per Parquet row group (default 1024). */
  rowGroupSize?: number;
  /** Force a codec; default: decided from the shard's attempt journal (sharp after 2 dead attempts, see attempts.ts). */
  codec?: ImageCodec;
}

export interface CrawlShardHooks {
  /** Called after each row is handed to the writer. May throw to abort the shard. */
  onProgress?: (rowsDone: number, rowsTotal: number) => void;
  signal?: AbortSignal;
  /** Reuse a fetcher (keep-alive connections) across shards; closed by the caller. */
  fetcher?: ImageFetcher;
  /** Incremental curation: the earlier dataset version holding these image bytes, if any. */
  seenContent?: (sha256: string) => string | undefined;
  /** Temporal's attempt number, recorded in the attempt journal. */
  attempt?: number;
}

export interface FileRef {
  uri: string;
  sha256: string;
  bytes: number;
}

export interface CrawlShardOutcome {
  shardIndex: number;
  rows: number;
  shard: FileRef;
  stats: FileRef;
  input: FileRef;
  countsByStatus: Record<RowStatus, number>;
  /** True when the shard was already finished and nothing was crawled. */
  skipped: boolean;
  /** The codec this attempt crawled with and why (for a skipped shard: what its stats recorded, if anything). */
  codec?: CodecDecision;
}

/** The shard's stats when shard `i` is finished (stats present, Parquet present with the recorded hash). */
export async function findFinishedShard(storage: ArtifactStorage, layout: DatasetLayout, i: number, verifyHash = true): Promise<{ stats: ShardStats; statsRef: FileRef } | undefined> {
  const statsUri = layout.statsUri(i);
  if (!(await storage.exists(statsUri))) return undefined;
  const text = await storage.readText(statsUri);
  let stats: ShardStats;
  try {
    stats = JSON.parse(text) as ShardStats;
  } catch {
    return undefined;
  }
  const size = await storage.size(layout.shardUri(i));
  if (size === null || size !== stats.shard?.bytes) return undefined;
  if (verifyHash && (await storage.sha256(layout.shardUri(i))) !== stats.shard.sha256) return undefined;
  return { stats, statsRef: { uri: statsUri, sha256: sha256Hex(text), bytes: Buffer.byteLength(text) } };
}

/** Crawl shard `spec.shardIndex` (or return the finished one). Throws only for shard-level failures. */
export async function crawlShardToParquet(storage: ArtifactStorage, spec: CrawlShardSpec, hooks: CrawlShardHooks = {}): Promise<CrawlShardOutcome> {
  const layout = new DatasetLayout(storage, spec.datasetName, spec.version);
  const i = spec.shardIndex;
  const inputUri = layout.inputShardUri(i);
  const input = await readInputShard(storage, inputUri);
  const inputRef: FileRef = { uri: inputUri, sha256: input.sha256, bytes: input.bytes };
  const done = await findFinishedShard(storage, layout, i);
  if (done) {
    return {
      shardIndex: i, rows: done.stats.rows, shard: done.stats.shard, stats: done.statsRef, input: inputRef,
      countsByStatus: done.stats.countsByStatus, skipped: true, codec: done.stats.imageCodec,
    };
  }
  const options = resolveCrawlOptions(spec.options, availableParallelism());
  // The journal tells this attempt how earlier ones ended; its own start is durable before any row.
  const journal = new ShardAttemptJournal(storage, layout, i);
  const decided = decideCodec(await journal.history());
  const codec: CodecDecision = spec.codec && spec.codec !== decided.codec ? { ...decided, codec: spec.codec, reason: `codec ${spec.codec} forced by the caller` } : decided;
  const fetcher = hooks.fetcher ?? new ImageFetcher(options);
  const collector = new ShardStatsCollector();
  const writer = await ShardWriter.open(storage, layout.shardUri(i), {
    columns: { extra: spec.extraColumns }, rowGroupSize: spec.rowGroupSize,
    metadata: { 'kiln.dataset': layout.id, 'kiln.shard_index': String(i) },
  });
  let attempt;
  try {
    attempt = await journal.begin(codec.codec, hooks.attempt);
  } catch (err) {
    await writer.abort();
    if (!hooks.fetcher) await fetcher.close();
    throw err;
  }
  try {
    await crawlRows({
      rows: input.rows, options, fetcher, signal: hooks.signal, seenContent: hooks.seenContent, codec: codec.codec,
      emit: async (row, timing) => {
        collector.addRow(row, timing);
        const t = performance.now();
        await writer.append(row);
        collector.addWriteTime(performance.now() - t);
        hooks.onProgress?.(writer.rows, input.rows.length);
      },
    });
    if (writer.rows !== input.rows.length) throw new Error(`shard ${i}: wrote ${writer.rows} rows for ${input.rows.length} input rows`);
    const t = performance.now();
    const shard = await writer.commit();
    collector.addWriteTime(performance.now() - t);
    const stats = collector.finish({ schemaVersion: SHARD_SCHEMA_VERSION, shardIndex: i, inputUri, shard: { uri: shard.uri, sha256: shard.sha256, bytes: shard.bytes }, imageCodec: codec });
    const statsRef = await storage.writeAtomic(layout.statsUri(i), `${JSON.stringify(stats, null, 2)}\n`);
    await journal.end(attempt, 'finished').catch(() => undefined); // the shard is finished either way
    return { shardIndex: i, rows: shard.rows, shard: stats.shard, stats: statsRef, input: inputRef, countsByStatus: stats.countsByStatus, skipped: false, codec };
  } catch (err) {
    await writer.abort();
    await journal.end(attempt, 'threw', String(err)).catch(() => undefined);
    throw err;
  } finally {
    if (!hooks.fetcher) await fetcher.close();
  }
}
