/**
 * A small source dataset version for the filter tests: 2 Parquet shards written with ShardWriter
 * (success rows with the fixture images, failed rows, an undecodable image, a row without caption,
 * an extra column), a manifest, and the lineage records a crawl would have made.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import type { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout, shardRelativePath } from '../../datasets/shards/layout.js';
import { writeDatasetManifest, type DatasetManifest } from '../../datasets/shards/manifest.js';
import type { RowStatus, ShardRow } from '../../datasets/shards/schema.js';
import { ShardWriter } from '../../datasets/shards/writer.js';
import { python } from '../helpers/env.js';
import { MODELS } from '../filter/fixtures.js';

const img = (name: string) => new Uint8Array(readFileSync(`${MODELS}/images/${name}`));
const GARBAGE = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

type Spec = [image: string | null, caption: string | null, status?: RowStatus, error?: string];
/** Rows per shard: [image file | 'garbage' | null, caption, status, error_message]. */
export const SOURCE_ROWS: Spec[][] = [
  [
    ['checker_40x56.jpg', 'a red and blue checkerboard pattern'],
    ['gradient_96x64.png', 'a smooth gradient from green to purple'],
    [null, 'a lost picture', 'failed_to_download', 'http_404: Not Found'],
    ['circles_30x20.webp', 'two circles on a dark background'],
    ['garbage', 'a broken image'],
    ['grey_48x48.jpg', 'a grey square with soft shading'],
    ['noise_rgba_32x32.png', 'colourful noise with a transparent corner'],
  ],
  [
    ['checker_40x56.jpg', 'a grey square'],
    [null, 'tiny', 'failed_to_resize', 'image_too_small: 10x10 < 30'],
    ['gradient_96x64.png', 'a checkerboard'],
    ['grey_48x48.jpg', null],
    ['circles_30x20.webp', 'colourful noise'],
    ['noise_rgba_32x32.png', 'a gradient from green to purple'],
  ],
];

/** Build the row objects of SOURCE_ROWS (keys "000000000", ...). */
export function sourceRows(): ShardRow[][] {
  let n = 0;
  return SOURCE_ROWS.map((shard, s) =>
    shard.map(([image, caption, status, error]) => {
      const i = n++;
      const jpg = image === null ? null : image === 'garbage' ? GARBAGE : img(image);
      return {
        key: `${String(s).padStart(6, '0')}${String(i).padStart(3, '0')}`,
        url: `http://127.0.0.1/img/${i}`,
        caption,
        status: status ?? 'success',
        error_message: error ?? null,
        width: jpg ? 32 : null,
        height: jpg ? 32 : null,
        original_width: jpg ? 40 : null,
        original_height: jpg ? 40 : null,
        sha256: jpg ? `${'0'.repeat(62)}${String(i).padStart(2, '0')}` : null,
        jpg,
        extra: { source_id: `src-${i}` },
      };
    }),
  );
}

/** Write `name@v1` from SOURCE_ROWS and record it in lineage as a crawl would. */
export async function writeSourceDataset(
  storage: ArtifactStorage,
  lineage: LineageStore,
  name: string,
): Promise<DatasetManifest> {
  const layout = new DatasetLayout(storage, name, 1);
  const shards: DatasetManifest['shards'] = [];
  const counts: Partial<Record<RowStatus, number>> = {};
  const runId = `source-${name}/crawl/manifest`;
  lineage.startRun({ id: runId, stage: 'crawl.manifest', params: {}, codeVersion: 'test' });
  for (const [i, rows] of sourceRows().entries()) {
    const w = await ShardWriter.open(storage, layout.shardUri(i), { columns: { extra: ['source_id'] } });
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
    shards.push({ index: i, path: shardRelativePath(i), rows: shard.rows, sha256: shard.sha256, bytes: shard.bytes });
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
    rows: shards.reduce((n, s) => n + s.rows, 0),
    countsByStatus: counts,
    shards,
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

/** Schema and rows (jpg as its length) of a Parquet file, read by pyarrow. */
export function pyarrowRead(path: string): { schema: [string, string][]; rows: Record<string, unknown>[] } {
  const code = `
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
rows = [{k: (len(v) if k == 'jpg' and v is not None else v) for k, v in r.items()} for r in t.to_pylist()]
print(json.dumps({'schema': [[f.name, str(f.type)] for f in t.schema], 'rows': rows}))
`;
  const r = spawnSync(python(), ['-c', code, path], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ReturnType<typeof pyarrowRead>;
}
