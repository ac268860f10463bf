/**
 * Reading URL lists: parquet, csv, tsv, jsonl, each optionally gzipped (`.gz`), with configurable
 * url and caption columns; every other column can be carried through as a string.
 *
 * URL lists are user inputs, not Kiln artifacts: they are read from a local path (or a file:// URI)
 * anywhere on disk.
 */
import { createReadStream, openAsBlob } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { createGunzip, gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { tableFromIPC } from 'apache-arrow';
import * as parquet from 'parquet-wasm';
import { ConfigError } from '../../infra/errors.js';
import { DelimitedParser } from './delimited.js';

export type UrlListFormat = 'parquet' | 'csv' | 'tsv' | 'jsonl';
export const URL_LIST_FORMATS: readonly UrlListFormat[] = ['parquet', 'csv', 'tsv', 'jsonl'];

export interface UrlListSource {
  /** Local path or file:// URI. */
  path: string;
  /** Default: from the file extension (`.parquet`, `.csv`, `.tsv`, `.jsonl`/`.json`, each with optional `.gz`). */
  format?: UrlListFormat;
  /** Default: from the `.gz` extension. */
  gzip?: boolean;
}

/** One input record: every column as a string (null when absent or null). */
export type UrlListRecord = Record<string, string | null>;

/** A URL list that cannot be read as declared. */
export class UrlListError extends ConfigError {}

/** Format and compression of a URL list, from its name unless given. */
export function detectFormat(source: UrlListSource): { path: string; format: UrlListFormat; gzip: boolean } {
  const path = source.path.startsWith('file://') ? fileURLToPath(source.path) : source.path;
  const lower = path.toLowerCase();
  const gzip = source.gzip ?? lower.endsWith('.gz');
  const base = gzip && lower.endsWith('.gz') ? lower.slice(0, -3) : lower;
  const ext = base.slice(base.lastIndexOf('.') + 1);
  const format = source.format ?? ((ext === 'json' || ext === 'ndjson' ? 'jsonl' : ext) as UrlListFormat);
  if (!URL_LIST_FORMATS.includes(format)) {
    throw new UrlListError(
      `cannot tell the format of URL list ${path} (extension ".${ext}")`,
      `name it .parquet, .csv, .tsv or .jsonl (optionally + .gz), or pass the format explicitly (${URL_LIST_FORMATS.join(', ')}).`,
    );
  }
  return { path, format, gzip };
}

function textStream(path: string, gzip: boolean): Readable {
  const raw = createReadStream(path);
  const s = gzip ? raw.pipe(createGunzip()) : raw;
  if (gzip) raw.on('error', (e) => s.destroy(e));
  s.setEncoding('utf8');
  return s;
}

function cellToString(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return JSON.stringify(v);
  return JSON.stringify(v);
}

async function* readDelimited(path: string, gzip: boolean, delimiter: string): AsyncGenerator<UrlListRecord> {
  try {
    yield* readDelimitedRecords(path, gzip, delimiter);
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    throw new UrlListError(
      `URL list ${path} has broken quoting: ${err.message}`,
      'fix the quoting at that line: a field containing the delimiter, a quote or a line break must be wrapped in "..." with inner quotes doubled ("").',
    );
  }
}

async function* readDelimitedRecords(path: string, gzip: boolean, delimiter: string): AsyncGenerator<UrlListRecord> {
  const parser = new DelimitedParser(delimiter);
  let header: string[] | undefined;
  const toRecord = (cells: string[]): UrlListRecord | undefined => {
    if (!header) {
      header = cells.map((c) => c.trim());
      return undefined;
    }
    const rec: UrlListRecord = {};
    header.forEach((name, i) => (rec[name] = cells[i] ?? null));
    return rec;
  };
  for await (const chunk of textStream(path, gzip)) {
    for (const cells of parser.push(chunk as string)) {
      const r = toRecord(cells);
      if (r) yield r;
    }
  }
  for (const cells of parser.end()) {
    const r = toRecord(cells);
    if (r) yield r;
  }
}

async function* readJsonl(path: string, gzip: boolean): AsyncGenerator<UrlListRecord> {
  let lineNo = 0;
  for await (const line of createInterface({ input: textStream(path, gzip), crlfDelay: Infinity })) {
    lineNo++;
    if (line.trim().length === 0) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      throw new UrlListError(
        `${path}:${lineNo} is not valid JSON (${(err as Error).message})`,
        'write one JSON object per line.',
      );
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      throw new UrlListError(
        `${path}:${lineNo} is not a JSON object`,
        'write one JSON object per line, e.g. {"url": "...", "caption": "..."}.',
      );
    }
    yield Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, cellToString(v)]));
  }
}

async function* readParquetList(path: string, gzip: boolean): AsyncGenerator<UrlListRecord> {
  try {
    yield* readParquetRecords(path, gzip);
  } catch (err) {
    if (err instanceof UrlListError) throw err;
    throw new UrlListError(
      `URL list ${path} is not a readable Parquet file (${err instanceof Error ? err.message : String(err)})`,
      'check that the file is a complete Parquet file (re-export or re-download it), or name it by its real format (.csv, .tsv, .jsonl).',
    );
  }
}

async function* readParquetRecords(path: string, gzip: boolean): AsyncGenerator<UrlListRecord> {
  const blob = gzip ? new Blob([gunzipSync(await readFile(path))]) : await openAsBlob(path);
  const file = await parquet.ParquetFile.fromFile(blob);
  try {
    const stream = await file.stream({ batchSize: 4096 });
    for await (const batch of stream as unknown as AsyncIterable<parquet.RecordBatch>) {
      const table = tableFromIPC(batch.intoIPCStream());
      const cols = table.schema.fields.map((f) => [f.name, table.getChild(f.name)] as const);
      for (let i = 0; i < table.numRows; i++) {
        const rec: UrlListRecord = {};
        for (const [name, col] of cols) rec[name] = cellToString(col?.get(i));
        yield rec;
      }
    }
  } finally {
    file.free();
  }
}

/** Stream the records of one URL list, every value as a string or null. */
export function readUrlList(source: UrlListSource): AsyncGenerator<UrlListRecord> {
  const { path, format, gzip } = detectFormat(source);
  switch (format) {
    case 'csv':
      return readDelimited(path, gzip, ',');
    case 'tsv':
      return readDelimited(path, gzip, '\t');
    case 'jsonl':
      return readJsonl(path, gzip);
    case 'parquet':
      return readParquetList(path, gzip);
  }
}
