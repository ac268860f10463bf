/**
 * The source of a derived stage (filter, dedup): a finished dataset version pinned by its
 * manifest's sha256, with its shards' URIs and hashes, so every shard of the run reads exactly the
 * bytes that were planned (datasets are immutable; a changed source is an ArtifactConflictError).
 */
import { sha256Hex } from '../../infra/hash.js';
import { ArtifactConflictError, MissingFileError } from '../../infra/errors.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout } from './layout.js';
import { manifestShardUris, parseManifest } from './manifest.js';

export interface PinnedSourceShard {
  index: number;
  uri: string;
  sha256: string;
  rows: number;
  bytes: number;
}

export interface PinnedSource {
  id: string;
  version: number;
  manifestUri: string;
  manifestSha256: string;
  rows: number;
  shards: PinnedSourceShard[];
}

/** Pin `name@vN` (its manifest must exist: the version is finished). `stage` names the stage in the fix. */
export async function pinSourceVersion(
  storage: ArtifactStorage,
  name: string,
  version: number,
  stage: string,
): Promise<PinnedSource> {
  const layout = new DatasetLayout(storage, name, version);
  if (!(await storage.exists(layout.manifestUri))) {
    throw new MissingFileError(
      `source dataset ${layout.id} has no manifest at ${layout.manifestUri}`,
      `${stage} a finished dataset version: crawl ${name} first (kiln run spec.yaml), or pass a version that exists (kiln lineage jobs lists them).`,
    );
  }
  const text = await storage.readText(layout.manifestUri);
  const manifest = parseManifest(text, layout.manifestUri);
  const uris = manifestShardUris(storage, manifest);
  return {
    id: manifest.id,
    version: manifest.version,
    manifestUri: layout.manifestUri,
    manifestSha256: sha256Hex(text),
    rows: manifest.rows,
    shards: manifest.shards.map((s, k) => ({
      index: s.index,
      uri: uris[k]!,
      sha256: s.sha256,
      rows: s.rows,
      bytes: s.bytes,
    })),
  };
}

/** Check a pinned source shard still has its sha256. */
export async function verifyPinnedShard(storage: ArtifactStorage, src: PinnedSourceShard, fix: string): Promise<void> {
  if ((await storage.size(src.uri)) === null) throw new MissingFileError(`source shard ${src.uri} is missing`, fix);
  const sha = await storage.sha256(src.uri);
  if (sha !== src.sha256) throw new ArtifactConflictError(src.uri, src.sha256, sha);
}
