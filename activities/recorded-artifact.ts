/**
 * Idempotent "write an artifact and record it" used by activities: if the URI already holds an
 * artifact recorded in lineage with the same content hash, nothing is rewritten.
 */
import { sha256Hex } from '../infra/hash.js';
import type { ActivityDeps } from './deps.js';
import type { ArtifactRecord } from '../infra/lineage/store.js';
import type { DatasetManifest } from '../datasets/shards/manifest.js';

export async function writeRecordedArtifact(
  deps: ActivityDeps,
  runId: string,
  a: { uri: string; kind: string; content: Uint8Array | string; metadata?: Record<string, unknown> },
): Promise<{ uri: string; sha256: string; bytes: number }> {
  const sha256 = sha256Hex(a.content);
  const recorded = deps.lineage.getArtifactByUri(a.uri);
  const onDisk = await deps.storage.size(a.uri);
  let written = {
    uri: a.uri,
    sha256,
    bytes: typeof a.content === 'string' ? Buffer.byteLength(a.content) : a.content.byteLength,
  };
  if (!(recorded && recorded.sha256 === sha256 && onDisk === recorded.bytes)) {
    written = await deps.storage.writeAtomic(a.uri, a.content);
  }
  deps.lineage.recordArtifactOfRun(runId, 'produced', {
    uri: a.uri,
    kind: a.kind,
    sha256: written.sha256,
    bytes: written.bytes,
    metadata: a.metadata,
  });
  return { uri: written.uri, sha256: written.sha256, bytes: written.bytes };
}

/**
 * Link every shard a dataset manifest lists as `consumed` by the run that wrote the manifest, so
 * a lineage trace walks from a dataset version down to its shards and the runs that made them.
 */
function linkManifestShards(deps: ActivityDeps, runId: string, shardUris: readonly string[]): number {
  let linked = 0;
  for (const uri of shardUris) {
    const a = deps.lineage.getArtifactByUri(uri);
    if (a) {
      deps.lineage.linkArtifact(runId, a.id, 'consumed');
      linked++;
    }
  }
  return linked;
}

/**
 * Record a dataset version's manifest as produced by `runId` (linking the shards it lists as
 * consumed) and the dataset version itself, with its parents, schema version and params.
 */
export function recordDatasetManifest(
  deps: ActivityDeps,
  runId: string,
  ref: { uri: string; sha256: string; bytes: number },
  manifest: DatasetManifest,
  shardUris: readonly string[],
): ArtifactRecord {
  linkManifestShards(deps, runId, shardUris);
  const artifact = deps.lineage.recordArtifactOfRun(runId, 'produced', {
    ...ref,
    kind: 'dataset-manifest',
    metadata: { datasetId: manifest.id, rows: manifest.rows },
  });
  deps.lineage.recordDatasetVersion({
    id: manifest.id,
    name: manifest.name,
    version: manifest.version,
    manifestArtifactId: artifact.id,
    parents: manifest.parents,
    schemaVersion: manifest.schemaVersion,
    params: manifest.params,
    runId,
  });
  return artifact;
}
