/**
 * The batch loop the filter models share: walk items in consecutive batches and prepare the next
 * batch (decode in sharp's thread pool, or preprocess in worker threads) while the model works on
 * the current one.
 */

/**
 * Call `consume(prepare(items[s..s+batchSize]), s)` for s = 0, batchSize, ... in order; batch s+1's
 * `prepare` is started before batch s is consumed, so both run at once. A failure stops the loop
 * and is thrown; a prepared batch that is then never consumed is dropped quietly.
 */
export async function prefetchBatches<T, P>(
  items: readonly T[],
  batchSize: number,
  prepare: (batch: T[], start: number) => Promise<P>,
  consume: (prepared: P, start: number) => Promise<void>,
): Promise<void> {
  const at = (s: number) => prepare(items.slice(s, Math.min(items.length, s + batchSize)), s);
  let next: Promise<P> | null = items.length > 0 ? at(0) : null;
  try {
    for (let s = 0; s < items.length; s += batchSize) {
      const current = await (next as Promise<P>);
      next = s + batchSize < items.length ? at(s + batchSize) : null;
      await consume(current, s);
    }
  } finally {
    next?.catch(() => undefined);
  }
}
