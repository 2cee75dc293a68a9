/**
 * Pending operations: the checkpointer-side half of PostgreSQL's sync.c.
 *
 * State (owned by the checkpointer; nothing else touches it):
 *  - `pendingOps`: FileTag key -> { tag, cycle, canceled }. A hash so that many requests for one
 *    file merge into one sync.
 *  - `pendingUnlinks`: files to remove after a checkpoint, in arrival order. A list: duplicates
 *    are not expected and are not merged (behaviour 28).
 *  - `syncCycle`: advanced once per processSyncRequests; `checkpointCycle`: once per
 *    preCheckpoint. Both are uint16 and wrap, as in PostgreSQL.
 *
 * Invariants:
 *  P1 Every entry visited by a sync phase has cycle == syncCycle - 1 (mod 2^16): it was created
 *     before the phase began. Entries created during the phase carry syncCycle and wait for the
 *     next one (behaviour 9).
 *  P2 A re-request of an existing, un-canceled entry never changes its cycle: the oldest request
 *     wins (behaviour 11).
 *  P3 A canceled entry is never synced; it is removed when the phase reaches it.
 *  P4 After a sync phase that did not finish (a handler threw), the next phase first makes every
 *     survivor eligible, so no entry is ever skipped as "new" by a wrapped counter (behaviour 21).
 *  P5 With `concurrency` > 1 up to that many sync callbacks run at once, started in table order.
 *     Everything else holds per entry: cancel checked right before its call, ENOENT absorbed and
 *     retried once, done entries removed. A failure starts no new call; the calls in flight are
 *     waited for and their successes counted and removed before the first error is thrown, so
 *     no result is dropped and only entries not synced stay for the next phase.
 *  P6 With `concurrency` 1, the entries of a handler with `syncFileTags` that lie between two
 *     absorb points go to it in one call, in table order. Equivalent to one call per entry:
 *     cancel flags change only when the queue is absorbed, so each entry is checked exactly as
 *     it would be right before its own call; the successes before a failure are counted and
 *     removed; an ENOENT is absorbed and retried alone, and the entries after it (which the call
 *     never started: syncFileTags stops at the first failure) are looked at again.
 *
 * `absorb` is the checkpointer's AbsorbSyncRequests: it drains the request queue into
 * `remember`. It is passed in because the queue lives in checkpointer/.
 */
import { ErrorCode, LamstoreError, assert, errnoOf } from '../errors.js';
import type { FileTag } from './file-tag.js';
import { describeTag, fileTagKey } from './file-tag.js';
import type { SyncHandlerRegistry, SyncOps, SyncTagsResult } from './registry.js';
import { SyncRequestType } from './registry.js';
import type { Clock } from '../clock.js';
import { forEachInFlight } from '../io/in-flight.js';

/** PostgreSQL's FSYNCS_PER_ABSORB and UNLINKS_PER_ABSORB: keep the queue from overflowing
 *  during a long sync or unlink phase. */
export const FSYNCS_PER_ABSORB = 10;
export const UNLINKS_PER_ABSORB = 10;

const CYCLE_MOD = 0x1_0000;

interface PendingFsync {
  /** Its key in the table (fileTagKey of `tag`). */
  key: string;
  tag: FileTag;
  cycle: number;
  canceled: boolean;
}

interface PendingUnlink {
  tag: FileTag;
  cycle: number;
  canceled: boolean;
}

export interface SyncPhaseStats {
  /** Files synced successfully (PostgreSQL's ckpt_sync_rels). */
  syncFiles: number;
  longestSyncUs: number;
  totalSyncUs: number;
  /** Sync callbacks called, by handler name (canceled and fsync-off entries are not). */
  tagsDispatched: Record<string, number>;
}

export interface ProcessSyncOptions {
  absorb: () => void;
  /** PostgreSQL's `fsync` GUC: off consumes eligible entries without calling handlers. */
  enableFsync: boolean;
  clock: Clock;
  /** A line per successful sync ("checkpoint sync: number=N file=PATH time=T ms"). */
  onSyncFile?: (line: string) => void;
  /**
   * Sync calls in flight at once. 1 is PostgreSQL's loop, one file after another. More is a
   * deliberate step past it (P5): the thread pool overlaps the fsyncs. @default 1
   */
  concurrency?: number;
}

