/**
 * DDPM noise schedule (Ho et al. 2020; diffusers' DDPMScheduler): `linear` betas from betaStart to
 * betaEnd over T steps, or `scaled_linear` (linear in sqrt(beta), then squared; Stable Diffusion's
 * choice). Computed in float64 once; per-sample coefficients are gathered in JS.
 */

export interface NoiseSchedule {
  steps: number;
  betas: Float64Array;
  alphasCumprod: Float64Array;
}

export function ddpmSchedule(
  kind: 'linear' | 'scaled_linear',
  betaStart: number,
  betaEnd: number,
  steps: number,
): NoiseSchedule {
  const betas = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    const f = steps === 1 ? 0 : i / (steps - 1);
    betas[i] =
      kind === 'linear'
        ? betaStart + f * (betaEnd - betaStart)
        : (Math.sqrt(betaStart) + f * (Math.sqrt(betaEnd) - Math.sqrt(betaStart))) ** 2;
  }
  const alphasCumprod = new Float64Array(steps);
  let prod = 1;
  for (let i = 0; i < steps; i++) {
    prod *= 1 - betas[i]!;
    alphasCumprod[i] = prod;
  }
  return { steps, betas, alphasCumprod };
}

/** Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at step t. */
export function snrAt(s: NoiseSchedule, t: number): number {
  const a = s.alphasCumprod[t]!;
  return a / (1 - a);
}
