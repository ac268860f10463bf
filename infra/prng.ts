/**
 * Kiln's one seeded pseudo-random stream: mulberry32 (32-bit state, one uniform double per call).
 * Its sequences are pinned: filter sampling decisions (plans, fingerprints), the demo's synthetic web
 * and test fixtures depend on them, so `test/infra/prng.test.ts` fixes its first values. Training has
 * its own generator (`training/rng.ts`); this one is for everything else that needs reproducible draws.
 */

/** A uniform [0, 1) stream: each call returns the next value, a multiple of 2^-32. */
export type Uniform = () => number;

/** mulberry32 seeded with `seed` taken modulo 2^32 (ToUint32: -1 and 2^32 - 1 give the same stream). */
export function mulberry32(seed: number): Uniform {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
