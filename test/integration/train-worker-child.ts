/**
 * Child process for train.test.ts: a kiln-gpu worker (the real train activities) that prints
 * "step N" after every training step and stalls at step `stallAt`, so the parent can SIGKILL it in
 * the middle of a chunk. Args: dataRoot temporalAddress stallAt.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivityDeps, installRuntime } from '../../infra/temporal/worker.js';
import { createTrainActivities } from '../../activities/train.js';
import { GPU_QUEUE } from '../../workflows/queues.js';
import { testConfig } from '../helpers/env.js';

const [dataRoot, address, stallAt] = process.argv.slice(2);
installRuntime();
const config = testConfig(dataRoot!, address);
const connection = await NativeConnection.connect({ address: config.temporalAddress });
const deps = createActivityDeps(config);
const worker = await Worker.create({
  connection,
  namespace: config.namespace,
  taskQueue: GPU_QUEUE,
  activities: createTrainActivities(deps, {
    onStep: async (p) => {
      process.stdout.write(`step ${p.step}\n`);
      if (p.step === Number(stallAt)) await new Promise((resolve) => setTimeout(resolve, 600_000));
    },
  }),
});
process.stdout.write('ready\n');
await worker.run();
