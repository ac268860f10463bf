/**
 * Streams training samples (success rows with an image) from a dataset version's Parquet shards in
 * a deterministic shuffled order, one row group in memory at a time, and can stop and resume at any
 * sample from a small `DataPosition` (saved in state.json).
 *
 * Order of epoch e: shards permuted by Rng(seed, 'shards', e); within a shard, row groups permuted
 * by Rng(seed, 'row-groups', e, shard) and rows within each row group by Rng(seed, 'rows', e,
 * shard, row group). `row` counts rows (of any status) consumed in that shard's permuted order, so
 * the position never depends on decoding results.
 *
 * With a latent cache (`latents`: one latent shard per dataset shard, row-aligned, latent-cache.ts)
 * the stream reads each row group's key/caption/status from the dataset shard and the same rows'
 * latents from the cache shard instead of decoding images: same order, same positions, and a batch
 * holds latents [n, h, w, c] instead of pixels.
 */
import type { ArtifactStorage } from '../infra/storage.js';
import { EmptyDatasetError } from './errors.js';
import { ConfigError } from '../infra/errors.js';
import { decodeTrainingImage } from './image-decode.js';
import { openLatentShard, type LatentRow, type LatentShardReader } from './latent-shard.js';
import { openShardRowGroups, type ShardRowGroups, type TrainingRows } from './parquet-rows.js';
import { Rng } from './rng.js';

/** Where the stream is: epoch, index into that epoch's shard order, rows consumed of that shard. */
export interface DataPosition {
  epoch: number;
  shard: number;
  row: number;
}

export interface SampleBatch {
  keys: string[];
  captions: string[];
  /** Pixels [n, resolution, resolution, 3] row-major in [-1, 1], or with a latent cache latents [n, h, w, c]. */
  images: Float32Array;
}

export interface LoaderOptions {
  seed: number;
  captionColumn: string;
  resolution: number;
  /** Read and decode the next batch while the current one trains (one batch size per stream). */
  prefetch?: boolean;
  /** Train from a latent cache: latent shard URIs aligned with the dataset's shard URIs, and what they must hold. */
  latents?: { shardUris: readonly string[]; vaeSha256: string; shape: [number, number, number] };
}

interface Candidate {
  key: string;
  caption: string;
  /** Image bytes to decode, or (with a latent cache) the cached latent; null: undecodable image. */
  bytes?: Uint8Array;
  latent?: Float32Array | null;
}

export interface LoaderStats {
  rowsScanned: number;
  samples: number;
  skippedNotSuccess: number;
  skippedUndecodable: number;
}

interface OpenShard {
  reader: ShardRowGroups;
  latents: LatentShardReader | null;
  /** File-order start row of each row group (by row-group index). */
  fileStart: number[];
  total: number;
  /** Row-group indexes in this epoch's order and the permuted-row start of each. */
  groupOrder: Uint32Array;
  groupStart: number[];
  loaded: { slot: number; rows: TrainingRows; latents: LatentRow[] | null; order: Uint32Array } | null;
}

export class ShardSampleStream {
  readonly stats: LoaderStats = { rowsScanned: 0, samples: 0, skippedNotSuccess: 0, skippedUndecodable: 0 };
  /** Read cursor (ahead of `delivered` while a batch is prefetched). */
  private pos: DataPosition;
  private delivered: DataPosition;
  private ahead: { n: number; promise: Promise<{ batch: SampleBatch; pos: DataPosition }> } | null = null;
  private closed = false;
  private shardOrder: Uint32Array;
  private current: OpenShard | null = null;
  /** Success rows with bytes seen in the current shard visit. */
  private visitYields = 0;
  /** Shard visits finished since the last image that decoded. */
  private visitsSinceDecoded = 0;
  private emptyVisits = 0;
  private readonly emptyThreshold: number;

  constructor(
    private readonly storage: ArtifactStorage,
    private readonly shardUris: readonly string[],
    private readonly o: LoaderOptions,
    start: DataPosition = { epoch: 0, shard: 0, row: 0 },
  ) {
    if (shardUris.length === 0) throw new EmptyDatasetError('the dataset has no shards to train on');
    if (o.latents && o.latents.shardUris.length !== shardUris.length)
      throw new RangeError(`${o.latents.shardUris.length} latent shards for ${shardUris.length} dataset shards`);
    if (start.shard < 0 || start.shard >= shardUris.length || start.row < 0 || start.epoch < 0) {
      throw new RangeError(`data position ${JSON.stringify(start)} is outside a dataset of ${shardUris.length} shards`);
    }
    this.pos = { ...start };
    this.delivered = { ...start };
    this.shardOrder = Rng.derive(o.seed, 'shards', start.epoch).permutation(shardUris.length);
    // A visit that starts mid-shard may have skipped that shard's successes: allow one more visit.
    this.emptyThreshold = shardUris.length + (start.row > 0 ? 1 : 0);
  }

