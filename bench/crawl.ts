/**
 * `npm run bench:crawl`: Kiln's crawler vs img2dataset on the same loopback URL list.
 *
 * Serves N realistic JPEGs (`--source-set mixed`, the default: 200x150 to 2000x1500, 4:2:0 baseline and
 * progressive, 4:4:4 and grey; `uniform`: ~500x375 4:2:0; `--distinct` different images generated
 * with sharp from gradients + noise, repeated under N distinct URLs) from a separate server process,
 * crawls them to 256 px Parquet shards with Kiln (bench/crawl-run.ts, the activity code a worker
 * runs) and with img2dataset (bench/crawl_reference.sh, pip, in .venv-bench), and prints images/s,
 * MB/s, CPU use and peak memory of each (sampled over the whole process tree; PSS counts pages
 * shared between forked processes once).
 *
 * Flags: --images 10000 --distinct 500 --source-set mixed|uniform --image-size 256 --resize-mode border --quality 95
 *        --rows-per-shard 2500 --shard-concurrency 2 --concurrency 64 --decode-concurrency <cpus> --ref-processes 2
 *        --ref-threads 64 --skip-reference --no-jemalloc --sharp-row --rounds 1 --work-dir <dir>
 *
 * Kiln decodes/resizes/encodes JPEGs with its native libjpeg-turbo path when setup built it
 * (infra/imaging/native); `--sharp-row` adds a run with KILN_NATIVE_JPEG=0 (sharp for every image).
 * `--rounds N` repeats Kiln and img2dataset N times, alternating which goes first, and prints the
 * ratio of each round: on a machine shared with other work, wall-clock speed depends on the load
 * during each run; CPU per image does much less.
 *
 * When libjemalloc is installed (Debian: libjemalloc2), Kiln is also run with it preloaded (sharp's
 * documentation recommends jemalloc on glibc: libvips' many small allocations from several threads
 * cost glibc malloc a lot); both rows are printed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { makeImage, photoLikePixels, rng } from '../test/crawl/images.js';
import { ProcessTreeSampler } from './process-sampler.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const args = process.argv.slice(2);
const flag = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const N = Number(flag('images', '10000'));
const DISTINCT = Number(flag('distinct', '500'));
const SIZE = Number(flag('image-size', '256'));
const MODE = flag('resize-mode', 'border');
const QUALITY = Number(flag('quality', '95'));
const PER_SHARD = Number(flag('rows-per-shard', '2500'));
const SHARD_CONCURRENCY = Number(flag('shard-concurrency', '2'));
const CONCURRENCY = Number(flag('concurrency', '64'));
const DECODE_CONCURRENCY = Number(flag('decode-concurrency', '0'));
const REF_PROCS = Number(flag('ref-processes', '2'));
const REF_THREADS = Number(flag('ref-threads', '64'));
const SKIP_REF = args.includes('--skip-reference');
const WORK = flag('work-dir', join(tmpdir(), 'kiln-bench-crawl'));
const JEMALLOC = [
  '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
  '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2',
  '/usr/lib64/libjemalloc.so.2',
].find((p) => existsSync(p));
const USE_JEMALLOC = !args.includes('--no-jemalloc') && JEMALLOC !== undefined;
const SHARP_ROW = args.includes('--sharp-row');
const ROUNDS = Number(flag('rounds', '1'));
const SOURCE_SET = flag('source-set', 'mixed');
if (SOURCE_SET !== 'mixed' && SOURCE_SET !== 'uniform')
  throw new Error(`--source-set ${SOURCE_SET}: use mixed or uniform`);

interface Measured {
  wallS: number;
  cpuS: number;
  peakRssMb: number;
  peakPssMb: number;
  stdout: string;
  /** 1-minute load average before and after the run (other work on the machine). */
  load: [number, number];
}

