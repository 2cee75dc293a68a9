/**
 * The buffer pool (PostgreSQL's bufmgr.c, reduced to what lamstore needs): `sharedBuffers`
 * pages in one ArrayBuffer allocated at open, a two-level map (fork entry by fork key, then
 * block number to buffer id), clock-sweep replacement with usage counts, pins, and BufferSync
 * for the checkpointer.
 *
 * The read path (readHit, readInto): a Relation handle keeps the ForkBuffers entry of each fork
 * it touches, so a buffer hit is one numeric Map lookup and one 8 KiB copy, synchronous, with no
 * key string built and nothing allocated (the issue's part 8: string keys, tag objects and a
 * `slice()` per hit made a hit cost 6-7 us). Key strings (`bufferKey`) are built on a miss only,
 * for BufferSync and the invariant check.
 *
 * Concurrency: the engine is single-threaded but operations interleave at every await. The
 * rules that keep them from hurting each other:
 *  B1 A mapped buffer is VALID or being read in (io kind READ). A lookup that finds a buffer
 *     being read waits on its I/O promise and looks again, so a half-filled page is never handed
 *     out; a failed read (I/O error or checksum mismatch) unmaps the buffer before waking waiters.
 *  B2 A pinned buffer is never chosen as a victim, so a buffer being written (its writer pins it)
 *     is never evicted or reused under the write.
 *  B3 A page never changes while a write of it is in flight: a change (write, writeHit) waits
 *     for it, holding its pin, as a PostgreSQL backend's exclusive content lock waits for the
 *     share lock FlushBuffer holds while it writes. So writes go out from the pool's own memory,
 *     with no copy: PostgreSQL copies a page on its way out (PageSetChecksumCopy) only because
 *     hint bits may change under that share lock, and lamstore has none, while its checksum is
 *     set when the page enters the pool (B8). At 16,000 pages a checkpoint the copy was 128 MiB
 *     of memory traffic on the main thread. The write start clears JUST_DIRTIED and its
 *     completion clears DIRTY only if JUST_DIRTIED is still clear, as PostgreSQL does; with
 *     changes waiting, that second test is a safeguard.
 *  B4 At most one write of a buffer is in flight (io kind WRITE); a second writer waits for it
 *     and looks again. Two in-flight writes of different versions could land out of order.
 *  B5 A failed write leaves the buffer dirty (and its CHECKPOINT_NEEDED flag); the error goes to
 *     the caller (a checkpoint then fails).
 *  B6 `discard` (truncate, drop) first bumps the fork's epoch, then waits for each affected
 *     buffer's I/O and unmaps it, dirty or not. Callers that looked at nblocks before an await
 *     pass a `stillValid` check on the epoch, so a write racing a truncation never re-creates a
 *     buffer past the new end.
 *  B7 Usage counts are capped at USAGE_COUNT_MAX (5, as PostgreSQL's BM_MAX_USAGE_COUNT).
 *  B8 A valid page in the pool always carries its checksum: it came from disk and passed
 *     verification, or it was put there by #install, which sets it. So a write copies the page
 *     as it is and computes no checksum (at 16,000 pages a checkpoint, recomputing cost more
 *     than the copy). Every change of a pool page goes through #install: keep it that way.
 *  B8 A hit copies out only a VALID buffer that is not being read in; a buffer being written
 *     (io kind WRITE) is readable, since nothing changes it until the write is done (B3). A miss copies
 *     into the caller's array only after the page passed its checksum, so a failed read leaves
 *     the caller's array untouched.
 *
 * BufferSync (reference section 9): flags every buffer dirty at its start with
 * CHECKPOINT_NEEDED and writes only those still flagged when reached. Each storage manager gets
 * its buffers through the one write contract (smgr.ts W1-W4): in BufferSync order (`syncOrder`:
 * by tag, tablespaces interleaved in proportion to their sizes, as PostgreSQL's progress heap
 * does), in batches of WRITE_COMBINE_MAX_BLOCKS copies; how each batch becomes write calls (which
 * pages coalesce, how many are in flight) is the storage manager's business. `pace(progress)` is
 * called after every batch. A bounded BufferSync (shutdown with a deadline) uses batches of
 * BOUNDED_WRITE_BLOCKS_MAX, so that pace, where the deadline is checked, comes soon after the
 * deadline passes.
 *
 * Writeback hints (buffer/writeback.ts): every buffer BufferSync writes is scheduled on a
 * WritebackContext made for that BufferSync, with limit `checkpointFlushAfter`; each time the
 * limit is reached the pending buffers go out as merged `smgr.writeback` ranges, and what is left
 * goes out when BufferSync ends. Nothing is scheduled when `enableFsync` is false or the limit
 * is 0, nor for a storage manager without `writeback` (the volume: its checkpoint is one
 * sequential write and an fdatasync right after, so a hint would change nothing; PostgreSQL
 * schedules such buffers too, to drop them at smgrwriteback, and that cost 16,000 awaits at
 * R=1000 P=16). A hint that fails fails the BufferSync, as a failed write does (md turns it into the
 * failed state, as PostgreSQL's data_sync_elevel does).
 *
 * The pool never computes anything but page checksums: set once, when a page enters it
 * (#install), never again on the way out (B8); checked on every read from disk, where a mismatch
 * is CHECKSUM_MISMATCH and the page is never returned.
 */
import { ErrorCode, LamstoreError, assert } from '../errors.js';
import type { ForkNumber, RelFileLocator } from '../relfile.js';
import { FORKS, describeFork } from '../relfile.js';
import { isUnloggedFork } from '../smgr/smgr.js';
import type { PageWrite, Persistence, StorageManager, WriteResult } from '../smgr/smgr.js';
import { setPageChecksum, verifyPageChecksum, PAGE_CHECKSUM_OFFSET } from '../page.js';
import { CHECKPOINT_FLUSH_AFTER_DEFAULT, WRITEBACK_MAX_PENDING_FLUSHES, WritebackContext } from './writeback.js';
import { LIBUV_POOL_THREADS, forEachInFlight } from '../io/in-flight.js';

