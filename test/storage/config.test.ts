/** Data roots and lineage stores from the environment: what many machines set, and the errors when it is incomplete. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../infra/config.js';
import { ConfigError } from '../../infra/errors.js';
import { openStorage } from '../../infra/storage-open.js';
import { S3Storage, parseS3Uri } from '../../infra/storage-s3.js';
import { LocalStorage } from '../../infra/storage.js';

test('an s3:// data root with a PostgreSQL lineage URL: S3 storage, the URL as the store, a local scratch dir', () => {
  const c = loadConfig(
    {},
    {
      KILN_DATA_ROOT: 's3://kiln-data/team/a',
      KILN_LINEAGE_URL: 'postgres://kiln@db:5432/lineage',
      KILN_SCRATCH_DIR: '/tmp/scratch',
    },
  );
  assert.equal(c.dataRoot, 's3://kiln-data/team/a');
  assert.equal(c.lineagePath, 'postgres://kiln@db:5432/lineage');
  assert.equal(c.localRoot, '/tmp/scratch');
  const s = openStorage(c.dataRoot);
  assert.ok(s instanceof S3Storage);
  assert.equal(s.rootUri, 's3://kiln-data/team/a/');
  assert.equal(s.uri('ds', 'v1', 'manifest.json'), 's3://kiln-data/team/a/ds/v1/manifest.json');
});

test('a local data root keeps lineage.db inside it unless KILN_LINEAGE_URL says otherwise', () => {
  const c = loadConfig({}, { KILN_DATA_ROOT: '/tmp/kiln-root' });
  assert.equal(c.lineagePath, '/tmp/kiln-root/lineage.db');
  assert.equal(c.localRoot, '/tmp/kiln-root');
  assert.ok(openStorage(c.dataRoot) instanceof LocalStorage);
  assert.equal(
    loadConfig({}, { KILN_DATA_ROOT: '/tmp/kiln-root', KILN_LINEAGE_URL: 'postgresql://u@h/db' }).lineagePath,
    'postgresql://u@h/db',
  );
});

test('an s3:// data root without KILN_LINEAGE_URL is refused with the fix', () => {
  assert.throws(
    () => loadConfig({}, { KILN_DATA_ROOT: 's3://kiln-data/x' }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /SQLite lineage file cannot live/);
      assert.match(e.message, /Fix: set KILN_LINEAGE_URL=postgres:\/\//);
      return true;
    },
  );
});

test('malformed s3:// roots name the expected form', () => {
  for (const bad of ['s3://', 's3://A_Bucket/x', 's3://ab', 's3://bucket/../x', 's3://bucket/a b']) {
    assert.throws(
      () => parseS3Uri(bad),
      (e: unknown) => /Fix:/.test((e as Error).message),
      bad,
    );
  }
});
