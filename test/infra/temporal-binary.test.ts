import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findTemporalBinary } from '../../infra/temporal/binary.js';
import { MissingFileError } from '../../infra/errors.js';
import { TASK_QUEUES } from '../../infra/constants.js';
import { IO_QUEUE, GPU_QUEUE } from '../../workflows/queues.js';
import { tempDir } from '../helpers/env.js';

function fakeBinary(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, 'temporal');
  writeFileSync(p, '#!/bin/sh\n');
  chmodSync(p, 0o755);
  return p;
}

test('an explicit binary wins, then PATH, then the project .venv', () => {
  const d = tempDir();
  try {
    const explicit = fakeBinary(join(d.path, 'explicit'));
    const onPath = fakeBinary(join(d.path, 'path'));
    const local = fakeBinary(join(d.path, 'proj', '.venv', 'bin'));
    const projectRoot = join(d.path, 'proj');
    assert.equal(findTemporalBinary({ explicit, pathEnv: join(d.path, 'path'), projectRoot }), explicit);
    assert.equal(findTemporalBinary({ explicit: '', pathEnv: join(d.path, 'path'), projectRoot }), onPath);
    assert.equal(findTemporalBinary({ explicit: '', pathEnv: join(d.path, 'nothing'), projectRoot }), local);
  } finally {
    d.cleanup();
  }
});

test('no binary anywhere: a MissingFileError that says how to get one', () => {
  const d = tempDir();
  try {
    assert.throws(
      () => findTemporalBinary({ explicit: '', pathEnv: d.path, projectRoot: d.path }),
      (err: unknown) =>
        err instanceof MissingFileError && /npm run setup/.test(err.message) && /KILN_TEMPORAL_BIN/.test(err.message),
    );
    assert.throws(() => findTemporalBinary({ explicit: join(d.path, 'nope') }), /not an executable file/);
  } finally {
    d.cleanup();
  }
});

test('workflow-side queue names agree with infra constants', () => {
  assert.equal(IO_QUEUE, TASK_QUEUES.io);
  assert.equal(GPU_QUEUE, TASK_QUEUES.gpu);
});
