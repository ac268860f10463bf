/**
 * The end of a filter run: the dataset-wide top-fraction cutoff (from the scores sidecars) and the
 * output version's manifest, built from the plan and every shard's stats (the shards' commit
 * records). The manifest lists the source version as its parent and the run's parameters: policy,
 * cutoff, model directories and the sha256 of every model file, caption options, device, batch size
 * and the execution providers that actually ran.
 */
import { SHARD_SCHEMA_VERSION } from '../../infra/constants.js';
import { KilnError } from '../../infra/errors.js';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout, shardRelativePath, statsRelativePath } from '../shards/layout.js';
import type { DatasetManifest, ManifestShard } from '../shards/manifest.js';
import { ROW_STATUSES, type RowStatus } from '../shards/schema.js';
import { mergeFilterStats, type FilterStats } from './selection.js';
import { findFinishedFilterShard } from './stage.js';
import { datasetTopFractionCutoff, type DatasetCutoff } from './stage-cutoff.js';
import type { FilterPlan } from './stage-plan.js';
import { readShardScores, scoresUri } from './stage-scores.js';

/** Shards of a filter version that are not finished when they should be. */
export class FilterIncompleteError extends KilnError {
  constructor(datasetId: string, what: string, indices: number[]) {
    const list = indices.slice(0, 10).join(', ') + (indices.length > 10 ? `, ... (${indices.length} in all)` : '');
    super(
      'KILN_FILTER_INCOMPLETE',
      `dataset ${datasetId}: ${what} of shards ${list} are missing`,
      'rerun the filter with the same options: it resumes the version and finishes the missing shards.',
    );
  }
}

/** Totals of a filter version. */
export interface FilterTotals {
  rows: number;
  kept: number;
  filtered: number;
  carried: number;
  countsByStatus: Record<RowStatus, number>;
  executionProviders: string[];
  ortVersions: string[];
  /** Captioner decoder paths the shards ran ("split" / "merged"). */
  captionDecoders: string[];
  /** Merged filter stats of all shards (histogram over the whole dataset). */
  filter: FilterStats | null;
}

/** DataComp's dataset-wide cutoff over the complete scores sidecars of every shard of the plan. */
export async function filterVersionCutoff(
  storage: ArtifactStorage,
  plan: FilterPlan,
  fraction: number,
  onShard?: (n: number) => void,
): Promise<DatasetCutoff> {
  const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
  const missing: number[] = [];
  async function* shards(): AsyncGenerator<(number | null)[]> {
    let n = 0;
    for (const src of plan.source.shards) {
      const found = await readShardScores(storage, scoresUri(storage, layout, src.index), {
        fingerprint: plan.fingerprint,
        sourceSha256: src.sha256,
        rows: src.rows,
      });
      if (!found?.scores.complete) {
        missing.push(src.index);
        continue;
      }
      onShard?.(++n);
      yield found.scores.clipScore;
    }
    if (missing.length > 0) throw new FilterIncompleteError(layout.id, 'the scores', [...new Set(missing)]);
  }
  return datasetTopFractionCutoff(shards, fraction);
}

/** Build the manifest of a fully filtered version (throws FilterIncompleteError naming unfinished shards). */
export async function buildFilterManifest(
  storage: ArtifactStorage,
  plan: FilterPlan,
  topFractionCutoff: number | null,
  onProgress?: (shardsDone: number) => void,
): Promise<{ manifest: DatasetManifest; totals: FilterTotals }> {
  const layout = new DatasetLayout(storage, plan.datasetName, plan.version);
  const shards: ManifestShard[] = [];
  const missing: number[] = [];
  const totals: FilterTotals = {
    rows: 0,
    kept: 0,
    filtered: 0,
    carried: 0,
    countsByStatus: Object.fromEntries(ROW_STATUSES.map((s) => [s, 0])) as Record<RowStatus, number>,
    executionProviders: [],
    ortVersions: [],
    captionDecoders: [],
    filter: null,
  };
  for (const [k, src] of plan.source.shards.entries()) {
    const i = src.index;
    const done = await findFinishedFilterShard(storage, layout, i, false);
    if (!done) {
      missing.push(i);
      continue;
    }
    const s = done.stats;
    shards.push({
      index: i,
      path: shardRelativePath(i),
      rows: s.rows,
      sha256: s.shard.sha256,
      bytes: s.shard.bytes,
      stats: statsRelativePath(i),
    });
    totals.rows += s.rows;
    totals.kept += s.filter.kept;
    totals.filtered += s.filter.rows - s.filter.kept;
    totals.carried += s.carried;
    for (const st of ROW_STATUSES) totals.countsByStatus[st] += s.countsByStatus[st] ?? 0;
    for (const ep of s.runtime.executionProviders)
      if (!totals.executionProviders.includes(ep)) totals.executionProviders.push(ep);
    if (s.runtime.ortVersion && !totals.ortVersions.includes(s.runtime.ortVersion))
      totals.ortVersions.push(s.runtime.ortVersion);
    const dec = s.runtime.captionDecoder?.path;
    if (dec && !totals.captionDecoders.includes(dec)) totals.captionDecoders.push(dec);
    totals.filter = totals.filter ? mergeFilterStats(totals.filter, s.filter) : s.filter;
    if (k % 1000 === 999) onProgress?.(k + 1);
  }
  if (missing.length > 0) throw new FilterIncompleteError(layout.id, 'the output', missing);
  if (totals.rows !== plan.source.rows) {
    throw new KilnError(
      'KILN_ROW_COUNT_MISMATCH',
      `dataset ${layout.id}: shards hold ${totals.rows} rows but the source ${plan.source.id} has ${plan.source.rows}`,
      'delete the version directory and filter again; this is a bug, please report it.',
    );
  }
  const model = (m: { dir: string; files: { path: string; sha256: string; bytes: number }[] }) => ({
    dir: m.dir,
    files: m.files,
  });
  const manifest: DatasetManifest = {
    id: layout.id,
    name: plan.datasetName,
    version: plan.version,
    parents: [plan.source.id],
    schemaVersion: SHARD_SCHEMA_VERSION,
    stage: 'filter',
    params: {
      fingerprint: plan.fingerprint,
      source: { id: plan.source.id, manifestSha256: plan.source.manifestSha256 },
      policy: plan.policy,
      threshold: plan.policy.threshold,
      keepTopFraction: plan.policy.keepTopFraction,
      captionSource: plan.policy.captionSource,
      topFractionCutoff,
      clip: model(plan.clip),
      captioner: plan.captioner
        ? { ...model(plan.captioner), options: plan.captioner.options, type: plan.captioner.type ?? 'vit-gpt2' }
        : null,
      device: plan.device,
      batchSize: plan.batchSize,
      executionProviders: totals.executionProviders,
      ortVersions: totals.ortVersions,
      captionDecoders: totals.captionDecoders,
    },
    createdAt: new Date().toISOString(),
    rows: totals.rows,
    countsByStatus: totals.countsByStatus,
    shards,
  };
  return { manifest, totals };
}
