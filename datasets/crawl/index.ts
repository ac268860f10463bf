/** Crawling URL lists into Parquet shards: options, fetcher, image pipeline, shard and plan functions. */
export * from './options.js';
export * from './failures.js';
export * from './ssrf.js';
export * from './robots.js';
export * from './magic.js';
export * from './dims.js';
export * from './fetcher.js';
export * from './image.js';
export * from './crawl-rows.js';
export * from './crawl-shard.js';
export * from './plan.js';
export * from './manifest.js';
