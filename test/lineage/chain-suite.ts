/**
 * The hash-chained lineage log on one backend (called by backends.test.ts for SQLite and
 * PostgreSQL): an untouched log verifies with one entry per change, and every kind of tampering
 * with the tables or the log itself is reported.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineageStore } from '../../infra/lineage/store.js';
import type { LineageBackend } from './backend.js';

/** A store with a job, a run, two artifacts, edges and a dataset version; returns its location. */
async function populated(b: LineageBackend): Promise<string> {
  const path = await b.location();
  const s = new LineageStore(path);
  s.startJob({ id: 'job', kind: 'crawl', workflowId: 'job', params: { n: 1 }, codeVersion: 'git:1' });
  s.startRun({ id: 'job/r', jobId: 'job', stage: 'crawl.shard', params: {}, codeVersion: 'git:1' });
  s.recordArtifactOfRun('job/r', 'consumed', {
    uri: 'file:///in.csv',
    kind: 'input',
    sha256: 'a'.repeat(64),
    bytes: 5,
  });
  const m = s.recordArtifactOfRun('job/r', 'produced', {
    uri: 'file:///ds/v1/manifest.json',
    kind: 'manifest',
    sha256: 'b'.repeat(64),
    bytes: 7,
  });
  s.recordDatasetVersion({
    id: 'ds@1',
    name: 'ds',
    version: 1,
    manifestArtifactId: m.id,
    parents: [],
    schemaVersion: 1,
    params: {},
    runId: 'job/r',
  });
  s.finishRun('job/r', 'completed', { rows: 3 });
  s.finishJob('job', 'completed');
  // idempotent repeats add nothing to the log
  s.startJob({ id: 'job', kind: 'crawl', workflowId: 'job', params: { n: 1 }, codeVersion: 'git:1' });
  s.recordArtifactOfRun('job/r', 'produced', {
    uri: 'file:///ds/v1/manifest.json',
    kind: 'manifest',
    sha256: 'b'.repeat(64),
    bytes: 7,
  });
  s.close();
  return path;
}

/** Change the database behind the store's back (as someone with SQL access would), then verify. */
function tamper(path: string, sql: string): ReturnType<LineageStore['verify']> {
  const w = new LineageStore(path);
  w.sql.exec(sql);
  w.close();
  const s = new LineageStore(path);
  try {
    return s.verify();
  } finally {
    s.close();
  }
}

const cases: [string, string, string][] = [
  [
    'an edited row',
    "UPDATE artifacts SET sha256 = 'c' || substr(sha256, 2) WHERE uri = 'file:///in.csv'",
    'row_edited',
  ],
  ['a deleted row', "DELETE FROM dataset_versions WHERE id = 'ds@1'", 'row_deleted'],
  [
    'an inserted row',
    "INSERT INTO jobs (id, kind, workflow_id, status, params_json, code_version, started_at) VALUES ('x','hello','x','running','{}','v','t')",
    'row_unlogged',
  ],
  [
    'an edited log entry',
    "UPDATE lineage_log SET row_json = replace(row_json, 'crawl', 'hello') WHERE seq = 1",
    'chain_broken',
  ],
  ['a deleted log entry', 'DELETE FROM lineage_log WHERE seq = 3', 'chain_broken'],
];
export function chainSuite(b: LineageBackend): void {
  test('an untouched lineage log verifies, one entry per change', async () => {
    const s = new LineageStore(await populated(b));
    const r = s.verify();
    s.close();
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    // job start+finish, run start+finish, 2 artifacts, 2 edges, 1 dataset version
    assert.equal(r.entries, 9);
    assert.equal(r.rows, 7);
  });

  for (const [what, sql, kind] of cases) {
    test(`verify detects ${what}`, async () => {
      const r = tamper(await populated(b), sql);
      assert.equal(r.ok, false);
      assert.ok(
        r.problems.some((p) => p.kind === kind),
        `${kind} in ${JSON.stringify(r.problems)}`,
      );
    });
  }
}
