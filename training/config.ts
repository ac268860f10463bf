/**
 * Training configuration: every number of the PRX recipe (shared/PRX-RECIPE.md) is a value here,
 * with the recipe's default, except model sizes, whose defaults are a tiny model that trains a step
 * in well under a second on the wasm and cpu backends (32x32 RGB, patch 4, width 64, 2 blocks).
 * Validated with zod; unknown keys are errors (a typo must not silently train something else).
 */
import { z } from 'zod';
import { ConfigError } from '../infra/errors.js';
import {
  mergeConfig,
  PRESET_NAMES,
  PRESET_REQUIREMENTS,
  TRAINING_PRESETS,
  type TrainingPresetName,
} from './presets.js';

const positiveInt = z.number().int().positive();
const fraction = z.number().min(0).max(1);

const textEncoderSchema = z
  .object({
    /** Max tokens per caption (CLIP: 77). */
    maxTokens: positiveInt.default(32),
    width: positiveInt.default(64),
    depth: positiveInt.default(2),
    heads: positiveInt.default(4),
    mlpRatio: positiveInt.default(4),
    /** CLIP's text tower is causal; keep true to stay weight-compatible. */
    causal: z.boolean().default(true),
    activation: z.enum(['gelu', 'quick_gelu']).default('gelu'),
    layerNormEps: z.number().positive().default(1e-5),
    dropout: fraction.default(0),
    /** Directory with CLIP text-tower weights (model.safetensors + config.json); null = train from scratch. */
    clipDir: z.string().nullable().default(null),
  })
  .strict();

const denoiserSchema = z
  .object({
    patchSize: positiveInt.default(4),
    width: positiveInt.default(64),
    depth: positiveInt.default(2),
    heads: positiveInt.default(4),
    mlpRatio: positiveInt.default(4),
    /** Recipe: 0.1 (not 0.0). */
    dropout: fraction.default(0.1),
    /** Width of the sinusoidal timestep features fed to the timestep MLP. */
    timestepFeatures: positiveInt.default(128),
    /** DiT adaLN-Zero: modulation, cross-attention output and final layers start at zero (each block starts as identity). */
    zeroInit: z.boolean().default(true),
  })
  .strict();

const objectiveSchema = z
  .object({
    /**
     * What the denoiser predicts. `flow` (default): rectified flow, x_t = (1-t) x0 + t eps, target the
     * velocity eps - x0, as Photoroom's PRX trains. `epsilon` and `v`: DDPM noising with the beta
     * schedule below. A checkpoint only resumes under the objective it was trained with.
     */
    prediction: z.enum(['epsilon', 'v', 'flow']).default('flow'),
    /** Flow only: how t is drawn. `logit_normal` (SD3, t = sigmoid(m + s n)) or `uniform`. */
    flowTimesteps: z.enum(['logit_normal', 'uniform']).default('logit_normal'),
    flowLogitMean: z.number().default(0),
    flowLogitStd: z.number().positive().default(1),
    betaSchedule: z.enum(['linear', 'scaled_linear']).default('linear'),
    betaStart: z.number().positive().default(1e-4),
    betaEnd: z.number().positive().default(0.02),
    trainTimesteps: positiveInt.default(1000),
    /** Min-SNR-gamma weighting (recipe option: 5); null = plain MSE. */
    minSnrGamma: z.number().positive().nullable().default(null),
    /** Fraction of captions replaced by "" (classifier-free guidance). */
    captionDropout: fraction.default(0.1),
    prxWeight: z.number().min(0).default(0.01),
    /**
     * PRX targets. `unit`: variance 1 and correlation I (a VAE latent scaled by its scaling factor).
     * `measured`: the variance and channel correlation of the run's data, measured once at the start
     * of the run (prx-targets.ts, `<runUri>/prx-targets.json`). `off`: no PRX term. `auto` (default)
     * resolves to `unit` with a VAE codec and `off` in pixel space (where images have variance ~0.3
     * and correlated RGB, so unit targets pull against the data); the resolved value is what the run records.
     */
    prxTargets: z.enum(['auto', 'unit', 'measured', 'off']).default('auto'),
    /** `measured` only: images the targets are measured from (at most one pass over the dataset). */
    prxMeasureImages: positiveInt.default(256),
    prxTargetVar: z.number().positive().default(1.0),
    prxCorrWeight: z.number().min(0).default(0.1),
    /**
     * PRX cut-off: only samples whose x0-hat error gain is at most this enter PRX's statistics. The
     * gain is the factor a prediction error is multiplied by in x0-hat: sqrt(1-ab)/sqrt(ab) for
     * epsilon (up to ~157), sqrt(1-ab) for v, t for flow (both <= 1). 1 keeps every v/flow sample and,
     * for epsilon, the samples with SNR >= 1. null = every sample (the recipe's sketch).
     */
    prxMaxGain: z.number().positive().nullable().default(1),
  })
  .strict();

