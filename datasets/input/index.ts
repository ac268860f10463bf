/** URL lists in, input shards out. */
export * from './delimited.js';
export * from './url-list.js';
export * from './input-shards.js';
