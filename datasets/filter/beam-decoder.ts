/**
 * Beam-search captioning on the ONNX sessions of a VisionEncoderDecoder export (Optimum
 * `image-to-text-with-past`: `encoder_model.onnx` → `last_hidden_state`; `decoder_model_merged.onnx`
 * taking `input_ids`, `encoder_hidden_states`, `past_key_values.N.{key,value}`, `use_cache_branch` and
 * returning `logits`, `present.N.{key,value}`), driven by {@link beamSearch}.
 *
 * The encoder runs once per image batch; its states are repeated per beam (rows = image × beams, as
 * transformers' `_expand_inputs_for_generation`). Each step feeds one token per row and the self-attention
 * cache reordered by the rows the search kept (transformers' `_reorder_cache`).
 */
import * as ort from 'onnxruntime-node';
import type { PreTrainedModel } from '@huggingface/transformers';
import { ConfigError } from '../../infra/errors.js';
import { beamSearch, type BeamSearchConfig } from './beam-search.js';
import type { PixelBatch } from './preprocess.js';

type Session = ort.InferenceSession;

/** Cache shape of one decoder layer: [rows, heads, past, headDim]. */
interface CacheShape { heads: number; headDim: number }

interface DecoderConfigLike { decoder?: { n_head?: number; num_attention_heads?: number; n_embd?: number; hidden_size?: number } }

/** The encoder and merged-decoder sessions transformers.js loaded for a vision-encoder-decoder model. */
export class EncoderDecoderBeams {
  private readonly encoder: Session;
  private readonly decoder: Session;
  private readonly pastNames: string[];
  private readonly cache: CacheShape;

  constructor(model: PreTrainedModel, config: DecoderConfigLike, source: string) {
    const sessions = model.sessions as Record<string, Session | undefined>;
    const encoder = sessions['model'];
    const decoder = sessions['decoder_model_merged'];
    if (!encoder || !decoder || !decoder.inputNames.includes('use_cache_branch')) {
      throw new ConfigError(`${source} has no encoder + merged decoder with a cache branch, which beam search needs`,
        'export the captioner with `optimum-cli export onnx --task image-to-text-with-past` (encoder_model.onnx + decoder_model_merged.onnx), or use numBeams 1.');
    }
    this.encoder = encoder;
    this.decoder = decoder;
    this.pastNames = decoder.inputNames.filter((n) => n.startsWith('past_key_values.'));
    const meta = (decoder.inputMetadata as unknown as { name: string; shape?: (number | string)[] }[]).find((m) => m.name === this.pastNames[0]);
    const d = config.decoder ?? {};
    const heads = typeof meta?.shape?.[1] === 'number' ? meta.shape[1] : (d.n_head ?? d.num_attention_heads);
    const hidden = d.n_embd ?? d.hidden_size;
    const headDim = typeof meta?.shape?.[3] === 'number' ? meta.shape[3] : (heads && hidden ? hidden / heads : undefined);
    if (!heads || !headDim) {
      throw new ConfigError(`${source}: cannot tell the decoder's attention heads and head size`, 'use a GPT-2 style decoder config (n_head, n_embd).');
    }
    this.cache = { heads, headDim };
  }

  /** Beam-search sequences (prefix + new tokens, padded) for one preprocessed image batch. */
  async generate(batch: PixelBatch, prefix: readonly number[], cfg: BeamSearchConfig): Promise<number[][]> {
    const n = batch.dims[0];
    const k = cfg.numBeams;
    const rows = n * k;
    const enc = await this.encoder.run({ pixel_values: new ort.Tensor('float32', batch.data, batch.dims) });
    const hidden = enc['last_hidden_state'] as ort.Tensor;
    const [, seq, dim] = hidden.dims as [number, number, number];
    const per = seq * dim;
    const src = hidden.data as Float32Array;
    const expanded = new Float32Array(rows * per);
    for (let r = 0; r < rows; r++) expanded.set(src.subarray(Math.floor(r / k) * per, (Math.floor(r / k) + 1) * per), r * per);
    const states = new ort.Tensor('float32', expanded, [rows, seq, dim]);
    let past: Record<string, ort.Tensor> = {};
    for (const name of this.pastNames) past[name] = new ort.Tensor('float32', new Float32Array(0), [rows, this.cache.heads, 0, this.cache.headDim]);

    return beamSearch(n, prefix, cfg, async (tokens, reorder) => {
      if (reorder) past = reorderRows(past, reorder);
      const len = (tokens[0] as readonly number[]).length;
      const ids = new BigInt64Array(rows * len);
      tokens.forEach((t, r) => t.forEach((id, j) => { ids[r * len + j] = BigInt(id); }));
      const out = await this.decoder.run({
        input_ids: new ort.Tensor('int64', ids, [rows, len]),
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
      for (let r = 0; r < rows; r++) last.set(all.subarray((r * steps + steps - 1) * vocab, (r * steps + steps) * vocab), r * vocab);
      return { logits: last, vocab };
    });
  }
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
