/**
 * The filter stage's per-shard scores sidecar: what the models said about each row of one source
 * shard (CLIP score, generated caption, or why a row could not be scored), in source row order.
 *
 * It is the stage's resume point and its pass-1 output:
 * - While a shard is being scored it holds the processed prefix (`rowsDone`, `complete: false`) and
 *   is rewritten atomically every checkpoint, so a killed worker's retry continues after the last
 *   checkpointed row instead of running the models over the shard again.
 * - Once complete it is what the write pass (and DataComp's dataset-wide top-fraction cutoff) reads:
 *   scoring never has to run twice for a shard.
 * A sidecar is only trusted when its fingerprint (models, caption options) and source sha256 match.
 *
 *   datasets/<name>/v<version>/scores/shard-000012.scores.json
 */
import { z } from 'zod';
import { sha256Hex } from '../../infra/hash.js';
import type { ArtifactStorage, WrittenObject } from '../../infra/storage.js';
import type { DatasetLayout } from '../shards/layout.js';

export const SCORES_SCHEMA_VERSION = 1;

/** A stored file and its identity. */
import type { FileRef } from '../shards/stage-shard.js';

export type { FileRef };

/** The scores of one source shard (arrays are indexed by source row, length `rowsDone`). */
export interface ShardScores {
  schemaVersion: number;
  shardIndex: number;
  /** The plan fingerprint the scores were computed under (models, caption options). */
  fingerprint: string;
  source: { uri: string; sha256: string; rows: number };
  complete: boolean;
  /** Source rows processed so far: a prefix, in file order. */
  rowsDone: number;
  /** Cosine similarity (null: not scored, or not a `success` row). */
  clipScore: (number | null)[];
  captionGenerated: (string | null)[];
  /** Why a `success` row has no score (null when scored, or when the row was not `success`). */
  scoreError: (string | null)[];
  /** CLIP reranking only (absent otherwise): each row's candidate captions and their CLIP scores. */
  captionCandidates?: (string[] | null)[] | undefined;
  captionCandidateScores?: (number[] | null)[] | undefined;
  /** Execution providers and ONNX Runtime version that computed these rows; captioner decoder graphs (split or merged). */
  runtime: {
    executionProviders: string[];
    ortVersion: string | null;
    captionDecoder?: { path: string; files: string[] } | undefined;
  };
}

const scoresSchema = z.object({
  schemaVersion: z.literal(SCORES_SCHEMA_VERSION),
  shardIndex: z.number().int().nonnegative(),
  fingerprint: z.string(),
  source: z.object({ uri: z.string(), sha256: z.string(), rows: z.number().int().nonnegative() }),
  complete: z.boolean(),
  rowsDone: z.number().int().nonnegative(),
  clipScore: z.array(z.number().nullable()),
  captionGenerated: z.array(z.string().nullable()),
  scoreError: z.array(z.string().nullable()),
  captionCandidates: z.array(z.array(z.string()).nullable()).optional(),
  captionCandidateScores: z.array(z.array(z.number()).nullable()).optional(),
  runtime: z.object({
    executionProviders: z.array(z.string()),
    ortVersion: z.string().nullable(),
    captionDecoder: z.object({ path: z.string(), files: z.array(z.string()) }).optional(),
  }),
});

const pad = (i: number) => String(i).padStart(6, '0');

/** URI of shard `i`'s scores sidecar in the output version. */
export function scoresUri(storage: ArtifactStorage, layout: DatasetLayout, i: number): string {
  return storage.child(layout.dirUri, 'scores', `shard-${pad(i)}.scores.json`);
}

/** The directory holding a version's scores sidecars. */
export function scoresDirUri(storage: ArtifactStorage, layout: DatasetLayout): string {
  return storage.child(layout.dirUri, 'scores');
}

/** An empty (nothing scored yet) sidecar. */
export function emptyShardScores(
  shardIndex: number,
  fingerprint: string,
  source: ShardScores['source'],
  candidates = false,
): ShardScores {
  return {
    ...(candidates ? { captionCandidates: [], captionCandidateScores: [] } : {}),
    schemaVersion: SCORES_SCHEMA_VERSION,
    shardIndex,
    fingerprint,
    source,
    complete: false,
    rowsDone: 0,
    clipScore: [],
    captionGenerated: [],
    scoreError: [],
    runtime: { executionProviders: [], ortVersion: null },
  };
}

/**
 * Read the sidecar at `uri` if it exists, parses, and belongs to this fingerprint and source shard;
 * otherwise undefined (a stale or foreign sidecar is ignored and will be overwritten).
 */
export async function readShardScores(
  storage: ArtifactStorage,
  uri: string,
  expect: { fingerprint: string; sourceSha256: string; rows: number },
): Promise<{ scores: ShardScores; ref: FileRef } | undefined> {
  if (!(await storage.exists(uri))) return undefined;
  const buf = await storage.read(uri);
  let parsed: ShardScores;
  try {
    const r = scoresSchema.safeParse(JSON.parse(buf.toString('utf8')));
    if (!r.success) return undefined;
    parsed = r.data;
  } catch {
    return undefined;
  }
  const lengths = [parsed.clipScore.length, parsed.captionGenerated.length, parsed.scoreError.length];
  if (parsed.captionCandidates) lengths.push(parsed.captionCandidates.length);
  if (parsed.captionCandidateScores) lengths.push(parsed.captionCandidateScores.length);
  if (
    parsed.fingerprint !== expect.fingerprint ||
    parsed.source.sha256 !== expect.sourceSha256 ||
    parsed.source.rows !== expect.rows
  )
    return undefined;
  if (lengths.some((n) => n !== parsed.rowsDone) || parsed.rowsDone > parsed.source.rows) return undefined;
  if (parsed.complete && parsed.rowsDone !== parsed.source.rows) return undefined;
  return { scores: parsed, ref: { uri, sha256: sha256Hex(buf), bytes: buf.byteLength } };
}

/** Write the sidecar atomically (temp file, fsync, rename). */
export function writeShardScores(storage: ArtifactStorage, uri: string, scores: ShardScores): Promise<WrittenObject> {
  return storage.writeAtomic(uri, `${JSON.stringify(scores)}\n`);
}
