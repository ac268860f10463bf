/**
 * What every activity factory receives: the shared, long-lived dependencies of a worker process.
 * Activities are factories (`createXxxActivities(deps)`), so tests can pass real deps pointed at a
 * temp data root.
 */
import type { ArtifactStorage } from '../infra/storage.js';
import type { LineageStore } from '../infra/lineage/store.js';
import type { KilnConfig } from '../infra/config.js';

export interface ActivityDeps {
  config: KilnConfig;
  storage: ArtifactStorage;
  lineage: LineageStore;
  /** git SHA or package version, recorded with every run. */
  codeVersion: string;
}
