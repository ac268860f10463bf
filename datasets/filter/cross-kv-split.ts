/**
 * The optional cross-attention split of a captioner's decoder (scripts/models/split_cross_attention.py):
 * `onnx/decoder_cross_kv.onnx` computes the step-invariant tensors (each layer's cross-attention
 * keys/values over the encoder tokens) once per batch, and `onnx/decoder_with_past_xkv.onnx` is the
 * with-past decoder taking them as inputs instead of `encoder_hidden_states`. Optimum's merged decoder
 * recomputes them at every step (its cache holds self-attention only); transformers caches them.
 *
 * `onnx/decoder_xkv.json` records the sha256 of the decoder it was split from and of both graphs: a
 * split that no longer matches the model directory is refused (StaleDecoderSplitError), never used.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ConfigError } from '../../infra/errors.js';
import type { ModelFileHash } from './model-dir.js';
import { readModelJson } from './model-dir.js';

/** The split's description, next to the graphs. */
export const SPLIT_META_FILE = 'onnx/decoder_xkv.json';
const MERGED_DECODER = 'onnx/decoder_model_merged.onnx';
const TOOL = 'scripts/models/split_cross_attention.py';

/** How to (re)make the split for a model directory. */
export function splitCommand(modelDir: string): string {
  return `\`python ${TOOL} ${modelDir}\` (needs \`pip install onnx onnxruntime numpy\`)`;
}

/** Which decoder graphs a captioner runs, and why (lineage). */
export interface CaptionDecoderPath {
  /** `split`: cross-attention keys/values once per batch; `merged`: Optimum's decoder every step. */
  path: 'split' | 'merged';
  /** Model files the decoding loop runs (relative to the model directory). */
  files: string[];
  reason: string;
}

/**
 * What decoder_xkv.json holds (format 1): written by split_cross_attention.py (split from Optimum's
 * merged decoder), or by an exporter that writes the split directly (export_blip.py: `source` null,
 * there is no merged decoder, and the split decoder runs every step).
 */
interface SplitMeta {
  format: number;
  source: string | null;
  source_sha256: string | null;
  cross_kv: string;
  cross_kv_sha256: string;
  decoder: string;
  decoder_sha256: string;
  /** `split`: the split decoder also runs the first (whole-prefix) step with an empty past. */
  first_step: 'split' | 'merged';
  /** true: the tool checked that the frontier of n images, expanded by `kind`, equals that of their repeated rows. */
  per_image?: boolean;
  /** cross_kv output name -> split decoder input name, and how it depends on the batch. */
  frontier: { output: string; input: string; dtype: string; kind?: FrontierKind }[];
}

/** A split whose graphs or source decoder differ from what decoder_xkv.json records. */
export class StaleDecoderSplitError extends ConfigError {
  /** `exported`: the split came from an exporter (no merged decoder to fall back to). */
  constructor(modelDir: string, detail: string, exported = false) {
    super(
      `${join(modelDir, SPLIT_META_FILE)} does not match the model directory (${detail})`,
      exported
        ? `export the model again: \`kiln models import captioner <checkpoint dir> --out ${modelDir}\` (or ` +
            `\`python scripts/models/export_blip.py <checkpoint dir> --out ${modelDir}\`).`
        : `rerun ${splitCommand(modelDir)} to split the current decoder again, ` +
            `or delete ${SPLIT_META_FILE}, decoder_cross_kv.onnx and decoder_with_past_xkv.onnx under ` +
            `${modelDir}/onnx to caption with the merged decoder (slower on CPU).`,
    );
  }
}

/**
 * How a frontier tensor depends on the batch: `rows` (axis 0 is the row), `batch_size` (an integer
 * tensor holding the row count), `fixed` (independent of the batch), `other`.
 */
export type FrontierKind = 'rows' | 'batch_size' | 'fixed' | 'other';

/** The loaded split: two ONNX sessions and the tensors passing from one to the other. */
export interface CrossKvSplit {
  crossKv: ort.InferenceSession;
  decoder: ort.InferenceSession;
  frontier: readonly { output: string; input: string; kind: FrontierKind }[];
  firstStep: 'split' | 'merged';
  /** The cross-attention graph may run once per image, its outputs repeated per beam by `kind`. */
  perImage: boolean;
  files: string[];
  release(): Promise<void>;
}

/** Whether the model directory has a split description (the graphs are checked on load). */
export function hasDecoderSplit(modelDir: string): boolean {
  return existsSync(join(modelDir, SPLIT_META_FILE));
}

/**
 * Load the split after checking decoder_xkv.json against the directory's file hashes (`hashes`:
 * hashModelDir's, which lineage records anyway). Throws StaleDecoderSplitError when the recorded
 * sha256 of the merged decoder or of either graph differs, or a graph is missing.
 */
export async function loadCrossKvSplit(
  modelDir: string,
  hashes: readonly ModelFileHash[],
  options: ort.InferenceSession.SessionOptions,
): Promise<CrossKvSplit> {
  const meta = await readModelJson<SplitMeta>(modelDir, SPLIT_META_FILE);
  if (meta.format !== 1 || !Array.isArray(meta.frontier) || meta.frontier.length === 0) {
    throw new StaleDecoderSplitError(modelDir, `unknown format ${JSON.stringify(meta.format)}`);
  }
  const sha = new Map(hashes.map((h) => [h.path, h.sha256]));
  const native = meta.source === null;
  const stale = (detail: string) => new StaleDecoderSplitError(modelDir, detail, native);
  if (native && meta.first_step !== 'split')
    throw stale('an exported split (no source decoder) must run the first step (first_step "split")');
  if (!native && meta.source !== MERGED_DECODER)
    throw stale(`split from ${meta.source}, but Kiln runs ${MERGED_DECODER}`);
  const recorded: [string, string | null][] = [
    [meta.cross_kv, meta.cross_kv_sha256],
    [meta.decoder, meta.decoder_sha256],
  ];
  if (!native) recorded.unshift([meta.source as string, meta.source_sha256]);
  for (const [file, want] of recorded) {
    const have = sha.get(file);
    if (have === undefined) throw stale(`${file} is missing`);
    if (have !== want)
      throw stale(`${file} has sha256 ${have.slice(0, 12)}…, the split recorded ${(want ?? 'nothing').slice(0, 12)}…`);
  }
  const crossKv = await ort.InferenceSession.create(join(modelDir, meta.cross_kv), options);
  let decoder: ort.InferenceSession;
  try {
    decoder = await ort.InferenceSession.create(join(modelDir, meta.decoder), options);
  } catch (err) {
    await crossKv.release();
    throw err;
  }
  const missing = meta.frontier.filter(
    (f) => !crossKv.outputNames.includes(f.output) || !decoder.inputNames.includes(f.input),
  );
  if (missing.length > 0) {
    await Promise.all([crossKv.release(), decoder.release()]);
    throw stale(
      `the graphs lack frontier tensors ${missing
        .slice(0, 3)
        .map((f) => f.output)
        .join(', ')}`,
    );
  }
  const frontier = meta.frontier.map((f) => ({ output: f.output, input: f.input, kind: f.kind ?? 'other' }));
  return {
    crossKv,
    decoder,
    frontier,
    firstStep: meta.first_step === 'split' ? 'split' : 'merged',
    perImage: meta.per_image === true && frontier.every((f) => f.kind !== 'other'),
    files: [meta.cross_kv, meta.decoder, ...(meta.first_step === 'split' || native ? [] : [MERGED_DECODER])],
    async release() {
      await Promise.all([crossKv.release(), decoder.release()]);
    },
  };
}
