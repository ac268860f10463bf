/** Queue names as workflow code sees them (workflows/queues.ts) equal infra's (infra/constants.ts). */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { TASK_QUEUES, WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { GPU_QUEUE, IO_QUEUE } from '../../workflows/queues.js';

it('workflows/queues.ts and infra/constants.ts name the same task queues', () => {
  assert.equal(IO_QUEUE, TASK_QUEUES.io);
  assert.equal(GPU_QUEUE, TASK_QUEUES.gpu);
  assert.equal(WORKFLOW_TASK_QUEUE, IO_QUEUE, 'workflows run on the io queue');
});
