/**
 * Stop the Temporal dev server in the middle of a workflow (during its durable timer), start it
 * again on the same SQLite file, and see the workflow complete: nothing is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startDevServer } from '../../infra/temporal/server.js';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { freePort, tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';

test('a workflow survives a Temporal server restart', { timeout: 180_000 }, async () => {
  const dir = tempDir();
  const address = `127.0.0.1:${await freePort()}`;
  const config = testConfig(dir.path, address);
  const dbFile = join(dir.path, 'temporal', 'temporal.db');
  const serverOpts = { binary: temporalBinary(), address, namespace: 'default', dataRoot: dir.path, dbFile };
  let server = await startDevServer(serverOpts);
  const kw = await createKilnWorkers(config);
  const running = kw.run();
  const workflowId = uniqueId('hello-restart');
  try {
    let conn = await Connection.connect({ address });
    let client = new Client({ connection: conn });
    await client.workflow.start('helloWorkflow', {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId,
      args: [{ message: 'survive', pauseMs: 6000 }],
    });
    // wait until the first step is done and the workflow sits on its durable timer
    for (let i = 0; i < 200; i++) {
      const p = await client.workflow
        .getHandle(workflowId)
        .query<{ phase: string }>('progress')
        .catch(() => null);
      if (p?.phase === 'waiting') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((await client.workflow.getHandle(workflowId).query<{ phase: string }>('progress')).phase, 'waiting');
    await conn.close();

    await server.stop();
    await new Promise((r) => setTimeout(r, 1500));
    server = await startDevServer(serverOpts);

    conn = await Connection.connect({ address });
    client = new Client({ connection: conn });
    const result = (await client.workflow.getHandle(workflowId).result()) as { summary: { sha256: string } };
    assert.match(result.summary.sha256, /^[0-9a-f]{64}$/);
    await conn.close();

    const lineage = new LineageStore(config.lineagePath);
    try {
      assert.equal(lineage.getJob(workflowId)?.status, 'completed');
      assert.equal(lineage.runsOfJob(workflowId).length, 2);
    } finally {
      lineage.close();
    }
  } finally {
    kw.shutdown();
    await running.catch(() => undefined);
    await server.stop();
    dir.cleanup();
  }
});
