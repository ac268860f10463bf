/**
 * A trained model loaded from a checkpoint for sampling (evaluation): the EMA weights by default,
 * no dropout. Its members fit eval/'s injected interfaces structurally (`denoiser` is a
 * `SamplingDenoiser<TextCondition>`, `encode` a prompt encoder returning cond/uncond, `decode` the
 * latent codec), so eval/ needs no import of training internals beyond this file.
 */
import * as tf from '@tensorflow/tfjs';
import type { ArtifactStorage } from '../infra/storage.js';
import { loadCheckpoint, type CheckpointState } from './checkpoint.js';
import type { TrainingConfig } from './config.js';
import { runDenoiser } from './denoiser.js';
import { CheckpointError } from './errors.js';
import { createLatentCodec, type LatentCodec } from './latent-codec.js';
import { attentionMask } from './layers.js';
import { buildParams, resolveModel, type ModelSpec } from './model.js';
import type { ParamStore } from './params.js';
import { ddpmSchedule, type NoiseSchedule } from './noise-schedule.js';
import { entryToFloat32 } from './safetensors.js';
import { encodeText } from './text-encoder.js';
import type { CaptionTokenizer } from './tokenizer.js';

/** Text conditioning for a batch: tokens [B, L, width] and the additive key mask [B * heads, 1, L]. */
export interface TextCondition {
  context: tf.Tensor3D;
  contextMask: tf.Tensor3D;
}

export interface TrainedModel {
  step: number;
  config: TrainingConfig;
  spec: ModelSpec;
  tokenizer: CaptionTokenizer;
  codec: LatentCodec;
  /** The DDPM schedule the model was trained with (for DDIM). */
  schedule: NoiseSchedule;
  /** Sample shape in the denoiser's (latent) space; `decode` maps it to `config.resolution` pixels. */
  latentShape: { height: number; width: number; channels: number };
  /** The sampler for its objective: `euler` (the flow ODE) for flow matching, `ddim` for epsilon and v. */
  sampler: 'euler' | 'ddim';
  denoiser: {
    prediction: 'epsilon' | 'v' | 'flow';
    predict(xt: tf.Tensor4D, t: tf.Tensor1D, cond: TextCondition): tf.Tensor4D;
  };
  /** Encode prompts (cond) and as many empty prompts (uncond, for classifier-free guidance). */
  encode(prompts: string[]): { cond: TextCondition; uncond: TextCondition; dispose: () => void };
  decode(latents: tf.Tensor4D): Promise<tf.Tensor4D>;
  state: CheckpointState;
  dispose(): void;
}

/** Load a checkpoint's model (`weights: 'ema'`, the default, or the raw `'model'` weights). */
export async function loadTrainedModel(
  storage: ArtifactStorage,
  checkpointUri: string,
  o: { weights?: 'ema' | 'model' } = {},
): Promise<TrainedModel> {
  const ck = await loadCheckpoint(storage, checkpointUri);
  const config = ck.state.config;
  const codec = await createLatentCodec(config.codec);
  if ((ck.state.codecSha256 ?? null) !== codec.sha256) {
    await codec.dispose();
    throw new CheckpointError(
      `checkpoint ${checkpointUri} was trained with codec ${ck.state.codec} (sha256 ` +
        `${ck.state.codecSha256 ?? 'none'}), but ${codec.name} now has sha256 ${codec.sha256 ?? 'none'}`,
      'sample with the VAE files the run was trained with (state.json records their sha256).',
    );
  }
  let spec: ModelSpec;
  let tokenizer: CaptionTokenizer;
  let params: ParamStore;
  try {
    ({ spec, tokenizer } = await resolveModel(config, codec));
    params = await buildParams(config, spec, false);
  } catch (err) {
    await codec.dispose();
    throw err;
  }
  const file = ck.files[o.weights === 'model' ? 'model.safetensors' : 'ema.safetensors'];
  for (const p of params.list()) {
    const e = file.tensors.get(p.name);
    if (!e) throw new Error(`${checkpointUri}: weights lack ${p.name}`);
    params.assign(p.name, entryToFloat32(e), e.shape);
  }
  const den = spec.denoiser;
  const encodeOne = (prompts: string[]): TextCondition => {
    const tokens = tokenizer.encode(prompts);
    return tf.tidy(() => ({
      context: encodeText(params, spec.text, tokens, null),
      contextMask: attentionMask(tokens.mask, prompts.length, den.heads, 1, tokens.maxTokens, false),
    }));
  };
  const o2 = config.objective;
  return {
    step: ck.state.step,
    config,
    spec,
    tokenizer,
    codec,
    schedule: ddpmSchedule(o2.betaSchedule, o2.betaStart, o2.betaEnd, o2.trainTimesteps),
    sampler: o2.prediction === 'flow' ? 'euler' : 'ddim',
    latentShape: { height: den.size, width: den.size, channels: den.channels },
    denoiser: {
      prediction: o2.prediction,
      predict: (xt, t, cond) =>
        tf.tidy(() =>
          runDenoiser(
            params,
            den,
            { latents: xt, timesteps: t.dataSync(), context: cond.context, contextMask: cond.contextMask },
            null,
          ),
        ),
    },
    encode(prompts) {
      const cond = encodeOne(prompts);
      const uncond = encodeOne(prompts.map(() => ''));
      return {
        cond,
        uncond,
        dispose: () => tf.dispose([cond.context, cond.contextMask, uncond.context, uncond.contextMask]),
      };
    },
    decode: (latents) => codec.decode(latents),
    state: ck.state,
    dispose: () => {
      params.dispose();
      void codec.dispose().catch(() => undefined);
    },
  };
}
