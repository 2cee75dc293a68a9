/**
 * md: the built-in storage manager, PostgreSQL's md.c emulated with real segment files.
 *
 * On-disk contract (reference section 7, DESIGN.md section 3):
 *  - A fork is a sequence of segment files named by engine/md/paths.ts: `<rel>[_fsm|_vm|_init]`
 *    for segment 0, then `.1`, `.2`, ... Block b lives in segment floor(b / relSegBlocks) at byte
 *    offset (b % relSegBlocks) * blockSize.
 *  - Shape of a fork (M1): zero or more full segments (exactly relSegBlocks blocks), one partial
 *    segment (0 <= blocks < relSegBlocks), then any number of zero-length "inactive" segments left
 *    by truncation. nblocks is the sum over the active prefix, read from file sizes.
 *  - Extension (M2) pads every earlier segment to exactly relSegBlocks blocks (a zero block at its
 *    last block) before creating the next one, so M1 holds even when an extension jumps ahead.
 *  - Truncation (M3) walks from the last active segment down: a segment wholly past the new end
 *    is truncated to length 0 and kept; the segment holding the new end is shortened; each
 *    touched segment registers a SYNC. Segment 0 is never removed by truncation.
 *  - Drop (M4): the main fork's segment 0 of a permanent relation is truncated to 0 and left as a
 *    tombstone, removed by an UNLINK request after the next checkpoint (registered with
 *    retryOnError, it has no fallback). Every other segment (and segment 0 of other forks or of
 *    unlogged relations) is truncated, FORGET is queued for it (permanent only), and only then is
 *    it unlinked: the FORGET in the queue is what makes an ENOENT in the sync phase harmless.
 *    While a tombstone is pending, the relation does not exist and cannot be created again (its
 *    UNLINK would remove the new file).
 *  - Pending unlinks survive a crash (M4a; lamstore has no WAL to redo the drop): before it
 *    truncates a permanent relation's main fork to the tombstone, md records the drop durably in
 *    `<dataDir>/lam_pending_unlinks` (pending-unlinks.ts PU1), and before it creates a fork of a
 *    relation recorded there it records that too (PU2); the next open removes every relation
 *    the record names as dropped and no checkpoint unlinked (PU5), even one a power loss gave
 *    back its old size, so a relation dropped before a crash is gone after the next open
 *    (DESIGN.md D4). One fsync per drop.
 *
 * Sync requests (M5): every write, extend, truncation and creation that dirties a segment of a
 * permanent relation registers one SYNC request for that segment with retryOnError = false. When
 * the queue refuses it, md fsyncs the segment itself at once (a "backend fsync", counted with
 * ctx.countBackendFsync); a failure of that fsync puts the engine in the failed state
 * (ctx.reportSyncFailure). Unlogged relations register nothing (they are not crash safe).
 *
 * Directory durability (M6): a new file's name is durable only after its directory is fsynced
 * (FileIO C4). md remembers, per directory, the names it created there (segment files and
 * directories it made with mkdir) and makes them durable in `syncSegment`, the path the md sync
 * handler takes for each tag: after the segment's fsync, if its name is still pending, the
 * directory is fsynced (and, recursively, a new directory's own parent). We chose the sync tag
 * over checkpointBegin because a file created during a checkpoint's write phase has its SYNC
 * absorbed at the start of that checkpoint's sync phase and is synced by it; fsyncing
 * directories at checkpointBegin would miss its name, and the checkpoint would claim a file
 * durable whose name a crash can lose. Tying the directory fsync to the tag means exactly the
 * checkpoint that syncs a new file also makes its name durable, and a checkpoint that syncs no
 * new files makes no directory fsyncs (so R dirty old relations cost exactly R fsyncs). Every
 * new file gets a SYNC (creation and extension register one), so no name is left out. The
 * backend-fsync fallback and immediateSync do the same.
 *
 * The fd cache (M7): open segment handles live in an lru-cache keyed by path and bounded by
 * `maxOpenFiles`. Before opening, md evicts least recently used handles that no operation is
 * using (pins = 0) until cache + opens in flight + closes under way < maxOpenFiles, and closes
 * them (a handle being closed is an open fd until close returns: without counting it, another
 * open could slip in while a victim was closing, one fd past the bound). A handle in use
 * is never closed under its user: if every cached handle is pinned (more operations in flight
 * than maxOpenFiles), the open goes ahead and lru-cache's own eviction marks the pinned victim
 * doomed; it is closed when its last user releases it. So md holds at most maxOpenFiles fds
 * while fewer than maxOpenFiles operations are in flight, and never closes a handle in use. A
 * checkpoint's batch of writes (`writesInFlightMax` at a time) and the hints still held
 * (`hintsHeldMax`, M8) together pin at most maxOpenFiles segments; BufferSync's batches are at
 * most HINTED_BATCH_RUNS runs (32 writes), and it keeps more than one in flight only when each
 * is half that or less (buffer-pool.ts `hintedBatchesInFlight`).
 *
 * The default size (M7a, `defaultMaxOpenFiles`): min(1000, half of the process's RLIMIT_NOFILE
 * soft limit). Why: a checkpoint touches every dirty segment twice (BufferSync's write, the sync
 * phase's fsync), both in the same order, so an LRU cache smaller than the working set misses
 * every time: a checkpoint over R one-segment relations makes 2R opens and 2R closes (the old
 * default 256 did so for any R above 256; test/md-fd-cache.test.ts). On Node those cost about
 * as much as the writes and fsyncs themselves (shared/reference node-io-costs.md: 1000 one-page
 * rewrites and fsyncs take about half as long with the files kept open). 1000 is PostgreSQL's
 * max_files_per_process, the number of files one backend keeps open: a thousand one-segment
 * relations stay open from one checkpoint to the next. Half the limit, because unlike a PostgreSQL backend this process is
 * shared: the application's sockets and files, libuv, SLRU and volume files, other engines. On
 * Linux Node raises the soft limit to the hard one at start-up (usually 65536 or more), so the
 * 1000 holds; a hard limit under 2000 shrinks it instead of running the process out of fds. The
 * cost of holding fds is small: a kernel file object and a cache entry each. Where the limit
 * cannot be read (not Linux), 1000.
 *
 * Unlogged relations (U1, U2): their forks register no sync requests and ordinary checkpoints
 * never write or sync them; md remembers their dirtied segments and syncs them only at the
 * shutdown checkpoint (syncUnlogged). Their INIT fork is permanent: it is what the reset after
 * an unclean stop (resetUnlogged) copies over the main fork, so it must always be durable.
 *
 * nblocks is cached per fork once computed (the data directory is locked: nobody else changes
 * the files) and kept exact by extend, truncate and unlink.
 *
 * Writeback hints (M8, mdwriteback; reference sections 7 and 9, behaviour 40): `writeback(rel,
 * fork, block, nblocks)` splits the range at segment boundaries and hands each piece to
 * `io.writeback` (FileIO C7) when the FileIO has it. It uses only handles already in the fd
 * cache: at the first segment that is not open it stops, silently, as mdwriteback does (opening
 * a file just to hint it would cost more than the hint saves, and the file may be being
 * unlinked). A failed hint puts the engine in the failed state (ctx.reportSyncFailure), as
 * PostgreSQL's data_sync_elevel does for sync_file_range: on Linux it can consume the writeback
 * error a later fsync would otherwise report. A hint holds its segment open (pinned) until the
 * FileIO answers, which on RealIO is a round trip to the sync thread (sync-thread.ts S6), and
 * BufferSync keeps several issues of hints in flight (writeback.ts W5): so at most
 * hintsHeldMax = max(1, floor(maxOpenFiles / 8)) hints hold a segment at once, the others wait
 * for a turn, and hints add at most that many fds to what the fd cache holds (M7).
 *
 * Durable removal (M9; lamstore has no WAL to replay a drop, so a completed checkpoint must make
 * it durable, or a crash brings the dropped fork back, even with its old contents: its
 * truncation was never synced, its FORGET cancelled that): md remembers every directory in which
 * it removed a segment file at drop time and fsyncs those directories at the start of the next
 * checkpoint (checkpointBegin), so every removal before a checkpoint started is durable when it
 * completes; the directory's own name too, when md created it and no segment sync made it durable
 * (its files were all dropped first). A tombstone, removed after the checkpoint by its UNLINK request, has its directory
 * fsynced right after the unlink (unlinkTombstone), before the checkpoint resolves; one directory
 * fsync per dropped relation, which PostgreSQL does not pay because WAL replay redoes the drop.
 * A failure of either fsync is a sync failure (ctx.reportSyncFailure: the failed state).
 *
 * Not covered: after a crash that loses a segment's size but keeps a later segment's data,
 * nblocks stops at the short segment and the later data is inactive, as in PostgreSQL without
 * WAL replay.
 */
