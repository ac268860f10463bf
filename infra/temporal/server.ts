/**
 * Embedded Temporal: when nothing answers at TEMPORAL_ADDRESS, start `temporal server start-dev`
 * with its SQLite file under the data root. What Kiln started, Kiln stops, even when Kiln itself
 * is killed -9 or aborts: the server runs under a watchdog (`WATCHDOG_SH`) that holds a pipe from
 * this process and stops the server when the pipe reaches EOF, i.e. when this process is gone.
 *
 * When something already answers at the address, Kiln attaches only to a working Temporal frontend
 * whose database file (for a dev server) still exists; anything else is an error that says what
 * answers there (process, reply) and what to do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import {
  mkdirSync,
  openSync,
  closeSync,
  existsSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
} from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
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
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Waits until the frontend answers gRPC and the namespace is registered. */
export async function waitForTemporal(
  address: string,
  namespace: string,
  timeoutMs: number,
  child?: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new TemporalUnavailableError(
        `temporal server exited with code ${child.exitCode} while starting`,
        'read the server log under <data root>/temporal/server.log; another process may hold the port or the SQLite file.',
      );
    }
    if (await isPortOpen(address, 500)) {
      try {
        await describeNamespace(address, namespace, 2000);
        return;
      } catch (err) {
        lastErr = err;
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new TemporalUnavailableError(
    `Temporal at ${address} did not become ready within ${timeoutMs} ms`,
    'check the server log, or point TEMPORAL_ADDRESS at a running Temporal server.',
    { cause: lastErr },
  );
}

async function describeNamespace(address: string, namespace: string, timeoutMs: number): Promise<void> {
  const conn = await Connection.connect({ address, connectTimeout: timeoutMs });
  try {
    await conn.withDeadline(Date.now() + timeoutMs, () => conn.workflowService.describeNamespace({ namespace }));
  } finally {
    await conn.close();
  }
}

/**
 * The parent-death watch around the server (POSIX sh; `$@` is the server command). Its stdin is a
 * pipe whose only write end this (Node) process holds. A background reader blocks on that pipe;
 * EOF means the parent closed it (stop()) or died (exit, crash, abort, SIGKILL: the kernel closes
 * its descriptors), and the reader then sends the server SIGTERM, and SIGKILL after $KILN_WATCHDOG_GRACE_S.
 * The main shell waits for the server and exits with its status, so the parent still sees the
 * server's exit. Chosen over `setpriv --pdeathsig` (util-linux): PR_SET_PDEATHSIG fires when the
 * *thread* that forked exits, not the process, misses a parent that dies before the prctl, and is
 * Linux-only; EOF on a pipe is a state, not an event, so it cannot be missed.
 */
export const WATCHDOG_SH = [
  'exec 3<&0',
  '"$@" </dev/null &',
  'server=$!',
  '( while IFS= read -r _; do :; done <&3',
  '  kill -TERM "$server" 2>/dev/null',
  '  i=0',
  '  while kill -0 "$server" 2>/dev/null; do',
  '    i=$((i + 1))',
  '    if [ "$i" -ge $((${KILN_WATCHDOG_GRACE_S:-10} * 10)) ]; then kill -KILL "$server" 2>/dev/null; break; fi',
  '    sleep 0.1',
  '  done ) &',
  'reader=$!',
  'exec 3<&-',
  'wait "$server"',
  'code=$?',
  'kill "$reader" 2>/dev/null',
  'exit "$code"',
].join('\n');

export interface StartDevServerOptions {
  binary?: string;
  address: string;
  namespace: string;
  dataRoot: string;
  /** Default <dataRoot>/temporal/temporal.db */
  dbFile?: string;
  ui?: boolean;
  readyTimeoutMs?: number;
  /**
   * How long to wait for another process that still has the database file open (an earlier embedded
   * server shutting down after its kiln process was killed) to let go of it; default 20 s (the
   * watchdog's SIGTERM grace is 10 s, then SIGKILL).
   */
  releaseTimeoutMs?: number;
}

/**
 * Live processes of this machine (other than this one) with `file` open (Linux /proc; only processes
 * this user may inspect), for the check that no other server writes the database a new one opens.
 */
export function processesWithFileOpen(file: string): Listener[] {
  const out: Listener[] = [];
  if (!existsSync(file)) return out;
  const target = realpathSync(file); // /proc/<pid>/fd links name the real path
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => safeReadlink(`/proc/${pid}/fd/${fd}`) === target))
        out.push({ pid: Number(pid), argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean) });
    } catch {
      /* not inspectable, or gone meanwhile */
    }
  }
  return out;
}

function safeReadlink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Wait until no other process has `dbFile` open. After `kill -9` of a kiln process its embedded
 * server closes its port first and exits seconds later (measured 1.5-4.7 s at load 8-13): a rerun
 * typed or scripted at once would otherwise start a second server on the same SQLite file while the
 * first still writes it. Throws a TemporalUnavailableError naming the process after `timeoutMs`.
 */
