/**
 * The run report renders from a plain JSON object, writes atomically with its sample grids beside
 * it, and references nothing outside its own directory.
 * Set KILN_KEEP_REPORT=<dir> to keep the rendered report there (to open it in a browser).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { LocalStorage } from '../../infra/storage.js';
import { learningRateAt } from '../../training/lr-schedule.js';
import { earlyStoppingDecision } from '../../eval/early-stopping.js';
import { DEFAULT_EVAL_PROMPTS } from '../../eval/eval-samples.js';
import type { RgbImage } from '../../eval/clean-resize.js';
import { renderRunReport, writeRunReport, type RunReportInput } from '../../eval/report.js';
import { writeSampleGrid } from '../../eval/sample-grid.js';
import { seededRandom } from './helpers.js';

/** Synthetic "samples" that get less noisy with training step (so the grids visibly differ). */
function fakeSamples(step: number, n: number, size: number): RgbImage[] {
  const rnd = seededRandom(step);
  const noise = Math.max(10, 120 - step / 100);
  return Array.from({ length: n }, (_, k) => {
    const data = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const o = (y * size + x) * 3;
        const disc = (x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2;
        const base = [disc ? 230 : 40 + k * 12, (y * 255) / size, disc ? 60 + k * 10 : (x * 255) / size];
        for (let c = 0; c < 3; c++)
          data[o + c] = Math.max(0, Math.min(255, Math.round(base[c]! + noise * rnd.normal())));
      }
    return { width: size, height: size, data };
  });
}

const TOTAL = 12000;
const LR = { totalSteps: TOTAL, peak: 1e-4, minLr: 1e-6, warmupFraction: 0.1, constantFraction: 0.6 };
const SHA = (c: string) => c.repeat(64);

async function buildReport(storage: LocalStorage, reportDir: string): Promise<RunReportInput> {
  const rnd = seededRandom(3);
  const training = Array.from({ length: TOTAL / 10 }, (_, i) => {
    const step = i * 10;
    const spike = step > 4200 && step < 4300 ? 0.35 : 0;
    return {
      step,
      loss: 0.08 + 0.5 * Math.exp(-step / 1500) + 0.015 * rnd.normal() + spike,
      lr: learningRateAt(step, LR),
      lrTextEncoder: learningRateAt(step, { ...LR, peak: 1e-5 }),
    };
  });
  const fids: [number, number | null, number][] = [
    [2000, 182.4, 0.19],
    [4000, 121.7, 0.22],
    [6000, 96.3, 0.245],
    [8000, 97.1, 0.251],
    [10000, 98.8, 0.249],
    [12000, 96.9, 0.252],
  ];
  const prompts = DEFAULT_EVAL_PROMPTS.slice(0, 8).concat(['a <script>alert(1)</script> & "quoted" prompt']);
  const evaluations = [];
  for (const [step, fid, clip] of fids) {
    const grid = await writeSampleGrid(storage, reportDir, step, fakeSamples(step, 9, 32), { cell: 96 });
    evaluations.push({
      step,
      fid,
      clipScore: clip,
      sampleGrid: grid.relativePath,
      samplePrompts: prompts,
      protocol: {
        extractor: 'inception-v3 (TF 2015-12-05, ONNX)',
        extractorSha256: SHA('a'),
        sampleCount: step === 2000 ? 500 : 1000,
        seed: 42,
        referenceStatsSha256: SHA('b'),
        referenceSet: 'coco-val2014-5k',
        sampler: 'ddim, 50 steps, guidance 4.5',
      },
    });
  }
  const decision = earlyStoppingDecision(
    evaluations.map((e) => ({ step: e.step, fid: e.fid, clipScore: e.clipScore })),
    { metric: 'fid', patience: 3 },
  );
  return {
    runId: 'run-2024-06-11-prx-tiny',
    title: 'PRX tiny: pixel-space DiT on cc3m-subset v2',
    generatedAt: '2024-06-11T12:00:00Z',
    status: decision.stop ? 'stopped early' : 'running',
    summary: {
      dataset: 'cc3m-subset v2 (filtered, clip >= 0.25)',
      model: 'DiT 6 x 256, patch 2, 12.3M params',
      backend: 'tensorflow (tfjs-node)',
      'effective batch': 2048,
      'prx weight': 0.01,
    },
    training,
    evaluations,
    earlyStopping: decision,
    lineage: {
      run: { id: 'run-2024-06-11-prx-tiny', code_version: 'git:1a2b3c4', config_sha256: SHA('c') },
      datasets: [
        { id: 'cc3m-subset', version: 1, rows: 120000, sha256: SHA('d'), parents: [] },
        {
          id: 'cc3m-subset',
          version: 2,
          rows: 81234,
          sha256: SHA('e'),
          parents: ['cc3m-subset@1'],
          params: 'clip >= 0.25, recaption blip',
        },
      ],
      checkpoints: { best: 6000, kept: [6000, 12000] },
    },
  };
}

