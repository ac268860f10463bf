/**
 * Reading shards back: whole-file (`readShardTable`), streamed record batches (`readShardBatches`,
 * constant memory per batch) and typed rows (`readShardRows`). Uses parquet-wasm for decoding and
 * apache-arrow for the in-memory tables.
 */
import { tableFromIPC, type Table } from 'apache-arrow';
import * as parquet from 'parquet-wasm';
import type { ArtifactStorage } from '../../infra/storage.js';
import { BASE_COLUMNS, SCHEMA_VERSION_METADATA_KEY, STAGE_COLUMNS, type RowStatus, type ShardRow } from './schema.js';

export interface ShardReadOptions {
  /** Only these columns (default: all). */
  columns?: string[];
  /** Rows per streamed batch (default 1024). */
  batchSize?: number;
}

export interface ShardInfo {
  rows: number;
  rowGroups: number;
  /** Schema version from the file's key-value metadata (null when absent). */
  schemaVersion: number | null;
  columns: string[];
}

async function openShard(storage: ArtifactStorage, uri: string): Promise<parquet.ParquetFile> {
  return parquet.ParquetFile.fromFile(await storage.blob(uri));
}

/** Row count, row groups, schema version and column names, from the footer only. */
export async function readShardInfo(storage: ArtifactStorage, uri: string): Promise<ShardInfo> {
  const file = await openShard(storage, uri);
  try {
    const meta = file.metadata();
    const fileMeta = meta.fileMetadata();
    const kv = fileMeta.keyValueMetadata() as Map<string, string>;
    const v = kv.get(SCHEMA_VERSION_METADATA_KEY);
    const schema = tableFromIPC(file.schema().intoIPCStream()).schema;
    return {
      rows: fileMeta.numRows(),
      rowGroups: meta.numRowGroups(),
      schemaVersion: v === undefined ? null : Number(v),
      columns: schema.fields.map((f) => f.name),
    };
  } finally {
    file.free();
  }
}

/** The whole shard (or some of its columns) as one Arrow table. */
export async function readShardTable(
  storage: ArtifactStorage,
  uri: string,
  opts: ShardReadOptions = {},
): Promise<Table> {
  if (!opts.columns) return tableFromIPC(parquet.readParquet(await storage.read(uri)).intoIPCStream());
  // readParquet ignores `columns` in parquet-wasm 0.8; the async file reader honours it.
  const file = await openShard(storage, uri);
  try {
    return tableFromIPC((await file.read({ columns: opts.columns })).intoIPCStream());
  } finally {
    file.free();
  }
}

/** Stream the shard as Arrow tables of up to `batchSize` rows, reading the file lazily. */
export async function* readShardBatches(
  storage: ArtifactStorage,
  uri: string,
  opts: ShardReadOptions = {},
): AsyncGenerator<Table> {
  const file = await openShard(storage, uri);
  try {
    const stream = await file.stream({
      batchSize: opts.batchSize ?? 1024,
      ...(opts.columns ? { columns: opts.columns } : {}),
    });
    for await (const batch of stream as unknown as AsyncIterable<parquet.RecordBatch>) {
      yield tableFromIPC(batch.intoIPCStream());
    }
  } finally {
    file.free();
  }
}

const KNOWN_COLUMNS = [...BASE_COLUMNS, ...STAGE_COLUMNS] as const;
const KNOWN = new Set<string>(KNOWN_COLUMNS);

/** Typed rows of an Arrow shard table (missing columns read as null). */
export function* shardTableRows(table: Table): Generator<ShardRow> {
  const col = (name: string) => table.getChild(name);
  const cols = Object.fromEntries(KNOWN_COLUMNS.map((n) => [n, col(n)])) as Record<
    (typeof KNOWN_COLUMNS)[number],
    ReturnType<typeof col>
  >;
  const list = <T>(v: unknown): T[] | null => (v === null || v === undefined ? null : ([...(v as Iterable<T>)] as T[]));
  const extras = table.schema.fields.map((f) => f.name).filter((n) => !KNOWN.has(n));
  const extraCols = extras.map((n) => [n, col(n)] as const);
  for (let i = 0; i < table.numRows; i++) {
    const row: ShardRow = {
      key: cols.key?.get(i) as string,
      url: cols.url?.get(i) as string,
      caption: (cols.caption?.get(i) as string | null | undefined) ?? null,
      status: cols.status?.get(i) as RowStatus,
      error_message: (cols.error_message?.get(i) as string | null | undefined) ?? null,
      width: (cols.width?.get(i) as number | null | undefined) ?? null,
      height: (cols.height?.get(i) as number | null | undefined) ?? null,
      original_width: (cols.original_width?.get(i) as number | null | undefined) ?? null,
      original_height: (cols.original_height?.get(i) as number | null | undefined) ?? null,
      sha256: (cols.sha256?.get(i) as string | null | undefined) ?? null,
      jpg: (cols.jpg?.get(i) as Uint8Array | null | undefined) ?? null,
    };
    if (cols.clip_score) row.clip_score = (cols.clip_score.get(i) as number | null) ?? null;
    if (cols.caption_generated) row.caption_generated = (cols.caption_generated.get(i) as string | null) ?? null;
    if (cols.caption_candidates) row.caption_candidates = list<string>(cols.caption_candidates.get(i));
    if (cols.caption_candidate_scores)
      row.caption_candidate_scores = list<number>(cols.caption_candidate_scores.get(i));
    if (extraCols.length)
      row.extra = Object.fromEntries(extraCols.map(([n, c]) => [n, (c?.get(i) as string | null | undefined) ?? null]));
    yield row;
  }
}

/** Stream typed rows of a shard. */
export async function* readShardRows(
  storage: ArtifactStorage,
  uri: string,
  opts: ShardReadOptions = {},
): AsyncGenerator<ShardRow> {
  for await (const table of readShardBatches(storage, uri, opts)) yield* shardTableRows(table);
}
