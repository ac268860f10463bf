/**
 * Pass 1 of filtering one shard: run the models over the source shard's `success` rows in batches
 * and record each row's CLIP score, generated caption or scoring error in the scores sidecar
 * (stage-scores.ts). Resumable: the sidecar is checkpointed (atomically) every
 * `checkpointIntervalMs` and when the shard is cancelled or fails, and a later call continues after
 * the last checkpointed row, so no row is ever scored into the output twice.
 */
import type { Table } from 'apache-arrow';
import type { ArtifactStorage } from '../../infra/storage.js';
import { DatasetLayout } from '../shards/layout.js';
import { readShardBatches } from '../shards/reader.js';
import { scoreAndCaptionRows, type FilterInputRow, type FilterModels } from './filter-batch.js';
import type { FilterPlan } from './stage-plan.js';
import { verifyPinnedShard, type PinnedSourceShard } from '../shards/source-version.js';
import {
  emptyShardScores,
  readShardScores,
  scoresUri,
  writeShardScores,
  type FileRef,
  type ShardScores,
} from './stage-scores.js';

/** Which shard of a plan to filter, and how. */
export interface FilterShardSpec {
  plan: FilterPlan;
  /** The source shard's index (as its manifest lists it); the output shard has the same index. */
  shardIndex: number;
  /** Dataset-wide top-fraction cutoff (DataComp). Omitted: computed over this shard alone. */
  topFractionCutoff?: number | null;
  /** Rows per Parquet row group of the output (default 1024). */
  rowGroupSize?: number;
}

/** Progress of one shard. */
export interface FilterShardProgress {
  phase: 'score' | 'write';
  rowsDone: number;
  rowsTotal: number;
}

/** The callbacks a shard run uses. */
export interface FilterShardHooks {
  /** The models to score with; called only when rows still need scoring. */
  models: () => Promise<FilterModels>;
  /** Called after each scored batch and every 256 written rows; may throw to abort the shard. */
  onProgress?: (p: FilterShardProgress) => void;
  signal?: AbortSignal;
  /** Checkpoint the scores at most this often while scoring (ms, default 30,000; 0: every batch). */
  checkpointIntervalMs?: number;
}

/** The complete scores of a shard and what this call did to get them. */
export interface ScoreShardOutcome {
  scores: ShardScores;
  ref: FileRef;
  /** Rows the models ran on in this call (0 when the scores were already complete). */
  rowsScored: number;
  /** The source row this call started scoring from (> 0: resumed from a checkpoint). */
  resumedFromRow: number;
  /** Milliseconds this call spent in the models (decode, preprocess, inference). */
  modelMs: number;
  /** True when this call checked the source shard's sha256. */
  sourceVerified: boolean;
}

/** The plan's entry for source shard `index`. */
export function sourceShardOf(plan: FilterPlan, index: number): PinnedSourceShard {
  const s = plan.source.shards.find((x) => x.index === index);
  if (!s) throw new RangeError(`source dataset ${plan.source.id} has no shard ${index}`);
  return s;
}

/** Check the source shard still has the sha256 its manifest records (datasets are immutable). */
export async function verifySourceShard(storage: ArtifactStorage, src: PinnedSourceShard): Promise<void> {
  await verifyPinnedShard(
    storage,
    src,
    'restore the source dataset version (its manifest lists this shard), or filter another version.',
  );
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('filter shard cancelled');
}

function noteRuntime(s: ShardScores, models: FilterModels): void {
  const ep = models.scorer.device.device;
  if (!s.runtime.executionProviders.includes(ep)) s.runtime.executionProviders.push(ep);
  s.runtime.ortVersion = models.scorer.device.ortVersion;
  if (models.captioner)
    s.runtime.captionDecoder = {
      path: models.captioner.options.decoder.path,
      files: models.captioner.options.decoder.files,
    };
}

/**
 * Make sure shard `spec.shardIndex` has complete scores (scoring the rows not yet checkpointed).
 * Invariant of the sidecar: a `success` row has exactly one of clipScore / scoreError non-null;
 * other rows have both null.
 */
