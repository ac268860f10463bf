/** Shared helpers for the eval tests: a seeded PRNG, the reference feature generator, the committed reference values and checks against them. */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { mulberry32 } from '../../infra/prng.js';

/** Repository root (tests run from dist/test/eval). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** mulberry32 uniform in [0, 1) plus Box-Muller normals; deterministic per seed. */
export function seededRandom(seed: number): { uniform: () => number; normal: () => number } {
  const uniform = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

/**
 * The committed numpy/scipy reference values of FID and KID (fixtures/eval/fid-kid-reference.json).
 * Missing or unreadable: throws, naming the file and how to regenerate it (tests never skip on it).
 */
export function loadReferenceFixture<T>(): T {
  const file = join(REPO_ROOT, 'fixtures', 'eval', 'fid-kid-reference.json');
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new Error(
      `cannot read the FID/KID reference fixture ${file} (${(err as Error).message}); ` +
        `regenerate it with .venv/bin/python scripts/fixtures/make_fid_kid_reference.py`,
      { cause: err },
    );
  }
}

/** Correlated, non-negative-ish features: x = offset + z·W (+ ReLU), seeded. */
export function features(n: number, d: number, seed: number, offset: number, scale: number): Float64Array {
  const rnd = seededRandom(seed);
  const k = Math.min(d, 24);
  const w = new Float64Array(k * d);
  const wr = seededRandom(7); // same mixing for every set: distributions differ by offset/scale only
  for (let i = 0; i < w.length; i++) w[i] = wr.normal() / Math.sqrt(k);
  const out = new Float64Array(n * d);
  const z = new Float64Array(k);
  for (let r = 0; r < n; r++) {
    for (let f = 0; f < k; f++) z[f] = rnd.normal();
    for (let i = 0; i < d; i++) {
      let v = offset + 0.2 * rnd.normal();
      for (let f = 0; f < k; f++) v += scale * z[f]! * w[f * d + i]!;
      out[r * d + i] = Math.max(v, 0);
    }
  }
  return out;
}

/** Fails unless the fixture has `count` cases of `what`, saying how to regenerate it. */
export function assertReferenceCases(cases: readonly unknown[], count: number, what: string): void {
  assert.equal(
    cases.length,
    count,
    `fixtures/eval/fid-kid-reference.json: expected ${count} ${what} cases; regenerate it with scripts/fixtures/make_fid_kid_reference.py`,
  );
}

/** |actual - expected| within `rel` of |expected| (or within `rel` itself when `absolute`). */
export function assertClose(actual: number, expected: number, rel: number, what: string, absolute = false): void {
  const tol = absolute ? rel : rel * Math.max(Math.abs(expected), 1e-300);
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what}: ${actual} vs reference ${expected} (|diff| ${Math.abs(actual - expected)} > ${tol})`,
  );
}

/**
 * The fixture's generator (make_fid_kid_reference.py) ports `features`: the sum of a set made here
 * must equal the sum it recorded (to 1e-12), or the two would compare different vectors.
 */
export function assertGeneratorSum(set: Float64Array, recorded: number, what: string): void {
  assertClose(
    set.reduce((s, v) => s + v, 0),
    recorded,
    1e-12,
    `sum of ${what} (generator port)`,
  );
}
