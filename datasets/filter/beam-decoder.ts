/**
 * Captioning loops on the ONNX sessions of a VisionEncoderDecoder export (Optimum
 * `image-to-text-with-past`: `encoder_model.onnx` → `last_hidden_state`; `decoder_model_merged.onnx`
 * taking `input_ids`, `encoder_hidden_states`, `past_key_values.N.{key,value}`, `use_cache_branch` and
 * returning `logits`, `present.N.{key,value}`): beam search ({@link beamSearch}) and greedy decoding.
 *
 * The encoder runs once per image batch; its states are repeated per beam (rows = image × beams, as
 * transformers' `_expand_inputs_for_generation`). Each step feeds one token per row and the self-attention
 * cache reordered by the rows the search kept (transformers' `_reorder_cache`).
 *
 * With a cross-attention split (cross-kv-split.ts) the step-invariant tensors (cross-attention keys/values)
 * are computed once per batch from the repeated states and fed to the split decoder at every step. All
 * rows of one image carry the same states, so those tensors are identical across its beams and never
 * need reordering; rows are never dropped (finished rows keep stepping, as in transformers).
 */
import * as ort from 'onnxruntime-node';
import type { PreTrainedModel } from '@huggingface/transformers';
import { ConfigError } from '../../infra/errors.js';
import { beamSearch, type BeamSearchConfig, type DecoderStep } from './beam-search.js';
import type { CrossKvSplit } from './cross-kv-split.js';
import type { PixelBatch } from './preprocess.js';
import type { Uniform } from '../../infra/prng.js';
import { sampleToken, type SamplingConfig } from './sampling.js';

type Session = ort.InferenceSession;

/** Cache shape of one decoder layer: [rows, heads, past, headDim]. */
interface CacheShape {
  heads: number;
  headDim: number;
}

interface DecoderConfigLike {
  decoder?: { n_head?: number; num_attention_heads?: number; n_embd?: number; hidden_size?: number };
}

/** Greedy decoding settings (transformers' names: max_new_tokens, eos_token_id, pad_token_id). */
export interface GreedyConfig {
  maxNewTokens: number;
  eos: readonly number[];
  pad: number;
}

/** The ONNX sessions a loop runs: the encoder, and Optimum's merged decoder unless a split replaces it. */
export interface LoopSessions {
  encoder?: Session;
  merged?: Session;
}

/** transformers.js's sessions of a loaded VisionEncoderDecoder model. */
export function modelSessions(model: PreTrainedModel): LoopSessions {
  const sessions = model.sessions as Record<string, Session | undefined>;
  return { encoder: sessions['model'], merged: sessions['decoder_model_merged'] };
}

/** The encoder and decoder sessions of a vision-encoder-decoder model (the merged decoder, or a split that runs every step). */
export class EncoderDecoderLoop {
  private readonly encoder: Session;
  private readonly decoder: Session;
  private readonly pastNames: string[];
  private readonly cache: CacheShape;

  constructor(
    sessions: LoopSessions,
    config: DecoderConfigLike,
    source: string,
    private readonly split: CrossKvSplit | null = null,
  ) {
    const { encoder } = sessions;
    // A split that also runs the first step needs no merged decoder (it is then not even loaded).
    const decoder = split?.firstStep === 'split' ? (sessions.merged ?? split.decoder) : sessions.merged;
    const mergedOk =
      decoder !== undefined && (decoder === split?.decoder || decoder.inputNames.includes('use_cache_branch'));
    if (!encoder || !decoder || !mergedOk) {
      throw new ConfigError(
        `${source} has no encoder + merged decoder with a cache branch, which beam search needs`,
        'export the captioner with `optimum-cli export onnx --task image-to-text-with-past` ' +
          '(encoder_model.onnx + decoder_model_merged.onnx), or use numBeams 1.',
      );
    }
    this.encoder = encoder;
    this.decoder = decoder;
    this.pastNames = decoder.inputNames.filter((n) => n.startsWith('past_key_values.'));
    const meta = (decoder.inputMetadata as unknown as { name: string; shape?: (number | string)[] }[]).find(
      (m) => m.name === this.pastNames[0],
    );
    const d = config.decoder ?? {};
    const heads = typeof meta?.shape?.[1] === 'number' ? meta.shape[1] : (d.n_head ?? d.num_attention_heads);
    const hidden = d.n_embd ?? d.hidden_size;
    const headDim = typeof meta?.shape?.[3] === 'number' ? meta.shape[3] : heads && hidden ? hidden / heads : undefined;
    if (!heads || !headDim) {
      throw new ConfigError(
        `${source}: cannot tell the decoder's attention heads and head size`,
        'use a GPT-2 style decoder config (n_head, n_embd).',
      );
    }
    this.cache = { heads, headDim };
  }

