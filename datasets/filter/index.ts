/** CLIP-score filtering and captioning library (see architecture.md). */
export {
  loadClipScorer,
  rowCosine,
  type ClipScorer,
  type ClipScorerOptions,
  type ClipScoreResult,
} from './clip-scorer.js';
export { loadCaptioner, type Captioner, type CaptionerOptions } from './captioner.js';
export {
  selectionPolicy,
  selectRows,
  topFractionCutoff,
  scoreHistogram,
  filterStats,
  mergeFilterStats,
  DEFAULT_CLIP_THRESHOLD,
  type CaptionSource,
  type SelectionPolicy,
  type Selection,
  type SelectionOutcome,
  type ScoreHistogram,
  type FilterStats,
} from './selection.js';
export {
  scoreAndCaptionRows,
  filterLineage,
  type FilterInputRow,
  type FilterRowResult,
  type FilterModels,
  type FilterLineage,
} from './filter-batch.js';
export { checkModelDir, hashModelDir, EXPECTED_MODEL_FILES, type ModelKind, type ModelFileHash } from './model-dir.js';
export { decodeRgb, ImagePreprocessor, type ImageProcessorConfig, type PixelBatch } from './preprocess.js';
export { pilResize, PIL_RESAMPLE, type PilResample, type RawImage8 } from '../../infra/imaging/pil-resample.js';
export type { ModelRuntimeOptions } from './runtime.js';
