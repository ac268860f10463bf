/**
 * One shard, end to end, as a library function: read input shard i, crawl its rows and commit them
 * as output shard i through the shared shard commit protocol (datasets/shards/stage-shard.ts:
 * Parquet, then the stats JSON that is the shard's commit record). The attempt journal around it
 * decides the image codec. Output paths depend only on (name, version, index).
 */
import { availableParallelism } from 'node:os';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout } from '../shards/layout.js';
import { commitShard, findFinishedShard, type FileRef } from '../shards/stage-shard.js';
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

export { findFinishedShard, type FileRef } from '../shards/stage-shard.js';

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

/** Crawl shard `spec.shardIndex` (or return the finished one). Throws only for shard-level failures. */
export async function crawlShardToParquet(
  storage: ArtifactStorage,
  spec: CrawlShardSpec,
  hooks: CrawlShardHooks = {},
): Promise<CrawlShardOutcome> {
  const layout = new DatasetLayout(storage, spec.datasetName, spec.version);
  const i = spec.shardIndex;
  const inputUri = layout.inputShardUri(i);
  const input = await readInputShard(storage, inputUri);
  const inputRef: FileRef = { uri: inputUri, sha256: input.sha256, bytes: input.bytes };
  const done = await findFinishedShard(storage, layout, i);
  if (done) {
    return {
      shardIndex: i,
      rows: done.stats.rows,
      shard: done.stats.shard,
      stats: done.ref,
      input: inputRef,
      countsByStatus: done.stats.countsByStatus,
      skipped: true,
      codec: done.stats.imageCodec,
    };
  }
  const options = resolveCrawlOptions(spec.options, availableParallelism());
  // The journal tells this attempt how earlier ones ended; its own start is durable before any row.
  const journal = new ShardAttemptJournal(storage, layout, i);
  const decided = decideCodec(await journal.history());
  const codec: CodecDecision =
    spec.codec && spec.codec !== decided.codec
      ? { ...decided, codec: spec.codec, reason: `codec ${spec.codec} forced by the caller` }
      : decided;
  const fetcher = hooks.fetcher ?? new ImageFetcher(options);
  let attempt;
  try {
    attempt = await journal.begin(codec.codec, hooks.attempt);
  } catch (err) {
    if (!hooks.fetcher) await fetcher.close();
    throw err;
  }
  try {
    const { stats, ref } = await commitShard(storage, {
      layout,
      shardIndex: i,
      inputUri,
      expectedRows: input.rows.length,
      writer: {
        columns: { extra: spec.extraColumns },
        rowGroupSize: spec.rowGroupSize,
        metadata: { 'kiln.dataset': layout.id, 'kiln.shard_index': String(i) },
      },
      fill: (emit, rowsWritten) =>
        crawlRows({
          rows: input.rows,
          options,
          fetcher,
          signal: hooks.signal,
          seenContent: hooks.seenContent,
          codec: codec.codec,
          emit: async (row, timing) => {
            await emit(row, timing);
            hooks.onProgress?.(rowsWritten(), input.rows.length);
          },
        }),
      stats: (base) => ({ ...base, imageCodec: codec }),
    });
    await journal.end(attempt, 'finished').catch(() => undefined); // the shard is finished either way
    return {
      shardIndex: i,
      rows: stats.rows,
      shard: stats.shard,
      stats: ref,
      input: inputRef,
      countsByStatus: stats.countsByStatus,
      skipped: false,
      codec,
    };
  } catch (err) {
    await journal.end(attempt, 'threw', String(err)).catch(() => undefined);
    throw err;
  } finally {
    if (!hooks.fetcher) await fetcher.close();
  }
}
