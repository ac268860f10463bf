/**
 * The last step of every sharded stage (crawl, filter, dedup): write the version's manifest once
 * (or reuse the one an earlier attempt wrote), record it as produced by the run (linking the shards
 * it lists), record the dataset version, and link the manifests it was derived from as consumed.
 */
import { manifestShardUris, reuseOrWriteManifest, type DatasetManifest } from '../datasets/shards/manifest.js';
import type { FileRef } from '../datasets/shards/stage-shard.js';
import type { ActivityDeps } from './deps.js';
import { recordDatasetManifest } from './recorded-artifact.js';

export async function recordVersionManifest(
  deps: ActivityDeps,
  runId: string,
  version: { datasetName: string; version: number; consumedManifestUris?: string[] },
  build: () => Promise<DatasetManifest>,
): Promise<{ ref: FileRef; manifest: DatasetManifest }> {
  const { ref, manifest } = await reuseOrWriteManifest(deps.storage, version.datasetName, version.version, build);
  for (const uri of version.consumedManifestUris ?? []) {
    const source = deps.lineage.getArtifactByUri(uri);
    if (source) deps.lineage.linkArtifact(runId, source.id, 'consumed');
  }
  recordDatasetManifest(deps, runId, ref, manifest, manifestShardUris(deps.storage, manifest));
  return { ref, manifest };
}
