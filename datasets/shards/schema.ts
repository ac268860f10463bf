/**
 * The shard data contract (shared/DESIGN.md): img2dataset-compatible column names. Failed rows are
 * kept with their reason; later stages add `clip_score` and `caption_generated`.
 *
 * Versioned by SHARD_SCHEMA_VERSION (infra/constants.ts); the version is also written into each
 * Parquet file's key-value metadata under `kiln.schema_version`.
 */
import { Binary, Field, Float64, Int32, List, Schema, Utf8, type DataType } from 'apache-arrow';

export type RowStatus = 'success' | 'failed_to_download' | 'failed_to_resize' | 'filtered';

export const ROW_STATUSES: readonly RowStatus[] = ['success', 'failed_to_download', 'failed_to_resize', 'filtered'];

export interface ShardRow {
  /** Stable per input row: input shard index + row index, zero padded (e.g. "000012345"). */
  key: string;
  url: string;
  caption: string | null;
  status: RowStatus;
  /**
   * Null on success. Otherwise `<reason>: <detail>`, where `<reason>` is a stable snake_case code
   * (see datasets/crawl/failures.ts), e.g. `http_404: Not Found`.
   */
  error_message: string | null;
  width: number | null;
  height: number | null;
  original_width: number | null;
  original_height: number | null;
  /** sha256 (hex) of the original downloaded bytes. */
  sha256: string | null;
  /** The stored (possibly re-encoded) image; null when the row failed. */
  jpg: Uint8Array | null;
  /** Added by the filter stage. */
  clip_score?: number | null;
  /** Added by the caption stage. */
  caption_generated?: string | null;
  /** Added by the filter stage with CLIP reranking: the candidate captions (best beam first). */
  caption_candidates?: string[] | null;
  /** Added with `caption_candidates`: each candidate's CLIP score (same order). */
  caption_candidate_scores?: number[] | null;
  /** Extra input columns carried through, as strings (null when absent). */
  extra?: Record<string, string | null>;
}

export const BASE_COLUMNS = [
  'key',
  'url',
  'caption',
  'status',
  'error_message',
  'width',
  'height',
  'original_width',
  'original_height',
  'sha256',
  'jpg',
] as const;

export type BaseColumn = (typeof BASE_COLUMNS)[number];

/** Columns added by later stages (present in a shard only when the stage wrote them). */
export const STAGE_COLUMNS = [
  'clip_score',
  'caption_generated',
  'caption_candidates',
  'caption_candidate_scores',
] as const;

/** Which columns a shard file has beyond the base ones. */
export interface ShardColumns {
  /** Extra input columns carried through (Utf8, nullable), in file order. */
  extra: string[];
  clipScore?: boolean;
  captionGenerated?: boolean;
  /** `caption_candidates` (list<utf8>) and `caption_candidate_scores` (list<float64>), both nullable. */
  captionCandidates?: boolean;
}

/** Parquet key-value metadata key holding the shard schema version. */
export const SCHEMA_VERSION_METADATA_KEY = 'kiln.schema_version';

const BASE_TYPES: Record<BaseColumn, [DataType, boolean]> = {
  key: [new Utf8(), false],
  url: [new Utf8(), false],
  caption: [new Utf8(), true],
  status: [new Utf8(), false],
  error_message: [new Utf8(), true],
  width: [new Int32(), true],
  height: [new Int32(), true],
  original_width: [new Int32(), true],
  original_height: [new Int32(), true],
  sha256: [new Utf8(), true],
  jpg: [new Binary(), true],
};

const RESERVED = new Set<string>([...BASE_COLUMNS, ...STAGE_COLUMNS]);

/** True when `name` cannot be used for an extra column (it is a base or stage column). */
export function isReservedColumn(name: string): boolean {
  return RESERVED.has(name);
}

/** The Arrow schema of a shard: base columns, then stage columns, then extra columns. */
export function shardArrowSchema(columns: ShardColumns): Schema {
  const fields = BASE_COLUMNS.map((name) => new Field(name, BASE_TYPES[name][0], BASE_TYPES[name][1]));
  if (columns.clipScore) fields.push(new Field('clip_score', new Float64(), true));
  if (columns.captionGenerated) fields.push(new Field('caption_generated', new Utf8(), true));
  if (columns.captionCandidates) {
    fields.push(new Field('caption_candidates', new List(new Field('item', new Utf8(), false)), true));
    fields.push(new Field('caption_candidate_scores', new List(new Field('item', new Float64(), false)), true));
  }
  for (const name of columns.extra) {
    if (isReservedColumn(name)) throw new TypeError(`extra column ${JSON.stringify(name)} clashes with a shard column`);
    fields.push(new Field(name, new Utf8(), true));
  }
  return new Schema(fields);
}

/**
 * The key of input row `rowIndex` of input shard `shardIndex`: 6-digit shard index followed by the
 * row index padded to the width of `rowsPerShard - 1` (img2dataset's layout).
 */
export function rowKey(shardIndex: number, rowIndex: number, rowsPerShard: number): string {
  const rowDigits = String(Math.max(1, rowsPerShard - 1)).length;
  return String(shardIndex).padStart(6, '0') + String(rowIndex).padStart(rowDigits, '0');
}
