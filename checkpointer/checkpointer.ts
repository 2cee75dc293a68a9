/**
 * The checkpointer: owns the sync request queue, absorbs it, decides when to checkpoint, and
 * runs checkpoints in PostgreSQL's order (CreateCheckPoint / CheckPointGuts):
 *
 *   1. pre-checkpoint   absorb the queue, advance the checkpoint cycle (SyncPreCheckpoint);
 *                       a timed checkpoint with nothing written since the last one stops here
 *   2. storage begin    storage managers open their per-checkpoint epoch
 *   3. BufferSync       buffers dirty at this moment, sorted, coalesced, paced  [write timer]
 *   4. SLRU checkpoint  every dirty SLRU page written
 *   5. sync phase       pending ops dispatched to their handlers (ProcessSyncRequests) [sync timer]
 *   6. storage end      storage managers learn the checkpoint completed (space reuse)
 *   7. post-checkpoint  unlinks requested before step 1 (SyncPostCheckpoint)
 *   8. control file     the checkpoint's number and time (and, for a shutdown checkpoint, the
 *                       clean state) written and synced (UpdateControlFile): the checkpoint is
 *                       complete when this returns (K7)
 *
 * It imports nothing from engine/: the interfaces below are what it needs, and
 * engine/engine.ts satisfies them.
 *
 * Invariants:
 *  K1 One checkpoint runs at a time. A request made while one runs is served by the next one
 *     (its writes may have missed the running one); requests made before that next one starts
 *     merge into it with their flags OR-ed (behaviour 42). Every waiter of a failed checkpoint
 *     gets its error.
 *  K2 A FAST checkpoint never sleeps. A spread one sleeps in SPREAD_NAP_MS steps while its
 *     progress x completionTarget is ahead of the elapsed fraction of checkpointTimeoutMs
 *     (behaviour 41), and stops sleeping as soon as a FAST request waits behind it.
 *  K3 A sync phase failure is reported to the engine (failed state) before anything else runs:
 *     no storage-end "completed", no unlinks.
 *  K4 Triggers: explicit request, checkpointTimeoutMs since the last checkpoint started (timed
 *     checkpoints are evenly spaced), dirty bytes above maxDirtyBytes, shutdown.
 *  K5 A bounded shutdown (setDeadline) never hangs past its bound in the write phase: once the
 *     deadline passes, the running checkpoint stops writing and fails with TIMEOUT at its next
 *     range or phase boundary. BufferSync is told it is bounded and then hands out small writes
 *     (buffer pool BOUNDED_WRITE_BLOCKS_MAX), so that boundary comes soon after the deadline on
 *     every storage manager. Progress is logged at least once a second and at least four times
 *     within the bound. A single hung fsync cannot be interrupted from user space.
 *  K6 stop() ends the timer loop at once: nothing the checkpointer started (and so nothing of
 *     the engine) stays reachable from a pending clock timer after close.
 *  K7 The control file is written last, after the unlinks and the sync ledger's check, so it
 *     never names a checkpoint that failed; a checkpoint idle-skipped at step 1 does not write
 *     it. Its write failing fails the checkpoint (the engine, which owns the file, puts itself
 *     in the failed state).
 */
import { ABSORB_BATCH_SIZE, SyncRequestQueue } from './request-queue.js';

export interface SyncPhaseStatsLike {
  syncFiles: number;
  longestSyncUs: number;
  totalSyncUs: number;
  tagsDispatched: Record<string, number>;
}

export interface CheckpointClock {
  now(): number;
  sleep(ms: number, options?: { background?: boolean }): Promise<void>;
}

/** engine/sync's PendingOps, as the checkpointer sees it. */
export interface SyncPhases<R> {
  remember(request: R): void;
  preCheckpoint(absorb: () => void): void;
  processSyncRequests(options: {
    absorb: () => void;
    enableFsync: boolean;
    clock: CheckpointClock;
    onSyncFile?: (line: string) => void;
  }): Promise<SyncPhaseStatsLike>;
  postCheckpoint(options: { absorb: () => void; onWarning?: (line: string) => void }): Promise<number>;
}

