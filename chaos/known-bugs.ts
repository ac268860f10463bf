/**
 * Chaos trials that fail today because of product bugs this suite found (trial name -> the bug).
 * test/chaos/chaos-short.test.ts runs them as `todo` tests; remove an entry when its bug is fixed.
 * Fixed in session 1: error root causes and their Fix shown by the CLI (path, corrupt Parquet,
 * ENOSPC), --id validated up front, NUL in spec source paths, unusable data roots (ENOTDIR).
 * Fixed in session 2 (commit 14b507b): planFilter heartbeats with a 1-minute heartbeat timeout
 * (`filter-planFilter-kill#1`), a read-only data root is refused with a Fix (`disk-readonly-root`).
 */
export const KNOWN_PRODUCT_BUGS: Record<string, string> = {};
