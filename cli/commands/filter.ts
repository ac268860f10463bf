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
  captionCandidates?: number;
  captionCandidatesFrom?: string;
  captionCandidatesSeed?: number;
  captionCandidatesTemperature?: number;
  captionCandidatesTopP?: number;
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

/** `--caption-candidates` and its sampling flags -> the workflow's captionCandidates (absent when not set). */
function captionCandidatesFromFlags(o: FilterFlags): Pick<FilterWorkflowInput, 'captionCandidates'> {
  const sampling = [
    ['--caption-candidates-seed', o.captionCandidatesSeed, 'seed'],
    ['--caption-candidates-temperature', o.captionCandidatesTemperature, 'temperature'],
    ['--caption-candidates-top-p', o.captionCandidatesTopP, 'topP'],
  ] as const;
  const given = sampling.filter(([, v]) => v !== undefined);
  if (o.captionCandidates === undefined) {
    const stray = [
      ...(o.captionCandidatesFrom !== undefined ? ['--caption-candidates-from'] : []),
      ...given.map(([f]) => f),
    ];
    if (stray.length > 0)
      throw new ConfigError(
        `${stray.join(', ')} given without --caption-candidates`,
        'add --caption-candidates <n> (e.g. 4) to turn CLIP reranking on, or remove them.',
      );
    return {};
  }
  const count = o.captionCandidates;
  if (!Number.isInteger(count) || count < 1 || count > 16)
    throw new ConfigError(
      `--caption-candidates is ${count}`,
      'pass an integer from 1 to 16 (candidate captions per image).',
    );
  if (!o.captioner)
    throw new ConfigError(
      '--caption-candidates is set but no --captioner was given, so there are no candidate captions to rerank',
      'add --captioner <dir>, or remove --caption-candidates.',
    );
  const from = o.captionCandidatesFrom ?? 'beams';
  if (from !== 'beams' && from !== 'sampling')
    throw new ConfigError(`--caption-candidates-from is "${from}"`, 'use --caption-candidates-from beams or sampling.');
  if (from === 'beams' && given.length > 0)
    throw new ConfigError(
      `${given.map(([f]) => f).join(', ')} ${given.length > 1 ? 'apply' : 'applies'} only to sampled candidates`,
      'add --caption-candidates-from sampling, or remove them (beam search has no randomness).',
    );
  return {
    captionCandidates: {
      count,
      select: 'clip',
      ...(o.captionCandidatesFrom !== undefined ? { from } : {}),
      ...Object.fromEntries(given.map(([, v, k]) => [k, v])),
    },
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
    ...captionCandidatesFromFlags(o),
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
      .option(
        '--caption-candidates <n>',
        'CLIP reranking: candidate captions per image (1-16), the highest CLIP score kept as caption_generated (needs --captioner; --num-beams defaults to n)',
        number('--caption-candidates'),
      )
      .option('--caption-candidates-from <how>', "beams (default: beam search's best) | sampling (seeded samples)")
      .option('--caption-candidates-seed <n>', 'sampling: seed (default 0)', number('--caption-candidates-seed'))
      .option(
        '--caption-candidates-temperature <t>',
        'sampling: temperature > 0 (default 1.0)',
        number('--caption-candidates-temperature'),
      )
      .option(
        '--caption-candidates-top-p <p>',
        'sampling: nucleus top_p in (0, 1] (default 1.0)',
        number('--caption-candidates-top-p'),
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
