/**
 * Embedded Temporal: when nothing answers at TEMPORAL_ADDRESS, start `temporal server start-dev`
 * with its SQLite file under the data root. What Kiln started, Kiln stops.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import type { KilnConfig } from '../config.js';
import { parseAddress } from '../config.js';
import { TemporalUnavailableError } from '../errors.js';
import { findTemporalBinary } from './binary.js';

export interface TemporalServerHandle {
  address: string;
  /** True when this process started the server (and so must stop it). */
  startedHere: boolean;
  dbFile: string | null;
  /** Stops the server if this process started it; no-op otherwise. */
  stop(): Promise<void>;
}

/** True when a TCP connection to address succeeds within timeoutMs. */
export function isPortOpen(address: string, timeoutMs = 1000): Promise<boolean> {
  const { host, port } = parseAddress(address);
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Waits until the frontend answers gRPC and the namespace is registered. */
export async function waitForTemporal(address: string, namespace: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new TemporalUnavailableError(`temporal server exited with code ${child.exitCode} while starting`,
        'read the server log under <data root>/temporal/server.log; another process may hold the port or the SQLite file.');
    }
    if (await isPortOpen(address, 500)) {
      try {
        const conn = await Connection.connect({ address, connectTimeout: 2000 });
        try {
          await conn.workflowService.describeNamespace({ namespace });
          return;
        } finally {
          await conn.close();
        }
      } catch (err) {
        lastErr = err;
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new TemporalUnavailableError(`Temporal at ${address} did not become ready within ${timeoutMs} ms`,
    'check the server log, or point TEMPORAL_ADDRESS at a running Temporal server.', { cause: lastErr });
}

export interface StartDevServerOptions {
  binary?: string;
  address: string;
  namespace: string;
  dataRoot: string;
  /** Default <dataRoot>/temporal/temporal.db */
  dbFile?: string;
  ui?: boolean;
  readyTimeoutMs?: number;
}

/** Start `temporal server start-dev` on address, persisting to a SQLite file; resolves when ready. */
export async function startDevServer(opts: StartDevServerOptions): Promise<TemporalServerHandle> {
  const binary = opts.binary ?? findTemporalBinary();
  const { host, port } = parseAddress(opts.address);
  const dir = join(opts.dataRoot, 'temporal');
  mkdirSync(dir, { recursive: true });
  const dbFile = opts.dbFile ?? join(dir, 'temporal.db');
  const logFd = openSync(join(dir, 'server.log'), 'a');
  const args = ['server', 'start-dev', '--ip', host, '--port', String(port), '--db-filename', dbFile,
    '--namespace', opts.namespace, '--log-level', 'warn'];
  if (opts.ui) args.push('--ui-port', String(port + 1000)); else args.push('--headless');
  const child = spawn(binary, args, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForTemporal(opts.address, opts.namespace, opts.readyTimeoutMs ?? 60_000, child);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  let stopped = false;
  return {
    address: opts.address,
    startedHere: true,
    dbFile,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Use the Temporal server at config.temporalAddress if one answers; otherwise start the embedded
 * dev server there (only for loopback addresses: a remote cluster that is down is an error).
 */
export async function ensureTemporalServer(config: KilnConfig, opts: { ui?: boolean } = {}): Promise<TemporalServerHandle> {
  if (await isPortOpen(config.temporalAddress)) {
    await waitForTemporal(config.temporalAddress, config.namespace, 30_000);
    return { address: config.temporalAddress, startedHere: false, dbFile: null, stop: async () => undefined };
  }
  const { host } = parseAddress(config.temporalAddress);
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
    throw new TemporalUnavailableError(`no Temporal server answers at ${config.temporalAddress}`,
      'start your Temporal cluster, or unset TEMPORAL_ADDRESS to let Kiln start its embedded dev server on 127.0.0.1:7233.');
  }
  return startDevServer({
    binary: findTemporalBinary({ explicit: config.temporalBin }),
    address: config.temporalAddress, namespace: config.namespace, dataRoot: config.dataRoot, ui: opts.ui,
  });
}
