import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LineageStore, LineageSchemaError } from '../../infra/lineage/store.js';
import { LATEST_SCHEMA_VERSION } from '../../infra/lineage/migrations.js';
import { ArtifactConflictError } from '../../infra/errors.js';
import { tempDir } from '../helpers/env.js';

function withStore(fn: (s: LineageStore, path: string) => void): void {
  const dir = tempDir();
  const path = join(dir.path, 'lineage.db');
  const s = new LineageStore(path);
  try {
    fn(s, path);
  } finally {
    s.close();
    dir.cleanup();
  }
}

test('opens in WAL mode at the latest schema version', () =>
  withStore((s, path) => {
    assert.equal(s.schemaVersion(), LATEST_SCHEMA_VERSION);
    const db = new Database(path, { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
  }));

test('records a job, its runs, artifacts and edges; starts are idempotent', () =>
  withStore((s) => {
    s.startJob({ id: 'job-1', kind: 'crawl', workflowId: 'job-1', params: { a: 1 }, codeVersion: 'git:abc' });
    s.startJob({ id: 'job-1', kind: 'crawl', workflowId: 'job-1', params: { a: 1 }, codeVersion: 'git:abc' });
    assert.equal(s.listJobs().length, 1);
    s.startRun({
      id: 'job-1/crawl/shard-0',
      jobId: 'job-1',
      stage: 'crawl.shard',
      params: { shard: 0 },
      codeVersion: 'git:abc',
    });
    const input = s.recordArtifactOfRun('job-1/crawl/shard-0', 'consumed', {
      uri: 'file:///in.csv',
      kind: 'input',
      sha256: 'aa',
      bytes: 10,
    });
    const out = s.recordArtifactOfRun('job-1/crawl/shard-0', 'produced', {
      uri: 'file:///out.parquet',
      kind: 'shard',
      sha256: 'bb',
      bytes: 20,
    });
    // a retried activity records the same things again: no duplicates
    s.startRun({
      id: 'job-1/crawl/shard-0',
      jobId: 'job-1',
      stage: 'crawl.shard',
      params: { shard: 0 },
      codeVersion: 'git:abc',
    });
    s.recordArtifactOfRun('job-1/crawl/shard-0', 'produced', {
      uri: 'file:///out.parquet',
      kind: 'shard',
      sha256: 'bb',
      bytes: 20,
    });
    s.finishRun('job-1/crawl/shard-0', 'completed', { rows: 5 });
    s.finishJob('job-1', 'completed');
    assert.equal(s.getJob('job-1')?.status, 'completed');
    assert.equal(s.getJob('job-1')?.codeVersion, 'git:abc');
    assert.deepEqual(s.getRun('job-1/crawl/shard-0')?.result, { rows: 5 });
    assert.deepEqual(
      s.artifactsOfRun('job-1/crawl/shard-0', 'produced').map((a) => a.uri),
      ['file:///out.parquet'],
    );
    assert.deepEqual(
      s.artifactsOfRun('job-1/crawl/shard-0', 'consumed').map((a) => a.id),
      [input.id],
    );
    assert.deepEqual(
      s.runsOfArtifact(out.id).map((r) => r.id),
      ['job-1/crawl/shard-0'],
    );
    assert.deepEqual(
      s.artifactsBySha256('bb').map((a) => a.uri),
      ['file:///out.parquet'],
    );
  }));

test('an artifact is immutable: a different hash under the same uri is a conflict', () =>
  withStore((s) => {
    s.recordArtifact({ uri: 'file:///x', kind: 'k', sha256: 'aa', bytes: 1 });
    assert.throws(
      () => s.recordArtifact({ uri: 'file:///x', kind: 'k', sha256: 'cc', bytes: 1 }),
      ArtifactConflictError,
    );
  }));

test('dataset versions are numbered per name and keep their parents', () =>
  withStore((s) => {
    const m1 = s.recordArtifact({ uri: 'file:///ds/v1/manifest.json', kind: 'manifest', sha256: '11', bytes: 1 });
    const m2 = s.recordArtifact({ uri: 'file:///ds/v2/manifest.json', kind: 'manifest', sha256: '22', bytes: 1 });
    assert.equal(s.latestDatasetVersionNumber('ds'), 0);
    s.recordDatasetVersion({
      id: 'ds@1',
      name: 'ds',
      version: 1,
      manifestArtifactId: m1.id,
      parents: [],
      schemaVersion: 1,
      params: {},
      runId: null,
    });
    s.recordDatasetVersion({
      id: 'ds@2',
      name: 'ds',
      version: 2,
      manifestArtifactId: m2.id,
      parents: ['ds@1'],
      schemaVersion: 1,
      params: { threshold: 0.25 },
      runId: null,
    });
    assert.equal(s.latestDatasetVersionNumber('ds'), 2);
    assert.deepEqual(s.getDatasetVersion('ds@2')?.parents, ['ds@1']);
    assert.deepEqual(
      s.datasetVersions('ds').map((d) => d.id),
      ['ds@1', 'ds@2'],
    );
  }));

test('a database from a newer Kiln is refused with a clear error', () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'lineage.db');
    new LineageStore(path).close();
    const db = new Database(path);
    db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)').run(
      999,
      'future',
      'now',
    );
    db.close();
    assert.throws(
      () => new LineageStore(path),
      (err: unknown) =>
        err instanceof LineageSchemaError && /schema version 999/.test(err.message) && /Fix:/.test(err.message),
    );
  } finally {
    dir.cleanup();
  }
});

test('reopening keeps data and applies no migration twice', () => {
  const dir = tempDir();
  try {
    const path = join(dir.path, 'lineage.db');
    const a = new LineageStore(path);
    a.startJob({ id: 'j', kind: 'hello', workflowId: 'j', params: null, codeVersion: 'v' });
    a.close();
    const b = new LineageStore(path);
    assert.equal(b.getJob('j')?.kind, 'hello');
    assert.equal(b.schemaVersion(), LATEST_SCHEMA_VERSION);
    b.close();
  } finally {
    dir.cleanup();
  }
});

test('stage jobs point at their pipeline job, and the link is in the verified chain', () =>
  withStore((s) => {
    s.startJob({ id: 'pipe', kind: 'pipeline', workflowId: 'pipe', params: {}, codeVersion: 'v' });
    s.startJob({ id: 'pipe.crawl', kind: 'crawl', workflowId: 'pipe/crawl', params: {}, codeVersion: 'v' });
    s.setJobParent('pipe.crawl', 'pipe');
    s.setJobParent('pipe.crawl', 'pipe');
    assert.deepEqual(
      s.childJobs('pipe').map((j) => j.id),
      ['pipe.crawl'],
    );
    assert.equal(s.getJob('pipe.crawl')?.parentJobId, 'pipe');
    assert.equal(s.verify().ok, true);
  }));
