/**
 * Task queue names as workflow code sees them. Same literals as infra/constants.ts TASK_QUEUES
 * (workflows may not import infra at run time); test/infra/constants.test.ts checks they agree.
 */
export const IO_QUEUE = 'kiln-io';
export const GPU_QUEUE = 'kiln-gpu';
