/**
 * `kiln run filter`: CLIP-score and caption a dataset version into a new version (filterWorkflow).
 *
 *   kiln run filter --dataset web --from-version 1 --clip-model models/clip --captioner models/blip \
 *     --threshold 0.28 --batch-size 32
 */
import type { Command } from 'commander';
import { ConfigError } from '../../infra/errors.js';
import { absoluteLocation } from '../../infra/location.js';
import { checkModelDir } from '../../datasets/filter/model-dir.js';
import { selectionPolicy } from '../../datasets/filter/selection.js';
import type { FilterProgress, FilterWorkflowInput } from '../../workflows/filter.js';
import { jobIdentity, type JobIdentity } from '../job-identity.js';
import { bar, runWorkflow, withRunFlags, type RunFlags } from './run.js';

/** The options `kiln run filter` accepts (commander's camelCase names). */
export interface FilterFlags extends RunFlags {
  dataset: string;
  fromVersion: number;
  clipModel: string;
  captioner?: string;
  threshold?: number;
  keepTopFraction?: number;
  thresholdCaption?: string;
  captionPrompt?: string;
  maxNewTokens?: number;
  numBeams?: number;
  batchSize?: number;
  device?: string;
  maxConcurrentShards?: number;
  outputVersion?: number;
}

/** One status line: phase and shard pages done. */
export function formatFilterProgress(p: unknown): string | null {
  const prog = p as FilterProgress | null;
  if (!prog?.plan) return null;
  const what = prog.phase === 'score' ? 'scoring' : 'filtering';
  return `filter ${prog.plan.datasetId} ${what} ${bar(prog.nextPage, prog.pages)}  pages ${prog.nextPage}/${prog.pages}  rows scored ${prog.rowsScored}`;
}

function number(name: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n))
      throw new ConfigError(`${name} is "${v}", not a number`, `pass a number to ${name}.`);
    return n;
  };
}

/** Build the workflow input from the flags (paths made absolute, policy validated). */
export function filterInputFromFlags(o: FilterFlags): FilterWorkflowInput {
  const captionSource = o.thresholdCaption ?? 'original';
  if (captionSource !== 'original' && captionSource !== 'generated') {
    throw new ConfigError(
      `--threshold-caption is "${captionSource}"`,
      'use --threshold-caption original or generated.',
    );
  }
  const device = o.device ?? 'auto';
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda')
    throw new ConfigError(`--device is "${device}"`, 'use --device auto, cpu or cuda.');
  selectionPolicy({ threshold: o.threshold, keepTopFraction: o.keepTopFraction ?? null, captionSource });
  return {
    datasetName: o.dataset,
    sourceVersion: o.fromVersion,
    clipModelDir: absoluteLocation(o.clipModel),
    captionerModelDir: o.captioner ? absoluteLocation(o.captioner) : null,
    ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
    keepTopFraction: o.keepTopFraction ?? null,
    captionSource,
    captionPrompt: o.captionPrompt ?? null,
    ...(o.maxNewTokens !== undefined ? { maxNewTokens: o.maxNewTokens } : {}),
    ...(o.numBeams !== undefined ? { numBeams: o.numBeams } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    device,
    ...(o.maxConcurrentShards !== undefined ? { maxConcurrentShards: o.maxConcurrentShards } : {}),
    ...(o.outputVersion !== undefined ? { outputVersion: o.outputVersion } : {}),
  };
}

/** A filter job's identity: the source version and every option (model directories by path). */
export function filterIdentity(input: FilterWorkflowInput): JobIdentity {
  return jobIdentity(`filter-${input.datasetName}-v${input.sourceVersion}`, input);
}

/** Register `kiln run filter` under `kiln run`. */
export function registerFilterCommand(run: Command): void {
  withRunFlags(
    run
      .command('filter')
      .description(
        'CLIP-score and caption a dataset version into a new version: rows below the policy are marked filtered (nothing is dropped).',
      )
      .requiredOption('--dataset <name>', 'dataset name')
      .requiredOption('--from-version <n>', 'source version to filter', number('--from-version'))
      .requiredOption(
        '--clip-model <dir>',
        'CLIP model directory (Hugging Face ONNX layout: onnx/text_model.onnx, onnx/vision_model.onnx, tokenizer, preprocessor config)',
      )
      .option(
        '--captioner <dir>',
        'image-to-text model directory (ViT-GPT2-style encoder-decoder ONNX export) for caption_generated',
      )
      .option(
        '--threshold <score>',
        'keep rows with clip_score >= this (default 0.25, or none with --keep-top-fraction)',
        number('--threshold'),
      )
      .option(
        '--keep-top-fraction <f>',
        "keep the top fraction of the whole dataset by clip_score (DataComp's top 30% = 0.3)",
        number('--keep-top-fraction'),
      )
      .option('--threshold-caption <which>', 'caption the score is computed against: original | generated', 'original')
      .option('--caption-prompt <text>', 'text every generated caption starts with (decoder prefix)')
      .option('--max-new-tokens <n>', 'tokens per generated caption at most (default 30)', number('--max-new-tokens'))
      .option(
        '--num-beams <n>',
        'beams (1 = greedy; > 1 = beam search, as transformers generate(num_beams))',
        number('--num-beams'),
      )
      .option('--batch-size <n>', 'rows per model batch (default 32)', number('--batch-size'))
      .option('--device <d>', 'ONNX Runtime execution provider: auto | cpu | cuda', 'auto')
      .option('--max-concurrent-shards <n>', 'shard activities at once (default 2)', number('--max-concurrent-shards'))
      .option(
        '--output-version <n>',
        'write exactly this version (default: resume a matching one, else the next)',
        number('--output-version'),
      ),
    { derivedId: true },
  ).action(async (o: FilterFlags) => {
    const input = filterInputFromFlags(o);
    // With the in-process worker the model directories are read here: say what is missing now.
    if (!o.detach && o.worker !== false) {
      await checkModelDir(input.clipModelDir, 'clip');
      if (input.captionerModelDir) await checkModelDir(input.captionerModelDir, 'captioner');
    }
    process.exitCode = await runWorkflow(
      'filter',
      'filterWorkflow',
      input,
      { ...o, identity: filterIdentity(input) },
      formatFilterProgress,
    );
  });
}