export async function scoreShard(
  storage: ArtifactStorage,
  spec: FilterShardSpec,
  hooks: FilterShardHooks,
): Promise<ScoreShardOutcome> {
  const { plan } = spec;
  const src = sourceShardOf(plan, spec.shardIndex);
  const uri = scoresUri(storage, new DatasetLayout(storage, plan.datasetName, plan.version), spec.shardIndex);
  const found = await readShardScores(storage, uri, {
    fingerprint: plan.fingerprint,
    sourceSha256: src.sha256,
    rows: src.rows,
  });
  if (found?.scores.complete)
    return {
      scores: found.scores,
      ref: found.ref,
      rowsScored: 0,
      resumedFromRow: found.scores.rowsDone,
      modelMs: 0,
      sourceVerified: false,
    };
  await verifySourceShard(storage, src);
  const s =
    found?.scores ??
    emptyShardScores(
      spec.shardIndex,
      plan.fingerprint,
      { uri: src.uri, sha256: src.sha256, rows: src.rows },
      plan.captioner?.options.candidates !== undefined,
    );
  const start = s.rowsDone;
  const models = await hooks.models();
  noteRuntime(s, models);
  const interval = hooks.checkpointIntervalMs ?? 30_000;
  let lastCheckpoint = Date.now();
  let savedRows = start;
  let rowsScored = 0;
  let modelMs = 0;
  let pending: (FilterInputRow | null)[] = [];
  let pendingInputs = 0;

  const checkpoint = async () => {
    await writeShardScores(storage, uri, s);
    lastCheckpoint = Date.now();
    savedRows = s.rowsDone;
  };
  const flush = async () => {
    const inputs = pending.filter((p): p is FilterInputRow => p !== null);
    const t = performance.now();
    const results = inputs.length > 0 ? await scoreAndCaptionRows(inputs, models, plan.policy.captionSource) : [];
    modelMs += performance.now() - t;
    let k = 0;
    for (const p of pending) {
      const r = p === null ? null : results[k++]!;
      s.clipScore.push(r?.clip_score ?? null);
      s.captionGenerated.push(r?.caption_generated ?? null);
      s.scoreError.push(r && r.clip_score === null ? (r.error ?? 'not scored') : null);
      s.captionCandidates?.push(r?.caption_candidates ?? null);
      s.captionCandidateScores?.push(r?.caption_candidate_scores ?? null);
    }
    s.rowsDone += pending.length;
    rowsScored += inputs.length;
    pending = [];
    pendingInputs = 0;
    if (Date.now() - lastCheckpoint >= interval) await checkpoint();
    if (hooks.signal?.aborted) {
      await checkpoint();
      throw abortError(hooks.signal);
    }
    hooks.onProgress?.({ phase: 'score', rowsDone: s.rowsDone, rowsTotal: src.rows });
  };

  try {
    let index = 0;
    const columns = ['status', 'caption', 'jpg'];
    for await (const table of readShardBatches(storage, src.uri, {
      batchSize: plan.batchSize,
      columns,
    }) as AsyncGenerator<Table>) {
      if (index + table.numRows <= start) {
        index += table.numRows;
        continue;
      }
      const status = table.getChild('status'),
        caption = table.getChild('caption'),
        jpg = table.getChild('jpg');
      for (let i = 0; i < table.numRows; i++, index++) {
        if (index < start) continue;
        const ok = status?.get(i) === 'success';
        pending.push(
          ok
            ? { image: (jpg?.get(i) as Uint8Array | null) ?? null, caption: (caption?.get(i) as string | null) ?? null }
            : null,
        );
        if (ok) pendingInputs++;
        if (pendingInputs >= plan.batchSize) await flush();
      }
    }
    if (pending.length > 0) await flush();
    if (s.rowsDone !== src.rows)
      throw new Error(`source shard ${src.uri} has ${s.rowsDone} rows but its manifest says ${src.rows}`);
  } catch (err) {
    // Keep the work done so far (cancellation, worker shutdown, a failing batch): the retry resumes here.
    if (s.rowsDone > savedRows && s.rowsDone < src.rows) await checkpoint().catch(() => undefined);
    throw err;
  }
  s.complete = true;
  const ref = await writeShardScores(storage, uri, s);
  return {
    scores: s,
    ref: { uri: ref.uri, sha256: ref.sha256, bytes: ref.bytes },
    rowsScored,
    resumedFromRow: start,
    modelMs: Math.round(modelMs),
    sourceVerified: true,
  };
}
