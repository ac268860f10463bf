/**
 * PRX targets measured from the data (config `objective.prxTargets: 'measured'`): the variance of
 * the clean latents (over all elements) and their channel-by-channel correlation matrix, the two
 * statistics PRX compares x0-hat with. Measured once per run, which trains on one dataset version,
 * from up to `prxMeasureImages` distinct images (one pass at most, the loader's seeded order), encoded by the
 * run's codec, and stored in `<runUri>/prx-targets.json` with the shard list and codec they came
 * from; later chunks read the file, so resume sees the same numbers.
 */
import * as tf from '@tensorflow/tfjs';
import type { ArtifactStorage } from '../infra/storage.js';
import type { TrainingConfig } from './config.js';
import { ShardSampleStream } from './data-loader.js';
import { CheckpointError } from './errors.js';
import type { LatentCodec } from './latent-codec.js';

export interface PrxTargetStats {
  format: 'kiln-prx-targets-v1';
  /** Population variance over every latent element. */
  variance: number;
  /** C x C channel correlation matrix over images x height x width samples. */
  correlation: number[][];
  images: number;
  datasetShardsSha256: string;
  codec: string;
  codecSha256: string | null;
}

const BATCH = 16;

/** Measure the targets from the data (float64 sums; at most one pass over the dataset). */
export async function measurePrxTargets(
  storage: ArtifactStorage,
  shardUris: readonly string[],
  cfg: TrainingConfig,
  codec: LatentCodec,
  datasetShardsSha256: string,
): Promise<PrxTargetStats> {
  const stream = new ShardSampleStream(storage, shardUris, {
    seed: cfg.seed,
    captionColumn: cfg.data.captionColumn,
    resolution: cfg.resolution,
  });
  const C = codec.channels;
  let n = 0;
  let images = 0;
  const sum = new Float64Array(C);
  const cross = new Float64Array(C * C);
  const R = cfg.resolution;
  const encodeAndAdd = async (pixels: Float32Array, count: number) => {
    const t = tf.tensor4d(pixels, [count, R, R, 3]);
    const latents = await codec.encode(t);
    t.dispose();
    const data = await latents.data();
    latents.dispose();
    for (let i = 0; i < data.length; i += C) {
      for (let a = 0; a < C; a++) {
        const va = data[i + a]!;
        sum[a]! += va;
        for (let b = 0; b < C; b++) cross[a * C + b]! += va * data[i + b]!;
      }
    }
    n += data.length / C;
  };
  try {
    // One image at a time from the stream (a larger batch would wrap into the next epoch), encoded in batches.
    // A key seen before means the stream wrapped into its next epoch: the pass is complete.
    let pending: Float32Array[] = [];
    const seen = new Set<string>();
    let endOfPass = false;
    while (images < cfg.objective.prxMeasureImages && !endOfPass) {
      const one = await stream.nextBatch(1);
      endOfPass = seen.has(one.keys[0]!);
      if (!endOfPass) {
        seen.add(one.keys[0]!);
        pending.push(one.images);
        images++;
      }
      if (pending.length > 0 && (pending.length === BATCH || endOfPass || images === cfg.objective.prxMeasureImages)) {
        const joined = new Float32Array(pending.length * R * R * 3);
        pending.forEach((p, i) => joined.set(p, i * R * R * 3));
        await encodeAndAdd(joined, pending.length);
        pending = [];
      }
    }
  } finally {
    stream.close();
  }
  const mean = Array.from(sum, (s) => s / n);
  const cov = (a: number, b: number) => cross[a * C + b]! / n - mean[a]! * mean[b]!;
  const grandMean = mean.reduce((x, m) => x + m, 0) / C;
  let secondMoment = 0;
  for (let a = 0; a < C; a++) secondMoment += cross[a * C + a]! / n;
  const variance = secondMoment / C - grandMean * grandMean;
  const correlation = Array.from({ length: C }, (_, a) =>
    Array.from({ length: C }, (_, b) => cov(a, b) / Math.sqrt(Math.max(cov(a, a) * cov(b, b), 1e-12))),
  );
  return {
    format: 'kiln-prx-targets-v1',
    variance,
    correlation,
    images,
    datasetShardsSha256,
    codec: codec.name,
    codecSha256: codec.sha256,
  };
}

/** The run's measured targets: read `<runUri>/prx-targets.json`, or measure and write it (first chunk). */
export async function runPrxTargets(
  storage: ArtifactStorage,
  runUri: string,
  shardUris: readonly string[],
  cfg: TrainingConfig,
  codec: LatentCodec,
  datasetShardsSha256: string,
): Promise<PrxTargetStats> {
  const uri = storage.child(runUri, 'prx-targets.json');
  if (await storage.exists(uri)) {
    const t = JSON.parse(await storage.readText(uri)) as PrxTargetStats;
    if (t.datasetShardsSha256 !== datasetShardsSha256 || t.codecSha256 !== codec.sha256 || t.codec !== codec.name) {
      throw new CheckpointError(
        `${uri} was measured on another dataset version or codec (${t.codec}) than this chunk's (${codec.name})`,
        'resume with the dataset version and codec the run started with, or start a new run id.',
      );
    }
    return t;
  }
  const t = await measurePrxTargets(storage, shardUris, cfg, codec, datasetShardsSha256);
  await storage.writeAtomic(uri, new TextEncoder().encode(`${JSON.stringify(t, null, 1)}\n`));
  return t;
}
