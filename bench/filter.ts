/**
 * Filter-stage throughput on CPU: CLIP scoring (pairs/s) and captioning (captions/s) from encoded
 * image bytes, per batch size, with the reference Python implementation (transformers + PyTorch, same
 * model directory, same images, same thread count) printed beside it.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/filter.js [--clip-dir fixtures/models/clip-tiny]
 *     [--captioner-dir fixtures/models/vit-gpt2-tiny] [--batch-sizes 1,8,32] [--pairs 256]
 *     [--captions 64] [--max-new-tokens 20] [--threads 2] [--image-size 256x192]
 *     [--repeat 3] [--only all|clip|caption] [--num-beams 1] [--preprocess-threads N]
 *     [--python .venv-models/bin/python] [--no-reference]
 *
 * Images are synthetic JPEGs (seeded gradients + noise at --image-size) written to a temp dir so both
 * implementations decode, resize and normalise the same bytes inside the timed region. Each
 * configuration runs one warm-up batch first, then the timed pass `--repeat` times; the best pass is
 * printed (the machine is shared). Neither side busy-waits: ORT spinning is off (Kiln's default) and
 * the reference runs with OMP_WAIT_POLICY=PASSIVE. The reference is bench/filter_reference.py.
 * `--num-beams` captions with beam search on both sides; `--preprocess-threads` sets Kiln's image
 * preprocessing workers (default: none on 1-2 cores, else cores/4 up to 4).
 * The load average is printed before and after: compare ratios within one run.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { loadCaptioner } from '../datasets/filter/captioner.js';
import { loadClipScorer } from '../datasets/filter/clip-scorer.js';
import { defaultPreprocessThreads } from '../datasets/filter/preprocess-pool.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const clipDir = resolve(arg('clip-dir', 'fixtures/models/clip-tiny'));
const captionerDir = resolve(arg('captioner-dir', 'fixtures/models/vit-gpt2-tiny'));
const batchSizes = arg('batch-sizes', '1,8,32').split(',').map(Number);
const nPairs = Number(arg('pairs', '256'));
const nCaptions = Number(arg('captions', '64'));
const maxNewTokens = Number(arg('max-new-tokens', '20'));
const threads = Number(arg('threads', '2'));
const [imgW, imgH] = arg('image-size', '256x192').split('x').map(Number) as [number, number];
const python = resolve(arg('python', '.venv-models/bin/python'));
const repeat = Number(arg('repeat', '3'));
const only = arg('only', 'all'); // all | clip | caption
const numBeams = Number(arg('num-beams', '1'));
const preprocessThreads = process.argv.includes('--preprocess-threads')
  ? Number(arg('preprocess-threads', '1'))
  : undefined;
const pre = preprocessThreads === undefined ? {} : { preprocessThreads };
const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');

const WORDS = [
  'a',
  'photo',
  'of',
  'cat',
  'dog',
  'red',
  'chair',
  'beach',
  'sunset',
  'city',
  'street',
  'night',
  'flower',
  'garden',
  'mountain',
  'lake',
];

async function makeImages(n: number, dir: string): Promise<{ images: Uint8Array[]; captions: string[] }> {
  const images: Uint8Array[] = [];
  const captions: string[] = [];
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  for (let i = 0; i < n; i++) {
    const raw = Buffer.alloc(imgW * imgH * 3);
    const [r0, g0, b0] = [rand() * 255, rand() * 255, rand() * 255];
    for (let y = 0; y < imgH; y++) {
      for (let x = 0; x < imgW; x++) {
        const o = (y * imgW + x) * 3;
        raw[o] = (r0 + (x * 255) / imgW + rand() * 40) % 256;
        raw[o + 1] = (g0 + (y * 255) / imgH + rand() * 40) % 256;
        raw[o + 2] = (b0 + rand() * 60) % 256;
      }
    }
    const jpg = await sharp(raw, { raw: { width: imgW, height: imgH, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    writeFileSync(join(dir, `${String(i).padStart(5, '0')}.jpg`), jpg);
    images.push(new Uint8Array(jpg));
    captions.push(Array.from({ length: 4 + (i % 9) }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' '));
  }
  writeFileSync(join(dir, 'captions.json'), JSON.stringify(captions));
  return { images, captions };
}

/**
 * Best (shortest) of `repeat` timed runs, in seconds, and the least process CPU time of a run
 * (all threads: ORT, sharp, preprocessing workers), in seconds. CPU time is the steadier figure on a
 * shared machine.
 */
async function timeIt(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  let wall = Number.POSITIVE_INFINITY,
    cpu = Number.POSITIVE_INFINITY;
  for (let r = 0; r < repeat; r++) {
    const t = performance.now();
    const c = process.cpuUsage();
    await fn();
    const d = process.cpuUsage(c);
    wall = Math.min(wall, (performance.now() - t) / 1000);
    cpu = Math.min(cpu, (d.user + d.system) / 1e6);
  }
  return { wall, cpu };
}

