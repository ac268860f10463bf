/** Pin a dataset reference for a job identity: `name` means the newest version recorded in lineage now. */
import { existsSync } from 'node:fs';
import type { KilnConfig } from '../infra/config.js';
import { LineageStore, isPostgresUrl } from '../infra/lineage/store.js';

/**
 * `name@vN` / `name@N` -> `name@vN`; `name` -> `name@v<newest recorded>` (left as `name` when
 * lineage holds none: the stage then fails with its own clear error); a manifest URI as it is.
 */
export function pinDatasetRef(ref: string, config: KilnConfig): string {
  const m = /^([A-Za-z0-9._=-]+?)(?:@v?(\d+))?$/.exec(ref);
  if (!m || ref.startsWith('file://')) return ref;
  if (m[2]) return `${m[1]}@v${Number(m[2])}`;
  if (!isPostgresUrl(config.lineagePath) && !existsSync(config.lineagePath)) return ref;
  const store = new LineageStore(config.lineagePath);
  try {
    const v = store.latestDatasetVersionNumber(m[1]!);
    return v >= 1 ? `${m[1]}@v${v}` : ref;
  } finally {
    store.close();
  }
}
