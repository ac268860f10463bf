/**
 * A small source dataset version for the filter tests: 2 Parquet shards (success rows with the
 * fixture images, failed rows, an undecodable image, a row without caption, an extra column), with
 * its manifest and lineage records (test/helpers/dataset-version.ts).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ArtifactStorage } from '../../infra/storage.js';
import type { LineageStore } from '../../infra/lineage/store.js';
import type { DatasetManifest } from '../../datasets/shards/manifest.js';
import type { RowStatus, ShardRow } from '../../datasets/shards/schema.js';
import { writeDatasetVersion } from '../helpers/dataset-version.js';
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
export function writeSourceDataset(
  storage: ArtifactStorage,
  lineage: LineageStore,
  name: string,
): Promise<DatasetManifest> {
  return writeDatasetVersion(storage, lineage, name, sourceRows(), ['source_id']);
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
