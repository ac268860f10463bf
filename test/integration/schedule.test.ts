/** `kiln schedule`: create (paused), list, trigger -> a pipeline run completes, pause/unpause, delete. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { PROJECT_ROOT } from '../../infra/config.js';
import { startDevServer } from '../../infra/temporal/server.js';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { startSyntheticWeb } from '../../demo/synthetic-web.js';
import { freePort, tempDir, temporalBinary, testConfig } from '../helpers/env.js';

const KILN = join(PROJECT_ROOT, 'bin', 'kiln.js');

test(
  'a scheduled pipeline runs when triggered, and schedules can be listed, paused and deleted',
  { timeout: 300_000 },
  async () => {
    const dir = tempDir();
    const web = await startSyntheticWeb({ count: 10, seed: 5, faultEvery: 0 });
    const address = `127.0.0.1:${await freePort()}`;
    const dataRoot = join(dir.path, 'data');
    const server = await startDevServer({ binary: temporalBinary(), address, namespace: 'default', dataRoot });
    const kw = await createKilnWorkers(testConfig(dataRoot, address));
    const running = kw.run();
    const env = { ...process.env, KILN_DATA_ROOT: dataRoot, TEMPORAL_ADDRESS: address };
    const kiln = (...args: string[]) =>
      spawnSync(process.execPath, [KILN, ...args], { encoding: 'utf8', env, timeout: 60_000 });
    try {
      writeFileSync(join(dir.path, 'urls.csv'), web.urlListCsv());
      writeFileSync(
        join(dir.path, 'spec.yaml'),
        stringify({
          version: 1,
          name: 'nightly-web',
          sources: [{ path: 'urls.csv' }],
          crawl: { rows_per_shard: 10, image_size: 16, allow_addresses: ['127.0.0.1'] },
        }),
      );
      assert.equal(
        kiln('schedule', 'create', join(dir.path, 'spec.yaml'), '--id', 'nightly', '--every', '1d', '--paused').status,
        0,
      );
      const bad = kiln('schedule', 'create', join(dir.path, 'spec.yaml'), '--id', '../x', '--every', '1d');
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /Fix:/);
      // schedule listing goes through visibility, which may lag a moment behind the create
      let list: { id: string; paused: boolean }[] = [];
      for (let i = 0; i < 20 && list.length === 0; i++) {
        list = JSON.parse(kiln('schedule', 'list', '--json').stdout) as typeof list;
        if (list.length === 0) await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(
        list.map((s) => [s.id, s.paused]),
        [['nightly', true]],
      );
      assert.equal(kiln('schedule', 'trigger', 'nightly').status, 0);

      const conn = await Connection.connect({ address });
      const client = new Client({ connection: conn });
      let result: { stages: { stage: string; status: string; result: { rows: number } }[] } | undefined;
      for (let i = 0; i < 120 && !result; i++) {
        const desc = await client.schedule.getHandle('nightly').describe();
        const wid = desc.info.recentActions[0]?.action.workflow.workflowId;
        if (wid) result = (await client.workflow.getHandle(wid).result()) as typeof result;
        else await new Promise((r) => setTimeout(r, 250));
      }
      await conn.close();
      assert.ok(result, 'the triggered pipeline ran');
      assert.deepEqual(
        result.stages.map((s) => [s.stage, s.status, s.result.rows]),
        [['crawl', 'completed', 10]],
      );

      assert.equal(kiln('schedule', 'unpause', 'nightly').status, 0);
      assert.equal((JSON.parse(kiln('schedule', 'list', '--json').stdout) as { paused: boolean }[])[0]!.paused, false);
      assert.equal(kiln('schedule', 'pause', 'nightly').status, 0);
      assert.equal(kiln('schedule', 'delete', 'nightly').status, 0);
    } finally {
      kw.shutdown();
      await running.catch(() => undefined);
      await server.stop();
      await web.close();
      dir.cleanup();
    }
  },
);
