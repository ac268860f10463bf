/**
 * Image captioning with an image-to-text encoder-decoder on ONNX Runtime: a ViT-GPT2 style
 * VisionEncoderDecoder (as `optimum-cli export onnx --task image-to-text-with-past` writes it:
 * onnx/encoder_model.onnx + onnx/decoder_model_merged.onnx), or BLIP (BlipForConditionalGeneration as
 * scripts/models/export_blip.py writes it: the vision encoder and a decoder already split, so Kiln's
 * loop always runs it, greedy and beams). The type comes from config.json (model-dir.ts captionerType). Beam search (numBeams > 1) is Kiln's port of
 * transformers' (beam-search.ts) driving the same ONNX sessions (beam-decoder.ts), batched over
 * images x beams. Greedy decoding (numBeams 1) uses transformers.js's generate(), or Kiln's greedy loop
 * when the directory has a cross-attention split (cross-kv-split.ts: the cross-attention keys/values
 * computed once per batch instead of at every step, as transformers caches them).
 *
 * An optional prompt is fed as decoder prefix (after the decoder start token) and stripped from the
 * output, as transformers' `generate(decoder_input_ids=...)` does.
 */
import {
  AutoModelForVision2Seq,
  AutoTokenizer,
  Tensor,
  type PreTrainedModel,
  type PreTrainedTokenizer,
} from '@huggingface/transformers';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ConfigError } from '../../infra/errors.js';
import type { OnnxDeviceChoice } from '../../infra/onnx-runtime.js';
import { prefetchBatches } from './batches.js';
import { EncoderDecoderLoop, modelSessions } from './beam-decoder.js';
import {
  hasDecoderSplit,
  loadCrossKvSplit,
  splitCommand,
  type CaptionDecoderPath,
  type CrossKvSplit,
} from './cross-kv-split.js';
import {
  captionerType,
  checkModelDir,
  hashModelDir,
  readModelJson,
  type CaptionerType,
  type ModelFileHash,
} from './model-dir.js';
import type { ImageProcessorConfig, PixelBatch } from './preprocess.js';
import { candidateStream, type SamplingConfig } from './sampling.js';
import { positiveInt, preprocessPool, resolveRuntime, type ModelRuntimeOptions } from './runtime.js';

/** The vision encoder in Optimum's layout (what transformers.js loads for VisionEncoderDecoder). */
const ENCODER_FILE = 'onnx/encoder_model.onnx';
/** Options for {@link loadCaptioner}. */
export interface CaptionerOptions extends ModelRuntimeOptions {
  /** Tokens generated per caption at most (default 30). */
  maxNewTokens?: number;
  /** Beam count (default 1: greedy). > 1: beam search as transformers' generate(num_beams=...). */
  numBeams?: number;
  /** Beam search: exponent of the length dividing a finished score (default: generation_config.json's, else 1.0). */
  lengthPenalty?: number;
  /** Beam search: transformers' early_stopping (default: generation_config.json's, else false). */
  earlyStopping?: boolean | 'never';
  /** Text the caption must start with (decoder prefix); stripped from the returned caption. */
  prompt?: string;
  /** Images per generate() call (default 16). */
  batchSize?: number;
  /**
   * Candidate captions per image for {@link Captioner.captionCandidateRows}: beam search's best
   * `candidates` hypotheses (transformers' num_return_sequences; needs numBeams >= candidates). Default
   * null: captionCandidateRows is refused.
   */
  candidates?: number | null;
  /**
   * Make the candidates by seeded sampling instead of beam search (sampling.ts: each candidate's stream
   * seeded by the seed, the image bytes and its index, so reruns give the same captions). Default null: beams.
   */
  sampling?: SamplingConfig | null;
}

/** Generated token ids per image: the new tokens only (no start token, no prompt, cut at EOS). */
export interface CaptionIds {
  ids: number[][];
}

