/** All activities of a Kiln worker, built from shared dependencies. */
import type { ActivityDeps } from './deps.js';
import { createHelloActivities } from './hello.js';
import { createLineageActivities } from './lineage.js';
import { createTrainActivities } from './train.js';
import { createFilterActivities } from './filter.js';
import { createCrawlActivities } from './crawl.js';
import { createDedupActivities } from './dedup.js';

export function createActivities(deps: ActivityDeps) {
  return {
    ...createLineageActivities(deps),
    ...createHelloActivities(deps),
    ...createTrainActivities(deps),
    ...createFilterActivities(deps),
    ...createCrawlActivities(deps),
    ...createDedupActivities(deps),
  };
}

export type KilnActivities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps.js';
