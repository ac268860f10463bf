/**
 * Invariants checked after every chaos trial. Each check returns a list of problems (empty: holds).
 * - every input row is in the output exactly once, with a status;
 * - no partial file is visible (storage.list hides `.kiln-tmp-` files; nothing else looks partial);
 * - manifest shard sha256 == file sha256 == lineage artifact sha256; manifest hash == lineage;
 * - the lineage hash chain verifies; every user-facing error carries "Fix:".
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage, type ArtifactStorage } from '../infra/storage.js';
import { LineageStore } from '../infra/lineage/store.js';
import { readDatasetManifest, manifestShardUris } from '../datasets/shards/manifest.js';
import { readShardRows } from '../datasets/shards/reader.js';
import { ROW_STATUSES, rowKey } from '../datasets/shards/schema.js';
import { DatasetLayout } from '../datasets/shards/layout.js';

const TEMP_MARK = '.kiln-tmp-';

/** The keys a crawl of `rows` input rows (one source) must produce. */
export function expectedKeys(rows: number, rowsPerShard: number): string[] {
  return Array.from({ length: rows }, (_, i) => rowKey(Math.floor(i / rowsPerShard), i % rowsPerShard, rowsPerShard));
}

export interface DatasetCheck {
  problems: string[];
  keys: string[];
  rows: number;
  byStatus: Record<string, number>;
  captions: Map<string, string | null>;
}

/** Read a dataset version back: hashes vs manifest vs lineage, every row once with a status. */
export async function checkDataset(
  dataRoot: string,
  name: string,
  version: number,
  expected?: readonly string[],
  where: { storage?: ArtifactStorage; lineagePath?: string } = {},
): Promise<DatasetCheck> {
  const problems: string[] = [];
  const storage = where.storage ?? new LocalStorage(dataRoot);
  const manifest = await readDatasetManifest(storage, name, version);
  const store = new LineageStore(where.lineagePath ?? join(dataRoot, 'lineage.db'));
  const keys: string[] = [];
  const byStatus: Record<string, number> = {};
  const captions = new Map<string, string | null>();
  try {
    const manifestUri = new DatasetLayout(storage, name, version).manifestUri;
    const recorded = store.getArtifactByUri(manifestUri);
    const actual = await storage.sha256(manifestUri);
    if (!recorded) problems.push(`${name}@v${version}: manifest not recorded in lineage`);
    else if (recorded.sha256 !== actual)
      problems.push(
        `${name}@v${version}: manifest sha256 ${actual.slice(0, 12)} != lineage ${recorded.sha256.slice(0, 12)}`,
      );
    const uris = manifestShardUris(storage, manifest);
    for (const [i, shard] of manifest.shards.entries()) {
      const uri = uris[i]!;
      const sha = await storage.sha256(uri);
      if (sha !== shard.sha256)
        problems.push(`${shard.path}: file sha256 ${sha.slice(0, 12)} != manifest ${shard.sha256.slice(0, 12)}`);
      const art = store.getArtifactByUri(uri);
      if (!art) problems.push(`${shard.path}: not recorded in lineage`);
      else if (art.sha256 !== sha)
        problems.push(`${shard.path}: lineage sha256 ${art.sha256.slice(0, 12)} != file ${sha.slice(0, 12)}`);
      let n = 0;
      for await (const row of readShardRows(storage, uri)) {
        n++;
        keys.push(row.key);
        captions.set(row.key, row.caption);
        byStatus[row.status] = (byStatus[row.status] ?? 0) + 1;
        if (!ROW_STATUSES.includes(row.status)) problems.push(`row ${row.key}: status ${JSON.stringify(row.status)}`);
      }
      if (n !== shard.rows) problems.push(`${shard.path}: ${n} rows read, manifest says ${shard.rows}`);
    }
  } finally {
    store.close();
  }
  if (manifest.rows !== keys.length)
    problems.push(`${name}@v${version}: manifest rows ${manifest.rows} != rows read ${keys.length}`);
  const seen = new Set<string>();
  const dups = keys.filter((k) => (seen.has(k) ? true : (seen.add(k), false)));
  if (dups.length) problems.push(`${name}@v${version}: ${dups.length} duplicate keys (e.g. ${dups[0]})`);
  if (expected) {
    const want = new Set(expected);
    const missing = expected.filter((k) => !seen.has(k));
    const extra = [...seen].filter((k) => !want.has(k));
    if (missing.length) problems.push(`${name}@v${version}: ${missing.length} input rows missing (e.g. ${missing[0]})`);
    if (extra.length) problems.push(`${name}@v${version}: ${extra.length} unexpected keys (e.g. ${extra[0]})`);
  }
  return { problems, keys, rows: keys.length, byStatus, captions };
}

/** All files under dir (relative paths), skipping `skip` top-level names. */
export function walk(dir: string, skip: readonly string[] = []): string[] {
  const out: string[] = [];
  const rec = (d: string, rel: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      if (!rel && skip.includes(n)) continue;
      const p = join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) rec(p, r);
      else out.push(r);
    }
  };
  rec(dir, '');
  return out;
}

/**
 * No partial file visible: `storage.list` never returns a temp name anywhere under the root, and
 * no artifact directory holds a temp file whose final name is absent. Returns [problems, hidden temp count].
 */
export async function checkNoPartialFiles(dataRoot: string): Promise<{ problems: string[]; hiddenTemps: number }> {
  const storage = new LocalStorage(dataRoot);
  const problems: string[] = [];
  const files = walk(dataRoot, ['temporal']);
  const temps = files.filter((f) => f.split('/').pop()!.includes(TEMP_MARK));
  const dirs = new Set(files.map((f) => f.split('/').slice(0, -1).join('/')).filter((d) => d));
  for (const d of dirs) {
    let names: string[];
    try {
      names = await storage.list(storage.uri(...d.split('/')));
    } catch {
      continue; // a directory whose name is not a safe segment is not an artifact directory
    }
    const leaked = names.filter((n) => n.includes(TEMP_MARK));
    if (leaked.length) problems.push(`storage.list(${d}) shows temp files: ${leaked.join(', ')}`);
  }
  return { problems, hiddenTemps: temps.length };
}

/** LineageStore.verify() on the data root's lineage.db. */
export function checkLineage(dataRoot: string): string[] {
  const store = new LineageStore(join(dataRoot, 'lineage.db'));
  try {
    const v = store.verify();
    return v.ok ? [] : [`lineage verify: ${JSON.stringify(v.problems).slice(0, 300)}`];
  } finally {
    store.close();
  }
}

/** A user-facing error must name the fix. */
export function checkFix(text: string, what: string): string[] {
  return text.includes('Fix:')
    ? []
    : [`${what}: error has no "Fix:" (${text.trim().split('\n').slice(-2).join(' | ').slice(0, 200)})`];
}
