/**
 * The lineage store's one SQL seam, synchronous like better-sqlite3 so the store (and every caller)
 * keeps its plain API on both backends:
 *  - SqliteDb: better-sqlite3 (the embedded default);
 *  - PgDb: PostgreSQL through `pg` on a worker thread (pg-bridge-worker.ts); each call blocks this
 *    thread with Atomics.wait until the answer is back (a loopback or LAN round trip, ~1 ms).
 * Statements use `?` or `@name` parameters; PgDb rewrites them to `$n`. Write transactions are
 * serialised across every process and machine: SQLite by BEGIN IMMEDIATE, PostgreSQL by a
 * transaction-scoped advisory lock taken first, so the hash chain's order is one total order.
 */
import Database from 'better-sqlite3';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { KilnError } from '../errors.js';

export type Row = Record<string, unknown>;
export type Param = string | number | null;
export type Params = Param[] | [Record<string, Param>];

export interface Stmt {
  run(...p: Params): { changes: number };
  get(...p: Params): Row | undefined;
  all(...p: Params): Row[];
}

export interface SqlDb {
  readonly dialect: 'sqlite' | 'postgres';
  prepare(sql: string): Stmt;
  exec(sql: string): void;
  /** A write transaction, serialised against every other writer (nested calls join the outer one). */
  transaction<T>(fn: () => T): T;
  /** Reads that see one consistent snapshot (verify). */
  snapshot<T>(fn: () => T): T;
  close(): void;
}

/** The lineage server (PostgreSQL) cannot be reached (retryable: like Temporal, a server may answer later). */
export class LineageUnavailableError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_LINEAGE_UNAVAILABLE', problem, fix, { retryable: true });
  }
}

export class SqliteDb implements SqlDb {
  readonly dialect = 'sqlite';
  constructor(readonly db: Database.Database) {}

  prepare(sql: string): Stmt {
    const s = this.db.prepare(sql);
    return {
      run: (...p) => ({ changes: s.run(...p).changes }),
      get: (...p) => s.get(...p) as Row | undefined,
      all: (...p) => s.all(...p) as Row[],
    };
  }

  exec(sql: string): void {
    this.db.exec(sql);
  }

  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  snapshot<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).deferred();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** `?` and `@name` -> `$1..$n` (Kiln's lineage SQL has no '?' or '@' inside string literals). */
export function toPgSql(sql: string): { text: string; names: (string | null)[] } {
  const names: (string | null)[] = [];
  const text = sql.replace(/\?|@([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string | undefined) => {
    names.push(name ?? null);
    return `$${names.length}`;
  });
  return { text, names };
}

/** Lock id of the lineage writers' advisory lock ("kiln" in ASCII). */
export const LINEAGE_LOCK_ID = 0x6b696c6e;

interface Reply {
  rows?: Row[];
  rowCount?: number;
  error?: { message: string; code?: string };
}

export class PgDb implements SqlDb {
  readonly dialect = 'postgres';
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private depth = 0;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly timeoutMs = 120_000,
  ) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(new URL('./pg-bridge-worker.js', import.meta.url), {
      workerData: { url, flag: this.flag, port: port2 },
      transferList: [port2],
    });
    this.worker.unref();
    const r = this.call({ op: 'connect' });
    if (r.error) {
      this.close();
      throw new LineageUnavailableError(
        `cannot reach the PostgreSQL lineage store ${redact(url)}: ${r.error.message}`,
        'start PostgreSQL and check KILN_LINEAGE_URL (postgres://user[:password]@host:port/database; the database must exist).',
      );
    }
  }

  private call(msg: { op: string; text?: string; values?: Param[] }): Reply {
    if (this.closed) throw new Error('lineage store is closed');
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage(msg);
    const res = Atomics.wait(this.flag, 0, 0, this.timeoutMs);
    if (res === 'timed-out') {
      throw new LineageUnavailableError(
        `the PostgreSQL lineage store ${redact(this.url)} did not answer within ${this.timeoutMs / 1000} s`,
        'check that PostgreSQL is up and reachable; a worker resumes where it was once it is.',
      );
    }
    const got = receiveMessageOnPort(this.port);
    if (!got) throw new Error('PostgreSQL bridge woke without a reply');
    return got.message as Reply;
  }

  private query(sql: string, p: Params): { rows: Row[]; rowCount: number } {
    const { text, names } = toPgSql(sql);
    const named =
      p.length === 1 && p[0] !== null && typeof p[0] === 'object' ? (p[0] as Record<string, Param>) : undefined;
    let i = 0;
    const values = names.map((n) => (n !== null ? (named![n] ?? null) : ((p as Param[])[i++] ?? null)));
    const r = this.call({ op: 'query', text, values });
    if (r.error) {
      const err = new Error(`${r.error.message} (in: ${sql.trim().slice(0, 120)})`) as Error & { code?: string };
      err.code = r.error.code;
      throw err;
    }
    return { rows: r.rows ?? [], rowCount: r.rowCount ?? 0 };
  }

  prepare(sql: string): Stmt {
    return {
      run: (...p) => ({ changes: this.query(sql, p).rowCount }),
      get: (...p) => this.query(sql, p).rows[0],
      all: (...p) => this.query(sql, p).rows,
    };
  }

  exec(sql: string): void {
    this.query(sql, []);
  }

  private inTx<T>(begin: string, fn: () => T, lock: boolean): T {
    if (this.depth > 0) return fn();
    this.query(begin, []);
    this.depth++;
    try {
      if (lock) this.query('SELECT pg_advisory_xact_lock(?)', [LINEAGE_LOCK_ID]);
      const out = fn();
      this.query('COMMIT', []);
      return out;
    } catch (err) {
      try {
        this.query('ROLLBACK', []);
      } catch {
        /* the connection is gone: the server rolls back */
      }
      throw err;
    } finally {
      this.depth--;
    }
  }

  transaction<T>(fn: () => T): T {
    return this.inTx('BEGIN', fn, true);
  }

  snapshot<T>(fn: () => T): T {
    return this.inTx('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', fn, false);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.call({ op: 'close' });
    } catch {
      /* already gone */
    }
    this.closed = true;
    void this.worker.terminate();
  }
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return '(unparseable URL)';
  }
}
