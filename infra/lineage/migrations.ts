/**
 * Lineage schema migrations. Append only: never edit a released migration, add the next one.
 * `schema_migrations` records which versions were applied and when.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'jobs, runs, artifacts, edges, dataset versions',
    sql: `
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running','completed','failed','cancelled')),
        params_json TEXT NOT NULL,
        code_version TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT
      );
      CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        job_id TEXT REFERENCES jobs(id),
        stage TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running','completed','failed','cancelled')),
        params_json TEXT NOT NULL,
        environment_json TEXT NOT NULL DEFAULT '{}',
        code_version TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        result_json TEXT,
        error TEXT
      );
      CREATE INDEX runs_job ON runs(job_id);
      CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY,
        uri TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        metadata_json TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
      );
      CREATE INDEX artifacts_sha ON artifacts(sha256);
      CREATE TABLE edges (
        run_id TEXT NOT NULL REFERENCES runs(id),
        artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
        role TEXT NOT NULL CHECK (role IN ('consumed','produced')),
        PRIMARY KEY (run_id, artifact_id, role)
      );
      CREATE INDEX edges_artifact ON edges(artifact_id);
      CREATE TABLE dataset_versions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        manifest_artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
        parents_json TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        params_json TEXT NOT NULL,
        run_id TEXT REFERENCES runs(id),
        created_at TEXT NOT NULL,
        UNIQUE (name, version)
      );
    `,
  },
  {
    version: 2,
    description: 'hash-chained lineage log (row images of every change)',
    sql: `
      CREATE TABLE lineage_log (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL,
        row_json TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX lineage_log_row ON lineage_log(table_name, row_key);
    `,
  },
  {
    version: 3,
    description: 'jobs.parent_job_id: stage jobs of a pipeline point at the pipeline job',
    sql: `
      ALTER TABLE jobs ADD COLUMN parent_job_id TEXT REFERENCES jobs(id);
      CREATE INDEX jobs_parent ON jobs(parent_job_id);
    `,
  },
  {
    version: 4,
    description: 'seen_items: which dataset version (and job) first held each URL and image hash (incremental curation)',
    sql: `
      CREATE TABLE seen_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id TEXT NOT NULL,
        row_key TEXT NOT NULL,
        url_sha256 TEXT NOT NULL,
        image_sha256 TEXT,
        job_id TEXT,
        UNIQUE (dataset_id, row_key)
      );
      CREATE INDEX seen_items_url ON seen_items(url_sha256);
      CREATE INDEX seen_items_image ON seen_items(image_sha256);
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
