/**
 * Job identity (issue 19): a job's default id derives from what it does, so the same command run
 * again names the same Temporal workflow and attaches to it, resumes it or reports its result
 * instead of starting a twin. The identity's canonical content travels with the job (a workflow
 * memo, see `identityMemo`) so that a later, changed command can say which fields differ.
 */
import { createHash } from 'node:crypto';

export interface JobIdentity {
  /** The default workflow id: `<name>-<12 hex of the canonical content>`. */
  id: string;
  /** The job family's name (spec name, train run name, filter source): earlier jobs of it are compared. */
  name: string;
  hash: string;
  /** What the hash covers (plain JSON): diffed against an earlier job's. */
  content: unknown;
}

/** JSON with object keys sorted at every level (arrays keep their order; undefined fields drop out). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** A path-safe identity: `<name>-<hash>` where the name keeps only [A-Za-z0-9._-]. */
export function jobIdentity(name: string, content: unknown): JobIdentity {
  const canonical = canonicalJson(content);
  const hash = createHash('sha256').update(canonical).digest('hex').slice(0, 12);
  const safe =
    name
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^[-.]+/, '')
      .slice(0, 80) || 'job';
  return { id: `${safe}-${hash}`, name: safe, hash, content: JSON.parse(canonical) as unknown };
}

/** The memo key under which a job's identity is stored with its workflow. */
export const IDENTITY_MEMO_KEY = 'kilnIdentity';

export interface IdentityMemo {
  name: string;
  hash: string;
  content: unknown;
}

export function identityMemo(i: JobIdentity): Record<string, IdentityMemo> {
  return { [IDENTITY_MEMO_KEY]: { name: i.name, hash: i.hash, content: i.content } };
}

/** The identity stored in a workflow's memo, if any. */
export function identityOfMemo(memo: Record<string, unknown> | undefined): IdentityMemo | undefined {
  const m = memo?.[IDENTITY_MEMO_KEY] as IdentityMemo | undefined;
  return m && typeof m.name === 'string' && typeof m.hash === 'string' ? m : undefined;
}

const short = (v: unknown) => {
  const s = v === undefined ? '(none)' : canonicalJson(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/**
 * The leaf fields that differ between two identities' contents, as `path: old -> new` lines
 * (`crawl.image_size: 64 -> 128`, `sources.0.size: 120 -> 240`).
 */
export function changedFields(before: unknown, after: unknown, path = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object';
  if (isObj(before) && isObj(after) && Array.isArray(before) === Array.isArray(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort((a, b) =>
      a.localeCompare(b, 'en', { numeric: true }),
    );
    return keys.flatMap((k) => changedFields(before[k], after[k], path ? `${path}.${k}` : k));
  }
  return canonicalJson(before) === canonicalJson(after)
    ? []
    : [`${path || '(all)'}: ${short(before)} -> ${short(after)}`];
}