/** A loaded captioner. Call {@link Captioner.dispose} when done. */
export interface Captioner {
  readonly modelDir: string;
  readonly device: OnnxDeviceChoice;
  /** Effective options (lineage), with the decoder graphs the loop runs. */
  readonly options: Required<
    Pick<CaptionerOptions, 'maxNewTokens' | 'numBeams' | 'batchSize' | 'lengthPenalty' | 'earlyStopping'>
  > & {
    prompt: string | null;
    /** Candidates per image (beam search's best hypotheses, or samples); null: one caption per image only. */
    candidates: number | null;
    /** How candidates are sampled; null: beam search. */
    sampling: SamplingConfig | null;
    decoder: CaptionDecoderPath;
    /** The architecture (config.json's model_type): `vit-gpt2` or `blip`. */
    type: CaptionerType;
  };
  /** One caption per image (throws if an image cannot be decoded: use captionRows for data rows). */
  caption(images: readonly Uint8Array[]): Promise<string[]>;
  /** Captions with per-row errors; null/undecodable rows get a null caption and a reason. */
  captionRows(
    images: readonly (Uint8Array | null)[],
  ): Promise<{ captions: (string | null)[]; errors: (string | null)[] }>;
  /**
   * `options.candidates` captions per image, best beam first (the first is what captionRows returns);
   * null/undecodable rows get null and a reason. ConfigError when the captioner was loaded without `candidates`.
   */
  captionCandidateRows(
    images: readonly (Uint8Array | null)[],
  ): Promise<{ candidates: (string[] | null)[]; errors: (string | null)[] }>;
  /** Full generated sequences as transformers returns them (start token + prompt + new tokens). */
  generateSequences(images: readonly Uint8Array[]): Promise<number[][]>;
  pixelValues(images: readonly Uint8Array[]): Promise<PixelBatch>;
  fileHashes(): Promise<ModelFileHash[]>;
  dispose(): Promise<void>;
}

interface GenerationFields {
  decoder_start_token_id?: number;
  eos_token_id?: number | number[];
  bos_token_id?: number;
  pad_token_id?: number;
  length_penalty?: number;
  early_stopping?: boolean | 'never';
}
interface DecoderConfig extends GenerationFields {
  decoder?: {
    bos_token_id?: number;
    eos_token_id?: number;
    n_head?: number;
    num_attention_heads?: number;
    n_embd?: number;
    hidden_size?: number;
  };
  /** BLIP: the text decoder's config (its generation fields are what BLIP's generate() uses). */
  text_config?: GenerationFields & {
    sep_token_id?: number;
    num_attention_heads?: number;
    hidden_size?: number;
  } & Record<string, unknown>;
}

/**
 * Start / end / pad tokens and generation fields as transformers' generate() sees them. BLIP:
 * BlipForConditionalGeneration.generate replaces the first token with text_config.bos_token_id and passes
 * eos_token_id = text_config.sep_token_id, pad_token_id = text_config.pad_token_id to its text decoder,
 * whose generation config comes from text_config. ViT-GPT2: generation_config.json when present, else config.json.
 */
const BLIP_TEXT_DEFAULTS = { bos_token_id: 30522, sep_token_id: 102, pad_token_id: 0 };

function generationSetup(type: CaptionerType, config: DecoderConfig, genRaw: Record<string, unknown> | null) {
  if (type === 'blip') {
    // transformers saves only non-default fields: BlipTextConfig's defaults are bos 30522, sep 102, pad 0.
    const tc = { ...BLIP_TEXT_DEFAULTS, ...(config.text_config ?? {}) };
    return {
      gen: tc as GenerationFields & Record<string, unknown>,
      source: 'config.json text_config',
      start: tc.bos_token_id,
      eos: [tc.sep_token_id],
      pad: tc.pad_token_id,
      loopConfig: { decoder: { num_attention_heads: tc.num_attention_heads, hidden_size: tc.hidden_size } },
    };
  }
  const gen = (genRaw ?? config) as GenerationFields & Record<string, unknown>;
  const start =
    gen.decoder_start_token_id ?? config.decoder_start_token_id ?? config.bos_token_id ?? config.decoder?.bos_token_id;
  const eosRaw = gen.eos_token_id ?? config.eos_token_id ?? config.decoder?.eos_token_id;
  const eos = eosRaw === undefined ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  return {
    gen,
    source: genRaw ? 'generation_config.json' : 'config.json',
    start,
    eos,
    pad: gen.pad_token_id ?? config.pad_token_id,
    loopConfig: config,
  };
}

