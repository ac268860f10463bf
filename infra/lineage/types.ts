/** Records of the lineage store, as callers see them (camelCase, parsed JSON). */
export type LifecycleStatus = 'running' | 'completed' | 'failed' | 'cancelled';

export interface JobRecord {
  id: string;
  kind: string;
  workflowId: string;
  status: LifecycleStatus;
  params: unknown;
  codeVersion: string;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
  /** The pipeline job this stage job belongs to, if any. */
  parentJobId: string | null;
}

export interface RunRecord {
  id: string;
  jobId: string | null;
  stage: string;
  status: LifecycleStatus;
  params: unknown;
  environment: Record<string, unknown>;
  codeVersion: string;
  startedAt: string;
  finishedAt: string | null;
  result: unknown;
  error: string | null;
}

export interface ArtifactRecord {
  id: number;
  uri: string;
  kind: string;
  sha256: string;
  bytes: number;
  metadata: Record<string, unknown>;
  createdAt: string;
}

export interface DatasetVersionRecord {
  id: string;
  name: string;
  version: number;
  manifestArtifactId: number;
  parents: string[];
  schemaVersion: number;
  params: unknown;
  runId: string | null;
  createdAt: string;
}

export interface NewArtifact {
  uri: string;
  kind: string;
  sha256: string;
  bytes: number;
  metadata?: Record<string, unknown>;
}
