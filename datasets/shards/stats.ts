/**
 * Per-shard statistics (`*.stats.json`): counts by status and by error reason, bytes, durations.
 * Error reasons are tallied with bounded memory (img2dataset's CappedCounter idea): at most
 * `maxKeys` distinct reasons are kept, the rest are summed under OTHER_REASONS.
 */
import { ROW_STATUSES, type RowStatus, type ShardRow } from './schema.js';

export const OTHER_REASONS = '__other__';

/** Counts by key with at most `maxKeys` distinct keys; later new keys go to OTHER_REASONS. */
export class CappedCounter {
  private readonly counts = new Map<string, number>();
  constructor(private readonly maxKeys = 100) {
    if (!Number.isInteger(maxKeys) || maxKeys < 1)
      throw new RangeError(`maxKeys must be a positive integer, got ${maxKeys}`);
  }
  add(key: string, n = 1): void {
    const k = this.counts.has(key) || this.counts.size < this.maxKeys ? key : OTHER_REASONS;
    this.counts.set(k, (this.counts.get(k) ?? 0) + n);
  }
  /** Sorted by count, descending, then by key. */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
  }
}

export interface ShardStats {
  schemaVersion: number;
  shardIndex: number;
  /** Input shard this output came from. */
  inputUri: string;
  /** The Parquet shard this describes, with its hash (the stats file is the shard's commit record). */
  shard: { uri: string; sha256: string; bytes: number };
  rows: number;
  countsByStatus: Record<RowStatus, number>;
  /** Reason code (the part of error_message before ':') -> count. */
  countsByReason: Record<string, number>;
  bytes: {
    /** Original bytes downloaded for successful rows. */
    downloaded: number;
    /** Stored image bytes (the `jpg` column). */
    stored: number;
  };
  durations: {
    /** Wall time of the whole shard, ms. */
    totalMs: number;
    /** Sums over rows, ms (concurrent, so they can exceed totalMs). */
    downloadMs: number;
    decodeMs: number;
    /** Time spent waiting for the Parquet writer, ms. */
    writeMs: number;
  };
  /** Download attempts beyond the first, summed over rows. */
  retries: number;
  startedAt: string;
  finishedAt: string;
  /**
   * The image codec the shard was crawled with (crawl shards written since the attempt journal):
   * `auto` (native JPEG path where built) or `sharp` (native path off: earlier attempts died), with
   * the count of dead earlier attempts and the reason.
   */
  imageCodec?: { codec: 'auto' | 'sharp'; diedAttempts: number; reason: string };
}

/** The stable reason code of an error_message (`http_404: Not Found` -> `http_404`). */
export function errorReason(errorMessage: string | null): string | null {
  if (errorMessage === null) return null;
  const i = errorMessage.indexOf(':');
  return (i < 0 ? errorMessage : errorMessage.slice(0, i)).trim();
}

/** Accumulates ShardStats while rows are produced. */
export class ShardStatsCollector {
  private readonly startedAtMs = Date.now();
  private readonly byStatus = Object.fromEntries(ROW_STATUSES.map((s) => [s, 0])) as Record<RowStatus, number>;
  private readonly byReason: CappedCounter;
  private rows = 0;
  private downloaded = 0;
  private stored = 0;
  private downloadMs = 0;
  private decodeMs = 0;
  private writeMs = 0;
  private retries = 0;

  constructor(maxReasons = 100) {
    this.byReason = new CappedCounter(maxReasons);
  }

  addRow(
    row: ShardRow,
    t: { downloadedBytes?: number; downloadMs?: number; decodeMs?: number; retries?: number } = {},
  ): void {
    this.rows++;
    this.byStatus[row.status] = (this.byStatus[row.status] ?? 0) + 1;
    const reason = errorReason(row.error_message);
    if (reason !== null) this.byReason.add(reason);
    this.stored += row.jpg?.byteLength ?? 0;
    this.downloaded += t.downloadedBytes ?? 0;
    this.downloadMs += t.downloadMs ?? 0;
    this.decodeMs += t.decodeMs ?? 0;
    this.retries += t.retries ?? 0;
  }

  addWriteTime(ms: number): void {
    this.writeMs += ms;
  }

  finish(f: {
    schemaVersion: number;
    shardIndex: number;
    inputUri: string;
    shard: ShardStats['shard'];
    imageCodec?: ShardStats['imageCodec'];
  }): ShardStats {
    const round = (x: number) => Math.round(x * 10) / 10;
    return {
      schemaVersion: f.schemaVersion,
      shardIndex: f.shardIndex,
      inputUri: f.inputUri,
      shard: f.shard,
      rows: this.rows,
      countsByStatus: { ...this.byStatus },
      countsByReason: this.byReason.toJSON(),
      bytes: { downloaded: this.downloaded, stored: this.stored },
      durations: {
        totalMs: Date.now() - this.startedAtMs,
        downloadMs: round(this.downloadMs),
        decodeMs: round(this.decodeMs),
        writeMs: round(this.writeMs),
      },
      retries: this.retries,
      startedAt: new Date(this.startedAtMs).toISOString(),
      finishedAt: new Date().toISOString(),
      ...(f.imageCodec ? { imageCodec: f.imageCodec } : {}),
    };
  }
}
