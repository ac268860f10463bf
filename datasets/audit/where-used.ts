/**
 * Takedown audits: where is a URL, an image (sha256 of its original bytes) or a whole domain used?
 * Scans every recorded dataset version's shards (only the url, sha256, key and status columns,
 * streamed) and follows lineage from each matching dataset version to the training runs that
 * consumed it and the checkpoints they produced.
 */
import type { ArtifactStorage } from '../../infra/storage.js';
import type { ArtifactRecord, LineageStore } from '../../infra/lineage/store.js';
import { ConfigError } from '../../infra/errors.js';
import { readShardRows } from '../shards/reader.js';
import { parseManifest, manifestShardUris } from '../shards/manifest.js';

export type WhereUsedQuery =
  { kind: 'url'; url: string } | { kind: 'sha256'; sha256: string } | { kind: 'domain'; domain: string };

/** Tell what the user gave: a 64-hex sha256, an http(s) URL, or a domain name. */
export function parseWhereUsedQuery(ref: string): WhereUsedQuery {
  const s = ref.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return { kind: 'sha256', sha256: s.toLowerCase() };
  if (/^https?:\/\//i.test(s)) return { kind: 'url', url: s };
  if (/^[A-Za-z0-9.-]+(:\d+)?$/.test(s) && s.includes('.')) return { kind: 'domain', domain: s.toLowerCase() };
  throw new ConfigError(
    `${JSON.stringify(ref)} is neither a URL, a sha256 nor a domain`,
    'pass an http(s) URL, the 64-hex sha256 of the original image bytes, or a domain such as example.com.',
  );
}

function matcher(q: WhereUsedQuery): (url: string | null, sha: string | null) => boolean {
  if (q.kind === 'sha256') return (_u, sha) => sha === q.sha256;
  if (q.kind === 'url') return (u) => u === q.url;
  return (u) => {
    if (!u) return false;
    try {
      const host = new URL(u).host.toLowerCase();
      return host === q.domain || host.endsWith(`.${q.domain}`) || new URL(u).hostname.toLowerCase() === q.domain;
    } catch {
      return false;
    }
  };
}

export interface WhereUsedRow {
  datasetId: string;
  shardUri: string;
  key: string;
  url: string;
  status: string;
}

export interface WhereUsedResult {
  query: WhereUsedQuery;
  rows: WhereUsedRow[];
  datasetVersions: string[];
  /** Checkpoint files produced by runs that consumed a matching dataset version. */
  checkpoints: ArtifactRecord[];
  trainingRuns: string[];
  shardsScanned: number;
}

export async function whereUsed(
  store: LineageStore,
  storage: ArtifactStorage,
  q: WhereUsedQuery,
  opts: { maxRows?: number } = {},
): Promise<WhereUsedResult> {
  const match = matcher(q);
  const rows: WhereUsedRow[] = [];
  const datasets = new Set<string>();
  let shardsScanned = 0;
  for (const dv of store.allDatasetVersions()) {
    const manifestArtifact = store.getArtifact(dv.manifestArtifactId);
    if (!manifestArtifact || !(await storage.exists(manifestArtifact.uri))) continue;
    const manifest = parseManifest(await storage.readText(manifestArtifact.uri), manifestArtifact.uri);
    for (const shardUri of manifestShardUris(storage, manifest)) {
      shardsScanned++;
      for await (const r of readShardRows(storage, shardUri, { columns: ['key', 'url', 'sha256', 'status'] })) {
        if (!match(r.url, r.sha256)) continue;
        datasets.add(dv.id);
        if (rows.length < (opts.maxRows ?? 10_000))
          rows.push({ datasetId: dv.id, shardUri, key: r.key, url: r.url, status: r.status });
      }
    }
  }
  const checkpoints = new Map<number, ArtifactRecord>();
  const trainingRuns = new Set<string>();
  for (const id of datasets) {
    const dv = store.getDatasetVersion(id)!;
    for (const run of store.runsOfArtifact(dv.manifestArtifactId, 'consumed')) {
      for (const a of store.artifactsOfRun(run.id, 'produced')) {
        if (a.kind.startsWith('checkpoint')) {
          checkpoints.set(a.id, a);
          trainingRuns.add(run.id);
        }
      }
    }
  }
  return {
    query: q,
    rows,
    datasetVersions: [...datasets],
    checkpoints: [...checkpoints.values()],
    trainingRuns: [...trainingRuns],
    shardsScanned,
  };
}
