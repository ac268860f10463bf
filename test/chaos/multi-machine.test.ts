/**
 * A short form of the multi-machine trial (issue 17; chaos/multi-machine-trial.ts, full form in
 * RELIABILITY.md): two `kiln worker` processes with separate scratch and cache directories share
 * only a Temporal dev server, moto's S3 (data root and the model directories) and PostgreSQL
 * (lineage); worker A is killed -9 mid-crawl and worker B mid-training. Every row once in both
 * dataset versions, checkpoints equal to a one-worker run, lineage verify clean and the same trace
 * from either machine. Part of `npm test` (74-213 s on the shared 2-core machine: servers, worker
 * starts, heartbeat timeouts and the reference training dominate; the row count hardly matters);
 * alone: `npm run test:multi-machine`. Past 420 s (KILN_MULTI_MACHINE_DEADLINE_S) it fails, printing
 * every workflow's status, pending activities with attempts and last failure, and each worker's state
 * and log tail (chaos/stuck-report.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MULTI_TEST, multiMachineTrial } from '../../chaos/multi-machine-trial.js';

test(
  'multi-machine trial, short form: 120 rows, kill -9 of A mid-crawl and of B mid-training',
  { timeout: 600_000 },
  async () => {
    // Past the deadline the trial fails and prints what it waited for (workflows, pending activities, workers).
    const deadlineS = Number(process.env.KILN_MULTI_MACHINE_DEADLINE_S ?? MULTI_TEST.deadlineMs / 1000);
    const r = await multiMachineTrial({ ...MULTI_TEST, deadlineMs: deadlineS * 1000 }).run();
    assert.equal(r.outcome, 'PASS', `${r.action}: ${r.detail}`);
    assert.match(r.action, /kill -9 A mid-crawl \(crawl\)/, 'A died while the crawl ran');
    assert.match(r.action, /kill -9 B mid-training \(train\)/, 'B died while training ran');
    assert.match(r.detail, /multi@v1: 120 rows/);
    assert.match(r.detail, /checkpoint files equal to the one-worker run/);
  },
);
