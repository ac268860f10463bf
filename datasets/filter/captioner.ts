/**
 * Image captioning with an image-to-text encoder-decoder (ViT-GPT2 style VisionEncoderDecoder, as
 * `optimum-cli export onnx --task image-to-text-with-past` writes it: onnx/encoder_model.onnx +
 * onnx/decoder_model_merged.onnx) on ONNX Runtime via transformers.js, greedy decoding.
 *
 * An optional prompt is fed as decoder prefix (after the decoder start token) and stripped from the
 * output, as transformers' `generate(decoder_input_ids=...)` does.
 */
import {
  AutoModelForVision2Seq, AutoTokenizer, Tensor, type PreTrainedModel, type PreTrainedTokenizer,
} from '@huggingface/transformers';
import { ConfigError } from '../../infra/errors.js';
import type { OnnxDeviceChoice } from '../../infra/onnx-runtime.js';
import { checkModelDir, hashModelDir, readModelJson, type ModelFileHash } from './model-dir.js';
import { decodeBatch, ImagePreprocessor, type ImageProcessorConfig, type PixelBatch } from './preprocess.js';
import { positiveInt, resolveRuntime, type ModelRuntimeOptions } from './runtime.js';

/** Options for {@link loadCaptioner}. */
export interface CaptionerOptions extends ModelRuntimeOptions {
  /** Tokens generated per caption at most (default 30). */
  maxNewTokens?: number;
  /** Beam count. Only 1 (greedy) is supported: transformers.js 4.x generate() keeps one candidate. */
  numBeams?: number;
  /** Text the caption must start with (decoder prefix); stripped from the returned caption. */
  prompt?: string;
  /** Images per generate() call (default 16). */
  batchSize?: number;
}

/** Generated token ids per image: the new tokens only (no start token, no prompt, cut at EOS). */
export interface CaptionIds { ids: number[][] }

/** A loaded captioner. Call {@link Captioner.dispose} when done. */
export interface Captioner {
  readonly modelDir: string;
  readonly device: OnnxDeviceChoice;
  readonly options: Required<Pick<CaptionerOptions, 'maxNewTokens' | 'numBeams' | 'batchSize'>> & { prompt: string | null };
  /** One caption per image (throws if an image cannot be decoded: use captionRows for data rows). */
  caption(images: readonly Uint8Array[]): Promise<string[]>;
  /** Captions with per-row errors; null/undecodable rows get a null caption and a reason. */
  captionRows(images: readonly (Uint8Array | null)[]): Promise<{ captions: (string | null)[]; errors: (string | null)[] }>;
  /** Full generated sequences as transformers returns them (start token + prompt + new tokens). */
  generateSequences(images: readonly Uint8Array[]): Promise<number[][]>;
  pixelValues(images: readonly Uint8Array[]): Promise<PixelBatch>;
  fileHashes(): Promise<ModelFileHash[]>;
  dispose(): Promise<void>;
}

interface DecoderConfig { decoder_start_token_id?: number; eos_token_id?: number | number[]; bos_token_id?: number; decoder?: { bos_token_id?: number; eos_token_id?: number } }

/**
 * Load a captioner from a local model directory. Throws MissingFileError (directory + expected files)
 * when incomplete and ConfigError for options it cannot honour (numBeams > 1).
 */
