/**
 * One batch of shard rows through the filter models: generated captions (when a captioner is given)
 * and CLIP scores against the caption the policy names. Row failures are data (an `error` string),
 * never exceptions, so a stage can keep every row with its reason.
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

/** What the filter adds to a row (shard columns `clip_score`, `caption_generated`). */
export interface FilterRowResult {
  clip_score: number | null;
  caption_generated: string | null;
  error: string | null;
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
