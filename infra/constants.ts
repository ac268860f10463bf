/** Constants shared by every layer. Defined once, here. */
export const TASK_QUEUES = { io: 'kiln-io', gpu: 'kiln-gpu' } as const;
export type TaskQueue = (typeof TASK_QUEUES)[keyof typeof TASK_QUEUES];
/** Workflow tasks are served by the io worker; GPU machines may run only `kiln-gpu` activity workers. */
export const WORKFLOW_TASK_QUEUE: TaskQueue = TASK_QUEUES.io;
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';
export const DEFAULT_NAMESPACE = 'default';
export const DEFAULT_DATA_ROOT_NAME = 'kiln-data';
/** Version of the Parquet shard data contract (shared/DESIGN.md "Data contracts"). */
export const SHARD_SCHEMA_VERSION = 1;
export const USER_AGENT = 'kiln/0.1 (+https://github.com/kiln-data/kiln; image-text dataset curation)';
