/**
 * The lineage store: jobs, stage runs, artifacts (uri, sha256, bytes), run->artifact edges and
 * dataset versions, in one SQLite file (WAL; the embedded default) or in PostgreSQL
 * (`postgres://...`, shared by workers on many machines; see sql.ts). Every write is idempotent so
 * a retried activity can record the same thing twice without creating a second row.
 *
 * Follows undici's sqlite-cache-store: options validated at open, pragmas at open, statements
 * prepared once, schema version tracked in `schema_migrations`.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ArtifactConflictError, KilnError } from '../errors.js';
import { sha256Hex } from '../hash.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.js';
import { appendRowImage, backfillChain, verifyLineage, type VerifyReport } from './chain.js';
import { PgDb, SqliteDb, redact, type Param, type SqlDb, type Stmt } from './sql.js';
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

type Row = Record<string, unknown>;

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
  private readonly stmts: ReturnType<LineageStore['prepare']>;

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
    this.stmts = this.prepare();
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

  private prepare() {
    const db = this.db;
    return {
      insertJob: db.prepare(`INSERT INTO jobs (id, kind, workflow_id, status, params_json, code_version, started_at)
        VALUES (@id, @kind, @workflowId, 'running', @params, @codeVersion, @at) ON CONFLICT(id) DO NOTHING`),
      finishJob: db.prepare('UPDATE jobs SET status = ?, finished_at = ?, error = ? WHERE id = ?'),
      getJob: db.prepare('SELECT * FROM jobs WHERE id = ?'),
      setJobParent: db.prepare('UPDATE jobs SET parent_job_id = ? WHERE id = ? AND parent_job_id IS DISTINCT FROM ?'),
      childJobs: db.prepare('SELECT * FROM jobs WHERE parent_job_id = ? ORDER BY started_at, id'),
      listJobs: db.prepare('SELECT * FROM jobs ORDER BY started_at DESC, id DESC LIMIT ?'),
      insertRun:
        db.prepare(`INSERT INTO runs (id, job_id, stage, status, params_json, environment_json, code_version, started_at)
        VALUES (@id, @jobId, @stage, 'running', @params, @environment, @codeVersion, @at) ON CONFLICT(id) DO NOTHING`),
      restartRun: db.prepare(
        `UPDATE runs SET status = 'running', finished_at = NULL, error = NULL WHERE id = ? AND status IN ('failed','cancelled')`,
      ),
      setRunEnvironment: db.prepare(
        `UPDATE runs SET environment_json = ? WHERE id = ? AND status = 'running' AND environment_json <> ?`,
      ),
      finishRun: db.prepare('UPDATE runs SET status = ?, finished_at = ?, result_json = ?, error = ? WHERE id = ?'),
      getRun: db.prepare('SELECT * FROM runs WHERE id = ?'),
      runsOfJob: db.prepare('SELECT * FROM runs WHERE job_id = ? ORDER BY started_at, id'),
      getArtifactByUri: db.prepare('SELECT * FROM artifacts WHERE uri = ?'),
      getArtifactById: db.prepare('SELECT * FROM artifacts WHERE id = ?'),
      artifactsBySha: db.prepare('SELECT * FROM artifacts WHERE sha256 = ? ORDER BY id'),
      insertArtifact: db.prepare(`INSERT INTO artifacts (uri, kind, sha256, bytes, metadata_json, created_at)
        VALUES (@uri, @kind, @sha256, @bytes, @metadata, @at)`),
      insertEdge: db.prepare('INSERT INTO edges (run_id, artifact_id, role) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
      artifactsOfRun: db.prepare(`SELECT a.*, e.role AS edge_role FROM edges e JOIN artifacts a ON a.id = e.artifact_id
        WHERE e.run_id = ? ORDER BY a.id`),
      runsOfArtifact: db.prepare(`SELECT r.*, e.role AS edge_role FROM edges e JOIN runs r ON r.id = e.run_id
        WHERE e.artifact_id = ? ORDER BY r.started_at, r.id`),
      insertDataset:
        db.prepare(`INSERT INTO dataset_versions (id, name, version, manifest_artifact_id, parents_json, schema_version, params_json, run_id, created_at)
        VALUES (@id, @name, @version, @manifestArtifactId, @parents, @schemaVersion, @params, @runId, @at) ON CONFLICT(id) DO NOTHING`),
      getDataset: db.prepare('SELECT * FROM dataset_versions WHERE id = ?'),
      datasetByManifest: db.prepare('SELECT * FROM dataset_versions WHERE manifest_artifact_id = ?'),
      allRuns: db.prepare('SELECT * FROM runs ORDER BY started_at, id'),
      allDatasets: db.prepare('SELECT * FROM dataset_versions ORDER BY name, version'),
      datasetVersions: db.prepare('SELECT * FROM dataset_versions WHERE name = ? ORDER BY version'),
      maxDatasetVersion: db.prepare('SELECT MAX(version) AS v FROM dataset_versions WHERE name = ?'),
      rawEdge: db.prepare('SELECT * FROM edges WHERE run_id = ? AND artifact_id = ? AND role = ?'),
      seenUrl: db.prepare('SELECT dataset_id FROM seen_items WHERE url_sha256 = ? AND seq <= ? ORDER BY seq LIMIT 1'),
      seenImage: db.prepare(
        'SELECT dataset_id FROM seen_items WHERE image_sha256 = ? AND seq <= ? ORDER BY seq LIMIT 1',
      ),
      seenMax: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM seen_items'),
      seenCount: db.prepare('SELECT COUNT(*) AS n FROM seen_items WHERE dataset_id = ?'),
    };
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
   * Record the start of a stage run. Idempotent on `id`: a retried activity gets the existing
   * row back (a failed or cancelled one is marked running again).
   */
  /**
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

const parse = (s: unknown) => (typeof s === 'string' ? JSON.parse(s) : null);

function toJob(r: Row): JobRecord {
  return {
    id: r.id as string,
    kind: r.kind as string,
    workflowId: r.workflow_id as string,
    status: r.status as LifecycleStatus,
    params: parse(r.params_json),
    codeVersion: r.code_version as string,
    startedAt: r.started_at as string,
    finishedAt: (r.finished_at as string | null) ?? null,
    error: (r.error as string | null) ?? null,
    parentJobId: (r.parent_job_id as string | null) ?? null,
  };
}

function toRun(r: Row): RunRecord {
  return {
    id: r.id as string,
    jobId: (r.job_id as string | null) ?? null,
    stage: r.stage as string,
    status: r.status as LifecycleStatus,
    params: parse(r.params_json),
    environment: parse(r.environment_json) ?? {},
    codeVersion: r.code_version as string,
    startedAt: r.started_at as string,
    finishedAt: (r.finished_at as string | null) ?? null,
    result: parse(r.result_json),
    error: (r.error as string | null) ?? null,
  };
}

function toArtifact(r: Row): ArtifactRecord {
  return {
    id: r.id as number,
    uri: r.uri as string,
    kind: r.kind as string,
    sha256: r.sha256 as string,
    bytes: r.bytes as number,
    metadata: parse(r.metadata_json) ?? {},
    createdAt: r.created_at as string,
  };
}

function toDataset(r: Row): DatasetVersionRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    version: r.version as number,
    manifestArtifactId: r.manifest_artifact_id as number,
    parents: parse(r.parents_json) ?? [],
    schemaVersion: r.schema_version as number,
    params: parse(r.params_json),
    runId: (r.run_id as string | null) ?? null,
    createdAt: r.created_at as string,
  };
}
