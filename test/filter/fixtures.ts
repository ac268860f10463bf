/** Paths and reference values of the committed filter fixtures (fixtures/models/). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import type { CaptionerOptions } from '../../datasets/filter/captioner.js';

/** Project root (this file runs from dist/test/filter/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const MODELS = `${ROOT}fixtures/models`;
export const CLIP_DIR = `${MODELS}/clip-tiny`;
export const CAPTIONER_DIR = `${MODELS}/vit-gpt2-tiny`;

interface Flat {
  shape: number[];
  data: number[];
}
interface CaptionRun {
  sequences: number[][];
  prompt_ids: number[];
  texts: string[];
  prompt?: string;
  min_logit_margin: number;
}
/** Shape of fixtures/models/reference.json (written by scripts/fixtures/make_tiny_models.py). */
export interface Reference {
  versions: Record<string, string>;
  images: string[];
  captions: string[];
  clip: {
    pixel_values: Flat;
    input_ids: number[][];
    image_embeds: Flat;
    text_embeds: Flat;
    scores: number[];
    score_matrix: Flat;
  };
  captioner: { max_new_tokens: number; pixel_values: Flat; runs: { greedy: CaptionRun; prompt: CaptionRun } };
  generated_caption_scores: { texts: string[]; scores: number[] };
  files: Record<string, string>;
}

export const reference: Reference = JSON.parse(readFileSync(`${MODELS}/reference.json`, 'utf8')) as Reference;

/** The encoded test images, in reference order. */
export function referenceImages(): Uint8Array[] {
  return reference.images.map((n) => new Uint8Array(readFileSync(`${MODELS}/images/${n}`)));
}

/**
 * A run of a beam-search reference (fixtures/models/captioner-beams.json, blip-reference.json):
 * transformers' generate() settings and the token ids it returned, batched and one image at a time.
 */
export interface BeamReferenceRun {
  name: string;
  num_beams: number;
  max_new_tokens: number;
  length_penalty: number | null;
  early_stopping: boolean | 'never' | null;
  prompt: string | null;
  sequences: number[][];
  texts: string[];
  single_sequences: number[][];
  stable_under_noise: boolean;
}

/** fixtures/models/captioner-beams.json (scripts/fixtures/make_beam_reference.py), on the ViT-GPT2 fixture. */
export interface ViTGpt2BeamRun extends BeamReferenceRun {
  /** Null: the model's own EOS; else a copy of the model whose generation_config.json names this one. */
  eos_token_id: number | null;
}
export const beamReference = JSON.parse(readFileSync(`${MODELS}/captioner-beams.json`, 'utf8')) as {
  images: string[];
  noise: number;
  runs: ViTGpt2BeamRun[];
};

/** The captioner options of `run` on the CPU (settings the run leaves unset keep the model's defaults). */
export function beamRunOptions(run: BeamReferenceRun): CaptionerOptions {
  return {
    device: 'cpu',
    numBeams: run.num_beams,
    maxNewTokens: run.max_new_tokens,
    ...(run.prompt ? { prompt: run.prompt } : {}),
    ...(run.length_penalty !== null ? { lengthPenalty: run.length_penalty } : {}),
    ...(run.early_stopping !== null ? { earlyStopping: run.early_stopping } : {}),
  };
}

/** Assert two numeric arrays agree elementwise within `tol`, naming the worst index. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  let worst = 0,
    at = -1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs((actual[i] as number) - (expected[i] as number));
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  assert.ok(
    worst <= tol,
    `${what}: max |diff| ${worst} at index ${at} (actual ${actual[at]}, expected ${expected[at]}) exceeds ${tol}`,
  );
}
