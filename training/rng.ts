/**
 * The one source of randomness in training: xoshiro128** (32-bit words, exact in JS), seeded with
 * splitmix32. Its whole state is four uint32 words, saved in every checkpoint's state.json, so a
 * resumed run draws exactly the numbers an uninterrupted run would have drawn.
 *
 * Streams that must be a pure function of (seed, labels) - initial weights, the data order of an
 * epoch - come from `Rng.derive(seed, ...labels)`, which needs no saved state at all.
 */

/** Serializable generator state (four uint32 words). */
export type RngState = [number, number, number, number];

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(state: RngState) {
    if (state.length !== 4 || state.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff)) {
      throw new RangeError(`RNG state must be four uint32 words, got ${JSON.stringify(state)}`);
    }
    if (state.every((w) => w === 0)) throw new RangeError('RNG state must not be all zero');
    [this.s0, this.s1, this.s2, this.s3] = state;
  }

  /** Generator for `seed` and a path of labels, e.g. `Rng.derive(seed, 'shuffle', epoch)`. */
  static derive(seed: number, ...labels: (string | number)[]): Rng {
    let h = mixKey(seed >>> 0, 0x9e3779b9);
    for (const label of labels) {
      const text = typeof label === 'number' ? `#${label}` : label;
      for (let i = 0; i < text.length; i++) h = mixKey(h, text.charCodeAt(i));
      h = mixKey(h, 0x2f);
    }
    let x = h;
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      words.push(splitmix32(x));
    }
    if ((words[0]! | words[1]! | words[2]! | words[3]!) === 0) words[0] = 1;
    return new Rng(words as RngState);
  }

  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** Next uint32. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 24-bit resolution (exact in float32). */
  uniform(): number {
    return (this.nextU32() >>> 8) * 5.960464477539063e-8;
  }

  /** Uniform integer in [0, n) without modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000)
      throw new RangeError(`int(n) needs 1 <= n <= 2^32, got ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Fill `out` with standard normal samples (Box-Muller, pairs; an odd tail draws a full pair). */
  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = 1 - this.uniform();
      const u2 = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }

  /** Fill `out` with uniform samples in [lo, hi). */
  fillUniform(out: Float32Array, lo = 0, hi = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }

  /** A permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

function mixKey(h: number, v: number): number {
  return splitmix32((Math.imul(h ^ v, 0x01000193) + v) >>> 0);
}
