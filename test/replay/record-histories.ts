/**
 * Records the committed replay histories (`npm run record:histories`): runs one full pipeline
 * (crawl -> dedup -> filter with keep-top-fraction -> train with evaluation) on a synthetic local
 * web with the tiny test models, plus the hello stage, against a fresh local Temporal server and the
 * real worker, then writes the history of one execution of every workflow type to
 * test/fixtures/histories/<type>.json. Run it only when a workflow change is meant to break replay
 * (and guard the change with patched() first; see README "Changing a workflow"); replay.test.ts
 * replays these files against the current code in CI.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { loadConfig } from '../../infra/config.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { findTemporalBinary } from '../../infra/temporal/binary.js';
import { startSyntheticWeb } from '../../demo/synthetic-web.js';
import { demoSpec } from '../../cli/commands/demo.js';
import { pipelineSpecSchema } from '../../cli/spec/schema.js';
import { pipelineInputFromSpec } from '../../cli/spec/to-input.js';
import { HISTORIES_DIR, historyFile, historyFileText } from './histories.js';

const tmp = mkdtempSync(join(tmpdir(), 'kiln-histories-'));
const env = await TestWorkflowEnvironment.createLocal({
  server: { executable: { type: 'existing-path', path: findTemporalBinary() } },
});
const web = await startSyntheticWeb({ count: 40, seed: 1 });
try {
  const config = loadConfig({ dataRoot: join(tmp, 'data'), temporalAddress: env.address, namespace: 'default' }, {});
  const urlList = join(tmp, 'urls.csv');
  writeFileSync(urlList, web.urlListCsv());
  const base = demoSpec({ urlList, steps: 4 }) as Record<string, Record<string, unknown>>;
  const spec = pipelineSpecSchema.parse({
    ...base,
    name: 'replay',
    dedup: true,
    crawl: { ...base.crawl, rows_per_shard: 16 },
    train: { ...base.train, run_name: 'replay-run', total_steps: 4, chunk_steps: 2 },
    eval: { ...base.eval, every_steps: 2, patience: 1 },
  });
  const kw = await createKilnWorkers(config, { connection: env.nativeConnection });
  await kw.runUntil(
    (async () => {
      await env.client.workflow.execute('pipelineWorkflow', {
        taskQueue: WORKFLOW_TASK_QUEUE,
        workflowId: 'replay-pipeline',
        args: [pipelineInputFromSpec(spec)],
      });
      await env.client.workflow.execute('helloWorkflow', {
        taskQueue: WORKFLOW_TASK_QUEUE,
        workflowId: 'replay-hello',
        args: [{ message: 'hi', pauseMs: 10 }],
      });
    })(),
  );
  mkdirSync(HISTORIES_DIR, { recursive: true });
  const written = new Set<string>();
  for await (const w of env.client.workflow.list()) {
    if (written.has(w.type) || w.status.name !== 'COMPLETED') continue;
    const history = await env.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
    writeFileSync(historyFile(w.type), historyFileText(w.workflowId, w.type, history));
    written.add(w.type);
  }
  process.stdout.write(`wrote ${[...written].sort().join(', ')} to ${HISTORIES_DIR}\n`);
} finally {
  await web.close();
  await env.teardown();
  rmSync(tmp, { recursive: true, force: true });
}
