/**
 * The embedded Temporal dev server dies with the process that started it: a child node process
 * starts it exactly as the CLI does, then gets kill -9 (or aborts); the server process must be gone
 * and its port closed within a few seconds (the watchdog in infra/temporal/server.ts). Real server,
 * real processes.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isPortOpen } from '../../infra/temporal/server.js';
import { freePort, tempDir } from '../helpers/env.js';

/** Pids of live `temporal server start-dev` processes whose command line contains `needle` (not the watchdog shells). */
export function pidsWithArg(needle: string): number[] {
  const out: number[] = [];
  for (const n of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0');
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${n}/status`, 'utf8'))?.[1];
      if (state !== 'Z' && /temporal$/.test(argv[0] ?? '') && argv.includes(needle) && argv.includes('start-dev'))
        out.push(Number(n));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('embedded dev server parent-death watch', () => {
  const tmp = tempDir('kiln-devwatch-');
  const leftovers: number[] = [];
  after(() => {
    // A failed assertion leaves the child (and its server) running: never leave them behind.
    for (const pid of leftovers)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    tmp.cleanup();
  });

  for (const how of ['SIGKILL', 'abort'] as const) {
    it(`the server stops within seconds when the CLI process dies by ${how}`, { timeout: 120_000 }, async (t) => {
      const address = `127.0.0.1:${await freePort()}`;
      const dataRoot = `${tmp.path}/${how}`;
      const child = spawn(
        process.execPath,
        [fileURLToPath(new URL('./dev-server-child.js', import.meta.url)), ...(how === 'abort' ? ['abort'] : [])],
        {
          env: { ...process.env, KILN_DATA_ROOT: dataRoot, TEMPORAL_ADDRESS: address },
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      leftovers.push(child.pid!);
      const exit = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
      const dbFile = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (t: string) => {
          out += t;
          const m = /ready (\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code, sig) =>
          reject(new Error(`child exited (${code ?? sig}) before the server was ready: ${out}`)),
        );
      });
      const servers = pidsWithArg(dbFile);
      leftovers.push(...servers);
      assert.equal(servers.length, 1, `one temporal server process for ${dbFile}`);
      assert.ok(await isPortOpen(address), 'the server answers while its parent lives');
      if (how === 'SIGKILL') child.kill('SIGKILL');
      assert.equal(await exit, how === 'SIGKILL' ? 'SIGKILL' : 'SIGABRT');
      const t0 = Date.now();
      while (Date.now() - t0 < 15_000 && (pidsWithArg(dbFile).length > 0 || (await isPortOpen(address, 300))))
        await sleep(100);
      const took = Date.now() - t0;
      assert.deepEqual(pidsWithArg(dbFile), [], 'the server process is gone');
      assert.equal(await isPortOpen(address, 500), false, 'the port stopped answering');
      assert.ok(took < 5_000, `gone ${took} ms after its parent died (want < 5 s)`);
      t.diagnostic(`server gone and port closed ${took} ms after its parent died`);
    });
  }
});
