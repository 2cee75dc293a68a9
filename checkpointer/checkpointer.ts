/**
 * The checkpointer: owns the sync request queue, absorbs it, and runs checkpoints in
 * PostgreSQL's order (CreateCheckPoint / CheckPointGuts):
 *
 *   1. pre-checkpoint   absorb the queue, advance the checkpoint cycle (SyncPreCheckpoint)
 *   2. storage begin    storage managers open their per-checkpoint epoch
 *   3. BufferSync       dirty buffers of checkpoint start, sorted, coalesced   [write timer]
 *   4. SLRU checkpoint  every dirty SLRU page written
 *   5. sync phase       pending ops dispatched to their handlers (ProcessSyncRequests) [sync timer]
 *   6. storage end      storage managers learn the checkpoint completed (space reuse)
 *   7. post-checkpoint  unlinks requested before step 1 (SyncPostCheckpoint)
 *
 * It imports nothing from engine/: the interfaces below are what it needs, and
 * engine/engine.ts satisfies them.
 *
 * Concurrency: one checkpoint runs at a time. A request made while one runs is served by the
 * next one (its writes may have missed the running one); requests made before that next one
 * starts merge into it (flags OR-ed, behaviour 42). Every waiter of a failed checkpoint gets
 * its error.
 */
import { ABSORB_BATCH_SIZE, SyncRequestQueue } from './request-queue.js';

export interface SyncPhaseStatsLike {
  syncFiles: number;
  longestSyncUs: number;
  totalSyncUs: number;
  tagsDispatched: Record<string, number>;
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
}

/** What the checkpointer needs from the engine's buffer pool, SLRUs and storage managers. */
export interface CheckpointParticipants {
  /**
   * BufferSync: write the buffers dirty now, sorted and coalesced. `pace(progress)` is called
   * after each range with progress in 0..1; a spread checkpoint sleeps there.
   */
  bufferSync?(pace: (progress: number) => Promise<void>): Promise<BufferSyncResult>;
  /** Total buffers (for "wrote N buffers (P%)"). */
  bufferCount?(): number;
  checkpointSlrus?(): Promise<void>;
  storageBegin?(): Promise<void>;
  storageEnd?(completed: boolean): Promise<void>;
  /** Raised I/O counters; the statistics are their difference across the checkpoint. */
  ioCounts(): { fsync: number; fdatasync: number; fsyncDir: number; bytesWritten: number; pwrite: number };
  /** A sync phase failure: the engine enters its failed state (unless it retries). */
  onSyncFailure(err: unknown): void;
}

export interface CheckpointClock {
  now(): number;
  sleep(ms: number): Promise<void>;
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
  longestSyncMs: number;
  averageSyncMs: number;
  tagsDispatched: Record<string, number>;
  /** Every fsync / fdatasync the checkpoint made: data, metadata, directories, SLRUs. */
  fsyncCalls: number;
  fdatasyncCalls: number;
  bytesWritten: number;
  rangesWritten: number;
  unlinks: number;
  /** Files storage managers synced themselves because the queue was full (since the last checkpoint). */
  backendFsyncs: number;
  /** Queue compactions since the last checkpoint. */
  queueCompactions: number;
  /** True when a time-triggered checkpoint found nothing to do and skipped its work. */
  skipped: boolean;
  flags: number;
}

export interface CheckpointerOptions<R> {
  sync: SyncPhases<R>;
  participants: CheckpointParticipants;
  clock: CheckpointClock;
  queueSize: number;
  keyOf: (request: R) => string;
  enableFsync: boolean;
  onLog?: (line: string) => void;
}

interface PendingRequest {
  flags: number;
  promise: Promise<CheckpointStats>;
  resolve: (s: CheckpointStats) => void;
  reject: (e: unknown) => void;
}

/** µs -> whole ms, rounded up (LogCheckpointEnd, behaviour 23). */
function msUp(us: number): number {
  return Math.floor((Math.ceil(us) + 999) / 1000);
}

export class Checkpointer<R> {
  readonly queue: SyncRequestQueue<R>;
  readonly #o: CheckpointerOptions<R>;
  #running: Promise<void> | null = null;
  #next: PendingRequest | null = null;
  #backendFsyncs = 0;
  #compactionsSeen = 0;
  /** Number of checkpoints completed. */
  completed = 0;
  /** Time the last checkpoint started (for timed triggers). */
  lastStartMs: number;

  constructor(options: CheckpointerOptions<R>) {
    this.#o = options;
    this.queue = new SyncRequestQueue<R>(options.queueSize, options.keyOf);
    this.lastStartMs = options.clock.now();
  }

  /** AbsorbSyncRequests: move every queued request into the pending-ops table. */
  absorb = (): void => {
    this.queue.drain((r) => this.#o.sync.remember(r), ABSORB_BATCH_SIZE);
  };

  countBackendFsync(): void {
    this.#backendFsyncs++;
  }

  get running(): boolean {
    return this.#running !== null;
  }

  /** Request a checkpoint and wait for the one that serves it. */
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

  async #run(flags: number): Promise<CheckpointStats> {
    const { sync, participants: p, clock } = this.#o;
    const startMs = clock.now();
    this.lastStartMs = startMs;
    const ioBefore = p.ioCounts();

    sync.preCheckpoint(this.absorb);

    let completed = false;
    await p.storageBegin?.();
    try {
      const writeStart = clock.now();
      const bs = p.bufferSync ? await p.bufferSync(async () => {}) : { buffersWritten: 0, bytesWritten: 0, rangesWritten: 0 };
      await p.checkpointSlrus?.();

      const syncStart = clock.now();
      let syncStats: SyncPhaseStatsLike;
      try {
        syncStats = await sync.processSyncRequests({
          absorb: this.absorb,
          enableFsync: this.#o.enableFsync,
          clock,
          onSyncFile: this.#o.onLog,
        });
      } catch (err) {
        p.onSyncFailure(err);
        throw err;
      }
      const syncEnd = clock.now();
      completed = true;
      await p.storageEnd?.(true);

      const unlinks = await sync.postCheckpoint({ absorb: this.absorb, onWarning: this.#o.onLog });
      const endMs = clock.now();
      const ioAfter = p.ioCounts();
      const stats: CheckpointStats = {
        buffersWritten: bs.buffersWritten,
        writeMs: syncStart - writeStart,
        syncMs: syncEnd - syncStart,
        totalMs: endMs - startMs,
        syncFiles: syncStats.syncFiles,
        longestSyncMs: msUp(syncStats.longestSyncUs),
        averageSyncMs: syncStats.syncFiles === 0 ? 0 : msUp(syncStats.totalSyncUs / syncStats.syncFiles),
        tagsDispatched: syncStats.tagsDispatched,
        fsyncCalls: ioAfter.fsync - ioBefore.fsync + (ioAfter.fsyncDir - ioBefore.fsyncDir),
        fdatasyncCalls: ioAfter.fdatasync - ioBefore.fdatasync,
        bytesWritten: ioAfter.bytesWritten - ioBefore.bytesWritten,
        rangesWritten: bs.rangesWritten,
        unlinks,
        backendFsyncs: this.#backendFsyncs,
        queueCompactions: this.queue.stats.compactions - this.#compactionsSeen,
        skipped: false,
        flags,
      };
      this.#backendFsyncs = 0;
      this.#compactionsSeen = this.queue.stats.compactions;
      this.completed++;
      this.#o.onLog?.(formatCheckpointLine(stats, p.bufferCount?.() ?? 0));
      return stats;
    } finally {
      if (!completed) await p.storageEnd?.(false);
    }
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
