/**
 * Incremental-curation index throughput: `recordSeenItems` (what a crawl's final step calls once per
 * shard with its success rows) on SQLite and on PostgreSQL (a throwaway cluster from
 * scripts/servers/pg-cluster.sh on loopback), against the one-INSERT-per-row way it was written
 * before (the same statement per row inside one transaction: one round trip per row on PostgreSQL).
 * Prints rows/s per backend and way; the two alternate, so machine load hits both alike.
 *
 *   npm run -s build && flock /tmp/kiln-bench.lock node dist/bench/lineage-seen.js [--shards 20] [--rows 1000]
 */
import { join } from 'node:path';
import { sha256Hex } from '../infra/hash.js';
import { LineageStore } from '../infra/lineage/store.js';
import { startPostgres } from '../test/helpers/servers.js';
import { tempDir } from '../test/helpers/env.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const shards = arg('shards', 20);
const rows = arg('rows', 1000);

type Item = { key: string; url: string; sha256: string | null };

/** The way recordSeenItems was written before batching: one INSERT per row in one transaction. */
function perRow(store: LineageStore, datasetId: string, items: Item[]): number {
  const insert = store.sql.prepare(
    'INSERT INTO seen_items (dataset_id, row_key, url_sha256, image_sha256, job_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
  );
  let n = 0;
  store.transaction(() => {
    for (const it of items) n += insert.run(datasetId, it.key, sha256Hex(it.url), it.sha256, 'bench').changes;
  });
  return n;
}

function measure(name: string, store: LineageStore, way: 'per-row' | 'batched', round: number): void {
  const datasetId = `bench-${way}@${round}`;
  const t0 = process.hrtime.bigint();
  let added = 0;
  for (let s = 0; s < shards; s++) {
    const items: Item[] = Array.from({ length: rows }, (_, i) => ({
      key: `${s}-${i}`,
      url: `http://127.0.0.1/img/${round}/${s}/${i}.jpg`,
      sha256: sha256Hex(`${round}/${s}/${i}`),
    }));
    added += way === 'batched' ? store.recordSeenItems(datasetId, 'bench', items) : perRow(store, datasetId, items);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (added !== shards * rows) throw new Error(`${name}: ${added} rows added, expected ${shards * rows}`);
  console.log(
    `${name.padEnd(9)} ${way.padEnd(8)} ${added} rows in ${seconds.toFixed(2)} s: ${Math.round(added / seconds)} rows/s (${shards} calls of ${rows})`,
  );
}

function compare(name: string, store: LineageStore): void {
  for (let round = 1; round <= 3; round++) {
    measure(name, store, 'per-row', round);
    measure(name, store, 'batched', round);
  }
}

const dir = tempDir('kiln-bench-seen-');
const pg = await startPostgres();
try {
  const sqlite = new LineageStore(join(dir.path, 'lineage.db'));
  compare('sqlite', sqlite);
  sqlite.close();
  const store = new LineageStore(pg.url);
  compare('postgres', store);
  store.close();
} finally {
  await pg.stop();
  dir.cleanup();
}
