/**
 * A finished source dataset version for stage tests, made as a crawl would make it: Parquet shards
 * written with ShardWriter, a manifest (with its counts by status), and the lineage records (the
 * crawl.manifest run that produced the shards and the manifest, the dataset version).
 */
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import type { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout, shardRelativePath } from '../../datasets/shards/layout.js';
import { writeDatasetManifest, type DatasetManifest } from '../../datasets/shards/manifest.js';
import type { RowStatus, ShardRow } from '../../datasets/shards/schema.js';
import { ShardWriter } from '../../datasets/shards/writer.js';

/** Write `name@v1` with one shard per entry of `shards` (`extraColumns`: the rows' extra columns) and record it. */
export async function writeDatasetVersion(
  storage: ArtifactStorage,
  lineage: LineageStore,
  name: string,
  shards: ShardRow[][],
  extraColumns: string[],
): Promise<DatasetManifest> {
  const layout = new DatasetLayout(storage, name, 1);
  const written: DatasetManifest['shards'] = [];
  const counts: Partial<Record<RowStatus, number>> = {};
  const runId = `source-${name}/crawl/manifest`;
  lineage.startRun({ id: runId, stage: 'crawl.manifest', params: {}, codeVersion: 'test' });
  for (const [i, rows] of shards.entries()) {
    const w = await ShardWriter.open(storage, layout.shardUri(i), { columns: { extra: extraColumns } });
    for (const r of rows) {
      await w.append(r);
      counts[r.status] = (counts[r.status] ?? 0) + 1;
    }
    const shard = await w.commit();
    lineage.recordArtifactOfRun(runId, 'produced', {
      uri: shard.uri,
      kind: 'dataset-shard',
      sha256: shard.sha256,
      bytes: shard.bytes,
    });
    written.push({ index: i, path: shardRelativePath(i), rows: shard.rows, sha256: shard.sha256, bytes: shard.bytes });
  }
  const manifest: DatasetManifest = {
    id: layout.id,
    name,
    version: 1,
    parents: [],
    schemaVersion: SHARD_SCHEMA_VERSION,
    stage: 'crawl',
    params: {},
    createdAt: new Date().toISOString(),
    rows: written.reduce((n, s) => n + s.rows, 0),
    countsByStatus: counts,
    shards: written,
  };
  const ref = await writeDatasetManifest(storage, manifest);
  const artifact = lineage.recordArtifactOfRun(runId, 'produced', { ...ref, kind: 'dataset-manifest' });
  lineage.recordDatasetVersion({
    id: layout.id,
    name,
    version: 1,
    manifestArtifactId: artifact.id,
    parents: [],
    schemaVersion: SHARD_SCHEMA_VERSION,
    params: {},
    runId,
  });
  lineage.finishRun(runId, 'completed');
  return manifest;
}