const emaSchema = z
  .object({
    enabled: z.boolean().default(true),
    decay: z.number().min(0).max(1).default(0.9999),
    /** diffusers' warmup: decay_t = min(decay, (1 + t) / (10 + t)). */
    warmup: z.boolean().default(true),
  })
  .strict();

const optimSchema = z
  .object({
    /** Denoiser peak learning rate (recipe 1e-4). */
    lr: z.number().positive().default(1e-4),
    /** Text encoder LR = lr * textLrRatio (recipe 1e-5 = 1/10). */
    textLrRatio: z.number().min(0).default(0.1),
    /** Warmup starts and decay ends here (recipe 1e-6). */
    minLr: z.number().positive().default(1e-6),
    warmupFraction: fraction.default(0.1),
    constantFraction: fraction.default(0.6),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    eps: z.number().positive().default(1e-8),
    weightDecay: z.number().min(0).default(0.01),
    /** Global-norm clipping; null disables. */
    gradClip: z.number().positive().nullable().default(1.0),
    microBatchSize: positiveInt.default(4),
    gradAccumSteps: positiveInt.default(1),
    ema: emaSchema.prefault({}),
  })
  .strict();

const dataSchema = z
  .object({
    /** Column with the caption text (e.g. `caption_generated` after recaptioning). */
    captionColumn: z.string().min(1).default('caption'),
  })
  .strict();

const checkpointSchema = z
  .object({
    /** Keep this many most recent checkpoints (plus the best by metric). */
    keepLast: positiveInt.default(3),
    /** Whether a lower metric (FID) or a higher one is better. */
    metricMode: z.enum(['min', 'max']).default('min'),
    /** Loss values kept in state.json. */
    lossTail: positiveInt.default(100),
  })
  .strict();

const runtimeSchema = z
  .object({
    backend: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
    precision: z.enum(['auto', 'fp32', 'bf16']).default('auto'),
    /** Memory budget for the model + activations estimate; null = 60% of system RAM (2 GiB on wasm). */
    memoryLimitBytes: positiveInt.nullable().default(null),
  })
  .strict();

export const trainingConfigSchema = z
  .object({
    /** A named preset (presets.ts) whose values come before the recipe's defaults; the config's own values win. */
    preset: z.enum(PRESET_NAMES).nullable().default(null),
    seed: z.number().int().min(0).max(0xffffffff).default(0),
    /** Length of the LR schedule (recipe warmup/constant/decay fractions are of this). */
    totalSteps: positiveInt.default(1000),
    /** Square image side in pixels. */
    resolution: positiveInt.default(32),
    /**
     * Latent codec: `'identity'` = pixel space; `{ vae: dir }` = a frozen VAE's latent space, from a
     * diffusers AutoencoderKL exported to ONNX (Optimum layout: dir/vae_encoder, dir/vae_decoder; see
     * onnx-vae-codec.ts). `resolution` must then be a multiple of the VAE's downsample factor times
     * denoiser.patchSize; the denoiser sees resolution / factor pixels and the VAE's latent channels.
     */
    codec: z.union([z.literal('identity'), z.object({ vae: z.string().min(1) }).strict()]).default('identity'),
    textEncoder: textEncoderSchema.prefault({}),
    denoiser: denoiserSchema.prefault({}),
    objective: objectiveSchema.prefault({}),
    optim: optimSchema.prefault({}),
    data: dataSchema.prefault({}),
    checkpoint: checkpointSchema.prefault({}),
    runtime: runtimeSchema.prefault({}),
  })
  .strict();

/** A fully resolved training configuration (all defaults filled in). */
export type TrainingConfig = z.output<typeof trainingConfigSchema>;
/** What callers pass: any subset; missing values take the recipe's defaults. */
export type TrainingConfigInput = z.input<typeof trainingConfigSchema>;

