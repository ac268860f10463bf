/**
 * Reference statistics (mean, covariance of a reference image set's features) computed once and
 * cached through ArtifactStorage, keyed by (reference set hash, extractor sha256). A second
 * evaluation with the same reference set and extractor reads the cached file instead of
 * re-extracting thousands of images.
 *
 * Layout: <root>/eval/reference-stats/ref-<set hash>.ext-<extractor sha256>.safetensors
 * (F64 `mean` and `cov`, F32 `features` [n, dim] for KID; metadata repeats both keys and the sample
 * count). The set hash covers the selection (cap, resolution), so a different cap is another entry.
 * An entry without `features` (written before KID) is recomputed.
 */
import { sha256Hex } from '../infra/hash.js';
import type { ArtifactStorage } from '../infra/storage.js';
import {
  decodeStatistics,
  encodeStatistics,
  FeatureStatisticsError,
  type FeatureRowsF32,
  type FeatureStatistics,
} from './statistics.js';

export interface ReferenceStatsKey {
  /** Hash naming the reference image set (see {@link hashReferenceSet}). */
  referenceSetHash: string;
  /** sha256 of the extractor's model file. */
  extractorSha256: string;
}

export interface ReferenceStats {
  key: ReferenceStatsKey;
  uri: string;
  /** sha256 of the cached statistics file: the "reference statistics hash" of the eval protocol. */
  statsSha256: string;
  stats: FeatureStatistics;
  /** The reference feature rows (float32 [count, dim]), for KID. */
  features: FeatureRowsF32;
  /** true when read from the cache, false when computed by this call. */
  fromCache: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Order-independent hash of a reference set from its members' ids and content hashes
 * (e.g. dataset row keys and image sha256). Duplicated ids are an error.
 */
export function hashReferenceSet(members: Iterable<{ id: string; sha256: string }>): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const m of members) {
    if (seen.has(m.id))
      throw new FeatureStatisticsError(
        `reference set lists ${JSON.stringify(m.id)} twice`,
        'give every reference image a unique id.',
      );
    seen.add(m.id);
    lines.push(`${m.id}\t${m.sha256}`);
  }
  lines.sort();
  return sha256Hex(`kiln-reference-set-v1\n${lines.join('\n')}\n`);
}

/** URI where the statistics for `key` are cached. */
export function referenceStatsUri(storage: ArtifactStorage, key: ReferenceStatsKey): string {
  for (const [what, v] of [
    ['reference set hash', key.referenceSetHash],
    ['extractor sha256', key.extractorSha256],
  ] as const) {
    if (!HEX64.test(v))
      throw new FeatureStatisticsError(
        `${what} ${JSON.stringify(v)} is not a 64-character lowercase hex sha256`,
        "pass hashReferenceSet(...) and the extractor's modelSha256.",
      );
  }
  return storage.uri('eval', 'reference-stats', `ref-${key.referenceSetHash}.ext-${key.extractorSha256}.safetensors`);
}

/**
 * Cached reference statistics: returns the cached file when present and consistent with `key`,
 * otherwise calls `compute()` once, writes the result atomically and returns it. Idempotent: two
 * concurrent callers may both compute, and the last atomic rename wins with equivalent content.
 */
export async function referenceStatistics(
  storage: ArtifactStorage,
  key: ReferenceStatsKey,
  compute: () => Promise<{ stats: FeatureStatistics; features: FeatureRowsF32 }>,
): Promise<ReferenceStats> {
  const uri = referenceStatsUri(storage, key);
  if (await storage.exists(uri)) {
    const bytes = await storage.read(uri);
    try {
      const { stats, metadata, features } = decodeStatistics(bytes);
      if (
        features &&
        features.count === stats.count &&
        metadata.reference_set_hash === key.referenceSetHash &&
        metadata.extractor_sha256 === key.extractorSha256
      ) {
        return { key, uri, statsSha256: sha256Hex(bytes), stats, features, fromCache: true };
      }
    } catch (err) {
      if (!(err instanceof FeatureStatisticsError) && !(err instanceof SyntaxError)) throw err;
      // A damaged cache entry is derived data: fall through and recompute it.
    }
  }
  const { stats, features } = await compute();
  const written = await storage.writeAtomic(
    uri,
    encodeStatistics(
      stats,
      {
        reference_set_hash: key.referenceSetHash,
        extractor_sha256: key.extractorSha256,
      },
      features,
    ),
  );
  return { key, uri, statsSha256: written.sha256, stats, features, fromCache: false };
}
