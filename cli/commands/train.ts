/**
 * `kiln run train`: start the durable train workflow (workflows/train.ts) on a dataset version and
 * wait for it: chunks of K steps with a checkpoint each, optional FID / CLIP score every N steps with
 * early stopping, the best checkpoint promoted, an HTML report. Re-running with the same `--run-name`
 * resumes that run from its newest checkpoint; the job id derives from run name + config + dataset
 * version, so the same command again attaches to, resumes or reports the same job.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../../infra/errors.js';
import { absoluteLocation } from '../../infra/location.js';
import { EVAL_DEFAULTS, referenceOf } from '../../eval/options.js';
import type { TrainingConfigInput } from '../../training/config.js';
import { resolveTrainingConfigPaths } from '../spec/training-paths.js';
import type { TrainEvalOptions } from '../../eval/options.js';
import type { TrainProgress, TrainWorkflowInput } from '../../workflows/train.js';
import { loadConfig, type KilnConfig } from '../../infra/config.js';
import { jobIdentity, type JobIdentity } from '../job-identity.js';
import { pinDatasetRef } from '../dataset-ref.js';
import { bar, runWorkflow, withRunFlags, type RunFlags } from './run.js';

interface TrainFlags extends RunFlags {
  dataset: string;
  runName?: string;
  config?: string;
  totalSteps?: number;
  chunkSteps: number;
  backend?: string;
  chunksPerRun?: number;
  heartbeatTimeout?: string;
  evalEvery?: number;
  evalSamples?: number;
  patience: number;
  minDelta: number;
  metric?: 'kid' | 'fid' | 'clip_score';
  extractorDir?: string;
  reference?: string;
  referenceMax?: number;
  clipModelDir?: string;
  samplerSteps?: number;
  guidance?: number;
  evalSeed?: number;
}

const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer.');
  return n;
};
const nonNegative = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number >= 0.');
  return n;
};

/** Read a training config file (JSON, or YAML for .yaml/.yml). */
function readConfigFile(path: string): TrainingConfigInput {
  const abs = resolve(path);
  if (!existsSync(abs))
    throw new ConfigError(
      `training config file ${abs} does not exist`,
      'pass --config <file.json|file.yaml> with fields of training/config.ts.',
    );
  const text = readFileSync(abs, 'utf8');
  try {
    const parsed = (
      ['.yaml', '.yml'].includes(extname(abs).toLowerCase()) ? parseYaml(text) : JSON.parse(text)
    ) as TrainingConfigInput;
    return resolveTrainingConfigPaths(parsed, dirname(abs));
  } catch (err) {
    throw new ConfigError(
      `training config file ${abs} does not parse: ${(err as Error).message}`,
      'fix the file (JSON or YAML object).',
    );
  }
}

/** The workflow input from the command's flags (paths made absolute: workers may run elsewhere). */
export function trainInputFromFlags(o: TrainFlags): TrainWorkflowInput {
  const config: TrainingConfigInput = o.config ? readConfigFile(o.config) : {};
  if (o.backend) config.runtime = { ...config.runtime, backend: o.backend as 'auto' };
  let evalOptions: TrainEvalOptions | undefined;
  if (o.evalEvery !== undefined) {
    if (!o.extractorDir) {
      throw new ConfigError(
        '--eval-every needs --extractor-dir',
        'name the FID feature extractor directory (extractor.json + model.onnx; see eval/architecture.md).',
      );
    }
    evalOptions = {
      everySteps: o.evalEvery,
      patience: o.patience,
      minDelta: o.minDelta,
      ...(o.metric ? { metric: o.metric } : {}),
      extractorDir: absoluteLocation(o.extractorDir),
      ...(o.reference === undefined ? {} : referenceOf(o.reference)),
      sampleCount: o.evalSamples ?? EVAL_DEFAULTS.sampleCount,
      ...(o.referenceMax !== undefined ? { referenceMaxImages: o.referenceMax } : {}),
      ...(o.clipModelDir ? { clipModelDir: absoluteLocation(o.clipModelDir) } : {}),
      ...(o.samplerSteps !== undefined ? { samplerSteps: o.samplerSteps } : {}),
      ...(o.guidance !== undefined ? { guidanceScale: o.guidance } : {}),
      ...(o.evalSeed !== undefined ? { seed: o.evalSeed } : {}),
    };
  }
  return {
    dataset: o.dataset,
    config,
    chunkSteps: o.chunkSteps,
    ...(o.runName ? { runName: o.runName } : {}),
    ...(o.totalSteps !== undefined ? { totalSteps: o.totalSteps } : {}),
    ...(o.chunksPerRun !== undefined ? { chunksPerRun: o.chunksPerRun } : {}),
    ...(o.heartbeatTimeout ? { chunkHeartbeatTimeout: o.heartbeatTimeout } : {}),
    ...(evalOptions ? { eval: evalOptions } : {}),
  };
}

/**
 * A train job's identity: its run name (or dataset), config and the dataset version it trains on
 * (`name` pinned to the newest version now), so the same command again resumes the same run.
 */
