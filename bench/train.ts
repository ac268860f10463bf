/**
 * Training throughput for the default small config on each available TensorFlow.js backend:
 * steps/s, samples/s, checkpoint write time and peak RSS, one child process per backend (so each
 * peak RSS is its own). Prints a table and a JSON line per backend.
 *
 *   node dist/bench/train.js [--steps 30] [--warmup 3] [--backends tensorflow,wasm,cpu] [--vae fixtures/models/tiny-vae]
 *
 * With `--vae <dir>` every backend also runs in that ONNX VAE's latent space (codec `{ vae: dir }`,
 * denoiser patch size divided by the VAE factor so the token count stays the same): the difference
 * is the VAE encode cost per step (ONNX Runtime, CPU unless CUDA is usable).
 *
 * Data: two generated Parquet shards (64 rows of 40x40 JPEGs, 6 failed) in a temp dir, decoded and
 * resized to the config resolution on the fly, as in a real run.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { selectTfBackend, type TfBackendName } from '../infra/tfjs-backend.js';
import { resolveTrainingConfig } from '../training/config.js';
import { ShardSampleStream } from '../training/data-loader.js';
import { TrainingSession } from '../training/trainer.js';
import { colorRows, tempStorage, writeFixtureShard } from '../test/training/shard-fixtures.js';

interface BenchRow {
  backend: string;
  codec: string;
  steps: number;
  batch: number;
  stepsPerSec: number;
  samplesPerSec: number;
  msPerStep: number;
  dataMsPerStep: number;
  checkpointMs: number;
  peakRssMiB: number;
  parameters: number;
  finalLoss: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] ?? fallback : fallback;
}

async function runOne(backend: TfBackendName, steps: number, warmup: number, vae: string): Promise<BenchRow> {
  const choice = await selectTfBackend({ prefer: backend });
  const { storage, cleanup } = await tempStorage();
  try {
    const shards = [storage.uri('data', 'shard-00000.parquet'), storage.uri('data', 'shard-00001.parquet')];
    await writeFixtureShard(storage, shards[0]!, await colorRows('0', 32, 11), 8);
    await writeFixtureShard(storage, shards[1]!, await colorRows('1', 32, 11), 8);
    const config = resolveTrainingConfig(vae ? { totalSteps: 1000, codec: { vae }, denoiser: { patchSize: 2 } } : { totalSteps: 1000 });
    const session = await TrainingSession.open({ storage, runUri: storage.uri('runs', 'bench'), config, shardUris: shards, backend: choice });
    try {
      for (let i = 0; i < warmup; i++) await session.trainStep(null);
      const t0 = performance.now();
      let loss = NaN;
      for (let i = 0; i < steps; i++) loss = (await session.trainStep(null)).loss;
      const elapsed = (performance.now() - t0) / 1000;
      const c0 = performance.now();
      await session.saveCheckpoint(null);
      const checkpointMs = performance.now() - c0;
      // Data cost alone: decode the same number of samples without training.
      const batch = config.optim.microBatchSize * config.optim.gradAccumSteps;
      const stream = new ShardSampleStream(storage, shards, { seed: 1, captionColumn: 'caption', resolution: config.resolution });
      const d0 = performance.now();
      for (let i = 0; i < steps; i++) await stream.nextBatch(batch);
      const dataMsPerStep = (performance.now() - d0) / steps;
      stream.close();
      return {
        backend: choice.name,
        codec: session.codec.name,
        steps,
        batch,
        stepsPerSec: steps / elapsed,
        samplesPerSec: (steps * batch) / elapsed,
        msPerStep: (elapsed * 1000) / steps,
        dataMsPerStep,
        checkpointMs,
        peakRssMiB: process.resourceUsage().maxRSS / 1024,
        parameters: session.params.count(),
        finalLoss: loss,
      };
    } finally {
      session.dispose();
    }
  } finally {
    await cleanup();
  }
}

async function main(): Promise<void> {
  const steps = Number(arg('steps', '30'));
  const warmup = Number(arg('warmup', '3'));
  const only = arg('only', '');
  if (only) {
    process.stdout.write(JSON.stringify(await runOne(only as TfBackendName, steps, warmup, arg('vae', ''))) + '\n');
    return;
  }
  const cfg = resolveTrainingConfig({});
  console.log(`default config: ${cfg.resolution}x${cfg.resolution} RGB (pixel space), patch ${cfg.denoiser.patchSize}, denoiser width ${cfg.denoiser.width} x ${cfg.denoiser.depth} blocks, text encoder width ${cfg.textEncoder.width} x ${cfg.textEncoder.depth}, ${cfg.textEncoder.maxTokens} tokens, micro-batch ${cfg.optim.microBatchSize} x accum ${cfg.optim.gradAccumSteps}; ${steps} timed steps after ${warmup} warmup`);
  const rows: BenchRow[] = [];
  const vae = arg('vae', '');
  const variants = (arg('backends', 'tensorflow,wasm,cpu').split(',') as TfBackendName[]).flatMap((b) => (vae ? [[b, ''], [b, vae]] : [[b, '']]) as [TfBackendName, string][]);
  for (const [backend, codec] of variants) {
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [fileURLToPath(import.meta.url), '--only', backend, '--steps', String(steps), '--warmup', String(warmup), ...(codec ? ['--vae', codec] : [])], { maxBuffer: 1 << 20 });
      const row = JSON.parse(stdout.trim().split('\n').pop()!) as BenchRow;
      rows.push(row);
      console.log(JSON.stringify(row));
    } catch (err) {
      console.log(`${backend}: not available (${((err as Error).message.split('\n').find((l) => l.includes('Error')) ?? 'failed').trim()})`);
    }
  }
  console.log('\n| backend | codec | steps/s | samples/s | ms/step | data ms/step | checkpoint ms | peak RSS MiB | params |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(`| ${r.backend} | ${r.codec} | ${r.stepsPerSec.toFixed(2)} | ${r.samplesPerSec.toFixed(1)} | ${r.msPerStep.toFixed(0)} | ${r.dataMsPerStep.toFixed(1)} | ${r.checkpointMs.toFixed(0)} | ${r.peakRssMiB.toFixed(0)} | ${r.parameters} |`);
  }
}

await main();
