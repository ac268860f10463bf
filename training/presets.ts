/**
 * Named training presets: a config's `preset` fills in these values before the recipe's defaults;
 * anything the config sets itself wins (objects merge field by field).
 *
 * `dit-s2-256`: a realistic first run. 256 px images in an SD-style VAE's latent space (f = 8,
 * 4 channels: 32x32x4 latents; `codec: { vae }` is required), a DiT-S/2-sized denoiser (patch 2 ->
 * 256 tokens, width 384, depth 12, 6 heads; ~33M parameters), a CLIP ViT-L/14-sized text tower
 * (77 tokens, width 768, depth 12, 12 heads, quick_gelu; set `textEncoder.clipDir` to CLIP-L's text
 * tower to start from its weights, whose config.json then gives these sizes), and the recipe's
 * effective batch 2048 = micro-batch 32 x 64 accumulation steps.
 */
export const PRESET_NAMES = ['dit-s2-256'] as const;
export type TrainingPresetName = (typeof PRESET_NAMES)[number];

/** Partial configs (validated by config.ts's schema after merging). */
export const TRAINING_PRESETS: Record<TrainingPresetName, Record<string, unknown>> = {
  'dit-s2-256': {
    resolution: 256,
    textEncoder: { maxTokens: 77, width: 768, depth: 12, heads: 12, mlpRatio: 4, activation: 'quick_gelu' },
    denoiser: { patchSize: 2, width: 384, depth: 12, heads: 6, mlpRatio: 4, timestepFeatures: 256 },
    optim: { microBatchSize: 32, gradAccumSteps: 64 },
  },
};

/** What each preset requires of the config itself (checked after merging). */
export const PRESET_REQUIREMENTS: Record<TrainingPresetName, { vae: boolean }> = {
  'dit-s2-256': { vae: true },
};

/** `over` merged onto `base`: plain objects field by field, everything else replaced. */
export function mergeConfig(base: unknown, over: unknown): unknown {
  const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!plain(base) || !plain(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = mergeConfig(base[k], v);
  return out;
}
