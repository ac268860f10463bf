/**
 * The hash-chained lineage log. Every change to a lineage table appends the row's full image to
 * `lineage_log`, chained by sha256(prev_hash || canonical entry). `verifyLineage` walks the chain
 * (an edited or deleted log entry breaks it) and replays it against the tables (an edited, deleted
 * or unlogged row no longer matches its last logged image).
 */
import type { SqlDb } from './sql.js';
import { sha256Hex } from '../hash.js';

/** Tables covered by the chain and how a row's key is formed. */
export const CHAINED_TABLES: Record<string, readonly string[]> = {
  jobs: ['id'],
  runs: ['id'],
  artifacts: ['uri'],
  edges: ['run_id', 'artifact_id', 'role'],
  dataset_versions: ['id'],
};

export const GENESIS_HASH = '0'.repeat(64);
type Row = Record<string, unknown>;

function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Row;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

export function rowKey(table: string, row: Row): string {
  const cols = CHAINED_TABLES[table];
  if (!cols) throw new Error(`table ${table} is not chained`);
  return cols.map((c) => String(row[c])).join('|');
}

export function entryHash(prevHash: string, seq: number, table: string, key: string, rowJson: string): string {
  return sha256Hex(`${prevHash}\n${seq}\n${table}\n${key}\n${rowJson}`);
}

/** Append the current image of a row to the chain (call inside the mutating transaction). */
export function appendRowImage(db: SqlDb, table: string, row: Row): void {
  const last = db.prepare('SELECT seq, hash FROM lineage_log ORDER BY seq DESC LIMIT 1').get() as
    { seq: number; hash: string } | undefined;
  const seq = (last?.seq ?? 0) + 1;
  const prev = last?.hash ?? GENESIS_HASH;
  const key = rowKey(table, row);
  const rowJson = canonical(row);
  db.prepare(
    'INSERT INTO lineage_log (seq, at, table_name, row_key, row_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
  ).run(seq, new Date().toISOString(), table, key, rowJson, prev, entryHash(prev, seq, table, key, rowJson));
}

/** Log every existing row that has no log entry yet (databases written before the chain existed). */
export function backfillChain(db: SqlDb): number {
  const logged = new Set(
    (db.prepare('SELECT table_name, row_key FROM lineage_log').all() as { table_name: string; row_key: string }[]).map(
      (r) => `${r.table_name}\0${r.row_key}`,
    ),
  );
  let n = 0;
  for (const table of Object.keys(CHAINED_TABLES)) {
    for (const row of db.prepare(`SELECT * FROM ${table}`).all() as Row[]) {
      if (logged.has(`${table}\0${rowKey(table, row)}`)) continue;
      appendRowImage(db, table, row);
      n++;
    }
  }
  return n;
}

export interface LineageProblem {
  kind: 'chain_broken' | 'row_edited' | 'row_deleted' | 'row_unlogged';
  table?: string;
  key?: string;
  seq?: number;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  entries: number;
  rows: number;
  problems: LineageProblem[];
}

/** The log in seq order, read a page at a time (the log can be long). */
function* logEntries(db: SqlDb, pageSize = 5000): Generator<Row> {
  const page = db.prepare('SELECT * FROM lineage_log WHERE seq > ? ORDER BY seq LIMIT ?');
  let after = 0;
  for (;;) {
    const rows = page.all(after, pageSize);
    yield* rows;
    if (rows.length < pageSize) return;
    after = rows[rows.length - 1]!.seq as number;
  }
}

/** Verify the chain and that every table row equals its last logged image (call inside a snapshot). */
export function verifyLineage(db: SqlDb): VerifyReport {
  const problems: LineageProblem[] = [];
  const latest = new Map<string, { table: string; key: string; rowJson: string }>();
  let prev = GENESIS_HASH;
  let expectedSeq = 1;
  let entries = 0;
  for (const e of logEntries(db)) {
    entries++;
    const seq = e.seq as number;
    if (seq !== expectedSeq)
      problems.push({
        kind: 'chain_broken',
        seq,
        detail: `log entry ${expectedSeq}${seq > expectedSeq + 1 ? `..${seq - 1}` : ''} is missing (deleted)`,
      });
    if (e.prev_hash !== prev)
      problems.push({ kind: 'chain_broken', seq, detail: `entry ${seq} does not link to the previous entry's hash` });
    const h = entryHash(e.prev_hash as string, seq, e.table_name as string, e.row_key as string, e.row_json as string);
    if (h !== e.hash)
      problems.push({
        kind: 'chain_broken',
        seq,
        detail: `entry ${seq} (${e.table_name} ${e.row_key}) was edited: its hash does not match its content`,
      });
    prev = e.hash as string;
    expectedSeq = seq + 1;
    latest.set(`${e.table_name}\0${e.row_key}`, {
      table: e.table_name as string,
      key: e.row_key as string,
      rowJson: e.row_json as string,
    });
  }
  let rows = 0;
  const seen = new Set<string>();
  for (const table of Object.keys(CHAINED_TABLES)) {
    for (const row of db.prepare(`SELECT * FROM ${table}`).all() as Row[]) {
      rows++;
      const key = rowKey(table, row);
      const id = `${table}\0${key}`;
      seen.add(id);
      const logged = latest.get(id);
      if (!logged)
        problems.push({
          kind: 'row_unlogged',
          table,
          key,
          detail: `${table} row ${key} is not in the lineage log (inserted outside Kiln)`,
        });
      else if (logged.rowJson !== canonical(row))
        problems.push({
          kind: 'row_edited',
          table,
          key,
          detail: `${table} row ${key} differs from its last logged state (edited outside Kiln)`,
        });
    }
  }
  for (const [id, l] of latest) {
    if (!seen.has(id))
      problems.push({ kind: 'row_deleted', table: l.table, key: l.key, detail: `${l.table} row ${l.key} was deleted` });
  }
  return { ok: problems.length === 0, entries, rows, problems };
}
