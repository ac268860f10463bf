/**
 * The denoiser: a DiT-style transformer over latent patches (PixArt-alpha layout). Each block is
 * adaLN-Zero-modulated self-attention, cross-attention to the text encoder's tokens (the recipe's
 * text conditioning), and an MLP, with dropout. Patchify/unpatchify are reshapes and every weight
 * is a matmul, so it trains on the wasm backend (no convolution gradients needed).
 */
import * as tf from '@tensorflow/tfjs';
import { attention, dropout, gelu, layerNorm, linear, silu, type DropoutRng } from './layers.js';
import type { ParamStore } from './params.js';

export interface DenoiserShape {
  /** Latent side (pixels for the identity codec) and channels. */
  size: number;
  channels: number;
  patchSize: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  dropout: number;
  timestepFeatures: number;
  zeroInit: boolean;
  /** Width of the text tokens it cross-attends to. */
  contextWidth: number;
}

const P = 'denoiser';
const LN_EPS = 1e-6;

export function defineDenoiser(store: ParamStore, s: DenoiserShape): void {
  const D = s.width;
  const Dc = s.contextWidth;
  const patchDim = s.patchSize * s.patchSize * s.channels;
  const zeroOr = (std: number) => (s.zeroInit ? { kind: 'zeros' as const } : { kind: 'normal' as const, std });
  const lin = (name: string, out: number, inp: number, init: Parameters<ParamStore['add']>[3] = { kind: 'xavier' }) => {
    store.add(`${name}.weight`, 'denoiser', [out, inp], init);
    store.add(`${name}.bias`, 'denoiser', [out], { kind: 'zeros' });
  };
  lin(`${P}.patch_embed`, D, patchDim);
  lin(`${P}.t_embed.fc1`, D, s.timestepFeatures, { kind: 'normal', std: 0.02 });
  lin(`${P}.t_embed.fc2`, D, D, { kind: 'normal', std: 0.02 });
  for (let i = 0; i < s.depth; i++) {
    const b = `${P}.blocks.${i}`;
    lin(`${b}.adaln`, 6 * D, D, zeroOr(0.02));
    for (const p of ['q', 'k', 'v', 'out']) lin(`${b}.attn.${p}`, D, D);
    store.add(`${b}.norm_cross.weight`, 'denoiser', [D], { kind: 'ones' });
    store.add(`${b}.norm_cross.bias`, 'denoiser', [D], { kind: 'zeros' });
    lin(`${b}.cross.q`, D, D);
    lin(`${b}.cross.k`, D, Dc);
    lin(`${b}.cross.v`, D, Dc);
    // Zero-initialised like the adaLN gates (PixArt-alpha zeroes its cross-attention projection too),
    // so the un-gated cross-attention branch adds nothing at step 0 and each block starts as identity.
    lin(`${b}.cross.out`, D, D, s.zeroInit ? { kind: 'zeros' } : { kind: 'xavier' });
    lin(`${b}.mlp.fc1`, D * s.mlpRatio, D);
    lin(`${b}.mlp.fc2`, D, D * s.mlpRatio);
  }
  lin(`${P}.final.adaln`, 2 * D, D, zeroOr(0.02));
  lin(`${P}.final.linear`, patchDim, D, zeroOr(0.02));
}

/** Parameter count of `defineDenoiser` (for memory estimates). */
export function denoiserParamCount(s: DenoiserShape): number {
  const D = s.width;
  const lin = (o: number, i: number) => o * i + o;
  const patchDim = s.patchSize * s.patchSize * s.channels;
  const block =
    lin(6 * D, D) +
    4 * lin(D, D) +
    2 * D +
    2 * lin(D, D) +
    2 * lin(D, s.contextWidth) +
    lin(D * s.mlpRatio, D) +
    lin(D, D * s.mlpRatio);
  return lin(D, patchDim) + lin(D, s.timestepFeatures) + lin(D, D) + s.depth * block + lin(2 * D, D) + lin(patchDim, D);
}

/** DiT's sinusoidal timestep features [B, F]: cos then sin of t * 10000^(-i / (F/2)). */
export function timestepFeatures(t: ArrayLike<number>, features: number): tf.Tensor2D {
  const half = Math.floor(features / 2);
  const out = new Float32Array(t.length * features);
  for (let b = 0; b < t.length; b++) {
    for (let i = 0; i < half; i++) {
      const arg = t[b]! * Math.exp((-Math.log(10000) * i) / half);
      out[b * features + i] = Math.cos(arg);
      out[b * features + half + i] = Math.sin(arg);
    }
  }
  return tf.tensor2d(out, [t.length, features]);
}

