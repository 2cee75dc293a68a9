/**
 * WritebackContext: the writeback hints BufferSync gives after its writes (PostgreSQL's
 * WritebackContext, ScheduleBufferTagForWriteback and IssuePendingWritebacks; reference
 * section 9, behaviour 40). After every `limit` written buffers the pending tags become a few
 * "start writing this range back now" hints, so the kernel does not pile up a checkpoint's worth
 * of dirty pages for the sync phase to flush all at once. A hint is only a hint: it never stands
 * in for the fsync of the sync phase, and nothing depends on it for durability.
 *
 * Invariants:
 *  W1 0 <= pending count < limit <= WRITEBACK_MAX_PENDING_FLUSHES between calls: reaching the
 *     limit issues at once. With limit 0 nothing is ever kept (hints are off).
 *  W2 Issue sorts the pending tags by (relNumber, dbOid, spcOid, storage, fork, block), then cuts
 *     them into runs: one run is one storage, one file (locator) and one fork with strictly
 *     consecutive block numbers; a tag equal to the last of the run is skipped (duplicates
 *     collapse). Each run is one `smgr.writeback(rel, fork, firstBlock, nblocks)` call, for the
 *     storage managers that have the method (others simply get no hint).
 *  W3 Issue empties the pending list before its first call, so a failing hint leaves nothing
 *     behind to be issued twice.
 *  W4 An issue asks for every run's hint before it awaits any, then waits for all of them, and
 *     fails with the first failure in run order.
 *  W5 Up to `issuesInFlight` issues run while BufferSync goes on writing; `schedule` makes it
 *     wait for the oldest only past that. So a hint still follows the writes it covers (each is
 *     asked for once they are written) and the checkpoint still feels a device that cannot keep
 *     up, a few batches late instead of at once; what it no longer waits for is each hint's
 *     round trip to the sync thread (RealIO, sync-thread.ts S6). The bound is in buffers,
 *     HINTED_BUFFERS_IN_FLIGHT (at least ISSUES_IN_FLIGHT issues): a batch of BufferSync's is up
 *     to 256 buffers, 8 issues at the default limit of 32, and its hints ride on a batch sent
 *     after it (sync-thread.ts S8); a bound of 4 issues made the fifth wait for hints not sent
 *     yet, which then went alone. With several of BufferSync's batches in flight
 *     (buffer-pool.ts `hintedBatchesInFlight`), each batch waiting for the oldest can have
 *     started one issue more: at most issuesInFlight + batches - 1 run. `issue()` (BufferSync's
 *     last) and `drain()` (after a failure) wait for every issue still running: none is left
 *     behind.
 * Where the hints are not scheduled at all (the pool's side): when fsync is off (nothing is
 * synced, so there is nothing to smooth) and when the limit is 0.
 */
import { assert } from '../errors.js';
import type { ForkNumber, RelFileLocator } from '../relfile.js';
import type { StorageManager } from '../smgr/smgr.js';

/** The most tags a context holds, hence the largest limit (PostgreSQL's WRITEBACK_MAX_PENDING_FLUSHES). */
export const WRITEBACK_MAX_PENDING_FLUSHES = 256;
/** PostgreSQL's checkpoint_flush_after default where sync_file_range exists: 32 blocks (256 KiB at 8 KiB). */
export const CHECKPOINT_FLUSH_AFTER_DEFAULT = 32;
/** W5: the fewest issues whose hints may run while BufferSync writes on. */
export const ISSUES_IN_FLIGHT = 4;
/**
 * W5: the buffers whose hints may be in flight while BufferSync writes on: four of its batches
 * of 256 (buffer-pool.ts WRITE_COMBINE_MAX_BLOCKS), the two in flight, the one being scheduled
 * and one to spare.
 */
export const HINTED_BUFFERS_IN_FLIGHT = 1024;

/** W5's bound for a context of `limit` buffers an issue. */
export function issuesInFlight(limit: number): number {
  return Math.max(ISSUES_IN_FLIGHT, Math.ceil(HINTED_BUFFERS_IN_FLIGHT / Math.max(1, limit)));
}

export interface WritebackTag {
  storage: string;
  rel: RelFileLocator;
  fork: ForkNumber;
  block: number;
}

export interface WritebackStats {
  /** Times the pending list was issued (non-empty). */
  issues: number;
  /** Ranges handed to storage managers (smgr.writeback calls). */
  ranges: number;
}

function compareTags(a: WritebackTag, b: WritebackTag): number {
  return (
    a.rel.relNumber - b.rel.relNumber ||
    a.rel.dbOid - b.rel.dbOid ||
    a.rel.spcOid - b.rel.spcOid ||
    (a.storage < b.storage ? -1 : a.storage > b.storage ? 1 : 0) ||
    a.fork - b.fork ||
    a.block - b.block
  );
}