void test('run report: renders every section, writes atomically, references only files beside it', async () => {
  const keep = process.env.KILN_KEEP_REPORT;
  const root = keep ?? mkdtempSync(join(tmpdir(), 'kiln-report-'));
  try {
    const storage = new LocalStorage(root);
    const reportDir = storage.uri('runs', 'run-2024-06-11-prx-tiny', 'report');
    const input = await buildReport(storage, reportDir);
    // Plain JSON in, same HTML out (a pure function of its input).
    assert.equal(renderRunReport(JSON.parse(JSON.stringify(input)) as RunReportInput), renderRunReport(input));
    const written = await writeRunReport(storage, reportDir, input);
    const path = storage.localPath(written.uri);
    const html = readFileSync(path, 'utf8');
    assert.equal(written.bytes, Buffer.byteLength(html));
    assert.equal((html.match(/<svg /g) ?? []).length, 5, 'loss, LR, KID, FID and CLIP charts');
    assert.match(html, /FID noise is not estimated per evaluation/, 'the noise of the stopping metric is stated');
    assert.match(html, /Early stopping: stop/);
    assert.match(html, /keep the checkpoint at step 6000/);
    assert.equal((html.match(/<tr class="best/g) ?? []).length, 1, 'one best row');
    assert.equal(
      (html.match(/protocol differs/g) ?? []).length,
      1,
      'the 500-sample evaluation is flagged as not comparable',
    );
    assert.ok(!html.includes('<script>'), 'prompt text is escaped');
    assert.ok(html.includes('&lt;script&gt;'));
    assert.match(html, /cc3m-subset@1/);
    // Nothing external: only relative sample-grid images, no scripts, no remote URLs.
    const srcs = [...html.matchAll(/src="([^"]+)"/g)].map((m) => m[1]!);
    assert.equal(srcs.length, 6);
    for (const src of srcs) {
      assert.match(src, /^samples\/step-\d{9}\.png$/);
      const png = join(dirname(path), src);
      assert.ok(existsSync(png), src);
      const meta = await sharp(png).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['png', 4 + 3 * 100, 4 + 3 * 100]);
    }
    assert.ok(!/https?:\/\/(?!www\.w3\.org\/2000\/svg)/.test(html), 'no remote references');
    if (keep) console.log(`report kept at ${path}`);
  } finally {
    if (!keep) rmSync(root, { recursive: true, force: true });
  }
});

void test('run report on KID: states the noise at the sample count, flags failed evaluations, shows the protocol', () => {
  const protocol = {
    extractor: 'inception',
    extractorSha256: SHA('a'),
    sampleCount: 256,
    seed: 0,
    referenceStatsSha256: SHA('b'),
    featureDim: 2048,
    metric: 'kid',
    resize:
      'reference: decoded and resized to 64x64 as training does; samples at 64x64; both clean-fid "clean" resize to 299x299',
    kid: 'unbiased MMD², 1 subset(s) of 256',
  };
  const kidParts = {
    noiseStd: 0.0012,
    noiseMethod: 'jackknife over the 256 generated samples, reference fixed (5000 rows)',
  };
  const evaluations = [
    { step: 100, fid: 150, kid: 0.05, kidParts, clipScore: null, protocol },
    { step: 200, fid: 140, kid: 0.04, kidParts, clipScore: null, protocol },
    { step: 300, fid: null, kid: null, kidParts: null, clipScore: null, failed: 'KID not finite', protocol },
  ];
  const decision = earlyStoppingDecision(evaluations, { metric: 'kid', patience: 1, minDelta: 0.001 });
  assert.equal(decision.stop, true, decision.reason);
  const html = renderRunReport({ runId: 'r', generatedAt: 'now', training: [], evaluations, earlyStopping: decision });
  assert.match(html, /Metric KID \(lower is better\)/);
  assert.match(
    html,
    /KID noise at 256 samples: std ≲ 0\.0012 between evaluations of the same model \(jackknife over the 256 generated samples, reference fixed/,
  );
  assert.match(html, /min_delta 0\.001 is below twice the noise \(0\.0024\)/);
  assert.match(html, /Failed evaluations \(1\) count as no improvement/);
  assert.match(html, /<span class="pill warn" title="KID not finite">failed<\/span>/);
  assert.match(html, /both clean-fid &quot;clean&quot; resize to 299x299/);
  assert.match(html, /± 0\.0012/);
});

void test('run report renders an empty run without errors', () => {
  const html = renderRunReport({ runId: 'r', generatedAt: 'now', training: [], evaluations: [] });
  assert.match(html, /no data yet/);
  assert.match(html, /No evaluations yet/);
});
