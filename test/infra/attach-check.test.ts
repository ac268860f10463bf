/**
 * A run attaches only to a working Temporal frontend whose dev-server database still exists:
 * something else on the address (here an HTTP server), or a dev server whose SQLite file was
 * deleted, is refused with an error naming what answered and `Fix:`, by the library and by the
 * real CLI (exit 3). A healthy server is attached to. Real dev server, real processes.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, PROJECT_ROOT } from '../../infra/config.js';
import { TemporalUnavailableError } from '../../infra/errors.js';
import { ensureTemporalServer, startDevServer } from '../../infra/temporal/server.js';
import { EXIT } from '../../cli/exit-codes.js';
import { freePort, tempDir } from '../helpers/env.js';

const KILN = join(PROJECT_ROOT, 'bin', 'kiln.js');

function runCli(dataRoot: string, address: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [KILN, 'run', 'hello', '--message', 'x'], {
    env: { ...process.env, KILN_DATA_ROOT: dataRoot, TEMPORAL_ADDRESS: address, KILN_LOG_LEVEL: 'ERROR' },
    encoding: 'utf8',
    timeout: 90_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe('attaching to an existing server', () => {
  const tmp = tempDir('kiln-attach-');
  after(() => tmp.cleanup());

  it('refuses something that is not Temporal, naming it, within seconds', { timeout: 120_000 }, async () => {
    const http = createServer((_req, res) => {
      res.writeHead(404);
      res.end('nope');
    });
    const port = await freePort();
    await new Promise<void>((r) => http.listen(port, '127.0.0.1', r));
    try {
      const address = `127.0.0.1:${port}`;
      const t0 = Date.now();
      const err = await ensureTemporalServer(
        loadConfig({ dataRoot: join(tmp.path, 'http'), temporalAddress: address, namespace: 'default' }),
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof TemporalUnavailableError, String(err));
      assert.match(err.message, /not a working Temporal frontend/);
      assert.match(err.message, new RegExp(`pid ${process.pid} \\(`), 'names the process listening there');
      assert.match(err.message, /HTTP\/1\.1 404/, 'says what it replied');
      assert.match(err.message, /\nFix: /);
      assert.ok(Date.now() - t0 < 15_000, `refused after ${Date.now() - t0} ms`);
      const cli = runCli(join(tmp.path, 'http-cli'), address);
      assert.equal(cli.status, EXIT.temporalUnavailable, cli.stderr);
      assert.match(cli.stderr, /not a working Temporal frontend/);
      assert.match(cli.stderr, /Fix: /);
    } finally {
      await new Promise((r) => http.close(r));
    }
  });

  it(
    'attaches to a healthy dev server, refuses one whose database file was deleted',
    { timeout: 180_000 },
    async () => {
      const address = `127.0.0.1:${await freePort()}`;
      const first = join(tmp.path, 'first');
      const server = await startDevServer({ address, namespace: 'default', dataRoot: first });
      try {
        const config = loadConfig({
          dataRoot: join(tmp.path, 'second'),
          temporalAddress: address,
          namespace: 'default',
        });
        const ok = await ensureTemporalServer(config);
        assert.equal(ok.startedHere, false, 'attached to the healthy server');

        rmSync(join(first, 'temporal'), { recursive: true, force: true }); // as `rm -rf kiln-data` under a running server
        const err = await ensureTemporalServer(config).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof TemporalUnavailableError, String(err));
        assert.match(err.message, /Temporal dev server answers/);
        assert.ok(err.message.includes(`${join(first, 'temporal', 'temporal.db')} is gone`), err.message);
        assert.match(err.message, /\nFix: stop it \(kill \d+/);
        const cli = runCli(join(tmp.path, 'third'), address);
        assert.equal(cli.status, EXIT.temporalUnavailable, cli.stderr);
        assert.match(cli.stderr, /database file .* is gone/);
        assert.match(cli.stderr, /Fix: /);
      } finally {
        await server.stop();
      }
    },
  );
});