function sameFork(a: WritebackTag, b: WritebackTag): boolean {
  return (
    a.storage === b.storage && a.rel.relNumber === b.rel.relNumber && a.rel.dbOid === b.rel.dbOid && a.rel.spcOid === b.rel.spcOid && a.fork === b.fork
  );
}

export class WritebackContext {
  readonly limit: number;
  /** W5: issues that may run before `schedule` waits for the oldest. */
  readonly issuesInFlight: number;
  readonly #smgr: (name: string) => StorageManager;
  #pending: WritebackTag[] = [];
  /** Issues still running (W5), oldest first: each settles to its failure, or undefined. */
  #running: Promise<unknown>[] = [];
  readonly stats: WritebackStats = { issues: 0, ranges: 0 };

  /** `limit` in 0..WRITEBACK_MAX_PENDING_FLUSHES (validated as an option by the engine). */
  constructor(limit: number, smgr: (name: string) => StorageManager) {
    assert(Number.isInteger(limit) && limit >= 0 && limit <= WRITEBACK_MAX_PENDING_FLUSHES, `writeback limit ${limit} is in 0..${WRITEBACK_MAX_PENDING_FLUSHES}`);
    this.limit = limit;
    this.issuesInFlight = issuesInFlight(limit);
    this.#smgr = smgr;
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  /**
   * ScheduleBufferTagForWriteback: remember a written buffer; issue when the limit is reached (W1).
   * A promise only when it issues: BufferSync schedules every buffer it writes, and an await per
   * buffer was 16,000 promises a checkpoint at R=1000 P=16 (7.6 MB allocated, with the promise
   * hooks of a running checkpoint).
   */
  schedule(tag: WritebackTag): Promise<void> | undefined {
    if (this.limit === 0) return undefined;
    this.#pending.push({ storage: tag.storage, rel: tag.rel, fork: tag.fork, block: tag.block });
    if (this.#pending.length < this.limit) return undefined;
    this.#start();
    return this.#running.length > this.issuesInFlight ? this.#waitOldest() : undefined;
  }

  /** IssuePendingWritebacks for what is pending, then wait for every issue still running (W5). */
  async issue(): Promise<void> {
    this.#start();
    const running = this.#running;
    this.#running = [];
    let first: unknown;
    for (const p of running) first ??= await p;
    if (first !== undefined) throw first;
  }

  /** Wait for every issue still running, their failures left to the one being thrown (W5). */
  async drain(): Promise<void> {
    const running = this.#running;
    this.#running = [];
    await Promise.all(running);
  }

  /** Start an issue of the pending tags, if any (W5). */
  #start(): void {
    if (this.#pending.length === 0) return;
    const issue = this.#issue().then(
      () => undefined,
      (err: unknown) => err ?? new Error('a writeback hint failed without a reason'),
    );
    this.#running.push(issue);
  }

  async #waitOldest(): Promise<void> {
    const failure = await this.#running.shift();
    if (failure !== undefined) throw failure;
  }

  /**
   * One IssuePendingWritebacks: sort, merge into runs, one hint per run (W2, W3, W4). The hints
   * are all asked for before any is awaited, so a FileIO that sends them elsewhere (RealIO: the
   * sync thread) can send them together; they are asked for in order.
   */
  async #issue(): Promise<void> {
    const tags = this.#pending;
    this.#pending = [];
    this.stats.issues++;
    tags.sort(compareTags);
    const asked: Promise<void>[] = [];
    let i = 0;
    while (i < tags.length) {
      const first = tags[i]!;
      let last = first;
      let j = i + 1;
      for (; j < tags.length; j++) {
        const t = tags[j]!;
        if (!sameFork(first, t)) break;
        if (t.block === last.block) continue; // duplicate
        if (t.block !== last.block + 1) break;
        last = t;
      }
      const nblocks = last.block - first.block + 1;
      assert(nblocks >= 1 && nblocks <= j - i, 'writeback run covers its distinct tags');
      const smgr = this.#smgr(first.storage);
      if (smgr.writeback) {
        this.stats.ranges++;
        let hint: Promise<void>;
        try {
          hint = smgr.writeback(first.rel, first.fork, first.block, nblocks);
        } catch (err) {
          hint = Promise.reject(err); // thrown at once: still after the hints already asked for
        }
        asked.push(hint);
      }
      i = j;
    }
    // W4: every hint asked for is waited for, and the first failure (in run order) is thrown.
    const settled = await Promise.allSettled(asked);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
  }

  checkInvariants(): void {
    assert(this.#pending.length <= WRITEBACK_MAX_PENDING_FLUSHES, 'writeback: pending within WRITEBACK_MAX_PENDING_FLUSHES');
    assert(this.#running.length <= this.issuesInFlight, `writeback: at most ${this.issuesInFlight} issues running between calls (W5)`);
    assert(this.limit === 0 ? this.#pending.length === 0 : this.#pending.length < this.limit, 'writeback: pending below the limit between calls (W1)');
  }
}
