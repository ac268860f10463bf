/**
 * The trainable text encoder: CLIP's text-tower architecture (token + position embeddings, N
 * pre-LN transformer blocks, final LayerNorm), with parameter names and shapes of Hugging Face's
 * `CLIPTextModel`, so CLIP ViT-L/14 weights load by name (see clip-weights.ts) and a small one
 * trains from scratch for small runs. Its output tokens are what the denoiser cross-attends to.
 */
import * as tf from '@tensorflow/tfjs';
import {
  attention,
  attentionMask,
  dropout,
  embeddingLookup,
  gelu,
  layerNorm,
  linear,
  quickGelu,
  type DropoutRng,
} from './layers.js';
import type { ParamStore } from './params.js';
import type { TokenBatch } from './tokenizer.js';

export interface TextEncoderShape {
  vocabSize: number;
  maxTokens: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  causal: boolean;
  activation: 'gelu' | 'quick_gelu';
  layerNormEps: number;
  dropout: number;
}

const P = 'text_model';

/** Parameter names of layer `i` (Hugging Face CLIPTextModel naming). */
export function textLayerPrefix(i: number): string {
  return `${P}.encoder.layers.${i}`;
}

/** Create the text encoder's parameters (group `text`). */
export function defineTextEncoder(store: ParamStore, s: TextEncoderShape): void {
  const D = s.width;
  const H = D * s.mlpRatio;
  store.add(`${P}.embeddings.token_embedding.weight`, 'text', [s.vocabSize, D], { kind: 'normal', std: 0.02 });
  store.add(`${P}.embeddings.position_embedding.weight`, 'text', [s.maxTokens, D], { kind: 'normal', std: 0.01 });
  for (let i = 0; i < s.depth; i++) {
    const l = textLayerPrefix(i);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      store.add(`${l}.self_attn.${proj}.weight`, 'text', [D, D], { kind: 'normal', std: 0.02 });
      store.add(`${l}.self_attn.${proj}.bias`, 'text', [D], { kind: 'zeros' });
    }
    for (const ln of ['layer_norm1', 'layer_norm2']) {
      store.add(`${l}.${ln}.weight`, 'text', [D], { kind: 'ones' });
      store.add(`${l}.${ln}.bias`, 'text', [D], { kind: 'zeros' });
    }
    store.add(`${l}.mlp.fc1.weight`, 'text', [H, D], { kind: 'normal', std: 0.02 });
    store.add(`${l}.mlp.fc1.bias`, 'text', [H], { kind: 'zeros' });
    store.add(`${l}.mlp.fc2.weight`, 'text', [D, H], { kind: 'normal', std: 0.02 });
    store.add(`${l}.mlp.fc2.bias`, 'text', [D], { kind: 'zeros' });
  }
  store.add(`${P}.final_layer_norm.weight`, 'text', [D], { kind: 'ones' });
  store.add(`${P}.final_layer_norm.bias`, 'text', [D], { kind: 'zeros' });
}

/** Number of parameters `defineTextEncoder` creates (for memory estimates before allocating). */
export function textEncoderParamCount(s: TextEncoderShape): number {
  const D = s.width;
  const H = D * s.mlpRatio;
  const perLayer = 4 * (D * D + D) + 4 * D + (H * D + H) + (D * H + D);
  return s.vocabSize * D + s.maxTokens * D + s.depth * perLayer + 2 * D;
}

/**
 * Encode a token batch to hidden states [B, L, width] (CLIP's `last_hidden_state`). Padding keys
 * are masked; with `causal`, token i sees tokens <= i, as in CLIP.
 */
export function encodeText(store: ParamStore, s: TextEncoderShape, tokens: TokenBatch, rng: DropoutRng): tf.Tensor3D {
  const { batch: B, maxTokens: L } = tokens;
  if (L > s.maxTokens) throw new Error(`token rows have ${L} tokens but the text encoder has ${s.maxTokens} positions`);
  const ids = tf.tensor1d(tokens.ids, 'int32');
  const tok = embeddingLookup(
    store.get(`${P}.embeddings.token_embedding.weight`) as tf.Tensor as tf.Tensor2D,
    ids,
  ).reshape([B, L, s.width]);
  const pos = store.get(`${P}.embeddings.position_embedding.weight`).slice([0, 0], [L, s.width]);
  let x: tf.Tensor = dropout(tf.add(tok, pos), s.dropout, rng);
  const mask = attentionMask(tokens.mask, B, s.heads, L, L, s.causal);
  const act = s.activation === 'quick_gelu' ? quickGelu : gelu;
  for (let i = 0; i < s.depth; i++) {
    // One scope per layer: intermediates the backward pass does not need go now.
    x = tf.tidy(() => {
      const l = textLayerPrefix(i);
      const w = (n: string) => store.get(`${l}.${n}`);
      const h = layerNorm(x, w('layer_norm1.weight'), w('layer_norm1.bias'), s.layerNormEps);
      const q = linear(h, w('self_attn.q_proj.weight'), w('self_attn.q_proj.bias'));
      const k = linear(h, w('self_attn.k_proj.weight'), w('self_attn.k_proj.bias'));
      const v = linear(h, w('self_attn.v_proj.weight'), w('self_attn.v_proj.bias'));
      const a = linear(attention(q, k, v, s.heads, mask), w('self_attn.out_proj.weight'), w('self_attn.out_proj.bias'));
      const x1 = tf.add(x, dropout(a, s.dropout, rng));
      const h2 = layerNorm(x1, w('layer_norm2.weight'), w('layer_norm2.bias'), s.layerNormEps);
      const m = linear(act(linear(h2, w('mlp.fc1.weight'), w('mlp.fc1.bias'))), w('mlp.fc2.weight'), w('mlp.fc2.bias'));
      return tf.add(x1, dropout(m, s.dropout, rng));
    });
  }
  return layerNorm(
    x,
    store.get(`${P}.final_layer_norm.weight`),
    store.get(`${P}.final_layer_norm.bias`),
    s.layerNormEps,
  ) as tf.Tensor3D;
}
