/**
 * Lineage audits over the store's graph: `traceArtifact` walks upstream from an artifact (or a
 * dataset version's manifest) through the runs that produced it to everything they consumed,
 * recursively, collecting run params (thresholds, configs), environments (models, backends) and
 * code versions. Answers "which data, from where, filtered how, trained by which code".
 * `kiln lineage trace` prints the result as a short tree (cli/trace-tree.ts) or, with `--json`, whole.
 */
import type { ArtifactRecord, DatasetVersionRecord, LineageStore, RunRecord } from './store.js';

export interface TraceNode {
  artifact: ArtifactRecord;
  /** Dataset version whose manifest this artifact is, if any. */
  datasetVersion?: DatasetVersionRecord;
  producedBy: { run: RunRecord; consumed: TraceNode[] }[];
  /** Already expanded elsewhere in this trace (shared inputs such as model files are shown once). */
  seeAbove?: boolean;
}

export interface TraceResult {
  root: TraceNode;
  runs: RunRecord[];
  codeVersions: string[];
  datasetVersions: DatasetVersionRecord[];
  sources: ArtifactRecord[];
}

/** Resolve a user reference (artifact URI, sha256, dataset version id like name@3) to an artifact. */
export function resolveArtifactRef(store: LineageStore, ref: string): ArtifactRecord | undefined {
  const byUri = store.getArtifactByUri(ref);
  if (byUri) return byUri;
  if (/^[0-9a-f]{64}$/.test(ref)) return store.artifactsBySha256(ref)[0];
  const ds = store.getDatasetVersion(ref);
  if (ds) return store.getArtifact(ds.manifestArtifactId);
  return undefined;
}

export function traceArtifact(store: LineageStore, artifact: ArtifactRecord, maxDepth = 50): TraceResult {
  const runs = new Map<string, RunRecord>();
  const datasets = new Map<string, DatasetVersionRecord>();
  const sources = new Map<number, ArtifactRecord>();
  const visiting = new Set<number>();
  const expanded = new Set<number>();
  const datasetByManifest = (id: number) => store.datasetVersionByManifest(id);

  const visit = (a: ArtifactRecord, depth: number): TraceNode => {
    const node: TraceNode = { artifact: a, producedBy: [] };
    const ds = datasetByManifest(a.id);
    if (ds) {
      node.datasetVersion = ds;
      datasets.set(ds.id, ds);
    }
    if (visiting.has(a.id) || depth > maxDepth) return node;
    if (expanded.has(a.id)) {
      node.seeAbove = true;
      return node;
    }
    expanded.add(a.id);
    visiting.add(a.id);
    const producers = store.runsOfArtifact(a.id, 'produced');
    if (producers.length === 0) sources.set(a.id, a);
    for (const run of producers) {
      runs.set(run.id, run);
      const consumed = store.artifactsOfRun(run.id, 'consumed').map((c) => visit(c, depth + 1));
      node.producedBy.push({ run, consumed });
    }
    visiting.delete(a.id);
    return node;
  };
  const root = visit(artifact, 0);
  const runList = [...runs.values()];
  return {
    root,
    runs: runList,
    codeVersions: [...new Set(runList.map((r) => r.codeVersion))],
    datasetVersions: [...datasets.values()],
    sources: [...sources.values()],
  };
}
