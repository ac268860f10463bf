/**
 * Training's errors: each has a stable `code` and a `fix`. None is retryable (a KilnError's default:
 * retrying cannot fix the data, the config or a diverged run), so an activity that throws one fails
 * its workflow at once (activities/failures.ts); the fix says what to change before running again.
 */
import { KilnError } from '../infra/errors.js';

/** No trainable rows: no shards, or no `success` rows with an image in any shard. */
export class EmptyDatasetError extends KilnError {
  constructor(problem: string) {
    super(
      'KILN_EMPTY_DATASET',
      problem,
      'train on a dataset version that has rows with status "success" and a jpg (check its stats.json); re-run the crawl or loosen the filter.',
    );
  }
}

/** The configured model + batch would not fit in the memory budget. */
export class ModelTooLargeError extends KilnError {
  constructor(problem: string) {
    super(
      'KILN_MODEL_TOO_LARGE',
      problem,
      'reduce denoiser.width/depth, textEncoder.width/depth, resolution or optim.microBatchSize (raise ' +
        'optim.gradAccumSteps to keep the effective batch), or raise runtime.memoryLimitBytes if the ' +
        'machine has the memory.',
    );
  }
}

/** The loss (or gradient norm) became NaN or infinite; no checkpoint was written for this chunk. */
export class NonFiniteLossError extends KilnError {
  readonly step: number;
  constructor(step: number, what: string, lastGoodCheckpoint: string | null) {
    super(
      'KILN_NON_FINITE_LOSS',
      `training diverged at step ${step}: ${what}; the last good checkpoint ${lastGoodCheckpoint ?? '(none: the run had not checkpointed yet)'} is kept`,
      'lower optim.lr (or lengthen warmup), keep optim.gradClip at 1.0, check the data for broken images, and resume from the last good checkpoint.',
    );
    this.step = step;
  }
}

/** A checkpoint is missing, unreadable, or does not match the run's config. */
export class CheckpointError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_CHECKPOINT', problem, fix);
  }
}
