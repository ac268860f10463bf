/**
 * The model a training config describes: text encoder shape (from the config, or from a CLIP
 * directory), tokenizer, denoiser shape (from the config and the latent codec), and the parameter
 * store holding both networks.
 */
import { ConfigError } from '../infra/errors.js';
import type { TrainingConfig } from './config.js';
import { loadClipTextWeights, loadClipTokenizer, readClipTextShape } from './clip-weights.js';
import { defineDenoiser, type DenoiserShape } from './denoiser.js';
import type { LatentCodec } from './latent-codec.js';
import { ParamStore } from './params.js';
import { defineTextEncoder, type TextEncoderShape } from './text-encoder.js';
import { ByteTokenizer, type CaptionTokenizer } from './tokenizer.js';

export interface ModelSpec {
  text: TextEncoderShape;
  denoiser: DenoiserShape;
}

/** Shapes and tokenizer for a config (reads the CLIP directory's config/tokenizer when given). */
export async function resolveModel(
  cfg: TrainingConfig,
  codec: LatentCodec,
): Promise<{ spec: ModelSpec; tokenizer: CaptionTokenizer }> {
  const t = cfg.textEncoder;
  let text: TextEncoderShape;
  let tokenizer: CaptionTokenizer;
  if (t.clipDir) {
    text = await readClipTextShape(t.clipDir);
    tokenizer = await loadClipTokenizer(t.clipDir, text.maxTokens);
  } else {
    tokenizer = new ByteTokenizer(t.maxTokens);
    text = {
      vocabSize: tokenizer.vocabSize,
      maxTokens: t.maxTokens,
      width: t.width,
      depth: t.depth,
      heads: t.heads,
      mlpRatio: t.mlpRatio,
      causal: t.causal,
      activation: t.activation,
      layerNormEps: t.layerNormEps,
      dropout: t.dropout,
    };
  }
  const d = cfg.denoiser;
  assertCodecFits(cfg, codec);
  const denoiser: DenoiserShape = {
    size: cfg.resolution / codec.downsample,
    channels: codec.channels,
    patchSize: d.patchSize,
    width: d.width,
    depth: d.depth,
    heads: d.heads,
    mlpRatio: d.mlpRatio,
    dropout: d.dropout,
    timestepFeatures: d.timestepFeatures,
    zeroInit: d.zeroInit,
    contextWidth: text.width,
  };
  return { spec: { text, denoiser }, tokenizer };
}

/** The codec's latent side (resolution / downsample) must be a whole number of denoiser patches. */
export function assertCodecFits(cfg: TrainingConfig, codec: LatentCodec): void {
  const f = codec.downsample;
  const p = cfg.denoiser.patchSize;
  if (cfg.resolution % f !== 0) {
    throw new ConfigError(
      `resolution ${cfg.resolution} is not divisible by the downsample factor ${f} of codec ${codec.name}`,
      `set resolution to a multiple of ${f * p} (downsample factor ${f} x denoiser.patchSize ${p}), e.g. ` +
        `${Math.max(1, Math.round(cfg.resolution / (f * p))) * f * p}.`,
    );
  }
  if ((cfg.resolution / f) % p !== 0) {
    throw new ConfigError(
      `codec ${codec.name} gives ${cfg.resolution / f}x${cfg.resolution / f} latents (resolution ` +
        `${cfg.resolution} / ${f}), not a multiple of denoiser.patchSize ${p}`,
      `set resolution to a multiple of ${f * p}, or choose a denoiser.patchSize that divides ${cfg.resolution / f}.`,
    );
  }
}

/** Create both networks' parameters (initial values from the seed; CLIP weights when configured). */
export async function buildParams(cfg: TrainingConfig, spec: ModelSpec, loadPretrained: boolean): Promise<ParamStore> {
  const store = new ParamStore(cfg.seed);
  try {
    defineTextEncoder(store, spec.text);
    defineDenoiser(store, spec.denoiser);
    if (loadPretrained && cfg.textEncoder.clipDir) await loadClipTextWeights(store, cfg.textEncoder.clipDir);
  } catch (err) {
    store.dispose();
    throw err;
  }
  return store;
}
