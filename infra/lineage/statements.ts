/**
 * The lineage store's SQL statements, prepared once per connection (undici's sqlite-cache-store
 * habit). The same text serves SQLite and PostgreSQL (PgDb in sql.ts rewrites `?` and `@name` to `$n`).
 */
import type { SqlDb } from './sql.js';

export type Statements = ReturnType<typeof prepareStatements>;

export function prepareStatements(db: SqlDb) {
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
    seenImage: db.prepare('SELECT dataset_id FROM seen_items WHERE image_sha256 = ? AND seq <= ? ORDER BY seq LIMIT 1'),
    seenMax: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM seen_items'),
    seenCount: db.prepare('SELECT COUNT(*) AS n FROM seen_items WHERE dataset_id = ?'),
  };
}
