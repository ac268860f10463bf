/** Issue 19 helpers: the changed-field diff a changed input prints, and which worker identities are known dead. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { changedFields, jobIdentity } from '../../cli/job-identity.js';
import { deadLocalWorker } from '../../cli/orphaned-activities.js';

test('changedFields names each changed leaf with old -> new; equal contents give none', () => {
  const a = jobIdentity('web', { spec: { crawl: { image_size: 64, retries: 2 }, sources: [{ size: 120 }] } });
  const b = jobIdentity('web', {
    spec: { crawl: { image_size: 128, retries: 2 }, filter: { threshold: 0.3 }, sources: [{ size: 240 }] },
  });
  assert.notEqual(a.id, b.id);
  assert.equal(a.name, 'web');
  assert.deepEqual(changedFields(a.content, b.content), [
    'spec.crawl.image_size: 64 -> 128',
    'spec.filter: (none) -> {"threshold":0.3}',
    'spec.sources.0.size: 120 -> 240',
  ]);
  assert.deepEqual(
    changedFields(
      a.content,
      jobIdentity('web', { spec: { sources: [{ size: 120 }], crawl: { retries: 2, image_size: 64 } } }).content,
    ),
    [],
  );
  assert.match(jobIdentity('../x y', {}).id, /^x-y-[0-9a-f]{12}$/, 'the name part is path-safe');
});

test('deadLocalWorker: only a pid of this host that no longer exists', () => {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const gone = Number(child.stdout);
  assert.ok(gone > 0);
  assert.equal(deadLocalWorker(`${gone}@${hostname()}`), true, 'an exited process on this host');
  assert.equal(deadLocalWorker(`${process.pid}@${hostname()}`), false, 'a live process');
  assert.equal(deadLocalWorker(`${gone}@some-other-host`), false, 'another host: unknown, left alone');
  assert.equal(deadLocalWorker('kiln-worker'), false);
  assert.equal(deadLocalWorker(undefined), false);
});

test('kiln run train / filter: the id derives from run name + config + dataset version, and from the filter input', async () => {
  const { trainIdentity } = await import('../../cli/commands/train.js');
  const { filterIdentity, filterInputFromFlags } = await import('../../cli/commands/filter.js');
  const { testConfig, tempDir } = await import('../helpers/env.js');
  const dir = tempDir();
  try {
    const config = testConfig(dir.path);
    const base = { dataset: 'web@3', runName: 'r1', chunkSteps: 4, totalSteps: 8, config: { resolution: 16 } };
    const id = trainIdentity(base, config).id;
    assert.match(id, /^train-r1-[0-9a-f]{12}$/);
    assert.equal(trainIdentity({ ...base, dataset: 'web@v3' }, config).id, id, 'web@3 and web@v3 are one version');
    assert.notEqual(trainIdentity({ ...base, dataset: 'web@v4' }, config).id, id, 'another dataset version');
    assert.notEqual(trainIdentity({ ...base, config: { resolution: 32 } }, config).id, id, 'another config');
    assert.notEqual(trainIdentity({ ...base, runName: 'r2' }, config).id, id, 'another run name');
    assert.match(trainIdentity({ ...base, runName: undefined }, config).id, /^train-web-v3-/);
    const flags = { dataset: 'web', fromVersion: 1, clipModel: '/models/clip', threshold: 0.3 };
    const f = filterIdentity(filterInputFromFlags(flags));
    assert.match(f.id, /^filter-web-v1-[0-9a-f]{12}$/);
    assert.equal(filterIdentity(filterInputFromFlags({ ...flags })).id, f.id);
    assert.notEqual(filterIdentity(filterInputFromFlags({ ...flags, threshold: 0.2 })).id, f.id);
    assert.deepEqual(
      changedFields(f.content, filterIdentity(filterInputFromFlags({ ...flags, threshold: 0.2 })).content),
      ['threshold: 0.3 -> 0.2'],
    );
  } finally {
    dir.cleanup();
  }
});
