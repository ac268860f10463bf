/**
 * Input shards: a URL list split into JSONL files of N rows, each row with its stable key. Written
 * once by the crawl plan, read by each shard's crawl. Duplicate URLs within a run are marked with
 * the key of their first occurrence, so they are fetched once and still appear in the output.
 */
import { createHash } from 'node:crypto';
import type { ArtifactStorage } from '../../infra/storage.js';
import { sha256Hex } from '../../infra/hash.js';
import { ConfigError } from '../../infra/errors.js';
import { isReservedColumn, rowKey } from '../shards/schema.js';
import type { DatasetLayout } from '../shards/layout.js';
import { detectFormat, readUrlList, type UrlListSource } from './url-list.js';

export interface InputShardRow {
  key: string;
  url: string;
  caption: string | null;
  extra: Record<string, string | null>;
  /** Key of the first row with the same URL in this run (this row is not fetched again). */
  duplicateOf?: string;
  /** Incremental curation: the dataset version that already holds this URL (not fetched again). */
  seenIn?: string;
}

export interface SplitOptions {
  sources: UrlListSource[];
  /** Column holding the URL (default "url"). */
  urlColumn?: string;
  /** Column holding the caption (default "caption"; null: no captions). */
  captionColumn?: string | null;
  /** Extra columns to carry through: a list, or "all" (every other column; the default). */
  extraColumns?: string[] | 'all';
  /** Rows per input shard (default 10,000). */
  rowsPerShard?: number;
  /** Mark repeated URLs as duplicates of their first occurrence (default true). */
  dedupUrls?: boolean;
  /** Incremental curation: the earlier dataset version holding this URL, if any. */
  seenUrl?: (url: string) => string | undefined;
  /** Rows read so far: after every shard written and every PROGRESS_EVERY_ROWS rows (for heartbeats). */
  onProgress?: (rowsDone: number) => void;
}

/** How often (in rows) splitting reports progress besides after each shard. */
export const PROGRESS_EVERY_ROWS = 5_000;

export interface SplitResult {
  shardCount: number;
  rows: number;
  duplicates: number;
  rowsPerShard: number;
  /** Extra columns carried, in order. */
  extraColumns: string[];
}

export const DEFAULT_ROWS_PER_SHARD = 10_000;

/** 96-bit URL digest: the dedup set holds these instead of whole URLs (about 60 bytes per URL). */
const urlDigest = (url: string) => createHash('sha256').update(url).digest().subarray(0, 12).toString('base64');

/** Split URL lists into input shards under `layout.inputDirUri` (each written atomically). */
export async function splitIntoInputShards(
  storage: ArtifactStorage,
  layout: DatasetLayout,
  opts: SplitOptions,
): Promise<SplitResult> {
  const urlColumn = opts.urlColumn ?? 'url';
  const captionColumn = opts.captionColumn === undefined ? 'caption' : opts.captionColumn;
  const rowsPerShard = opts.rowsPerShard ?? DEFAULT_ROWS_PER_SHARD;
  if (!Number.isInteger(rowsPerShard) || rowsPerShard < 1)
    throw new ConfigError(
      `rowsPerShard must be a positive integer, got ${rowsPerShard}`,
      'pass e.g. rowsPerShard: 10000.',
    );
  const explicitExtra = opts.extraColumns === 'all' || opts.extraColumns === undefined ? undefined : opts.extraColumns;
  for (const c of explicitExtra ?? []) {
    if (isReservedColumn(c))
      throw new ConfigError(
        `extra column ${JSON.stringify(c)} clashes with a shard column`,
        'rename the column in the URL list or leave it out of extraColumns.',
      );
  }
  const extraSeen = new Set<string>(explicitExtra ?? []);
  const firstOrdinal = new Map<string, number>();
  let ordinal = 0;
  let duplicates = 0;
  let lines: string[] = [];
  let shardCount = 0;

  const flush = async () => {
    if (lines.length === 0) return;
    await storage.writeAtomic(layout.inputShardUri(shardCount), `${lines.join('\n')}\n`);
    shardCount++;
    lines = [];
  };

  for (const source of opts.sources) {
    const { path } = detectFormat(source);
    let checked = false;
    for await (const rec of readUrlList(source)) {
      if (!checked) {
        checked = true;
        const cols = Object.keys(rec);
        if (!(urlColumn in rec))
          throw new ConfigError(
            `URL list ${path} has no column ${JSON.stringify(urlColumn)} (columns: ${cols.join(', ')})`,
            'set urlColumn to the column holding the image URLs.',
          );
        if (captionColumn !== null && opts.captionColumn !== undefined && !(captionColumn in rec)) {
          throw new ConfigError(
            `URL list ${path} has no column ${JSON.stringify(captionColumn)} (columns: ${cols.join(', ')})`,
            'set captionColumn to the caption column, or null for none.',
          );
        }
      }
      const shardIndex = Math.floor(ordinal / rowsPerShard);
      const key = rowKey(shardIndex, ordinal % rowsPerShard, rowsPerShard);
      const url = (rec[urlColumn] ?? '').trim();
      const extra: Record<string, string | null> = {};
      if (explicitExtra) {
        for (const c of explicitExtra) extra[c] = rec[c] ?? null;
      } else {
        for (const [c, v] of Object.entries(rec)) {
          if (c === urlColumn || c === captionColumn) continue;
          if (isReservedColumn(c)) {
            throw new ConfigError(
              `URL list ${path} column ${JSON.stringify(c)} clashes with a shard column`,
              'pass extraColumns explicitly (without it), or rename the column.',
            );
          }
          extra[c] = v;
          extraSeen.add(c);
        }
      }
      const row: InputShardRow = {
        key,
        url,
        caption: captionColumn === null ? null : (rec[captionColumn] ?? null),
        extra,
      };
      if (opts.dedupUrls !== false && url.length > 0) {
        const d = urlDigest(url);
        const first = firstOrdinal.get(d);
        if (first === undefined) firstOrdinal.set(d, ordinal);
        else {
          row.duplicateOf = rowKey(Math.floor(first / rowsPerShard), first % rowsPerShard, rowsPerShard);
          duplicates++;
        }
      }
      if (row.duplicateOf === undefined && url.length > 0 && opts.seenUrl) {
        const seenIn = opts.seenUrl(url);
        if (seenIn !== undefined) row.seenIn = seenIn;
      }
      lines.push(JSON.stringify(row));
      ordinal++;
      if (lines.length === rowsPerShard) {
        await flush();
        opts.onProgress?.(ordinal);
      } else if (ordinal % PROGRESS_EVERY_ROWS === 0) opts.onProgress?.(ordinal);
    }
  }
  await flush();
  return { shardCount, rows: ordinal, duplicates, rowsPerShard, extraColumns: [...extraSeen] };
}

/** Read one input shard and the sha256 of its bytes. */
export async function readInputShard(
  storage: ArtifactStorage,
  uri: string,
): Promise<{ rows: InputShardRow[]; sha256: string; bytes: number }> {
  const buf = await storage.read(uri);
  const rows = buf
    .toString('utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as InputShardRow);
  return { rows, sha256: sha256Hex(buf), bytes: buf.byteLength };
}
