/** Shared helpers for the eval tests: a seeded PRNG and a Python-with-scipy finder. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/eval). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** mulberry32 uniform in [0, 1) plus Box-Muller normals; deterministic per seed. */
export function seededRandom(seed: number): { uniform: () => number; normal: () => number } {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

let cached: { python: string | null; why: string } | undefined;

/** `.venv/bin/python` (else `python3`) when it can import numpy and scipy; otherwise null and why. */
export function pythonWithScipy(): { python: string | null; why: string } {
  if (cached) return cached;
  const candidates = [join(REPO_ROOT, '.venv', 'bin', 'python'), 'python3'].filter((p) => p === 'python3' || existsSync(p));
  const tried: string[] = [];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import numpy, scipy.linalg'], { encoding: 'utf8' });
    if (r.status === 0) return (cached = { python: py, why: '' });
    tried.push(`${py}: ${(r.stderr || r.error?.message || 'failed').trim().split('\n').pop()}`);
  }
  return (cached = { python: null, why: `no Python with numpy+scipy (run scripts/setup.sh to create .venv). Tried ${tried.join('; ')}` });
}

/** Run a Python script with arguments; throws with stderr on failure; returns stdout. */
export function runPython(python: string, script: string, args: string[]): string {
  const r = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
