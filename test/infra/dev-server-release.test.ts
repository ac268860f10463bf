/**
 * The embedded dev server is never started on a database file another process still has open
 * (after `kill -9` of a kiln process its server exits seconds after closing its port; a rerun at
 * once must not run a second server on the same SQLite file): it waits, and after the release
 * timeout says which process holds the file and what to do. Real server, real processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TemporalUnavailableError } from '../../infra/errors.js';
import { isPortOpen, processesWithFileOpen, startDevServer } from '../../infra/temporal/server.js';
import { freePort, tempDir } from '../helpers/env.js';

test('startDevServer waits for the database file to be released, and names the process that keeps it', async () => {
  const tmp = tempDir('kiln-devrelease-');
  const dataRoot = join(tmp.path, 'data');
  const dbFile = join(dataRoot, 'temporal', 'temporal.db');
  mkdirSync(join(dataRoot, 'temporal'), { recursive: true });
  writeFileSync(dbFile, '');
  // A process holding the database open, as an earlier server that is still shutting down does.
  const holder = spawn('/bin/sh', ['-c', 'exec 3<"$0"; echo open; exec sleep 60', dbFile], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = new Promise((r) => holder.once('exit', r));
  try {
    await new Promise((r) => holder.stdout.once('data', r));
    assert.deepEqual(
      processesWithFileOpen(dbFile).map((p) => p.pid),
      [holder.pid],
    );
    const address = `127.0.0.1:${await freePort()}`;
    await assert.rejects(
      startDevServer({ address, namespace: 'default', dataRoot, releaseTimeoutMs: 500 }),
      (err: unknown) =>
        err instanceof TemporalUnavailableError &&
        err.message.includes(`still open in pid ${holder.pid} `) &&
        /Fix: .*kill \d+/.test(err.message),
    );
    assert.equal(await isPortOpen(address), false, 'no second server was started on the file');

    holder.kill('SIGKILL');
    await exited;
    rmSync(dbFile); // the placeholder is no database; the server makes its own
    const server = await startDevServer({ address, namespace: 'default', dataRoot, releaseTimeoutMs: 5000 });
    try {
      assert.equal(await isPortOpen(address), true);
    } finally {
      await server.stop();
    }
  } finally {
    holder.kill('SIGKILL');
    tmp.cleanup();
  }
});
