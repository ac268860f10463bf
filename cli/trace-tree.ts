/**
 * `kiln lineage trace` as a readable tree: one short line per node. An artifact line gives its kind,
 * a short name (dataset version and file, or the last path segments), the first 12 hex of its
 * sha256 and its size; a run line gives its stage, status, short id and a few key params (scalars
 * only: thresholds, fractions, steps; never option blobs, URIs or ids). Nodes already shown
 * (shared model files, the same shard) print as one "seen above" line per kind, and a long list of
 * siblings of one kind shows the first few and a count. `--json` prints the whole record instead.
 */
import type { TraceNode, TraceResult } from '../infra/lineage/trace.js';
import type { ArtifactRecord, RunRecord } from '../infra/lineage/store.js';

/** Siblings of one kind shown before "... N more". */
const SIBLINGS_SHOWN = 3;
const KEY_PARAMS_SHOWN = 5;

/** Bytes as B / KiB / MiB / GiB with 3 significant digits. */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toPrecision(3)} ${units[u]}`;
}

/** A short name for an artifact: `<dataset id>:<file>` for dataset files, `<model>:<path>` for model files, else the last two path segments. */
export function shortName(a: ArtifactRecord, datasetId?: string): string {
  const path = decodeURIComponent(a.uri.replace(/#.*$/, '').replace(/^[a-z0-9+.-]+:\/\//i, ''));
  const parts = path.split('/').filter(Boolean);
  const ds = datasetId ?? (typeof a.metadata.datasetId === 'string' ? a.metadata.datasetId : undefined);
  if (ds) return `${ds}:${parts.at(-1) ?? path}`;
  if (typeof a.metadata.model === 'string' && typeof a.metadata.path === 'string')
    return `${a.metadata.model}:${a.metadata.path}`;
  return parts.slice(-2).join('/') || a.uri;
}

const isKeyParam = (k: string, v: unknown): boolean =>
  !/(^|[a-z])(id|Id|uri|Uri|dir|Dir|path|Path|jobId|workflowId)$/.test(k) &&
  k !== 'jobId' &&
  (typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 24 && !v.includes('/')));

/** Up to 5 scalar params of a run, `k=v`, in the order recorded. */
export function keyParams(params: unknown): string {
  if (!params || typeof params !== 'object') return '';
  const picked = Object.entries(params as Record<string, unknown>)
    .filter(([k, v]) => isKeyParam(k, v))
    .slice(0, KEY_PARAMS_SHOWN);
  return picked.map(([k, v]) => `${k}=${String(v)}`).join(' ');
}

function artifactLine(n: TraceNode): string {
  const a = n.artifact;
  const ds = n.datasetVersion ? ` [dataset ${n.datasetVersion.id}]` : '';
  return `${a.kind} ${shortName(a, n.datasetVersion?.id)} ${a.sha256.slice(0, 12)} ${humanBytes(a.bytes)}${ds}`;
}

function runLine(r: RunRecord): string {
  const params = keyParams(r.params);
  return `<- ${r.stage} (${r.status}) ${r.id.split('/').slice(-2).join('/')}${params ? `  ${params}` : ''}`;
}

/** Render a trace as a tree (see the module comment). */
export function renderTraceTree(t: TraceResult): string {
  const lines: string[] = [];
  const walk = (n: TraceNode, prefix: string, last: boolean, root: boolean): void => {
    lines.push(root ? artifactLine(n) : `${prefix}${last ? '└─ ' : '├─ '}${artifactLine(n)}`);
    const inner = root ? '' : `${prefix}${last ? '   ' : '│  '}`;
    n.producedBy.forEach((p, i) => {
      const lastRun = i === n.producedBy.length - 1;
      lines.push(`${inner}${lastRun ? '└─ ' : '├─ '}${runLine(p.run)}`);
      const childPrefix = `${inner}${lastRun ? '   ' : '│  '}`;
      const rows = siblingsToShow(p.consumed);
      rows.forEach((row, k) => {
        const isLast = k === rows.length - 1;
        if (typeof row === 'string') lines.push(`${childPrefix}${isLast ? '└─ ' : '├─ '}${row}`);
        else walk(row, childPrefix, isLast, false);
      });
    });
  };
  walk(t.root, '', true, true);
  lines.push(
    '',
    `${t.runs.length} runs; code ${t.codeVersions.join(', ') || 'none'}; datasets ${t.datasetVersions.map((d) => d.id).join(', ') || 'none'}`,
  );
  lines.push(
    `sources: ${t.sources
      .map((s) => shortName(s))
      .slice(0, 5)
      .join(', ')}${t.sources.length > 5 ? `, ... (${t.sources.length} in all)` : ''}`,
  );
  return lines.join('\n');
}

/** Consumed nodes to print: new nodes (first few per kind), then one line per kind for the rest. */
function siblingsToShow(nodes: TraceNode[]): (TraceNode | string)[] {
  const shown: (TraceNode | string)[] = [];
  const perKind = new Map<string, { shown: number; more: number; seen: number }>();
  for (const n of nodes) {
    const k = perKind.get(n.artifact.kind) ?? { shown: 0, more: 0, seen: 0 };
    perKind.set(n.artifact.kind, k);
    if (n.seeAbove) k.seen++;
    else if (k.shown < SIBLINGS_SHOWN) {
      k.shown++;
      shown.push(n);
    } else k.more++;
  }
  for (const [kind, k] of perKind) {
    if (k.more) shown.push(`... ${k.more} more ${kind}`);
    if (k.seen) shown.push(`${k.seen} ${kind} (seen above)`);
  }
  return shown;
}
