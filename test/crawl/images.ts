/** Real test images made with sharp: gradients + seeded noise, so they compress like photos. */
import sharp from 'sharp';
import { mulberry32 } from '../../infra/prng.js';

/** Deterministic PRNG: infra/prng.ts's mulberry32 (this name is kept for bench/crawl.ts and the native cases). */
export const rng = mulberry32;

/** Raw RGB(A) pixels: two-axis colour gradient plus noise of amplitude `noise`. */
export function photoLikePixels(width: number, height: number, seed: number, channels: 3 | 4 = 3, noise = 40): Buffer {
  const r = rng(seed);
  const buf = Buffer.alloc(width * height * channels);
  const c0 = [r() * 255, r() * 255, r() * 255];
  const c1 = [r() * 255, r() * 255, r() * 255];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * channels;
      const fx = x / width;
      const fy = y / height;
      for (let c = 0; c < 3; c++) {
        const base = c0[c]! * (1 - fx) + c1[c]! * fx + 40 * Math.sin(fy * 6 + c);
        buf[o + c] = Math.max(0, Math.min(255, base + (r() - 0.5) * noise));
      }
      if (channels === 4) buf[o + 3] = Math.round(255 * fy);
    }
  }
  return buf;
}

export type TestFormat = 'jpeg' | 'png' | 'webp';

/** An encoded test image. */
export async function makeImage(
  width: number,
  height: number,
  format: TestFormat,
  seed = 1,
  opts: { alpha?: boolean; quality?: number; noise?: number } = {},
): Promise<Buffer> {
  const channels = opts.alpha ? 4 : 3;
  const img = sharp(photoLikePixels(width, height, seed, channels, opts.noise), { raw: { width, height, channels } });
  if (format === 'jpeg') return img.jpeg({ quality: opts.quality ?? 85 }).toBuffer();
  if (format === 'png') return img.png().toBuffer();
  return img.webp({ quality: opts.quality ?? 80 }).toBuffer();
}
