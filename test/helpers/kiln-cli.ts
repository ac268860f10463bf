/** The kiln CLI (bin/kiln.js) in a child process, for tests that run it as a user does. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../infra/config.js';

export const KILN = join(PROJECT_ROOT, 'bin', 'kiln.js');

export interface KilnRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run `kiln ...args` with `env` over this process's environment, without blocking the test's own servers. */
export function kilnAsync(args: string[], env: Record<string, string>): Promise<KilnRun> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [KILN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
