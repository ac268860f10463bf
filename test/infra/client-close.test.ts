/**
 * Closing the CLI's Temporal client while a call is between gRPC retries (the server went away) must
 * not crash the process: the SDK's retry timer would otherwise fire on the closed channel and throw
 * "Channel has been shut down" as an uncaught exception (a CLI that had printed its job's result then
 * exited 1). Runs in a child process so that such a crash shows as its exit status. Real dev server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir, temporalBinary } from '../helpers/env.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));

test('closing the client while a call waits for a gRPC retry ends the call with an error, not a crash', async () => {
  const dir = tempDir();
  const address = `127.0.0.1:${await freePort()}`;
  const child = `
    import { startDevServer } from ${JSON.stringify(join(DIST, 'infra/temporal/server.js'))};
    import { connectClient } from ${JSON.stringify(join(DIST, 'infra/temporal/client.js'))};
    const server = await startDevServer(${JSON.stringify({
      binary: temporalBinary(),
      address,
      namespace: 'default',
      dataRoot: dir.path,
      dbFile: join(dir.path, 'temporal.db'),
    })});
    const { client, close } = await connectClient({ temporalAddress: ${JSON.stringify(address)}, namespace: 'default' });
    await server.stop();
    // Not awaited, as the CLI's progress query is not: it fails with UNAVAILABLE and is retried.
    const call = client.workflowService.describeNamespace({ namespace: 'default' }).then(
      () => 'answered',
      (e) => 'rejected: ' + (e.code ?? e.message),
    );
    await new Promise((r) => setTimeout(r, 400));
    await close();
    console.log('call ' + (await call));
    await new Promise((r) => setTimeout(r, 3000));
    console.log('clean exit');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8', timeout: 90_000 });
  assert.equal(r.status, 0, `child exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /call rejected/);
  assert.match(r.stdout, /clean exit/);
  assert.doesNotMatch(r.stderr, /Channel has been shut down/);
});
