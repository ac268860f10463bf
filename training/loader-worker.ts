/**
 * The loader thread's entry (training/loader-thread.ts starts it): one `ShardSampleStream` over its
 * own storage handle, serving batch requests in order. Each reply carries the batch (pixels or
 * latents moved, not copied) and the stream's position after it; a failure replies with the error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { KilnError } from '../infra/errors.js';
import { openStorage } from '../infra/storage-open.js';
import { ShardSampleStream, type DataPosition, type LoaderOptions } from './data-loader.js';

export interface LoaderThreadInit {
  storageRoot: string;
  shardUris: string[];
  options: LoaderOptions;
  start: DataPosition;
}
export type LoaderRequest = { kind: 'next'; n: number } | { kind: 'close' };
export type LoaderReply =
  | { ok: true; batch: { keys: string[]; captions: string[]; images: Float32Array }; pos: DataPosition }
  | { ok: false; error: ThreadError };

/** An error as it crosses the thread: a KilnError keeps its code, fix and retryability. */
export interface ThreadError {
  name: string;
  message: string;
  code?: string;
  fix?: string;
  retryable?: boolean;
}

const init = workerData as LoaderThreadInit;
const stream = new ShardSampleStream(
  openStorage(init.storageRoot),
  init.shardUris,
  { ...init.options, prefetch: false },
  init.start,
);
let queue: Promise<void> = Promise.resolve();

parentPort!.on('message', (req: LoaderRequest) => {
  if (req.kind === 'close') {
    stream.close();
    parentPort!.close();
    return;
  }
  queue = queue.then(async () => {
    try {
      const batch = await stream.nextBatch(req.n);
      const reply: LoaderReply = { ok: true, batch, pos: stream.position() };
      parentPort!.postMessage(reply, [batch.images.buffer as ArrayBuffer]);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      const kiln = e instanceof KilnError ? { code: e.code, fix: e.fix, retryable: e.retryable } : {};
      const reply: LoaderReply = { ok: false, error: { name: e.name, message: e.message, ...kiln } };
      parentPort!.postMessage(reply);
    }
  });
});
