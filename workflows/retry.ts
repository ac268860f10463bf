/**
 * The activity retry policy every stage workflow uses: quick exponential backoff capped at a minute,
 * and no retry for errors a retry cannot fix (bad input or config, unsafe paths, missing or changed
 * files, immutable-artifact conflicts), plus each stage's own such errors.
 */
import type { RetryPolicy } from '@temporalio/workflow';

/** Error types (KilnError subclasses' names) that no stage retries. */
export const NON_RETRYABLE_ERRORS = ['ConfigError', 'UnsafePathError', 'MissingFileError', 'InvalidManifestError', 'ArtifactConflictError'] as const;

export function stageRetryPolicy(opts: { maximumAttempts: number; nonRetryable?: readonly string[] }): RetryPolicy {
  return {
    initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: opts.maximumAttempts,
    nonRetryableErrorTypes: [...NON_RETRYABLE_ERRORS, ...(opts.nonRetryable ?? [])],
  };
}
