/**
 * Planning a crawl: pick the dataset version, split the URL lists into input shards and write
 * `plan.json` (the plan's commit record, written last). A plan is identified by a fingerprint of
 * its inputs (file hashes), columns, shard size and the options that change shard content, so a
 * rerun with the same inputs resumes the unfinished version (finished shards are skipped) instead
 * of starting a new one.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { sweepTempFiles, type ArtifactStorage } from '../../infra/storage.js';
import { sha256Hex } from '../../infra/hash.js';
import { ConfigError } from '../../infra/errors.js';
import { DatasetLayout } from '../shards/layout.js';
import { chooseVersion, readVersionPlan } from '../shards/version-claim.js';
import { detectFormat, type UrlListFormat, type UrlListSource } from '../input/url-list.js';
import { DEFAULT_ROWS_PER_SHARD, splitIntoInputShards } from '../input/input-shards.js';
import { THROUGHPUT_OPTIONS, resolveCrawlOptions, type CrawlOptions } from './options.js';

export interface CrawlPlanSpec {
  datasetName: string;
  /** Explicit version (resume or create exactly this one); default: resume a matching unfinished version, else the next one. */
  version?: number;
  sources: UrlListSource[];
  urlColumn?: string;
  captionColumn?: string | null;
  extraColumns?: string[] | 'all';
  rowsPerShard?: number;
  dedupUrls?: boolean;
  options?: Partial<CrawlOptions>;
  /**
   * Incremental curation: skip URLs (and, at crawl time, image bytes) that earlier dataset versions
   * already hold, as of the seen-index position `seenAsOf` (part of the plan's identity).
   */
  incremental?: { seenAsOf: number; seenUrl: (url: string) => string | undefined };
}

export interface CrawlPlan {
  datasetName: string;
  version: number;
  datasetId: string;
  fingerprint: string;
  shardCount: number;
  rows: number;
  duplicates: number;
  rowsPerShard: number;
  extraColumns: string[];
  /** The option overrides as given (each worker resolves defaults itself). */
  options: Partial<CrawlOptions>;
  sources: { path: string; format: UrlListFormat; gzip: boolean; sha256: string; bytes: number }[];
  /** Incremental curation: seen-index position the plan was made against (null: not incremental). */
  seenAsOf?: number | null;
  createdAt: string;
}

export interface PlanOutcome {
  plan: CrawlPlan;
  /** True when an existing plan was reused (an incremental rerun). */
  resumed: boolean;
}

/**
 * Planning progress, reported often enough for a short activity heartbeat timeout: every
 * {@link HASH_PROGRESS_BYTES} bytes while hashing the inputs, every few thousand rows while splitting
 * (`splitIntoInputShards`). `bytesHashed` and `rows` are totals so far.
 */
export interface PlanProgress {
  phase: 'hash' | 'split';
  bytesHashed: number;
  rows: number;
}

export const HASH_PROGRESS_BYTES = 8 * 1024 * 1024;

/** sha256 of a file, streamed; `onBytes(total)` after every HASH_PROGRESS_BYTES read. */
async function sha256FileWithProgress(path: string, onBytes: (bytes: number) => void): Promise<string> {
  const h = createHash('sha256');
  let bytes = 0;
  let reported = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).byteLength;
    if (bytes - reported >= HASH_PROGRESS_BYTES) {
      reported = bytes;
      onBytes(bytes);
    }
  }
  return h.digest('hex');
}

function contentOptions(o: Partial<CrawlOptions>): Omit<CrawlOptions, (typeof THROUGHPUT_OPTIONS)[number]> {
  const resolved: Partial<CrawlOptions> = { ...resolveCrawlOptions(o) };
  for (const k of THROUGHPUT_OPTIONS) delete resolved[k];
  return resolved as Omit<CrawlOptions, (typeof THROUGHPUT_OPTIONS)[number]>;
}