/** Fill defaults and validate; throws `ConfigError` naming every bad field. */
export function resolveTrainingConfig(input: TrainingConfigInput = {}): TrainingConfig {
  const preset = (input as { preset?: unknown }).preset;
  const merged =
    typeof preset === 'string' && preset in TRAINING_PRESETS
      ? mergeConfig(TRAINING_PRESETS[preset as TrainingPresetName], input)
      : input;
  const parsed = trainingConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(
      `training config is invalid: ${problems}`,
      'fix the named fields (see training/config.ts for each field and its default).',
    );
  }
  const cfg = parsed.data;
  if (cfg.preset && PRESET_REQUIREMENTS[cfg.preset].vae && cfg.codec === 'identity') {
    throw new ConfigError(
      `training config preset ${cfg.preset} trains in a VAE's latent space, and codec is "identity"`,
      'set codec to { vae: "<dir>" }: an SD-style VAE exported with optimum-cli export onnx (see README, "Latent space").',
    );
  }
  if (cfg.objective.prxTargets === 'auto') cfg.objective.prxTargets = cfg.codec === 'identity' ? 'off' : 'unit';
  const checks: [boolean, string][] = [
    [
      cfg.resolution % cfg.denoiser.patchSize === 0,
      `resolution ${cfg.resolution} is not a multiple of denoiser.patchSize ${cfg.denoiser.patchSize}`,
    ],
    [
      cfg.denoiser.width % cfg.denoiser.heads === 0,
      `denoiser.width ${cfg.denoiser.width} is not divisible by denoiser.heads ${cfg.denoiser.heads}`,
    ],
    [
      cfg.textEncoder.width % cfg.textEncoder.heads === 0,
      `textEncoder.width ${cfg.textEncoder.width} is not divisible by textEncoder.heads ${cfg.textEncoder.heads}`,
    ],
    [cfg.textEncoder.maxTokens >= 2, 'textEncoder.maxTokens must be at least 2 (start and end tokens)'],
    [
      cfg.optim.warmupFraction + cfg.optim.constantFraction <= 1,
      'optim.warmupFraction + optim.constantFraction exceeds 1',
    ],
    [cfg.optim.minLr <= cfg.optim.lr, `optim.minLr ${cfg.optim.minLr} exceeds optim.lr ${cfg.optim.lr}`],
    [cfg.objective.betaStart < cfg.objective.betaEnd, 'objective.betaStart must be below objective.betaEnd'],
  ];
  const bad = checks.filter(([ok]) => !ok).map(([, msg]) => msg);
  if (bad.length > 0)
    throw new ConfigError(
      `training config is inconsistent: ${bad.join('; ')}`,
      'change the named values so they agree.',
    );
  return cfg;
}

/**
 * Values of fields added after checkpoints already existed, as those runs trained: a state.json
 * without them means the old behaviour (PRX with unit targets on every sample; flow t uniform).
 * The prediction itself was always recorded.
 */
const LEGACY_OBJECTIVE = { prxTargets: 'unit', prxMaxGain: null, flowTimesteps: 'uniform' } as const;

/** A config read back from a checkpoint's state.json, with the legacy values of later fields filled in. */
export function recordedTrainingConfig(recorded: TrainingConfigInput): TrainingConfig {
  const objective = { ...LEGACY_OBJECTIVE, ...(recorded.objective ?? {}) };
  return resolveTrainingConfig({ ...recorded, objective });
}

/** Whether the PRX term is on for a resolved config. */
export function prxEnabled(cfg: TrainingConfig): boolean {
  return cfg.objective.prxTargets !== 'off' && cfg.objective.prxWeight > 0;
}

/** Config fields that define the model and the math of training: a resumed run must match them. */
export function trainingIdentity(cfg: TrainingConfig): unknown {
  const { checkpoint: _c, runtime: _r, ...rest } = cfg;
  // Fields the run does not use are no part of it (flow draws no betas; DDPM no flow t; unit targets measure nothing).
  const {
    flowTimesteps,
    flowLogitMean,
    flowLogitStd,
    betaSchedule,
    betaStart,
    betaEnd,
    trainTimesteps,
    prxMeasureImages,
    ...objective
  } = cfg.objective;
  const used =
    cfg.objective.prediction === 'flow'
      ? { flowTimesteps, flowLogitMean, flowLogitStd }
      : { betaSchedule, betaStart, betaEnd, trainTimesteps };
  return {
    ...rest,
    objective: { ...objective, ...used, ...(cfg.objective.prxTargets === 'measured' ? { prxMeasureImages } : {}) },
  };
}
