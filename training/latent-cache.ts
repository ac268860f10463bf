/**
 * The latent cache of a frozen VAE: every image of a dataset version encoded once, so training
 * reads latents instead of decoding and encoding images at every step.
 *
 * Layout (one cache per VAE and training resolution; shards shared by every dataset version that
 * holds the same shard file):
 *
 *   latents/<vae sha256[:16]>-<resolution>px/shards/<dataset shard sha256>.parquet   (latent-shard.ts)
 *   latents/<vae sha256[:16]>-<resolution>px/manifests/<sha256 of the shard list (sha256 + URI)>[:32].json
 *
 * A latent shard's path is a pure function of (VAE files, resolution, source shard content), and
 * each row carries the sha256 of the image bytes it was encoded from. Shards are written atomically,
 * so one that exists is complete: a build that was killed resumes at the first missing shard and
 * never re-encodes a finished one. Latents are the VAE posterior's mean (deterministic), encoded
 * outside any gradient tape on ONNX Runtime.
 */
import { sha256File, sha256Hex } from '../infra/hash.js';
import { ConfigError } from '../infra/errors.js';
import type { ArtifactStorage } from '../infra/storage.js';
import * as tf from '@tensorflow/tfjs';
import { decodeTrainingImage } from './image-decode.js';
import type { LatentCodec } from './latent-codec.js';
import { openLatentShard, writeLatentShard, type LatentRow, type LatentShardMeta } from './latent-shard.js';
import { openShardRowGroups } from './parquet-rows.js';

export const LATENT_CACHE_FORMAT = 'kiln-latent-cache-v1';
/** Images decoded and encoded together while a shard is built. */
const ENCODE_BATCH = 16;

export interface SourceShard {
  uri: string;
  /** sha256 of the shard file (the dataset manifest's). */
  sha256: string;
}

export interface LatentCacheShard {
  source: string;
  sourceSha256: string;
  uri: string;
  sha256: string;
  rows: number;
}

export interface LatentCacheManifest {
  format: typeof LATENT_CACHE_FORMAT;
  vae: string;
  vaeSha256: string;
  resolution: number;
  shape: [number, number, number];
  /** In the dataset manifest's shard order. */
  shards: LatentCacheShard[];
}

export interface LatentCacheProgress {
  shard: number;
  shards: number;
  /** Rows done in the current shard. */
  rows: number;
  encodedShards: number;
  reusedShards: number;
}

export interface BuildLatentCacheInput {
  storage: ArtifactStorage;
  shards: readonly SourceShard[];
  codec: LatentCodec;
  resolution: number;
  onProgress?: (p: LatentCacheProgress) => void | Promise<void>;
  /** Checked between batches: an aborted build removes the shard in progress and throws the reason. */
  signal?: AbortSignal;
  /** Rows per Parquet row group of a latent shard (default LATENT_ROW_GROUP). */
  rowGroupSize?: number;
}

export interface BuiltLatentCache {
  manifestUri: string;
  manifestSha256: string;
  manifest: LatentCacheManifest;
  /** Shards encoded by this call, and shards found complete and reused. */
  encodedShards: number;
  reusedShards: number;
}

export function latentCacheDir(storage: ArtifactStorage, vaeSha256: string, resolution: number): string {
  return storage.uri('latents', `${vaeSha256.slice(0, 16)}-${resolution}px`);
}

export function latentShardUri(storage: ArtifactStorage, dir: string, sourceSha256: string): string {
  return storage.child(dir, 'shards', `${sourceSha256}.parquet`);
}

export function latentManifestUri(storage: ArtifactStorage, dir: string, shards: readonly SourceShard[]): string {
  return storage.child(
    dir,
    'manifests',
    `${sha256Hex(shards.map((s) => `${s.sha256} ${s.uri}\n`).join('')).slice(0, 32)}.json`,
  );
}

/** sha256 of a stored artifact (streamed from disk for local files). */
export async function artifactSha256(storage: ArtifactStorage, uri: string): Promise<string> {
  return uri.startsWith('file://') ? sha256File(storage.localPath(uri)) : sha256Hex(await storage.read(uri));
}

/**
 * Encode every shard that is not cached yet, reuse the ones that are, and write the cache manifest
 * for this shard list (idempotent: the same input gives the same files, byte for byte).
 */
export async function buildLatentCache(input: BuildLatentCacheInput): Promise<BuiltLatentCache> {
  const { storage, shards, codec, resolution } = input;
  if (codec.sha256 === null)
    throw new ConfigError(
      `codec ${codec.name} needs no latent cache`,
      'build a latent cache only for a VAE codec (config.codec = { vae: dir }).',
    );
  if (resolution % codec.downsample !== 0) {
    throw new ConfigError(
      `resolution ${resolution} is not divisible by the downsample factor ${codec.downsample} of codec ${codec.name}`,
      `set resolution to a multiple of ${codec.downsample}.`,
    );
  }
  const side = resolution / codec.downsample;
  const shape: [number, number, number] = [side, side, codec.channels];
  const dir = latentCacheDir(storage, codec.sha256, resolution);
  const progress: LatentCacheProgress = { shard: 0, shards: shards.length, rows: 0, encodedShards: 0, reusedShards: 0 };
  const done: LatentCacheShard[] = [];
  for (const [i, source] of shards.entries()) {
    input.signal?.throwIfAborted();
    progress.shard = i;
    progress.rows = 0;
    const meta: LatentShardMeta = {
      vae: codec.name,
      vaeSha256: codec.sha256,
      resolution,
      shape,
      sourceSha256: source.sha256,
    };
    const uri = latentShardUri(storage, dir, source.sha256);
    let shard = await cachedShard(storage, uri, source, meta);
    if (shard) {
      progress.reusedShards += 1;
    } else {
      shard = await encodeLatentShard(
        storage,
        uri,
        source,
        meta,
        codec,
        async (rows) => {
          progress.rows = rows;
          await input.onProgress?.({ ...progress });
        },
        input.signal,
        input.rowGroupSize,
      );
      progress.encodedShards += 1;
    }
    done.push(shard);
    await input.onProgress?.({ ...progress });
  }
  const manifest: LatentCacheManifest = {
    format: LATENT_CACHE_FORMAT,
    vae: codec.name,
    vaeSha256: codec.sha256,
    resolution,
    shape,
    shards: done,
  };
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  const manifestUri = latentManifestUri(storage, dir, shards);
  const manifestSha256 = sha256Hex(text);
  if (((await storage.exists(manifestUri)) ? await artifactSha256(storage, manifestUri) : null) !== manifestSha256)
    await storage.writeAtomic(manifestUri, text);
  return {
    manifestUri,
    manifestSha256,
    manifest,
    encodedShards: progress.encodedShards,
    reusedShards: progress.reusedShards,
  };
}