export interface BufferSyncResult {
  buffersWritten: number;
  bytesWritten: number;
  rangesWritten: number;
  /** Contiguous stretches written, and pages moved to a new block (WriteResult). */
  runsWritten: number;
  pagesRelocated: number;
}

/** What the checkpointer needs from the engine's buffer pool, SLRUs and storage managers. */
export interface CheckpointParticipants {
  /**
   * BufferSync: write the buffers dirty now, sorted and coalesced. `pace(progress)` is called
   * after each range with progress in 0..1; a spread checkpoint sleeps there, a bounded one
   * checks its deadline there. `bounded`: ranges stay small, so pace comes often (K5).
   */
  bufferSync?(pace: (progress: number) => Promise<void>, options: { includeUnlogged: boolean; bounded: boolean }): Promise<BufferSyncResult>;
  /** Shutdown checkpoint only: make unlogged relations durable (ordinary ones never do). */
  syncUnlogged?(): Promise<void>;
  /** Total buffers (for "wrote N buffers (P%)"). */
  bufferCount?(): number;
  /** Pages changed in memory and not yet written (buffers and SLRU pages). */
  dirtyPageCount?(): number;
  checkpointSlrus?(): Promise<void>;
  storageBegin?(): Promise<void>;
  storageEnd?(completed: boolean): Promise<void>;
  /**
   * Raw I/O counters; the statistics are their difference across the checkpoint.
   * `writebacksIssued` (writeback hints carried out by the FileIO) may be left out by a
   * participant whose I/O gives no hints: it then counts as 0.
   */
  ioCounts(): { fsync: number; fdatasync: number; fsyncDir: number; bytesWritten: number; writebacksIssued?: number };
  /** A sync phase failure: the engine enters its failed state (unless it retries). */
  onSyncFailure(err: unknown): void;
  /** Sync ledger: start an epoch at checkpoint start ... */
  beginVerifyEpoch?(): number;
  /** ... and, after the sync phase, throw if a write from before it is still unsynced. */
  verifySynced?(epoch: number): void;
  /**
   * Run `fn` as the checkpointer (its own sync requests bypass the queue, behaviour 30). Every
   * step of a checkpoint runs so except BufferSync, whose writes say so themselves (WriteOrigin
   * 'checkpoint'): the engine marks the checkpointer with an AsyncLocalStorage, and on Node 20
   * an enabled one runs a promise hook for every promise in the process, 11-19 % of the main
   * thread's CPU in a checkpoint's write phase (BENCHMARKS.md, 2026-12-03).
   */
  runAsCheckpointer<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Step 8 (K7): record the completed checkpoint durably. `startMs` is this checkpointer's
   * clock at the checkpoint's start.
   */
  updateControlFile?(checkpoint: { shutdown: boolean; startMs: number }): Promise<void>;
}

export const CheckpointFlags = {
  SHUTDOWN: 0x1,
  FAST: 0x4,
  FORCE: 0x8,
  CAUSE_TIME: 0x100,
  CAUSE_DIRTY: 0x200,
} as const;

export interface CheckpointStats {
  buffersWritten: number;
  writeMs: number;
  syncMs: number;
  totalMs: number;
  /** Files synced successfully in the sync phase. */
  syncFiles: number;
  /** Rounded up to whole milliseconds from microseconds (behaviour 23). */
  longestSyncMs: number;
  averageSyncMs: number;
  tagsDispatched: Record<string, number>;
  /** Every fsync (files and directories) / fdatasync the checkpoint made. */
  fsyncCalls: number;
  fdatasyncCalls: number;
  bytesWritten: number;
  /**
   * Writeback hints (checkpointFlushAfter) that reached the kernel during the checkpoint: on
   * Linux with real files, sync_file_range(SYNC_FILE_RANGE_WRITE) calls that succeeded (on
   * SimDisk, hints it received). 0 where the FileIO has none (RealIO off Linux, or without
   * koffi): the hints were still scheduled and issued (CountingIO's `writeback`), then dropped.
   * BufferSync issues them while writing, so they belong to the write phase.
   */
  writebacksIssued: number;
  rangesWritten: number;
  /**
   * Contiguous stretches of storage BufferSync wrote (md: its ranges; the volume: runs of
   * volume blocks, each one or more pwritev calls of at most IOV_MAX pages).
   */
  runsWritten: number;
  /** Pages BufferSync wrote to a block other than their old one (the copy-on-write volume; md 0). */
  pagesRelocated: number;
  unlinks: number;
  /** Files storage managers synced themselves because the queue was full, since the last checkpoint. */
  backendFsyncs: number;
  /** Queue compactions since the last checkpoint. */
  queueCompactions: number;
  /** A timed checkpoint that found nothing written since the last one and did no work. */
  skipped: boolean;
  /** Milliseconds slept pacing a spread checkpoint. */
  sleptMs: number;
  flags: number;
}

