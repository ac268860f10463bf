/**
 * Committed replay histories (issue 16, part 5): the history of one full execution of every
 * workflow type (test/fixtures/histories/, recorded by `npm run record:histories`) replays against
 * the current workflow code. A change that would break workflows already running in production
 * fails here; guard it with patched() (README "Changing a workflow") instead of re-recording.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import * as workflows from '../../workflows/index.js';
import { HISTORIES_DIR, readHistoryFile, type StoredHistory } from './histories.js';
import { bundleTestWorkflows } from '../helpers/env.js';

describe('committed workflow histories replay against the current code', () => {
  let bundle: WorkflowBundleWithSourceMap;
  const load = (dir: string): StoredHistory[] =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => readHistoryFile(`${dir}/${f}`));
  const stored = load(HISTORIES_DIR);
  /** Recorded with the code before issue 16 (main at b9d51b3, no dedup stage yet): still running somewhere. */
  const older = load(`${HISTORIES_DIR}/before-issue-16`);

  before(async () => {
    bundle = await bundleTestWorkflows(new URL('../../workflows/index.js', import.meta.url));
  });

  it('every workflow type the worker serves has a committed history', () => {
    const types = Object.entries(workflows)
      .filter(([name, v]) => typeof v === 'function' && name.endsWith('Workflow'))
      .map(([name]) => name)
      .sort();
    assert.ok(types.length >= 9, types.join(', '));
    assert.deepEqual(
      stored.map((h) => h.workflowType).sort(),
      types,
      'record the missing ones with npm run record:histories',
    );
  });

  it('each history (current and before issue 16) replays without a determinism error', async () => {
    const all = [...stored, ...older];
    assert.ok(older.length >= 7, 'the histories recorded before issue 16 are there');
    const replayed: string[] = [];
    for await (const r of Worker.runReplayHistories(
      { workflowBundle: bundle },
      all.map((h) => ({ workflowId: h.workflowId, history: h.history })),
    )) {
      assert.equal(r.error, undefined, `${r.workflowId}: ${String(r.error)}`);
      replayed.push(r.workflowId);
    }
    assert.equal(replayed.length, all.length);
  });

  it('a history that no longer matches the code fails the replay (the check is real)', async () => {
    const hello = readHistoryFile(`${HISTORIES_DIR}/helloWorkflow.json`);
    const scheduled = hello.history.events.find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'writeGreeting',
    );
    assert.ok(scheduled, 'the hello history schedules writeGreeting');
    scheduled.activityTaskScheduledEventAttributes!.activityType!.name = 'writeSomethingElse';
    await assert.rejects(
      Worker.runReplayHistory({ workflowBundle: bundle }, hello.history, hello.workflowId),
      DeterminismViolationError,
    );
  });
});
