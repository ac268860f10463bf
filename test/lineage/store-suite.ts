/**
 * The lineage store's records on one backend (called by backends.test.ts for SQLite and PostgreSQL):
 * migrations, idempotent starts, immutable artifacts, dataset versions, a newer schema refused,
 * reopening, stage-job parents, a retried run's environment, and the incremental-curation index
 * written in batches.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { LineageStore, LineageSchemaError } from '../../infra/lineage/store.js';
import { LATEST_SCHEMA_VERSION } from '../../infra/lineage/migrations.js';
import { ArtifactConflictError } from '../../infra/errors.js';
import { withStore, type LineageBackend } from './backend.js';

export function storeSuite(b: LineageBackend): void {
  test('opens at the latest schema version (SQLite: in WAL mode)', () =>
    withStore(b, (s, location) => {
      assert.equal(s.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.equal(s.backend, b.name);
      if (b.name === 'sqlite') {
        const db = new Database(location, { readonly: true });
        assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
        db.close();
      }
    }));

  test('records a job, its runs, artifacts and edges; starts are idempotent', () =>
    withStore(b, (s) => {
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
    withStore(b, (s) => {
      s.recordArtifact({ uri: 'file:///x', kind: 'k', sha256: 'aa', bytes: 1 });
      assert.throws(
        () => s.recordArtifact({ uri: 'file:///x', kind: 'k', sha256: 'cc', bytes: 1 }),
        ArtifactConflictError,
      );
    }));

  test('dataset versions are numbered per name and keep their parents', () =>
    withStore(b, (s) => {
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

  test('a database from a newer Kiln is refused with a clear error', async () => {
    const location = await b.location();
    const s = new LineageStore(location);
    s.sql
      .prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)')
      .run(999, 'future', 'now');
    s.close();
    assert.throws(
      () => new LineageStore(location),
      (err: unknown) =>
        err instanceof LineageSchemaError && /schema version 999/.test(err.message) && /Fix:/.test(err.message),
    );
  });

  test('reopening keeps data and applies no migration twice', async () => {
    const location = await b.location();
    const a = new LineageStore(location);
    a.startJob({ id: 'j', kind: 'hello', workflowId: 'j', params: null, codeVersion: 'v' });
    a.close();
    const s = new LineageStore(location);
    try {
      assert.equal(s.getJob('j')?.kind, 'hello');
      assert.equal(s.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.equal(s.sql.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get()!.n, LATEST_SCHEMA_VERSION);
    } finally {
      s.close();
    }
  });

  test('stage jobs point at their pipeline job, and the link is in the verified chain', () =>
    withStore(b, (s) => {
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

  test('startRun: first vs latest environment of a retried run', () =>
    withStore(b, async (s) => {
      const base = { jobId: null, stage: 'crawl.shard', params: { i: 1 }, codeVersion: 'git:x' };
      s.startRun({ ...base, id: 'keep', environment: { attempt: 1 } });
      s.startRun({ ...base, id: 'keep', environment: { attempt: 2 } }); // attempt 1 died: still `running`
      assert.deepEqual(s.getRun('keep')!.environment, { attempt: 1 });

      s.startRun(
        { ...base, id: 'latest', environment: { attempt: 1, imageCodec: 'libjpeg-turbo' } },
        { environment: 'latest' },
      );
      s.startRun(
        { ...base, id: 'latest', environment: { attempt: 3, imageCodec: 'sharp', nativeJpeg: 'off' } },
        { environment: 'latest' },
      );
      assert.deepEqual(s.getRun('latest')!.environment, { attempt: 3, imageCodec: 'sharp', nativeJpeg: 'off' });
      s.finishRun('latest', 'failed', undefined, 'boom');
      s.startRun({ ...base, id: 'latest', environment: { attempt: 4 } }, { environment: 'latest' });
      assert.equal(s.getRun('latest')!.status, 'running');
      assert.deepEqual(s.getRun('latest')!.environment, { attempt: 4 });
      s.finishRun('latest', 'completed', { rows: 1 });
      // A completed run is never rewritten.
      s.startRun({ ...base, id: 'latest', environment: { attempt: 5 } }, { environment: 'latest' });
      assert.deepEqual([s.getRun('latest')!.status, s.getRun('latest')!.environment], ['completed', { attempt: 4 }]);
      assert.equal(s.verify().ok, true);
    }));

  test("the seen index takes a crawl's rows in batches: every new row once, repeats ignored", () =>
    withStore(b, (s) => {
      const items = (from: number, to: number) =>
        Array.from({ length: to - from }, (_, i) => ({
          key: `r${from + i}`,
          url: `http://x/${from + i}.jpg`,
          sha256: (from + i) % 3 === 0 ? null : String(from + i).padStart(64, '0'),
        }));
      assert.equal(s.recordSeenItems('ds@1', 'crawl-1', items(0, 1203)), 1203);
      const first = s.seenIndexPosition();
      // a retried shard: 3 rows already there, 1,000 new ones (spanning batch boundaries)
      assert.equal(s.recordSeenItems('ds@1', 'crawl-1', items(1200, 2203)), 1000);
      assert.equal(s.recordSeenItems('ds@1', 'crawl-1', []), 0);
      assert.equal(s.seenItemCount('ds@1'), 2203);
      const second = s.seenIndexPosition();
      assert.ok(second >= first + 1000, `position ${first} -> ${second}`);
      assert.equal(s.seenUrl('http://x/1202.jpg', first), 'ds@1');
      assert.equal(s.seenUrl('http://x/2202.jpg', first), undefined, 'not yet there as of the first position');
      assert.equal(s.seenUrl('http://x/2202.jpg', second), 'ds@1');
      assert.equal(s.seenImage(String(2201).padStart(64, '0'), second), 'ds@1');
      assert.equal(s.seenImage(String(2202).padStart(64, '0'), second), undefined, 'rows without an image hash');
    }));
}
