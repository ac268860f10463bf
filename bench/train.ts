/**
 * Training throughput, Kiln next to a PyTorch copy of the same model in the same run: for each
 * config (the default tiny one and a compute-bound one of 10.6M parameters) and each Kiln backend,
 * steps/s, samples/s, peak RSS, and the ratio to PyTorch (bench/train_reference.py, CPU, in
 * .venv-bench, created on first use). Each side runs in its own child process, so each peak RSS is
 * its own. Prints a JSON line per run and a table; `--profile` adds the top kernels of one step
 * (tf.profile on Kiln's side, torch.profiler on PyTorch's).
 *
 *   node dist/bench/train.js [--configs tiny,10m] [--backends tensorflow] [--steps 20] [--warmup 3]
 *     [--profile] [--no-reference] [--vae fixtures/models/tiny-vae]
 *
 * The machine is shared: compare the ratio within one run, and read the load average printed
 * before and after. Kiln decodes real JPEG shards (two generated Parquet shards, 64 rows of 40x40
 * JPEGs, 6 failed) with its prefetching loader; PyTorch trains on random tensors. `data ms/step` is
 * Kiln's loader alone, measured separately.
 *
 * With `--vae <dir>` every backend also runs in that ONNX VAE's latent space (codec `{ vae: dir }`,
 * denoiser patch size divided by the VAE factor so the token count stays the same). The latents are
 * encoded once into the latent cache before the timed steps (`cache ms`), as the train workflow does.
 *
 * `--configs dit-s2-256` runs the realistic preset (training/presets.ts) at micro-batch 4 without
 * accumulation (a full optimiser step of 2048 samples is 512 such micro-batches): it needs
 * `--vae <dir>` with an SD-style VAE (f = 8, 4 channels); `python bench/make_bench_vae.py <dir>`
 * writes a random-weight one. Its text tower is CLIP-L-sized and trains from scratch (byte
 * vocabulary): the same compute as CLIP-L's, 38M fewer embedding parameters. PyTorch's copy trains
 * on random 32x32x4 latents.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { selectTfBackend, type TfBackendName } from '../infra/tfjs-backend.js';
import { resolveTrainingConfig, type TrainingConfig, type TrainingConfigInput } from '../training/config.js';
import { ShardSampleStream, type LoaderOptions } from '../training/data-loader.js';
import { artifactSha256, buildLatentCache } from '../training/latent-cache.js';
import { createLatentCodec } from '../training/latent-codec.js';
import { opThreadsFor } from '../training/op-threads.js';
import { TrainingSession } from '../training/trainer.js';
import { colorRows, tempStorage, writeFixtureShard } from '../test/training/shard-fixtures.js';

/** The benchmark's configs: the default tiny one, and a compute-bound one (issue 14's 10.6M). */
const CONFIGS: Record<string, TrainingConfigInput> = {
  tiny: { totalSteps: 1000 },
  '10m': {
    totalSteps: 1000,
    resolution: 64,
    denoiser: { patchSize: 4, width: 256, depth: 6, heads: 4 },
    textEncoder: { width: 256, depth: 2, heads: 4 },
    optim: { microBatchSize: 8 },
  },
  'dit-s2-256': { preset: 'dit-s2-256', totalSteps: 1000, optim: { microBatchSize: 4, gradAccumSteps: 1 } },
};
/** Configs that are a preset in a VAE latent space already (no pixel-space variant). */
const latentOnly = (name: string) => CONFIGS[name]?.preset !== undefined;

interface ProfileRow {
  op: string;
  ms: number;
  calls: number;
}

