/**
 * `kiln run crawl`: crawl URL lists into a new dataset version (crawlWorkflow), without a spec file.
 * The flags are the spec's `crawl` block (docs/pipeline-spec.md), validated by the same schema;
 * the job id derives from the lists (content size/mtime) and options, as a spec's does.
 *
 *   kiln run crawl urls.csv --dataset web --image-size 256 --rows-per-shard 10000
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { jobIdentity } from '../job-identity.js';
import { resolveSpecPaths, validateSpec } from '../spec/load.js';
import { specIdentity } from '../spec/identity.js';
import { pipelineInputFromSpec } from '../spec/to-input.js';
import { runWorkflow, withRunFlags, type RunFlags } from './run.js';

interface CrawlFlags extends RunFlags {
  dataset: string;
  urlCol?: string;
  captionCol?: string;
  rowsPerShard?: number;
  imageSize?: number;
  resizeMode?: string;
  timeoutMs?: number;
  retries?: number;
  concurrency?: number;
  allowAddress?: string[];
  incremental?: boolean;
}

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be an integer.');
  return n;
};

/** The spec a crawl command stands for: `{ version: 1, name, sources, crawl }` with the flags given. */
export function crawlSpecFromFlags(lists: string[], o: CrawlFlags): unknown {
  const crawl: Record<string, unknown> = {
    url_col: o.urlCol,
    caption_col: o.captionCol,
    rows_per_shard: o.rowsPerShard,
    image_size: o.imageSize,
    resize_mode: o.resizeMode,
    timeout_ms: o.timeoutMs,
    retries: o.retries,
    concurrency: o.concurrency,
    allow_addresses: o.allowAddress,
    incremental: o.incremental,
  };
  for (const k of Object.keys(crawl)) if (crawl[k] === undefined) delete crawl[k];
  return { version: 1, name: o.dataset, sources: lists.map((path) => ({ path })), crawl };
}

export function registerCrawlCommand(run: Command): void {
  withRunFlags(
    run
      .command('crawl')
      .description(
        'Crawl URL lists (csv, tsv, jsonl, parquet, optionally .gz) into a new dataset version: every input row once, with a status. ' +
          "The options are the spec's crawl block (docs/pipeline-spec.md); the same command again resumes or reports the same job.",
      )
      .argument('<url-lists...>', 'URL list files')
      .requiredOption('--dataset <name>', 'dataset name (versions are numbered under it)')
      .option('--url-col <name>', 'URL column (default url)')
      .option('--caption-col <name>', 'caption column (default caption)')
      .option('--rows-per-shard <n>', 'rows per shard (default 10000)', int)
      .option('--image-size <px>', 'target size (default 256)', int)
      .option('--resize-mode <mode>', 'no | keep_ratio | keep_ratio_largest | center_crop | border (default border)')
      .option('--timeout-ms <ms>', 'per-request timeout (default 10000)', int)
      .option('--retries <n>', 'retries for timeouts / 429 / 5xx (default 2)', int)
      .option('--concurrency <n>', 'downloads at once (default 64)', int)
      .option('--allow-address <addr...>', 'private / loopback addresses that may be fetched (default none)')
      .option('--incremental', 'fetch only URLs and keep only images no earlier version holds'),
    { derivedId: true },
  ).action(async (lists: string[], o: CrawlFlags) => {
    const origin = `kiln run crawl --dataset ${o.dataset}`;
    const spec = resolveSpecPaths(
      validateSpec(
        crawlSpecFromFlags(lists, o),
        origin,
        'correct the flags named above (crawl.image_size is --image-size, sources is the list of URL list files; see kiln run crawl --help).',
      ),
      process.cwd(),
      origin,
    );
    const identity = jobIdentity(`crawl-${spec.name}`, specIdentity(spec).content);
    process.exitCode = await runWorkflow('crawl', 'crawlWorkflow', pipelineInputFromSpec(spec).crawl, {
      ...o,
      identity,
    });
  });
}
