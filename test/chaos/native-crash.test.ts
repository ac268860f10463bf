/**
 * Short form of the chaos trial `crawl-native-abort#1` (chaos/native-crash-trial.ts), as CI runs it:
 * a real `kiln worker` process crawls 12 rows through the crawl workflow on a real Temporal dev
 * server; one image aborts the worker in the native JPEG addon (test-only switch); the worker is
 * restarted after each death; the crawl completes with every row once and the poison row by sharp
 * (about 25 s). SKIPs, with the reason, where the addon is not built.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos, formatTable } from '../../chaos/run.js';

test(
  'chaos: a poison JPEG that aborts the worker in native code does not stop the crawl',
  { timeout: 300_000 },
  async (t) => {
    const results = await runChaos({ short: true, only: ['crawl-native-abort#1'], log: () => undefined });
    const table = formatTable(results);
    assert.equal(results.length, 1, table);
    const [r] = results;
    if (r!.outcome === 'SKIP') return t.skip(r!.detail);
    assert.equal(r!.outcome, 'PASS', `${r!.detail}\n${table}`);
    assert.match(r!.detail, /worker deaths: SIGABRT, SIGABRT/);
  },
);