interface BenchRow {
  impl: string;
  config: string;
  backend: string;
  codec: string;
  /** Threads per op: Kiln's native TensorFlow choice (training/op-threads.ts; null = one per core), PyTorch's set_num_threads. */
  threads?: number | null;
  steps: number;
  batch: number;
  stepsPerSec: number;
  samplesPerSec: number;
  msPerStep: number;
  dataMsPerStep?: number;
  checkpointMs?: number;
  /** Building the latent cache (VAE runs only). */
  cacheMs?: number;
  /** Peak RSS of the whole run (Kiln: including the checkpoint write and the data-only pass). */
  peakRssMiB: number;
  /** Kiln: peak RSS when the training steps end, before the checkpoint write (PyTorch's copy writes none). */
  trainPeakRssMiB?: number;
  parameters: number;
  finalLoss: number;
  profile?: ProfileRow[];
  /** Sum of the step's kernel times (custom-gradient scopes not counted twice) and the number of kernels. */
  profileTotalMs?: number;
  profileKernels?: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const flag = (name: string) => process.argv.includes(`--${name}`);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

function benchConfig(name: string, vae: string): TrainingConfig {
  const base = CONFIGS[name];
  if (!base) throw new Error(`unknown config ${name} (have ${Object.keys(CONFIGS).join(', ')})`);
  // The PyTorch reference trains epsilon + PRX (unit targets, every sample): pin Kiln to the same update.
  const same = {
    ...base,
    objective: { ...base.objective, prediction: 'epsilon' as const, prxTargets: 'unit' as const, prxMaxGain: null },
  };
  if (latentOnly(name)) {
    if (!vae)
      throw new Error(
        `config ${name} trains in a VAE latent space: pass --vae <dir> (python bench/make_bench_vae.py <dir> writes one)`,
      );
    return resolveTrainingConfig({ ...same, codec: { vae } });
  }
  return resolveTrainingConfig(
    vae
      ? { ...same, codec: { vae }, denoiser: { ...base.denoiser, patchSize: (base.denoiser?.patchSize ?? 4) / 2 } }
      : same,
  );
}

async function runKiln(
  configName: string,
  backend: TfBackendName,
  steps: number,
  warmup: number,
  vae: string,
  profile: boolean,
): Promise<BenchRow> {
  const config = benchConfig(configName, vae);
  const choice = await selectTfBackend({ prefer: backend, opThreads: opThreadsFor(config) });
  const { storage, cleanup } = await tempStorage();
  try {
    const shards = [storage.uri('data', 'shard-00000.parquet'), storage.uri('data', 'shard-00001.parquet')];
    await writeFixtureShard(storage, shards[0]!, await colorRows('0', 32, 11), 8);
    await writeFixtureShard(storage, shards[1]!, await colorRows('1', 32, 11), 8);
    const codec = await createLatentCodec(config.codec);
    let latents: LoaderOptions['latents'];
    let cacheMs: number | undefined;
    if (codec.sha256 !== null) {
      const h0 = performance.now();
      const built = await buildLatentCache({
        storage,
        shards: await Promise.all(shards.map(async (uri) => ({ uri, sha256: await artifactSha256(storage, uri) }))),
        codec,
        resolution: config.resolution,
      });
      cacheMs = performance.now() - h0;
      const side = config.resolution / codec.downsample;
      latents = {
        shardUris: built.manifest.shards.map((x) => x.uri),
        vaeSha256: codec.sha256,
        shape: [side, side, codec.channels],
      };
    }
    const session = await TrainingSession.open({
      storage,
      runUri: storage.uri('runs', 'bench'),
      config,
      shardUris: shards,
      latentShardUris: latents?.shardUris,
      backend: choice,
      codec,
    });
    try {
      for (let i = 0; i < warmup; i++) await session.trainStep(null);
      const t0 = performance.now();
      let loss = NaN;
      for (let i = 0; i < steps; i++) loss = (await session.trainStep(null)).loss;
      const elapsed = (performance.now() - t0) / 1000;
      let prof: Pick<BenchRow, 'profile' | 'profileTotalMs' | 'profileKernels'> = {};
      if (profile) {
        const info = await tf.profile(async () => {
          await session.trainStep(null);
        });
        const by = new Map<string, ProfileRow>();
        let total = 0;
        let ops = 0;
        const backendName = tf.getBackend();
        for (const k of info.kernels) {
          // tf.profile also lists custom-gradient scopes, whose time is their kernels' time again: count kernels only.
          if (!tf.getKernel(k.name, backendName)) continue;
          ops += 1;
          const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
          total += ms;
          const row = by.get(k.name) ?? { op: k.name, ms: 0, calls: 0 };
          row.ms += ms;
          row.calls += 1;
          by.set(k.name, row);
        }
        prof = {
          profile: [...by.values()].sort((a, b) => b.ms - a.ms).slice(0, 10),
          profileTotalMs: total,
          profileKernels: ops,
        };
      }
      const trainPeakRssMiB = process.resourceUsage().maxRSS / 1024;
      const c0 = performance.now();
      await session.saveCheckpoint(null);
      const checkpointMs = performance.now() - c0;
      // Data cost alone: decode the same number of samples without training.
      const batch = config.optim.microBatchSize * config.optim.gradAccumSteps;
      const stream = new ShardSampleStream(storage, shards, {
        seed: 1,
        captionColumn: 'caption',
        resolution: config.resolution,
        latents,
      });
      const d0 = performance.now();
      for (let i = 0; i < steps; i++) await stream.nextBatch(batch);
      const dataMsPerStep = (performance.now() - d0) / steps;
      stream.close();
      return {
        impl: 'kiln',
        config: configName,
        backend: choice.name,
        ...(choice.opThreads ? { threads: choice.opThreads.threads } : {}),
        codec: session.codec.name,
        steps,
        batch,
        stepsPerSec: steps / elapsed,
        samplesPerSec: (steps * batch) / elapsed,
        msPerStep: (elapsed * 1000) / steps,
        dataMsPerStep,
        checkpointMs,
        ...(cacheMs !== undefined ? { cacheMs } : {}),
        peakRssMiB: process.resourceUsage().maxRSS / 1024,
        trainPeakRssMiB,
        parameters: session.params.count(),
        finalLoss: loss,
        ...prof,
      };
    } finally {
      session.dispose();
      await codec.dispose();
    }
  } finally {
    await cleanup();
  }
}

/** .venv-bench's python with PyTorch (CPU), created on first use. */
function referencePython(): string {
  const venv = resolve('.venv-bench');
  const python = resolve(venv, 'bin', 'python');
  const hasTorch = () =>
    existsSync(python) && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  if (!hasTorch()) {
    console.error('[bench] installing torch==2.13.0 (CPU) into .venv-bench (one-time, needs PyPI)');
    if (!existsSync(python))
      spawnSync(process.env.KILN_PYTHON ?? 'python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    // PyTorch's CPU wheel index: PyPI's default Linux wheel pulls ~2.5 GB of CUDA libraries.
    spawnSync(
      resolve(venv, 'bin', 'pip'),
      [
        'install',
        '--disable-pip-version-check',
        '-q',
        '--index-url',
        'https://download.pytorch.org/whl/cpu',
        '--extra-index-url',
        'https://pypi.org/simple',
        'torch==2.13.0',
        'numpy',
      ],
      { stdio: 'inherit' },
    );
    if (!hasTorch()) throw new Error('could not install torch into .venv-bench');
  }
  return python;
}

function runReference(configName: string, steps: number, warmup: number, profile: boolean, vae: string): BenchRow {
  const c = benchConfig(configName, latentOnly(configName) ? vae : '');
  // A preset's VAE latent (SD-style: f = 8, 4 channels), as random tensors; pixel space otherwise.
  const [size, channels] = latentOnly(configName) ? [c.resolution / 8, 4] : [c.resolution, 3];
  const config = {
    denoiser: { ...c.denoiser, size, channels },
    text: { ...c.textEncoder, vocabSize: 259 },
    optim: c.optim,
    objective: c.objective,
  };
  // OpenMP threads sleep when idle (as in bench:filter): on a shared machine, spinning threads that
  // wait for a busy core cost PyTorch up to 10x here.
  const env = { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' };
  const res = spawnSync(
    referencePython(),
    [resolve('bench/train_reference.py'), JSON.stringify({ config, steps, warmup, profile })],
    { encoding: 'utf8', maxBuffer: 1 << 22, env },
  );
  if (res.status !== 0) throw new Error(`bench/train_reference.py failed: ${res.stderr.slice(-2000)}`);
  const row = JSON.parse(res.stdout.trim().split('\n').pop()!) as Omit<BenchRow, 'config' | 'backend' | 'codec'>;
  return {
    ...row,
    config: configName,
    backend: 'pytorch-cpu',
    codec: latentOnly(configName) ? 'random latents' : 'identity',
  };
}

async function main(): Promise<void> {
  const steps = Number(arg('steps', '20'));
  const warmup = Number(arg('warmup', '3'));
  const profile = flag('profile');
  const only = arg('only', '');
  if (only) {
    process.stdout.write(
      JSON.stringify(
        await runKiln(arg('config', 'tiny'), only as TfBackendName, steps, warmup, arg('vae', ''), profile),
      ) + '\n',
    );
    return;
  }
  const configs = arg('configs', 'tiny,10m').split(',');
  const backends = arg('backends', 'tensorflow').split(',') as TfBackendName[];
  const vae = arg('vae', '');
  console.log(
    `load average before: ${load()}; ${steps} timed steps after ${warmup} warmup; configs ${configs.join(', ')}`,
  );
  const rows: BenchRow[] = [];
  for (const configName of configs) {
    const c = benchConfig(configName, latentOnly(configName) ? vae : '');
    console.log(
      `\n${configName}: ${c.resolution}x${c.resolution} RGB, patch ${c.denoiser.patchSize}, ` +
        `denoiser ${c.denoiser.width} x ${c.denoiser.depth}, text ${c.textEncoder.width} x ` +
        `${c.textEncoder.depth} (${c.textEncoder.maxTokens} tokens), ` +
        `micro-batch ${c.optim.microBatchSize} x accum ${c.optim.gradAccumSteps}, ` +
        `dropout ${c.denoiser.dropout}, EMA ${c.optim.ema.enabled}`,
    );
    if (!flag('no-reference')) {
      try {
        const row = runReference(configName, steps, warmup, profile, vae);
        rows.push(row);
        console.log(JSON.stringify(row));
      } catch (err) {
        console.log(`pytorch: not available (${(err as Error).message.split('\n')[0]})`);
      }
    }
    const variants = backends.flatMap(
      (b) =>
        (latentOnly(configName)
          ? [[b, vae]]
          : vae
            ? [
                [b, ''],
                [b, vae],
              ]
            : [[b, '']]) as [TfBackendName, string][],
    );
    for (const [backend, codec] of variants) {
      try {
        const { stdout } = await promisify(execFile)(
          process.execPath,
          [
            fileURLToPath(import.meta.url),
            '--only',
            backend,
            '--config',
            configName,
            '--steps',
            String(steps),
            '--warmup',
            String(warmup),
            ...(codec ? ['--vae', codec] : []),
            ...(profile ? ['--profile'] : []),
          ],
          { maxBuffer: 1 << 22 },
        );
        const row = JSON.parse(stdout.trim().split('\n').pop()!) as BenchRow;
        rows.push(row);
        console.log(JSON.stringify(row));
      } catch (err) {
        console.log(
          `${backend}: not available (${((err as Error).message.split('\n').find((l) => l.includes('Error')) ?? 'failed').trim()})`,
        );
      }
    }
  }
  console.log(`\nload average after: ${load()}`);
  console.log(
    '\n| config | impl | backend | threads/op | codec | params | steps/s | samples/s | ms/step | x PyTorch | data ms/step | ' +
      'cache ms | peak RSS MiB | RSS x PyTorch | training peak RSS MiB | x PyTorch |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const ref = rows.find((x) => x.impl === 'pytorch' && x.config === r.config);
    const ratio = ref ? (r.stepsPerSec / ref.stepsPerSec).toFixed(2) : '-';
    const rss = ref ? (r.peakRssMiB / ref.peakRssMiB).toFixed(2) : '-';
    const trainRss = r.trainPeakRssMiB ?? r.peakRssMiB;
    const trainRatio = ref ? (trainRss / ref.peakRssMiB).toFixed(2) : '-';
    console.log(
      `| ${r.config} | ${r.impl} | ${r.backend} | ${r.threads === undefined ? '-' : (r.threads ?? 'cores')} | ${r.codec} | ${r.parameters} | ` +
        `${r.stepsPerSec.toFixed(2)} | ${r.samplesPerSec.toFixed(1)} | ${r.msPerStep.toFixed(0)} | ` +
        `${ratio} | ${r.dataMsPerStep?.toFixed(1) ?? '-'} | ${r.cacheMs?.toFixed(0) ?? '-'} | ` +
        `${r.peakRssMiB.toFixed(0)} | ${rss} | ${trainRss.toFixed(0)} | ${trainRatio} |`,
    );
  }
  for (const r of rows.filter((x) => x.profile)) {
    console.log(
      `\ntop kernels, one step: ${r.config} ${r.impl} ${r.backend} (sum of all ${r.profileTotalMs!.toFixed(0)} ms` +
        `${r.profileKernels ? ` over ${r.profileKernels} kernels` : ''}; ` +
        `step ${r.msPerStep.toFixed(0)} ms = ${(r.msPerStep / r.profileTotalMs!).toFixed(2)}x the sum)`,
    );
    for (const p of r.profile!) console.log(`  ${p.op.padEnd(40)} ${p.ms.toFixed(1).padStart(8)} ms  x${p.calls}`);
  }
}

await main();