export async function waitForDatabaseRelease(dbFile: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const holders = processesWithFileOpen(dbFile);
    if (holders.length === 0) return;
    if (Date.now() >= end)
      throw new TemporalUnavailableError(
        `the embedded Temporal database ${dbFile} is still open in ${holders.map(describeListener).join(', ')}, ` +
          'so Kiln does not start a second server on it',
        'if that is an earlier embedded server, it is still shutting down: wait for it to exit ' +
          `(or kill ${holders.map((h) => h.pid).join(' ')}) and rerun; ` +
          'if it is a server you run on purpose, set TEMPORAL_ADDRESS to its address.',
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Start `temporal server start-dev` on address, persisting to a SQLite file; resolves when ready.
 * The server stops when stop() is called or when this process ends in any way (see WATCHDOG_SH).
 */
export async function startDevServer(opts: StartDevServerOptions): Promise<TemporalServerHandle> {
  const binary = opts.binary ?? findTemporalBinary();
  const { host, port } = parseAddress(opts.address);
  const dir = join(opts.dataRoot, 'temporal');
  mkdirSync(dir, { recursive: true });
  const dbFile = resolvePath(opts.dbFile ?? join(dir, 'temporal.db'));
  await waitForDatabaseRelease(dbFile, opts.releaseTimeoutMs ?? 20_000);
  const logFd = openSync(join(dir, 'server.log'), 'a');
  const args = [
    'server',
    'start-dev',
    '--ip',
    host,
    '--port',
    String(port),
    '--db-filename',
    dbFile,
    '--namespace',
    opts.namespace,
    '--log-level',
    'warn',
  ];
  if (opts.ui) args.push('--ui-port', String(port + 1000));
  else args.push('--headless');
  const child = spawn('/bin/sh', ['-c', WATCHDOG_SH, 'kiln-temporal-watchdog', binary, ...args], {
    stdio: ['pipe', logFd, logFd],
  });
  closeSync(logFd);
  // The pipe is the watch: never written, and not kept open by anything but this process.
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const release = () => child.stdin!.destroy();
  child.once('exit', release);
  try {
    await waitForTemporal(opts.address, opts.namespace, opts.readyTimeoutMs ?? 60_000, child);
  } catch (err) {
    release();
    await exited;
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
      // EOF on the watch pipe: the watchdog sends SIGTERM, then SIGKILL after 10 s, and exits with the server.
      release();
      await exited;
    },
  };
}

/** A process listening on a TCP port of this machine (Linux /proc; only processes this user may inspect). */
export interface Listener {
  pid: number;
  /** argv, as in /proc/<pid>/cmdline. */
  argv: string[];
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The process listening on host:port, when /proc shows it (undefined elsewhere or when not visible). */
export function findListener(address: string): Listener | undefined {
  const { host, port } = parseAddress(address);
  // Only this machine's listeners: a remote address's port number says nothing about local processes.
  if (!isLoopbackHost(host)) return undefined;
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A = LISTEN
      const localPort = parseInt(f[1]!.split(':')[1] ?? '', 16);
      if (localPort === port) inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) {
        try {
          return { pid: Number(pid), argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean) };
        } catch {
          return undefined;
        }
      }
    }
  }
  return undefined;
}

/** `temporal server start-dev`'s database file, when the listener is one: its path and whether it still exists. */
export function devServerDatabase(l: Listener): { path: string; gone: boolean } | undefined {
  const i = l.argv.indexOf('start-dev');
  if (i < 0 || !l.argv.includes('server')) return undefined;
  let path: string | undefined;
  for (let j = i + 1; j < l.argv.length; j++) {
    const a = l.argv[j]!;
    if (a === '--db-filename' || a === '-f') path = l.argv[j + 1];
    else if (a.startsWith('--db-filename=')) path = a.slice('--db-filename='.length);
  }
  if (path === undefined) return undefined; // in-memory dev server: no file to lose
  let cwd = '';
  try {
    cwd = readlinkSync(`/proc/${l.pid}/cwd`);
  } catch {
    /* not inspectable */
  }
  const abs = cwd ? resolvePath(cwd, path) : path;
  // Deleted and perhaps recreated since: the server still writes to the deleted inode.
  let deletedOpen = false;
  try {
    for (const fd of readdirSync(`/proc/${l.pid}/fd`)) {
      try {
        const t = readlinkSync(`/proc/${l.pid}/fd/${fd}`);
        if (t.endsWith(' (deleted)') && t.slice(0, -' (deleted)'.length).startsWith(abs)) deletedOpen = true;
      } catch {
        /* fd closed meanwhile */
      }
    }
  } catch {
    /* not inspectable */
  }
  return { path: abs, gone: deletedOpen || !existsSync(abs) };
}