export function trainIdentity(input: TrainWorkflowInput, config: KilnConfig): JobIdentity {
  const dataset = pinDatasetRef(input.dataset ?? input.datasetManifestUri ?? '', config);
  const family = input.runName ?? (dataset.startsWith('file://') ? 'dataset' : dataset.replace('@', '-'));
  return jobIdentity(`train-${family}`, { ...input, dataset });
}

/** One status line from the workflow's `progress` query: bar, step, phase, last loss, last FID. */
export function formatTrainProgress(p: unknown): string | null {
  const t = p as TrainProgress | null;
  if (!t || !t.totalSteps) return null;
  const e = t.evals.at(-1);
  return (
    `train ${bar(t.step, t.totalSteps)} step ${t.step}/${t.totalSteps} ${t.phase}` +
    (t.lastLoss !== null ? ` · loss ${t.lastLoss.toPrecision(4)}` : '') +
    (e && e.kid != null ? ` · KID ${e.kid.toPrecision(3)}` : '') +
    (e && e.fid !== null ? ` · FID ${e.fid.toPrecision(4)} at step ${e.step}` : '') +
    (e?.failed ? ` · evaluation at step ${e.step} failed` : '')
  );
}

/** Add `train` under `kiln run`. */
export function registerTrainCommands(run: Command): void {
  withRunFlags(
    run
      .command('train')
      .description(
        'Train a PRX-recipe text-to-image model on a dataset version: checkpoints every --chunk-steps, FID + KID ' +
          'every --eval-every with early stopping (on KID below the extractor feature_dim samples, else FID), ' +
          'an HTML report. The same --run-name resumes a run.',
      )
      .requiredOption('--dataset <ref>', 'dataset version: name@vN, name (newest recorded) or a manifest file:// URI')
      .option(
        '--run-name <name>',
        'run directory under <data root>/runs/ (default: the job id); reusing it resumes that run',
      )
      .option(
        '--config <file>',
        'training config, JSON or YAML (fields of training/config.ts; defaults: the recipe + a tiny model)',
      )
      .option('--total-steps <n>', 'optimiser steps to train (default: config totalSteps, else 1000)', positiveInt)
      .option('--chunk-steps <n>', 'steps per durable chunk = checkpoint interval', positiveInt, 100)
      .option(
        '--backend <name>',
        'TensorFlow.js backend: auto, tensorflow, wasm or cpu (overrides config runtime.backend)',
      )
      .option('--chunks-per-run <n>', 'chunks per workflow run before continue-as-new', positiveInt)
      .option(
        '--heartbeat-timeout <duration>',
        "chunk heartbeat timeout, e.g. 60s: how soon a dead worker's chunk is retried",
      )
      .option(
        '--eval-every <n>',
        'evaluate every N steps (a multiple of --chunk-steps); enables FID, KID and early stopping',
        positiveInt,
      )
      .option(
        '--eval-samples <n>',
        `generated samples per evaluation (default ${EVAL_DEFAULTS.sampleCount})`,
        positiveInt,
      )
      .option(
        '--patience <n>',
        'stop after N evaluations in a row without improvement',
        positiveInt,
        EVAL_DEFAULTS.patience,
      )
      .option('--min-delta <x>', 'minimum change that counts as an improvement', nonNegative, EVAL_DEFAULTS.minDelta)
      .option(
        '--metric <name>',
        "early-stopping metric: kid, fid or clip_score (default: kid when --eval-samples is below the extractor's feature_dim, else fid)",
      )
      .option(
        '--extractor-dir <dir>',
        'FID feature extractor directory (extractor.json + model.onnx; see eval/architecture.md)',
      )
      .option(
        '--reference <ref>',
        'reference images: a dataset version (name@vN or manifest URI) or a directory of images (default: the training dataset)',
      )
      .option(
        '--reference-max <n>',
        `use at most N reference images (default ${EVAL_DEFAULTS.referenceMaxImages})`,
        positiveInt,
      )
      .option('--clip-model-dir <dir>', 'CLIP model directory for the CLIP score (needed for --metric clip_score)')
      .option(
        '--sampler-steps <n>',
        `DDIM / Euler steps per sample (default ${EVAL_DEFAULTS.samplerSteps})`,
        positiveInt,
      )
      .option('--guidance <w>', `classifier-free guidance scale (default ${EVAL_DEFAULTS.guidanceScale})`, nonNegative)
      .option('--eval-seed <n>', `noise seed of the evaluation samples (default ${EVAL_DEFAULTS.seed})`, (v) =>
        Math.trunc(nonNegative(v)),
      ),
    { derivedId: true },
  ).action(async (o: TrainFlags) => {
    if (o.metric !== undefined && o.metric !== 'kid' && o.metric !== 'fid' && o.metric !== 'clip_score')
      throw new ConfigError(`--metric ${JSON.stringify(o.metric)} is unknown`, 'use kid, fid or clip_score.');
    const input = trainInputFromFlags(o);
    process.exitCode = await runWorkflow(
      'train',
      'trainWorkflow',
      input,
      { ...o, identity: trainIdentity(input, loadConfig()) },
      formatTrainProgress,
    );
  });
}