interface Row {
  task: string;
  batch: number;
  kiln: number;
  reference: number | null;
  kilnCpuMs: number;
  referenceCpuMs: number | null;
}

async function main(): Promise<void> {
  sharp.concurrency(threads);
  const loadBefore = load();
  const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-filter-'));
  try {
    const n = Math.max(nPairs, nCaptions);
    const { images, captions } = await makeImages(n, dir);
    const rows: Row[] = [];
    let captionDecoder = 'not run';
    for (const batchSize of only === 'caption' ? [] : batchSizes) {
      const scorer = await loadClipScorer(clipDir, { device: 'cpu', batchSize, threads, ...pre });
      await scorer.score(images.slice(0, batchSize), captions.slice(0, batchSize));
      const s = await timeIt(() => scorer.score(images.slice(0, nPairs), captions.slice(0, nPairs)));
      rows.push({
        task: 'clip pairs/s',
        batch: batchSize,
        kiln: nPairs / s.wall,
        reference: null,
        kilnCpuMs: (1000 * s.cpu) / nPairs,
        referenceCpuMs: null,
      });
      await scorer.dispose();
    }
    for (const batchSize of only === 'clip' ? [] : batchSizes) {
      const cap = await loadCaptioner(captionerDir, {
        device: 'cpu',
        batchSize,
        threads,
        maxNewTokens,
        numBeams,
        ...pre,
      });
      await cap.caption(images.slice(0, batchSize));
      const s = await timeIt(() => cap.caption(images.slice(0, nCaptions)));
      rows.push({
        task: 'captions/s',
        batch: batchSize,
        kiln: nCaptions / s.wall,
        reference: null,
        kilnCpuMs: (1000 * s.cpu) / nCaptions,
        referenceCpuMs: null,
      });
      captionDecoder = cap.options.decoder.path;
      await cap.dispose();
    }
    if (!flag('no-reference')) {
      const res = spawnSync(
        python,
        [
          resolve('bench/filter_reference.py'),
          '--images',
          dir,
          '--clip-dir',
          clipDir,
          '--captioner-dir',
          captionerDir,
          '--batch-sizes',
          batchSizes.join(','),
          '--pairs',
          String(nPairs),
          '--captions',
          String(nCaptions),
          '--max-new-tokens',
          String(maxNewTokens),
          '--threads',
          String(threads),
          '--repeat',
          String(repeat),
          '--only',
          only,
          '--num-beams',
          String(numBeams),
        ],
        {
          encoding: 'utf8',
          env: {
            ...process.env,
            OMP_NUM_THREADS: String(threads),
            OMP_WAIT_POLICY: 'PASSIVE',
            TOKENIZERS_PARALLELISM: 'false',
          },
        },
      );
      if (res.status !== 0) {
        console.error(`reference failed (${python}): ${res.stderr.slice(-2000)}`);
      } else {
        const ref = JSON.parse(res.stdout.trim().split('\n').at(-1) ?? '{}') as {
          rows: { task: string; batch: number; value: number; cpu_ms: number }[];
          versions: Record<string, string>;
        };
        for (const r of ref.rows) {
          const row = rows.find((x) => x.task === r.task && x.batch === r.batch);
          if (row) {
            row.reference = r.value;
            row.referenceCpuMs = r.cpu_ms;
          }
        }
        console.log(
          `reference: ${Object.entries(ref.versions)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`,
        );
      }
    }
    console.log(
      `models: ${clipDir}, ${captionerDir}; ${n} synthetic ${imgW}x${imgH} JPEGs; threads ${threads}; ` +
        `preprocess threads ${preprocessThreads ?? `${defaultPreprocessThreads()} (default)`}; ` +
        `max new tokens ${maxNewTokens}; beams ${numBeams}; captioner decoder ${captionDecoder}; ` +
        `best of ${repeat}; load average before ${loadBefore}, after ${load()}`,
    );
    console.log(
      'task            batch   kiln (ORT)   reference (PyTorch)   ratio   kiln CPU ms/item   reference CPU ms/item   CPU ratio',
    );
    for (const r of rows) {
      const ref = r.reference === null ? '-' : r.reference.toFixed(1);
      const ratio = r.reference === null ? '-' : (r.kiln / r.reference).toFixed(2);
      const refCpu = r.referenceCpuMs === null ? '-' : r.referenceCpuMs.toFixed(2);
      const cpuRatio = r.referenceCpuMs === null ? '-' : (r.referenceCpuMs / r.kilnCpuMs).toFixed(2);
      console.log(
        `${r.task.padEnd(15)} ${String(r.batch).padStart(5)} ${r.kiln.toFixed(1).padStart(12)} ` +
          `${ref.padStart(21)} ${ratio.padStart(7)} ${r.kilnCpuMs.toFixed(2).padStart(18)} ` +
          `${refCpu.padStart(23)} ${cpuRatio.padStart(11)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