export interface CheckpointerOptions<R> {
  sync: SyncPhases<R>;
  participants: CheckpointParticipants;
  clock: CheckpointClock;
  queueSize: number;
  keyOf: (request: R) => string;
  enableFsync: boolean;
  /** @default 300000 (PostgreSQL's checkpoint_timeout) */
  checkpointTimeoutMs?: number;
  /** Dirty bytes that trigger a checkpoint; undefined: never. */
  maxDirtyBytes?: number;
  /** @default 0.9 */
  completionTarget?: number;
  onLog?: (line: string) => void;
}

export const CHECKPOINT_TIMEOUT_MS_DEFAULT = 300_000;
export const COMPLETION_TARGET_DEFAULT = 0.9;
/** CheckpointWriteDelay's nap: short enough to absorb requests often, long enough to matter. */
export const SPREAD_NAP_MS = 100;

interface PendingRequest {
  flags: number;
  promise: Promise<CheckpointStats>;
  resolve: (s: CheckpointStats) => void;
  reject: (e: unknown) => void;
}

/** µs -> whole ms, rounded up (LogCheckpointEnd, behaviour 23). */
export function msRoundedUp(us: number): number {
  return Math.floor((Math.ceil(us) + 999) / 1000);
}

export class Checkpointer<R> {
  readonly queue: SyncRequestQueue<R>;
  readonly #o: CheckpointerOptions<R>;
  readonly timeoutMs: number;
  readonly completionTarget: number;
  #running: Promise<void> | null = null;
  #next: PendingRequest | null = null;
  #backendFsyncs = 0;
  #compactionsSeen = 0;
  /** Requests queued or pages dirtied by backends: "WAL written" for the idle skip. */
  #activity = 0;
  #activityAtLastCheckpoint = 0;
  #stopped = false;
  /** Bounded shutdown: past this clock time, checkpoints stop writing and fail (K5). */
  #deadlineMs = Infinity;
  #deadlineBoundMs = 0;
  #timerRunning = false;
  /** Ends the timer's current sleep early (stop()): see K6. */
  #wakeTimer: (() => void) | null = null;
  #absorbScheduled = false;
  /** Times the half-full queue woke the checkpointer (behaviour 33). */
  wakeups = 0;
  /** Checkpoints completed (skipped ones included) and failed. */
  completed = 0;
  failed = 0;
  /** When the last checkpoint started: timed checkpoints are spaced from here. */
  lastStartMs: number;

  constructor(options: CheckpointerOptions<R>) {
    this.#o = options;
    this.timeoutMs = options.checkpointTimeoutMs ?? CHECKPOINT_TIMEOUT_MS_DEFAULT;
    this.completionTarget = options.completionTarget ?? COMPLETION_TARGET_DEFAULT;
    if (!(this.timeoutMs > 0)) throw new RangeError(`checkpointTimeoutMs must be positive, got ${this.timeoutMs}`);
    if (!(this.completionTarget >= 0 && this.completionTarget <= 1)) throw new RangeError(`completionTarget must be in 0..1, got ${this.completionTarget}`);
    this.queue = new SyncRequestQueue<R>(options.queueSize, options.keyOf);
    this.queue.onHalfFull = () => this.#wake();
    this.lastStartMs = options.clock.now();
  }

