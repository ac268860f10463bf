/**
 * The lineage store: jobs, stage runs, artifacts (uri, sha256, bytes), run->artifact edges and
 * dataset versions, in one SQLite file (WAL; the embedded default) or in PostgreSQL
 * (`postgres://...`, shared by workers on many machines; see sql.ts). Every write is idempotent so
 * a retried activity can record the same thing twice without creating a second row.
 *
 * Follows undici's sqlite-cache-store: options validated at open, pragmas at open, statements
 * prepared once (statements.ts), schema version tracked in `schema_migrations`. Rows become typed
 * records in records.ts.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ArtifactConflictError, KilnError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.js';
import { appendRowImage, backfillChain, verifyLineage, type VerifyReport } from './chain.js';
import { PgDb, SqliteDb, redact, type Param, type SqlDb, type Stmt } from './sql.js';
import { prepareStatements, type Statements } from './statements.js';
import { toArtifact, toDataset, toJob, toRun, type Row } from './records.js';
import type {
  ArtifactRecord,
  DatasetVersionRecord,
  JobRecord,
  LifecycleStatus,
  NewArtifact,
  RunRecord,
} from './types.js';

export * from './types.js';

export class LineageSchemaError extends KilnError {
  constructor(found: number, supported: number, path: string) {
    super(
      'KILN_LINEAGE_SCHEMA',
      `lineage database ${path} has schema version ${found}, newer than this Kiln supports (${supported})`,
      'upgrade Kiln to the version that wrote this database, or point KILN_DATA_ROOT at another data root.',
    );
  }
}

/** True for a PostgreSQL connection URL (KILN_LINEAGE_URL), false for a SQLite file path. */
export function isPostgresUrl(pathOrUrl: string): boolean {
  return /^postgres(ql)?:\/\//.test(pathOrUrl);
}
const now = () => new Date().toISOString();
const json = (v: unknown) => JSON.stringify(v ?? null);

/**
 * Rows per INSERT of recordSeenItems. PostgreSQL: 500 (one round trip each instead of one per row;
 * 2,500 parameters, far below its 65,535). SQLite: 1, a statement prepared once and run per row in
 * one transaction, which is faster in-process than binding one wide statement (bench/lineage-seen.ts).
 */
const SEEN_BATCH_ROWS = { postgres: 500, sqlite: 1 } as const;

export class LineageStore {
  /** The SQLite file path, or the PostgreSQL URL without its password. */
  readonly path: string;
  readonly backend: 'sqlite' | 'postgres';
  private readonly db: SqlDb;
  private readonly seenInserts = new Map<number, Stmt>();
  private readonly stmts: Statements;