/** generation_config.json settings Kiln's beam search does not apply; a non-default value is refused. */
const UNSUPPORTED_FOR_BEAMS: Record<string, (v: unknown) => boolean> = {
  do_sample: (v) => v === true,
  num_beam_groups: (v) => typeof v === 'number' && v > 1,
  no_repeat_ngram_size: (v) => typeof v === 'number' && v > 0,
  encoder_no_repeat_ngram_size: (v) => typeof v === 'number' && v > 0,
  repetition_penalty: (v) => typeof v === 'number' && v !== 1,
  min_length: (v) => typeof v === 'number' && v > 0,
  min_new_tokens: (v) => typeof v === 'number' && v > 0,
  bad_words_ids: (v) => Array.isArray(v) && v.length > 0,
  forced_bos_token_id: (v) => typeof v === 'number',
  forced_eos_token_id: (v) => typeof v === 'number' || (Array.isArray(v) && v.length > 0),
  suppress_tokens: (v) => Array.isArray(v) && v.length > 0,
  begin_suppress_tokens: (v) => Array.isArray(v) && v.length > 0,
};

async function readGenerationConfig(dir: string): Promise<Record<string, unknown> | null> {
  try {
    return await readModelJson<Record<string, unknown>>(dir, 'generation_config.json');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Load a captioner from a local model directory. Throws MissingFileError (directory + expected files)
 * when incomplete and ConfigError for options it cannot honour.
 */
export async function loadCaptioner(dir: string, opts: CaptionerOptions = {}): Promise<Captioner> {
  const modelDir = await checkModelDir(dir, 'captioner');
  const type = await captionerType(modelDir);
  const maxNewTokens = positiveInt('maxNewTokens', opts.maxNewTokens ?? 30);
  const numBeams = positiveInt('numBeams', opts.numBeams ?? 1);
  const batchSize = positiveInt('batchSize', opts.batchSize ?? 16);
  const candidates = opts.candidates == null ? null : positiveInt('candidates', opts.candidates);
  const sampling = opts.sampling ?? null;
  if (sampling) {
    if (!Number.isInteger(sampling.seed) || sampling.seed < 0 || sampling.seed > 0xffffffff)
      throw new ConfigError(`sampling.seed is ${sampling.seed}`, 'pass an integer from 0 to 4294967295.');
    if (!(sampling.temperature > 0) || !Number.isFinite(sampling.temperature))
      throw new ConfigError(
        `sampling.temperature is ${sampling.temperature}`,
        "pass a number > 0 (1.0: the model's distribution).",
      );
    if (!(sampling.topP > 0 && sampling.topP <= 1))
      throw new ConfigError(`sampling.topP is ${sampling.topP}`, 'pass a number in (0, 1] (1.0: no nucleus cut).');
  }
  if (candidates !== null && !sampling && candidates > numBeams) {
    throw new ConfigError(
      `candidates is ${candidates} but numBeams is ${numBeams}: beam search returns at most numBeams hypotheses per image`,
      `set numBeams to at least ${candidates} (or lower candidates).`,
    );
  }
  const rt = await resolveRuntime(opts);
  const pool = preprocessPool(
    await readModelJson<ImageProcessorConfig>(modelDir, 'preprocessor_config.json'),
    `${modelDir}/preprocessor_config.json`,
    opts,
  );
  const config = await readModelJson<DecoderConfig>(modelDir, 'config.json');
  // transformers' generate() reads generation_config.json when present, else the model config (BLIP: text_config).
  const genRaw = type === 'blip' ? null : await readGenerationConfig(modelDir);
  const setup = generationSetup(type, config, genRaw);
  const gen = setup.gen;
  const lengthPenalty = opts.lengthPenalty ?? gen.length_penalty ?? 1;
  const earlyStopping = opts.earlyStopping ?? gen.early_stopping ?? false;
  if (!Number.isFinite(lengthPenalty)) {
    throw new ConfigError(
      `lengthPenalty is ${lengthPenalty}; it must be a finite number`,
      'pass a number such as 1.0 (the default).',
    );
  }
  if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') {
    throw new ConfigError(
      `earlyStopping is ${JSON.stringify(earlyStopping)}`,
      'pass true, false (the default) or "never".',
    );
  }
  const bad = Object.entries(UNSUPPORTED_FOR_BEAMS)
    .filter(([k, isSet]) => isSet(gen[k]))
    .map(([k]) => `${k}=${JSON.stringify(gen[k])}`);
  if (bad.length > 0 && (numBeams > 1 || type === 'blip' || sampling)) {
    throw new ConfigError(
      `${modelDir}/${setup.source} sets ${bad.join(', ')}, which Kiln's ${numBeams > 1 ? 'beam search' : 'decoding loop'} does not apply`,
      type === 'blip'
        ? "remove those settings from text_config in the model's config.json (BLIP captions always run on Kiln's loop)."
        : "remove those settings from the model's generation config, or use numBeams 1 (greedy, transformers.js generate()).",
    );
  }
  let hashes: Promise<ModelFileHash[]> | undefined;
  // A split is verified against the directory's hashes (computed once: lineage records them too).
  const splitPresent = hasDecoderSplit(modelDir);
  const usesSplit = splitPresent && (numBeams > 1 || bad.length === 0 || type === 'blip');
  if (usesSplit) await (hashes = hashModelDir(modelDir));
  const tokenizer: PreTrainedTokenizer = await AutoTokenizer.from_pretrained(modelDir, { local_files_only: true });
  const start = setup.start;
  const eos = new Set<number>(setup.eos);
  if (start === undefined) {
    throw new ConfigError(
      `${modelDir}/config.json has no decoder_start_token_id or bos_token_id`,
      'export the captioner with a config that sets decoder_start_token_id.',
    );
  }
  const prompt = opts.prompt && opts.prompt.length > 0 ? opts.prompt : null;
  const promptIds = prompt ? tokenizer.encode(prompt, { add_special_tokens: false }) : [];
  const prefixLen = 1 + promptIds.length;
  let loop: EncoderDecoderLoop | null = null;
  let split: CrossKvSplit | null = null;
  // transformers.js's model (merged decoder) unless a split runs every step: then only the encoder is
  // loaded, as a plain ONNX Runtime session (the merged decoder is ~460 MB at ViT-GPT2's real size).
  let model: PreTrainedModel | null = null;
  let encoder: ort.InferenceSession | null = null;
  const release = () => Promise.all([model?.dispose(), encoder?.release(), split?.release(), pool.close()]);
  try {
    const sessionOptions = { ...rt.pretrained.session_options, executionProviders: [rt.choice.device] };
    if (usesSplit) split = await loadCrossKvSplit(modelDir, await (hashes as Promise<ModelFileHash[]>), sessionOptions);
    if (split?.firstStep === 'split')
      encoder = await ort.InferenceSession.create(join(modelDir, ENCODER_FILE), sessionOptions);
    else model = await AutoModelForVision2Seq.from_pretrained(modelDir, rt.pretrained);
    if (numBeams > 1 || split || sampling)
      loop = new EncoderDecoderLoop(
        model ? modelSessions(model) : { encoder: encoder ?? undefined },
        setup.loopConfig,
        modelDir,
        split,
      );
  } catch (err) {
    await release();
    throw err;
  }
  const decoder: CaptionDecoderPath = split
    ? {
        path: 'split',
        files: split.files,
        reason:
          type === 'blip'
            ? 'BLIP export (scripts/models/export_blip.py): cross-attention keys/values computed once per batch'
            : 'onnx/decoder_xkv.json matches the decoder: cross-attention keys/values computed once per batch',
      }
    : {
        path: 'merged',
        files: ['onnx/decoder_model_merged.onnx'],
        reason: splitPresent
          ? `the split is not used for greedy decoding with generation settings Kiln's loop does not apply (${bad.join(', ')}): transformers.js generate()`
          : `no onnx/decoder_xkv.json: cross-attention keys/values are recomputed at every step; ${splitCommand(modelDir)} splits them out (faster on CPU)`,
      };
  // Greedy: transformers pads with pad_token_id, set to the first EOS when unset. Beams fill the
  // returned sequences with `pad_token_id or eos_token_id[0]` (Python's `or`: a pad id of 0, BLIP's,
  // gives the EOS), -1 without an EOS.
  const pad = setup.pad ?? [...eos][0] ?? -1;
  const beamPad = eos.size === 0 ? -1 : pad !== 0 ? pad : ([...eos][0] as number);

  /** `ret` sequences per image (input-major, best first); ret > 1 only with beams, or sampled with `images`' streams. */
  async function generate(batch: PixelBatch, ret = 1, images?: readonly Uint8Array[]): Promise<number[][]> {
    const n = batch.dims[0];
    const prefix = [start as number, ...promptIds];
    if (loop && sampling && images) {
      const streams = images.flatMap((im) =>
        Array.from({ length: ret }, (_, j) => candidateStream(sampling.seed, im, j)),
      );
      return loop.sample(batch, prefix, { maxNewTokens, eos: [...eos], pad, ...sampling }, streams);
    }
    if (loop && numBeams > 1)
      return loop.generate(batch, prefix, {
        numBeams,
        maxNewTokens,
        eos: [...eos],
        pad: beamPad,
        lengthPenalty,
        earlyStopping,
        numReturnSequences: ret,
      });
    if (loop) return loop.greedy(batch, prefix, { maxNewTokens, eos: [...eos], pad });
    if (!model) throw new Error('captioner: no decoding loop and no transformers.js model (internal error)');
    const out = (await model.generate({
      inputs: new Tensor('float32', batch.data, batch.dims),
      max_new_tokens: maxNewTokens,
      num_beams: 1,
      do_sample: false,
      ...(prompt ? { decoder_input_ids: Array.from({ length: n }, () => [start, ...promptIds]) } : {}),
    } as Parameters<PreTrainedModel['generate']>[0])) as Tensor;
    return out.tolist().map((row) => (row as bigint[]).map(Number));
  }

  /** New tokens after the prefix, cut at the first EOS (finished rows are padded / kept stepping). */
  function newTokens(seq: number[]): number[] {
    const tail = seq.slice(prefixLen);
    const end = tail.findIndex((t) => eos.has(t));
    return end < 0 ? tail : tail.slice(0, end);
  }

  const decodeOrThrow = (images: readonly Uint8Array[]): Promise<PixelBatch> => pool.pixels(images);

  /** `ret` decoded captions per image (best first); null rows / undecodable images: null + reason. */
  async function captionSets(
    images: readonly (Uint8Array | null)[],
    ret: number,
    sampled = false,
  ): Promise<{ sets: (string[] | null)[]; errors: (string | null)[] }> {
    const sets: (string[] | null)[] = new Array<string[] | null>(images.length).fill(null);
    const errors: (string | null)[] = new Array<string | null>(images.length).fill(null);
    // Prepare the next batch (sharp's threads; worker threads with preprocessThreads > 0) while the model runs on this one.
    await prefetchBatches(
      images,
      batchSize,
      (batch) => pool.prepare(batch),
      async (prep, s) => {
        prep.errors.forEach((e, k) => {
          if (e !== null) errors[s + k] = e;
        });
        if (!prep.pixels) return;
        const decoded = prep.rows.map((row) => images[s + row] as Uint8Array);
        const seqs = await generate(prep.pixels, ret, sampled ? decoded : undefined);
        prep.rows.forEach((row, k) => {
          sets[s + row] = seqs
            .slice(k * ret, (k + 1) * ret)
            .map((seq) => tokenizer.decode(newTokens(seq), { skip_special_tokens: true }).trim());
        });
      },
    );
    return { sets, errors };
  }

  const captioner: Captioner = {
    modelDir,
    device: rt.choice,
    options: {
      maxNewTokens,
      numBeams,
      batchSize,
      prompt,
      lengthPenalty,
      earlyStopping,
      candidates,
      sampling,
      decoder,
      type,
    },
    async caption(images) {
      const res = await captioner.captionRows(images);
      const bad = res.errors.findIndex((e) => e !== null);
      if (bad >= 0) throw new Error(`image ${bad}: ${res.errors[bad] ?? ''}`);
      return res.captions as string[];
    },
    async captionRows(images) {
      const { sets, errors } = await captionSets(images, 1);
      return { captions: sets.map((set) => set?.[0] ?? null), errors };
    },
    async captionCandidateRows(images) {
      if (candidates === null) {
        throw new ConfigError(
          `captioner ${modelDir} was loaded without candidates`,
          'load it with the candidates option (e.g. { candidates: 3, numBeams: 3 }).',
        );
      }
      const { sets, errors } = await captionSets(images, candidates, sampling !== null);
      return { candidates: sets, errors };
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
      await release();
    },
  };
  return captioner;
}