export interface BufferTag {
  storage: string;
  rel: RelFileLocator;
  fork: ForkNumber;
  block: number;
  persistence: Persistence;
}

export interface BufferPoolOptions {
  nBuffers: number;
  blockSize: number;
  /** The storage manager of a name (throws UNKNOWN_STORAGE). */
  smgr(name: string): StorageManager;
  /** Called when a clean buffer becomes dirty, with the dirty count (checkpoint triggers). */
  onDirty?: (dirtyBuffers: number) => void;
  /** Writeback hint limit of BufferSync in buffers, 0..256; 0 disables. @default 32 */
  checkpointFlushAfter?: number;
  /** The engine's `fsync`: when false, no writeback hints are scheduled. @default true */
  enableFsync?: boolean;
}

export interface BufferSyncResult {
  buffersWritten: number;
  bytesWritten: number;
  rangesWritten: number;
  /** Contiguous stretches written, and pages moved to a new block (WriteResult). */
  runsWritten: number;
  pagesRelocated: number;
}

export interface BufferPoolStats {
  hits: number;
  misses: number;
  /** Buffers written by eviction (not by BufferSync). */
  evictionWrites: number;
  /** BufferSync's writeback hint batches issued, and the ranges they handed to storage managers. */
  writebackIssues: number;
  writebackRanges: number;
}

export const USAGE_COUNT_MAX = 5;

/** One BufferSync pass: its counters, writeback context and pacing. */
interface SyncRun {
  /** Most blocks handed out in one write (range or batch) before `pace` is called again. */
  writeBlocksMax: number;
  result: BufferSyncResult;
  /** Buffers selected at checkpoint start; `processed` of them examined so far. */
  total: number;
  processed: number;
  wb: WritebackContext | null;
  pace: (progress: number) => Promise<void>;
}
/** BufferSync's batch: 256 pages handed to a storage manager at once. */
export const WRITE_COMBINE_MAX_BLOCKS = 256;
/** Batches BufferSync keeps in flight (#writeAll): 4, libuv's pool. */
const BATCHES_IN_FLIGHT = LIBUV_POOL_THREADS;
/**
 * The same limit for a bounded BufferSync (a shutdown checkpoint with a deadline, checkpointer
 * K5). The deadline is looked at only in `pace`, between the writes BufferSync hands out, so a
 * slow disk overshoots the bound by up to one such write. At 256 blocks a batch, a volume whose
 * dirty pages fit in one batch wrote its whole write phase before the first look,
 * then timed out with "0 pages left unwritten" (true, but only because it had not stopped).
 * 32 blocks (checkpoint_flush_after's default) keeps the overshoot small and the writes still
 * vectored; ordinary checkpoints keep the full 256.
 */
export const BOUNDED_WRITE_BLOCKS_MAX = 32;

const F_VALID = 1;
const F_DIRTY = 2;
const F_JUST_DIRTIED = 4;
const F_CHECKPOINT_NEEDED = 8;

const IO_NONE = 0;
const IO_READ = 1;
const IO_WRITE = 2;

/*
 * Keys are built with Array.join, not template literals: a template literal past 12 characters
 * leaves a rope of ConsString objects (five per buffer key), and a pool of 16384 mapped buffers
 * then keeps some 80,000 extra heap objects that every major GC marks; a major GC inside a
 * checkpoint is an event-loop stall (the issue's part 6). join returns one flat string.
 */
export function forkBufferKey(storage: string, rel: RelFileLocator, fork: number): string {
  return [`${storage}|${rel.spcOid}`, rel.dbOid, rel.relNumber, fork].join('/');
}

/**
 * A fork's entry in the pool, handed to Relation handles (`forkBuffers`) so they look blocks up
 * without building keys. `epoch` is the fork's truncation epoch (B6): it grows at every discard,
 * so a caller that learnt nblocks at one epoch knows the fork has not shrunk while it is unchanged.
 */
export interface ForkBuffers {
  readonly epoch: number;
}

/** The pool's side of a ForkBuffers: the fork's identity, its blocks' buffer ids, its epoch. */
class ForkEntry implements ForkBuffers {
  epoch = 0;
  readonly blocks = new Map<number, number>();
  constructor(
    readonly owner: object,
    readonly storage: string,
    readonly rel: RelFileLocator,
    readonly fork: ForkNumber,
    readonly key: string,
  ) {}
}

export function bufferKey(tag: BufferTag): string {
  return [`${tag.storage}|${tag.rel.spcOid}`, tag.rel.dbOid, tag.rel.relNumber, tag.fork, tag.block].join('/');
}

/**
 * BufferSync's items are buffer ids, not objects: 16,000 of them live through a whole write phase
 * at R=1000 P=16, and an object each was the largest set of survivors its scavenges copied. The
 * key and the tag each buffer had when BufferSync selected it sit in the pool's `#syncKeys` and
 * `#syncTags` (one BufferSync at a time): the order and the writes use the tag as selected, even
 * once the buffer has been given to another page (then it no longer qualifies and is skipped).
 */
type SyncTags = readonly (BufferTag | null)[];

function compareTags(x: BufferTag, y: BufferTag): number {
  return x.rel.spcOid - y.rel.spcOid || x.rel.relNumber - y.rel.relNumber || x.rel.dbOid - y.rel.dbOid || x.fork - y.fork || x.block - y.block;
}

/** Whether `t` is the block after `prev` in the same fork (one run of a write). */
function nextInFork(prev: BufferTag, t: BufferTag): boolean {
  return t.block === prev.block + 1 && t.fork === prev.fork && t.rel.relNumber === prev.rel.relNumber && t.rel.dbOid === prev.rel.dbOid && t.rel.spcOid === prev.rel.spcOid;
}

