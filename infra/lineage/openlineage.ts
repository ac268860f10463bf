/**
 * Export lineage as OpenLineage RunEvents (spec 2-0-2), one JSON object per line, so Marquez or
 * any OpenLineage consumer can ingest Kiln's runs, their input and output datasets (artifacts),
 * and Kiln-specific facets (params, environment, code version, sha256 and size of each artifact).
 */
import { createHash } from 'node:crypto';
import type { ArtifactRecord, LineageStore, RunRecord } from './store.js';

export const OPENLINEAGE_SCHEMA_URL = 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent';
export const KILN_PRODUCER = 'https://github.com/kiln-data/kiln/tree/main/infra/lineage/openlineage.ts';
const FACET_SCHEMA = 'https://github.com/kiln-data/kiln/blob/main/docs/openlineage-facets.json';

export interface OpenLineageDataset {
  namespace: string;
  name: string;
  facets: Record<string, unknown>;
}

export interface OpenLineageRunEvent {
  eventType: 'START' | 'COMPLETE' | 'FAIL' | 'ABORT' | 'RUNNING';
  eventTime: string;
  run: { runId: string; facets: Record<string, unknown> };
  job: { namespace: string; name: string; facets: Record<string, unknown> };
  inputs: OpenLineageDataset[];
  outputs: OpenLineageDataset[];
  producer: string;
  schemaURL: string;
}

/** A stable RFC 4122 UUID (version 5 layout) derived from a Kiln id. */
export function uuidFromId(id: string): string {
  const h = createHash('sha256').update(`kiln:${id}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function dataset(a: ArtifactRecord): OpenLineageDataset {
  const u = new URL(a.uri);
  return {
    namespace: u.protocol === 'file:' ? 'file' : `${u.protocol.replace(':', '')}://${u.host}`,
    name: decodeURIComponent(u.pathname),
    facets: {
      kiln_artifact: {
        _producer: KILN_PRODUCER,
        _schemaURL: `${FACET_SCHEMA}#/$defs/KilnArtifactFacet`,
        kind: a.kind,
        sha256: a.sha256,
        bytes: a.bytes,
        uri: a.uri,
      },
    },
  };
}

function terminal(status: RunRecord['status']): OpenLineageRunEvent['eventType'] | null {
  if (status === 'completed') return 'COMPLETE';
  if (status === 'failed') return 'FAIL';
  if (status === 'cancelled') return 'ABORT';
  return null;
}

/** START (and COMPLETE / FAIL / ABORT when finished) events for one run. */
export function runEvents(store: LineageStore, run: RunRecord): OpenLineageRunEvent[] {
  const inputs = store.artifactsOfRun(run.id, 'consumed').map(dataset);
  const outputs = store.artifactsOfRun(run.id, 'produced').map(dataset);
  const runFacets: Record<string, unknown> = {
    kiln_run: {
      _producer: KILN_PRODUCER,
      _schemaURL: `${FACET_SCHEMA}#/$defs/KilnRunFacet`,
      kilnRunId: run.id,
      params: run.params,
      environment: run.environment,
      codeVersion: run.codeVersion,
      error: run.error,
    },
  };
  if (run.jobId) {
    runFacets.parent = {
      _producer: KILN_PRODUCER,
      _schemaURL: 'https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet',
      run: { runId: uuidFromId(run.jobId) },
      job: { namespace: 'kiln', name: run.jobId },
    };
  }
  const base = {
    run: { runId: uuidFromId(run.id), facets: runFacets },
    job: { namespace: 'kiln', name: run.stage, facets: {} },
    producer: KILN_PRODUCER,
    schemaURL: OPENLINEAGE_SCHEMA_URL,
  };
  const events: OpenLineageRunEvent[] = [
    { ...base, eventType: 'START', eventTime: run.startedAt, inputs, outputs: [] },
  ];
  const end = terminal(run.status);
  if (end) events.push({ ...base, eventType: end, eventTime: run.finishedAt ?? run.startedAt, inputs, outputs });
  return events;
}

/** Every run's events, oldest first. */
export function exportOpenLineage(store: LineageStore): OpenLineageRunEvent[] {
  return store.allRuns().flatMap((r) => runEvents(store, r));
}
