/**
 * `ShardSampleStream` on a thread of its own: Parquet reads, JPEG decoding (sharp) and the JavaScript
 * between them run beside the training step instead of inside its pauses. On the main thread a
 * prefetched batch advanced only when the step yielded, so the step still waited for it (~6 ms of a
 * ~55 ms tiny step) and the reading's JavaScript took the training thread's time.
 *
 * Same batches, in the same order, with the same positions as the stream it runs (the thread reads
 * sequentially); `PREFETCH_BATCHES` requests are kept ahead. Used for storages the thread can open
 * again from their root (local directories, `s3://` with the environment's client); otherwise
 * `openSampleSource` returns the in-thread prefetching stream. Errors come back as the same classes
 * (EmptyDatasetError, ConfigError; another KilnError with its name, code, fix and retryability).
 */
import { Worker } from 'node:worker_threads';
import { ConfigError, KilnError } from '../infra/errors.js';
import type { ArtifactStorage } from '../infra/storage.js';
import { reopenableRoot } from '../infra/storage-open.js';
import { ShardSampleStream, type DataPosition, type LoaderOptions, type SampleBatch } from './data-loader.js';
import { EmptyDatasetError } from './errors.js';
import type { LoaderReply, LoaderRequest, LoaderThreadInit, ThreadError } from './loader-worker.js';

/** Batches read ahead of the one returned. */
export const PREFETCH_BATCHES = 2;

/** What the trainer reads samples from (`ShardSampleStream` or `ThreadedSampleStream`). */
export interface SampleSource {
  nextBatch(n: number): Promise<SampleBatch>;
  position(): DataPosition;
  close(): void;
}

/** A prefetching sample source: on a loader thread when the storage can be reopened there, else in this thread. */
export function openSampleSource(
  storage: ArtifactStorage,
  shardUris: readonly string[],
  options: LoaderOptions,
  start?: DataPosition,
): SampleSource {
  const root = reopenableRoot(storage);
  return root === null
    ? new ShardSampleStream(storage, shardUris, { ...options, prefetch: true }, start)
    : new ThreadedSampleStream(storage, root, shardUris, options, start);
}

export class ThreadedSampleStream implements SampleSource {
  private readonly worker: Worker;
  private readonly waiting: { resolve: (r: LoaderReply) => void; reject: (e: Error) => void }[] = [];
  private readonly ahead: { n: number; reply: Promise<LoaderReply> }[] = [];
  private delivered: DataPosition;
  private failed: Error | null = null;
  private closed = false;

  constructor(
    storage: ArtifactStorage,
    root: string,
    shardUris: readonly string[],
    options: LoaderOptions,
    start: DataPosition = { epoch: 0, shard: 0, row: 0 },
  ) {
    // Bad arguments fail here, as the in-thread stream's do (its constructor opens nothing).
    new ShardSampleStream(storage, shardUris, options, start).close();
    this.delivered = { ...start };
    const init: LoaderThreadInit = { storageRoot: root, shardUris: [...shardUris], options, start };
    this.worker = new Worker(new URL('./loader-worker.js', import.meta.url), { workerData: init });
    this.worker.on('message', (reply: LoaderReply) => this.waiting.shift()?.resolve(reply));
    this.worker.on('error', (err) => this.fail(new Error(`the training data loader thread failed: ${err.message}`)));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.fail(new Error(`the training data loader thread exited (code ${code})`));
    });
    // After the listeners (adding a 'message' listener refs the port again): see nextBatch.
    this.worker.unref();
  }

  async nextBatch(n: number): Promise<SampleBatch> {
    if (this.closed) throw new Error('the sample stream is closed');
    const next = this.ahead.shift() ?? { n, reply: this.request(n) };
    if (next.n !== n)
      throw new Error(
        `nextBatch(${n}) after a prefetched batch of ${next.n}: a prefetching stream serves one batch size`,
      );
    while (this.ahead.length < PREFETCH_BATCHES) this.ahead.push({ n, reply: this.request(n) });
    // Held open only while a caller waits: batches read ahead never keep a finished process alive.
    this.worker.ref();
    let reply: LoaderReply;
    try {
      // One full turn of the event loop per batch, even when the batch is already here: the training
      // step is synchronous, and without this the process's other callbacks (Temporal heartbeats and
      // activity cancellation) never ran during a chunk (a cancelled chunk trained on; tested in
      // test/integration/train.test.ts). The in-thread stream got those turns from its file reads.
      await new Promise<void>((resolve) => setImmediate(resolve));
      reply = await next.reply;
    } finally {
      this.worker.unref();
    }
    if (!reply.ok) throw rebuildError(reply.error);
    this.delivered = reply.pos;
    return reply.batch;
  }

  /** Where the next returned batch starts (batches read ahead not counted). */
  position(): DataPosition {
    return { ...this.delivered };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.postMessage({ kind: 'close' } satisfies LoaderRequest);
    void this.worker.terminate();
  }

  private request(n: number): Promise<LoaderReply> {
    if (this.failed) return Promise.reject(this.failed);
    const reply = new Promise<LoaderReply>((resolve, reject) => this.waiting.push({ resolve, reject }));
    reply.catch(() => undefined); // surfaces at the nextBatch that awaits it
    this.worker.postMessage({ kind: 'next', n } satisfies LoaderRequest);
    return reply;
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }
}

/**
 * The loader thread's error as the in-thread stream would throw it: the same message, EmptyDatasetError
 * and ConfigError as those classes, another KilnError with its class name, code, fix and
 * retryability (what activities/failures.ts reports to Temporal), anything else as an Error of that name.
 */
function rebuildError(e: ThreadError): Error {
  const problem = e.fix !== undefined ? e.message.slice(0, -`\nFix: ${e.fix}`.length) : e.message;
  if (e.name === 'EmptyDatasetError') return new EmptyDatasetError(problem);
  if (e.name === 'ConfigError' && e.fix !== undefined) return new ConfigError(problem, e.fix);
  const err =
    e.code !== undefined && e.fix !== undefined
      ? new KilnError(e.code, problem, e.fix, { retryable: e.retryable ?? false })
      : new Error(e.message);
  err.name = e.name;
  return err;
}