/**
 * Plan (or find the existing plan of) a crawl. `latestRecordedVersion` is the highest version of
 * this dataset name already recorded in lineage; new versions are numbered after it.
 */
export async function planCrawl(
  storage: ArtifactStorage,
  spec: CrawlPlanSpec,
  latestRecordedVersion: number,
  onProgress?: (p: PlanProgress) => void,
): Promise<PlanOutcome> {
  if (spec.sources.length === 0)
    throw new ConfigError(
      'a crawl needs at least one URL list',
      'pass one or more input files (parquet, csv, tsv, jsonl, optionally .gz).',
    );
  const sources: CrawlPlan['sources'] = [];
  let hashedBefore = 0;
  for (const s of spec.sources) {
    const { path, format, gzip } = detectFormat(s);
    let bytes: number;
    try {
      bytes = (await stat(path)).size;
    } catch {
      throw new ConfigError(`URL list ${path} does not exist or cannot be read`, 'check the input path.');
    }
    const sha256 = await sha256FileWithProgress(path, (b) =>
      onProgress?.({ phase: 'hash', bytesHashed: hashedBefore + b, rows: 0 }),
    );
    hashedBefore += bytes;
    onProgress?.({ phase: 'hash', bytesHashed: hashedBefore, rows: 0 });
    sources.push({ path, format, gzip, sha256, bytes });
  }
  const rowsPerShard = spec.rowsPerShard ?? DEFAULT_ROWS_PER_SHARD;
  const options = spec.options ?? {};
  const fingerprint = sha256Hex(
    JSON.stringify({
      sources: sources.map((s) => [s.sha256, s.format, s.gzip]),
      urlColumn: spec.urlColumn ?? 'url',
      captionColumn: spec.captionColumn === undefined ? 'caption' : spec.captionColumn,
      extraColumns: spec.extraColumns ?? 'all',
      rowsPerShard,
      dedupUrls: spec.dedupUrls !== false,
      options: contentOptions(options),
      ...(spec.incremental ? { seenAsOf: spec.incremental.seenAsOf } : {}),
    }),
  );

  const chosen = await chooseVersion(storage, {
    datasetName: spec.datasetName,
    fingerprint,
    explicit: spec.version,
    first: latestRecordedVersion + 1,
    latestRecorded: latestRecordedVersion,
  });
  if (chosen.resumed) {
    const layout = chosen.layout;
    // Temp files of shard writers killed in an earlier run; no shard of this version runs yet.
    if (!(await storage.exists(layout.manifestUri))) await sweepTempFiles(storage, layout.shardsDirUri);
    return { plan: (await readVersionPlan<CrawlPlan>(storage, layout))!, resumed: true };
  }
  const version = chosen.layout.version;
  const layout = new DatasetLayout(storage, spec.datasetName, version);
  await sweepTempFiles(storage, layout.inputDirUri);
  await sweepTempFiles(storage, layout.shardsDirUri);
  const split = await splitIntoInputShards(storage, layout, {
    sources: spec.sources,
    urlColumn: spec.urlColumn,
    captionColumn: spec.captionColumn,
    extraColumns: spec.extraColumns,
    rowsPerShard,
    dedupUrls: spec.dedupUrls,
    seenUrl: spec.incremental?.seenUrl,
    onProgress: (rows) => onProgress?.({ phase: 'split', bytesHashed: hashedBefore, rows }),
  });
  const plan: CrawlPlan = {
    datasetName: spec.datasetName,
    version,
    datasetId: layout.id,
    fingerprint,
    shardCount: split.shardCount,
    rows: split.rows,
    duplicates: split.duplicates,
    rowsPerShard,
    extraColumns: split.extraColumns,
    options,
    sources,
    seenAsOf: spec.incremental?.seenAsOf ?? null,
    createdAt: new Date().toISOString(),
  };
  await storage.writeAtomic(layout.planUri, `${JSON.stringify(plan, null, 2)}\n`);
  return { plan, resumed: false };
}