  /** Where the next returned batch starts (prefetched rows not counted). */
  position(): DataPosition {
    return { ...this.delivered };
  }

  /**
   * The next `n` samples (crossing shard and epoch boundaries as needed). With `prefetch`, the batch
   * after it is read and decoded while the caller trains on this one; `position()` still counts only
   * the batches returned, so a checkpoint resumes at the first sample not yet trained on.
   */
  async nextBatch(n: number): Promise<SampleBatch> {
    if (this.closed) throw new Error('the sample stream is closed');
    let job: Promise<{ batch: SampleBatch; pos: DataPosition }>;
    if (this.ahead) {
      if (this.ahead.n !== n)
        throw new Error(
          `nextBatch(${n}) after a prefetched batch of ${this.ahead.n}: a prefetching stream serves one batch size`,
        );
      job = this.ahead.promise;
      this.ahead = null;
    } else {
      job = this.readBatch(n);
    }
    const { batch, pos } = await job;
    this.delivered = pos;
    if (this.o.prefetch) {
      const promise = this.readBatch(n);
      promise.catch(() => undefined); // surfaces at the next nextBatch, which awaits it
      this.ahead = { n, promise };
    }
    return batch;
  }

  /** Read rows in order until `n` images decode; decodes of a round run in parallel (sharp's threads). */
  private async readBatch(n: number): Promise<{ batch: SampleBatch; pos: DataPosition }> {
    const shape = this.o.latents?.shape ?? [this.o.resolution, this.o.resolution, 3];
    const px = shape[0] * shape[1] * shape[2];
    const batch: SampleBatch = { keys: [], captions: [], images: new Float32Array(n * px) };
    while (batch.keys.length < n) {
      // Exactly as many candidate rows as samples still missing, so no row past the n-th
      // decodable one is consumed (the same rows as decoding one at a time).
      const candidates: Candidate[] = [];
      for (let need = n - batch.keys.length; candidates.length < need;) candidates.push(await this.nextCandidate());
      const images = await Promise.all(
        candidates.map((c) => (c.latent !== undefined ? c.latent : decodeTrainingImage(c.bytes!, this.o.resolution))),
      );
      candidates.forEach((c, i) => {
        const image = images[i];
        if (!image) {
          this.stats.skippedUndecodable += 1;
          return;
        }
        this.visitsSinceDecoded = 0;
        this.stats.samples += 1;
        batch.images.set(image, batch.keys.length * px);
        batch.keys.push(c.key);
        batch.captions.push(c.caption);
      });
      // Every shard visited more than once over without one decodable image: nothing to train on.
      if (this.visitsSinceDecoded > this.emptyThreshold) throw this.emptyError();
    }
    return { batch, pos: { ...this.pos } };
  }

  /** The next success row with image bytes, in this epoch's order. */
  private async nextCandidate(): Promise<Candidate> {
    for (;;) {
      if (this.closed) throw new Error('the sample stream is closed');
      const shard = this.current ?? (this.current = await this.openShard());
      if (this.pos.row >= shard.total) {
        this.finishShard();
        continue;
      }
      const r = this.pos.row;
      let slot = shard.groupStart.length - 1;
      while (shard.groupStart[slot]! > r) slot--;
      if (shard.loaded?.slot !== slot) {
        const group = shard.groupOrder[slot]!;
        const rows = await shard.reader.readRowGroup(group);
        const latents = shard.latents ? await shard.latents.read(shard.fileStart[group]!, rows.keys.length) : null;
        if (latents?.some((l, k) => l.key !== rows.keys[k]))
          throw this.cacheMismatch(shard, `row keys of row group ${group} differ`);
        const shardIndex = this.shardOrder[this.pos.shard]!;
        shard.loaded = {
          slot,
          rows,
          latents,
          order: Rng.derive(this.o.seed, 'rows', this.pos.epoch, shardIndex, group).permutation(rows.keys.length),
        };
      }
      const { rows, latents, order } = shard.loaded;
      const i = order[r - shard.groupStart[slot]!]!;
      this.pos.row += 1;
      this.stats.rowsScanned += 1;
      const bytes = rows.images[i];
      const usable = latents ? latents[i]!.imageSha256 !== null : !!bytes && bytes.byteLength > 0;
      if (rows.statuses[i] !== 'success' || !usable) {
        this.stats.skippedNotSuccess += 1;
        continue;
      }
      this.visitYields += 1;
      const caption = rows.captions[i] ?? '';
      return latents
        ? { key: rows.keys[i]!, caption, latent: latents[i]!.latent }
        : { key: rows.keys[i]!, caption, bytes: bytes! };
    }
  }

