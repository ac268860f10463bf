/**
 * The chaos sandbox: a fresh temp data root, its own embedded Temporal dev server on a free port
 * (SQLite file under the data root, so a restart keeps history), and a `kiln worker` CHILD process
 * that a trial can SIGKILL and restart. Nothing here touches an address outside 127.0.0.0/8.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { Client } from '@temporalio/client';
import { PROJECT_ROOT, loadConfig, type KilnConfig } from '../infra/config.js';
import { startDevServer, type TemporalServerHandle } from '../infra/temporal/server.js';
import { connectClient } from '../infra/temporal/client.js';

export const KILN_BIN = join(PROJECT_ROOT, 'bin', 'kiln.js');

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `check` every `everyMs` until it is true; throws after `timeoutMs`. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  everyMs = 100,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Result of a CLI run; `peakRssKiB`: the process's VmHWM (Linux), sampled every second until it exits. */
export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  peakRssKiB?: number;
}

/** VmHWM (peak resident set, KiB) of a live process, from /proc (undefined elsewhere or once it is gone). */
export function peakRssKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Run `node bin/kiln.js ...args` with env; SIGKILLed after timeoutMs; `everySecond(pid)` while it runs. */
export function kiln(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 120_000,
  everySecond?: (pid: number) => void,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [KILN_BIN, ...args], {
      env: { ...process.env, KILN_LOG_LEVEL: 'ERROR', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let peak: number | undefined;
    const sample = () => {
      const v = p.pid ? peakRssKiB(p.pid) : undefined;
      if (v !== undefined) peak = Math.max(peak ?? 0, v);
      if (p.pid && everySecond) everySecond(p.pid);
    };
    const sampler = setInterval(sample, 1000);
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.on('close', (status) => {
      clearTimeout(timer);
      clearInterval(sampler);
      resolve({ status, stdout, stderr, timedOut, peakRssKiB: peak });
    });
  });
}

/** A trial's world: temp dir, data root, Temporal server, worker child. */
export class Sandbox {
  readonly dir: string;
  readonly dataRoot: string;
  config!: KilnConfig;
  private server?: TemporalServerHandle;
  private worker?: ChildProcess;
  private workerExited?: Promise<void>;
  /** stderr of all worker children, for diagnostics. */
  workerLog = '';
  workerStarts = 0;
  /** Extra environment of every worker child (e.g. a test-only fault switch). */
  workerEnv: Record<string, string> = {};
  /** How each worker child ended that was not stopped by killWorker(): signal name or exit code. */
  workerDeaths: string[] = [];

  constructor(prefix = 'kiln-chaos-') {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    this.dataRoot = join(this.dir, 'data');
  }

  get env(): Record<string, string> {
    return { KILN_DATA_ROOT: this.dataRoot, TEMPORAL_ADDRESS: this.config.temporalAddress };
  }

  /** Start the dev server (first call picks the port; later calls reuse it and the same SQLite file). */
  async startServer(): Promise<void> {
    this.config ??= loadConfig(
      { dataRoot: this.dataRoot, temporalAddress: `127.0.0.1:${await freePort()}`, namespace: 'default' },
      {},
    );
    this.server = await startDevServer({
      address: this.config.temporalAddress,
      namespace: 'default',
      dataRoot: this.dataRoot,
      readyTimeoutMs: 90_000,
    });
  }

  /** Stop the dev server (SIGTERM, then SIGKILL after 10 s). */
  async stopServer(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }

  /** Spawn `kiln worker` and wait until it serves its queues. */
  async startWorker(): Promise<void> {
    const child = spawn(process.execPath, [KILN_BIN, 'worker'], {
      env: { ...process.env, KILN_LOG_LEVEL: 'ERROR', ...this.env, ...this.workerEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.worker = child;
    this.workerStarts++;
    this.workerExited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        if (!child.killed) this.workerDeaths.push(signal ?? `exit ${code}`);
        resolve();
      }),
    );
    let ready = false;
    child.stderr!.on('data', (d: Buffer) => {
      const t = d.toString();
      this.workerLog += t;
      if (t.includes('worker serving')) ready = true;
    });
    await until('the worker to serve its queues', () => ready || child.exitCode !== null, 120_000);
    if (!ready) throw new Error(`worker exited with ${child.exitCode}: ${this.workerLog.slice(-500)}`);
  }

  /** True while the worker child runs. */
  get workerAlive(): boolean {
    return !!this.worker && this.worker.exitCode === null && this.worker.signalCode === null;
  }

  /**
   * Restart the worker child whenever it dies on its own (as a supervisor or `kiln up` under systemd
   * would), until the returned stop() is called.
   */
  supervise(everyMs = 200): { stop(): Promise<void> } {
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        if (!this.workerAlive) await this.startWorker();
        await sleep(everyMs);
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        await loop;
      },
    };
  }

  /** kill -9 the worker child and wait for it to be gone. */
  async killWorker(): Promise<void> {
    if (!this.worker) return;
    this.worker.kill('SIGKILL');
    await this.workerExited;
    this.worker = undefined;
  }

  /** A Temporal client for this sandbox; close it when done. */
  client(): Promise<{ client: Client; close(): Promise<void> }> {
    return connectClient(this.config);
  }

  /** Kill the worker, stop the server, delete the temp dir. */
  async dispose(): Promise<void> {
    await this.killWorker().catch(() => undefined);
    await this.stopServer().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
