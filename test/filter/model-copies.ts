/**
 * Edited copies of the fixture model directories, for tests of what a captioner does with other
 * settings or a broken export. `modelCopies(prefix)` makes a temp folder before the suite and removes
 * it after; the function it returns copies a model directory there and merges fields into its JSON files.
 */
import { after, before } from 'node:test';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** JSON file (relative to the model directory) -> fields replacing that file's top-level ones (none: left as copied). */
export type JsonEdits = Record<string, Record<string, unknown>>;

/** Copies `src` to `<temp>/<name>` with `edits` applied; returns the copy's path. */
export type CopyModel = (src: string, name: string, edits?: JsonEdits) => string;

export function modelCopies(prefix: string): CopyModel {
  let tmp: string | undefined;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), prefix));
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  return (src, name, edits = {}) => {
    if (!tmp) throw new Error('modelCopies: copy models inside a test (the temp folder is made before the suite)');
    const out = join(tmp, name);
    cpSync(src, out, { recursive: true });
    for (const [file, fields] of Object.entries(edits)) {
      if (Object.keys(fields).length === 0) continue;
      const path = join(out, file);
      writeFileSync(path, JSON.stringify({ ...(JSON.parse(readFileSync(path, 'utf8')) as object), ...fields }));
    }
    return out;
  };
}
