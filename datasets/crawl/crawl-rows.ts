/**
 * The per-row pipeline of a shard: download (p-queue, `concurrency` in flight) -> sha256 of the
 * original bytes -> decode/resize (a second queue, `decodeConcurrency` at once, so CPU work never
 * piles up) -> one ShardRow per input row, emitted in completion order. Every input row yields
 * exactly one output row: a success, or a failure with its reason.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import PQueue from 'p-queue';
import type { ShardRow } from '../shards/schema.js';
import type { InputShardRow } from '../input/input-shards.js';
import type { CrawlOptions } from './options.js';
import { errorMessage, statusOfReason, type RowFailure } from './failures.js';
import type { ImageFetcher } from './fetcher.js';
import { processImage, type ImageCodec } from './image.js';

export interface RowTiming {
  downloadedBytes: number;
  downloadMs: number;
  decodeMs: number;
  /** Attempts beyond the first. */
  retries: number;
}

export interface CrawlRowsParams {
  rows: readonly InputShardRow[];
  options: CrawlOptions;
  fetcher: ImageFetcher;
  /** Receives each output row; calls are serialised (never concurrent), in completion order. */
  emit: (row: ShardRow, timing: RowTiming) => Promise<void> | void;
  signal?: AbortSignal;
  /** Incremental curation: the earlier dataset version holding these exact image bytes, if any. */
  seenContent?: (sha256: string) => string | undefined;
  /** `sharp`: the native JPEG path is off for these rows (a shard whose attempts died, see attempts.ts). Default `auto`. */
  codec?: ImageCodec;
}

/** An output row for a failed input row. */
export function failedRow(
  input: InputShardRow,
  f: RowFailure,
  dims?: { originalWidth?: number; originalHeight?: number },
): ShardRow {
  return {
    key: input.key,
    url: input.url,
    caption: input.caption,
    status: statusOfReason(f.reason),
    error_message: errorMessage(f),
    width: null,
    height: null,
    original_width: dims?.originalWidth ?? null,
    original_height: dims?.originalHeight ?? null,
    sha256: null,
    jpg: null,
    extra: input.extra,
  };
}

const NO_TIMING: RowTiming = { downloadedBytes: 0, downloadMs: 0, decodeMs: 0, retries: 0 };

/** Crawl `rows`, emitting one ShardRow per input row. Rejects only on abort or an emit error. */
export async function crawlRows(p: CrawlRowsParams): Promise<void> {
  const { options, fetcher, signal } = p;
  // Every in-flight download listens on the shard's cancellation signal: raise the warning bound to match.
  if (signal) setMaxListeners(options.concurrency + 16, signal);
  const downloads = new PQueue({ concurrency: options.concurrency });
  const decodes = new PQueue({ concurrency: options.decodeConcurrency });
  let emitting: Promise<void> = Promise.resolve();
  const emit = (row: ShardRow, t: RowTiming): Promise<void> => {
    emitting = emitting.then(() => p.emit(row, t));
    return emitting;
  };

  const handle = async (input: InputShardRow): Promise<void> => {
    signal?.throwIfAborted();
    if (input.duplicateOf !== undefined) {
      return emit(
        failedRow(input, { reason: 'duplicate_url', detail: `same URL as key ${input.duplicateOf}` }),
        NO_TIMING,
      );
    }
    if (input.seenIn !== undefined) {
      return emit(
        failedRow(input, { reason: 'seen_before', detail: `URL already crawled in ${input.seenIn}` }),
        NO_TIMING,
      );
    }
    if (input.url.length === 0)
      return emit(failedRow(input, { reason: 'invalid_url', detail: 'empty URL' }), NO_TIMING);
    const t0 = performance.now();
    const fetched = await fetcher.fetch(input.url, signal);
    const downloadMs = performance.now() - t0;
    const retries = fetched.attempts - 1;
    if (!fetched.ok) return emit(failedRow(input, fetched.failure), { ...NO_TIMING, downloadMs, retries });
    const original = fetched.bytes;
    const sha256 = createHash('sha256').update(original).digest('hex');
    const seenContentIn = p.seenContent?.(sha256);
    if (seenContentIn !== undefined) {
      return emit(
        {
          ...failedRow(input, { reason: 'duplicate_content', detail: `same image bytes already in ${seenContentIn}` }),
          sha256,
        },
        { ...NO_TIMING, downloadedBytes: original.length, downloadMs, retries },
      );
    }
    const t1 = performance.now();
    const out = await decodes.add(() => processImage(original, options, p.codec ?? 'auto'));
    const timing = { downloadedBytes: original.length, downloadMs, decodeMs: performance.now() - t1, retries };
    if (!out.ok) return emit({ ...failedRow(input, out.failure, out), sha256 }, timing);
    const img = out.image;
    return emit(
      {
        key: input.key,
        url: input.url,
        caption: input.caption,
        status: 'success',
        error_message: null,
        width: img.width,
        height: img.height,
        original_width: img.originalWidth,
        original_height: img.originalHeight,
        sha256,
        jpg: img.data,
        extra: input.extra,
      },
      timing,
    );
  };

  const abort = () => {
    downloads.clear();
    decodes.clear();
  };
  signal?.addEventListener('abort', abort, { once: true });
  try {
    await Promise.all(p.rows.map((row) => downloads.add(() => handle(row))));
  } catch (err) {
    abort();
    await downloads.onIdle().catch(() => undefined);
    throw err;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}
