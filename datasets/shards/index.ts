/** Shard contract, Parquet writer/reader, stats, manifest and layout of dataset versions. */
export * from './schema.js';
export * from './arrow.js';
export * from './writer.js';
export * from './reader.js';
export * from './stats.js';
export * from './layout.js';
export * from './manifest.js';
