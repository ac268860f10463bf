/**
 * Image decoding + preprocessing on worker threads, so it runs while ONNX Runtime (whose session.run
 * blocks the JS thread that calls it) works on the previous batch. Each batch is split into
 * contiguous parts, one per worker; the parts' tensors are joined in order. With 0 threads the work
 * runs on the calling thread. Results are the same either way (same code, see preprocess.ts).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  ImagePreprocessor,
  prepareBatch,
  type ImageProcessorConfig,
  type PixelBatch,
  type PreparedBatch,
} from './preprocess.js';

/**
 * Default worker count: none on 1-2 cores (measured on a shared 2-core machine: no gain, more CPU per
 * image; the next batch still decodes on the libuv pool while ORT runs), else a quarter of
 * the cores, at most 4.
 */
export function defaultPreprocessThreads(cores = availableParallelism()): number {
  return cores <= 2 ? 0 : Math.max(1, Math.min(4, Math.floor(cores / 4)));
}

interface Pending {
  resolve: (r: PreparedBatch) => void;
  reject: (e: Error) => void;
}

class PoolWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | null = null;

  constructor(config: ImageProcessorConfig, source: string) {
    this.worker = new Worker(new URL('./preprocess-worker.js', import.meta.url), { workerData: { config, source } });
    this.worker.unref();
    this.worker.on('message', (msg: { id: number; result?: PreparedBatch; error?: string }) => {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (this.pending.size === 0) this.worker.unref();
      if (msg.result) p?.resolve(msg.result);
      else p?.reject(new Error(msg.error ?? 'preprocessing worker failed'));
    });
    const fail = (err: Error) => {
      this.failed = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`preprocessing worker exited (code ${code})`)));
  }

  get usable(): boolean {
    return this.failed === null;
  }

  run(images: readonly (Uint8Array | null)[], include: boolean[]): Promise<PreparedBatch> {
    if (this.failed) return Promise.reject(this.failed);
    // Pack the images into one buffer (a view into a large Arrow buffer must not be cloned whole).
    const bounds = new Int32Array(images.length * 2).fill(-1);
    const total = images.reduce((n, b) => n + (b?.length ?? 0), 0);
    const packed = new Uint8Array(total);
    let o = 0;
    images.forEach((b, k) => {
      if (!b) return;
      packed.set(b, o);
      bounds[2 * k] = o;
      bounds[2 * k + 1] = o + b.length;
      o += b.length;
    });
    const id = this.nextId++;
    return new Promise<PreparedBatch>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, packed, bounds, include }, [packed.buffer]);
    });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('preprocessing pool closed');
    await this.worker.terminate();
  }
}

/** Decode + preprocess batches on `threads` worker threads (0: on the calling thread). */
export class PreprocessPool {
  private workers: PoolWorker[] = [];
  private readonly local: ImagePreprocessor;

  constructor(
    private readonly config: ImageProcessorConfig,
    private readonly source: string,
    readonly threads: number,
  ) {
    this.local = new ImagePreprocessor(config, source);
  }

  /** Like prepareBatch(): rows with `include[k] === false` are decoded (errors reported) but not in the tensor. */
  async prepare(images: readonly (Uint8Array | null)[], include?: readonly boolean[]): Promise<PreparedBatch> {
    const inc = images.map((_, k) => include?.[k] !== false);
    if (this.threads === 0 || images.length === 0) return prepareBatch(this.local, images, inc);
    this.workers = this.workers.filter((w) => w.usable);
    while (this.workers.length < this.threads) this.workers.push(new PoolWorker(this.config, this.source));
    const parts = Math.min(this.threads, images.length);
    const size = Math.ceil(images.length / parts);
    const results = await Promise.all(
      Array.from({ length: parts }, (_, p) => {
        const s = p * size;
        return (this.workers[p] as PoolWorker).run(images.slice(s, s + size), inc.slice(s, s + size));
      }),
    );
    return joinParts(results, size);
  }

  /** The pixel tensor of images that must all decode (throws naming the first that does not). */
  async pixels(images: readonly Uint8Array[]): Promise<PixelBatch> {
    const r = await this.prepare(images);
    const bad = r.errors.findIndex((e) => e !== null);
    if (bad >= 0) throw new Error(`image ${bad}: ${r.errors[bad] ?? ''}`);
    return r.pixels ?? { data: new Float32Array(0), dims: [0, 3, this.local.outHeight, this.local.outWidth] };
  }

  async close(): Promise<void> {
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.map((w) => w.close()));
  }
}

/** Concatenate per-part results (part p covers input rows p*size ..). */
function joinParts(parts: PreparedBatch[], size: number): PreparedBatch {
  if (parts.length === 1) return parts[0] as PreparedBatch;
  const rows: number[] = [];
  const errors: (string | null)[] = [];
  const tensors: PixelBatch[] = [];
  parts.forEach((r, p) => {
    rows.push(...r.rows.map((k) => k + p * size));
    errors.push(...r.errors);
    if (r.pixels) tensors.push(r.pixels);
  });
  if (tensors.length === 0) return { pixels: null, rows, errors };
  const [, c, h, w] = (tensors[0] as PixelBatch).dims;
  const data = new Float32Array(rows.length * c * h * w);
  let o = 0;
  for (const t of tensors) {
    data.set(t.data, o);
    o += t.data.length;
  }
  return { pixels: { data, dims: [rows.length, c, h, w] }, rows, errors };
}
