/**
 * `crawl-native-abort#i`: one image of a URL list crashes the native JPEG addon (its test-only
 * switch KILN_TEST_NATIVE_ABORT_BYTES aborts the whole worker process, SIGABRT on a libuv thread,
 * when process() gets an input of exactly that many bytes, as a heap corruption would). A real
 * `kiln worker` child crawls the list through the crawl workflow; the sandbox restarts the worker
 * after each death (as a supervisor would). The crawl must complete with every input row exactly
 * once, the poison shard retried with the native path off after two dead attempts (sharp for every
 * row: stats `imageCodec`, lineage environment), and the poison row holding sharp's exact output.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WORKFLOW_TASK_QUEUE } from '../infra/constants.js';
import { LocalStorage } from '../infra/storage.js';
import { LineageStore } from '../infra/lineage/store.js';
import { renderSyntheticImage } from '../demo/synthetic-web.js';
import { processImage } from '../datasets/crawl/image.js';
import { resolveCrawlOptions, type CrawlOptions } from '../datasets/crawl/options.js';
import { findFinishedShard } from '../datasets/crawl/crawl-shard.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { readShardRows } from '../datasets/shards/reader.js';
import { rowKey } from '../datasets/shards/schema.js';
import type { CrawlWorkflowInput, CrawlWorkflowResult } from '../workflows/crawl.js';
import { nativeJpeg } from '../infra/imaging/native-jpeg.js';
import { Sandbox } from './harness.js';
import { checkDataset, checkLineage, checkNoPartialFiles, expectedKeys } from './checks.js';
import type { TrialSpec } from './types.js';
import { verdict } from './types.js';

/** Loopback images (distinct JPEGs) and the index of the one whose byte length is unique: the poison. */
async function serveImages(count: number, seed: number, poisonAt: number) {
  const images: Buffer[] = [];
  for (let i = 0; i < count; i++) images.push(await renderSyntheticImage(i, seed, 48 + (i % 5) * 8, 40 + (i % 3) * 8));
  // Make the poison's length unique (re-render at other qualities until no other image has it).
  for (let q = 84; images.some((b, i) => i !== poisonAt && b.length === images[poisonAt]!.length); q--) {
    images[poisonAt] = await renderSyntheticImage(poisonAt, seed, 56, 48, q);
  }
  const server = createServer((req, res) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(req.url ?? '');
    const img = m ? images[Number(m[1])] : undefined;
    if (!img) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': img.length });
    res.end(img);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    images,
    urls: images.map((_, i) => `${base}/img/${i}.jpg`),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface NativeCrashShape {
  rows: number;
  rowsPerShard: number;
  limitS: number;
}

export function nativeCrashTrial(
  index: number,
  seed: number,
  shape: NativeCrashShape = { rows: 12, rowsPerShard: 4, limitS: 240 },
): TrialSpec {
  return {
    name: `crawl-native-abort#${index}`,
    stage: 'crawl',
    run: async () => {
      if (!nativeJpeg)
        return {
          action: 'poison JPEG through the native addon',
          outcome: 'SKIP',
          detail: 'native JPEG addon not built (bash infra/imaging/native/build.sh)',
        };
      const { rows, rowsPerShard } = shape;
      const poisonAt = rowsPerShard + 1; // in shard 1, never the first row
      const web = await serveImages(rows, seed, poisonAt);
      const poison = web.images[poisonAt]!;
      const sb = new Sandbox('kiln-chaos-native-');
      sb.workerEnv = { KILN_TEST_NATIVE_ABORT_BYTES: String(poison.length) };
      let supervisor: { stop(): Promise<void> } | undefined;
      try {
        await sb.startServer();
        await sb.startWorker();
        supervisor = sb.supervise();
        const list = join(sb.dir, 'urls.jsonl');
        writeFileSync(list, web.urls.map((url, i) => JSON.stringify({ url, caption: `image ${i}` })).join('\n') + '\n');
        const options: Partial<CrawlOptions> = {
          allowAddresses: ['127.0.0.1'],
          imageSize: 16,
          resizeMode: 'center_crop',
          timeoutMs: 5000,
          retries: 1,
        };
        const input: CrawlWorkflowInput = {
          datasetName: 'poison',
          inputs: [list],
          rowsPerShard,
          options,
          shardHeartbeatTimeout: '3s',
        };
        const action =
          `worker crawls ${rows} rows (${rows / rowsPerShard} shards), row ${poisonAt} aborts the native addon ` +
          `(${poison.length} bytes); worker restarted after each death`;
        const { client, close } = await sb.client();
        let r: CrawlWorkflowResult;
        try {
          const handle = await client.workflow.start('crawlWorkflow', {
            taskQueue: WORKFLOW_TASK_QUEUE,
            workflowId: `chaos-native-${seed}`,
            args: [input],
          });
          let timer: NodeJS.Timeout | undefined;
          try {
            r = await Promise.race([
              handle.result() as Promise<CrawlWorkflowResult>,
              new Promise<never>((_, reject) => {
                timer = setTimeout(
                  () =>
                    reject(
                      new Error(
                        `crawl not done within ${shape.limitS} s (worker deaths: ${sb.workerDeaths.join(', ') || 'none'})`,
                      ),
                    ),
                  shape.limitS * 1000,
                );
              }),
            ]);
          } finally {
            clearTimeout(timer);
          }
        } catch (err) {
          return { action, outcome: 'FAIL', detail: (err as Error).message.split('\n')[0]! };
        } finally {
          await close();
        }
        await supervisor.stop();
        supervisor = undefined;

        const problems: string[] = [];
        const notes: string[] = [`worker deaths: ${sb.workerDeaths.join(', ') || 'none'}`];
        // Deaths beyond the poison's two: what the dying workers said (glibc heap checks, V8 fatal errors).
        const said = [
          ...new Set(
            sb.workerLog
              .split('\n')
              .filter((l) => /corrupt|invalid|malloc|free\(\)|double free|FATAL|Aborted/i.test(l))
              .map((l) => l.trim().slice(0, 100)),
          ),
        ];
        if (said.length) notes.push(`workers said: ${said.slice(0, 3).join(' | ')}`);
        if (sb.workerDeaths.filter((d) => d === 'SIGABRT').length < 2)
          problems.push(`want >= 2 worker deaths by SIGABRT, saw [${sb.workerDeaths.join(', ')}]`);
        const c = await checkDataset(sb.dataRoot, r.datasetName, r.version, expectedKeys(rows, rowsPerShard));
        problems.push(...c.problems);
        notes.push(`${c.rows} rows ${JSON.stringify(c.byStatus)}`);
        // The poison row: a success whose stored bytes are exactly sharp's output.
        const storage = new LocalStorage(sb.dataRoot);
        const layout = new DatasetLayout(storage, r.datasetName, r.version);
        const shardIndex = Math.floor(poisonAt / rowsPerShard);
        const key = rowKey(shardIndex, poisonAt % rowsPerShard, rowsPerShard);
        let row: { status: string; jpg: Uint8Array | null } | undefined;
        for await (const x of readShardRows(storage, layout.shardUri(shardIndex))) if (x.key === key) row = x;
        const viaSharp = await processImage(poison, resolveCrawlOptions(options, 1), 'sharp');
        if (!row || row.status !== 'success') problems.push(`poison row ${key}: ${row ? row.status : 'missing'}`);
        else if (!viaSharp.ok || !Buffer.from(row.jpg!).equals(viaSharp.image.data))
          problems.push(`poison row ${key}: stored bytes are not sharp's output`);
        const done = await findFinishedShard(storage, layout, shardIndex);
        const codec = done?.stats.imageCodec;
        if (codec?.codec !== 'sharp' || codec.diedAttempts < 2)
          problems.push(
            `poison shard ${shardIndex} stats imageCodec ${JSON.stringify(codec)}, want sharp after >= 2 dead attempts`,
          );
        else notes.push(`shard ${shardIndex}: ${codec.reason.replace(/ \(pids [^)]*\)/, '')}`);
        const store = new LineageStore(sb.config.lineagePath);
        try {
          const run = store.getRun(`${r.jobId}/crawl/shard-${shardIndex}`);
          const env = run?.environment as { imageCodec?: string; nativeJpeg?: string; attempt?: number } | undefined;
          if (
            run?.status !== 'completed' ||
            env?.nativeJpeg !== 'off' ||
            !/^sharp .* for every image/.test(env.imageCodec ?? '')
          ) {
            problems.push(`lineage run of shard ${shardIndex}: ${run?.status}, environment ${JSON.stringify(env)}`);
          } else notes.push(`lineage: attempt ${env.attempt}, nativeJpeg off`);
        } finally {
          store.close();
        }
        const partial = await checkNoPartialFiles(sb.dataRoot);
        problems.push(...partial.problems, ...checkLineage(sb.dataRoot));
        return verdict(action, problems, notes.join('; '));
      } finally {
        await supervisor?.stop().catch(() => undefined);
        await sb.dispose();
        await web.close();
      }
    },
  };
}