/** The first line something at address sends back to an HTTP/1.1 request (or its greeting), for error messages. */
export function probeReply(address: string, timeoutMs = 1500): Promise<string> {
  const { host, port } = parseAddress(address);
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    let data = '';
    let sent = false;
    const done = (what: string) => {
      sock.destroy();
      clearTimeout(timer);
      resolve(what);
    };
    const timer = setTimeout(() => done(data ? firstLine(data) : 'no reply'), timeoutMs);
    const firstLine = (s: string) =>
      JSON.stringify(
        s
          .split(/\r?\n/)[0]!
          .replace(/[^\x20-\x7e]/g, '.')
          .slice(0, 80),
      );
    sock.once('connect', () => {
      // Greeting protocols (SSH, SMTP, Redis INFO-less...) speak first; otherwise ask in HTTP/1.1.
      setTimeout(() => {
        if (!data && !sent) {
          sent = true;
          sock.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
        }
      }, 200);
    });
    sock.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      if (data.includes('\n') || data.length > 200) done(firstLine(data));
    });
    sock.once('error', (err) =>
      done(data ? firstLine(data) : `connection error ${(err as NodeJS.ErrnoException).code ?? err.message}`),
    );
    sock.once('end', () => done(data ? firstLine(data) : 'closed the connection without a reply'));
  });
}

function describeListener(l: Listener | undefined): string {
  if (!l) return 'a process this user cannot inspect';
  const cmd = l.argv.join(' ');
  return `pid ${l.pid} (${cmd.length > 160 ? `${cmd.slice(0, 160)}...` : cmd})`;
}

/**
 * Check whatever answers at `address` before attaching to it: a Temporal frontend serving the
 * namespace, and, when it is a local dev server, one whose database file still exists. Throws a
 * TemporalUnavailableError naming what was found and the fix otherwise.
 */
export async function checkExistingServer(
  address: string,
  namespace: string,
  opts: { readyTimeoutMs?: number } = {},
): Promise<void> {
  const listener = findListener(address);
  const db = listener ? devServerDatabase(listener) : undefined;
  if (listener && db?.gone) {
    throw new TemporalUnavailableError(
      `a Temporal dev server answers at ${address} (${describeListener(listener)}) but its database file ${db.path} ` +
        'is gone: its history would vanish with that process, so Kiln does not attach to it',
      `stop it (kill ${listener.pid}; it is probably left over from an earlier run whose data root was removed) ` +
        'and rerun: Kiln then starts a fresh embedded server with its database under the data root.',
    );
  }
  const looksLikeTemporal = !listener || listener.argv.some((a) => /temporal/i.test(a));
  try {
    // A server that is still starting (e.g. `kiln up` in another shell) gets time to become ready.
    await (looksLikeTemporal
      ? waitForTemporal(address, namespace, opts.readyTimeoutMs ?? 30_000)
      : describeNamespace(address, namespace, 3000));
    return;
  } catch (err) {
    const reply = await probeReply(address);
    const grpcReply = String((err as Error).message ?? err)
      .split('\n')[0]!
      .slice(0, 160);
    throw new TemporalUnavailableError(
      `something answers at ${address} but it is not a working Temporal frontend serving namespace ` +
        `${JSON.stringify(namespace)}: ${describeListener(listener)}, which replied ${reply} to HTTP and ` +
        `${JSON.stringify(grpcReply)} to Temporal's gRPC`,
      'stop that process or free the port, or set TEMPORAL_ADDRESS to your Temporal server (or to a free loopback ' +
        'port such as 127.0.0.1:7239, where Kiln starts its embedded dev server).',
      { cause: err },
    );
  }
}

/**
 * Use the Temporal server at config.temporalAddress if one answers (and checks out, see
 * checkExistingServer); otherwise start the embedded dev server there (only for loopback
 * addresses: a remote cluster that is down is an error).
 */
export async function ensureTemporalServer(
  config: KilnConfig,
  opts: { ui?: boolean; readyTimeoutMs?: number } = {},
): Promise<TemporalServerHandle> {
  if (await isPortOpen(config.temporalAddress)) {
    await checkExistingServer(config.temporalAddress, config.namespace, opts);
    return { address: config.temporalAddress, startedHere: false, dbFile: null, stop: async () => undefined };
  }
  const { host } = parseAddress(config.temporalAddress);
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
    throw new TemporalUnavailableError(
      `no Temporal server answers at ${config.temporalAddress}`,
      'start your Temporal cluster, or unset TEMPORAL_ADDRESS to let Kiln start its embedded dev server on 127.0.0.1:7233.',
    );
  }
  return startDevServer({
    binary: findTemporalBinary({ explicit: config.temporalBin }),
    address: config.temporalAddress,
    namespace: config.namespace,
    dataRoot: config.localRoot,
    ui: opts.ui,
  });
}
