/**
 * `kiln demo`: the main job. Serves a synthetic local "web" of captioned images (faults included)
 * on loopback, writes its URL list and a pipeline spec under <data root>/demo/, and runs the whole
 * pipeline with the tiny test models: crawl -> CLIP filter + recaption -> train with FID + KID every N
 * steps until early stopping. Ends by printing where the report is and a short summary.
 */
import type { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ensureDataRoot, loadConfig, PROJECT_ROOT } from '../../infra/config.js';
import { openStorage } from '../../infra/storage-open.js';
import { startSyntheticWeb } from '../../demo/synthetic-web.js';
import { loadSpec } from '../spec/load.js';
import { pipelineInputFromSpec } from '../spec/to-input.js';
import { runWorkflow } from './run.js';
import { formatPipelineProgress } from './pipeline.js';
import type { PipelineResult } from '../../workflows/pipeline.js';

export interface DemoOptions {
  images: number;
  steps: number;
  json: boolean;
}

/** Prompts from the synthetic web's own caption space, so samples can be judged against them. */
const DEMO_PROMPTS = [
  'a red circle on a blue background',
  'a yellow square on a black background',
  'a green triangle on a white background',
  'a purple ring on a orange background',
  'a blue square on a yellow background',
  'a white circle on a green background',
  'a orange triangle on a purple background',
  'a black ring on a red background',
];

/** The demo spec: small enough to finish in minutes on 2 cores. */
export function demoSpec(o: { urlList: string; steps: number }): Record<string, unknown> {
  const fixtures = join(PROJECT_ROOT, 'fixtures');
  return {
    version: 1,
    name: 'demo-web',
    sources: [{ path: o.urlList }],
    crawl: {
      rows_per_shard: 48,
      image_size: 32,
      resize_mode: 'center_crop',
      retries: 2,
      timeout_ms: 5000,
      allow_addresses: ['127.0.0.1'],
    },
    filter: {
      clip_model: join(fixtures, 'models', 'clip-tiny'),
      captioner_model: join(fixtures, 'models', 'vit-gpt2-tiny'),
      keep_top_fraction: 0.8,
      max_new_tokens: 12,
      batch_size: 16,
    },
    train: {
      run_name: 'demo-run',
      total_steps: o.steps,
      chunk_steps: 20,
      config: { resolution: 32, seed: 7, optim: { lr: 1e-3, microBatchSize: 8 }, runtime: { backend: 'auto' } },
    },
    eval: {
      every_steps: 20,
      extractor: join(fixtures, 'eval', 'fid-tiny'),
      sample_count: 16,
      patience: 3,
      min_delta: 0.002,
      prompts: DEMO_PROMPTS,
    },
  };
}

/**
 * The few lines a user wants at the end: what was made, where the report is (a local path, or the
 * s3:// URI when the data root is in object storage), what to run next.
 */
export function demoSummary(r: PipelineResult, dataRoot: string): string {
  const stage = (n: string) => r.stages.find((s) => s.stage === n)?.result as Record<string, unknown> | undefined;
  const crawl = stage('crawl');
  const filter = stage('filter');
  const train = stage('train');
  const counts = (crawl?.countsByStatus ?? {}) as Record<string, number>;
  const lines = [
    '',
    `Kiln demo finished (job ${r.jobId}).`,
    `  crawl:  ${crawl?.rows} rows -> ${crawl?.datasetId}: ${Object.entries(counts)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}`,
    `  filter: ${filter?.datasetId}: ${filter?.kept} kept, ${filter?.filtered} filtered by CLIP score ` +
      `(cutoff ${Number(filter?.topFractionCutoff).toFixed(4)}), ${filter?.failed} failed rows carried`,
    `  train:  ${train?.finalStep} steps (${train?.status}); best ${String(train?.metric ?? 'fid').toUpperCase()} ` +
      `${Number(train?.bestValue ?? train?.bestFid).toPrecision(4)} at step ${train?.bestStep}; ${train?.stopReason}`,
    '',
    `Report:  ${train?.reportUri ? openStorage(dataRoot).displayLocation(String(train.reportUri)) : '(none)'}`,
    `Data:    ${dataRoot}`,
    `Next:    kiln lineage trace ${filter?.datasetId ?? crawl?.datasetId}   |   kiln lineage verify   |   kiln lineage show ${r.jobId}`,
    '',
  ];
  return lines.join('\n');
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'Run the whole pipeline end to end on a synthetic local web with the tiny test models: crawl, CLIP filter + ' +
        'recaption, train with FID + KID every 20 steps until early stopping (on KID: 16 samples < 64 feature dims). ' +
        'Prints where the report is.',
    )
    .option('--images <n>', 'images on the synthetic web', (v) => Number(v), 144)
    .option('--steps <n>', 'maximum training steps (early stopping usually ends sooner)', (v) => Number(v), 400)
    .option('--json', 'print machine-readable JSON on stdout', false)
    .action(async (o: DemoOptions) => {
      const config = loadConfig();
      ensureDataRoot(config);
      const dir = join(config.localRoot, 'demo');
      mkdirSync(dir, { recursive: true });
      const web = await startSyntheticWeb({ count: o.images, seed: 1 });
      try {
        const urlList = join(dir, 'urls.csv');
        writeFileSync(urlList, web.urlListCsv());
        const specPath = join(dir, 'pipeline.yaml');
        writeFileSync(
          specPath,
          `# Written by \`kiln demo\`; the synthetic web it points at lives only while the demo runs.\n${stringify(demoSpec({ urlList, steps: o.steps }))}`,
        );
        process.stderr.write(
          `kiln demo: synthetic web of ${o.images} captioned images at ${web.baseUrl}; spec ${specPath}\n`,
        );
        process.exitCode = await runWorkflow(
          'demo',
          'pipelineWorkflow',
          pipelineInputFromSpec(loadSpec(specPath)),
          {
            json: o.json,
            quiet: !o.json,
            onResult: (r) => process.stdout.write(demoSummary(r as PipelineResult, config.dataRoot)),
          },
          formatPipelineProgress,
        );
      } finally {
        await web.close();
      }
    });
}
