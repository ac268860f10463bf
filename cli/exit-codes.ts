/** Exit codes scripts can rely on (documented in `kiln --help` and the README). */
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

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    the job failed (see its error; failed rows inside a successful job are data, not failure)
  2    usage or configuration error (bad flag, env var, spec field, unsafe name)
  3    Temporal unavailable (no server answers and none could be started)
  4    a required file is missing (model directory, input list, temporal binary)
  130  interrupted`;
