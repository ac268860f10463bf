/**
 * Worker thread of the preprocessing pool (preprocess-pool.ts): decodes (infra/imaging/decode-rgb.ts) and preprocesses
 * (Pillow-compatible resize, normalise) image batches off the thread that runs ONNX Runtime.
 * In: `{ id, packed, bounds, include }` (the images packed into one transferred buffer; image k is
 * packed[bounds[2k] .. bounds[2k+1]], bounds[2k] = -1 for a missing image).
 * Out: `{ id, result }` (PreparedBatch; the tensor's buffer transferred) or `{ id, error }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ImagePreprocessor, prepareBatch, type ImageProcessorConfig } from './preprocess.js';

interface Request {
  id: number;
  packed: Uint8Array;
  bounds: Int32Array;
  include: boolean[];
}

const { config, source } = workerData as { config: ImageProcessorConfig; source: string };
const pre = new ImagePreprocessor(config, source);
const port = parentPort;

port?.on('message', (msg: Request) => {
  const { id, packed, bounds, include } = msg;
  const images = include.map((_, k) => {
    const start = bounds[2 * k] as number;
    return start < 0 ? null : packed.subarray(start, bounds[2 * k + 1] as number);
  });
  prepareBatch(pre, images, include).then(
    (result) => port.postMessage({ id, result }, result.pixels ? [result.pixels.data.buffer as ArrayBuffer] : []),
    (err: unknown) => port.postMessage({ id, error: err instanceof Error ? err.message : String(err) }),
  );
});
