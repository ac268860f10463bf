/**
 * The activity retry policy every stage workflow uses: quick exponential backoff capped at a minute.
 * Which errors are not retried is decided by the errors themselves: a KilnError that a retry cannot
 * fix reaches Temporal as a non-retryable failure (activities/failures.ts), so no list of class
 * names lives here.
 */
import { ApplicationFailure, type RetryPolicy } from '@temporalio/workflow';

export function stageRetryPolicy(opts: { maximumAttempts: number }): RetryPolicy {
  return {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: opts.maximumAttempts,
  };
}

/**
 * A non-retryable failure raised by workflow code itself, shaped like an activity's KilnError
 * failure (type = the error class name, first detail = { code, fix }) so the CLI maps it to the same
 * exit code (`KILN_CONFIG` -> 2).
 */
export function kilnFailure(type: string, code: string, message: string, fix: string): ApplicationFailure {
  return ApplicationFailure.create({
    message: `${message}\nFix: ${fix}`,
    type,
    nonRetryable: true,
    details: [{ code, fix }],
  });
}
