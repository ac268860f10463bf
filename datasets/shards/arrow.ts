/**
 * Rows -> Arrow columns without per-value builder overhead: strings and binaries are packed into one
 * offsets + data buffer each (a single copy of the image bytes), ints into an Int32Array, each with
 * a validity bitmap so nulls stay nulls.
 */
import {
  Binary,
  Float64,
  Int32,
  List,
  RecordBatch,
  Struct,
  Table,
  Utf8,
  makeData,
  type Data,
  type Schema,
} from 'apache-arrow';
import type { ShardColumns, ShardRow } from './schema.js';
import { shardArrowSchema } from './schema.js';

const encoder = new TextEncoder();

function validity(n: number, isValid: (i: number) => boolean): { bitmap: Uint8Array; nulls: number } {
  const bitmap = new Uint8Array((n + 7) >> 3);
  let nulls = 0;
  for (let i = 0; i < n; i++) {
    if (isValid(i)) bitmap[i >> 3]! |= 1 << (i & 7);
    else nulls++;
  }
  return { bitmap, nulls };
}

function bytesColumn<T extends Utf8 | Binary>(type: T, values: (Uint8Array | null)[]): Data<T> {
  const n = values.length;
  const offsets = new Int32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += values[i]?.byteLength ?? 0;
    if (total > 0x7fffffff) throw new RangeError('row group exceeds 2 GiB in one column; lower rowGroupSize');
    offsets[i + 1] = total;
  }
  const data = new Uint8Array(total);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v) data.set(v, offsets[i]!);
  }
  const { bitmap, nulls } = validity(n, (i) => values[i] !== null && values[i] !== undefined);
  const props = { length: n, nullCount: nulls, nullBitmap: nulls ? bitmap : null, valueOffsets: offsets, data };
  return (type instanceof Utf8
    ? makeData({ type, ...props })
    : makeData({ type: type as Binary, ...props })) as unknown as Data<T>;
}

function stringColumn(values: (string | null | undefined)[]): Data<Utf8> {
  return bytesColumn(
    new Utf8(),
    values.map((v) => (v === null || v === undefined ? null : encoder.encode(v))),
  );
}

function int32Column(values: (number | null | undefined)[]): Data<Int32> {
  const n = values.length;
  const arr = new Int32Array(n);
  for (let i = 0; i < n; i++) arr[i] = values[i] ?? 0;
  const { bitmap, nulls } = validity(n, (i) => values[i] !== null && values[i] !== undefined);
  return makeData({ type: new Int32(), length: n, nullCount: nulls, nullBitmap: nulls ? bitmap : null, data: arr });
}

function float64Column(values: (number | null | undefined)[]): Data<Float64> {
  const n = values.length;
  const arr = new Float64Array(n);
  for (let i = 0; i < n; i++) arr[i] = values[i] ?? 0;
  const { bitmap, nulls } = validity(n, (i) => values[i] !== null && values[i] !== undefined);
  return makeData({ type: new Float64(), length: n, nullCount: nulls, nullBitmap: nulls ? bitmap : null, data: arr });
}

/** A nullable list column whose items come from `child` (built over the flattened values). */
function listColumn<T extends Utf8 | Float64>(
  type: List<T>,
  values: (readonly unknown[] | null | undefined)[],
  child: (flat: unknown[]) => Data<T>,
): Data<List<T>> {
  const n = values.length;
  const offsets = new Int32Array(n + 1);
  const flat: unknown[] = [];
  for (let i = 0; i < n; i++) {
    for (const v of values[i] ?? []) flat.push(v);
    offsets[i + 1] = flat.length;
  }
  const { bitmap, nulls } = validity(n, (i) => values[i] !== null && values[i] !== undefined);
  return makeData({
    type,
    length: n,
    nullCount: nulls,
    nullBitmap: nulls ? bitmap : null,
    valueOffsets: offsets,
    child: child(flat),
  });
}

/** One Arrow table (a single record batch) holding `rows` with the shard schema for `columns`. */
export function shardRowsToTable(
  rows: readonly ShardRow[],
  columns: ShardColumns,
  schema: Schema = shardArrowSchema(columns),
): Table {
  const pick = <K extends keyof ShardRow>(k: K) => rows.map((r) => r[k]);
  const children: Data[] = [
    stringColumn(pick('key') as string[]),
    stringColumn(pick('url') as string[]),
    stringColumn(pick('caption') as (string | null)[]),
    stringColumn(pick('status') as string[]),
    stringColumn(pick('error_message') as (string | null)[]),
    int32Column(pick('width') as (number | null)[]),
    int32Column(pick('height') as (number | null)[]),
    int32Column(pick('original_width') as (number | null)[]),
    int32Column(pick('original_height') as (number | null)[]),
    stringColumn(pick('sha256') as (string | null)[]),
    bytesColumn(
      new Binary(),
      rows.map((r) => r.jpg ?? null),
    ),
  ];
  if (columns.clipScore) children.push(float64Column(rows.map((r) => r.clip_score)));
  if (columns.captionGenerated) children.push(stringColumn(rows.map((r) => r.caption_generated)));
  if (columns.captionCandidates) {
    const [cands, scores] = [
      schema.fields.find((f) => f.name === 'caption_candidates')!,
      schema.fields.find((f) => f.name === 'caption_candidate_scores')!,
    ];
    children.push(
      listColumn(
        cands.type as List<Utf8>,
        rows.map((r) => r.caption_candidates),
        (flat) => stringColumn(flat as string[]),
      ),
    );
    children.push(
      listColumn(
        scores.type as List<Float64>,
        rows.map((r) => r.caption_candidate_scores),
        (flat) => float64Column(flat as number[]),
      ),
    );
  }
  for (const name of columns.extra) children.push(stringColumn(rows.map((r) => r.extra?.[name] ?? null)));
  const struct = makeData({ type: new Struct(schema.fields), length: rows.length, nullCount: 0, children });
  return new Table([new RecordBatch(schema, struct)]);
}
