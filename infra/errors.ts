/**
 * Kiln's typed error hierarchy. Every error has a stable `code` (callers match on it, never on
 * message text), a `fix` telling the user what to do, and `retryable`: whether running the same
 * thing again can succeed. A KilnError names a problem with the input, the config, the files or the
 * data, which a retry cannot fix, so `retryable` is false unless a class says otherwise; a subclass
 * inherits its parent's. Activities hand errors to Temporal through `activities/failures.ts`
 * (non-retryable ones as non-retryable failures, named after the class, with the code), and the
 * CLI's exit code comes from the code (`cli/exit-codes.ts`).
 */
export class KilnError extends Error {
  readonly code: string;
  readonly fix: string;
  readonly retryable: boolean;
  constructor(code: string, problem: string, fix: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(`${problem}\nFix: ${fix}`, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.fix = fix;
    this.retryable = options?.retryable ?? false;
  }
}

/** A user-supplied name or path that would escape the data root or is malformed. */
export class UnsafePathError extends KilnError {
  constructor(problem: string) {
    super(
      'KILN_UNSAFE_PATH',
      problem,
      'use a plain name made of letters, digits, ".", "_" and "-" (no "/", "..", NUL or absolute paths).',
    );
  }
}

/** Bad configuration (env var, flag, spec field). */
export class ConfigError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_CONFIG', problem, fix);
  }
}

/** An artifact URI that exists with different content than an immutable record says. */
export class ArtifactConflictError extends KilnError {
  constructor(uri: string, recorded: string, actual: string) {
    super(
      'KILN_ARTIFACT_CONFLICT',
      `artifact ${uri} is recorded with sha256 ${recorded} but now has ${actual}`,
      'artifacts are immutable: write a new dataset version or run id instead of overwriting an old one.',
    );
  }
}

/** A required file (model, binary, input) is missing. */
export class MissingFileError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_MISSING_FILE', problem, fix);
  }
}

/** The Temporal server cannot be reached or started (retryable: a server may answer later). */
export class TemporalUnavailableError extends KilnError {
  constructor(problem: string, fix: string, options?: { cause?: unknown }) {
    super('KILN_TEMPORAL_UNAVAILABLE', problem, fix, { ...options, retryable: true });
  }
}
