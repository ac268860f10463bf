/**
 * Planning an exact-dedup run: pin the source version, find every `success` row whose image bytes
 * (sha256) an earlier row of the same version already holds (in shard order, then row order, so the
 * first occurrence is kept whichever URL list it came from), pick the output version (the one
 * version rule, datasets/shards/version-claim.ts) and write plan.json. The duplicates are part of
 * the plan, so every shard of the run, retried or not, decides the same way.
 */
import { sha256Hex } from '../../infra/hash.js';
import { sweepTempFiles, type ArtifactStorage } from '../../infra/storage.js';
import { readShardRows } from '../shards/reader.js';
import { pinSourceVersion, type PinnedSource } from '../shards/source-version.js';
import { chooseVersion, readVersionPlan } from '../shards/version-claim.js';

export const DEDUP_STAGE_VERSION = 1;

export interface DedupPlanSpec {
  datasetName: string;
  sourceVersion: number;
  /** Explicit output version (default: resume a matching version, else the next free one). */
  outputVersion?: number;
}

/** A later row with the same image bytes as an earlier one: the row to mark and the row it repeats. */
export interface DuplicateRow {
  row: number;
  sha256: string;
  firstKey: string;
  firstShard: number;
}

export interface DedupPlan {
  stage: 'dedup';
  stageVersion: number;
  datasetName: string;
  version: number;
  datasetId: string;
  fingerprint: string;
  source: PinnedSource;
  /** Source shard index -> its duplicate rows (shards without duplicates are absent). */
  duplicates: Record<string, DuplicateRow[]>;
  duplicateRows: number;
  createdAt: string;
}

/** Plan (or find the plan of) a dedup run of `datasetName@v<sourceVersion>`. */
export async function planDedup(
  storage: ArtifactStorage,
  spec: DedupPlanSpec,
  latestRecordedVersion: number,
  onProgress?: (shardsRead: number) => void,
): Promise<{ plan: DedupPlan; resumed: boolean }> {
  const source = await pinSourceVersion(storage, spec.datasetName, spec.sourceVersion, 'dedup');
  const fingerprint = sha256Hex(
    JSON.stringify({ stage: 'dedup', stageVersion: DEDUP_STAGE_VERSION, source: [source.id, source.manifestSha256] }),
  );
  const chosen = await chooseVersion(storage, {
    datasetName: spec.datasetName,
    fingerprint,
    explicit: spec.outputVersion,
    first: spec.sourceVersion + 1,
    latestRecorded: latestRecordedVersion,
  });
  if (chosen.resumed) {
    // Temp files of shard writers killed in an earlier run of this version.
    if (!(await storage.exists(chosen.layout.manifestUri))) await sweepTempFiles(storage, chosen.layout.shardsDirUri);
    return { plan: (await readVersionPlan<DedupPlan>(storage, chosen.layout))!, resumed: true };
  }
  const first = new Map<string, { key: string; shard: number }>();
  const duplicates: Record<string, DuplicateRow[]> = {};
  let duplicateRows = 0;
  for (const [k, shard] of source.shards.entries()) {
    let row = 0;
    for await (const r of readShardRows(storage, shard.uri, { columns: ['key', 'status', 'sha256'] })) {
      if (r.status === 'success' && r.sha256) {
        const seen = first.get(r.sha256);
        if (seen) {
          (duplicates[String(shard.index)] ??= []).push({
            row,
            sha256: r.sha256,
            firstKey: seen.key,
            firstShard: seen.shard,
          });
          duplicateRows++;
        } else {
          first.set(r.sha256, { key: r.key, shard: shard.index });
        }
      }
      row++;
    }
    onProgress?.(k + 1);
  }
  const plan: DedupPlan = {
    stage: 'dedup',
    stageVersion: DEDUP_STAGE_VERSION,
    datasetName: spec.datasetName,
    version: chosen.layout.version,
    datasetId: chosen.layout.id,
    fingerprint,
    source,
    duplicates,
    duplicateRows,
    createdAt: new Date().toISOString(),
  };
  await storage.writeAtomic(chosen.layout.planUri, `${JSON.stringify(plan, null, 2)}\n`);
  return { plan, resumed: false };
}
