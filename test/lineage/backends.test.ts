/**
 * The lineage store on both backends: SQLite (a file) and PostgreSQL (a throwaway cluster from
 * scripts/servers/pg-cluster.sh, one per test run). The same records read back, the same schema,
 * idempotent writes, tampering detected, one chain under concurrent writer processes (as from many
 * machines), and `kiln lineage copy` moving a SQLite store into PostgreSQL with both chains
 * verified. The store's own suites run on both too (one PostgreSQL cluster for all of them):
 * store-suite.ts (records, migrations, the seen index), chain-suite.ts (the hash chain and
 * tampering), audit-suite.ts (trace and the OpenLineage export).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { LineageStore } from '../../infra/lineage/store.js';
import { copyLineage, LineageCopyError } from '../../infra/lineage/copy.js';
import { resolveArtifactRef, traceArtifact } from '../../infra/lineage/trace.js';
import { ArtifactConflictError } from '../../infra/errors.js';
import { PROJECT_ROOT } from '../../infra/config.js';
import { tempDir } from '../helpers/env.js';
import { databaseUrl, startPostgres, type TestServer } from '../helpers/servers.js';
import { withStore, type LineageBackend } from './backend.js';
import { storeSuite } from './store-suite.js';
import { chainSuite } from './chain-suite.js';
import { auditSuite } from './audit-suite.js';

let server: TestServer | undefined;
let dbNo = 0;
const cleanups: (() => void)[] = [];
before(async () => {
  server = await startPostgres();
});
after(async () => {
  for (const c of cleanups) c();
  await server?.stop();
});

async function newPgDatabase(): Promise<string> {
  const name = `lineage_${process.pid}_${++dbNo}`;
  const c = new pg.Client({ connectionString: server!.url });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  return databaseUrl(server!.url, name);
}

function newSqlitePath(): string {
  const d = tempDir();
  cleanups.push(d.cleanup);
  return join(d.path, 'lineage.db');
}

const backends: LineageBackend[] = [
  { name: 'sqlite', location: async () => newSqlitePath() },
  { name: 'postgres', location: newPgDatabase },
];

/** A small but complete history: a pipeline job with a stage job, runs, artifacts, edges, a dataset version, seen items. */
function populate(s: LineageStore, opts: { finish?: boolean } = {}): void {
  s.startJob({ id: 'pipe-1', kind: 'pipeline', workflowId: 'pipe-1', params: { spec: 'x' }, codeVersion: 'abc' });
  s.startJob({
    id: 'crawl-1',
    kind: 'crawl',
    workflowId: 'pipe-1/crawl',
    params: { lists: ['a.csv'] },
    codeVersion: 'abc',
  });
  s.setJobParent('crawl-1', 'pipe-1');
  s.startRun({
    id: 'crawl-1/plan',
    jobId: 'crawl-1',
    stage: 'crawl-plan',
    params: { perShard: 10 },
    environment: { node: 'v20' },
    codeVersion: 'abc',
  });
  const list = s.recordArtifactOfRun('crawl-1/plan', 'consumed', {
    uri: 'file:///in/a.csv',
    kind: 'url_list',
    sha256: 'a'.repeat(64),
    bytes: 123,
  });
  const shard = s.recordArtifactOfRun('crawl-1/plan', 'produced', {
    uri: 's3://b/ds/v1/shard-0.parquet',
    kind: 'shard',
    sha256: 'b'.repeat(64),
    bytes: 5_000_000_000,
    metadata: { rows: 10 },
  });
  const manifest = s.recordArtifactOfRun('crawl-1/plan', 'produced', {
    uri: 's3://b/ds/v1/manifest.json',
    kind: 'manifest',
    sha256: 'c'.repeat(64),
    bytes: 77,
  });
  s.recordDatasetVersion({
    id: 'ds@1',
    name: 'ds',
    version: 1,
    manifestArtifactId: manifest.id,
    parents: [],
    schemaVersion: 2,
    params: { t: 0.3 },
    runId: 'crawl-1/plan',
  });
  if (opts.finish !== false) {
    s.finishRun('crawl-1/plan', 'completed', { shards: 1 });
    s.finishJob('crawl-1', 'completed');
  }
  s.recordSeenItems('ds@1', 'crawl-1', [
    { key: 'r0', url: 'http://x/0.jpg', sha256: 'd'.repeat(64) },
    { key: 'r1', url: 'http://x/1.jpg', sha256: null },
  ]);
  assert.ok(list.id < shard.id && shard.id < manifest.id);
}

