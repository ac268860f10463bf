/** Shared helpers of the crawl tests. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { python } from '../helpers/env.js';
import type { CrawlOptions } from '../../datasets/crawl/options.js';

/** Crawl options for loopback fixtures: 127.0.0.1 allowed, short timeouts, small images. */
export const TEST_CRAWL_OPTIONS: Partial<CrawlOptions> = {
  allowAddresses: ['127.0.0.1'],
  timeoutMs: 1500,
  retries: 2,
  retryBaseDelayMs: 50,
  retryMaxDelayMs: 2000,
  maxBytes: 1024 * 1024,
  maxRedirects: 5,
  maxPixels: 10_000_000,
  minImageSize: 30,
  maxAspectRatio: 5,
  imageSize: 64,
  resizeMode: 'center_crop',
  concurrency: 16,
};

/** Write a JSONL URL list. */
export function writeJsonl(dir: string, name: string, rows: Record<string, unknown>[]): string {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return p;
}

/** Run Python (the project's .venv, with pyarrow) and parse its stdout as JSON. */
export function pyJson(code: string, args: string[] = []): unknown {
  const r = spawnSync(python(), ['-c', code, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Schema, row count, row groups, metadata and (key -> status/error/sha/dims) of a Parquet file, read by pyarrow. */
export function pyarrowDescribe(path: string): {
  schema: [string, string, boolean][];
  rows: number;
  rowGroups: number;
  metadata: Record<string, string>;
  compression: string[];
  byKey: Record<
    string,
    {
      status: string;
      error_message: string | null;
      width: number | null;
      height: number | null;
      original_width: number | null;
      original_height: number | null;
      sha256: string | null;
      jpg_len: number | null;
      url: string;
      caption: string | null;
    }
  >;
} {
  return pyJson(
    `
import json, sys, pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
md = {k.decode(): v.decode() for k, v in (f.metadata.metadata or {}).items() if not k.startswith(b'ARROW')}
comp = sorted({f.metadata.row_group(g).column(c).compression for g in range(f.metadata.num_row_groups) for c in range(f.metadata.num_columns)})
rows = t.to_pylist()
by = {r['key']: {k: (len(v) if k == 'jpg' and v is not None else v) for k, v in r.items() if k != 'key'} for r in rows}
for v in by.values(): v['jpg_len'] = v.pop('jpg')
print(json.dumps({'schema': [[fl.name, str(fl.type), fl.nullable] for fl in t.schema], 'rows': t.num_rows, 'rowGroups': f.metadata.num_row_groups,
  'metadata': md, 'compression': comp, 'byKey': by}))
`,
    [path],
  ) as ReturnType<typeof pyarrowDescribe>;
}