  /** AbsorbSyncRequests: move every queued request into the pending-ops table. */
  absorb = (): void => {
    this.queue.drain((r) => this.#o.sync.remember(r), ABSORB_BATCH_SIZE);
  };

  /** The queue reached half full: absorb soon, as the woken checkpointer would. */
  #wake(): void {
    this.wakeups++;
    if (this.#absorbScheduled) return;
    this.#absorbScheduled = true;
    setImmediate(() => {
      this.#absorbScheduled = false;
      if (!this.#stopped) this.absorb();
    });
  }

  countBackendFsync(): void {
    this.#backendFsyncs++;
  }

  /** A backend wrote something (queued a request, dirtied a page): not idle any more. */
  noteActivity(): void {
    this.#activity++;
  }

  /** Trigger: dirty bytes above maxDirtyBytes request a checkpoint (in the background). */
  noteDirtyBytes(dirtyBytes: number): void {
    const max = this.#o.maxDirtyBytes;
    if (max === undefined || dirtyBytes <= max || this.#stopped) return;
    if (this.#next || this.#running) return; // one is coming; it will take these pages
    this.#background(CheckpointFlags.CAUSE_DIRTY);
  }

  get running(): boolean {
    return this.#running !== null;
  }

  /** Start the timer that requests a checkpoint every checkpointTimeoutMs (K4). */
  startTimer(): void {
    if (this.#timerRunning) return;
    this.#timerRunning = true;
    void (async () => {
      while (!this.#stopped) {
        const due = this.lastStartMs + this.timeoutMs;
        const now = this.#o.clock.now();
        if (now >= due) {
          // Wait for it so that lastStartMs has moved before the next round.
          // A failed timed checkpoint is not lost: a sync failure already put the engine in the
          // failed state (K3), and any failure is logged; the next round retries.
          await this.request(CheckpointFlags.CAUSE_TIME).catch((err: unknown) => {
            this.#o.onLog?.(`checkpoint failed: ${err instanceof Error ? err.message : String(err)}`);
          });
        } else {
          // K6: stop() ends the wait, so the loop (and the engine it references) is not kept
          // alive by a clock timer for up to checkpointTimeoutMs after close.
          const woken = new Promise<void>((resolve) => (this.#wakeTimer = resolve));
          await Promise.race([this.#o.clock.sleep(due - now, { background: true }), woken]);
          this.#wakeTimer = null;
        }
      }
    })();
  }

  /** Stop timers and background triggers; a running checkpoint finishes. */
  stop(): void {
    this.#stopped = true;
    this.#wakeTimer?.();
  }

  /** Bound every checkpoint running or started from now on to `boundMs` from now (K5). */
  setDeadline(boundMs: number): void {
    this.#deadlineBoundMs = boundMs;
    this.#deadlineMs = this.#o.clock.now() + boundMs;
  }

  #checkDeadline(what: string): void {
    if (this.#o.clock.now() <= this.#deadlineMs) return;
    const left = this.#o.participants.dirtyPageCount?.() ?? 0;
    throw Object.assign(new Error(`shutdown checkpoint did not finish within ${this.#deadlineBoundMs} ms (stopped ${what}, ${left} pages left unwritten); the data directory is left unclean`), {
      code: 'TIMEOUT',
    });
  }

  #background(flags: number): void {
    this.request(flags).catch((err: unknown) => {
      this.#o.onLog?.(`checkpoint failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  /** Request a checkpoint and wait for the one that serves it (K1). */
  request(flags: number): Promise<CheckpointStats> {
    if (!this.#next) {
      let resolve!: (s: CheckpointStats) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<CheckpointStats>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#next = { flags: 0, promise, resolve, reject };
    }
    this.#next.flags |= flags;
    const p = this.#next.promise;
    if (!this.#running) this.#startNext();
    return p;
  }

  #startNext(): void {
    const req = this.#next;
    if (!req) return;
    this.#next = null;
    this.#running = (async () => {
      try {
        req.resolve(await this.#run(req.flags));
      } catch (err) {
        this.failed++;
        req.reject(err);
      } finally {
        this.#running = null;
        this.#startNext();
      }
    })();
  }

  /** Wait until no checkpoint runs or is queued. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** A FAST request waits behind the running checkpoint: stop pacing. */
  #fastWaiting(): boolean {
    return this.#next !== null && (this.#next.flags & (CheckpointFlags.FAST | CheckpointFlags.SHUTDOWN)) !== 0;
  }

  async #run(flags: number): Promise<CheckpointStats> {
    const { sync, participants: p, clock } = this.#o;
    const startMs = clock.now();
    this.lastStartMs = startMs;
    const ioBefore = p.ioCounts();
    const activityAtStart = this.#activity;
    const ledgerEpoch = p.beginVerifyEpoch?.();
    // Each step but BufferSync as the checkpointer (see CheckpointParticipants.runAsCheckpointer).
    const asCheckpointer = <T>(fn: () => Promise<T>): Promise<T> => p.runAsCheckpointer(fn);

    sync.preCheckpoint(this.absorb);

    // The idle skip: only a checkpoint that nobody forced, with nothing written since the last
    // one (behaviour 29). It still did the pre-checkpoint absorb and cycle bump above.
    const forced = (flags & (CheckpointFlags.FORCE | CheckpointFlags.SHUTDOWN | CheckpointFlags.CAUSE_DIRTY)) !== 0;
    if (!forced && this.#activity === this.#activityAtLastCheckpoint && (p.dirtyPageCount?.() ?? 0) === 0) {
      this.completed++;
      return this.#stats(flags, startMs, ioBefore, { skipped: true });
    }

    let sleptMs = 0;
    const fast = (flags & (CheckpointFlags.FAST | CheckpointFlags.SHUTDOWN)) !== 0;
    const bounded = this.#deadlineMs !== Infinity;
    const bytesAtStart = ioBefore.bytesWritten;
    let lastReportMs = startMs;
    // Once a second for long bounds; for a bound under four seconds, four times within it, so a
    // bound under a second (a service manager's stop timeout, a test) still shows progress
    // before its TIMEOUT instead of none at all.
    const reportEveryMs = Math.min(1000, this.#deadlineBoundMs / 4);
    const pace = async (progress: number): Promise<void> => {
      if (bounded) {
        // K5, with progress a person can read while waiting for a stop.
        const now = clock.now();
        if (now - lastReportMs >= reportEveryMs) {
          lastReportMs = now;
          const bytes = p.ioCounts().bytesWritten - bytesAtStart;
          const rate = bytes / Math.max(1e-3, (now - startMs) / 1000);
          this.#o.onLog?.(`shutdown checkpoint: ${p.dirtyPageCount?.() ?? 0} pages left, ${(progress * 100).toFixed(0)}% written, ${(rate / 1048576).toFixed(1)} MiB/s`);
        }
        this.#checkDeadline('in the write phase');
      }
      // K2. CheckpointWriteDelay: nap while ahead of schedule, absorbing as we go.
      if (fast) return;
      while (!this.#fastWaiting() && !this.#stopped) {
        const elapsed = (clock.now() - startMs) / this.timeoutMs;
        if (progress * this.completionTarget <= elapsed) break;
        this.absorb();
        await clock.sleep(SPREAD_NAP_MS);
        sleptMs += SPREAD_NAP_MS;
      }
    };

    let completed = false;
    if (p.storageBegin) await asCheckpointer(() => p.storageBegin!());
    try {
      const writeStart = clock.now();
      const shutdown = (flags & CheckpointFlags.SHUTDOWN) !== 0;
      const bs = p.bufferSync ? await p.bufferSync(pace, { includeUnlogged: shutdown, bounded }) : { buffersWritten: 0, bytesWritten: 0, rangesWritten: 0, runsWritten: 0, pagesRelocated: 0 };
      if (p.checkpointSlrus) await asCheckpointer(() => p.checkpointSlrus!());
      if (shutdown && p.syncUnlogged) await asCheckpointer(() => p.syncUnlogged!());
      if (bounded) this.#checkDeadline('before the sync phase');

      const syncStart = clock.now();
      let syncStats: SyncPhaseStatsLike;
      try {
        syncStats = await asCheckpointer(() => sync.processSyncRequests({ absorb: this.absorb, enableFsync: this.#o.enableFsync, clock, onSyncFile: this.#o.onLog }));
      } catch (err) {
        p.onSyncFailure(err); // K3
        throw err;
      }
      const syncEnd = clock.now();
      completed = true;
      if (p.storageEnd) await asCheckpointer(() => p.storageEnd!(true));

      const unlinks = await asCheckpointer(() => sync.postCheckpoint({ absorb: this.absorb, onWarning: this.#o.onLog }));
      // The sync ledger looks after the unlinks: a dropped relation's tombstone was truncated
      // without a sync (PostgreSQL does not sync it either) and is gone now.
      if (ledgerEpoch !== undefined && this.#o.enableFsync) p.verifySynced?.(ledgerEpoch);
      if (p.updateControlFile) await asCheckpointer(() => p.updateControlFile!({ shutdown, startMs })); // K7
      this.#activityAtLastCheckpoint = activityAtStart;
      this.completed++;
      const stats = this.#stats(flags, startMs, ioBefore, {
        buffersWritten: bs.buffersWritten,
        writeMs: syncStart - writeStart,
        syncMs: syncEnd - syncStart,
        syncFiles: syncStats.syncFiles,
        longestSyncMs: msRoundedUp(syncStats.longestSyncUs),
        averageSyncMs: syncStats.syncFiles === 0 ? 0 : msRoundedUp(Math.floor(syncStats.totalSyncUs / syncStats.syncFiles)),
        tagsDispatched: syncStats.tagsDispatched,
        rangesWritten: bs.rangesWritten,
        runsWritten: bs.runsWritten,
        pagesRelocated: bs.pagesRelocated,
        unlinks,
        sleptMs,
      });
      this.#o.onLog?.(formatCheckpointLine(stats, p.bufferCount?.() ?? 0));
      return stats;
    } finally {
      if (!completed && p.storageEnd) await asCheckpointer(() => p.storageEnd!(false));
    }
  }

  #stats(flags: number, startMs: number, ioBefore: ReturnType<CheckpointParticipants['ioCounts']>, part: Partial<CheckpointStats>): CheckpointStats {
    const ioAfter = this.#o.participants.ioCounts();
    const stats: CheckpointStats = {
      buffersWritten: 0,
      writeMs: 0,
      syncMs: 0,
      totalMs: this.#o.clock.now() - startMs,
      syncFiles: 0,
      longestSyncMs: 0,
      averageSyncMs: 0,
      tagsDispatched: {},
      fsyncCalls: ioAfter.fsync - ioBefore.fsync + (ioAfter.fsyncDir - ioBefore.fsyncDir),
      fdatasyncCalls: ioAfter.fdatasync - ioBefore.fdatasync,
      bytesWritten: ioAfter.bytesWritten - ioBefore.bytesWritten,
      writebacksIssued: (ioAfter.writebacksIssued ?? 0) - (ioBefore.writebacksIssued ?? 0),
      rangesWritten: 0,
      runsWritten: 0,
      pagesRelocated: 0,
      unlinks: 0,
      backendFsyncs: this.#backendFsyncs,
      queueCompactions: this.queue.stats.compactions - this.#compactionsSeen,
      skipped: false,
      sleptMs: 0,
      flags,
      ...part,
    };
    this.#backendFsyncs = 0;
    this.#compactionsSeen = this.queue.stats.compactions;
    return stats;
  }
}

/** PostgreSQL's log_checkpoints end line. */
export function formatCheckpointLine(s: CheckpointStats, bufferCount: number): string {
  const pct = bufferCount > 0 ? ((s.buffersWritten * 100) / bufferCount).toFixed(1) : '0.0';
  const sec = (ms: number) => (ms / 1000).toFixed(3);
  return (
    `checkpoint complete: wrote ${s.buffersWritten} buffers (${pct}%); ` +
    `write=${sec(s.writeMs)} s, sync=${sec(s.syncMs)} s, total=${sec(s.totalMs)} s; ` +
    `sync files=${s.syncFiles}, longest=${sec(s.longestSyncMs)} s, average=${sec(s.averageSyncMs)} s`
  );
}
