/**
 * Initialise the text encoder from a CLIP text tower (e.g. CLIP ViT-L/14) in a local Hugging Face
 * directory: `config.json` (CLIPTextConfig, or CLIPConfig with `text_config`) gives the shape,
 * `model.safetensors` the weights (F32/F16/BF16; `text_model.*` names of CLIPTextModel or
 * CLIPModel; vision tensors are ignored), and `tokenizer.json` + `tokenizer_config.json` the BPE
 * tokenizer (run by transformers.js, offline). Nothing is downloaded.
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingFileError } from '../infra/errors.js';
import type { ParamStore } from './params.js';
import { decodeSafetensors, entryToFloat32 } from './safetensors.js';
import type { TextEncoderShape } from './text-encoder.js';
import type { CaptionTokenizer, TokenBatch } from './tokenizer.js';

interface ClipTextConfigJson {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act?: string;
  layer_norm_eps?: number;
}

const FIX =
  'put a Hugging Face CLIP text model there (config.json + model.safetensors, e.g. ' +
  'openai/clip-vit-large-patch14 saved with save_pretrained(safe_serialization=True)), ' +
  'or set textEncoder.clipDir to null.';

async function requireFile(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  try {
    await access(path);
  } catch {
    throw new MissingFileError(`CLIP directory ${dir} has no ${name}`, FIX);
  }
  return path;
}

/** The text encoder shape a CLIP directory's config.json describes. */
export async function readClipTextShape(dir: string): Promise<TextEncoderShape> {
  const raw = JSON.parse(await readFile(await requireFile(dir, 'config.json'), 'utf8')) as ClipTextConfigJson & {
    text_config?: ClipTextConfigJson;
  };
  const c = raw.text_config ?? raw;
  if (c.intermediate_size % c.hidden_size !== 0)
    throw new MissingFileError(
      `CLIP config in ${dir}: intermediate_size ${c.intermediate_size} is not a multiple of hidden_size ${c.hidden_size}`,
      FIX,
    );
  const act = c.hidden_act ?? 'quick_gelu';
  if (act !== 'quick_gelu' && act !== 'gelu')
    throw new MissingFileError(`CLIP config in ${dir}: hidden_act ${act} is not supported (quick_gelu or gelu)`, FIX);
  return {
    vocabSize: c.vocab_size,
    maxTokens: c.max_position_embeddings,
    width: c.hidden_size,
    depth: c.num_hidden_layers,
    heads: c.num_attention_heads,
    mlpRatio: c.intermediate_size / c.hidden_size,
    causal: true,
    activation: act,
    layerNormEps: c.layer_norm_eps ?? 1e-5,
    dropout: 0,
  };
}

/**
 * Copy CLIP text-tower weights into the store's `text` group, by name. Every text parameter must be
 * found with the same shape; returns how many were loaded and which file tensors were not used.
 */
export async function loadClipTextWeights(
  store: ParamStore,
  dir: string,
): Promise<{ loaded: number; unused: string[] }> {
  const file = decodeSafetensors(await readFile(await requireFile(dir, 'model.safetensors')));
  const used = new Set<string>();
  let loaded = 0;
  for (const p of store.list('text')) {
    const candidates = [p.name, p.name.replace(/^text_model\./, '')];
    const key = candidates.find((k) => file.tensors.has(k));
    if (!key) throw new MissingFileError(`CLIP weights in ${dir} have no tensor ${p.name}`, FIX);
    const entry = file.tensors.get(key)!;
    let data = entryToFloat32(entry);
    let shape = entry.shape;
    if (p.name.endsWith('position_embedding.weight') && shape[0]! > p.shape[0]!) {
      data = data.slice(0, p.shape[0]! * p.shape[1]!);
      shape = p.shape;
    }
    store.assign(p.name, data, shape);
    used.add(key);
    loaded += 1;
  }
  const unused = [...file.tensors.keys()].filter(
    (k) => !used.has(k) && k.startsWith('text_model.') && !k.endsWith('position_ids'),
  );
  return { loaded, unused };
}

/** CLIP's BPE tokenizer from `tokenizer.json` (transformers.js, no network), padded to `maxTokens`. */
export async function loadClipTokenizer(dir: string, maxTokens: number): Promise<CaptionTokenizer> {
  const tokenizerJson = JSON.parse(await readFile(await requireFile(dir, 'tokenizer.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const configPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfig = JSON.parse(await readFile(configPath, 'utf8').catch(() => '{}')) as Record<string, unknown>;
  const { CLIPTokenizer } = await import('@huggingface/transformers');
  const tok = new CLIPTokenizer(tokenizerJson, tokenizerConfig);
  const ids = [
    ...Object.values((tokenizerJson.model as { vocab: Record<string, number> }).vocab),
    ...((tokenizerJson.added_tokens as { id: number }[] | undefined) ?? []).map((t) => t.id),
  ];
  const vocabSize = ids.reduce((m, id) => Math.max(m, id), -1) + 1;
  return {
    name: 'clip-bpe',
    vocabSize,
    maxTokens,
    encode(captions: readonly string[]): TokenBatch {
      const out = tok([...captions], { padding: 'max_length', truncation: true, max_length: maxTokens }) as unknown as {
        input_ids: { data: ArrayLike<bigint | number> };
        attention_mask: { data: ArrayLike<bigint | number> };
      };
      const n = captions.length * maxTokens;
      const ids = new Int32Array(n);
      const mask = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        ids[i] = Number(out.input_ids.data[i]);
        mask[i] = Number(out.attention_mask.data[i]);
      }
      return { ids, mask, batch: captions.length, maxTokens };
    },
  };
}