/** Everything a reader sees, backend-independent. */
function snapshot(s: LineageStore) {
  return {
    // by id: listJobs orders by start time, and two jobs started in the same millisecond tie
    jobs: s
      .listJobs(10)
      .map((j) => ({ ...j, startedAt: '', finishedAt: j.finishedAt && 'set' }))
      .sort((a, b) => a.id.localeCompare(b.id)),
    children: s.childJobs('pipe-1').map((j) => j.id),
    runs: s.runsOfJob('crawl-1').map((r) => ({ ...r, startedAt: '', finishedAt: r.finishedAt && 'set' })),
    produced: s.artifactsOfRun('crawl-1/plan', 'produced').map((a) => ({ ...a, createdAt: '' })),
    consumed: s.artifactsOfRun('crawl-1/plan', 'consumed').map((a) => a.uri),
    dataset: { ...s.getDatasetVersion('ds@1')!, createdAt: '' },
    seen: [
      s.seenItemCount('ds@1'),
      s.seenIndexPosition(),
      s.seenUrl('http://x/0.jpg', 99),
      s.seenImage('d'.repeat(64), 99),
    ],
    latest: s.latestDatasetVersionNumber('ds'),
    trace: ((t) => ({
      runs: t.runs.map((r) => r.id),
      datasets: t.datasetVersions.map((d) => d.id),
      sources: t.sources.map((a) => a.uri),
      code: t.codeVersions,
    }))(traceArtifact(s, resolveArtifactRef(s, 'ds@1')!)),
  };
}

const results = new Map<string, unknown>();
for (const b of backends) {
  describe(`lineage store on ${b.name}`, () => {
    storeSuite(b);
    chainSuite(b);
    auditSuite(b);
    test('records read back as written; rewrites are idempotent; a changed artifact is refused; the chain verifies', () =>
      withStore(b, async (s) => {
        assert.equal(s.backend, b.name);
        populate(s);
        const entries = s.verify().entries;
        populate(s, { finish: false }); // a retried activity records the same things again
        const v = s.verify();
        assert.equal(v.ok, true, JSON.stringify(v.problems));
        assert.equal(v.entries, entries, 'idempotent writes append nothing');
        assert.equal(v.rows, 2 + 1 + 3 + 3 + 1);
        assert.throws(
          () =>
            s.recordArtifact({ uri: 's3://b/ds/v1/manifest.json', kind: 'manifest', sha256: 'e'.repeat(64), bytes: 1 }),
          ArtifactConflictError,
        );
        assert.equal(s.getArtifactByUri('s3://b/ds/v1/shard-0.parquet')!.bytes, 5_000_000_000, 'sizes beyond 32 bits');
        const snap = snapshot(s);
        assert.deepEqual(snap.trace, {
          runs: ['crawl-1/plan'],
          datasets: ['ds@1'],
          sources: ['file:///in/a.csv'],
          code: ['abc'],
        });
        results.set(b.name, snap);
      }));

    test('an edited row and an edited log entry are reported', () =>
      withStore(b, async (s) => {
        populate(s);
        s.sql.prepare("UPDATE runs SET params_json = '{\"perShard\":11}' WHERE id = 'crawl-1/plan'").run();
        let v = s.verify();
        assert.deepEqual(
          v.problems.map((p) => p.kind),
          ['row_edited'],
        );
        s.sql.prepare("UPDATE lineage_log SET row_json = replace(row_json, 'abc', 'abd') WHERE seq = 2").run();
        v = s.verify();
        assert.ok(
          v.problems.some((p) => p.kind === 'chain_broken' && p.seq === 2),
          JSON.stringify(v.problems),
        );
      }));

    test('5 writer processes at once: one unbroken chain, every record once', async () => {
      const loc = await b.location();
      new LineageStore(loc).close(); // migrated once; the writers race on everything else
      const script = fileURLToPath(new URL('./concurrent-writer.js', import.meta.url));
      const writers = 5;
      const count = 30;
      const codes = await Promise.all(
        Array.from(
          { length: writers },
          (_, w) =>
            new Promise<number>((res) => {
              const p = spawn(process.execPath, [script, loc, `w${w}`, String(count)], {
                stdio: ['ignore', 'ignore', 'inherit'],
              });
              p.on('exit', (c) => res(c ?? 1));
            }),
        ),
      );
      assert.deepEqual(codes, Array(writers).fill(0));
      const s = new LineageStore(loc);
      try {
        const v = s.verify();
        assert.equal(v.ok, true, JSON.stringify(v.problems.slice(0, 3)));
        // per writer: job start + finish, and per run: start, artifact, edge, finish
        assert.equal(v.entries, writers * (2 + 4 * count));
        assert.equal(v.rows, writers * (1 + 3 * count));
        const ids = new Set(
          s.sql
            .prepare('SELECT id FROM artifacts')
            .all()
            .map((r) => r.id),
        );
        assert.equal(ids.size, writers * count);
      } finally {
        s.close();
      }
    });
  });
}