export async function loadCaptioner(dir: string, opts: CaptionerOptions = {}): Promise<Captioner> {
  const modelDir = await checkModelDir(dir, 'captioner');
  const maxNewTokens = positiveInt('maxNewTokens', opts.maxNewTokens ?? 30);
  const numBeams = positiveInt('numBeams', opts.numBeams ?? 1);
  const batchSize = positiveInt('batchSize', opts.batchSize ?? 16);
  if (numBeams !== 1) {
    throw new ConfigError(`numBeams=${numBeams} was asked for, but transformers.js ${'4.x'} generate() keeps only the best candidate per step, so beams would silently decode greedily`,
      'use numBeams: 1 (greedy decoding); beam search is not implemented on this runtime yet.');
  }
  const rt = await resolveRuntime(opts);
  const pre = new ImagePreprocessor(await readModelJson<ImageProcessorConfig>(modelDir, 'preprocessor_config.json'),
    `${modelDir}/preprocessor_config.json`);
  const config = await readModelJson<DecoderConfig>(modelDir, 'config.json');
  const tokenizer: PreTrainedTokenizer = await AutoTokenizer.from_pretrained(modelDir, { local_files_only: true });
  const model: PreTrainedModel = await AutoModelForVision2Seq.from_pretrained(modelDir, rt.pretrained);
  const start = config.decoder_start_token_id ?? config.bos_token_id ?? config.decoder?.bos_token_id;
  const eosRaw = config.eos_token_id ?? config.decoder?.eos_token_id;
  const eos = new Set<number>(eosRaw === undefined ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw]);
  if (start === undefined) {
    throw new ConfigError(`${modelDir}/config.json has no decoder_start_token_id or bos_token_id`, 'export the captioner with a config that sets decoder_start_token_id.');
  }
  const prompt = opts.prompt && opts.prompt.length > 0 ? opts.prompt : null;
  const promptIds = prompt ? tokenizer.encode(prompt, { add_special_tokens: false }) : [];
  const prefixLen = 1 + promptIds.length;
  let hashes: Promise<ModelFileHash[]> | undefined;

  async function generate(batch: PixelBatch): Promise<number[][]> {
    const n = batch.dims[0];
    const out = await model.generate({
      inputs: new Tensor('float32', batch.data, batch.dims),
      max_new_tokens: maxNewTokens,
      num_beams: 1,
      do_sample: false,
      ...(prompt ? { decoder_input_ids: Array.from({ length: n }, () => [start, ...promptIds]) } : {}),
    } as Parameters<PreTrainedModel['generate']>[0]) as Tensor;
    return out.tolist().map((row) => (row as bigint[]).map(Number));
  }

  /** New tokens after the prefix, cut at the first EOS (transformers.js keeps stepping finished rows). */
  function newTokens(seq: number[]): number[] {
    const tail = seq.slice(prefixLen);
    const end = tail.findIndex((t) => eos.has(t));
    return end < 0 ? tail : tail.slice(0, end);
  }

  async function decodeOrThrow(images: readonly Uint8Array[]): Promise<PixelBatch> {
    const dec = await decodeBatch(images);
    const bad = dec.errors.findIndex((e) => e !== null);
    if (bad >= 0) throw new Error(`image ${bad}: ${dec.errors[bad] ?? ''}`);
    return pre.batch(dec.images);
  }

  const captioner: Captioner = {
    modelDir,
    device: rt.choice,
    options: { maxNewTokens, numBeams, batchSize, prompt },
    async caption(images) {
      const res = await captioner.captionRows(images);
      const bad = res.errors.findIndex((e) => e !== null);
      if (bad >= 0) throw new Error(`image ${bad}: ${res.errors[bad] ?? ''}`);
      return res.captions as string[];
    },
    async captionRows(images) {
      const captions: (string | null)[] = new Array<string | null>(images.length).fill(null);
      const errors: (string | null)[] = new Array<string | null>(images.length).fill(null);
      const decodeAt = (s: number) => decodeBatch(images.slice(s, Math.min(images.length, s + batchSize)));
      let next = images.length > 0 ? decodeAt(0) : null;
      for (let s = 0; s < images.length; s += batchSize) {
        const dec = await (next as ReturnType<typeof decodeAt>);
        next = s + batchSize < images.length ? decodeAt(s + batchSize) : null;
        dec.errors.forEach((e, k) => { if (e !== null) errors[s + k] = e; });
        if (dec.images.length === 0) continue;
        const seqs = await generate(pre.batch(dec.images));
        seqs.forEach((seq, k) => {
          captions[s + (dec.rows[k] as number)] = tokenizer.decode(newTokens(seq), { skip_special_tokens: true }).trim();
        });
      }
      return { captions, errors };
    },
    async generateSequences(images) {
      const out: number[][] = [];
      for (let s = 0; s < images.length; s += batchSize) {
        out.push(...(await generate(await decodeOrThrow(images.slice(s, s + batchSize)))));
      }
      return out;
    },
    pixelValues: decodeOrThrow,
    fileHashes() {
      hashes ??= hashModelDir(modelDir);
      return hashes;
    },
    async dispose() {
      await model.dispose();
    },
  };
  return captioner;
}
