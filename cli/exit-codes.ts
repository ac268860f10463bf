/**
 * Exit codes scripts can rely on (documented in `kiln --help` and the README), and the one mapping
 * from an error to its exit code: by the KilnError `code`, whether the error was thrown here or came
 * back from a workflow (a KilnError's failure carries its code, activities/failures.ts), so a
 * subclass exits like its parent.
 */
import { KilnError } from '../infra/errors.js';

export const EXIT = {
  ok: 0,
  /** The job ran and failed (workflow failure, failed rows do NOT count). */
  jobFailed: 1,
  /** Bad command line, config or spec. */
  usage: 2,
  /** Temporal could not be reached or started. */
  temporalUnavailable: 3,
  /** A required file (model, input, binary) is missing. */
  missingFile: 4,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;

/** Exit code by KilnError code; every other error (or code) is a failed job. */
const EXIT_BY_CODE: Readonly<Record<string, number>> = {
  KILN_CONFIG: EXIT.usage,
  KILN_UNSAFE_PATH: EXIT.usage,
  KILN_INVALID_MANIFEST: EXIT.usage,
  KILN_MISSING_FILE: EXIT.missingFile,
  KILN_TEMPORAL_UNAVAILABLE: EXIT.temporalUnavailable,
};

/** The KilnError code of `err` or of the innermost cause that has one (a Temporal failure's first detail). */
export function kilnErrorCode(err: unknown): string | undefined {
  let code: string | undefined;
  const seen = new Set<unknown>();
  for (let e = err; e && typeof e === 'object' && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    if (e instanceof KilnError) code = e.code;
    const detail = (e as { details?: unknown }).details;
    const first = Array.isArray(detail) ? (detail[0] as { code?: unknown } | undefined) : undefined;
    if (typeof first?.code === 'string') code = first.code;
  }
  return code;
}

/** The exit code for an error thrown by a command or a job's failure (a user error inside a workflow is still a usage error). */
export function exitCodeOf(err: unknown): number {
  const code = kilnErrorCode(err);
  return (code !== undefined ? EXIT_BY_CODE[code] : undefined) ?? EXIT.jobFailed;
}

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    the job failed (see its error; failed rows inside a successful job are data, not failure)
  2    usage or configuration error (bad flag, env var, spec field, unsafe name, invalid manifest)
  3    Temporal unavailable (no server answers and none could be started)
  4    a required file is missing (model directory, input list, temporal binary)
  130  interrupted`;
