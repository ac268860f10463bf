import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../training/rng.js';
import { BYTE_END, BYTE_PAD, BYTE_START, ByteTokenizer } from '../../training/tokenizer.js';

void test('xoshiro128** matches the reference implementation (state 1,2,3,4)', () => {
  const rng = new Rng([1, 2, 3, 4]);
  const got = Array.from({ length: 8 }, () => rng.nextU32());
  assert.deepEqual(got, [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849]);
});

void test('saving and restoring the state continues the exact sequence', () => {
  const a = Rng.derive(7, 'train');
  for (let i = 0; i < 1000; i++) a.nextU32();
  const saved = JSON.parse(JSON.stringify(a.state())) as [number, number, number, number];
  const expected = [a.uniform(), a.int(1000), ...a.fillNormal(new Float32Array(5))];
  const b = new Rng(saved);
  assert.deepEqual([b.uniform(), b.int(1000), ...b.fillNormal(new Float32Array(5))], expected);
});

void test('derive is a pure function of (seed, labels) and labels separate streams', () => {
  assert.deepEqual(Rng.derive(3, 'shards', 1).state(), Rng.derive(3, 'shards', 1).state());
  assert.notDeepEqual(Rng.derive(3, 'shards', 1).state(), Rng.derive(3, 'shards', 2).state());
  assert.notDeepEqual(Rng.derive(3, 'shards', 1).state(), Rng.derive(4, 'shards', 1).state());
  assert.notDeepEqual(Rng.derive(3, 'ab', 'c').state(), Rng.derive(3, 'a', 'bc').state());
});

void test('normal samples have mean ~0 and variance ~1; permutations are permutations', () => {
  const x = Rng.derive(1, 'n').fillNormal(new Float32Array(200_000));
  const mean = x.reduce((s, v) => s + v, 0) / x.length;
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.02, `variance ${variance}`);
  const p = Rng.derive(1, 'p').permutation(1000);
  assert.deepEqual(
    [...p].sort((a, b) => a - b),
    Array.from({ length: 1000 }, (_, i) => i),
  );
});

void test('byte tokenizer: start, UTF-8 bytes + 3, end, padding; mask marks real tokens; cuts long captions', () => {
  const tok = new ByteTokenizer(8);
  const { ids, mask } = tok.encode(['hi', 'é', '', 'abcdefghij']);
  assert.deepEqual(
    [...ids.slice(0, 8)],
    [BYTE_START, 104 + 3, 105 + 3, BYTE_END, BYTE_PAD, BYTE_PAD, BYTE_PAD, BYTE_PAD],
  );
  assert.deepEqual([...mask.slice(0, 8)], [1, 1, 1, 1, 0, 0, 0, 0]);
  assert.deepEqual([...ids.slice(8, 12)], [BYTE_START, 0xc3 + 3, 0xa9 + 3, BYTE_END]);
  assert.deepEqual([...ids.slice(16, 18)], [BYTE_START, BYTE_END]);
  assert.deepEqual([...ids.slice(24, 32)], [BYTE_START, 97 + 3, 98 + 3, 99 + 3, 100 + 3, 101 + 3, 102 + 3, BYTE_END]);
  assert.equal(tok.decode(ids.slice(0, 8)), 'hi');
  assert.equal(tok.vocabSize, 259);
});
