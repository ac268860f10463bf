/**
 * Crawl planning reports progress often enough for a short activity heartbeat timeout (the crawl
 * workflow gives planCrawl 1 minute): every 8 MiB while hashing the input files and every 5,000
 * rows while splitting, even when all rows go into one input shard. The kill-during-planning
 * chaos trial (`crawl-plan-kill`) checks the consequence end to end.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage } from '../../infra/storage.js';
import { HASH_PROGRESS_BYTES, planCrawl, type PlanProgress } from '../../datasets/crawl/plan.js';
import { PROGRESS_EVERY_ROWS } from '../../datasets/input/input-shards.js';
import { tempDir } from '../helpers/env.js';

const tmp = tempDir('kiln-plan-heartbeat-');
after(() => tmp.cleanup());

test('planCrawl reports hashing and splitting progress at a bounded pace', async () => {
  // a.csv: 12,000 short rows; b.csv: 1,200 rows with 8 KiB captions (about 9.6 MiB).
  const a = join(tmp.path, 'a.csv');
  const b = join(tmp.path, 'b.csv');
  writeFileSync(
    a,
    `url,caption\n${Array.from({ length: 12_000 }, (_, i) => `http://127.0.0.1:1/a/${i}.jpg,a ${i}`).join('\n')}\n`,
  );
  writeFileSync(
    b,
    `url,caption\n${Array.from({ length: 1_200 }, (_, i) => `http://127.0.0.1:1/b/${i}.jpg,${String(i).padEnd(8192, 'x')}`).join('\n')}\n`,
  );
  const sizes = [statSync(a).size, statSync(b).size];
  const events: PlanProgress[] = [];
  const { plan } = await planCrawl(
    new LocalStorage(join(tmp.path, 'data')),
    { datasetName: 'hb', sources: [{ path: a }, { path: b }], rowsPerShard: 1_000_000 },
    0,
    (p) => events.push({ ...p }),
  );

  assert.equal(plan.rows, 13_200);
  assert.equal(plan.shardCount, 1);
  assert.deepEqual(
    plan.sources.map((s) => s.sha256),
    [a, b].map((f) => createHash('sha256').update(readFileSync(f)).digest('hex')),
  );

  const hashed = events.filter((e) => e.phase === 'hash').map((e) => e.bytesHashed);
  const total = sizes[0]! + sizes[1]!;
  assert.equal(hashed.at(-1), total);
  assert.ok(
    hashed.some((n) => n > sizes[0]! && n < total),
    `a report while hashing b.csv: ${hashed.join(', ')}`,
  );
  const gaps = [hashed[0]!, ...hashed.slice(1).map((n, i) => n - hashed[i]!)];
  // Reads come in 1 MiB chunks, so a report is at most one chunk later than HASH_PROGRESS_BYTES.
  assert.ok(Math.max(...gaps) <= HASH_PROGRESS_BYTES + 1024 * 1024, `hash gaps ${gaps.join(', ')}`);

  const split = events.filter((e) => e.phase === 'split');
  assert.ok(split.every((e) => e.bytesHashed === total));
  const rows = split.map((e) => e.rows);
  assert.deepEqual(rows, [PROGRESS_EVERY_ROWS, 2 * PROGRESS_EVERY_ROWS]); // 13,200 rows, one shard: no per-shard reports
  assert.ok(
    events.findIndex((e) => e.phase === 'split') > events.findLastIndex((e) => e.phase === 'hash'),
    'hashing reports come first',
  );
});
