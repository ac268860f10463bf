/**
 * Typed errors decide retries, in this one place. Every activity factory returns its activities
 * through `temporalFailures`, so an error an activity throws reaches Temporal like this:
 * - a KilnError: an ApplicationFailure named after its class, with the same message, its `code` and
 *   `fix` as details, and non-retryable unless the error is `retryable` (infra/errors.ts). A subclass
 *   (StaleDecoderSplitError extends ConfigError) behaves like its parent, since no list of class
 *   names is matched anywhere.
 * - anything else (a system error, a network error): unchanged, so the workflow's retry policy
 *   retries it.
 * Outside an activity (the CLI or a test calling the function directly) errors pass unchanged.
 */
import { ApplicationFailure } from '@temporalio/common';
import { KilnError } from '../infra/errors.js';
import { activityContext } from './run-lifecycle.js';

/** What a KilnError's failure carries as its first detail (the CLI maps `code` to an exit code). */
export interface KilnFailureDetails {
  code: string;
  fix: string;
}

/** The failure Temporal should see for `err` (KilnErrors only; other errors are returned as they are). */
export function temporalFailureOf(err: unknown): unknown {
  if (!(err instanceof KilnError)) return err;
  const details: KilnFailureDetails = { code: err.code, fix: err.fix };
  const failure = ApplicationFailure.create({
    message: err.message,
    type: err.name,
    nonRetryable: !err.retryable,
    details: [details],
  });
  failure.stack = err.stack ?? failure.stack;
  return failure;
}

/** `activities` with every function's KilnErrors turned into Temporal failures (see the module comment). */
export function temporalFailures<T extends object>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] =
      typeof fn !== 'function'
        ? fn
        : async (...args: unknown[]) => {
            try {
              return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
            } catch (err) {
              throw activityContext() ? temporalFailureOf(err) : err;
            }
          };
  }
  return wrapped as T;
}
