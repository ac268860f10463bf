/**
 * A pipeline's job identity from its spec (issue 19): `<name>-<12 hex>`, the hash of the validated
 * spec in canonical form (defaults filled, keys sorted: comments, key order, formatting and the
 * spec file's own path do not count) plus the size and modification time of each source file (an
 * edited URL list is new work). The same spec run again names the same Temporal workflow, so a rerun
 * after a crash attaches to it or resumes it instead of starting a twin.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import type { PipelineSpec } from './schema.js';

/** JSON with object keys sorted at every level (arrays keep their order). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The default job id of a loaded spec (paths already absolute, as loadSpec leaves them). */
export function specJobId(spec: PipelineSpec): string {
  const sources = spec.sources.map((s) => {
    const local = s.path.startsWith('file://') ? new URL(s.path).pathname : s.path;
    try {
      const st = statSync(local);
      return { path: s.path, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
    } catch {
      return { path: s.path };
    }
  });
  const hash = createHash('sha256').update(canonicalJson({ spec, sources })).digest('hex').slice(0, 12);
  const name = String(spec.name ?? 'pipeline').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+/, '').slice(0, 80) || 'pipeline';
  return `${name}-${hash}`;
}
