/**
 * Streaming Parquet shard writer: rows are buffered into row groups, each row group is converted
 * Arrow -> IPC -> parquet-wasm RecordBatch and fed to parquet-wasm's streaming encoder (ZSTD; the image bytes column uncompressed),
 * whose output bytes go straight to an atomic storage writer. Memory stays at about one row group;
 * nothing is visible under the final URI until `commit()` (temp file, fsync, rename).
 */
import { tableToIPC, type Schema } from 'apache-arrow';
import * as parquet from 'parquet-wasm';
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import type { ArtifactStorage, AtomicWriter } from '../../infra/storage.js';
import { shardRowsToTable } from './arrow.js';
import { SCHEMA_VERSION_METADATA_KEY, shardArrowSchema, type ShardColumns, type ShardRow } from './schema.js';

export interface ShardWriterOptions {
  columns?: ShardColumns;
  /** Rows per Parquet row group (default 1024). */
  rowGroupSize?: number;
  /** A row group is also cut once its buffered image bytes reach this (default 64 MiB). */
  rowGroupBytes?: number;
  /** Extra Parquet key-value metadata. */
  metadata?: Record<string, string>;
}

export interface WrittenShard {
  uri: string;
  rows: number;
  sha256: string;
  bytes: number;
}

/** A one-slot async hand-off from `append` (producer) to the encoder's pull (consumer). */
class BatchChannel {
  private queue: (parquet.RecordBatch | null)[] = [];
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;
  constructor(private readonly capacity: number) {}
  async push(b: parquet.RecordBatch | null): Promise<void> {
    while (b !== null && this.queue.length >= this.capacity) await new Promise<void>((r) => (this.wakeProducer = r));
    this.queue.push(b);
    this.wakeConsumer?.();
  }
  async pull(): Promise<parquet.RecordBatch | null> {
    while (this.queue.length === 0) await new Promise<void>((r) => (this.wakeConsumer = r));
    const b = this.queue.shift()!;
    this.wakeProducer?.();
    return b;
  }
  /** Unblock a waiting producer after the consumer died. */
  release(): void {
    this.queue = [];
    this.wakeProducer?.();
  }
}

export class ShardWriter {
  private buffer: ShardRow[] = [];
  private bufferedBytes = 0;
  private written = 0;
  private failure: unknown;
  private closed = false;

  private constructor(
    private readonly atomic: AtomicWriter,
    private readonly columns: ShardColumns,
    private readonly schema: Schema,
    private readonly rowGroupSize: number,
    private readonly rowGroupBytes: number,
    private readonly channel: BatchChannel,
    private readonly pump: Promise<void>,
  ) {}

  /** Open a writer for `uri` (the final name; a hidden temp file is written until commit). */
  static async open(storage: ArtifactStorage, uri: string, opts: ShardWriterOptions = {}): Promise<ShardWriter> {
    const columns = opts.columns ?? { extra: [] };
    const schema = shardArrowSchema(columns);
    const rowGroupSize = opts.rowGroupSize ?? 1024;
    if (!Number.isInteger(rowGroupSize) || rowGroupSize < 1)
      throw new RangeError(`rowGroupSize must be a positive integer, got ${rowGroupSize}`);
    const meta = new Map<string, string>([
      [SCHEMA_VERSION_METADATA_KEY, String(SHARD_SCHEMA_VERSION)],
      ...Object.entries(opts.metadata ?? {}),
    ]);
    const props = new parquet.WriterPropertiesBuilder()
      .setCompression(parquet.Compression.ZSTD)
      .setMaxRowGroupSize(rowGroupSize)
      .setColumnDictionaryEnabled('jpg', false)
      .setColumnStatisticsEnabled('jpg', parquet.EnabledStatistics.None)
      // Image bytes are already compressed (JPEG/WebP/PNG): ZSTD saved <0.1% on crawled JPEGs and
      // cost ~0.06-0.12 ms CPU per row, a few percent of a crawl's CPU.
      .setColumnCompression('jpg', parquet.Compression.UNCOMPRESSED)
      .setKeyValueMetadata(meta)
      .setCreatedBy('kiln')
      .build();
    const atomic = await storage.openAtomicWriter(uri);
    const channel = new BatchChannel(1);
    const source = new ReadableStream<parquet.RecordBatch>(
      {
        async pull(controller) {
          const b = await channel.pull();
          if (b === null) controller.close();
          else controller.enqueue(b);
        },
      },
      { highWaterMark: 0 },
    );
    // transformParquetStream pulls the first batch (for the schema) before it resolves, so the
    // pump must not be awaited here: it runs while rows are appended.
    const pump = (async () => {
      const out = await parquet.transformParquetStream(source, props);
      for await (const chunk of out as unknown as AsyncIterable<Uint8Array>) await atomic.write(chunk);
    })();
    const writer = new ShardWriter(
      atomic,
      columns,
      schema,
      rowGroupSize,
      opts.rowGroupBytes ?? 64 * 1024 * 1024,
      channel,
      pump,
    );
    pump.catch((err: unknown) => {
      writer.failure ??= err;
      channel.release();
    });
    return writer;
  }

  /** Rows appended so far (buffered or written). */
  get rows(): number {
    return this.written + this.buffer.length;
  }

  /** Append one row; resolves once it is buffered (may wait for the encoder to catch up). */
  async append(row: ShardRow): Promise<void> {
    this.assertOpen();
    this.buffer.push(row);
    this.bufferedBytes += row.jpg?.byteLength ?? 0;
    if (this.buffer.length >= this.rowGroupSize || this.bufferedBytes >= this.rowGroupBytes) await this.flush();
  }

  private async flush(force = false): Promise<void> {
    if (this.buffer.length === 0 && !force) return;
    const rows = this.buffer;
    this.buffer = [];
    this.bufferedBytes = 0;
    const ipc = tableToIPC(shardRowsToTable(rows, this.columns, this.schema), 'stream');
    const table = parquet.Table.fromIPCStream(ipc);
    const batch = table.recordBatch(0);
    table.free();
    if (!batch) throw new Error('parquet-wasm returned no record batch for a non-empty row group');
    await this.channel.push(batch);
    this.written += rows.length;
    this.assertOpen();
  }

  /** Flush, finish the Parquet footer, fsync and rename into place. */
  async commit(): Promise<WrittenShard> {
    this.assertOpen();
    try {
      // An empty shard still needs one (empty) batch to carry the schema.
      await this.flush(this.written === 0);
      await this.channel.push(null);
      await this.pump;
      this.assertOpen();
    } catch (err) {
      await this.abort();
      throw err;
    }
    this.closed = true;
    try {
      const w = await this.atomic.commit();
      return { uri: w.uri, rows: this.written, sha256: w.sha256, bytes: w.bytes };
    } catch (err) {
      await this.atomic.abort();
      throw err;
    }
  }

  /** Drop everything written so far; the final URI is untouched. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failure ??= new Error('shard writer aborted');
    this.buffer = [];
    await this.channel.push(null).catch(() => undefined);
    await this.pump.catch(() => undefined);
    await this.atomic.abort();
  }

  private assertOpen(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new Error('shard writer is closed');
  }
}
