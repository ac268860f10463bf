/** The code version recorded with every run: git SHA (+"-dirty") of the checkout, else the package version. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './config.js';

let cached: string | undefined;

export function codeVersion(): string {
  if (cached) return cached;
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  try {
    const git = (args: string[]) =>
      execFileSync('git', args, { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
    const sha = git(['rev-parse', 'HEAD']);
    const dirty = git(['status', '--porcelain', '--untracked-files=no']).length > 0;
    cached = `git:${sha}${dirty ? '-dirty' : ''}`;
  } catch {
    cached = `kiln@${pkg.version}`;
  }
  return cached;
}