import { dirname, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { ErrorCode, LamstoreError, assert, cleanUp, errnoOf, ioError } from '../errors.js';
import { fsyncEach, pwriteEach, writtenOf, type FileHandle, type WriteEachResult } from '../io/file-io.js';
import type { FileTag } from '../sync/file-tag.js';
import { SyncHandlerId, SyncRequestType, type SyncTagsResult } from '../sync/registry.js';
import type { ForkNumber, RelFileLocator } from '../relfile.js';
import { FORKS, INVALID_BLOCK_NUMBER, describeFork, forkKey, locatorKey } from '../relfile.js';
import { isUnloggedFork } from '../smgr/smgr.js';
import type { PageWrite, Persistence, SmgrContext, StorageManager, WriteOrigin, WriteResult } from '../smgr/smgr.js';
import { IN_FLIGHT_DEFAULT } from '../io/in-flight.js';
import { dataDirPrefix, relDirRelative, relPathRelative } from './paths.js';
import { PendingUnlinkLog } from './pending-unlinks.js';

/** Consecutive blocks of one segment that BufferSync handed over: one write. */
interface WriteRun {
  loc: RelFileLocator;
  fork: ForkNumber;
  segno: number;
  firstBlock: number;
  pages: Uint8Array[];
}

interface Seg {
  readonly path: string;
  readonly handle: FileHandle;
  /** Operations using the handle now; it is never closed while > 0 (M7). */
  pins: number;
  /** Evicted while pinned: close when the last user releases it. */
  doomed: boolean;
  closed: boolean;
}

function sameLocator(a: RelFileLocator, b: RelFileLocator): boolean {
  return a.relNumber === b.relNumber && a.dbOid === b.dbOid && a.spcOid === b.spcOid;
}

export const MD_NAME = 'md';

/** M7a: PostgreSQL's max_files_per_process default, the most segment files md keeps open by default. */
export const MAX_OPEN_FILES_DEFAULT = 1000;
/** The smallest fd cache the engine accepts (its `maxOpenFiles` option's lower bound). */
export const MAX_OPEN_FILES_MIN = 4;

/**
 * M7a: the default fd cache size for a process whose RLIMIT_NOFILE soft limit is
 * `openFilesLimit` (null: unknown): min(1000, half the limit), never below MAX_OPEN_FILES_MIN.
 */
export function defaultMaxOpenFiles(openFilesLimit: number | null): number {
  if (openFilesLimit === null) return MAX_OPEN_FILES_DEFAULT;
  return Math.max(MAX_OPEN_FILES_MIN, Math.min(MAX_OPEN_FILES_DEFAULT, Math.floor(openFilesLimit / 2)));
}

export class MdStorageManager implements StorageManager {
  readonly name = MD_NAME;
  readonly #ctx: SmgrContext;
  /** The data directory with a separator after it (paths.ts dataDirPrefix). */
  readonly #dataDirPrefix: string;
  readonly #blockSize: number;
  readonly #segBlocks: number;
  readonly #maxOpenFiles: number;
  readonly #cache: LRUCache<string, Seg>;
  /** Opens in flight (each holds a reserved slot of maxOpenFiles). */
  #openingCount = 0;
  readonly #opening = new Map<string, Promise<Seg>>();
  /** Evicted-while-pinned handles still open (M7). */
  #doomedCount = 0;
  /** Closes under way: the fd is open until close returns, so it keeps its slot (M7). */
  #closingCount = 0;
  /** M8: hints holding a segment until the FileIO answers, and the hints waiting for a turn. */
  #hintsHeld = 0;
  readonly #hintTurns: (() => void)[] = [];
  /** Closes started by lru-cache's own eviction, awaited at close(). */
  readonly #pendingCloses = new Set<Promise<void>>();
  readonly #nblocks = new Map<string, number>();
  /** Directories known to exist (created or seen). */
  readonly #knownDirs = new Set<string>();
  /** Per directory: names created in it whose directory entry is not yet durable (M6). */
  readonly #newEntries = new Map<string, Set<string>>();
  /** Locators whose main fork is a tombstone awaiting its post-checkpoint UNLINK (M4). */
  readonly #tombstones = new Set<string>();
  /** Directories where md removed names not yet made durable by a directory fsync (M9). */
  readonly #removedIn = new Set<string>();
  /** Segments of unlogged forks written since the last shutdown sync (U1). */
  readonly #unloggedDirty = new Set<string>();
  /** Relations opened unlogged (locatorKey), fixed for the engine's life (smgr.ts open). */
  readonly #unlogged = new Set<string>();
  /** M4a: drops recorded durably until their placeholder is unlinked. */
  readonly #unlinkLog: PendingUnlinkLog;
  #closed = false;

  constructor(ctx: SmgrContext) {
    this.#ctx = ctx;
    this.#blockSize = ctx.blockSize;
    this.#segBlocks = ctx.relSegBlocks;
    this.#maxOpenFiles = ctx.maxOpenFiles;
    assert(Number.isInteger(this.#segBlocks) && this.#segBlocks >= 1, 'relSegBlocks is a positive integer');
    assert(Number.isInteger(this.#maxOpenFiles) && this.#maxOpenFiles >= 1, 'maxOpenFiles is a positive integer');
    this.#dataDirPrefix = dataDirPrefix(ctx.dataDir);
    this.#unlinkLog = new PendingUnlinkLog({ io: ctx.io, dataDir: ctx.dataDir, enableFsync: ctx.enableFsync, reportSyncFailure: (err) => ctx.reportSyncFailure(err) });
    this.#cache = new LRUCache<string, Seg>({
      max: this.#maxOpenFiles,
      // Only reached when every cached handle is pinned (see M7): never close under a user.
      dispose: (seg, _key, reason) => {
        if (reason !== 'evict') return;
        if (seg.pins > 0) {
          seg.doomed = true;
          this.#doomedCount++;
        } else {
          const p = this.#closeSeg(seg).finally(() => this.#pendingCloses.delete(p));
          this.#pendingCloses.add(p);
        }
      },
    });
  }

  // ------------------------------------------------------------------ fd cache

  #segPath(loc: RelFileLocator, fork: number, segno: number): string {
    return this.#dataDirPrefix + relPathRelative(loc, fork, segno);
  }

  async #closeSeg(seg: Seg): Promise<void> {
    if (seg.closed) return;
    seg.closed = true;
    this.#closingCount++;
    try {
      await this.#ctx.io.close(seg.handle);
    } catch (err) {
      throw ioError('close', seg.path, err);
    } finally {
      this.#closingCount--;
    }
  }

  /** The least recently used cached handle nobody is using, or undefined. */
  #lruUnpinned(): Seg | undefined {
    for (const key of this.#cache.rkeys()) {
      const s = this.#cache.peek(key);
      if (s && s.pins === 0) return s;
    }
    return undefined;
  }

  /**
   * A pinned handle for `path`. Errors from open are raw FileIO errors (the sync path needs
   * ENOENT as it is); callers wrap them. `created` tells whether this call created the file.
   */
  async #acquire(path: string, create: boolean): Promise<{ seg: Seg; created: boolean }> {
    for (;;) {
      if (this.#closed) throw new LamstoreError(ErrorCode.ENGINE_CLOSED, `${path}: md storage manager is closed`);
      const seg = this.#cache.get(path);
      if (seg) {
        seg.pins++;
        return { seg, created: false };
      }
      const opening = this.#opening.get(path);
      if (opening) {
        // Someone is opening it: wait and look again (their open may fail; then try ourselves).
        await opening.catch(() => undefined);
        continue;
      }
      let created = false;
      const p = (async () => {
        while (this.#cache.size + this.#openingCount + this.#doomedCount + this.#closingCount >= this.#maxOpenFiles) {
          const victim = this.#lruUnpinned();
          if (!victim) break; // every handle in use: lru-cache will doom one (M7)
          this.#cache.delete(victim.path);
          await this.#closeSeg(victim);
        }
        this.#openingCount++;
        let handle: FileHandle;
        try {
          try {
            handle = await this.#ctx.io.open(path);
          } catch (err) {
            if (!create || errnoOf(err) !== 'ENOENT') throw err;
            handle = await this.#ctx.io.open(path, { create: true });
            created = true;
          }
        } finally {
          this.#openingCount--;
        }
        const s: Seg = { path, handle, pins: 1, doomed: false, closed: false };
        this.#cache.set(path, s);
        return s;
      })();
      this.#opening.set(path, p);
      try {
        const s = await p;
        return { seg: s, created };
      } finally {
        this.#opening.delete(path);
      }
    }
  }

  async #release(seg: Seg): Promise<void> {
    assert(seg.pins > 0, `md: release of an unpinned handle ${seg.path}`);
    seg.pins--;
    if (seg.pins === 0 && seg.doomed) {
      seg.doomed = false;
      this.#doomedCount--;
      await this.#closeSeg(seg);
    }
  }

  /** Drop a path from the cache and close its handle (now, or when its users finish). */
  async #forget(path: string): Promise<void> {
    const seg = this.#cache.peek(path);
    if (!seg) return;
    this.#cache.delete(path);
    if (seg.pins > 0) {
      seg.doomed = true;
      this.#doomedCount++;
    } else {
      await this.#closeSeg(seg);
    }
  }

  async #withSeg<T>(path: string, create: boolean, fn: (h: FileHandle, created: boolean) => Promise<T>): Promise<T> {
    const { seg, created } = await this.#acquire(path, create);
    try {
      return await fn(seg.handle, created);
    } finally {
      await this.#release(seg);
    }
  }

  // ------------------------------------------------------------------ names and directories

  #noteNewEntry(path: string): void {
    const dir = dirname(path);
    let set = this.#newEntries.get(dir);
    if (!set) this.#newEntries.set(dir, (set = new Set()));
    set.add(path);
  }

  #dropNewEntry(path: string): void {
    const dir = dirname(path);
    const set = this.#newEntries.get(dir);
    if (!set) return;
    set.delete(path);
    if (set.size === 0) this.#newEntries.delete(dir);
  }

  /** Make `path`'s directory entry durable if md created it and it is not yet (M6). */
  async #makeNameDurable(path: string): Promise<void> {
    const dir = dirname(path);
    const set = this.#newEntries.get(dir);
    if (!set || !set.has(path)) return;
    // Only names created before the fsync are covered by it.
    const covered = [...set];
    try {
      await this.#ctx.io.fsyncDir(dir);
    } catch (err) {
      throw ioError('fsync', dir, err);
    }
    for (const p of covered) set.delete(p);
    if (set.size === 0 && this.#newEntries.get(dir) === set) this.#newEntries.delete(dir);
    await this.#makeNameDurable(dir);
  }

  /** mkdir the relation's directory, remembering every directory it had to create. */
  async #ensureDir(loc: RelFileLocator): Promise<void> {
    const dir = join(this.#ctx.dataDir, relDirRelative(loc));
    if (this.#knownDirs.has(dir)) return;
    const missing: string[] = [];
    for (let d = dir; d !== this.#ctx.dataDir && d.startsWith(this.#ctx.dataDir); d = dirname(d)) {
      let st;
      try {
        st = await this.#ctx.io.stat(d);
      } catch (err) {
        throw ioError('stat', d, err);
      }
      if (st) break;
      missing.push(d);
    }
    try {
      await this.#ctx.io.mkdir(dir);
    } catch (err) {
      throw ioError('mkdir', dir, err);
    }
    for (const d of missing) this.#noteNewEntry(d);
    this.#knownDirs.add(dir);
  }

  // ------------------------------------------------------------------ sync requests

  #tag(loc: RelFileLocator, fork: number, segno: number): FileTag {
    return { handler: SyncHandlerId.MD, forkNum: fork, rlocator: { spcOid: loc.spcOid, dbOid: loc.dbOid, relNumber: loc.relNumber }, segno };
  }

  /** register_dirty_segment (M5). */
  async #registerDirty(loc: RelFileLocator, fork: number, segno: number, evenIfUnlogged = false, origin?: WriteOrigin): Promise<void> {
    // Unlogged relations are synced only at shutdown (syncUnlogged); their INIT fork is
    // permanent, since the reset after an unclean stop copies it. registerSync asks for the
    // request whatever the persistence (smgrregistersync after a bulk write).
    if (!evenIfUnlogged && this.#isUnlogged(loc, fork)) {
      this.#unloggedDirty.add(this.#segPath(loc, fork, segno));
      return;
    }
    if (this.#ctx.trySyncRequest(this.#tag(loc, fork, segno), SyncRequestType.SYNC, origin)) return;
    // The queue is full of distinct requests: sync the segment ourselves, now.
    this.#ctx.countBackendFsync();
    try {
      await this.#syncPath(this.#segPath(loc, fork, segno));
    } catch (err) {
      this.#ctx.reportSyncFailure(err);
    }
  }

  async #syncPath(path: string): Promise<void> {
    const { seg } = await this.#acquire(path, false);
    try {
      await this.#ctx.io.fsync(seg.handle);
    } finally {
      await this.#release(seg);
    }
    await this.#makeNameDurable(path);
  }

  /**
   * The md sync handler's path for one tag (mdsyncfiletag): fsync the segment through the fd
   * cache, then make its name durable if it is new (M6). A missing file throws the raw ENOENT
   * the sync phase recognises (behaviour 18).
   */
  async syncSegment(tag: FileTag): Promise<void> {
    // The sync phase asks for one tag at a time when it keeps several fsyncs in flight
    // (syncConcurrency > 1): a plain fsync, on the libuv pool, whose threads run them side by
    // side. Through the one sync thread (syncSegments) they would run one after another.
    const path = this.#segPath(tag.rlocator, tag.forkNum, tag.segno);
    await this.#syncPath(path);
    await this.#forgetIfTombstone(tag, path);
  }

  /** A tombstone is about to be unlinked by this checkpoint: do not keep its fd cached. */
  async #forgetIfTombstone(tag: FileTag, path: string): Promise<void> {
    if (tag.forkNum === 0 && tag.segno === 0 && this.#tombstones.has(locatorKey(tag.rlocator))) await this.#forget(path);
  }

  /**
   * syncSegment for several tags, one after another (SyncOps.syncFileTags): every segment is
   * taken from the fd cache (opened where needed) and pinned, the lot is fsynced in order in one
   * FileIO fsyncEach (RealIO: one round trip to its sync thread), then released; for the tags
   * synced, in order, new names are made durable (M6) and tombstones' handles dropped. Stops at
   * the first failure: a segment that cannot be opened (raw ENOENT, as syncSegment) fails its
   * tag once the tags before it are synced, and nothing after a failure is reported synced.
   */
  async syncSegments(tags: readonly FileTag[]): Promise<SyncTagsResult> {
    const paths: string[] = [];
    const segs: Seg[] = [];
    let openError: unknown;
    let r: SyncTagsResult;
    try {
      for (const tag of tags) {
        const path = this.#segPath(tag.rlocator, tag.forkNum, tag.segno);
        try {
          segs.push((await this.#acquire(path, false)).seg);
        } catch (err) {
          openError = err;
          break;
        }
        paths.push(path);
      }
      r = await fsyncEach(this.#ctx.io, segs.map((seg) => seg.handle));
    } finally {
      for (const seg of segs) await this.#release(seg);
    }
    if (r.error === undefined && openError !== undefined) r = { done: r.done, error: openError, us: r.us };
    for (let k = 0; k < r.done; k++) {
      const tag = tags[k]!;
      try {
        await this.#makeNameDurable(paths[k]!);
        await this.#forgetIfTombstone(tag, paths[k]!);
      } catch (err) {
        return { done: k, error: err, us: r.us.slice(0, k) };
      }
    }
    return r;
  }

  // ------------------------------------------------------------------ sizes

  async #statBlocks(path: string): Promise<number | null> {
    let st;
    try {
      st = await this.#ctx.io.stat(path);
    } catch (err) {
      throw ioError('stat', path, err);
    }
    if (!st) return null;
    if (st.kind !== 'file') throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: md segment is not a regular file`, { path });
    return Math.floor(st.sizeBytes / this.#blockSize);
  }

  async #nblocksOf(loc: RelFileLocator, fork: number): Promise<number> {
    const key = forkKey(loc, fork);
    const cached = this.#nblocks.get(key);
    if (cached !== undefined) return cached;
    if (fork === 0 && this.#tombstones.has(locatorKey(loc))) throw this.#notFound(loc, fork);
    let total = 0;
    for (let segno = 0; ; segno++) {
      const blocks = await this.#statBlocks(this.#segPath(loc, fork, segno));
      if (blocks === null) {
        if (segno === 0) throw this.#notFound(loc, fork);
        break;
      }
      if (blocks < this.#segBlocks) {
        total += blocks;
        break;
      }
      total += this.#segBlocks;
    }
    this.#nblocks.set(key, total);
    return total;
  }

  #notFound(loc: RelFileLocator, fork: number): LamstoreError {
    return new LamstoreError(ErrorCode.RELATION_NOT_FOUND, `${describeFork(loc, fork)} does not exist (md: ${this.#segPath(loc, fork, 0)})`, {
      path: this.#segPath(loc, fork, 0),
    });
  }

  #outOfRange(loc: RelFileLocator, fork: number, block: number, nblocks: number): LamstoreError {
    return new LamstoreError(ErrorCode.BLOCK_OUT_OF_RANGE, `${describeFork(loc, fork)}: block ${block} is past the end (nblocks ${nblocks})`);
  }

  // ------------------------------------------------------------------ StorageManager

  open(loc: RelFileLocator, persistence: Persistence): void {
    if (persistence === 'unlogged') this.#unlogged.add(locatorKey(loc));
  }

  /** isUnloggedFork (smgr.ts) for a relation md was opened on. */
  #isUnlogged(loc: RelFileLocator, fork: number): boolean {
    return isUnloggedFork(this.#unlogged.has(locatorKey(loc)) ? 'unlogged' : 'permanent', fork);
  }

  async create(loc: RelFileLocator, fork: ForkNumber): Promise<void> {
    const lk = locatorKey(loc);
    if (fork === 0 && this.#tombstones.has(lk)) {
      if ((await this.#statBlocks(this.#segPath(loc, 0, 0))) !== null) {
        throw new LamstoreError(
          ErrorCode.BAD_ARGUMENT,
          `${describeFork(loc, fork)} was dropped and its file is removed only at the next checkpoint; create it again after that checkpoint`,
        );
      }
      // The checkpoint's sync of the tombstone may have cached a handle of the removed file.
      await this.#forget(this.#segPath(loc, 0, 0));
      this.#tombstones.delete(lk);
    }
    await this.#unlinkLog.creating(loc); // M4a: no later open may take the new file for the drop's
    await this.#ensureDir(loc);
    const path = this.#segPath(loc, fork, 0);
    const created = await this.#withSeg(path, true, async (_h, c) => c).catch((err: unknown) => {
      throw ioError('open', path, err);
    });
    if (created) {
      this.#noteNewEntry(path);
      this.#nblocks.set(forkKey(loc, fork), 0);
      await this.#registerDirty(loc, fork, 0);
    }
  }

  async exists(loc: RelFileLocator, fork: ForkNumber): Promise<boolean> {
    if (this.#nblocks.has(forkKey(loc, fork))) return true;
    if (fork === 0 && this.#tombstones.has(locatorKey(loc))) return false;
    return (await this.#statBlocks(this.#segPath(loc, fork, 0))) !== null;
  }

  async nblocks(loc: RelFileLocator, fork: ForkNumber): Promise<number> {
    return this.#nblocksOf(loc, fork);
  }

  async read(loc: RelFileLocator, fork: ForkNumber, blockNum: number, into: Uint8Array): Promise<void> {
    assert(into.length === this.#blockSize, 'md read: buffer is one block');
    const nb = await this.#nblocksOf(loc, fork);
    if (blockNum >= nb) throw this.#outOfRange(loc, fork, blockNum, nb);
    const segno = Math.floor(blockNum / this.#segBlocks);
    const path = this.#segPath(loc, fork, segno);
    const offset = (blockNum % this.#segBlocks) * this.#blockSize;
    const n = await this.#withSeg(path, false, (h) => this.#ctx.io.pread(h, into, offset)).catch((err: unknown) => {
      throw ioError('read', path, err);
    });
    if (n !== this.#blockSize) {
      throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: ${describeFork(loc, fork)} block ${blockNum}: read only ${n} of ${this.#blockSize} bytes`, { path });
    }
  }

  /**
   * The write contract (smgr.ts W1-W4), mdwritev for a whole batch: consecutive blocks of one
   * segment become one vectored write (never past the segment end, PostgreSQL's mdmaxcombine).
   * The writes go out in chunks of `writesInFlightMax` (M7: that many segments pinned at once):
   * a chunk's segments are taken from the fd cache (opened where needed) and pinned, its writes
   * made as one FileIO pwriteEach (RealIO: one round trip to the sync thread, S7; elsewhere the
   * writes in flight together), then the segments released and every segment written registered
   * for the sync phase, the ones written after a failure too (W4).
   */
  async writeBuffers(pages: readonly PageWrite[], origin: WriteOrigin): Promise<WriteResult> {
    const runs: WriteRun[] = [];
    let prev: PageWrite | null = null;
    let nblocks = 0;
    for (const w of pages) {
      assert(w.page.length === this.#blockSize, 'md write: pages are one block each');
      const sameFork = prev !== null && prev.fork === w.fork && sameLocator(prev.rel, w.rel);
      // W1 puts a fork's pages together: look its size up once per stretch, not per page.
      if (!sameFork) nblocks = await this.#nblocksOf(w.rel, w.fork);
      if (w.blockNum >= nblocks) throw this.#outOfRange(w.rel, w.fork, w.blockNum, nblocks);
      const segno = Math.floor(w.blockNum / this.#segBlocks);
      const last = runs[runs.length - 1];
      if (sameFork && last!.segno === segno && w.blockNum === last!.firstBlock + last!.pages.length) last!.pages.push(w.page);
      else runs.push({ loc: w.rel, fork: w.fork, segno, firstBlock: w.blockNum, pages: [w.page] });
      prev = w;
    }
    const max = this.writesInFlightMax;
    for (let from = 0; from < runs.length; from += max) {
      await this.#writeRuns(runs.slice(from, from + max), max, origin);
    }
    return { writes: runs.length, runs: runs.length, relocated: 0 };
  }

  async #writeRuns(runs: readonly WriteRun[], inFlight: number, origin: WriteOrigin): Promise<void> {
    const paths = runs.map((run) => this.#segPath(run.loc, run.fork, run.segno));
    const taken = await Promise.allSettled(paths.map((path) => this.#acquire(path, false)));
    const segs: Seg[] = [];
    for (const t of taken) if (t.status === 'fulfilled') segs.push(t.value.seg);
    let r: WriteEachResult;
    try {
      const refused = taken.findIndex((t) => t.status === 'rejected');
      if (refused >= 0) throw ioError('write', paths[refused]!, (taken[refused] as PromiseRejectedResult).reason);
      const writes = runs.map((run, k) => ({ handle: segs[k]!.handle, buffers: run.pages, offsetBytes: (run.firstBlock % this.#segBlocks) * this.#blockSize }));
      r = await pwriteEach(this.#ctx.io, writes, inFlight);
    } finally {
      for (const seg of segs) await this.#release(seg);
    }
    for (const k of writtenOf(r)) await this.#registerDirty(runs[k]!.loc, runs[k]!.fork, runs[k]!.segno, false, origin);
    if (r.error !== undefined) throw ioError('write', paths[r.done]!, r.error);
  }

  /** Blocks from `blockNum` to the end of its segment: the most one vectored write may cover. */
  #toSegmentEnd(blockNum: number): number {
    return this.#segBlocks - (blockNum % this.#segBlocks);
  }

  /** M8: wake the next hint waiting for a turn, if a turn is free. */
  #nextHintTurn(): void {
    if (this.#hintsHeld < this.hintsHeldMax) this.#hintTurns.shift()?.();
  }

  /**
   * M7: the most writes one batch keeps in flight, each holding its segment: IN_FLIGHT_DEFAULT,
   * less when the fd cache is small, so that a batch's writes and the hints still held
   * (hintsHeldMax) never pin more segments than maxOpenFiles and no open has to go past the
   * bound. With a cache of 32 and batches of 32 one-page runs, 32 writes beside a held hint
   * opened a 33rd fd.
   */
  get writesInFlightMax(): number {
    return Math.max(1, Math.min(IN_FLIGHT_DEFAULT, this.#maxOpenFiles - this.hintsHeldMax));
  }

  /** M8: the most hints that hold a segment open at once. */
  get hintsHeldMax(): number {
    return Math.max(1, Math.floor(this.#maxOpenFiles / 8));
  }

  /** mdwriteback (M8): hint blocks blockNum..blockNum+nblocks-1, piece by segment, open segments only. */
  async writeback(loc: RelFileLocator, fork: ForkNumber, blockNum: number, nblocks: number): Promise<void> {
    assert(Number.isInteger(nblocks) && nblocks >= 1, `md writeback: ${describeFork(loc, fork)} nblocks ${nblocks} is positive`);
    const io = this.#ctx.io;
    if (!io.writeback || this.#closed) return;
    let block = blockNum;
    let left = nblocks;
    while (left > 0) {
      const n = Math.min(left, this.#toSegmentEnd(block));
      const path = this.#segPath(loc, fork, Math.floor(block / this.#segBlocks));
      while (this.#hintsHeld >= this.hintsHeldMax) await new Promise<void>((turn) => this.#hintTurns.push(turn));
      // peek: a hint neither opens a file nor counts as a use for the LRU order.
      const seg = this.#cache.peek(path);
      if (!seg || this.#closed) {
        this.#nextHintTurn(); // a turn this hint does not take goes to the next one waiting
        return;
      }
      seg.pins++;
      this.#hintsHeld++;
      try {
        await io.writeback(seg.handle, (block % this.#segBlocks) * this.#blockSize, n * this.#blockSize);
      } catch (err) {
        this.#ctx.reportSyncFailure(ioError('sync_file_range', path, err));
      } finally {
        this.#hintsHeld--;
        this.#nextHintTurn();
        await this.#release(seg);
      }
      block += n;
      left -= n;
    }
  }

  async extend(loc: RelFileLocator, fork: ForkNumber, blockNum: number, page: Uint8Array): Promise<void> {
    assert(page.length === this.#blockSize, 'md extend: page is one block');
    if (blockNum >= INVALID_BLOCK_NUMBER) {
      throw new LamstoreError(ErrorCode.BLOCK_OUT_OF_RANGE, `${describeFork(loc, fork)}: cannot extend beyond ${INVALID_BLOCK_NUMBER} blocks`);
    }
    const nb = await this.#nblocksOf(loc, fork);
    if (blockNum < nb) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${describeFork(loc, fork)}: extend at block ${blockNum} but the fork already has ${nb} blocks`);
    const target = Math.floor(blockNum / this.#segBlocks);
    // M2: every segment before the target is full before the next one exists.
    for (let segno = Math.floor(nb / this.#segBlocks); segno < target; segno++) {
      const path = this.#segPath(loc, fork, segno);
      const padded = await this.#withSeg(path, true, async (h, created) => {
        if (created) this.#noteNewEntry(path);
        const size = await this.#ctx.io.size(h);
        if (size >= this.#segBlocks * this.#blockSize) return false;
        await this.#ctx.io.pwrite(h, new Uint8Array(this.#blockSize), (this.#segBlocks - 1) * this.#blockSize);
        return true;
      }).catch((err: unknown) => {
        throw ioError('extend', path, err);
      });
      if (padded) await this.#registerDirty(loc, fork, segno);
    }
    const path = this.#segPath(loc, fork, target);
    await this.#withSeg(path, true, async (h, created) => {
      if (created) this.#noteNewEntry(path);
      await this.#ctx.io.pwrite(h, page, (blockNum % this.#segBlocks) * this.#blockSize);
    }).catch((err: unknown) => {
      throw ioError('extend', path, err);
    });
    this.#nblocks.set(forkKey(loc, fork), blockNum + 1);
    await this.#registerDirty(loc, fork, target);
  }

  async truncate(loc: RelFileLocator, fork: ForkNumber, nblocks: number): Promise<void> {
    const cur = await this.#nblocksOf(loc, fork);
    if (nblocks > cur) {
      throw new LamstoreError(ErrorCode.BLOCK_OUT_OF_RANGE, `${describeFork(loc, fork)}: cannot truncate to ${nblocks} blocks, it has only ${cur}`);
    }
    if (nblocks === cur) return;
    const last = Math.floor((cur - 1) / this.#segBlocks);
    for (let segno = last; segno >= 0; segno--) {
      const start = segno * this.#segBlocks;
      if (start + this.#segBlocks <= nblocks) break; // wholly below the new end: untouched
      // M3: past the new end -> length 0 (kept); holding the new end -> shortened.
      const keepBlocks = Math.max(0, nblocks - start);
      const path = this.#segPath(loc, fork, segno);
      await this.#withSeg(path, false, (h) => this.#ctx.io.ftruncate(h, keepBlocks * this.#blockSize)).catch((err: unknown) => {
        throw ioError('ftruncate', path, err);
      });
      // Keep the cached size exact from the first touched segment on.
      this.#nblocks.set(forkKey(loc, fork), Math.max(nblocks, start));
      await this.#registerDirty(loc, fork, segno);
    }
    this.#nblocks.set(forkKey(loc, fork), nblocks);
  }

  async unlink(loc: RelFileLocator, fork?: ForkNumber): Promise<void> {
    const forks = fork === undefined ? FORKS : [fork];
    for (const f of forks) await this.#unlinkFork(loc, f);
  }

  /** Truncate a segment to 0 through its handle; false when it does not exist. */
  async #truncateToZero(path: string): Promise<boolean> {
    try {
      await this.#withSeg(path, false, (h) => this.#ctx.io.ftruncate(h, 0));
      return true;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return false;
      throw ioError('ftruncate', path, err);
    }
  }

  async #removeFile(path: string): Promise<void> {
    await this.#forget(path);
    this.#dropNewEntry(path);
    try {
      await this.#ctx.io.unlink(path);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw ioError('unlink', path, err);
    }
    this.#removedIn.add(dirname(path));
  }

  /** M9: make every removal made before this checkpoint started durable. */
  async checkpointBegin(): Promise<void> {
    for (const dir of [...this.#removedIn]) {
      // Removed from the set first: a removal racing this fsync is left for the next checkpoint.
      this.#removedIn.delete(dir);
      try {
        await this.#ctx.io.fsyncDir(dir);
        // A directory md made for files that were all dropped before any sync: no segment
        // sync will ever make its own name durable (M6), and the next engine, finding it,
        // would take it for durable.
        await this.#makeNameDurable(dir);
      } catch (err) {
        this.#ctx.reportSyncFailure(ioError('fsync', dir, err));
      }
    }
  }

  /**
   * The md sync handler's UNLINK callback (mdunlinkfiletag) for a tombstone: remove it, then
   * fsync its directory so the drop stays done after a crash (M9). ENOENT from the unlink stays
   * raw (pending-ops treats it as normal).
   */
  async unlinkTombstone(tag: FileTag): Promise<void> {
    const path = this.#segPath(tag.rlocator, 0, 0);
    await this.#forget(path);
    this.#dropNewEntry(path);
    try {
      await this.#ctx.io.unlink(path);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') this.#unlinkLog.unlinked(tag.rlocator); // gone already
      throw err;
    }
    try {
      await this.#ctx.io.fsyncDir(dirname(path));
    } catch (err) {
      this.#ctx.reportSyncFailure(ioError('fsync', dirname(path), err));
    }
    this.#unlinkLog.unlinked(tag.rlocator); // M4a: the removal is durable
  }

  /**
   * At open, before anything else uses md (M4a, pending-unlinks.ts PU5): remove the placeholders
   * of relations dropped before a stop that came before the checkpoint that would have unlinked
   * them. Returns how many.
   */
  finishPendingUnlinks(): Promise<number> {
    return this.#unlinkLog.finish();
  }

  /** After a clean shutdown checkpoint: empty the pending-unlink log if it names nothing waiting. */
  tidyPendingUnlinks(): Promise<void> {
    return this.#unlinkLog.tidy();
  }

  /** mdunlinkfork (M4). */
  async #unlinkFork(loc: RelFileLocator, fork: ForkNumber): Promise<void> {
    // An unlogged relation's INIT fork registers syncs like a permanent one, so it needs its FORGETs.
    const permanent = !this.#isUnlogged(loc, fork);
    const lk = locatorKey(loc);
    this.#nblocks.delete(forkKey(loc, fork));
    if (fork === 0 && this.#tombstones.has(lk)) return; // dropped already
    const seg0 = this.#segPath(loc, fork, 0);
    if (fork === 0 && permanent) {
      if ((await this.#statBlocks(seg0)) === null) return;
      // M4a: durable before the placeholder exists, so no crash leaves one nobody removes.
      await this.#unlinkLog.dropped(loc);
      try {
        if (!(await this.#truncateToZero(seg0))) return;
      } catch (err) {
        // No placeholder: the relation lives on, and no later open may take it for dropped.
        await cleanUp(err, `${this.#unlinkLog.path}: record ${describeFork(loc, 0)} as living again`, () => this.#unlinkLog.creating(loc)); // the truncation's error is the one to report
        throw err;
      }
    } else if (!(await this.#truncateToZero(seg0))) return;
    if (fork === 0 && permanent) {
      // The tombstone: keeps the relfilenumber taken until the checkpoint after the drop.
      await this.#forget(seg0);
      this.#tombstones.add(lk);
      await this.#ctx.registerSyncRequest(this.#tag(loc, fork, 0), SyncRequestType.UNLINK, true);
    } else {
      if (permanent) await this.#ctx.registerSyncRequest(this.#tag(loc, fork, 0), SyncRequestType.FORGET, true);
      await this.#removeFile(seg0);
    }
    for (let segno = 1; ; segno++) {
      const path = this.#segPath(loc, fork, segno);
      if (!(await this.#truncateToZero(path))) break;
      if (permanent) await this.#ctx.registerSyncRequest(this.#tag(loc, fork, segno), SyncRequestType.FORGET, true);
      await this.#removeFile(path);
    }
  }

  /** Existing segment paths of a fork, active and inactive, in order. */
  async #segments(loc: RelFileLocator, fork: number): Promise<number[]> {
    const out: number[] = [];
    for (let segno = 0; (await this.#statBlocks(this.#segPath(loc, fork, segno))) !== null; segno++) out.push(segno);
    return out;
  }

  async immediateSync(loc: RelFileLocator, fork: ForkNumber): Promise<void> {
    await this.#nblocksOf(loc, fork);
    // Inactive zero-length segments too: truncated-away data must not resurface after a crash.
    const segs = await this.#segments(loc, fork);
    for (let i = segs.length - 1; i >= 0; i--) {
      try {
        await this.#syncPath(this.#segPath(loc, fork, segs[i]!));
      } catch (err) {
        this.#ctx.reportSyncFailure(err);
      }
    }
  }

  /**
   * The shutdown checkpoint's sync of unlogged relations (U1): every segment of an unlogged
   * fork written since the last one. Ordinary checkpoints never sync them.
   */
  async syncUnlogged(): Promise<number> {
    let synced = 0;
    for (const path of [...this.#unloggedDirty]) {
      if ((await this.#statBlocks(path)) !== null) {
        try {
          await this.#syncPath(path);
        } catch (err) {
          this.#ctx.reportSyncFailure(err);
        }
        synced++;
      }
      this.#unloggedDirty.delete(path);
    }
    return synced;
  }

  /** True for a segment of an unlogged fork (the sync ledger does not hold these against a checkpoint). */
  isUnloggedFile(path: string): boolean {
    return this.#unloggedDirty.has(path);
  }

  /**
   * ResetUnloggedRelations after an unclean stop (U2): every relation with an INIT fork is
   * unlogged; its other forks are removed and its main fork becomes a copy of the INIT fork,
   * made durable before the engine is used. Returns the number of relations reset.
   */
  async resetUnlogged(): Promise<number> {
    const io = this.#ctx.io;
    const dirs: string[] = [];
    const add = async (rel: string) => {
      const full = join(this.#ctx.dataDir, rel);
      if ((await io.stat(full))?.kind === 'directory') dirs.push(full);
    };
    await add('global');
    if ((await io.stat(join(this.#ctx.dataDir, 'base')))?.kind === 'directory') {
      for (const db of await io.readdir(join(this.#ctx.dataDir, 'base'))) await add(join('base', db));
    }
    const tblspc = join(this.#ctx.dataDir, 'pg_tblspc');
    if ((await io.stat(tblspc))?.kind === 'directory') {
      for (const spc of await io.readdir(tblspc)) {
        const ver = join(tblspc, spc);
        if ((await io.stat(ver))?.kind !== 'directory') continue;
        for (const v of await io.readdir(ver)) {
          const vdir = join(ver, v);
          if ((await io.stat(vdir))?.kind !== 'directory') continue;
          for (const db of await io.readdir(vdir)) await add(join('pg_tblspc', spc, v, db));
        }
      }
    }
    let reset = 0;
    for (const dir of dirs) {
      const names = await io.readdir(dir);
      const rels = names.map((n) => /^(\d+)_init$/.exec(n)?.[1]).filter((r): r is string => r !== undefined);
      if (rels.length === 0) continue;
      for (const rel of rels) {
        // Remove every fork but INIT, then copy INIT's segments to MAIN's names.
        for (const n of names) {
          if (new RegExp(`^${rel}(_fsm|_vm)?(\\.\\d+)?$`).test(n)) await io.unlink(join(dir, n));
        }
        for (const n of names) {
          const m = new RegExp(`^${rel}_init(\\.\\d+)?$`).exec(n);
          if (m) await this.#copyFile(join(dir, n), join(dir, `${rel}${m[1] ?? ''}`));
        }
        reset++;
      }
      await io.fsyncDir(dir);
    }
    this.#nblocks.clear();
    return reset;
  }

  async #copyFile(from: string, to: string): Promise<void> {
    const io = this.#ctx.io;
    const src = await io.open(from, { readOnly: true });
    try {
      const dst = await io.open(to, { create: true });
      try {
        const size = await io.size(src);
        const chunk = new Uint8Array(Math.min(size, 64 * this.#blockSize));
        for (let at = 0; at < size; at += chunk.length) {
          const n = await io.pread(src, chunk, at);
          await io.pwrite(dst, chunk.subarray(0, n), at);
        }
        await io.ftruncate(dst, size);
        await io.fsync(dst);
      } finally {
        await io.close(dst);
      }
    } finally {
      await io.close(src);
    }
  }

  async registerSync(loc: RelFileLocator, fork: ForkNumber): Promise<void> {
    await this.#nblocksOf(loc, fork);
    for (const segno of await this.#segments(loc, fork)) await this.#registerDirty(loc, fork, segno, true);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const segs = [...this.#cache.values()];
    this.#cache.clear();
    let first: unknown;
    try {
      await this.#unlinkLog.close();
    } catch (err) {
      first = err;
    }
    for (const s of segs) {
      try {
        await this.#closeSeg(s);
      } catch (err) {
        first ??= err;
      }
    }
    await Promise.allSettled([...this.#pendingCloses]);
    if (first) throw first;
  }

  // ------------------------------------------------------------------ inspection

  /** Handles md holds open now (cached, plus evicted ones still in use). */
  get openFileCount(): number {
    return this.#cache.size + this.#doomedCount;
  }

  /** Names created whose directory entry is not yet durable (for tests). */
  get pendingNameCount(): number {
    let n = 0;
    for (const s of this.#newEntries.values()) n += s.size;
    return n;
  }

  checkInvariants(): void {
    assert(this.#cache.size <= this.#maxOpenFiles, 'md: fd cache within maxOpenFiles');
    assert(this.#doomedCount >= 0 && this.#openingCount >= 0 && this.#closingCount >= 0, 'md: counters are non-negative');
    for (const s of this.#cache.values()) {
      assert(s.pins >= 0, `md: ${s.path} pins >= 0`);
      assert(!s.closed, `md: cached handle ${s.path} is open`);
      assert(!s.doomed, `md: cached handle ${s.path} is not doomed`);
    }
    for (const [key, nb] of this.#nblocks) assert(Number.isInteger(nb) && nb >= 0, `md: nblocks of ${key} is a count`);
  }
}
