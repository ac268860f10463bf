/**
 * A pipeline's job identity from its spec (issue 19): `<name>-<12 hex>`, the hash of the validated
 * spec in canonical form (defaults filled, keys sorted: comments, key order, formatting and the
 * spec file's own path do not count) plus the size and modification time of each source file (an
 * edited URL list is new work). The same spec run again names the same Temporal workflow, so a rerun
 * after a crash attaches to it or resumes it instead of starting a twin.
 */
import { statSync } from 'node:fs';
import { jobIdentity, type JobIdentity } from '../job-identity.js';
import type { PipelineSpec } from './schema.js';

/** The identity of a loaded spec (paths already absolute, as loadSpec leaves them). */
export function specIdentity(spec: PipelineSpec): JobIdentity {
  const sources = spec.sources.map((s) => {
    const local = s.path.startsWith('file://') ? new URL(s.path).pathname : s.path;
    try {
      const st = statSync(local);
      return { path: s.path, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
    } catch {
      return { path: s.path };
    }
  });
  return jobIdentity(String(spec.name ?? 'pipeline'), { spec, sources });
}

/** The default job id of a loaded spec. */
export function specJobId(spec: PipelineSpec): string {
  return specIdentity(spec).id;
}
