/** Every workflow the kiln-io worker serves. Workflow code only: deterministic, no I/O. */
export { helloWorkflow, progressQuery } from './hello.js';
export { trainWorkflow, trainProgressQuery } from './train.js';
export { filterWorkflow, filterShardsPageWorkflow, filterProgressQuery } from './filter.js';
export { crawlWorkflow, crawlShardsPageWorkflow, crawlProgressQuery } from './crawl.js';
export { dedupWorkflow, dedupShardsPageWorkflow, dedupProgressQuery } from './dedup.js';
export { pipelineWorkflow, pipelineProgressQuery } from './pipeline.js';
