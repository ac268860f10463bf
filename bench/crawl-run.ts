/**
 * Kiln side of the crawl benchmark (its own process): plan + crawl every shard through the same
 * activity functions a worker runs (no Temporal server: activities are plain async functions),
 * then write the manifest. Prints one JSON line with counts and this process's CPU and max RSS.
 * Usage: node dist/bench/crawl-run.js <urlList> <dataRoot> <rowsPerShard> <shardConcurrency> <optionsJson>
 */
import { resourceUsage } from 'node:process';
import { LocalStorage } from '../infra/storage.js';
import { LineageStore } from '../infra/lineage/store.js';
import { loadConfig } from '../infra/config.js';
import { createCrawlActivities } from '../activities/crawl.js';
import type { CrawlOptions } from '../datasets/crawl/options.js';
import type { ShardStats } from '../datasets/shards/stats.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import { nativeJpegStatus } from '../infra/imaging/native-jpeg.js';

const [list, dataRoot, perShard, shardConcurrency, optionsJson] = process.argv.slice(2);
const config = loadConfig({ dataRoot: dataRoot! }, {});
const deps = {
  config,
  storage: new LocalStorage(config.dataRoot),
  lineage: new LineageStore(config.lineagePath),
  codeVersion: 'bench',
};
const acts = createCrawlActivities(deps);
const options = JSON.parse(optionsJson!) as Partial<CrawlOptions>;
const jobId = `bench-${Date.now()}`;

const t0 = performance.now();
const plan = await acts.planCrawl({
  jobId,
  datasetName: 'bench',
  inputs: [list!],
  rowsPerShard: Number(perShard),
  options,
});
const tPlanned = performance.now();
let next = 0;
const lane = async () => {
  while (next < plan.shardCount) {
    const shardIndex = next++;
    await acts.crawlShard({
      jobId,
      datasetName: 'bench',
      version: plan.version,
      shardIndex,
      extraColumns: plan.extraColumns,
      options,
    });
  }
};
await Promise.all(Array.from({ length: Number(shardConcurrency) }, lane));
const m = await acts.writeCrawlManifest({ jobId, datasetName: 'bench', version: plan.version });
const t1 = performance.now();

const layout = new DatasetLayout(deps.storage, 'bench', plan.version);
let downloaded = 0;
let stored = 0;
for (let i = 0; i < plan.shardCount; i++) {
  const s = JSON.parse(await deps.storage.readText(layout.statsUri(i))) as ShardStats;
  downloaded += s.bytes.downloaded;
  stored += s.bytes.stored;
}
const ru = resourceUsage();
process.stdout.write(
  `${JSON.stringify({
    rows: m.rows,
    success: m.countsByStatus.success ?? 0,
    counts: m.countsByStatus,
    shards: m.shards,
    downloadedBytes: downloaded,
    storedBytes: stored,
    imagePath:
      nativeJpegStatus === 'loaded'
        ? 'native libjpeg-turbo for plain JPEGs'
        : `sharp only (native path ${nativeJpegStatus})`,
    planMs: tPlanned - t0,
    totalMs: t1 - t0,
    cpuUserMs: ru.userCPUTime / 1000,
    cpuSystemMs: ru.systemCPUTime / 1000,
    maxRssKb: ru.maxRSS,
    shardPaths: Array.from({ length: plan.shardCount }, (_, i) => deps.storage.localPath(layout.shardUri(i))),
  })}\n`,
);
deps.lineage.close();