test('both backends hold the same records and the same schema', async () => {
  assert.deepEqual(results.get('postgres'), results.get('sqlite'));
  const lite = new LineageStore(newSqlitePath());
  const pgs = new LineageStore(await newPgDatabase());
  try {
    for (const t of ['jobs', 'runs', 'artifacts', 'edges', 'dataset_versions', 'lineage_log', 'seen_items']) {
      const a = lite.sql
        .prepare(`SELECT name FROM pragma_table_info('${t}') ORDER BY name`)
        .all()
        .map((r) => r.name);
      const b = pgs.sql
        .prepare('SELECT column_name AS name FROM information_schema.columns WHERE table_name = ? ORDER BY column_name')
        .all(t)
        .map((r) => r.name);
      assert.deepEqual(b, a, t);
    }
    assert.equal(pgs.schemaVersion(), lite.schemaVersion());
  } finally {
    lite.close();
    pgs.close();
  }
});

test('kiln lineage copy moves a SQLite store into PostgreSQL, verified on both sides; new records continue the chain', async () => {
  const from = newSqlitePath();
  const src = new LineageStore(from);
  populate(src);
  const expected = snapshot(src);
  src.close();
  const to = await newPgDatabase();
  const cli = spawnSync(
    process.execPath,
    [join(PROJECT_ROOT, 'bin', 'kiln.js'), 'lineage', 'copy', '--from', from, '--to', to],
    { encoding: 'utf8' },
  );
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(
    cli.stdout,
    /copied 2 jobs, 1 runs, 3 artifacts, 3 edges, 1 dataset_versions, 13 lineage_log, 2 seen_items/,
  );
  const heads = [...cli.stdout.matchAll(/head ([0-9a-f]{64})/g)].map((m) => m[1]);
  assert.equal(heads.length, 2);
  assert.equal(heads[0], heads[1]);
  const s = new LineageStore(to);
  try {
    assert.deepEqual(snapshot(s), expected);
    s.recordArtifact({ uri: 's3://b/new', kind: 'report', sha256: 'f'.repeat(64), bytes: 1 });
    s.recordSeenItems('ds@1', null, [{ key: 'r2', url: 'http://x/2.jpg', sha256: null }]);
    assert.equal(s.getArtifactByUri('s3://b/new')!.id, 4, 'ids continue after the copied ones');
    assert.equal(s.seenIndexPosition(), 3);
    assert.equal(s.verify().ok, true);
    // a second copy into a non-empty store is refused, naming the fix
    const again = new LineageStore(from);
    try {
      assert.throws(
        () => copyLineage(again, s),
        (e: unknown) => e instanceof LineageCopyError && /not empty/.test(e.message) && /Fix:/.test(e.message),
      );
    } finally {
      again.close();
    }
  } finally {
    s.close();
  }
});

test('an unreachable PostgreSQL store is a clear error naming the fix', () => {
  assert.throws(
    () => new LineageStore('postgres://kiln@127.0.0.1:1/none'),
    (e: unknown) => {
      assert.match((e as Error).message, /cannot reach the PostgreSQL lineage store/);
      assert.match((e as Error).message, /Fix: start PostgreSQL and check KILN_LINEAGE_URL/);
      return true;
    },
  );
});
