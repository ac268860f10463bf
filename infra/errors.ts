/**
 * Kiln's typed error hierarchy. Every error has a stable `code` (callers match on it, never on
 * message text) and a `fix` telling the user what to do. The class name is kept as `name`, which
 * Temporal uses as the failure type (so `nonRetryableErrorTypes` can match it).
 */
export class KilnError extends Error {
  readonly code: string;
  readonly fix: string;
  constructor(code: string, problem: string, fix: string, options?: { cause?: unknown }) {
    super(`${problem}\nFix: ${fix}`, options);
    this.name = new.target.name;
    this.code = code;
    this.fix = fix;
  }
}

/** A user-supplied name or path that would escape the data root or is malformed. */
export class UnsafePathError extends KilnError {
  constructor(problem: string) {
    super('KILN_UNSAFE_PATH', problem, 'use a plain name made of letters, digits, ".", "_" and "-" (no "/", "..", NUL or absolute paths).');
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
    super('KILN_ARTIFACT_CONFLICT', `artifact ${uri} is recorded with sha256 ${recorded} but now has ${actual}`,
      'artifacts are immutable: write a new dataset version or run id instead of overwriting an old one.');
  }
}

/** A required file (model, binary, input) is missing. */
export class MissingFileError extends KilnError {
  constructor(problem: string, fix: string) {
    super('KILN_MISSING_FILE', problem, fix);
  }
}

/** The Temporal server cannot be reached or started. */
export class TemporalUnavailableError extends KilnError {
  constructor(problem: string, fix: string, options?: { cause?: unknown }) {
    super('KILN_TEMPORAL_UNAVAILABLE', problem, fix, options);
  }
}