  /** Beam-search sequences (prefix + new tokens, padded) for one preprocessed image batch. */
  async generate(batch: PixelBatch, prefix: readonly number[], cfg: BeamSearchConfig): Promise<number[][]> {
    return beamSearch(batch.dims[0], prefix, cfg, await this.stepper(batch, cfg.numBeams));
  }

  /**
   * Greedy sequences as transformers' `_sample` without sampling: argmax per row (first index on ties),
   * rows that emitted an EOS continue with the pad token, stop when every row has finished or after
   * `maxNewTokens`. Returns prefix + new tokens per image.
   */
  async greedy(batch: PixelBatch, prefix: readonly number[], cfg: GreedyConfig): Promise<number[][]> {
    return this.decode(batch, 1, prefix, cfg, (logits, r, vocab) => {
      let best = 0,
        max = logits[r * vocab] as number;
      for (let v = 1; v < vocab; v++) {
        const x = logits[r * vocab + v] as number;
        if (x > max) {
          max = x;
          best = v;
        }
      }
      return best;
    });
  }

  /**
   * `streams.length / images` sampled sequences per image (row = image * k + candidate), each drawing its
   * tokens from its own stream (sampling.ts); finished rows padded, as greedy. Returns prefix + new tokens per row.
   */
  async sample(
    batch: PixelBatch,
    prefix: readonly number[],
    cfg: GreedyConfig & SamplingConfig,
    streams: readonly Uniform[],
  ): Promise<number[][]> {
    const k = streams.length / batch.dims[0];
    return this.decode(batch, k, prefix, cfg, (logits, r, vocab) =>
      sampleToken(logits, r * vocab, vocab, cfg, (streams[r] as Uniform)()),
    );
  }

  /** The token-by-token loop greedy and sampling share: `choose` picks row r's next token. */
  private async decode(
    batch: PixelBatch,
    k: number,
    prefix: readonly number[],
    cfg: GreedyConfig,
    choose: (logits: Float32Array, r: number, vocab: number) => number,
  ): Promise<number[][]> {
    const rows = batch.dims[0] * k;
    const step = await this.stepper(batch, k);
    const eos = new Set(cfg.eos);
    const seqs = Array.from({ length: rows }, () => [...prefix]);
    const done = new Array<boolean>(rows).fill(false);
    let tokens: number[][] = seqs.map((s) => [...s]);
    let reorder: Int32Array | null = null;
    for (let t = 0; t < cfg.maxNewTokens; t++) {
      const { logits, vocab } = await step(tokens, reorder);
      for (let r = 0; r < rows; r++) {
        const next = done[r] ? cfg.pad : choose(logits, r, vocab);
        (seqs[r] as number[]).push(next);
        if (eos.has(next)) done[r] = true;
      }
      if (done.every(Boolean)) break;
      tokens = seqs.map((s) => [s[s.length - 1] as number]);
      reorder ??= Int32Array.from({ length: rows }, (_, r) => r);
    }
    return seqs;
  }

