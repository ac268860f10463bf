/**
 * Latent cache shards: one Parquet file per dataset shard, row-aligned with it (same rows, same
 * order), holding a frozen VAE's latents of the shard's images at one training resolution.
 *
 *   key           utf8      the dataset row's key (checked against the dataset shard when read)
 *   image_sha256  utf8?     sha256 of the stored image bytes (`jpg`) the latent was encoded from
 *   latent        binary?   float32 little-endian, NHWC [h, w, c]; null when the row has no usable
 *                           image (not `success`, no jpg, or undecodable), as the loader skips it
 *
 * Key-value metadata (`kiln.latent.*`): the VAE's name and files' sha256, the resolution, the latent
 * shape and the source shard's sha256, so a reader can refuse a cache that does not match.
 * Written as a stream of row groups (`LATENT_ROW_GROUP` rows each by default) through an atomic writer: nothing
 * is visible under the final URI until the whole shard is committed (temp file, fsync, rename).
 */
import { openAsBlob } from 'node:fs';
import { Binary, Table, Utf8, tableFromIPC, tableToIPC, vectorFromArray } from 'apache-arrow';
import {
  ParquetFile,
  Table as WasmTable,
  WriterPropertiesBuilder,
  Compression,
  transformParquetStream,
  type RecordBatch,
} from 'parquet-wasm/node';
import type { ArtifactStorage, WrittenObject } from '../infra/storage.js';
import { ConfigError } from '../infra/errors.js';

/** Rows per row group of a latent shard (256 latents of 32x32x4 are 4 MiB). */
export const LATENT_ROW_GROUP = 256;

export interface LatentShardMeta {
  vae: string;
  vaeSha256: string;
  resolution: number;
  /** [h, w, c] of every latent. */
  shape: [number, number, number];
  sourceSha256: string;
}

export interface LatentRow {
  key: string;
  imageSha256: string | null;
  latent: Float32Array | null;
}

const META_PREFIX = 'kiln.latent.';

