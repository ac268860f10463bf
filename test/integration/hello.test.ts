/**
 * The hello stage end to end through a real Temporal dev server (TestWorkflowEnvironment.createLocal
 * running the project's temporal binary, never a download), a real worker and a real lineage file.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';

let env: TestWorkflowEnvironment;
const dir = tempDir();

before(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalBinary() } },
  });
});
after(async () => {
  await env?.teardown();
  dir.cleanup();
});

async function withWorker<T>(fn: () => Promise<T>): Promise<T> {
  const config = testConfig(dir.path, env.address);
  const kw = await createKilnWorkers(config, { connection: env.nativeConnection });
  return kw.runUntil(fn());
}

test('helloWorkflow writes both artifacts and records job, runs, artifacts and edges', async () => {
  const workflowId = uniqueId('hello');
  const result = (await withWorker(() =>
    env.client.workflow.execute('helloWorkflow', {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId,
      args: [{ message: 'durable hello' }],
    }),
  )) as {
    jobId: string;
    greeting: { uri: string; sha256: string; bytes: number };
    summary: { uri: string; sha256: string };
  };

  assert.equal(result.jobId, workflowId);
  const greeting = readFileSync(fileURLToPath(result.greeting.uri));
  assert.equal(greeting.toString(), 'durable hello\n');
  assert.equal(result.greeting.sha256, createHash('sha256').update(greeting).digest('hex'));
  assert.equal(result.greeting.bytes, greeting.byteLength);

  const lineage = new LineageStore(testConfig(dir.path).lineagePath);
  try {
    const job = lineage.getJob(workflowId)!;
    assert.equal(job.status, 'completed');
    assert.deepEqual(job.params, { message: 'durable hello' });
    assert.ok(job.codeVersion.length > 0);
    const runs = lineage.runsOfJob(workflowId);
    assert.deepEqual(
      runs.map((r) => [r.stage, r.status]),
      [
        ['hello.greeting', 'completed'],
        ['hello.summary', 'completed'],
      ],
    );
    const summaryRun = runs[1]!;
    assert.deepEqual(
      lineage.artifactsOfRun(summaryRun.id, 'consumed').map((a) => a.sha256),
      [result.greeting.sha256],
    );
    assert.deepEqual(
      lineage.artifactsOfRun(summaryRun.id, 'produced').map((a) => a.sha256),
      [result.summary.sha256],
    );
  } finally {
    lineage.close();
  }
});

test('bad input fails the workflow with a non-retryable ConfigError and no artifact', async () => {
  const workflowId = uniqueId('hello-bad');
  await withWorker(async () => {
    await assert.rejects(
      env.client.workflow.execute('helloWorkflow', {
        taskQueue: WORKFLOW_TASK_QUEUE,
        workflowId,
        args: [{ message: '' }],
      }),
      (err: unknown) => err instanceof WorkflowFailedError && /non-empty string/.test(String(err.cause?.message)),
    );
  });
});