export interface PostCheckpointOptions {
  absorb: () => void;
  onWarning?: (line: string) => void;
}

export class PendingOps {
  readonly #registry: SyncHandlerRegistry;
  readonly #pending = new Map<string, PendingFsync>();
  #unlinks: PendingUnlink[] = [];
  #syncCycle = 0;
  #checkpointCycle = 0;
  #syncInProgress = false;

  constructor(registry: SyncHandlerRegistry) {
    this.#registry = registry;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  get pendingUnlinkCount(): number {
    return this.#unlinks.length;
  }

  /** A snapshot for tests: pending tags with their cycle and canceled flag. */
  snapshot(): { tag: FileTag; cycle: number; canceled: boolean }[] {
    return [...this.#pending.values()].map((e) => ({ tag: e.tag, cycle: e.cycle, canceled: e.canceled }));
  }

  get syncCycle(): number {
    return this.#syncCycle;
  }

  get checkpointCycle(): number {
    return this.#checkpointCycle;
  }

  /** RememberSyncRequest: apply one absorbed request. */
  remember(tag: FileTag, type: SyncRequestType): void {
    switch (type) {
      case SyncRequestType.SYNC: {
        const key = fileTagKey(tag);
        const e = this.#pending.get(key);
        // New or canceled: (re)initialise with the current cycle. Otherwise leave it (P2).
        if (!e || e.canceled) this.#pending.set(key, { key, tag, cycle: this.#syncCycle, canceled: false });
        return;
      }
      case SyncRequestType.FORGET: {
        const e = this.#pending.get(fileTagKey(tag));
        if (e) e.canceled = true;
        return;
      }
      case SyncRequestType.FILTER: {
        const ops = this.#registry.ops(tag.handler);
        const matches = ops.fileTagMatches;
        if (!matches) return;
        for (const e of this.#pending.values()) {
          if (e.tag.handler === tag.handler && matches.call(ops, tag, e.tag)) e.canceled = true;
        }
        for (const u of this.#unlinks) {
          if (u.tag.handler === tag.handler && matches.call(ops, tag, u.tag)) u.canceled = true;
        }
        return;
      }
      case SyncRequestType.UNLINK: {
        this.#unlinks.push({ tag, cycle: this.#checkpointCycle, canceled: false });
        return;
      }
      default:
        throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `unknown sync request type ${String(type)}`);
    }
  }

  /** SyncPreCheckpoint: absorb, then start a new checkpoint cycle for unlinks (behaviour 24). */
  preCheckpoint(absorb: () => void): void {
    absorb();
    this.#checkpointCycle = (this.#checkpointCycle + 1) % CYCLE_MOD;
  }

