/**
 * Test helpers: small Parquet shards in the dataset contract (datasets/shards/schema.ts columns)
 * with real sharp-encoded JPEGs, written with apache-arrow + parquet-wasm, and a temp storage root.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { Binary, Int32, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import { Table as WasmTable, WriterPropertiesBuilder, writeParquet } from 'parquet-wasm/node';
import { LocalStorage } from '../../infra/storage.js';

export interface FixtureRow {
  key: string;
  caption: string | null;
  status: 'success' | 'failed_to_download' | 'failed_to_resize' | 'filtered';
  /** RGB colour of a generated image (null: no image). */
  color: [number, number, number] | null;
  /** Raw bytes to store instead of a generated JPEG (e.g. corrupt data). */
  jpg?: Uint8Array;
}

const COLORS: [string, [number, number, number]][] = [
  ['red', [220, 30, 30]],
  ['green', [30, 200, 60]],
  ['blue', [40, 60, 230]],
  ['yellow', [230, 220, 40]],
];

/** A JPEG of a square of `color` on a grey background, with a gradient (so images differ). */
export async function makeJpeg(color: [number, number, number], size = 40, shift = 0): Promise<Uint8Array> {
  const raw = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const inSquare = x >= size / 4 + shift && x < (3 * size) / 4 + shift && y >= size / 4 && y < (3 * size) / 4;
      const base = (y * size + x) * 3;
      for (let c = 0; c < 3; c++) raw[base + c] = inSquare ? color[c]! : 100 + ((x + y) % 40);
    }
  }
  return new Uint8Array(
    await sharp(raw, { raw: { width: size, height: size, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
}

/** `n` rows; every `failEvery`-th row is a failed download (no jpg). */
export async function colorRows(prefix: string, n: number, failEvery = 0): Promise<FixtureRow[]> {
  const rows: FixtureRow[] = [];
  for (let i = 0; i < n; i++) {
    const [name, color] = COLORS[i % COLORS.length]!;
    const failed = failEvery > 0 && i % failEvery === failEvery - 1;
    rows.push({
      key: `${prefix}${String(i).padStart(6, '0')}`,
      caption: `a ${name} square`,
      status: failed ? 'failed_to_download' : 'success',
      color: failed ? null : color,
    });
  }
  return rows;
}

/** Write rows as a Parquet shard (row groups of `rowGroupSize`) to `path`. */
export async function writeFixtureShard(
  storage: LocalStorage,
  uri: string,
  rows: FixtureRow[],
  rowGroupSize = 4,
  captionGenerated?: (string | null)[],
): Promise<void> {
  const jpgs: (Uint8Array | null)[] = [];
  for (const [i, r] of rows.entries()) jpgs.push(r.jpg ?? (r.color ? await makeJpeg(r.color, 40, i % 5) : null));
  const str = (v: (string | null)[]) => vectorFromArray(v, new Utf8());
  const int = (v: (number | null)[]) => vectorFromArray(v, new Int32());
  const table = new Table({
    key: str(rows.map((r) => r.key)),
    url: str(rows.map((r) => `https://example.test/${r.key}.jpg`)),
    caption: str(rows.map((r) => r.caption)),
    status: str(rows.map((r) => r.status)),
    error_message: str(rows.map((r) => (r.status === 'success' ? null : 'fixture failure'))),
    width: int(jpgs.map((j) => (j ? 40 : null))),
    height: int(jpgs.map((j) => (j ? 40 : null))),
    original_width: int(jpgs.map((j) => (j ? 40 : null))),
    original_height: int(jpgs.map((j) => (j ? 40 : null))),
    sha256: str(jpgs.map((j) => (j ? createHash('sha256').update(j).digest('hex') : null))),
    jpg: vectorFromArray(jpgs, new Binary()),
    ...(captionGenerated ? { caption_generated: str(captionGenerated) } : {}),
  });
  const props = new WriterPropertiesBuilder().setMaxRowGroupSize(rowGroupSize).build();
  const bytes = writeParquet(WasmTable.fromIPCStream(tableToIPC(table, 'stream')), props);
  await storage.writeAtomic(uri, bytes);
}

/** A fresh LocalStorage root under the OS temp dir; `cleanup` removes it. */
export async function tempStorage(): Promise<{ storage: LocalStorage; root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-training-'));
  return { storage: new LocalStorage(root), root, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** Two shards of colour squares (10 and 7 rows, some failed) under `<root>/data/`. */
export async function twoShardDataset(storage: LocalStorage): Promise<string[]> {
  const a = storage.uri('data', 'shard-00000.parquet');
  const b = storage.uri('data', 'shard-00001.parquet');
  await writeFixtureShard(storage, a, await colorRows('0', 10, 4));
  await writeFixtureShard(storage, b, await colorRows('1', 7, 3), 3);
  return [a, b];
}
