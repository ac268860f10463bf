/** `kiln lineage copy --to <postgres://...|file>`: move this lineage store to another backend, verified on both sides. */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadConfig } from '../../infra/config.js';
import { ConfigError, MissingFileError } from '../../infra/errors.js';
import { LineageStore, isPostgresUrl } from '../../infra/lineage/store.js';
import { copyLineage } from '../../infra/lineage/copy.js';

export function registerLineageCopy(lineage: Command): void {
  lineage
    .command('copy')
    .description(
      'Copy this lineage store (KILN_LINEAGE_URL, else <data root>/lineage.db) into an empty PostgreSQL database ' +
        '(or SQLite file); verifies the chain on both sides.',
    )
    .requiredOption('--to <url>', 'target: postgres://user@host:5432/db (an empty database), or a new SQLite file path')
    .option('--from <url>', 'source instead of the configured store (a SQLite file path or postgres:// URL)')
    .option('--json', 'machine-readable output', false)
    .action((o: { to: string; from?: string; json: boolean }) => {
      const from = o.from ?? loadConfig().lineagePath;
      if (!isPostgresUrl(from) && !existsSync(from)) {
        throw new MissingFileError(
          `no lineage database at ${from}`,
          'pass --from <path of lineage.db>, or set KILN_DATA_ROOT to the data root you used.',
        );
      }
      if (!isPostgresUrl(o.to) && existsSync(o.to)) {
        throw new ConfigError(
          `the target ${o.to} already exists`,
          'copy into a new file path or an empty PostgreSQL database.',
        );
      }
      if (!isPostgresUrl(from) && !isPostgresUrl(o.to) && resolve(from) === resolve(o.to))
        throw new ConfigError('--to is the source itself', 'name another target.');
      const source = new LineageStore(from);
      try {
        const target = new LineageStore(o.to);
        try {
          const r = copyLineage(source, target);
          if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else {
            process.stdout.write(
              `copied ${Object.entries(r.tables)
                .map(([t, n]) => `${n} ${t}`)
                .join(', ')}\n`,
            );
            process.stdout.write(
              `  source ${source.path}: chain OK, ${r.source.entries} log entries, head ${r.source.head}\n`,
            );
            process.stdout.write(
              `  target ${target.path}: chain OK, ${r.target.entries} log entries, head ${r.target.head}\n`,
            );
            if (isPostgresUrl(o.to))
              process.stdout.write(`Use it: KILN_LINEAGE_URL=${target.path} (with its password)\n`);
          }
        } finally {
          target.close();
        }
      } finally {
        source.close();
      }
    });
}