/** Run a command, sampling its process tree; CPU from GNU time when present (all reaped descendants). */
async function measured(cmd: string, cmdArgs: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measured> {
  const timeFile = join(WORK, 'time.txt');
  const useTime = existsSync('/usr/bin/time');
  const [exe, argv] = useTime ? ['/usr/bin/time', ['-f', '%U %S', '-o', timeFile, cmd, ...cmdArgs]] : [cmd, cmdArgs];
  const loadBefore = loadavg()[0]!;
  const t0 = performance.now();
  const child = spawn(exe, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const sampler = new ProcessTreeSampler(child.pid!, 100);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const wallS = (performance.now() - t0) / 1000;
  const peak = sampler.stop();
  if (code !== 0) throw new Error(`${cmd} exited with ${code}\n${stderr}`);
  const cpuS = useTime
    ? readFileSync(timeFile, 'utf8')
        .trim()
        .split(/\s+/)
        .map(Number)
        .reduce((a, b) => a + b, 0)
    : peak.cpuS;
  return {
    wallS,
    cpuS,
    peakRssMb: peak.rssKb / 1024,
    peakPssMb: peak.pssKb / 1024,
    stdout,
    load: [loadBefore, loadavg()[0]!],
  };
}

/**
 * The source set. `mixed` (default): what a web crawl meets: sizes from 200x150 to 2000x1500 (odd and
 * portrait ones too), 70% 4:2:0 baseline, 10% progressive 4:2:0, 12% 4:4:4, 8% greyscale, quality
 * 70-95. `uniform`: the earlier set, ~500x375 4:2:0 only (comparable with older BENCHMARKS rows).
 */
async function prepareImages(): Promise<{ dir: string; sizes: number[]; describe: string }> {
  const dir = join(WORK, `images-${SOURCE_SET}-${DISTINCT}`);
  if (!existsSync(join(dir, 'done'))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const r = rng(2024);
    const shapes: [number, number][] = [
      [500, 375],
      [500, 375],
      [375, 500],
      [512, 384],
      [480, 360],
      [500, 333],
    ];
    for (let i = 0; i < DISTINCT; i++) {
      let b: Buffer;
      if (SOURCE_SET === 'uniform') {
        const [w, h] = shapes[Math.floor(r() * shapes.length)]!;
        b = await makeImage(w, h, 'jpeg', i + 1, { noise: 25 + r() * 45, quality: Math.round(82 + r() * 10) });
      } else {
        // Long side log-uniform in 200..2000, aspect 0.5..2 (portrait or landscape), never under 150 px.
        const long = Math.round(200 * 10 ** r());
        const aspect = 0.5 + r() * 1.5;
        let w = Math.max(150, Math.round(aspect >= 1 ? long : long * aspect));
        let h = Math.max(150, Math.round(aspect >= 1 ? long / aspect : long));
        if (r() < 0.5) {
          w |= 1;
          h |= 1;
        } // odd sizes
        const kind = r();
        const quality = Math.round(70 + r() * 25);
        const px = sharp(photoLikePixels(w, h, i + 1, 3, 25 + r() * 45), { raw: { width: w, height: h, channels: 3 } });
        b =
          kind < 0.7
            ? await px.jpeg({ quality }).toBuffer()
            : kind < 0.8
              ? await px.jpeg({ quality, progressive: true }).toBuffer()
              : kind < 0.92
                ? await px.jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer()
                : await px.greyscale().jpeg({ quality }).toBuffer();
      }
      writeFileSync(join(dir, `${String(i).padStart(5, '0')}.jpg`), b);
    }
    writeFileSync(join(dir, 'done'), '');
  }
  const sizes = readdirSync(dir)
    .filter((n) => n.endsWith('.jpg'))
    .sort()
    .map((n) => readFileSync(join(dir, n)).length);
  const describe =
    SOURCE_SET === 'uniform' ? '~500x375 4:2:0' : 'mixed 200x150..2000x1500: 4:2:0, progressive, 4:4:4, grey';
  return { dir, sizes, describe };
}

async function startServer(imageDir: string): Promise<{ port: number; stop(): void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./crawl-server.js', import.meta.url)), imageDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /PORT (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (c) => reject(new Error(`server exited with ${c}`)));
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

function row(name: string, images: number, ok: number, m: Measured, mb: number): string[] {
  return [
    name,
    String(images),
    String(ok),
    m.wallS.toFixed(1),
    (ok / m.wallS).toFixed(0),
    (mb / m.wallS).toFixed(1),
    m.cpuS.toFixed(1),
    ((1000 * m.cpuS) / Math.max(1, ok)).toFixed(2),
    `${((100 * m.cpuS) / m.wallS).toFixed(0)}%`,
    m.peakRssMb.toFixed(0),
    m.peakPssMb.toFixed(0),
    `${m.load[0].toFixed(1)}-${m.load[1].toFixed(1)}`,
  ];
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  if (!SKIP_REF) {
    const r = spawnSync('bash', [join(ROOT, 'bench/crawl_reference.sh'), '--install-only'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('could not install img2dataset into .venv-bench');
  }
  process.stderr.write(`[bench] preparing ${DISTINCT} distinct JPEGs for ${N} URLs in ${WORK}\n`);
  const { dir, sizes, describe } = await prepareImages();
  const server = await startServer(dir);
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const list = join(WORK, 'urls.csv');
    writeFileSync(
      list,
      ['url,caption', ...Array.from({ length: N }, (_, i) => `${base}/img/${i}.jpg,image number ${i}`)].join('\n') +
        '\n',
    );
    const sourceMb = Array.from({ length: N }, (_, i) => sizes[i % sizes.length]!).reduce((a, b) => a + b, 0) / 1e6;
    const avgKb = sizes.reduce((a, b) => a + b, 0) / sizes.length / 1024;
    process.stderr.write(
      `[bench] ${N} URLs, ${sourceMb.toFixed(1)} MB (mean ${avgKb.toFixed(0)} KB/image), server on ${base}\n`,
    );

    const options = {
      allowAddresses: ['127.0.0.1'],
      imageSize: SIZE,
      resizeMode: MODE,
      encodeQuality: QUALITY,
      concurrency: CONCURRENCY,
      retries: 0,
      ...(DECODE_CONCURRENCY ? { decodeConcurrency: DECODE_CONCURRENCY } : {}),
    };
    const dataRoot = join(WORK, 'kiln-data');
    rmSync(dataRoot, { recursive: true, force: true });
    const kilnArgs = [
      fileURLToPath(new URL('./crawl-run.js', import.meta.url)),
      list,
      dataRoot,
      String(PER_SHARD),
      String(SHARD_CONCURRENCY),
      JSON.stringify(options),
    ];
    const rows = [
      [
        'round',
        'crawler',
        'images',
        'ok',
        'wall s',
        'images/s',
        'MB/s',
        'CPU s',
        'CPU ms/image',
        'CPU',
        'peak RSS MB',
        'peak PSS MB',
        'load 1m',
      ],
    ];
    const variants: [string, NodeJS.ProcessEnv][] = [['kiln', process.env]];
    if (SHARP_ROW) variants.push(['kiln, sharp only', { ...process.env, KILN_NATIVE_JPEG: '0' }]);
    if (USE_JEMALLOC)
      variants.push([
        `${SHARP_ROW ? 'kiln, sharp only' : 'kiln'} + jemalloc`,
        { ...process.env, LD_PRELOAD: JEMALLOC, ...(SHARP_ROW ? { KILN_NATIVE_JPEG: '0' } : {}) },
      ]);
    let kiln: { rows: number; success: number; counts: Record<string, number>; imagePath: string } | undefined;
    const imagePaths = new Set<string>();
    const ratios: { speed: number; cpu: number }[] = [];
    const runKiln = async (round: number): Promise<{ ips: number; cpuMs: number }> => {
      let first: { ips: number; cpuMs: number } | undefined;
      for (const [name, env] of variants) {
        rmSync(dataRoot, { recursive: true, force: true });
        process.stderr.write(`[bench] round ${round}: ${name} ...\n`);
        const m = await measured(process.execPath, kilnArgs, env);
        kiln = JSON.parse(m.stdout.trim().split('\n').pop()!) as {
          rows: number;
          success: number;
          counts: Record<string, number>;
          imagePath: string;
        };
        rows.push([String(round), ...row(name, kiln.rows, kiln.success, m, sourceMb)]);
        imagePaths.add(`${name}: ${kiln.imagePath}`);
        first ??= { ips: kiln.success / m.wallS, cpuMs: (1000 * m.cpuS) / kiln.success };
      }
      return first!;
    };
    const runReference = async (round: number): Promise<{ ips: number; cpuMs: number }> => {
      process.stderr.write(
        `[bench] round ${round}: img2dataset (${REF_PROCS} processes x ${REF_THREADS} threads) ...\n`,
      );
      const out = join(WORK, 'img2dataset-out');
      const ref = await measured(
        'bash',
        [
          join(ROOT, 'bench/crawl_reference.sh'),
          list,
          out,
          String(REF_PROCS),
          String(REF_THREADS),
          String(SIZE),
          MODE,
          String(QUALITY),
          String(PER_SHARD),
        ],
        { ...process.env, NO_ALBUMENTATIONS_UPDATE: '1', WANDB_MODE: 'disabled' },
      );
      const counted = spawnSync(
        join(ROOT, '.venv-bench/bin/python'),
        [
          '-c',
          `
import glob, json, sys, pyarrow.parquet as pq
t = [pq.read_table(p, columns=['status']) for p in glob.glob(sys.argv[1] + '/*.parquet')]
st = [s for x in t for s in x.column('status').to_pylist()]
print(json.dumps({'rows': len(st), 'success': st.count('success')}))`,
          out,
        ],
        { encoding: 'utf8' },
      );
      const refCounts = JSON.parse(counted.stdout) as { rows: number; success: number };
      rows.push([String(round), ...row('img2dataset', refCounts.rows, refCounts.success, ref, sourceMb)]);
      return { ips: refCounts.success / ref.wallS, cpuMs: (1000 * ref.cpuS) / refCounts.success };
    };
    for (let round = 1; round <= ROUNDS; round++) {
      if (SKIP_REF) {
        await runKiln(round);
        continue;
      }
      // Alternate who goes first, so that a change in machine load does not always favour one side.
      const [k, r] =
        round % 2 === 1
          ? [await runKiln(round), await runReference(round)]
          : await (async () => {
              const ref = await runReference(round);
              return [await runKiln(round), ref] as const;
            })();
      ratios.push({ speed: k.ips / r.ips, cpu: r.cpuMs / k.cpuMs });
    }
    const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor((v.length - 1) / 2)]!;
    const ratio =
      ratios.length === 0
        ? ''
        : [
            `kiln / img2dataset images/s by round: ${ratios.map((x) => `${x.speed.toFixed(2)}x`).join(', ')}` +
              (ratios.length > 1 ? ` (median ${median(ratios.map((x) => x.speed)).toFixed(2)}x)` : ''),
            `img2dataset / kiln CPU per image by round: ${ratios.map((x) => `${x.cpu.toFixed(2)}x`).join(', ')}`,
          ].join('\n');
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    const line = (r: string[]) => `| ${r.map((v, c) => v.padEnd(widths[c]!)).join(' | ')} |`;
    console.log(
      `\ncrawl benchmark: ${N} JPEGs (${describe}, mean ${avgKb.toFixed(0)} KB) from loopback -> ${SIZE} px ${MODE}, jpeg q${QUALITY}, ${PER_SHARD} rows/shard`,
    );
    console.log(line(rows[0]!));
    console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const r of rows.slice(1)) console.log(line(r));
    if (ratio) console.log(ratio);
    console.log(`kiln statuses: ${JSON.stringify(kiln?.counts)}`);
    console.log(`kiln JPEG path: ${[...imagePaths].join('; ')}`);
  } finally {
    server.stop();
  }
}

await main();