/** The recorded cache of a dataset version: its manifest, checked against the expected hash and shard list. */
export async function readLatentCacheManifest(
  storage: ArtifactStorage,
  uri: string,
  expectedSha256: string,
  shardUris: readonly string[],
): Promise<LatentCacheManifest> {
  const text = await storage.readText(uri);
  const fix =
    'remove the latent cache directory (latents/ under the data root) and rerun: the cache is rebuilt from the dataset.';
  if (sha256Hex(text) !== expectedSha256)
    throw new ConfigError(`latent cache manifest ${uri} no longer has sha256 ${expectedSha256}`, fix);
  const m = JSON.parse(text) as LatentCacheManifest;
  if (
    m.format !== LATENT_CACHE_FORMAT ||
    m.shards.length !== shardUris.length ||
    m.shards.some((s, i) => s.source !== shardUris[i])
  ) {
    throw new ConfigError(`latent cache manifest ${uri} does not list this dataset's ${shardUris.length} shards`, fix);
  }
  return m;
}

/** A complete cached shard for `source` (right VAE, resolution, shape and source hash), or null. */
async function cachedShard(
  storage: ArtifactStorage,
  uri: string,
  source: SourceShard,
  meta: LatentShardMeta,
): Promise<LatentCacheShard | null> {
  if (!(await storage.exists(uri))) return null;
  const reader = await openLatentShard(storage, uri);
  try {
    const m = reader.meta;
    if (
      m.vaeSha256 !== meta.vaeSha256 ||
      m.resolution !== meta.resolution ||
      m.sourceSha256 !== meta.sourceSha256 ||
      m.shape.join(',') !== meta.shape.join(',')
    )
      return null;
    return {
      source: source.uri,
      sourceSha256: source.sha256,
      uri,
      sha256: await artifactSha256(storage, uri),
      rows: reader.rows,
    };
  } finally {
    reader.close();
  }
}

/** Decode and encode one dataset shard's images in file order, written as a latent shard. */
async function encodeLatentShard(
  storage: ArtifactStorage,
  uri: string,
  source: SourceShard,
  meta: LatentShardMeta,
  codec: LatentCodec,
  onRows: (rows: number) => Promise<void>,
  signal?: AbortSignal,
  rowGroupSize?: number,
): Promise<LatentCacheShard> {
  const reader = await openShardRowGroups(storage, source.uri, null);
  let rowsDone = 0;
  const R = meta.resolution;
  async function* rows(): AsyncGenerator<LatentRow[]> {
    for (let g = 0; g < reader.rowGroupSizes.length; g++) {
      const group = await reader.readRowGroup(g);
      for (let s = 0; s < group.keys.length; s += ENCODE_BATCH) {
        signal?.throwIfAborted();
        const idx = [...Array(Math.min(ENCODE_BATCH, group.keys.length - s)).keys()].map((k) => s + k);
        const usable = (i: number) => group.statuses[i] === 'success' && (group.images[i]?.byteLength ?? 0) > 0;
        const pixels = await Promise.all(
          idx.map((i) => (usable(i) ? decodeTrainingImage(group.images[i]!, R) : Promise.resolve(null))),
        );
        const decoded = idx.filter((_, k) => pixels[k]);
        const values = new Float32Array(decoded.length * R * R * 3);
        let n = 0;
        for (const p of pixels) if (p) values.set(p, n++ * R * R * 3);
        const encoded = decoded.length > 0 ? await encode(codec, values, decoded.length, R) : new Float32Array(0);
        const per = meta.shape[0] * meta.shape[1] * meta.shape[2];
        const out: LatentRow[] = [];
        let j = 0;
        for (const [k, i] of idx.entries()) {
          const latent = pixels[k] ? encoded.slice(j * per, (j + 1) * per) : null;
          if (latent) j += 1;
          out.push({ key: group.keys[i]!, imageSha256: usable(i) ? sha256Hex(group.images[i]!) : null, latent });
        }
        rowsDone += out.length;
        await onRows(rowsDone);
        yield out;
      }
    }
  }
  try {
    const written = await writeLatentShard(storage, uri, meta, rows(), rowGroupSize);
    return { source: source.uri, sourceSha256: source.sha256, uri, sha256: written.sha256, rows: written.rows };
  } finally {
    reader.close();
  }
}

async function encode(codec: LatentCodec, values: Float32Array, n: number, R: number): Promise<Float32Array> {
  const images = tf.tensor4d(values, [n, R, R, 3]);
  try {
    const z = await codec.encode(images);
    try {
      return (await z.data()) as Float32Array;
    } finally {
      z.dispose();
    }
  } finally {
    images.dispose();
  }
}