  private async openShard(): Promise<OpenShard> {
    const shardIndex = this.shardOrder[this.pos.shard]!;
    const cache = this.o.latents;
    const reader = await openShardRowGroups(this.storage, this.shardUris[shardIndex]!, this.o.captionColumn, {
      images: !cache,
    });
    let latents: LatentShardReader | null;
    try {
      latents = cache ? await openLatentShard(this.storage, cache.shardUris[shardIndex]!) : null;
    } catch (err) {
      reader.close();
      throw err;
    }
    const sizes = reader.rowGroupSizes;
    const fileStart: number[] = [];
    sizes.reduce((start, n) => (fileStart.push(start), start + n), 0);
    const groupOrder = Rng.derive(this.o.seed, 'row-groups', this.pos.epoch, shardIndex).permutation(sizes.length);
    const groupStart: number[] = [];
    let total = 0;
    for (const g of groupOrder) {
      groupStart.push(total);
      total += sizes[g]!;
    }
    const shard: OpenShard = { reader, latents, fileStart, total, groupOrder, groupStart, loaded: null };
    const m = latents?.meta;
    const problem =
      this.pos.row > total
        ? new RangeError(
            `data position row ${this.pos.row} is past the ${total} rows of shard ${this.shardUris[shardIndex]}`,
          )
        : latents && latents.rows !== total
          ? this.cacheMismatch(shard, `it has ${latents.rows} rows, the dataset shard ${total}`)
          : m && (m.vaeSha256 !== cache!.vaeSha256 || m.shape.join(',') !== cache!.shape.join(','))
            ? this.cacheMismatch(
                shard,
                `it holds ${m.shape.join('x')} latents of VAE ${m.vaeSha256.slice(0, 12)}, not ${cache!.shape.join('x')} of ${cache!.vaeSha256.slice(0, 12)}`,
              )
            : null;
    if (problem) {
      reader.close();
      latents?.close();
      throw problem;
    }
    return shard;
  }

  private cacheMismatch(shard: OpenShard, what: string): ConfigError {
    return new ConfigError(
      `latent cache shard ${shard.latents?.uri} does not match dataset shard ${shard.reader.uri}: ${what}`,
      'remove the latent cache directory (latents/ under the data root) and rerun: the cache is rebuilt from the dataset.',
    );
  }

  private finishShard(): void {
    this.current?.reader.close();
    this.current?.latents?.close();
    this.current = null;
    this.emptyVisits = this.visitYields === 0 ? this.emptyVisits + 1 : 0;
    this.visitYields = 0;
    this.visitsSinceDecoded += 1;
    if (this.emptyVisits >= this.emptyThreshold) throw this.emptyError();
    this.pos.row = 0;
    this.pos.shard += 1;
    if (this.pos.shard >= this.shardUris.length) {
      this.pos.shard = 0;
      this.pos.epoch += 1;
      this.shardOrder = Rng.derive(this.o.seed, 'shards', this.pos.epoch).permutation(this.shardUris.length);
    }
  }

  private emptyError(): EmptyDatasetError {
    return new EmptyDatasetError(
      `none of the ${this.shardUris.length} shard(s) has a usable row: ` +
        `${this.stats.rowsScanned} rows scanned, ${this.stats.skippedNotSuccess} not "success" or without ` +
        `a jpg, ${this.stats.skippedUndecodable} with an undecodable image`,
    );
  }

  /** Stop; a prefetch in flight finishes its current read first (its reader is freed after it). */
  close(): void {
    this.closed = true;
    const pending = this.ahead?.promise;
    this.ahead = null;
    const release = () => {
      this.current?.reader.close();
      this.current?.latents?.close();
      this.current = null;
    };
    if (pending) void pending.then(release, release);
    else release();
  }
}
