/**
 * Seeded, deterministic sampling of candidate captions (CLIP reranking's sampled candidates).
 *
 * Each candidate row has its own random stream, seeded from (user seed, sha256 of the image bytes,
 * candidate index), so a caption does not depend on which other images share the batch, on the batch
 * size, or on whether the shard was resumed: a rerun gives the same candidates. The stream is
 * `infra/prng.ts`'s mulberry32 (one uniform double per token); the choice is an inverse-CDF draw over
 * softmax(logits / temperature), restricted to the top-p nucleus (tokens by descending probability,
 * ties by lower id, kept until their cumulative probability reaches top_p, as transformers'
 * TopPLogitsWarper keeps at least one). Probabilities are computed in double precision.
 * Not transformers' sampler (PyTorch's RNG cannot be reproduced here): candidates are Kiln's own.
 */
import { createHash } from 'node:crypto';
import { mulberry32, type Uniform } from '../../infra/prng.js';

/** Sampling settings (transformers' names: temperature, top_p). */
export interface SamplingConfig {
  seed: number;
  temperature: number;
  topP: number;
}

/** The stream of candidate `index` of the image with bytes `image`, under `seed`. */
export function candidateStream(seed: number, image: Uint8Array, index: number): Uniform {
  const imageSha = createHash('sha256').update(image).digest('hex');
  const h = createHash('sha256').update(`kiln-caption-sample:${seed}:${imageSha}:${index}`).digest();
  return mulberry32(h.readUInt32LE(0));
}

/** Draw one token from logits row `offset` (length `vocab`) with uniform `u` in [0, 1). */
export function sampleToken(
  logits: Float32Array,
  offset: number,
  vocab: number,
  cfg: Pick<SamplingConfig, 'temperature' | 'topP'>,
  u: number,
): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < vocab; v++) max = Math.max(max, (logits[offset + v] as number) / cfg.temperature);
  const p = new Float64Array(vocab);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += p[v] = Math.exp((logits[offset + v] as number) / cfg.temperature - max);
  const order = Array.from({ length: vocab }, (_, v) => v).sort((a, b) => (p[b] as number) - (p[a] as number) || a - b);
  // The nucleus: the most probable tokens until their cumulative probability reaches top_p (at least one).
  let kept = 0,
    mass = 0;
  while (kept < vocab && (kept === 0 || mass / sum < cfg.topP)) mass += p[order[kept++] as number] as number;
  let target = u * mass;
  for (let i = 0; i < kept; i++) {
    target -= p[order[i] as number] as number;
    if (target < 0) return order[i] as number;
  }
  return order[kept - 1] as number;
}