/**
 * BufferSync's order (W1 of smgr.ts): sorted by (spcOid, relNumber, dbOid, fork, block), dbOid
 * after relNumber only so one file's blocks stay together. With several tablespaces, their runs
 * (consecutive blocks of one fork, at most `runMax`) are interleaved in proportion to their
 * sizes, as PostgreSQL's progress heap does, so every tablespace's disk is kept busy.
 */
function syncOrder(ids: number[], tags: SyncTags, runMax: number): number[] {
  ids.sort((a, b) => compareTags(tags[a]!, tags[b]!));
  if (ids.length === 0 || tags[ids[0]!]!.rel.spcOid === tags[ids[ids.length - 1]!]!.rel.spcOid) return ids;
  interface Space {
    runs: number[][];
    next: number;
    progress: number;
    slice: number;
  }
  const spaces: Space[] = [];
  let space: Space | null = null;
  let run: number[] = [];
  for (const id of ids) {
    const tag = tags[id]!;
    const prev = tags[run[run.length - 1]!];
    if (!space || tag.rel.spcOid !== prev!.rel.spcOid) {
      if (space) space.runs.push(run);
      space = { runs: [], next: 0, progress: 0, slice: 0 };
      spaces.push(space);
      run = [id];
      continue;
    }
    if (nextInFork(prev!, tag) && run.length < runMax) {
      run.push(id);
      continue;
    }
    space.runs.push(run);
    run = [id];
  }
  space!.runs.push(run);
  for (const s of spaces) s.slice = ids.length / s.runs.reduce((n, r) => n + r.length, 0);
  const out: number[] = [];
  for (;;) {
    // The tablespace with the least progress goes next (PostgreSQL's progress heap).
    let best: Space | null = null;
    for (const s of spaces) if (s.next < s.runs.length && (!best || s.progress < best.progress)) best = s;
    if (!best) break;
    const r = best.runs[best.next++]!;
    best.progress += best.slice * r.length;
    for (const id of r) out.push(id);
  }
  return out;
}

/**
 * The most runs (write calls) in one batch of a hinted storage manager (md): each run is a
 * segment to pin, a write and, once written, a hint to ask for, all on the main thread when the
 * batch returns. 32 is what a batch of checkpointFlushAfter one-page runs always had (R=1000
 * P=1), and at R=1000 P=1 two such batches answered together doubled the longest event-loop
 * stall (BENCHMARKS.md, "md's batches cut by write calls").
 */
export const HINTED_BATCH_RUNS = 32;

/**
 * A hinted storage manager's batches, and the runs of `order` in all (for
 * `hintedBatchesInFlight`): `order` cut after `blocksMax` buffers or before the run that would be
 * the batch's HINTED_BATCH_RUNS + 1st, whichever comes first. Not after every
 * checkpointFlushAfter buffers: the hints still go out per checkpointFlushAfter buffers written
 * (behaviour 40, #written schedules each buffer), but a batch of 32 buffers was one round trip
 * to the sync thread for every 256 KiB, 500 at R=1000 P=16, and the thread sat idle between
 * them. Batches of 256 buffers (16 runs there) made md's write phase a third shorter.
 */
export function hintedBatches(order: readonly number[], tags: SyncTags, blocksMax: number): { batches: number[][]; runs: number } {
  const batches: number[][] = [];
  let batch: number[] = [];
  let runsInBatch = 0;
  let runs = 0;
  for (let i = 0; i < order.length; i++) {
    const id = order[i]!;
    const newRun = i === 0 || !nextInFork(tags[order[i - 1]!]!, tags[id]!);
    if (newRun) runs++;
    if (batch.length === blocksMax || (newRun && runsInBatch === HINTED_BATCH_RUNS)) {
      batches.push(batch);
      batch = [];
      runsInBatch = 0;
    }
    if (newRun || batch.length === 0) runsInBatch++;
    batch.push(id);
  }
  if (batch.length > 0) batches.push(batch);
  return { batches, runs };
}

/**
 * Batches of a hinted storage manager (md) kept in flight: as many as keep the runs of the
 * batches in flight to about HINTED_BATCH_RUNS, at least 1, at most BATCHES_IN_FLIGHT. The
 * answers of the batches in flight tend to arrive in one turn of the event loop, and their runs
 * are the main thread's work in that turn: batches of HINTED_BATCH_RUNS one-page runs (R=1000
 * P=1) go one at a time. Batches of a few long runs (P=16: 16 runs of 16 pages) go two at a
 * time, so the sync thread has the next batch when it finishes one instead of waiting for the
 * main thread to send it.
 */
export function hintedBatchesInFlight(runs: number, batches: number): number {
  if (batches === 0 || runs === 0) return 1;
  return Math.max(1, Math.min(BATCHES_IN_FLIGHT, Math.floor((HINTED_BATCH_RUNS * batches) / runs)));
}

export class BufferPool {
  readonly nBuffers: number;
  readonly blockSize: number;
  readonly #smgr: (name: string) => StorageManager;
  readonly #memory: Uint8Array;
  readonly #flags: Uint8Array;
  readonly #usage: Uint8Array;
  readonly #pins: Uint32Array;
  readonly #ioKind: Uint8Array;
  /**
   * Per buffer, while its I/O runs and only once someone waits for it: the promise waiters
   * await, and what resolves it. Made on demand (#ioOf), not per I/O: a checkpoint starts one
   * write per dirty buffer, and a promise per buffer (through the checkpointer's async context
   * hooks) was the longest stall of a volume checkpoint's write phase.
   */
  readonly #ioWait: (Promise<void> | null)[];
  readonly #ioWake: ((() => void) | null)[];
  readonly #tags: (BufferTag | null)[];
  readonly #keys: (string | null)[];
  /** Per buffer, its key and tag when the running BufferSync selected it (SyncTags); one BufferSync at a time. */
  readonly #syncKeys: (string | null)[];
  readonly #syncTags: (BufferTag | null)[];
  /** The fork entry a mapped buffer belongs to (null when unmapped). */
  readonly #entries: (ForkEntry | null)[];
  /** One view per buffer, made at open, so copying a page out creates no view object. */
  readonly #pages: Uint8Array[];
  /** Fork entries by forkBufferKey; an entry stays once made (it carries the epoch). */
  readonly #forks = new Map<string, ForkEntry>();
  #hand = 0;
  /** Single-page copies for eviction writes (one per concurrent writer, reused). */
  #syncRunning = false;
  readonly stats: BufferPoolStats = { hits: 0, misses: 0, evictionWrites: 0, writebackIssues: 0, writebackRanges: 0 };
  readonly #flushAfter: number;
  readonly #enableFsync: boolean;

