/**
 * Child process for kill.test.ts: crawls one shard and prints "rows N" after each row, so the
 * parent can SIGKILL it midway. Args: dataRoot datasetName version shardIndex optionsJson extraJson.
 */
import { LocalStorage } from '../../infra/storage.js';
import { crawlShardToParquet } from '../../datasets/crawl/crawl-shard.js';

const [dataRoot, datasetName, version, shardIndex, options, extra] = process.argv.slice(2);
const storage = new LocalStorage(dataRoot!);
await crawlShardToParquet(
  storage,
  {
    datasetName: datasetName!,
    version: Number(version),
    shardIndex: Number(shardIndex),
    options: JSON.parse(options!),
    extraColumns: JSON.parse(extra!),
    rowGroupSize: 2,
  },
  { onProgress: (n) => process.stdout.write(`rows ${n}\n`) },
);
process.stdout.write('done\n');
