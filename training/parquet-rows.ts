/**
 * Reads the columns training needs (`key`, the caption column, `status`, `jpg`) from a dataset
 * shard (shared/DESIGN.md data contract, datasets/shards/schema.ts), one row group at a time, so a
 * shard is never held in memory whole: parquet-wasm's `ParquetFile` over a file-backed Blob
 * (`fs.openAsBlob`) reads the footer and then only the requested row group's column chunks. Shards
 * in a non-file storage are fetched whole into a Blob (one shard at a time).
 */
import { openAsBlob } from 'node:fs';
import { ParquetFile } from 'parquet-wasm/node';
import { tableFromIPC, type Table } from 'apache-arrow';
import type { ArtifactStorage } from '../infra/storage.js';
import { ConfigError } from '../infra/errors.js';

/** One row group's training columns, row-aligned. */
export interface TrainingRows {
  keys: string[];
  captions: (string | null)[];
  statuses: string[];
  images: (Uint8Array | null)[];
}

export interface ShardRowGroups {
  readonly uri: string;
  /** Rows per row group, in file order (from the footer; no data read). */
  readonly rowGroupSizes: number[];
  readRowGroup(index: number): Promise<TrainingRows>;
  close(): void;
}

/**
 * Open a shard for row-group reads of the training columns; checks the columns exist. Without a
 * caption column, captions are null; with `images: false` (training from a latent cache) the image
 * bytes are not read and `images` holds nulls.
 */
export async function openShardRowGroups(
  storage: ArtifactStorage,
  uri: string,
  captionColumn: string | null,
  opts: { images?: boolean } = {},
): Promise<ShardRowGroups> {
  const withImages = opts.images ?? true;
  const columns = ['key', ...(captionColumn ? [captionColumn] : []), 'status', ...(withImages ? ['jpg'] : [])];
  // A file-backed Blob reads only the byte ranges asked for (footer, then one row group's columns).
  const blob = uri.startsWith('file://')
    ? await openAsBlob(storage.localPath(uri))
    : new Blob([await storage.read(uri)]);
  let file: ParquetFile | null = await ParquetFile.fromFile(blob);
  const names = fieldNames(file.schema().intoIPCStream());
  const rowGroupSizes = file
    .metadata()
    .rowGroups()
    .map((rg) => rg.numRows());
  const missing = columns.filter((c) => !names.includes(c));
  if (missing.length > 0) {
    file?.free();
    throw new ConfigError(
      `shard ${uri} has no column(s) ${missing.join(', ')} (it has ${names.join(', ')})`,
      captionColumn && missing.includes(captionColumn) && captionColumn !== 'caption'
        ? `train on a dataset version that has ${captionColumn} (run the caption stage), or set data.captionColumn to "caption".`
        : 'train on shards written by the Kiln crawl/filter stages (datasets/shards/schema.ts).',
    );
  }
  return {
    uri,
    rowGroupSizes,
    async readRowGroup(index: number): Promise<TrainingRows> {
      if (index < 0 || index >= rowGroupSizes.length)
        throw new RangeError(`row group ${index} out of range for ${uri}`);
      if (!file) throw new Error(`shard ${uri} is closed`);
      const wasmTable = await file.read({ rowGroups: [index], columns });
      return toRows(tableFromIPC(wasmTable.intoIPCStream()), captionColumn);
    },
    close() {
      file?.free();
      file = null;
    },
  };
}

function fieldNames(ipc: Uint8Array): string[] {
  return tableFromIPC(ipc).schema.fields.map((f) => f.name);
}

function toRows(table: Table, captionColumn: string | null): TrainingRows {
  const col = (name: string) => {
    const c = table.getChild(name);
    if (!c) throw new Error(`column ${name} missing from row group`);
    return c;
  };
  const key = col('key');
  const caption = captionColumn ? col(captionColumn) : null;
  const status = col('status');
  const jpg = table.getChild('jpg');
  const rows: TrainingRows = { keys: [], captions: [], statuses: [], images: [] };
  for (let i = 0; i < table.numRows; i++) {
    rows.keys.push(String(key.get(i)));
    const c = caption?.get(i) as string | null | undefined;
    rows.captions.push(c === null || c === undefined ? null : String(c));
    rows.statuses.push(String(status.get(i)));
    rows.images.push((jpg?.get(i) as Uint8Array | null | undefined) ?? null);
  }
  return rows;
}