  #dirtyBuffers = 0;

  /** Every flag change goes through here, so the dirty count is exact. */
  #setFlags(id: number, flags: number): void {
    const was = this.#flags[id]! & F_DIRTY;
    this.#flags[id] = flags;
    const now = flags & F_DIRTY;
    if (was === now) return;
    if (now) {
      this.#dirtyBuffers++;
      this.#onDirty?.(this.#dirtyBuffers);
    } else this.#dirtyBuffers--;
  }

  readonly #onDirty: ((dirtyBuffers: number) => void) | undefined;

  constructor(options: BufferPoolOptions) {
    this.#onDirty = options.onDirty;
    assert(Number.isInteger(options.nBuffers) && options.nBuffers >= 1, 'buffer pool: nBuffers is a positive integer');
    assert(Number.isInteger(options.blockSize) && options.blockSize > PAGE_CHECKSUM_OFFSET + 4, 'buffer pool: blockSize holds the checksum');
    this.nBuffers = options.nBuffers;
    this.blockSize = options.blockSize;
    this.#smgr = options.smgr;
    this.#flushAfter = options.checkpointFlushAfter ?? CHECKPOINT_FLUSH_AFTER_DEFAULT;
    this.#enableFsync = options.enableFsync ?? true;
    assert(Number.isInteger(this.#flushAfter) && this.#flushAfter >= 0 && this.#flushAfter <= WRITEBACK_MAX_PENDING_FLUSHES, 'buffer pool: checkpointFlushAfter is in 0..256 (the engine validates the option)');
    // Allocated once, here (STYLE 12). Shared memory, as PostgreSQL's shared buffers are: the
    // sync thread writes pages straight from it (sync-thread.ts S7), never a copy.
    this.#memory = new Uint8Array(new SharedArrayBuffer(this.nBuffers * this.blockSize));
    this.#flags = new Uint8Array(this.nBuffers);
    this.#usage = new Uint8Array(this.nBuffers);
    this.#pins = new Uint32Array(this.nBuffers);
    this.#ioKind = new Uint8Array(this.nBuffers);
    this.#ioWait = new Array<Promise<void> | null>(this.nBuffers).fill(null);
    this.#ioWake = new Array<(() => void) | null>(this.nBuffers).fill(null);
    this.#tags = new Array<BufferTag | null>(this.nBuffers).fill(null);
    this.#keys = new Array<string | null>(this.nBuffers).fill(null);
    this.#syncKeys = new Array<string | null>(this.nBuffers).fill(null);
    this.#syncTags = new Array<BufferTag | null>(this.nBuffers).fill(null);
    this.#entries = new Array<ForkEntry | null>(this.nBuffers).fill(null);
    this.#pages = Array.from({ length: this.nBuffers }, (_, id) => this.#memory.subarray(id * this.blockSize, (id + 1) * this.blockSize));
  }

  #page(id: number): Uint8Array {
    return this.#pages[id]!;
  }

  /** The entry of a fork, made on first use (see ForkBuffers). */
  forkBuffers(storage: string, rel: RelFileLocator, fork: ForkNumber): ForkBuffers {
    return this.#entry(storage, rel, fork);
  }

  #entry(storage: string, rel: RelFileLocator, fork: ForkNumber): ForkEntry {
    const key = forkBufferKey(storage, rel, fork);
    let e = this.#forks.get(key);
    if (!e) this.#forks.set(key, (e = new ForkEntry(this, storage, { spcOid: rel.spcOid, dbOid: rel.dbOid, relNumber: rel.relNumber }, fork, key)));
    return e;
  }

  /** A ForkBuffers handed out by this pool (a foreign one is a programming error). */
  #own(fb: ForkBuffers): ForkEntry {
    // A field compare, not a key lookup: this runs on every hit.
    assert(fb instanceof ForkEntry && fb.owner === this, 'buffer pool: a ForkBuffers of this pool');
    return fb;
  }

  // ------------------------------------------------------------------ I/O state

  /** Mark buffer `id` as under I/O; #endIo ends it and wakes whoever waits. */
  #beginIo(id: number, kind: number): void {
    // The message is built only on failure: these run on every read miss, write and eviction.
    if (this.#ioKind[id] !== IO_NONE) assert(false, `buffer ${id}: one I/O at a time (B4)`);
    this.#ioKind[id] = kind;
  }

  #endIo(id: number): void {
    this.#ioKind[id] = IO_NONE;
    const wake = this.#ioWake[id];
    if (wake) {
      this.#ioWait[id] = null;
      this.#ioWake[id] = null;
      wake();
    }
  }

  /** The I/O running on buffer `id`, as a promise to wait on (made on first ask), or null. */
  /** The write in flight on buffer `id` (B3), or null. */
  #writeOf(id: number): Promise<void> | null {
    return this.#ioKind[id] === IO_WRITE ? this.#ioOf(id) : null;
  }

  #ioOf(id: number): Promise<void> | null {
    if (this.#ioKind[id] === IO_NONE) return null;
    let wait = this.#ioWait[id];
    if (!wait) {
      wait = new Promise<void>((resolve) => (this.#ioWake[id] = resolve));
      this.#ioWait[id] = wait;
    }
    return wait;
  }

  #unpin(id: number): void {
    if (!(this.#pins[id]! > 0)) assert(false, `buffer ${id}: unpin of an unpinned buffer`);
    this.#pins[id]!--;
  }

  #bumpUsage(id: number): void {
    if (this.#usage[id]! < USAGE_COUNT_MAX) this.#usage[id]!++;
  }

  /** Unmap buffer `id` and forget its contents (pins are left to their holders). */
  #invalidate(id: number): void {
    const entry = this.#entries[id];
    const tag = this.#tags[id];
    if (entry && tag && entry.blocks.get(tag.block) === id) entry.blocks.delete(tag.block);
    this.#entries[id] = null;
    this.#keys[id] = null;
    this.#tags[id] = null;
    this.#setFlags(id, 0);
    this.#usage[id] = 0;
  }

  // ------------------------------------------------------------------ replacement

  /** One clock sweep: an unpinned, idle buffer whose usage count reached 0, or -1. */
  #clockSweep(): number {
    const n = this.nBuffers;
    for (let step = 0; step < n * (USAGE_COUNT_MAX + 1); step++) {
      const id = this.#hand;
      this.#hand = id + 1 === n ? 0 : id + 1;
      if (this.#pins[id] !== 0 || this.#ioKind[id] !== IO_NONE) continue;
      if (this.#usage[id]! > 0) {
        this.#usage[id]!--;
        continue;
      }
      return id;
    }
    return -1;
  }

  /** A pinned, unmapped buffer ready for a new page; dirty victims are written out first. */
  async #getVictim(): Promise<number> {
    for (;;) {
      const id = this.#clockSweep();
      if (id < 0) {
        // Everything pinned or under I/O: wait for some I/O to finish, then sweep again.
        const busyId = this.#ioKind.findIndex((k) => k !== IO_NONE);
        const busy = busyId < 0 ? null : this.#ioOf(busyId);
        if (!busy) {
          throw new LamstoreError(ErrorCode.BUFFERS_EXHAUSTED, `no unpinned buffers available: sharedBuffers (${this.nBuffers}) is too small for the operations in flight`);
        }
        await busy;
        continue;
      }
      this.#pins[id] = 1;
      if (this.#flags[id]! & F_DIRTY) {
        try {
          await this.#flushOne(id);
        } catch (err) {
          this.#unpin(id);
          throw err;
        }
        this.stats.evictionWrites++;
        // Someone found it while it was written (B2/B3): leave it to them.
        if (this.#pins[id] !== 1 || this.#flags[id]! & F_DIRTY || this.#ioKind[id] !== IO_NONE) {
          this.#unpin(id);
          continue;
        }
      }
      this.#invalidate(id);
      return id;
    }
  }

  /** Write one pinned dirty buffer (eviction). False when it was clean by the time it was its turn. */
  async #flushOne(id: number): Promise<boolean> {
    for (let wait = this.#ioOf(id); wait; wait = this.#ioOf(id)) await wait;
    if (!(this.#flags[id]! & F_DIRTY)) return false;
    const tag = this.#tags[id]!;
    this.#beginIo(id, IO_WRITE);
    this.#setFlags(id, this.#flags[id]! & ~F_JUST_DIRTIED);
    try {
      // From the pool's memory, checksum included (B3, B8).
      await this.#smgr(tag.storage).writeBuffers([{ rel: tag.rel, fork: tag.fork, blockNum: tag.block, page: this.#page(id) }], 'eviction');
      // B3's safeguard: modified meanwhile -> stays dirty (and keeps CHECKPOINT_NEEDED).
      if (!(this.#flags[id]! & F_JUST_DIRTIED)) this.#setFlags(id, this.#flags[id]! & ~(F_DIRTY | F_CHECKPOINT_NEEDED));
    } finally {
      this.#endIo(id);
    }
    return true;
  }

  /**
   * Pin the buffer of (`entry`, `block`), reading it in on a miss. With `fill`, a miss installs
   * `fill` as a dirty page instead of reading (a full-page overwrite). On a miss `stillValid()`
   * is checked before the buffer is mapped; -1 when it does not hold (nothing mapped).
   */
  async #pin(entry: ForkEntry, block: number, persistence: Persistence, fill: Uint8Array | null, stillValid: () => boolean): Promise<number> {
    for (;;) {
      const found = entry.blocks.get(block);
      if (found !== undefined) {
        if (this.#ioKind[found] === IO_READ) {
          await this.#ioOf(found); // B1
          continue;
        }
        this.#pins[found]!++;
        this.#bumpUsage(found);
        this.stats.hits++;
        return found;
      }
      const id = await this.#getVictim();
      if (entry.blocks.has(block)) {
        // Loaded by someone else while we evicted: give the victim back.
        this.#unpin(id);
        continue;
      }
      if (!stillValid()) {
        this.#unpin(id);
        return -1;
      }
      const tag: BufferTag = { storage: entry.storage, rel: entry.rel, fork: entry.fork, block, persistence };
      this.#tags[id] = tag;
      this.#keys[id] = bufferKey(tag);
      this.#entries[id] = entry;
      entry.blocks.set(block, id);
      this.#usage[id] = 1;
      if (fill) {
        this.#install(id, block, fill);
        this.#setFlags(id, F_VALID | F_DIRTY | F_JUST_DIRTIED);
        return id;
      }
      this.stats.misses++;
      this.#setFlags(id, 0);
      this.#beginIo(id, IO_READ);
      const page = this.#page(id);
      try {
        await this.#smgr(tag.storage).read(tag.rel, tag.fork, tag.block, page);
        if (!verifyPageChecksum(page, tag.block)) {
          throw new LamstoreError(
            ErrorCode.CHECKSUM_MISMATCH,
            `${describeFork(tag.rel, tag.fork)} block ${tag.block} (storage ${tag.storage}): page checksum mismatch; the page is not returned`,
          );
        }
      } catch (err) {
        page.fill(0); // never leave a bad page's bytes behind (B1)
        this.#invalidate(id);
        this.#endIo(id);
        this.#unpin(id);
        throw err;
      }
      this.#setFlags(id, F_VALID);
      this.#endIo(id);
      return id;
    }
  }

  // ------------------------------------------------------------------ page access

  /**
   * The hit path (B8): when block `block` of the fork is resident and valid, copy it into `dst`
   * and return true; otherwise return false and touch nothing. Synchronous: no await, no
   * allocation. `dst` is blockSize bytes (the caller checked).
   */
  readHit(fb: ForkBuffers, block: number, dst: Uint8Array): boolean {
    const id = this.#own(fb).blocks.get(block);
    if (id === undefined || this.#ioKind[id] === IO_READ || !(this.#flags[id]! & F_VALID)) return false;
    dst.set(this.#pages[id]!);
    this.#bumpUsage(id);
    this.stats.hits++;
    return true;
  }

  /**
   * Copy the page into `dst` (blockSize bytes), reading it from disk and verifying its checksum
   * on a miss. False, with `dst` untouched, when `stillValid()` failed before a miss could map
   * a buffer (the fork was truncated or dropped meanwhile: the caller looks at nblocks again).
   */
  async readInto(fb: ForkBuffers, block: number, persistence: Persistence, dst: Uint8Array, stillValid: () => boolean): Promise<boolean> {
    assert(dst.length === this.blockSize, 'buffer pool readInto: dst is one block');
    const entry = this.#own(fb);
    if (this.readHit(entry, block, dst)) return true;
    return this.#usePinned(entry, block, persistence, null, stillValid, (id) => {
      dst.set(this.#pages[id]!);
      this.#unpin(id);
      return true;
    });
  }

  /**
   * #pin, then `use` the pinned buffer (use unpins it) once it still holds the block and is
   * valid: a discard or a failed read may have unmapped it while we waited (B6, B1), and then we
   * pin again. `use` runs in the same synchronous stretch as that check: called after another
   * await, it could find the buffer taken by a BufferSync or discarded since. Resolves false when
   * `stillValid()` failed before a buffer was mapped.
   */
  async #usePinned(entry: ForkEntry, block: number, persistence: Persistence, fill: Uint8Array | null, stillValid: () => boolean, use: (id: number) => boolean, change = false): Promise<boolean> {
    for (;;) {
      const id = await this.#pin(entry, block, persistence, fill, stillValid);
      if (id < 0) return false;
      // B3: a change waits, pinned, for a write of the page in flight.
      if (change) for (let w = this.#writeOf(id); w; w = this.#writeOf(id)) await w;
      if (entry.blocks.get(block) === id && (this.#flags[id]! & F_VALID) !== 0) return use(id);
      this.#unpin(id);
    }
  }

  /**
   * Copy `page` into buffer `id` and set its checksum there, so the pool's page carries the
   * bytes a read from disk would return (relation.ts R3) with no copy allocated for it.
   */
  #install(id: number, block: number, page: Uint8Array): void {
    const dst = this.#pages[id]!;
    dst.set(page);
    setPageChecksum(dst, block);
  }

  /**
   * The write hit path: when block `block` of the fork is resident and valid, overwrite it with
   * `page` (checksum set in the pool's copy; `page` itself is not changed), mark it dirty and
   * return true; otherwise return false and touch nothing. Synchronous, like readHit. The caller
   * has checked the block is in range at the fork's current epoch.
   */
  writeHit(fb: ForkBuffers, block: number, persistence: Persistence, page: Uint8Array): boolean {
    assert(page.length === this.blockSize, 'buffer pool write: page is one block');
    const id = this.#own(fb).blocks.get(block);
    // Being read in, or being written (B3: the async write waits for it).
    if (id === undefined || this.#ioKind[id] !== IO_NONE || !(this.#flags[id]! & F_VALID)) return false;
    this.#install(id, block, page);
    this.#setFlags(id, this.#flags[id]! | (F_DIRTY | F_JUST_DIRTIED));
    this.#tags[id]!.persistence = persistence;
    this.#bumpUsage(id);
    this.stats.hits++;
    return true;
  }

  /**
   * Overwrite a whole page in the pool (marked dirty; written at eviction or checkpoint); the
   * checksum is set in the pool's copy. `stillValid` is checked right before the page is
   * changed; false means nothing was written. `page` must not change until this resolves (the
   * caller passes its own snapshot). A miss installs `page` in #pin and again here: a copy and
   * a checksum more, on a path that already swept the clock.
   */
  async write(fb: ForkBuffers, block: number, persistence: Persistence, page: Uint8Array, stillValid: () => boolean): Promise<boolean> {
    assert(page.length === this.blockSize, 'buffer pool write: page is one block');
    return this.#usePinned(this.#own(fb), block, persistence, page, stillValid, (id) => {
      if (!stillValid()) {
        this.#unpin(id);
        return false;
      }
      this.#install(id, block, page);
      this.#setFlags(id, this.#flags[id]! | (F_DIRTY | F_JUST_DIRTIED));
      this.#tags[id]!.persistence = persistence;
      this.#unpin(id);
      return true;
    }, true);
  }

  /**
   * Drop every buffer of the fork (every fork when `fork` is undefined) at or past `fromBlock`,
   * dirty ones too, without writing them (DropRelationBuffers). Waits for their I/O first.
   */
  async discard(storage: string, rel: RelFileLocator, fork: ForkNumber | undefined, fromBlock: number): Promise<void> {
    const forks = fork === undefined ? FORKS : [fork];
    for (const f of forks) this.#entry(storage, rel, f).epoch++;
    const matches = (id: number): boolean => {
      const t = this.#tags[id];
      return (
        t != null &&
        t.storage === storage &&
        t.rel.relNumber === rel.relNumber &&
        t.rel.dbOid === rel.dbOid &&
        t.rel.spcOid === rel.spcOid &&
        (fork === undefined || t.fork === fork) &&
        t.block >= fromBlock
      );
    };
    for (let id = 0; id < this.nBuffers; id++) {
      for (let wait = matches(id) ? this.#ioOf(id) : null; wait; wait = matches(id) ? this.#ioOf(id) : null) await wait;
      if (matches(id)) this.#invalidate(id);
    }
  }

  // ------------------------------------------------------------------ BufferSync

  #qualifies(id: number): boolean {
    const f = this.#flags[id]!;
    return this.#keys[id] === this.#syncKeys[id] && (f & F_CHECKPOINT_NEEDED) !== 0 && (f & F_DIRTY) !== 0;
  }

  /**
   * #prepare without a turn of the event loop, the common case: when no item that still needs
   * writing has I/O running, pin them and start their writes now. Null when one has: then
   * #prepare waits it out. Taking the batch in the same turn lets the first batch's write go
   * out before the next batches are prepared (an async #prepare yielded once per batch, so
   * every batch in flight was prepared before the first write started).
   */
  #prepareNow(ids: readonly number[]): number[] | null {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (this.#qualifies(id) && this.#ioKind[id] !== IO_NONE) return null;
    }
    const ready: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!this.#qualifies(id)) continue;
      this.#pins[id]!++;
      this.#beginIo(id, IO_WRITE);
      this.#flags[id]! &= ~F_JUST_DIRTIED;
      ready.push(id);
    }
    return ready;
  }

  /**
   * The batch once no item that still needs writing has I/O running: wait that I/O out, then
   * take it as #prepareNow does (looking again: a wait may have let another I/O start, a discard
   * or an eviction through). The write goes out from the pool's memory (B3).
   */
  async #prepare(ids: readonly number[]): Promise<number[]> {
    for (;;) {
      for (const id of ids) {
        const wait = this.#qualifies(id) ? this.#ioOf(id) : null;
        if (wait) await wait;
      }
      const ready = this.#prepareNow(ids);
      if (ready !== null) return ready;
    }
  }

  #finish(ready: readonly number[], ok: boolean): void {
    for (let i = 0; i < ready.length; i++) {
      const id = ready[i]!;
      if (ok) {
        // This copy was taken after the checkpoint started: CHECKPOINT_NEEDED is satisfied.
        this.#setFlags(id, this.#flags[id]! & ~F_CHECKPOINT_NEEDED);
        if (!(this.#flags[id]! & F_JUST_DIRTIED)) this.#setFlags(id, this.#flags[id]! & ~F_DIRTY);
      }
      this.#endIo(id);
      this.#unpin(id);
    }
  }

  /** BufferSync: write the buffers dirty now (see the header). */
  async bufferSync(pace: (progress: number) => Promise<void>, options: { includeUnlogged?: boolean; bounded?: boolean } = {}): Promise<BufferSyncResult> {
    assert(!this.#syncRunning, 'one BufferSync at a time');
    this.#syncRunning = true;
    try {
      return await this.#bufferSync(pace, options.includeUnlogged === true, options.bounded === true ? BOUNDED_WRITE_BLOCKS_MAX : WRITE_COMBINE_MAX_BLOCKS);
    } finally {
      this.#syncRunning = false;
    }
  }

  async #bufferSync(pace: (progress: number) => Promise<void>, includeUnlogged: boolean, writeBlocksMax: number): Promise<BufferSyncResult> {
    const result: BufferSyncResult = { buffersWritten: 0, bytesWritten: 0, rangesWritten: 0, runsWritten: 0, pagesRelocated: 0 };
    const byStorage = new Map<string, number[]>();
    let lastStorage: string | null = null;
    let list: number[] = [];
    for (let id = 0; id < this.nBuffers; id++) {
      if (!(this.#flags[id]! & F_DIRTY)) continue;
      const tag = this.#tags[id]!;
      // PostgreSQL's BM_PERMANENT test: an unlogged fork's pages are written only by the
      // shutdown checkpoint (or eviction).
      if (!includeUnlogged && isUnloggedFork(tag.persistence, tag.fork)) continue;
      this.#setFlags(id, this.#flags[id]! | (F_CHECKPOINT_NEEDED));
      if (tag.storage !== lastStorage) {
        lastStorage = tag.storage;
        const known = byStorage.get(lastStorage);
        if (known) list = known;
        else byStorage.set(lastStorage, (list = []));
      }
      this.#syncKeys[id] = this.#keys[id]!;
      this.#syncTags[id] = tag;
      list.push(id);
    }
    let total = 0;
    for (const l of byStorage.values()) total += l.length;
    if (total === 0) return result;
    // WritebackContextInit: a fresh context per BufferSync; none at all when fsync is off.
    const wb = this.#enableFsync && this.#flushAfter > 0 ? new WritebackContext(this.#flushAfter, this.#smgr) : null;
    const run: SyncRun = { writeBlocksMax, result, total, processed: 0, wb, pace };
    try {
      await this.#writeAll(byStorage, run);
      await wb?.issue();
    } catch (err) {
      await wb?.drain(); // W5: no hint is left running behind the failure
      throw err;
    } finally {
      if (wb) {
        this.stats.writebackIssues += wb.stats.issues;
        this.stats.writebackRanges += wb.stats.ranges;
      }
      // The selection ends here: keep no tag or key of a page the pool may have let go.
      for (const ids of byStorage.values()) {
        for (let i = 0; i < ids.length; i++) {
          this.#syncKeys[ids[i]!] = null;
          this.#syncTags[ids[i]!] = null;
        }
      }
    }
    return result;
  }

  /** After a range or chunk is written: count it, schedule its writeback, pace the checkpoint. */
  async #written(run: SyncRun, ready: readonly number[], examined: number, hinted: boolean): Promise<void> {
    run.result.buffersWritten += ready.length;
    run.result.bytesWritten += ready.length * this.blockSize;
    // A storage manager without `writeback` would drop every hint: its buffers are not scheduled.
    if (hinted) {
      for (const id of ready) {
        const issuing = run.wb!.schedule(this.#syncTags[id]!);
        if (issuing !== undefined) await issuing;
      }
    }
    run.processed += examined;
    await run.pace(run.processed / run.total);
  }

  /**
   * Each storage manager gets its buffers in BufferSync order, in batches (smgr.ts W1). Up to
   * BATCHES_IN_FLIGHT batches are written at once, so a batch the volume turns into one long
   * pwritev does not wait for the one before it. One at a time when the checkpoint is bounded
   * (K5: overshoot one batch at most). A storage manager that takes writeback hints gets
   * batches of at most HINTED_BATCH_RUNS runs (`hintedBatches`), one or two in flight
   * (`hintedBatchesInFlight`); each batch's buffers are scheduled for writeback when its own
   * writes have returned (#written), checkpointFlushAfter to an issue, so a hint follows the
   * writes it covers, and in batch order, so the hints are the same whichever batch returns
   * first (behaviour 40).
   */
  async #writeAll(byStorage: Map<string, number[]>, run: SyncRun): Promise<void> {
    for (const storage of [...byStorage.keys()].sort()) {
      const smgr = this.#smgr(storage);
      const order = syncOrder(byStorage.get(storage)!, this.#syncTags, run.writeBlocksMax);
      const hinted = run.wb !== null && smgr.writeback !== undefined;
      let chunks: number[][];
      let inFlight: number;
      if (hinted) {
        const cut = hintedBatches(order, this.#syncTags, run.writeBlocksMax);
        chunks = cut.batches;
        inFlight = hintedBatchesInFlight(cut.runs, chunks.length);
      } else {
        chunks = [];
        for (let i = 0; i < order.length; i += run.writeBlocksMax) chunks.push(order.slice(i, i + run.writeBlocksMax));
        inFlight = BATCHES_IN_FLIGHT;
      }
      if (run.writeBlocksMax < WRITE_COMBINE_MAX_BLOCKS) inFlight = 1; // bounded (K5)
      // Behaviour 40: the hints are scheduled in BufferSync order, as PostgreSQL's one loop
      // schedules them. A batch whose writes return first waits for the batches before it to
      // schedule theirs (chunks start in order, so each takes its turn before its first await);
      // otherwise which write returned first would decide how the hints are cut into ranges.
      let turn: Promise<void> = Promise.resolve();
      await forEachInFlight(chunks, inFlight, async (chunk) => {
        const previous = turn;
        let done!: () => void;
        turn = new Promise<void>((resolve) => (done = resolve));
        try {
          const ready = this.#prepareNow(chunk) ?? (await this.#prepare(chunk));
          if (ready.length > 0) {
            // From the pool's memory (B3): nothing changes these pages until #finish.
            const batch: PageWrite[] = new Array<PageWrite>(ready.length);
            for (let i = 0; i < ready.length; i++) {
              const id = ready[i]!;
              const tag = this.#syncTags[id]!;
              batch[i] = { rel: tag.rel, fork: tag.fork, blockNum: tag.block, page: this.#page(id) };
            }
            let written: WriteResult;
            try {
              written = await smgr.writeBuffers(batch, 'checkpoint');
            } catch (err) {
              this.#finish(ready, false);
              throw err;
            }
            this.#finish(ready, true);
            run.result.rangesWritten += written.writes;
            run.result.runsWritten += written.runs;
            run.result.pagesRelocated += written.relocated;
          }
          if (hinted) await previous;
          await this.#written(run, ready, chunk.length, hinted);
        } finally {
          done();
        }
      });
    }
  }

  // ------------------------------------------------------------------ inspection

  /** Buffers dirty now (kept as a counter by #setFlags; checkInvariants recounts it). */
  dirtyCount(): number {
    return this.#dirtyBuffers;
  }

  /** Whole-pool check (STYLE 8). With `idle`, no pins and no I/O may remain. */
  checkInvariants(idle = false): void {
    let dirty = 0;
    for (let id = 0; id < this.nBuffers; id++) if (this.#flags[id]! & F_DIRTY) dirty++;
    assert(dirty === this.#dirtyBuffers, `dirty counter ${this.#dirtyBuffers} matches ${dirty} dirty buffers`);
    let mapped = 0;
    for (let id = 0; id < this.nBuffers; id++) {
      const f = this.#flags[id]!;
      const key = this.#keys[id] ?? null;
      assert(this.#usage[id]! <= USAGE_COUNT_MAX, `buffer ${id}: usage count <= ${USAGE_COUNT_MAX} (B7)`);
      if (f & F_DIRTY) assert(f & F_VALID, `buffer ${id}: dirty implies valid`);
      if (f & F_JUST_DIRTIED) assert(f & F_DIRTY, `buffer ${id}: just-dirtied implies dirty`);
      if (f & F_CHECKPOINT_NEEDED) assert(f & F_DIRTY, `buffer ${id}: checkpoint-needed implies dirty`);
      if (key === null) {
        assert(f === 0, `buffer ${id}: an unmapped buffer has no flags`);
        assert(this.#tags[id] === null, `buffer ${id}: an unmapped buffer has no tag`);
      } else {
        const tag = this.#tags[id]!;
        const entry = this.#entries[id];
        assert(entry != null && entry.blocks.get(tag.block) === id, `buffer ${id}: its fork entry maps its block back to it`);
        assert(this.#forks.get(entry.key) === entry, `buffer ${id}: its fork entry is the pool's`);
        assert(entry.storage === tag.storage && entry.fork === tag.fork && forkBufferKey(tag.storage, tag.rel, tag.fork) === entry.key, `buffer ${id}: fork entry matches tag`);
        assert(bufferKey(tag) === key, `buffer ${id}: key matches tag`);
        assert(f & F_VALID || this.#ioKind[id] === IO_READ, `buffer ${id}: mapped implies valid or being read (B1)`);
        mapped++;
      }
      assert(this.#ioWait[id] === null || this.#ioKind[id] !== IO_NONE, `buffer ${id}: a wait promise only while I/O runs`);
      if (idle) {
        assert(this.#pins[id] === 0, `buffer ${id}: no pins when idle`);
        assert(this.#ioKind[id] === IO_NONE, `buffer ${id}: no I/O when idle`);
      }
    }
    let entries = 0;
    for (const e of this.#forks.values()) entries += e.blocks.size;
    assert(mapped === entries, 'buffer pool: every fork entry block is a mapped buffer');
  }
}
