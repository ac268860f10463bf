/** Every workflow the kiln-io worker serves. Workflow code only: deterministic, no I/O. */
export { helloWorkflow, progressQuery } from './hello.js';
