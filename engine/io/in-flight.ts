/**
 * Bounded concurrency for I/O calls: the one way lamstore keeps several writes or syncs in
 * flight (md's writes to many files, the volume's scattered runs, the sync phase's concurrent
 * fsyncs). libuv runs file calls on its thread pool (4 threads unless UV_THREADPOOL_SIZE says
 * otherwise); awaiting one call after another leaves the pool idle between them, which is where
 * lamstore's checkpoints lost most of their time (BENCHMARKS.md, "Where the time goes").
 *
 * Contract (what W3 of smgr.ts and the sync phase rely on):
 *  I1 Calls start in item order, at most `limit` at a time.
 *  I2 After the first failure no new call starts, but every call already started is waited for:
 *     the caller learns about the failure only when nothing it started is still running, so no
 *     result of a call in flight is dropped and no page is retried under an older copy.
 *  I3 The first error (in completion order) is thrown; later ones go to `onError` when given.
 */

/**
 * Writes kept in flight by md and the volume. Measured (BENCHMARKS.md, "The I/O candidates, side
 * by side"): with libuv's 4 threads, 1000 one-page writes to 1000 files took 68 ms awaited one
 * by one, 20 ms at 8 in flight, 14 ms at 64; scattered pwrites into one file 66, 27 and 14 ms.
 * Queued requests cost libuv nothing but a list entry, and every page BufferSync hands over is
 * already in the pool, unchanging until its write is done (buffer-pool.ts B3), so more in flight only lets the pool start the next call without a round trip.
 */
export const IN_FLIGHT_DEFAULT = 64;

/**
 * Threads in libuv's pool unless UV_THREADPOOL_SIZE says otherwise: how many file calls run at
 * once, and so how many of a kind it pays to keep in flight where each is long (fsyncs, whole
 * batches of writes).
 */
export const LIBUV_POOL_THREADS = 4;

export async function forEachInFlight<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
  onError?: (err: unknown, item: T) => void,
): Promise<void> {
  if (items.length === 0) return;
  if (items.length === 1 || limit <= 1) {
    // No concurrency asked for (or possible): PostgreSQL's one call after another, without the
    // workers' bookkeeping. I2 holds trivially.
    for (let i = 0; i < items.length; i++) await fn(items[i]!, i);
    return;
  }
  let next = 0;
  let failed = false;
  let first: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        if (!failed) {
          failed = true;
          first = err;
        } else onError?.(err, items[i]!);
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(limit, items.length); w++) workers.push(worker());
  await Promise.all(workers); // workers never reject (I2)
  if (failed) throw first;
}
