/**
 * Where a dataset version's files live. Every path is a pure function of (dataset name, version,
 * shard index), built from validated segments through ArtifactStorage:
 *
 *   datasets/<name>/v<version>/manifest.json
 *   datasets/<name>/v<version>/claim.json                     (which plan fingerprint took this version)
 *   datasets/<name>/v<version>/plan.json                      (crawl plan, written before shards)
 *   datasets/<name>/v<version>/input/input-000012.jsonl       (input shard 12)
 *   datasets/<name>/v<version>/shards/shard-000012.parquet    (output shard 12)
 *   datasets/<name>/v<version>/shards/shard-000012.stats.json
 *   datasets/<name>/v<version>/attempts/shard-000012/...      (attempt journal of shard 12)
 */
import { assertSafeSegment, type ArtifactStorage } from '../../infra/storage.js';

/** The lineage id of a dataset version, e.g. `laion-mini@v3`. */
export function datasetVersionId(name: string, version: number): string {
  return `${assertSafeSegment(name, 'dataset name')}@v${assertVersion(version)}`;
}

function assertVersion(version: number): number {
  if (!Number.isInteger(version) || version < 1)
    throw new RangeError(`dataset version must be a positive integer, got ${version}`);
  return version;
}

const pad = (i: number) => {
  if (!Number.isInteger(i) || i < 0) throw new RangeError(`shard index must be a non-negative integer, got ${i}`);
  return String(i).padStart(6, '0');
};

/** File name of output shard `i` relative to the version directory. */
export const shardRelativePath = (i: number) => `shards/shard-${pad(i)}.parquet`;
export const statsRelativePath = (i: number) => `shards/shard-${pad(i)}.stats.json`;

/** URIs of one dataset version. */
export class DatasetLayout {
  readonly dirUri: string;
  constructor(
    private readonly storage: ArtifactStorage,
    readonly name: string,
    readonly version: number,
  ) {
    assertSafeSegment(name, 'dataset name');
    this.dirUri = storage.uri('datasets', name, `v${assertVersion(version)}`);
  }
  get id(): string {
    return datasetVersionId(this.name, this.version);
  }
  get manifestUri(): string {
    return this.storage.child(this.dirUri, 'manifest.json');
  }
  get claimUri(): string {
    return this.storage.child(this.dirUri, 'claim.json');
  }
  get planUri(): string {
    return this.storage.child(this.dirUri, 'plan.json');
  }
  get shardsDirUri(): string {
    return this.storage.child(this.dirUri, 'shards');
  }
  get inputDirUri(): string {
    return this.storage.child(this.dirUri, 'input');
  }
  shardUri(i: number): string {
    return this.storage.child(this.dirUri, 'shards', `shard-${pad(i)}.parquet`);
  }
  statsUri(i: number): string {
    return this.storage.child(this.dirUri, 'shards', `shard-${pad(i)}.stats.json`);
  }
  /** Shard i's attempt journal (datasets/crawl/attempts.ts): one small record per attempt start / end. */
  attemptsDirUri(i: number): string {
    return this.storage.child(this.dirUri, 'attempts', `shard-${pad(i)}`);
  }
  inputShardUri(i: number): string {
    return this.storage.child(this.dirUri, 'input', `input-${pad(i)}.jsonl`);
  }
  /** Resolve a manifest-relative path (`shards/shard-000001.parquet`) to a URI. */
  resolve(relativePath: string): string {
    return this.storage.child(this.dirUri, ...relativePath.split('/'));
  }
}