/** Fixed 2-D sine-cosine position embedding [gridSide^2, width] (MAE/DiT). */
export function positionEmbedding2d(gridSide: number, width: number): Float32Array {
  const quarter = Math.floor(width / 4);
  const out = new Float32Array(gridSide * gridSide * width);
  for (let r = 0; r < gridSide; r++) {
    for (let c = 0; c < gridSide; c++) {
      const base = (r * gridSide + c) * width;
      for (let i = 0; i < quarter; i++) {
        const omega = 1 / 10000 ** (i / quarter);
        out[base + i] = Math.sin(c * omega);
        out[base + quarter + i] = Math.cos(c * omega);
        out[base + 2 * quarter + i] = Math.sin(r * omega);
        out[base + 3 * quarter + i] = Math.cos(r * omega);
      }
    }
  }
  return out;
}

export interface DenoiserInputs {
  /** Noisy latents [B, size, size, channels]. */
  latents: tf.Tensor4D;
  /** Timestep per sample on the 0..1000 scale (DDPM index, or flow time x 1000). */
  timesteps: ArrayLike<number>;
  /** Text tokens [B, L, contextWidth] and the additive key mask [B * heads, 1, L]. */
  context: tf.Tensor3D;
  contextMask: tf.Tensor3D;
}

/** Predict the objective's target (noise, v or velocity), shaped like the latents. */
export function runDenoiser(store: ParamStore, s: DenoiserShape, inp: DenoiserInputs, rng: DropoutRng): tf.Tensor4D {
  const w = (n: string) => store.get(`${P}.${n}`);
  const lin = (x: tf.Tensor, n: string) => linear(x, w(`${n}.weight`), w(`${n}.bias`));
  const B = inp.latents.shape[0];
  const p = s.patchSize;
  const g = s.size / p;
  const D = s.width;
  const patches = inp.latents
    .reshape([B, g, p, g, p, s.channels])
    .transpose([0, 1, 3, 2, 4, 5])
    .reshape([B, g * g, p * p * s.channels]);
  let x = tf.add(lin(patches, 'patch_embed'), tf.tensor2d(positionEmbedding2d(g, D), [g * g, D]));
  const c = lin(silu(lin(timestepFeatures(inp.timesteps, s.timestepFeatures), 't_embed.fc1')), 't_embed.fc2');
  const cAct = silu(c);
  for (let i = 0; i < s.depth; i++) {
    // One scope per block: intermediates the backward pass does not need (tfjs keeps a clone of
    // what it does need) go now, not at the end of the forward pass.
    x = tf.tidy(() => {
      const b = `blocks.${i}`;
      const mods = tf.split(lin(cAct, `${b}.adaln`).reshape([B, 1, 6 * D]), 6, 2);
      const [shift1, scale1, gate1, shift2, scale2, gate2] = mods as [
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
      ];
      const h = tf.add(tf.mul(layerNorm(x, null, null, LN_EPS), tf.add(scale1, 1)), shift1);
      const sa = lin(
        attention(lin(h, `${b}.attn.q`), lin(h, `${b}.attn.k`), lin(h, `${b}.attn.v`), s.heads),
        `${b}.attn.out`,
      );
      const x1 = tf.add(x, tf.mul(gate1, dropout(sa, s.dropout, rng)));
      const hc = layerNorm(x1, w(`${b}.norm_cross.weight`), w(`${b}.norm_cross.bias`), LN_EPS);
      const ca = attention(
        lin(hc, `${b}.cross.q`),
        lin(inp.context, `${b}.cross.k`),
        lin(inp.context, `${b}.cross.v`),
        s.heads,
        inp.contextMask,
      );
      const x2 = tf.add(x1, dropout(lin(ca, `${b}.cross.out`), s.dropout, rng));
      const h2 = tf.add(tf.mul(layerNorm(x2, null, null, LN_EPS), tf.add(scale2, 1)), shift2);
      const m = lin(dropout(gelu(lin(h2, `${b}.mlp.fc1`)), s.dropout, rng), `${b}.mlp.fc2`);
      return tf.add(x2, tf.mul(gate2, dropout(m, s.dropout, rng)));
    });
  }
  const [shiftF, scaleF] = tf.split(lin(cAct, 'final.adaln').reshape([B, 1, 2 * D]), 2, 2) as [tf.Tensor, tf.Tensor];
  const out = lin(tf.add(tf.mul(layerNorm(x, null, null, LN_EPS), tf.add(scaleF, 1)), shiftF), 'final.linear');
  return out
    .reshape([B, g, g, p, p, s.channels])
    .transpose([0, 1, 3, 2, 4, 5])
    .reshape([B, s.size, s.size, s.channels]) as tf.Tensor4D;
}