  /** Run the encoder (and the split's cross-attention graph) and return the decoder step over rows = images x beams. */
  private async stepper(batch: PixelBatch, k: number): Promise<DecoderStep> {
    const rows = batch.dims[0] * k;
    const enc = await this.encoder.run({ pixel_values: new ort.Tensor('float32', batch.data, batch.dims) });
    const hidden = enc['last_hidden_state'] as ort.Tensor;
    const split = this.split;
    // The merged decoder and a split whose frontier cannot be repeated per beam need the states per row.
    const needStates = !split || split.firstStep === 'merged' || !split.perImage;
    const states = needStates ? repeatRows(hidden, k) : hidden;
    // Step-invariant tensors, once per batch: per image, repeated per beam by the kind the split tool
    // checked (rows repeated, batch-size values scaled), else on the repeated rows.
    const xkv: Record<string, ort.Tensor> = {};
    if (split) {
      const perImage = split.perImage && k > 1;
      const out = await split.crossKv.run({ encoder_hidden_states: perImage ? hidden : states });
      for (const f of split.frontier) {
        const t = out[f.output] as ort.Tensor;
        xkv[f.input] =
          !perImage || f.kind === 'fixed' ? t : f.kind === 'rows' ? repeatRows(t, k) : scaleBatchSize(t, k);
      }
    }
    let past: Record<string, ort.Tensor> = {};
    for (const name of this.pastNames)
      past[name] = new ort.Tensor('float32', new Float32Array(0), [rows, this.cache.heads, 0, this.cache.headDim]);

    return async (tokens, reorder) => {
      if (reorder) past = reorderRows(past, reorder);
      const len = (tokens[0] as readonly number[]).length;
      const ids = new BigInt64Array(rows * len);
      tokens.forEach((t, r) =>
        t.forEach((id, j) => {
          ids[r * len + j] = BigInt(id);
        }),
      );
      const input_ids = new ort.Tensor('int64', ids, [rows, len]);
      const out =
        split && (reorder || split.firstStep === 'split')
          ? await split.decoder.run({ input_ids, ...past, ...xkv })
          : await this.decoder.run({
              input_ids,
              encoder_hidden_states: states,
              ...past,
              use_cache_branch: new ort.Tensor('bool', new Uint8Array([reorder ? 1 : 0]), [1]),
            });
      const next: Record<string, ort.Tensor> = {};
      for (const name of this.pastNames) next[name] = out[name.replace('past_key_values.', 'present.')] as ort.Tensor;
      past = next;
      const logits = out['logits'] as ort.Tensor;
      const [, steps, vocab] = logits.dims as [number, number, number];
      const all = logits.data as Float32Array;
      if (steps === 1) return { logits: all, vocab };
      const last = new Float32Array(rows * vocab);
      for (let r = 0; r < rows; r++)
        last.set(all.subarray((r * steps + steps - 1) * vocab, (r * steps + steps) * vocab), r * vocab);
      return { logits: last, vocab };
    };
  }
}

/** Repeat each row (dim 0) of a tensor `k` times (row r*k+j of the result = row r), as transformers expands inputs per beam. */
function repeatRows(t: ort.Tensor, k: number): ort.Tensor {
  if (k === 1) return t;
  const n = t.dims[0] as number;
  const src = t.data as Float32Array | BigInt64Array | Int32Array | Uint8Array;
  const per = src.length / n;
  const out = new (src.constructor as new (len: number) => typeof src)(src.length * k);
  for (let r = 0; r < n * k; r++)
    out.set(src.subarray(Math.floor(r / k) * per, (Math.floor(r / k) + 1) * per) as never, r * per);
  return new ort.Tensor(t.type as 'float32', out as Float32Array, [n * k, ...t.dims.slice(1)]);
}

/** A batch-size value of n images as the value for n x k rows. */
function scaleBatchSize(t: ort.Tensor, k: number): ort.Tensor {
  const src = t.data as BigInt64Array | Int32Array;
  const out = src instanceof BigInt64Array ? src.map((v) => v * BigInt(k)) : src.map((v) => v * k);
  return new ort.Tensor(t.type as 'int64', out as BigInt64Array, t.dims);
}

/**
 * Gather rows (dim 0) of every cache tensor: row r of the result is row `order[r]` of the input.
 * An identity order keeps the tensors; runs of consecutive source rows are copied as one block.
 */
function reorderRows(past: Record<string, ort.Tensor>, order: Int32Array): Record<string, ort.Tensor> {
  if (order.every((from, r) => from === r)) return past;
  const out: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(past)) {
    const data = t.data as Float32Array;
    const per = data.length / order.length;
    const moved = new Float32Array(data.length);
    for (let r = 0; r < order.length;) {
      const from = order[r] as number;
      let end = r + 1;
      while (end < order.length && order[end] === from + (end - r)) end++;
      moved.set(data.subarray(from * per, (from + end - r) * per), r * per);
      r = end;
    }
    out[name] = new ort.Tensor('float32', moved, t.dims);
  }
  return out;
}
