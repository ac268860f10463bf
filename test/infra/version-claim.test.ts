import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage } from '../../infra/storage.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { claimVersion } from '../../datasets/shards/version-claim.js';
import { tempDir } from '../helpers/env.js';

test('createExclusive: of many concurrent writers of one URI exactly one wins, whole, and no temp file stays', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(dir.path);
    const uri = s.uri('d', 'claim.json');
    const bodies = Array.from({ length: 16 }, (_, i) => `writer ${i} `.repeat(1000));
    const won = await Promise.all(bodies.map((b) => s.createExclusive(uri, b)));
    assert.equal(won.filter(Boolean).length, 1);
    assert.equal(readFileSync(join(dir.path, 'd', 'claim.json'), 'utf8'), bodies[won.indexOf(true)]);
    assert.deepEqual(readdirSync(join(dir.path, 'd')), ['claim.json']);
    assert.equal(await s.createExclusive(uri, 'later'), false);
    assert.equal(readFileSync(join(dir.path, 'd', 'claim.json'), 'utf8'), bodies[won.indexOf(true)]);
  } finally {
    dir.cleanup();
  }
});

test('claimVersion: a version belongs to the first fingerprint; the same fingerprint may claim it again, another may not', async () => {
  const dir = tempDir();
  try {
    const s = new LocalStorage(dir.path);
    const layout = new DatasetLayout(s, 'pairs', 3);
    const [a, b] = await Promise.all([claimVersion(s, layout, 'fp-a'), claimVersion(s, layout, 'fp-b')]);
    assert.equal(Number(a) + Number(b), 1, 'exactly one of two racing plans takes the version');
    const winner = a ? 'fp-a' : 'fp-b';
    const loser = a ? 'fp-b' : 'fp-a';
    assert.equal(await claimVersion(s, layout, winner), true, 'a retry of the winning plan keeps its version');
    assert.equal(await claimVersion(s, layout, loser), false);
    assert.equal(
      JSON.parse(readFileSync(join(dir.path, 'datasets', 'pairs', 'v3', 'claim.json'), 'utf8')).fingerprint,
      winner,
    );
  } finally {
    dir.cleanup();
  }
});
