/**
 * Real servers for the scale-out tests, started by the project's own scripts
 * (scripts/servers/*.sh): moto's S3 server and a throwaway PostgreSQL cluster, both on loopback.
 * Each script stops its server when its stdin closes, so a killed test run leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROJECT_ROOT } from '../../infra/config.js';
import { freePort } from './env.js';

export interface TestServer {
  /** s3: the endpoint URL; postgres: a superuser connection URL. */
  url: string;
  stop(): Promise<void>;
}

async function startScript(script: string, what: string): Promise<TestServer> {
  const port = await freePort();
  const child: ChildProcess = spawn('bash', [join(PROJECT_ROOT, 'scripts', 'servers', script), String(port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const url = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      const m = /^ready \S+ (\S+)$/.exec(line);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) =>
      reject(new Error(`${what} server script exited with ${code} before it was ready: ${stderr.trim()}`)),
    );
  });
  return {
    url,
    async stop() {
      child.stdin!.end();
      await exited;
    },
  };
}

/** moto's S3 server; `env` is what a worker process needs to reach it (standard AWS variables). */
export async function startS3Server(): Promise<TestServer & { env: Record<string, string> }> {
  const s = await startScript('s3-server.sh', 'S3');
  return {
    ...s,
    env: {
      AWS_ENDPOINT_URL_S3: s.url,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'kiln-test',
      AWS_SECRET_ACCESS_KEY: 'kiln-test',
      KILN_S3_PATH_STYLE: '1',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  };
}

/** A fresh PostgreSQL cluster; its `url` is the superuser's connection to database postgres. */
export function startPostgres(): Promise<TestServer> {
  return startScript('pg-cluster.sh', 'PostgreSQL');
}

/** The URL of database `name` on the same cluster as `url`. */
export function databaseUrl(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.href;
}
