/**
 * One batch of shard rows through the filter models: generated captions (when a captioner is given)
 * and CLIP scores against the caption the policy names. Row failures are data (an `error` string),
 * never exceptions, so a stage can keep every row with its reason.
 *
 * CLIP reranking (LAION-COCO's method), when the captioner was loaded with `candidates`: beam search's
 * N best captions per image are scored with the filter's CLIP (each image embedded once, the candidate
 * texts batched, the original caption in the same set when the policy scores it) and the highest-scoring
 * one (the first on ties, i.e. the better beam) becomes `caption_generated`; the candidates and their
 * scores are returned too.
 */
import { ConfigError } from '../../infra/errors.js';
import type { OnnxDeviceChoice } from '../../infra/onnx-runtime.js';
import type { Captioner } from './captioner.js';
import type { ClipScorer } from './clip-scorer.js';
import type { ModelFileHash } from './model-dir.js';
import type { CaptionSource, SelectionPolicy } from './selection.js';

/** The row fields the filter reads (the shard's `jpg` and `caption` columns). */
export interface FilterInputRow {
  image: Uint8Array | null;
  caption: string | null;
}

/** What the filter adds to a row (shard columns `clip_score`, `caption_generated`, and with reranking `caption_candidates`, `caption_candidate_scores`). */
export interface FilterRowResult {
  clip_score: number | null;
  caption_generated: string | null;
  error: string | null;
  /** Reranking only: the candidate captions, best beam first (null when none were made). */
  caption_candidates?: string[] | null;
  /** Reranking only: CLIP score of each candidate (same order). */
  caption_candidate_scores?: number[] | null;
}

/** Index of the largest value (the first on ties). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i;
  return best;
}

/** The models a filter batch uses. */
export interface FilterModels {
  scorer: ClipScorer;
  captioner?: Captioner | undefined;
}

/**
 * Caption (if a captioner is given) and score a batch of rows. With captionSource "generated" the
 * score is of the generated caption and a captioner is required (ConfigError otherwise).
 */
export async function scoreAndCaptionRows(
  rows: readonly FilterInputRow[],
  models: FilterModels,
  captionSource: CaptionSource,
): Promise<FilterRowResult[]> {
  if (captionSource === 'generated' && !models.captioner) {
    throw new ConfigError(
      'captionSource is "generated" but no captioner model was given',
      'pass a captioner model directory, or score the original captions (captionSource "original").',
    );
  }
  const images = rows.map((r) => r.image);
  if (models.captioner?.options.candidates != null)
    return rerankRows(rows, models as Required<FilterModels>, captionSource);
  const generated = models.captioner ? await models.captioner.captionRows(images) : null;
  const texts = rows.map((r, i) => (captionSource === 'generated' ? (generated?.captions[i] ?? null) : r.caption));
  const scored = await models.scorer.scoreRows(images, texts);
  return rows.map((_, i) => {
    const s = scored.scores[i] as number;
    const error = generated?.errors[i] ?? scored.errors[i] ?? null;
    return { clip_score: Number.isFinite(s) ? s : null, caption_generated: generated?.captions[i] ?? null, error };
  });
}

/** What lineage records about a filter run's models and policy. */
export interface FilterLineage {
  policy: SelectionPolicy;
  clip: { dir: string; device: OnnxDeviceChoice; batchSize: number; files: ModelFileHash[] };
  captioner: { dir: string; device: OnnxDeviceChoice; options: Captioner['options']; files: ModelFileHash[] } | null;
}

/** Collect the lineage record (model file hashes are computed once per loaded model). */
export async function filterLineage(models: FilterModels, policy: SelectionPolicy): Promise<FilterLineage> {
  const { scorer, captioner } = models;
  return {
    policy,
    clip: {
      dir: scorer.modelDir,
      device: scorer.device,
      batchSize: scorer.batchSize,
      files: await scorer.fileHashes(),
    },
    captioner: captioner
      ? {
          dir: captioner.modelDir,
          device: captioner.device,
          options: captioner.options,
          files: await captioner.fileHashes(),
        }
      : null,
  };
}

/** Candidates from the captioner, scored with CLIP, the best kept (see the file comment). */
async function rerankRows(
  rows: readonly FilterInputRow[],
  models: Required<FilterModels>,
  captionSource: CaptionSource,
): Promise<FilterRowResult[]> {
  const images = rows.map((r) => r.image);
  const made = await models.captioner.captionCandidateRows(images);
  const withOriginal = rows.map((r) => captionSource === 'original' && r.caption !== null);
  const sets = made.candidates.map((c, i) =>
    c === null ? null : withOriginal[i] ? [...c, rows[i]!.caption as string] : c,
  );
  const scored = await models.scorer.scoreCaptionSets(images, sets);
  return rows.map((_, i) => {
    const cands = made.candidates[i] ?? null;
    const all = scored.scores[i] ?? null;
    const error = made.errors[i] ?? scored.errors[i] ?? null;
    if (cands === null || all === null)
      return {
        clip_score: null,
        caption_generated: null,
        error,
        caption_candidates: cands,
        caption_candidate_scores: null,
      };
    const candScores = Array.from(all.subarray(0, cands.length));
    const best = argmax(candScores);
    const clip = captionSource === 'generated' ? candScores[best]! : withOriginal[i] ? all[cands.length]! : null;
    return {
      clip_score: clip,
      caption_generated: cands[best]!,
      error: clip === null ? 'no caption' : error,
      caption_candidates: cands,
      caption_candidate_scores: candScores,
    };
  });
}
