/** The CLI as a user runs it: help, exit codes, and `kiln run hello` starting and stopping its own server. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';
import { isPortOpen } from '../../infra/temporal/server.js';
import { freePort, tempDir } from '../helpers/env.js';

const KILN = join(PROJECT_ROOT, 'bin', 'kiln.js');

function kiln(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [KILN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
}

test('kiln --help lists the commands, environment and exit codes', () => {
  const r = kiln(['--help']);
  assert.equal(r.status, 0);
  for (const word of [
    'up',
    'worker',
    'run',
    'status',
    'lineage',
    'demo',
    'KILN_DATA_ROOT',
    'TEMPORAL_ADDRESS',
    'Exit codes',
  ]) {
    assert.ok(r.stdout.includes(word), `help mentions ${word}`);
  }
  assert.equal(kiln(['run', 'hello', '--help']).status, 0);
});

test('unknown commands and bad flags exit 2 with a hint', () => {
  const r = kiln(['frobnicate']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command/);
  assert.equal(kiln(['up', '--queues', 'kiln-nope']).status, 2);
  assert.equal(kiln(['status'], { TEMPORAL_ADDRESS: 'not-an-address' }).status, 2);
});

test(
  'kiln run hello: starts the embedded server, completes, records lineage, stops the server',
  { timeout: 180_000 },
  async () => {
    const dir = tempDir();
    try {
      const port = await freePort();
      const env = { KILN_DATA_ROOT: dir.path, TEMPORAL_ADDRESS: `127.0.0.1:${port}` };
      const r = kiln(['run', 'hello', '--message', 'from the cli', '--json'], env);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { workflowId: string; result: { greeting: { uri: string } } };
      assert.match(out.workflowId, /^hello-/);
      assert.match(r.stderr, /started embedded Temporal dev server/);
      assert.match(r.stderr, /stopped the embedded Temporal dev server/);
      assert.equal(await isPortOpen(`127.0.0.1:${port}`), false, 'what the CLI started, it stopped');
      const show = kiln(['lineage', 'show', out.workflowId, '--json'], env);
      assert.equal(show.status, 0, show.stderr);
      const shown = JSON.parse(show.stdout) as { job: { status: string }; runs: unknown[] };
      assert.equal(shown.job.status, 'completed');
      assert.equal(shown.runs.length, 2);
      // No server runs now: `kiln status` starts the embedded one on the same database (so jobs a dead
      // CLI left behind show up), lists the finished job, and stops what it started.
      const status = kiln(['status'], env);
      assert.equal(status.status, 0, status.stderr);
      assert.match(status.stdout, new RegExp(`COMPLETED\\s+helloWorkflow\\s+\\S+\\s+${out.workflowId}`));
      assert.equal(await isPortOpen(`127.0.0.1:${port}`), false, 'kiln status stopped the server it started');
    } finally {
      dir.cleanup();
    }
  },
);
