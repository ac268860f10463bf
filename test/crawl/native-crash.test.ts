/**
 * A shard whose attempts die with their process in the native JPEG addon: real child processes
 * crawl the shard with the addon's test-only abort switch (KILN_TEST_NATIVE_ABORT_BYTES = the
 * poison JPEG's length), abort (SIGABRT) twice, and the third attempt reads the attempt journal,
 * crawls with sharp for every row, and writes every input row exactly once, the poison row a
 * success with sharp's exact bytes. No Temporal here: test/chaos/native-crash.test.ts runs the
 * same through a real worker and a crawl workflow.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LocalStorage } from '../../infra/storage.js';
import { nativeJpeg } from '../../infra/imaging/native-jpeg.js';
import { planCrawl } from '../../datasets/crawl/plan.js';
import { crawlShardToParquet, findFinishedShard } from '../../datasets/crawl/crawl-shard.js';
import {
  ShardAttemptJournal,
  shardCodecDecision,
  decideCodec,
  type AttemptStart,
} from '../../datasets/crawl/attempts.js';
import { resolveCrawlOptions } from '../../datasets/crawl/options.js';
import { processImage } from '../../datasets/crawl/image.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import { hostname } from 'node:os';
import { spawnSync } from 'node:child_process';
import { tempDir } from '../helpers/env.js';
import { startFixtureServer, type FixtureServer } from './fixture-server.js';
import { TEST_CRAWL_OPTIONS, writeJsonl } from './helpers.js';

describe('a shard whose attempts die in native code', () => {
  let server: FixtureServer;
  const tmp = tempDir('kiln-native-crash-');
  before(async () => {
    server = await startFixtureServer();
  });
  after(async () => {
    await server.close();
    tmp.cleanup();
  });

  it(
    'is retried with sharp after two dead attempts; every row once, the poison row by sharp',
    { skip: nativeJpeg ? false : 'native JPEG addon not built', timeout: 120_000 },
    async () => {
      const dataRoot = `${tmp.path}/data`;
      const storage = new LocalStorage(dataRoot);
      const poison = server.images.find((im) => im.path === '/img/portrait.jpg')!;
      assert.equal(
        server.images.filter((im) => im.bytes.length === poison.bytes.length).length,
        1,
        'the poison length is unique',
      );
      const paths = [
        '/img/landscape.jpg',
        '/img/square.png',
        poison.path,
        '/img/exact.jpg',
        '/img/wide.webp',
        '/missing.jpg',
      ];
      const list = writeJsonl(
        tmp.path,
        'urls.jsonl',
        paths.map((p, i) => ({ url: `${server.baseUrl}${p}`, caption: `c${i}` })),
      );
      const options = { ...TEST_CRAWL_OPTIONS, concurrency: 4 };
      const { plan } = await planCrawl(storage, { datasetName: 'poison', sources: [{ path: list }], options }, 0);
      const layout = new DatasetLayout(storage, 'poison', plan.version);

      const attemptInChild = () => {
        const child = spawn(
          process.execPath,
          [
            fileURLToPath(new URL('./kill-child.js', import.meta.url)),
            dataRoot,
            'poison',
            String(plan.version),
            '0',
            JSON.stringify(options),
            JSON.stringify(plan.extraColumns),
          ],
          {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, KILN_TEST_NATIVE_ABORT_BYTES: String(poison.bytes.length) },
          },
        );
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        child.stderr.resume();
        return new Promise<{ signal: NodeJS.Signals | null; out: string }>((resolve) =>
          child.on('exit', (_c, signal) => resolve({ signal, out })),
        );
      };
      for (let n = 1; n <= 2; n++) {
        assert.equal(
          (await shardCodecDecision(storage, layout, 0)).codec,
          'auto',
          `attempt ${n} still uses the native path`,
        );
        const r = await attemptInChild();
        assert.equal(r.signal, 'SIGABRT', `attempt ${n} died in the addon (${r.out})`);
        assert.equal(await findFinishedShard(storage, layout, 0), undefined);
        const h = await new ShardAttemptJournal(storage, layout, 0).history();
        assert.equal(h.died.length, n, `${n} dead attempt(s) in the journal`);
      }
      const decision = await shardCodecDecision(storage, layout, 0);
      assert.equal(decision.codec, 'sharp');
      assert.equal(decision.diedAttempts, 2);

      // The third attempt, in a child with the same poison switch: it must not die now.
      const third = await attemptInChild();
      assert.equal(third.signal, null, third.out);
      assert.match(third.out, /done/);
      const done = await findFinishedShard(storage, layout, 0);
      assert.ok(done, 'the shard is finished');
      assert.equal(done.stats.imageCodec?.codec, 'sharp');
      assert.equal(done.stats.imageCodec?.diedAttempts, 2);
      assert.match(done.stats.imageCodec!.reason, /native JPEG path off for this shard: 2 earlier attempts died/);

      const rows = [];
      for await (const r of readShardRows(storage, layout.shardUri(0))) rows.push(r);
      assert.equal(rows.length, paths.length);
      assert.equal(new Set(rows.map((r) => r.key)).size, paths.length, 'every input row exactly once');
      const row = rows.find((r) => r.url.endsWith(poison.path))!;
      assert.equal(row.status, 'success');
      const viaSharp = await processImage(poison.bytes, resolveCrawlOptions(options, 1), 'sharp');
      assert.ok(viaSharp.ok);
      assert.ok(Buffer.from(row.jpg!).equals(viaSharp.image.data), "the poison row holds sharp's exact output");
      const h = await new ShardAttemptJournal(storage, layout, 0).history();
      assert.deepEqual(
        [h.starts.length, h.died.length, [...h.ends.values()].map((e) => e.outcome)],
        [3, 2, ['finished']],
      );

      // A finished shard is returned as is, with the codec it was crawled with.
      const again = await crawlShardToParquet(storage, {
        datasetName: 'poison',
        version: plan.version,
        shardIndex: 0,
        extraColumns: plan.extraColumns,
        options,
      });
      assert.equal(again.skipped, true);
      assert.equal(again.codec?.codec, 'sharp');
    },
  );

  it('the journal counts only attempts whose process is gone and that did not end', async () => {
    const storage = new LocalStorage(`${tmp.path}/journal`);
    const layout = new DatasetLayout(storage, 'j', 1);
    const journal = new ShardAttemptJournal(storage, layout, 0);
    // A live attempt of this process (e.g. one Temporal timed out that still runs) is not a death.
    const live = await journal.begin('auto', 1);
    assert.equal((await journal.history()).died.length, 0);
    // An attempt that threw is not a death either.
    await journal.end(await journal.begin('auto', 2), 'threw', 'Error: boom');
    // A process that has exited (a real child), never ended: died. So does a start from another host.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const dead: AttemptStart = {
      ...live,
      id: 'dead-1',
      pid: Number(gone.stdout),
      processStart: null,
      temporalAttempt: 3,
    };
    const remote: AttemptStart = { ...live, id: 'remote-1', host: `not-${hostname()}`, temporalAttempt: 4 };
    // The same pid with another start time is another process (pid reuse): died.
    const reused: AttemptStart = {
      ...live,
      id: 'reused-1',
      processStart: (live.processStart ?? 0) + 1,
      temporalAttempt: 5,
    };
    for (const rec of [dead, remote, reused])
      await storage.writeAtomic(storage.child(layout.attemptsDirUri(0), `start-${rec.id}.json`), JSON.stringify(rec));
    const h = await journal.history();
    assert.deepEqual(
      h.died.map((d) => d.id).sort(),
      ['dead-1', 'remote-1', ...(live.processStart !== null ? ['reused-1'] : [])].sort(),
    );
    assert.equal(decideCodec(h).codec, 'sharp');
    assert.equal(decideCodec({ ...h, died: h.died.slice(0, 1) }).codec, 'auto');
    await journal.end(live, 'finished');
  });
});
