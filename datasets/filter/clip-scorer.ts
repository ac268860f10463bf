/**
 * CLIP scoring of image-text pairs as LAION and DataComp compute it: the cosine similarity of the
 * L2-normalised image embedding and text embedding (no logit scale), one score per pair.
 *
 * Models: a local CLIP directory in the transformers.js ONNX layout (onnx/text_model.onnx,
 * onnx/vision_model.onnx, tokenizer.json, preprocessor_config.json) run on ONNX Runtime.
 */
import {
  AutoTokenizer,
  CLIPTextModelWithProjection,
  CLIPVisionModelWithProjection,
  Tensor,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from '@huggingface/transformers';
import type { OnnxDeviceChoice } from '../../infra/onnx-runtime.js';
import { prefetchBatches } from './batches.js';
import { checkModelDir, hashModelDir, readModelJson, type ModelFileHash } from './model-dir.js';
import type { ImageProcessorConfig, PixelBatch } from './preprocess.js';
import { positiveInt, preprocessPool, resolveRuntime, type ModelRuntimeOptions } from './runtime.js';

/** Options for {@link loadClipScorer}. */
export interface ClipScorerOptions extends ModelRuntimeOptions {
  /** Pairs per ONNX Runtime call (default 32). */
  batchSize?: number;
}

/** Scores with per-row errors (an undecodable or missing image/caption is data, not an exception). */
export interface ClipScoreResult {
  scores: Float32Array;
  errors: (string | null)[];
}

/** A loaded CLIP scorer. Call {@link ClipScorer.dispose} when done (it holds native sessions). */
export interface ClipScorer {
  readonly modelDir: string;
  readonly device: OnnxDeviceChoice;
  readonly batchSize: number;
  /** Cosine similarity per pair; NaN where the image cannot be decoded. */
  score(images: readonly Uint8Array[], captions: readonly string[]): Promise<Float32Array>;
  /** Like score, but rows may be null and each row's failure reason is returned. */
  scoreRows(images: readonly (Uint8Array | null)[], captions: readonly (string | null)[]): Promise<ClipScoreResult>;
  /**
   * Per row, the cosine of its image with each caption of its set (candidate captions): each image
   * embedded once, the texts of a batch's sets in text batches of `batchSize`. A null row, an empty set
   * or an undecodable image gives null and a reason.
   */
  scoreCaptionSets(
    images: readonly (Uint8Array | null)[],
    sets: readonly (readonly string[] | null)[],
  ): Promise<{ scores: (Float32Array | null)[]; errors: (string | null)[] }>;
  /** The pixel tensor the vision model receives (throws on undecodable images). */
  pixelValues(images: readonly Uint8Array[]): Promise<PixelBatch>;
  /** Image embeddings (unnormalised), row-major [n, projection_dim]. */
  embedImages(images: readonly Uint8Array[]): Promise<Float32Array>;
  /** Text embeddings (unnormalised), row-major [n, projection_dim]. */
  embedTexts(captions: readonly string[]): Promise<Float32Array>;
  /** The token ids the text model receives (padded to the longest, truncated to 77). */
  tokenize(captions: readonly string[]): number[][];
  /** sha256 of every file of the model directory (for lineage). */
  fileHashes(): Promise<ModelFileHash[]>;
  dispose(): Promise<void>;
}

/** Cosine similarity of row `i` of `a` and row `j` of `b` (both [n, dim]), computed in float64. */
export function pairCosine(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let dot = 0,
    na = 0,
    nb = 0;
  for (let d = 0; d < dim; d++) {
    const x = a[i * dim + d] as number,
      y = b[j * dim + d] as number;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb));
}

/** Cosine similarity of row i of `a` and row i of `b` (both [n, dim]), computed in float64. */
export function rowCosine(a: Float32Array, b: Float32Array, dim: number): Float32Array {
  const n = a.length / dim;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = pairCosine(a, i, b, i, dim);
  return out;
}

/**
 * Load a CLIP scorer from a local model directory. Throws MissingFileError naming the directory and
 * the expected files when it is incomplete; nothing is downloaded.
 */