  /** Open (creating and migrating if needed) the lineage database at `path` (a file, or postgres://...). */
  constructor(path: string) {
    if (typeof path !== 'string' || path.length === 0)
      throw new TypeError('LineageStore: path must be a non-empty string');
    if (isPostgresUrl(path)) {
      this.path = redact(path);
      this.db = new PgDb(path);
    } else {
      this.path = path;
      mkdirSync(dirname(path), { recursive: true });
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 10000');
      this.db = new SqliteDb(db);
    }
    this.backend = this.db.dialect;
    try {
      this.migrate();
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.stmts = prepareStatements(this.db);
  }

  /** Schema version currently applied. */
  schemaVersion(): number {
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
    return row.v ?? 0;
  }

  private migrate(): void {
    // Every machine may open the store at once: the whole migration is one serialised transaction.
    this.db.transaction(() => {
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)',
      );
      const current = this.schemaVersion();
      if (current > LATEST_SCHEMA_VERSION) throw new LineageSchemaError(current, LATEST_SCHEMA_VERSION, this.path);
      for (const m of MIGRATIONS) {
        if (m.version <= this.schemaVersion()) continue;
        this.db.exec(this.db.dialect === 'postgres' ? m.postgres : m.sql);
        this.db
          .prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)')
          .run(m.version, m.description, now());
        if (m.version === 2) backfillChain(this.db);
      }
    });
  }

  /** Record a job (a user-submitted workflow). Idempotent on `id`. */
  startJob(job: { id: string; kind: string; workflowId: string; params: unknown; codeVersion: string }): JobRecord {
    return this.transaction(() => {
      const changed = this.stmts.insertJob.run({ ...job, params: json(job.params), at: now() }).changes > 0;
      if (changed) this.logRow('jobs', this.stmts.getJob.get(job.id) as Row);
      return this.getJob(job.id)!;
    });
  }

  finishJob(id: string, status: Exclude<LifecycleStatus, 'running'>, error?: string): void {
    this.transaction(() => {
      if (this.stmts.finishJob.run(status, now(), error ?? null, id).changes > 0)
        this.logRow('jobs', this.stmts.getJob.get(id) as Row);
    });
  }

  /** Mark `childId` as a stage job of pipeline job `parentId`. Idempotent. */
  setJobParent(childId: string, parentId: string): void {
    this.transaction(() => {
      if (this.stmts.setJobParent.run(parentId, childId, parentId).changes > 0)
        this.logRow('jobs', this.stmts.getJob.get(childId) as Row);
    });
  }

  childJobs(parentId: string): JobRecord[] {
    return (this.stmts.childJobs.all(parentId) as Row[]).map(toJob);
  }

  private logRow(table: string, row: Row): void {
    appendRowImage(this.db, table, row);
  }

  /** Verify the hash chain and that every row equals its last logged state (see chain.ts). */
  verify(): VerifyReport {
    return this.db.snapshot(() => verifyLineage(this.db));
  }

  getJob(id: string): JobRecord | undefined {
    const r = this.stmts.getJob.get(id) as Row | undefined;
    return r && toJob(r);
  }

  listJobs(limit = 50): JobRecord[] {
    return (this.stmts.listJobs.all(limit) as Row[]).map(toJob);
  }

  /**
   * Record the start of a stage run. Idempotent on `id`: a retried activity gets the existing row back.
   * Start a run, or restart it (a failed or cancelled run, or one left `running` by an attempt whose
   * process died). A restarted run keeps its first attempt's environment unless `environment` is
   * `latest`: then it records this attempt's (e.g. a crawl shard retried without the native codec).
   */
  startRun(
    run: {
      id: string;
      jobId?: string | null;
      stage: string;
      params: unknown;
      environment?: Record<string, unknown>;
      codeVersion: string;
    },
    opts: { environment?: 'first' | 'latest' } = {},
  ): RunRecord {
    return this.transaction(() => {
      const environment = json(run.environment ?? {});
      const inserted = this.stmts.insertRun.run({
        id: run.id,
        jobId: run.jobId ?? null,
        stage: run.stage,
        params: json(run.params),
        environment,
        codeVersion: run.codeVersion,
        at: now(),
      }).changes;
      const restarted = this.stmts.restartRun.run(run.id).changes;
      const updated =
        !inserted && opts.environment === 'latest'
          ? this.stmts.setRunEnvironment.run(environment, run.id, environment).changes
          : 0;
      if (inserted + restarted + updated > 0) this.logRow('runs', this.stmts.getRun.get(run.id) as Row);
      return this.getRun(run.id)!;
    });
  }

  finishRun(id: string, status: Exclude<LifecycleStatus, 'running'>, result?: unknown, error?: string): void {
    this.transaction(() => {
      if (
        this.stmts.finishRun.run(status, now(), result === undefined ? null : json(result), error ?? null, id).changes >
        0
      ) {
        this.logRow('runs', this.stmts.getRun.get(id) as Row);
      }
    });
  }

  getRun(id: string): RunRecord | undefined {
    const r = this.stmts.getRun.get(id) as Row | undefined;
    return r && toRun(r);
  }

  runsOfJob(jobId: string): RunRecord[] {
    return (this.stmts.runsOfJob.all(jobId) as Row[]).map(toRun);
  }

  /**
   * Record an immutable artifact. Recording the same uri with the same sha256 again returns the
   * existing record; a different sha256 is an ArtifactConflictError (artifacts are never edited).
   */
  recordArtifact(a: NewArtifact): ArtifactRecord {
    return this.transaction(() => {
      const existing = this.getArtifactByUri(a.uri);
      if (existing) {
        if (existing.sha256 !== a.sha256) throw new ArtifactConflictError(a.uri, existing.sha256, a.sha256);
        return existing;
      }
      this.stmts.insertArtifact.run({
        uri: a.uri,
        kind: a.kind,
        sha256: a.sha256,
        bytes: a.bytes,
        metadata: json(a.metadata ?? {}),
        at: now(),
      });
      this.logRow('artifacts', this.stmts.getArtifactByUri.get(a.uri) as Row);
      return this.getArtifactByUri(a.uri)!;
    });
  }

  /** Record an artifact and the edge saying `runId` produced (or consumed) it, in one transaction. */
  recordArtifactOfRun(runId: string, role: 'consumed' | 'produced', a: NewArtifact): ArtifactRecord {
    return this.transaction(() => {
      const rec = this.recordArtifact(a);
      this.linkArtifact(runId, rec.id, role);
      return rec;
    });
  }

  linkArtifact(runId: string, artifactId: number, role: 'consumed' | 'produced'): void {
    this.transaction(() => {
      if (this.stmts.insertEdge.run(runId, artifactId, role).changes > 0)
        this.logRow('edges', this.stmts.rawEdge.get(runId, artifactId, role) as Row);
    });
  }

  getArtifactByUri(uri: string): ArtifactRecord | undefined {
    const r = this.stmts.getArtifactByUri.get(uri) as Row | undefined;
    return r && toArtifact(r);
  }

  getArtifact(id: number): ArtifactRecord | undefined {
    const r = this.stmts.getArtifactById.get(id) as Row | undefined;
    return r && toArtifact(r);
  }

  artifactsBySha256(sha256: string): ArtifactRecord[] {
    return (this.stmts.artifactsBySha.all(sha256) as Row[]).map(toArtifact);
  }

  artifactsOfRun(runId: string, role?: 'consumed' | 'produced'): ArtifactRecord[] {
    return (this.stmts.artifactsOfRun.all(runId) as Row[])
      .filter((r) => role === undefined || r.edge_role === role)
      .map(toArtifact);
  }

  runsOfArtifact(artifactId: number, role?: 'consumed' | 'produced'): RunRecord[] {
    return (this.stmts.runsOfArtifact.all(artifactId) as Row[])
      .filter((r) => role === undefined || r.edge_role === role)
      .map(toRun);
  }

  /** Record a dataset version whose manifest is an already-recorded artifact. Idempotent on `id`. */
  recordDatasetVersion(d: Omit<DatasetVersionRecord, 'createdAt'>): DatasetVersionRecord {
    return this.transaction(() => {
      const changed =
        this.stmts.insertDataset.run({
          id: d.id,
          name: d.name,
          version: d.version,
          manifestArtifactId: d.manifestArtifactId,
          parents: json(d.parents),
          schemaVersion: d.schemaVersion,
          params: json(d.params),
          runId: d.runId,
          at: now(),
        }).changes > 0;
      if (changed) this.logRow('dataset_versions', this.stmts.getDataset.get(d.id) as Row);
      return this.getDatasetVersion(d.id)!;
    });
  }

  getDatasetVersion(id: string): DatasetVersionRecord | undefined {
    const r = this.stmts.getDataset.get(id) as Row | undefined;
    return r && toDataset(r);
  }

  datasetVersionByManifest(manifestArtifactId: number): DatasetVersionRecord | undefined {
    const r = this.stmts.datasetByManifest.get(manifestArtifactId) as Row | undefined;
    return r && toDataset(r);
  }

  /**
   * Incremental curation index: record the rows a dataset version holds (URL and image hash),
   * once per (dataset, row key). A derived index (rebuildable from the shards), so not hash-chained.
   */
  recordSeenItems(
    datasetId: string,
    jobId: string | null,
    items: Iterable<{ key: string; url: string; sha256: string | null }>,
  ): number {
    const rows = [...items];
    let n = 0;
    this.transaction(() => {
      const size = SEEN_BATCH_ROWS[this.db.dialect];
      for (let i = 0; i < rows.length; i += size) {
        const batch = rows.slice(i, i + size);
        const values: Param[] = [];
        for (const it of batch) values.push(datasetId, it.key, sha256Hex(it.url), it.sha256, jobId);
        n += this.seenInsert(batch.length).run(...values).changes;
      }
    });
    return n;
  }

  /** One multi-row INSERT per batch (one round trip on PostgreSQL, not one per row); full batches prepared once. */
  private seenInsert(rowCount: number): Stmt {
    let stmt = this.seenInserts.get(rowCount);
    if (!stmt) {
      const tuples = Array.from({ length: rowCount }, () => '(?, ?, ?, ?, ?)').join(', ');
      stmt = this.db.prepare(
        `INSERT INTO seen_items (dataset_id, row_key, url_sha256, image_sha256, job_id) VALUES ${tuples} ON CONFLICT DO NOTHING`,
      );
      if (rowCount === SEEN_BATCH_ROWS[this.db.dialect]) this.seenInserts.set(rowCount, stmt);
    }
    return stmt;
  }

  /** Rows of a dataset version already in the seen index. */
  seenItemCount(datasetId: string): number {
    return (this.stmts.seenCount.get(datasetId) as { n: number }).n;
  }

  /** Current position of the seen index (plans pin it, so a retried plan sees the same state). */
  seenIndexPosition(): number {
    return (this.stmts.seenMax.get() as { v: number }).v;
  }

  /** The first dataset version holding this URL, as of index position `asOf`. */
  seenUrl(url: string, asOf: number): string | undefined {
    return (this.stmts.seenUrl.get(sha256Hex(url), asOf) as { dataset_id: string } | undefined)?.dataset_id;
  }

  /** The first dataset version holding these image bytes, as of index position `asOf`. */
  seenImage(imageSha256: string, asOf: number): string | undefined {
    return (this.stmts.seenImage.get(imageSha256, asOf) as { dataset_id: string } | undefined)?.dataset_id;
  }

  /** Every recorded dataset version, by name and version. */
  allDatasetVersions(): DatasetVersionRecord[] {
    return (this.stmts.allDatasets.all() as Row[]).map(toDataset);
  }

  /** Every recorded run, oldest first (for exports). */
  allRuns(): RunRecord[] {
    return (this.stmts.allRuns.all() as Row[]).map(toRun);
  }

  datasetVersions(name: string): DatasetVersionRecord[] {
    return (this.stmts.datasetVersions.all(name) as Row[]).map(toDataset);
  }

  /** Highest recorded version number of a dataset name (0 when none). */
  latestDatasetVersionNumber(name: string): number {
    return (this.stmts.maxDatasetVersion.get(name) as { v: number | null }).v ?? 0;
  }

  /** Run `fn` in one write transaction, serialised against every writer on every machine (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn);
  }

  /** The store's SQL connection (for `copyLineage`; callers use the methods above). */
  get sql(): SqlDb {
    return this.db;
  }

  close(): void {
    this.db.close();
  }
}
