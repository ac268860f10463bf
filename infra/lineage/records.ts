/** Rows of the lineage tables (snake_case, JSON text) as the typed records callers see (types.ts). */
import type { ArtifactRecord, DatasetVersionRecord, JobRecord, LifecycleStatus, RunRecord } from './types.js';

/** A row as the SQL layer returns it. */
export type Row = Record<string, unknown>;

const parse = (s: unknown) => (typeof s === 'string' ? JSON.parse(s) : null);

export function toJob(r: Row): JobRecord {
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

export function toRun(r: Row): RunRecord {
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

export function toArtifact(r: Row): ArtifactRecord {
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

export function toDataset(r: Row): DatasetVersionRecord {
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
