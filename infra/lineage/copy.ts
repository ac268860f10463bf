/**
 * `kiln lineage copy --to postgres://...`: move a lineage store to another backend (SQLite ->
 * PostgreSQL, or back) row for row: every table, the hash-chained log verbatim (same seq, hashes
 * and row images), the seen index. The target must be empty. Both chains are verified, and the
 * copy is refused unless they agree (same entries, same head hash, same rows).
 */
import { KilnError } from '../errors.js';
import { CHAINED_TABLES } from './chain.js';
import type { VerifyReport } from './chain.js';
import type { LineageStore } from './store.js';
import type { Row } from './sql.js';

export class LineageCopyError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_LINEAGE_COPY', problem, fix);
  }
}

export interface CopyReport {
  tables: Record<string, number>;
  source: VerifyReport & { head: string };
  target: VerifyReport & { head: string };
}

/** Tables in an order that satisfies the foreign keys (jobs.parent_job_id is set in a second pass). */
const ORDER = ['jobs', 'runs', 'artifacts', 'edges', 'dataset_versions', 'lineage_log', 'seen_items'] as const;
const PAGE = 2000;

function head(store: LineageStore): string {
  return (
    (store.sql.prepare('SELECT hash FROM lineage_log ORDER BY seq DESC LIMIT 1').get()?.hash as string | undefined) ??
    ''
  );
}

export function copyLineage(from: LineageStore, to: LineageStore): CopyReport {
  const source = from.verify();
  if (!source.ok) {
    throw new LineageCopyError(
      `the source lineage store ${from.path} does not verify (${source.problems.length} problems, first: ${source.problems[0]!.detail})`,
      'run `kiln lineage verify` on it and restore it from a backup; a broken chain is not copied.',
    );
  }
  const sourceHead = head(from);
  const tables: Record<string, number> = {};
  to.transaction(() => {
    for (const t of ORDER) {
      const n = to.sql.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get()!.n as number;
      if (n > 0) {
        throw new LineageCopyError(
          `the target lineage store ${to.path} is not empty (${t} has ${n} rows)`,
          'copy into a new, empty database (createdb kiln_lineage; then --to postgres://.../kiln_lineage).',
        );
      }
    }
    for (const t of ORDER) {
      const key = t === 'lineage_log' || t === 'seen_items' ? 'seq' : t === 'artifacts' ? 'id' : null;
      const rows = readAll(from, t, key);
      tables[t] = rows.length;
      if (rows.length === 0) continue;
      const cols = Object.keys(rows[0]!);
      const insert = to.sql.prepare(`INSERT INTO ${t} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
      for (const r of rows)
        insert.run(...cols.map((c) => (t === 'jobs' && c === 'parent_job_id' ? null : r[c]) as string | number | null));
      if (t === 'jobs') {
        const setParent = to.sql.prepare('UPDATE jobs SET parent_job_id = ? WHERE id = ?');
        for (const r of rows) if (r.parent_job_id != null) setParent.run(r.parent_job_id as string, r.id as string);
      }
    }
    if (to.backend === 'postgres') {
      // identity columns continue after the copied ids
      for (const [t, c] of [
        ['artifacts', 'id'],
        ['seen_items', 'seq'],
      ] as const) {
        to.sql
          .prepare(
            `SELECT setval(pg_get_serial_sequence('${t}', '${c}'), GREATEST((SELECT MAX(${c}) FROM ${t}), 1), (SELECT COUNT(*) > 0 FROM ${t}))`,
          )
          .get();
      }
    }
  });
  const target = to.verify();
  const targetHead = head(to);
  if (!target.ok || target.entries !== source.entries || target.rows !== source.rows || targetHead !== sourceHead) {
    throw new LineageCopyError(
      `the copy in ${to.path} does not match its source: ${target.entries}/${source.entries} log entries, ` +
        `${target.rows}/${source.rows} rows, head ${targetHead.slice(0, 12)} vs ${sourceHead.slice(0, 12)}` +
        (target.problems[0] ? `, first problem: ${target.problems[0].detail}` : ''),
      'drop the target database, create it empty and copy again; report the problem if it repeats.',
    );
  }
  return { tables, source: { ...source, head: sourceHead }, target: { ...target, head: targetHead } };
}

function readAll(store: LineageStore, table: string, key: string | null): Row[] {
  if (key === null) {
    const cols = table in CHAINED_TABLES ? CHAINED_TABLES[table]!.join(', ') : '1';
    return store.sql.prepare(`SELECT * FROM ${table} ORDER BY ${cols}`).all();
  }
  const out: Row[] = [];
  const page = store.sql.prepare(`SELECT * FROM ${table} WHERE ${key} > ? ORDER BY ${key} LIMIT ?`);
  for (let after = 0; ;) {
    const rows = page.all(after, PAGE);
    out.push(...rows);
    if (rows.length < PAGE) return out;
    after = rows[rows.length - 1]![key] as number;
  }
}
