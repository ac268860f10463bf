/**
 * The recipe's learning-rate schedule (not cosine): over `totalSteps`, the first `warmupFraction`
 * (10%) rises linearly from `minLr` (1e-6) to the peak, the next `constantFraction` (60%) holds the
 * peak, and the rest (30%) decays exponentially (geometrically) from the peak down to `minLr`.
 * Steps past `totalSteps` stay at `minLr`.
 */

export interface LrScheduleOptions {
  totalSteps: number;
  peak: number;
  minLr: number;
  warmupFraction: number;
  constantFraction: number;
}

/** Learning rate for optimizer update number `step` (0-based). */
export function learningRateAt(step: number, o: LrScheduleOptions): number {
  if (o.peak <= 0) return 0;
  const floor = Math.min(o.minLr, o.peak);
  const warmEnd = o.warmupFraction * o.totalSteps;
  const decayStart = (o.warmupFraction + o.constantFraction) * o.totalSteps;
  if (step >= o.totalSteps) return floor;
  if (step < warmEnd) return floor + ((o.peak - floor) * step) / warmEnd;
  if (step <= decayStart) return o.peak;
  const progress = (step - decayStart) / (o.totalSteps - decayStart);
  return o.peak * (floor / o.peak) ** progress;
}

/** Phase boundaries in steps (for reports and tests). */
export function lrBreakpoints(o: LrScheduleOptions): { warmupEnd: number; decayStart: number; end: number } {
  return {
    warmupEnd: o.warmupFraction * o.totalSteps,
    decayStart: (o.warmupFraction + o.constantFraction) * o.totalSteps,
    end: o.totalSteps,
  };
}
