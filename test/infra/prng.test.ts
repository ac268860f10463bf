/**
 * infra/prng.ts's mulberry32 is pinned: filter sampling decisions (plans, fingerprints), the demo's
 * synthetic web and test fixtures depend on its exact sequences. The numbers below are what the four
 * copies it replaced (datasets/filter/sampling.ts, demo/synthetic-web.ts, test/crawl/images.ts,
 * test/eval/helpers.ts) returned, as value * 2^32, recorded before they were removed.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mulberry32 } from '../../infra/prng.js';

const FIRST_VALUES: ReadonlyArray<[number, number[]]> = [
  [0, [1144304738, 1416247, 958946056, 627933444, 2007157716, 2340967985]],
  [1, [2693262067, 11749833, 2265367787, 4213581821, 4159151403, 1207330352]],
  [42, [2581720956, 1925393290, 3661312704, 2876485805, 750819978, 2261697747]],
  [12345, [4207900869, 1317490944, 2079646450, 3513001552, 2187978186, 1492380277]],
  [0xffffffff, [3850105811, 813802916, 3073704848, 4054706436, 3630262831, 2315588663]],
  [-1, [3850105811, 813802916, 3073704848, 4054706436, 3630262831, 2315588663]],
  [2 ** 32 + 7, [50271532, 266108690, 4195786334, 3002305430, 2239590375, 1741702388]],
  // The demo's seeds: seed * 100_003 + index.
  [1234 * 100_003 + 5, [3213405982, 2764550455, 726444338, 2279070679, 2014027110, 487521171]],
];

/** sha256 of the first 100,000 values as little-endian uint32 numerators. */
const STREAM_SHA256: ReadonlyArray<[number, string]> = [
  [0, 'ea6633e5fa727a47ea6da0e0b2d1319a697fc4d6a81478fc794c49c0992c9263'],
  [12345, 'e2b7d1966a544c7b454d9c1eca038ea5c0453018987db5964b780ba983069209'],
];

it('mulberry32 returns the pinned first values for each seed (seeds taken modulo 2^32)', () => {
  for (const [seed, expected] of FIRST_VALUES) {
    const next = mulberry32(seed);
    assert.deepEqual(
      expected.map(() => next() * 2 ** 32),
      expected,
      `seed ${seed}`,
    );
  }
});

it('mulberry32 streams stay in [0, 1), on the 2^-32 grid, and match the pinned hash over 100,000 draws', () => {
  for (const [seed, sha] of STREAM_SHA256) {
    const next = mulberry32(seed);
    const bytes = Buffer.alloc(4 * 100_000);
    for (let i = 0; i < 100_000; i++) {
      const u = next();
      assert.ok(u >= 0 && u < 1, `seed ${seed} draw ${i}: ${u} outside [0, 1)`);
      assert.ok(Number.isInteger(u * 2 ** 32), `seed ${seed} draw ${i}: ${u} not a multiple of 2^-32`);
      bytes.writeUInt32LE(u * 2 ** 32, 4 * i);
    }
    assert.equal(createHash('sha256').update(bytes).digest('hex'), sha, `seed ${seed}`);
  }
});