  /**
   * ProcessSyncRequests: sync every entry that existed when the phase began. Throws on a sync
   * failure (the caller enters the failed state); entries not yet visited stay for the next
   * phase (P4).
   */
  async processSyncRequests(options: ProcessSyncOptions): Promise<SyncPhaseStats> {
    const { absorb, enableFsync, clock } = options;
    const stats: SyncPhaseStats = { syncFiles: 0, longestSyncUs: 0, totalSyncUs: 0, tagsDispatched: {} };

    // Pull in everything queued so far, including requests of writes that raced BufferSync.
    absorb();

    // P4. Do not merge this loop into the main one: it must touch every entry before any is
    // skipped as new, or a counter that wrapped after repeated failures could hide one.
    if (this.#syncInProgress) {
      for (const e of this.#pending.values()) e.cycle = this.#syncCycle;
    }

    this.#syncCycle = (this.#syncCycle + 1) % CYCLE_MOD;
    this.#syncInProgress = true;

    // The entries that existed when the phase began: each is exactly one cycle old (P1). Those
    // created from here on carry the new cycle and wait for the next phase, exactly as the
    // dynahash scan skips them.
    const eligible: PendingFsync[] = [];
    for (const e of this.#pending.values()) {
      // The message (a tag description) is built only on failure: this runs for every entry.
      if ((e.cycle + 1) % CYCLE_MOD !== this.#syncCycle) assert(false, `pending entry ${describeTag(e.tag)} is exactly one sync cycle old`);
      eligible.push(e);
    }
    let absorbCounter = FSYNCS_PER_ABSORB;
    const done = (key: string, e: PendingFsync): void => {
      // Synced, canceled, or fsync off: the entry is done (P3). While the callback ran, a
      // FORGET then SYNC may have replaced it with a new entry of the current cycle: keep that.
      const current = this.#pending.get(key);
      assert(current !== undefined, 'pendingOps corrupted');
      if (current === e) this.#pending.delete(key);
    };
    if (!enableFsync) {
      for (const e of eligible) done(e.key, e);
    } else {
      const synced = (e: PendingFsync, ops: SyncOps, started: number): void => {
        // Whole microseconds, as PostgreSQL's instr_time gives: rounding drops the
        // floating-point noise of a millisecond clock (1.1 - 0.1 is not exactly 1), which
        // would otherwise push an exact 1000 µs over into 2 ms when rounded up (behaviour 23).
        syncedIn(e, ops, Math.round((clock.now() - started) * 1000));
      };
      const syncedIn = (e: PendingFsync, ops: SyncOps, us: number): void => {
        stats.syncFiles++;
        stats.totalSyncUs += us;
        if (us > stats.longestSyncUs) stats.longestSyncUs = us;
        options.onSyncFile?.(`checkpoint sync: number=${stats.syncFiles} file=${describe(ops, e.tag)} time=${(us / 1000).toFixed(3)} ms`);
        done(e.key, e);
      };
      // The slow path, after a first failure: ENOENT once, since the file may have been dropped
      // with its FORGET still in the queue: absorb and look again. A second miss, or any other
      // error, is fatal.
      const retry = async (e: PendingFsync, ops: SyncOps, err: unknown): Promise<void> => {
        if (errnoOf(err) !== 'ENOENT') throw syncFailure(ops, e.tag, err);
        absorb();
        absorbCounter = FSYNCS_PER_ABSORB;
        if (e.canceled) return done(e.key, e);
        const started = clock.now();
        try {
          await ops.syncFileTag(e.tag);
        } catch (again) {
          throw syncFailure(ops, e.tag, again);
        }
        synced(e, ops, started);
      };
      // One entry: undefined when it is finished already. A handler that answers without a
      // promise (the volume once its checkpoint's one sync is done, volume.ts "Sync epoch")
      // costs no await: a thousand such entries are a loop, not a thousand event-loop turns.
      const visit = (e: PendingFsync): Promise<void> | undefined => {
        if (--absorbCounter <= 0) {
          absorb();
          absorbCounter = FSYNCS_PER_ABSORB;
        }
        if (e.canceled) {
          done(e.key, e); // P3
          return undefined;
        }
        return dispatch(e, this.#registry.ops(e.tag.handler));
      };
      const dispatch = (e: PendingFsync, ops: SyncOps): Promise<void> | undefined => {
        stats.tagsDispatched[ops.name] = (stats.tagsDispatched[ops.name] ?? 0) + 1;
        const started = clock.now();
        let result: void | Promise<void>;
        try {
          result = ops.syncFileTag(e.tag);
        } catch (err) {
          return retry(e, ops, err);
        }
        if (result === undefined) {
          synced(e, ops, started);
          return undefined;
        }
        return Promise.resolve(result).then(
          () => synced(e, ops, started),
          (err: unknown) => retry(e, ops, err),
        );
      };
      // P6: the tags of one handler with syncFileTags between two absorb points, as one call.
      const syncBatch = async (ops: SyncOps, entries: PendingFsync[]): Promise<void> => {
        let rest = entries;
        while (rest.length > 0) {
          let r: SyncTagsResult;
          try {
            r = await ops.syncFileTags!(rest.map((e) => e.tag));
          } catch (err) {
            // No answer at all: nothing of it is known to be durable.
            r = { done: 0, error: err, us: [] };
          }
          assert(r.done <= rest.length && (r.done === rest.length) === (r.error === undefined), `sync handler "${ops.name}": syncFileTags answered done=${r.done} of ${rest.length}`);
          for (let k = 0; k < r.done; k++) syncedIn(rest[k]!, ops, r.us[k] ?? 0);
          if (r.done === rest.length) return;
          await retry(rest[r.done]!, ops, r.error);
          // The retry absorbed: look at the rest again, as the loop would at each one's turn.
          rest = rest.slice(r.done + 1).filter((e) => {
            if (!e.canceled) return true;
            done(e.key, e);
            return false;
          });
        }
      };
      const limit = Math.max(1, options.concurrency ?? 1);
      if (limit === 1) {
        // PostgreSQL's loop: one entry after another; a handler with syncFileTags gets the
        // entries between two absorb points at once (P6).
        let batch: PendingFsync[] = [];
        let batchOps: SyncOps | null = null;
        const flush = async (): Promise<void> => {
          if (batch.length === 0) return;
          const entries = batch;
          batch = [];
          await syncBatch(batchOps!, entries);
        };
        for (const e of eligible) {
          if (--absorbCounter <= 0) {
            await flush();
            absorb();
            absorbCounter = FSYNCS_PER_ABSORB;
          }
          if (e.canceled) {
            done(e.key, e); // P3
            continue;
          }
          const ops = this.#registry.ops(e.tag.handler);
          if (!ops.syncFileTags) {
            await flush();
            const pending = dispatch(e, ops);
            if (pending !== undefined) await pending;
            continue;
          }
          if (batchOps !== ops) await flush();
          batchOps = ops;
          stats.tagsDispatched[ops.name] = (stats.tagsDispatched[ops.name] ?? 0) + 1;
          batch.push(e);
        }
        await flush();
      } else {
        await forEachInFlight(eligible, limit, async (e) => {
          await visit(e);
        });
      }
    }

    this.#syncInProgress = false;
    return stats;
  }

  /**
   * SyncPostCheckpoint: remove the files whose UNLINK was absorbed before this checkpoint's
   * preCheckpoint. Stops at the first entry of the current cycle: the list is in arrival order.
   */
  async postCheckpoint(options: PostCheckpointOptions): Promise<number> {
    let unlinked = 0;
    let absorbCounter = UNLINKS_PER_ABSORB;
    let i = 0;
    for (; i < this.#unlinks.length; i++) {
      const u = this.#unlinks[i]!;
      if (u.canceled) continue;
      if (u.cycle === this.#checkpointCycle) break;
      const ops = this.#registry.ops(u.tag.handler);
      assert(ops.unlinkFileTag, `sync handler "${ops.name}" received an UNLINK request but has no unlinkFileTag`);
      try {
        await ops.unlinkFileTag.call(ops, u.tag);
        unlinked++;
      } catch (err) {
        // Past the point of no return: the checkpoint is complete. ENOENT is normal (something
        // removed it first); anything else is a warning, and the entry is not retried.
        if (errnoOf(err) !== 'ENOENT') {
          options.onWarning?.(`could not remove file "${describe(ops, u.tag)}": ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      u.canceled = true;
      if (--absorbCounter <= 0) {
        options.absorb();
        absorbCounter = UNLINKS_PER_ABSORB;
      }
    }
    this.#unlinks = this.#unlinks.slice(i);
    return unlinked;
  }

  /** For invariant checks in tests: every entry is at most one cycle old. */
  checkInvariants(): void {
    for (const e of this.#pending.values()) {
      const age = (this.#syncCycle - e.cycle + CYCLE_MOD) % CYCLE_MOD;
      assert(age === 0 || age === 1 || this.#syncInProgress, `entry ${describeTag(e.tag)} is ${age} cycles old`);
    }
  }
}

function describe(ops: SyncOps, tag: FileTag): string {
  return ops.describeTag ? ops.describeTag(tag) : `${ops.name}:${describeTag(tag)}`;
}

function syncFailure(ops: SyncOps, tag: FileTag, err: unknown): LamstoreError {
  const errno = errnoOf(err);
  const detail = err instanceof Error ? err.message : String(err);
  return new LamstoreError(ErrorCode.IO_ERROR, `could not fsync file "${describe(ops, tag)}": ${errno ?? 'error'} (${detail})`, {
    cause: err,
    errno,
    syscall: 'fsync',
    path: describe(ops, tag),
  });
}
