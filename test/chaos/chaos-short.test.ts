/**
 * The chaos suite's short form, as CI runs it: a worker kill -9'd mid-crawl, during crawl planning
 * (a 20,000-row list; waits out the 1-minute planning heartbeat timeout) and mid-filter, bad
 * inputs, names and manifest shard keys that try to escape the data root. Every trial must PASS. Trials that fail today because
 * of product bugs found by this suite run as `todo` tests (reported, not failing CI) until fixed;
 * chaos/architecture.md lists them. The full form is `npm run chaos` (results in RELIABILITY.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos, formatTable } from '../../chaos/run.js';
import { KNOWN_PRODUCT_BUGS } from '../../chaos/known-bugs.js';

const SHORT = [
  'crawl-kill#1',
  'crawl-plan-kill#1',
  'filter-kill#1',
  'input-not-urls',
  'input-captions',
  'input-corrupt-parquet',
  'input-csv-broken-quoting',
  'path-spec-name-dotdot',
  'path-spec-name-nul',
  'path-spec-run-name-dotdot',
  'path-spec-source-nul',
  'path-workflow-id-dotdot',
  'path-filter-dataset-dotdot',
  'path-manifest-shard-dotdot',
  'disk-unwritable-root',
  'disk-readonly-root',
];

test(
  'chaos short form: kill -9 mid-crawl, mid-planning and mid-filter, bad inputs, escaping names',
  { timeout: 900_000 },
  async () => {
    const results = await runChaos({ short: true, trials: 1, only: SHORT, log: () => undefined });
    const table = formatTable(results);
    assert.equal(results.length, SHORT.length, table);
    for (const r of results) {
      // disk-readonly-root needs `mount` (root); it SKIPs, with the reason, where mounting is not permitted.
      if (!(r.trial === 'disk-readonly-root' && r.outcome === 'SKIP'))
        assert.equal(r.outcome, 'PASS', `${r.trial}: ${r.detail}\n${table}`);
    }
  },
);

for (const [trial, bug] of Object.entries(KNOWN_PRODUCT_BUGS)) {
  // Generous timeout: a timed-out test would leave the trial's server and worker running.
  test(`chaos ${trial}`, { todo: bug, timeout: 420_000 }, async () => {
    const [r] = await runChaos({ short: true, only: [trial], log: () => undefined });
    assert.ok(r, trial);
    // The tmpfs trial may SKIP where mount is not permitted.
    if (!(r.trial === 'disk-full-tmpfs' && r.outcome === 'SKIP'))
      assert.equal(r.outcome, 'PASS', `${r.trial}: ${r.detail}`);
  });
}