export async function loadClipScorer(dir: string, opts: ClipScorerOptions = {}): Promise<ClipScorer> {
  const modelDir = await checkModelDir(dir, 'clip');
  const batchSize = positiveInt('batchSize', opts.batchSize ?? 32);
  const rt = await resolveRuntime(opts);
  const pool = preprocessPool(
    await readModelJson<ImageProcessorConfig>(modelDir, 'preprocessor_config.json'),
    `${modelDir}/preprocessor_config.json`,
    opts,
  );
  const tokenizer: PreTrainedTokenizer = await AutoTokenizer.from_pretrained(modelDir, { local_files_only: true });
  const text: PreTrainedModel = await CLIPTextModelWithProjection.from_pretrained(modelDir, rt.pretrained);
  const vision: PreTrainedModel = await CLIPVisionModelWithProjection.from_pretrained(modelDir, rt.pretrained);
  const textInputs: string[] = (text.sessions['model'] as { inputNames: string[] }).inputNames;
  let hashes: Promise<ModelFileHash[]> | undefined;

  const maxLength = Number(tokenizer.model_max_length) || 77;
  /**
   * Tokenise like transformers' CLIPTokenizerFast(padding=True, truncation=True): over-long captions
   * keep their final special token (EOS), whose position CLIP pools. transformers.js's own truncation
   * cuts EOS off, which changes the embedding, so truncation is done here.
   */
  function tokenIds(captions: readonly string[]): number[][] {
    return captions.map((c) => {
      const ids = tokenizer.encode(c);
      return ids.length <= maxLength ? ids : [...ids.slice(0, maxLength - 1), ids[ids.length - 1] as number];
    });
  }

  function encode(captions: readonly string[]): Record<string, Tensor> {
    const ids = tokenIds(captions);
    const len = Math.max(...ids.map((r) => r.length));
    const inputIds = new BigInt64Array(ids.length * len).fill(BigInt(tokenizer.pad_token_id));
    const mask = new BigInt64Array(ids.length * len);
    ids.forEach((row, i) =>
      row.forEach((t, j) => {
        inputIds[i * len + j] = BigInt(t);
        mask[i * len + j] = 1n;
      }),
    );
    return {
      input_ids: new Tensor('int64', inputIds, [ids.length, len]),
      attention_mask: new Tensor('int64', mask, [ids.length, len]),
    };
  }

  async function runVision(batch: PixelBatch): Promise<Float32Array> {
    const out = (await vision({ pixel_values: new Tensor('float32', batch.data, batch.dims) })) as {
      image_embeds: Tensor;
    };
    return out.image_embeds.data as Float32Array;
  }

  async function runText(captions: readonly string[]): Promise<Float32Array> {
    const enc = encode(captions);
    const feeds: Record<string, Tensor> = {};
    for (const name of textInputs) if (enc[name]) feeds[name] = enc[name];
    const out = (await text(feeds)) as { text_embeds: Tensor };
    return out.text_embeds.data as Float32Array;
  }

  const pixelValues = (images: readonly Uint8Array[]): Promise<PixelBatch> => pool.pixels(images);

  async function inBatches(
    n: number,
    fn: (start: number, end: number) => Promise<Float32Array>,
  ): Promise<Float32Array> {
    const parts: Float32Array[] = [];
    for (let s = 0; s < n; s += batchSize) parts.push(await fn(s, Math.min(n, s + batchSize)));
    const out = new Float32Array(parts.reduce((k, p) => k + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  const scorer: ClipScorer = {
    modelDir,
    device: rt.choice,
    batchSize,
    async score(images, captions) {
      return (await scorer.scoreRows(images, captions)).scores;
    },
    async scoreRows(images, captions) {
      if (images.length !== captions.length) {
        throw new RangeError(`scoreRows got ${images.length} images but ${captions.length} captions`);
      }
      const scores = new Float32Array(images.length).fill(Number.NaN);
      const errors: (string | null)[] = new Array<string | null>(images.length).fill(null);
      // Prepare the next batch (sharp's threads; worker threads with preprocessThreads > 0) while the models run on this one.
      const hasCaption = (row: number) => captions[row] !== null && captions[row] !== undefined;
      const prepare = (batch: (Uint8Array | null)[], s: number) =>
        pool.prepare(
          batch,
          batch.map((_, k) => hasCaption(s + k)),
        );
      await prefetchBatches(images, batchSize, prepare, async (prep, s) => {
        prep.errors.forEach((e, k) => {
          if (e !== null) errors[s + k] = e;
          else if (!hasCaption(s + k)) errors[s + k] = 'no caption';
        });
        if (!prep.pixels) return;
        const rows = prep.rows.map((k) => s + k);
        const imageEmb = await runVision(prep.pixels);
        const textEmb = await runText(rows.map((r) => captions[r] as string));
        const dim = imageEmb.length / rows.length;
        const cos = rowCosine(imageEmb, textEmb, dim);
        rows.forEach((r, k) => {
          scores[r] = cos[k] as number;
        });
      });
      return { scores, errors };
    },
    async scoreCaptionSets(images, sets) {
      if (images.length !== sets.length) {
        throw new RangeError(`scoreCaptionSets got ${images.length} images but ${sets.length} caption sets`);
      }
      const scores: (Float32Array | null)[] = new Array<Float32Array | null>(images.length).fill(null);
      const errors: (string | null)[] = new Array<string | null>(images.length).fill(null);
      const hasSet = (row: number) => (sets[row]?.length ?? 0) > 0;
      const prepare = (batch: (Uint8Array | null)[], s: number) =>
        pool.prepare(
          batch,
          batch.map((_, k) => hasSet(s + k)),
        );
      await prefetchBatches(images, batchSize, prepare, async (prep, s) => {
        prep.errors.forEach((e, k) => {
          if (e !== null) errors[s + k] = e;
          else if (!hasSet(s + k)) errors[s + k] = 'no caption';
        });
        if (!prep.pixels) return;
        const rows = prep.rows.map((k) => s + k);
        const imageEmb = await runVision(prep.pixels);
        const dim = imageEmb.length / rows.length;
        const texts = rows.flatMap((r) => sets[r] as readonly string[]);
        const textEmb = await inBatches(texts.length, (a, b) => runText(texts.slice(a, b)));
        let t = 0;
        rows.forEach((r, k) => {
          const out = new Float32Array((sets[r] as readonly string[]).length);
          for (let c = 0; c < out.length; c++, t++) out[c] = pairCosine(imageEmb, k, textEmb, t, dim);
          scores[r] = out;
        });
      });
      return { scores, errors };
    },
    pixelValues,
    embedImages: (images) => inBatches(images.length, async (s, e) => runVision(await pixelValues(images.slice(s, e)))),
    embedTexts: (captions) => inBatches(captions.length, (s, e) => runText(captions.slice(s, e))),
    tokenize(captions) {
      const ids = tokenIds(captions);
      const len = Math.max(...ids.map((r) => r.length));
      return ids.map((r) => [...r, ...new Array<number>(len - r.length).fill(tokenizer.pad_token_id)]);
    },
    fileHashes() {
      hashes ??= hashModelDir(modelDir);
      return hashes;
    },
    async dispose() {
      await Promise.all([text.dispose(), vision.dispose(), pool.close()]);
    },
  };
  return scorer;
}