/** Write `rows` (an async source, consumed once) as a latent shard at `uri`, atomically. */
export async function writeLatentShard(
  storage: ArtifactStorage,
  uri: string,
  meta: LatentShardMeta,
  rows: AsyncIterable<LatentRow[]>,
  rowGroupSize = LATENT_ROW_GROUP,
): Promise<WrittenObject & { rows: number }> {
  const kv = new Map<string, string>([
    [`${META_PREFIX}vae`, meta.vae],
    [`${META_PREFIX}vae_sha256`, meta.vaeSha256],
    [`${META_PREFIX}resolution`, String(meta.resolution)],
    [`${META_PREFIX}shape`, meta.shape.join(',')],
    [`${META_PREFIX}source_sha256`, meta.sourceSha256],
  ]);
  const props = new WriterPropertiesBuilder()
    .setCompression(Compression.ZSTD)
    .setMaxRowGroupSize(rowGroupSize)
    .setColumnDictionaryEnabled('latent', false)
    .setKeyValueMetadata(kv)
    .setCreatedBy('kiln')
    .build();
  const perValue = meta.shape[0] * meta.shape[1] * meta.shape[2];
  let count = 0;
  const batches = (async function* (): AsyncGenerator<RecordBatch> {
    for await (const group of rows) {
      for (const r of group) {
        if (r.latent && r.latent.length !== perValue)
          throw new Error(
            `latent of row ${r.key} has ${r.latent.length} values, expected ${perValue} (${meta.shape.join('x')})`,
          );
      }
      count += group.length;
      yield* toBatches(group);
    }
  })();
  const source = new ReadableStream<RecordBatch>(
    {
      async pull(controller) {
        const next = await batches.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
    },
    { highWaterMark: 0 },
  );
  const atomic = await storage.openAtomicWriter(uri);
  try {
    const out = await transformParquetStream(source, props);
    for await (const chunk of out as unknown as AsyncIterable<Uint8Array>) await atomic.write(chunk);
    if (count === 0) throw new Error(`latent shard ${uri} would have no rows`);
    return { ...(await atomic.commit()), rows: count };
  } catch (err) {
    await atomic.abort();
    throw err;
  }
}

function* toBatches(rows: LatentRow[]): Generator<RecordBatch> {
  if (rows.length === 0) return;
  const table = new Table({
    key: vectorFromArray(
      rows.map((r) => r.key),
      new Utf8(),
    ),
    image_sha256: vectorFromArray(
      rows.map((r) => r.imageSha256),
      new Utf8(),
    ),
    latent: vectorFromArray(
      rows.map((r) => (r.latent ? new Uint8Array(r.latent.buffer, r.latent.byteOffset, r.latent.byteLength) : null)),
      new Binary(),
    ),
  });
  const wasm = WasmTable.fromIPCStream(tableToIPC(table, 'stream'));
  try {
    for (let i = 0; i < wasm.numBatches; i++) yield wasm.recordBatch(i)!;
  } finally {
    wasm.free();
  }
}

/** A latent shard opened for ranged reads (footer first, then only the row groups a range covers). */
export interface LatentShardReader {
  readonly uri: string;
  readonly meta: LatentShardMeta;
  readonly rows: number;
  /** Rows [start, start + count) in file order. */
  read(start: number, count: number): Promise<LatentRow[]>;
  close(): void;
}

export async function openLatentShard(storage: ArtifactStorage, uri: string): Promise<LatentShardReader> {
  const blob = uri.startsWith('file://')
    ? await openAsBlob(storage.localPath(uri))
    : new Blob([await storage.read(uri)]);
  let file: ParquetFile | null = await ParquetFile.fromFile(blob);
  const md = file.metadata();
  const kv = md.fileMetadata().keyValueMetadata() as Map<string, string>;
  const shape = (kv.get(`${META_PREFIX}shape`) ?? '').split(',').map(Number);
  const meta: LatentShardMeta = {
    vae: kv.get(`${META_PREFIX}vae`) ?? '',
    vaeSha256: kv.get(`${META_PREFIX}vae_sha256`) ?? '',
    resolution: Number(kv.get(`${META_PREFIX}resolution`)),
    shape: shape as [number, number, number],
    sourceSha256: kv.get(`${META_PREFIX}source_sha256`) ?? '',
  };
  if (shape.length !== 3 || !shape.every((v) => Number.isInteger(v) && v > 0) || !meta.vaeSha256) {
    file.free();
    throw new ConfigError(
      `${uri} is not a Kiln latent cache shard (no kiln.latent.* metadata)`,
      'remove it; the latent cache activity rewrites it.',
    );
  }
  const sizes = md.rowGroups().map((g) => g.numRows());
  const starts: number[] = [];
  let total = 0;
  for (const s of sizes) {
    starts.push(total);
    total += s;
  }
  return {
    uri,
    meta,
    rows: total,
    async read(start: number, count: number): Promise<LatentRow[]> {
      if (!file) throw new Error(`latent shard ${uri} is closed`);
      if (start < 0 || count < 0 || start + count > total)
        throw new RangeError(`rows [${start}, ${start + count}) outside the ${total} rows of ${uri}`);
      const groups: number[] = [];
      for (let g = 0; g < sizes.length; g++)
        if (starts[g]! < start + count && starts[g]! + sizes[g]! > start) groups.push(g);
      if (groups.length === 0) return [];
      const table = tableFromIPC(
        (await file.read({ rowGroups: groups, columns: ['key', 'image_sha256', 'latent'] })).intoIPCStream(),
      );
      const key = table.getChild('key')!;
      const sha = table.getChild('image_sha256')!;
      const latent = table.getChild('latent')!;
      const from = start - starts[groups[0]!]!;
      const out: LatentRow[] = [];
      for (let i = from; i < from + count; i++) {
        const bytes = latent.get(i) as Uint8Array | null;
        out.push({
          key: String(key.get(i)),
          imageSha256: (sha.get(i) as string | null) ?? null,
          latent: bytes ? float32(bytes) : null,
        });
      }
      return out;
    },
    close() {
      file?.free();
      file = null;
    },
  };
}

/** Copy into an aligned buffer (Arrow's value buffer slices need not be 4-byte aligned). */
function float32(bytes: Uint8Array): Float32Array {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}
