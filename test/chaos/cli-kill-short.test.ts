/**
 * Issue 19's trial in CI's short form: one `cli-kill-<stage>#1` per stage. `kill -9` of `kiln run
 * spec.yaml` itself (its embedded Temporal server and in-process worker die with it) mid-crawl,
 * mid-filter and mid-training, then the same command again. Each must PASS: the same job, every row
 * exactly once, no second dataset version, training resumed to weights byte-identical to an
 * uninterrupted run, nothing left running, lineage verifies (chaos/cli-kill-trials.ts). A FAIL keeps
 * the trial's sandbox (both runs' output, the server's history database) and names it in the message.
 * The full form (5 per stage) is `node dist/chaos/run.js --only cli-kill-crawl,cli-kill-filter,cli-kill-train`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../chaos/run.js';

for (const stage of ['crawl', 'filter', 'train'] as const) {
  test(
    `chaos cli-kill-${stage}#1: kill -9 of kiln run mid-${stage}, then the same command`,
    { timeout: 600_000 },
    async () => {
      const [r] = await runChaos({ short: true, trials: 1, only: [`cli-kill-${stage}#1`], log: () => undefined });
      assert.ok(r, `cli-kill-${stage}#1 is in the trial list`);
      assert.equal(r.outcome, 'PASS', `${r.trial}: ${r.action} -> ${r.detail}`);
    },
  );
}
