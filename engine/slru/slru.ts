/**
 * A simple LRU (SLRU) of pages: PostgreSQL's slru.c, the storage under clog, commit_ts and
 * multixact.
 *
 * On-disk contract:
 *  - The SLRU owns one directory (`<dataDir>/<dirRelative>`). Page p (`blockSize` bytes) lives
 *    in segment `p / 32` at byte offset `(p % 32) * blockSize`. A segment file is named by its
 *    number in uppercase hex with at least 4 digits (`0000`, `001F`, `1A2B3`): names.ts.
 *  - A segment file holds at most 32 pages (a partial last page is ignored, S7). Pages never written inside it
 *    (holes) read as zeros. Files in the directory whose name is not a canonical segment name
 *    are ignored (PostgreSQL's SlruScanDirectory does the same).
 *  - SLRU pages carry no checksum (PostgreSQL has none there either): every byte belongs to the
 *    entries of the SLRU above.
 *
 * Invariants (checkInvariants() checks S1-S4):
 *  S1 A fixed number of page buffers, allocated once at open; a page is in at most one slot, and
 *     `#slotOf` maps exactly the occupied slots. Replacement picks an empty slot, else the least
 *     recently used one; a dirty victim is written first.
 *  S2 A physical write is: open the segment (creating it), pwrite exactly one page, then, unless
 *     the handler is NONE, one SYNC request for that segment with retryOnError = false. A refused
 *     request (queue full) is paid for at once: the segment is fsynced through the same handle
 *     and counted as a backend fsync; a failure of that fsync puts the engine in the failed state.
 *  S3 An SLRU whose handler is NONE issues no sync request of any kind and never fsyncs
 *     (behaviour 8): its contents are not meant to survive a crash.
 *  S4 `writeAll` (the SLRU checkpoint, SimpleLruWriteAll) writes every dirty page and then, if a
 *     segment file was created or removed since the last time (and the handler is not NONE),
 *     fsyncs the directory: a new file's name is durable only after its directory is
 *     (FileIO C4). The file fsyncs themselves are left to the sync phase.
 *  S5 Truncation removes whole segments below a cutoff; for each, a FORGET (retryOnError = true,
 *     it has no fallback) is sent BEFORE the unlink, so a pending sync of the segment is
 *     cancelled rather than failing with ENOENT (behaviour 44). Buffered pages of removed
 *     segments are discarded, dirty or not.
 *  S6 Reading a page that is not on disk (segment file missing, or shorter than the page) gives
 *     zeros. lamstore has no WAL, so every open is like PostgreSQL's crash recovery, where slru.c
 *     also zero-fills a missing page: a page whose writes were lost reads as "nothing recorded"
 *     (clog: IN_PROGRESS, commit_ts: no timestamp, multixact: offset 0 = unset) rather than as
 *     an error. Pages below the truncation cutoff are refused (`oldestPage`).
 *  S7 A segment file longer than 32 pages found at open is DATA_CORRUPT naming the file: it was
 *     not written by this code. A length that is not a whole number of pages is the tail of an
 *     unsynced page write that extended the file, cut by a power loss (the size reached the disk,
 *     not every sector; SimDisk's torn mode): every synced write is a whole page, so the partial
 *     page holds nothing a checkpoint promised. It is ignored (reads as zeros, S6) and rewritten
 *     whole by the page's next write. Refusing it would make one crash leave the data directory
 *     unopenable (found by the crash matrix, test/campaign-crash-matrix.test.ts).
 *
 * Concurrency: every operation holds the SLRU's lock (a promise chain), so an eviction's write
 * and a read into the same slot never interleave. The lock is held across the I/O of one
 * operation only.
 */
import { Mutex } from '../mutex.js';
import { join } from 'node:path';
import { ErrorCode, LamstoreError, assert, errnoOf, ioError } from '../errors.js';
import type { FileHandle, FileIO } from '../io/file-io.js';
import { openFile } from '../io/file-io.js';
import type { FileTag } from '../sync/file-tag.js';
import { SyncHandlerId, SyncRequestType } from '../sync/registry.js';
import { SLRU_PAGES_PER_SEGMENT, slruSegmentName } from './names.js';

/** What an SLRU needs from the engine (a subset of SmgrContext, plus the write gate). */
export interface SlruContext {
  readonly io: FileIO;
  readonly dataDir: string;
  readonly blockSize: number;
  /** RegisterSyncRequest; for SYNC with retryOnError false it may return false (queue full). */
  registerSyncRequest(tag: FileTag, type: SyncRequestType, retryOnError: boolean): Promise<boolean>;
  /** Count a segment the SLRU fsynced itself because the queue refused its request. */
  countBackendFsync(): void;
  /** An fsync the SLRU made itself failed: enter the failed state; throws ENGINE_FAILED. */
  reportSyncFailure(err: unknown): never;
  /** Throws when changes are refused (engine closed or failed). */
  checkWritable?(): void;
  /** Throws when the engine is closed. */
  checkReadable?(): void;
  /**
   * Make the SLRU positions (truncation cutoffs, multixact's ids) durable in the control file
   * now (control-file.ts CF5 d). Called before a truncation removes anything, so a cutoff is
   * never lost in a crash once the segments below it are gone. A failure puts the engine in the
   * failed state and throws.
   */
  saveControl?(): Promise<void>;
}

export interface SlruOptions {
  /** For messages: 'clog', 'commit_ts', ... */
  name: string;
  /** Directory under the data directory. */
  dirRelative: string;
  /** The SLRU's sync handler id, or SyncHandlerId.NONE for an SLRU that is never synced. */
  handler: number;
  /** Number of page buffers. @default 32 */
  bufferCount?: number;
  /**
   * The truncation cutoff (oldest page kept) the control file recorded. When given, it is the
   * cutoff, exactly as before the restart; otherwise the cutoff is derived from the lowest
   * segment on disk (S6).
   */
  oldestPage?: number;
}

export const SLRU_BUFFER_COUNT_DEFAULT = 32;
/** Lower bound: an operation may touch two pages (multixact offsets mxid and mxid + 1). */
export const SLRU_BUFFER_COUNT_MIN = 4;
export const SLRU_BUFFER_COUNT_MAX = 1 << 16;
/** FileTag.segno is a uint32. */
export const SLRU_SEGNO_MAX = 0xffff_ffff;

const SEGMENT_NAME = /^[0-9A-F]{4,}$/;

/** Counters for tests and the bench (since open). */
export interface SlruStats {
  pagesRead: number;
  pagesWritten: number;
  /** SYNC requests issued (accepted or not). */
  syncRequests: number;
  /** Segments fsynced inline because the queue refused their SYNC request. */
  backendFsyncs: number;
  forgetRequests: number;
  segmentsCreated: number;
  segmentsRemoved: number;
  dirSyncs: number;
}

interface Slot {
  /** -1 when empty. */
  pageNo: number;
  dirty: boolean;
  lastUsed: number;
}

export class Slru {
  readonly name: string;
  readonly handler: number;
  readonly blockSize: number;
  readonly dirPath: string;
  readonly bufferCount: number;
  readonly stats: SlruStats = {
    pagesRead: 0,
    pagesWritten: 0,
    syncRequests: 0,
    backendFsyncs: 0,
    forgetRequests: 0,
    segmentsCreated: 0,
    segmentsRemoved: 0,
    dirSyncs: 0,
  };
  readonly #ctx: SlruContext;
  readonly #io: FileIO;
  /** All page buffers, one allocation (S1). */
  readonly #pages: Uint8Array;
  readonly #slots: Slot[];
  readonly #slotOf = new Map<number, number>();
  /** Segments on disk -> pages the file holds. */
  readonly #segments = new Map<number, number>();
  #tick = 0;
  #oldestPage = 0;
  /** A segment was created or removed since the directory was last fsynced (S4). */
  #dirSyncNeeded = false;
  readonly #mutex = new Mutex();
  #closed = false;

  private constructor(ctx: SlruContext, options: Required<SlruOptions>) {
    this.#ctx = ctx;
    this.#io = ctx.io;
    this.name = options.name;
    this.handler = options.handler;
    this.blockSize = ctx.blockSize;
    this.dirPath = join(ctx.dataDir, options.dirRelative);
    this.bufferCount = options.bufferCount;
    this.#pages = new Uint8Array(this.bufferCount * this.blockSize);
    this.#slots = Array.from({ length: this.bufferCount }, () => ({ pageNo: -1, dirty: false, lastUsed: 0 }));
  }

  /** Create the directory if needed (durably) and take stock of the segments on disk (S7). */
  static async open(ctx: SlruContext, options: SlruOptions): Promise<Slru> {
    if (typeof options.name !== 'string' || options.name.length === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'SLRU option name must be a non-empty string');
    if (typeof options.dirRelative !== 'string' || options.dirRelative.length === 0) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `SLRU ${options.name}: option dirRelative must be a non-empty path`);
    }
    if (!Number.isInteger(options.handler) || options.handler < SyncHandlerId.NONE) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `SLRU ${options.name}: option handler must be a sync handler id or SyncHandlerId.NONE, got ${String(options.handler)}`);
    }
    const bufferCount = options.bufferCount ?? SLRU_BUFFER_COUNT_DEFAULT;
    if (!Number.isInteger(bufferCount) || bufferCount < SLRU_BUFFER_COUNT_MIN || bufferCount > SLRU_BUFFER_COUNT_MAX) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `SLRU ${options.name}: option bufferCount must be an integer in ${SLRU_BUFFER_COUNT_MIN}..${SLRU_BUFFER_COUNT_MAX}, got ${String(bufferCount)}`);
    }
    const oldestPage = options.oldestPage;
    if (oldestPage !== undefined && (!Number.isInteger(oldestPage) || oldestPage < 0 || Math.floor(oldestPage / SLRU_PAGES_PER_SEGMENT) > SLRU_SEGNO_MAX)) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `SLRU ${options.name}: option oldestPage must be a page number, got ${String(oldestPage)}`);
    }
    const slru = new Slru(ctx, { ...options, bufferCount, oldestPage: oldestPage ?? -1 });
    await slru.#openDirectory(options.dirRelative, oldestPage);
    return slru;
  }

  async #openDirectory(dirRelative: string, recordedOldestPage: number | undefined): Promise<void> {
    const io = this.#io;
    // Make the directory and every missing parent durable: a segment whose directory vanishes
    // in a crash is as lost as one never synced.
    const parts = dirRelative.split(/[\\/]+/).filter((p) => p.length > 0);
    let parent = this.#ctx.dataDir;
    for (const part of parts) {
      const path = join(parent, part);
      try {
        const st = await io.stat(path);
        if (st && st.kind !== 'directory') {
          throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: SLRU ${this.name} directory is not a directory`, { path });
        }
        if (!st) {
          await io.mkdir(path);
          if (this.handler !== SyncHandlerId.NONE) await io.fsyncDir(parent);
        }
      } catch (err) {
        throw ioError('mkdir', path, err);
      }
      parent = path;
    }
    let names: string[];
    try {
      names = await io.readdir(this.dirPath);
    } catch (err) {
      throw ioError('readdir', this.dirPath, err);
    }
    const segmentBytesMax = SLRU_PAGES_PER_SEGMENT * this.blockSize;
    for (const name of names) {
      if (!SEGMENT_NAME.test(name)) continue;
      const segno = Number.parseInt(name, 16);
      if (segno > SLRU_SEGNO_MAX || slruSegmentName(segno) !== name) continue;
      const path = join(this.dirPath, name);
      let st;
      try {
        st = await io.stat(path);
      } catch (err) {
        throw ioError('stat', path, err);
      }
      if (!st || st.kind !== 'file') continue;
      if (st.sizeBytes > segmentBytesMax) {
        throw new LamstoreError(
          ErrorCode.DATA_CORRUPT,
          `${path}: SLRU ${this.name} segment is ${st.sizeBytes} bytes; a segment holds at most ${SLRU_PAGES_PER_SEGMENT} pages of ${this.blockSize} bytes`,
          { path },
        );
      }
      // A partial last page is a torn unsynced extension (S7): it is not counted.
      this.#segments.set(segno, Math.floor(st.sizeBytes / this.blockSize));
    }
    // The control file's cutoff when there is one (segments below it are leftovers of a
    // truncation cut short by a crash: the next truncation removes them). Otherwise pages below
    // the lowest segment left on disk were truncated away (S6).
    if (recordedOldestPage !== undefined) this.#oldestPage = recordedOldestPage;
    else if (this.#segments.size > 0) this.#oldestPage = Math.min(...this.#segments.keys()) * SLRU_PAGES_PER_SEGMENT;
  }

  // ------------------------------------------------------------------ queries

  /** Pages below this were removed by truncation; reading or writing them is refused. */
  get oldestPage(): number {
    return this.#oldestPage;
  }

  segmentPath(segno: number): string {
    return join(this.dirPath, slruSegmentName(segno));
  }

  /** Segment numbers on disk, ascending. */
  segments(): number[] {
    return [...this.#segments.keys()].sort((a, b) => a - b);
  }

  /** Number of dirty page buffers now. */
  dirtyPageCount(): number {
    return this.#slots.filter((s) => s.dirty).length;
  }

  /** Distinct segments with a dirty page now (what the next writeAll will make sync-pending). */
  dirtySegmentCount(): number {
    return new Set(this.#slots.filter((s) => s.dirty).map((s) => Math.floor(s.pageNo / SLRU_PAGES_PER_SEGMENT))).size;
  }

  /** Pages held by segment files on disk, highest first (multixact scans them at open). */
  *pagesOnDiskDescending(): Generator<number> {
    for (const segno of this.segments().reverse()) {
      const pages = this.#segments.get(segno)!;
      for (let i = pages - 1; i >= 0; i--) yield segno * SLRU_PAGES_PER_SEGMENT + i;
    }
  }

  // ------------------------------------------------------------------ page access

  /** Run `fn` on page `pageNo` (read-only use). `fn` must not keep the view. */
  readPage<T>(pageNo: number, fn: (page: Uint8Array) => T): Promise<T> {
    this.#ctx.checkReadable?.();
    return this.#locked(async () => fn(await this.#pageView(pageNo, false)));
  }

  /** Run `fn` on page `pageNo` and mark it dirty. `fn` must not keep the view. */
  modifyPage<T>(pageNo: number, fn: (page: Uint8Array) => T): Promise<T> {
    this.#ctx.checkWritable?.();
    return this.#locked(async () => fn(await this.#pageView(pageNo, true)));
  }

  /**
   * SimpleLruWriteAll: write every dirty page (in page order), then fsync the directory when
   * segments were created or removed (S4). Returns the number of pages written.
   */
  writeAll(): Promise<number> {
    return this.#locked(async () => {
      const dirty = this.#slots
        .map((s, i) => ({ s, i }))
        .filter(({ s }) => s.dirty)
        .sort((a, b) => a.s.pageNo - b.s.pageNo);
      for (const { i } of dirty) await this.#writeSlot(i);
      if (this.#dirSyncNeeded && this.handler !== SyncHandlerId.NONE) {
        this.#dirSyncNeeded = false;
        try {
          await this.#io.fsyncDir(this.dirPath);
        } catch (err) {
          this.#dirSyncNeeded = true;
          this.#ctx.reportSyncFailure(ioError('fsyncDir', this.dirPath, err));
        }
        this.stats.dirSyncs++;
      }
      return dirty.length;
    });
  }

  /**
   * Remove every whole segment below the one holding `cutoffPage` (S5). Returns the number of
   * segment files removed.
   */
  truncateBefore(cutoffPage: number): Promise<number> {
    this.#ctx.checkWritable?.();
    assert(Number.isInteger(cutoffPage) && cutoffPage >= 0, `SLRU ${this.name}: cutoff page ${cutoffPage} is a page number`);
    return this.#locked(async () => {
      const cutoffSegno = Math.floor(cutoffPage / SLRU_PAGES_PER_SEGMENT);
      const firstKept = cutoffSegno * SLRU_PAGES_PER_SEGMENT;
      if (firstKept <= this.#oldestPage && this.segments().every((s) => s >= cutoffSegno)) return 0;
      // Refuse the doomed pages before any I/O, so nothing reads them while we remove files.
      this.#oldestPage = Math.max(this.#oldestPage, firstKept);
      for (let i = 0; i < this.#slots.length; i++) {
        const s = this.#slots[i]!;
        if (s.pageNo >= 0 && s.pageNo < firstKept) this.#dropSlot(i);
      }
      // The new cutoff is durable before any segment goes (control-file.ts CF5 d).
      if (this.handler !== SyncHandlerId.NONE) await this.#ctx.saveControl?.();
      let removed = 0;
      for (const segno of this.segments()) {
        if (segno >= cutoffSegno) break;
        const path = this.segmentPath(segno);
        if (this.handler !== SyncHandlerId.NONE) {
          // FORGET before unlink (S5): no fallback exists, so this one retries until queued.
          this.stats.forgetRequests++;
          await this.#ctx.registerSyncRequest(this.#tag(segno), SyncRequestType.FORGET, true);
        }
        try {
          await this.#io.unlink(path);
        } catch (err) {
          if (errnoOf(err) !== 'ENOENT') throw ioError('unlink', path, err);
        }
        this.#segments.delete(segno);
        this.#dirSyncNeeded = true;
        this.stats.segmentsRemoved++;
        removed++;
      }
      return removed;
    });
  }

  /** No I/O happens after this; dirty pages not written by a checkpoint are dropped. */
  close(): void {
    this.#closed = true;
  }

  // ------------------------------------------------------------------ internals

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.#mutex.run(async () => {
      if (this.#closed) throw new LamstoreError(ErrorCode.ENGINE_CLOSED, `SLRU ${this.name} (${this.dirPath}) is closed`);
      return fn();
    });
  }

  #tag(segno: number): FileTag {
    return { handler: this.handler, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno };
  }

  #view(slot: number): Uint8Array {
    return this.#pages.subarray(slot * this.blockSize, (slot + 1) * this.blockSize);
  }

  #dropSlot(slot: number): void {
    const s = this.#slots[slot]!;
    this.#slotOf.delete(s.pageNo);
    s.pageNo = -1;
    s.dirty = false;
  }

  async #pageView(pageNo: number, dirty: boolean): Promise<Uint8Array> {
    assert(Number.isInteger(pageNo) && pageNo >= 0, `SLRU ${this.name}: page ${pageNo} is a page number`);
    assert(Math.floor(pageNo / SLRU_PAGES_PER_SEGMENT) <= SLRU_SEGNO_MAX, `SLRU ${this.name}: page ${pageNo} has a segment number that fits a FileTag`);
    if (pageNo < this.#oldestPage) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `SLRU ${this.name}: page ${pageNo} was truncated away (the oldest page kept is ${this.#oldestPage})`, { path: this.dirPath });
    }
    let slot = this.#slotOf.get(pageNo);
    if (slot === undefined) {
      slot = await this.#victim();
      await this.#readPhysical(pageNo, this.#view(slot));
      const s = this.#slots[slot]!;
      s.pageNo = pageNo;
      s.dirty = false;
      this.#slotOf.set(pageNo, slot);
    }
    const s = this.#slots[slot]!;
    s.lastUsed = ++this.#tick;
    if (dirty) s.dirty = true;
    return this.#view(slot);
  }

  /** An empty slot, else the least recently used one, written first when dirty (S1). */
  async #victim(): Promise<number> {
    let best = -1;
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i]!;
      if (s.pageNo < 0) return i;
      if (best < 0 || s.lastUsed < this.#slots[best]!.lastUsed) best = i;
    }
    assert(best >= 0, 'an SLRU has at least one buffer');
    if (this.#slots[best]!.dirty) await this.#writeSlot(best);
    this.#dropSlot(best);
    return best;
  }

  async #readPhysical(pageNo: number, into: Uint8Array): Promise<void> {
    const segno = Math.floor(pageNo / SLRU_PAGES_PER_SEGMENT);
    const inSegment = pageNo % SLRU_PAGES_PER_SEGMENT;
    const pages = this.#segments.get(segno);
    if (pages === undefined || inSegment >= pages) {
      into.fill(0); // S6
      return;
    }
    const path = this.segmentPath(segno);
    const h = await openFile(this.#io, path, { readOnly: true });
    let error: unknown;
    try {
      const n = await this.#io.pread(h, into, inSegment * this.blockSize);
      if (n !== this.blockSize) {
        error = new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: short read of SLRU ${this.name} page ${pageNo} (${n} of ${this.blockSize} bytes): the file shrank under the engine`, { path });
      }
      this.stats.pagesRead++;
    } catch (err) {
      error = ioError('pread', path, err);
    }
    error = await this.#closeHandle(h, path, error);
    if (error) throw error;
  }

  /** SlruPhysicalWritePage (S2); clears the slot's dirty flag on success. */
  async #writeSlot(slot: number): Promise<void> {
    const s = this.#slots[slot]!;
    assert(s.pageNo >= 0 && s.dirty, `SLRU ${this.name}: slot ${slot} holds a dirty page`);
    const segno = Math.floor(s.pageNo / SLRU_PAGES_PER_SEGMENT);
    const inSegment = s.pageNo % SLRU_PAGES_PER_SEGMENT;
    const path = this.segmentPath(segno);
    // No O_EXCL, no O_TRUNC: the segment may exist with other pages in it.
    const h = await openFile(this.#io, path, { create: true });
    if (!this.#segments.has(segno)) {
      this.#segments.set(segno, 0);
      this.#dirSyncNeeded = true;
      this.stats.segmentsCreated++;
    }
    let error: unknown;
    try {
      await this.#io.pwrite(h, this.#view(slot), inSegment * this.blockSize);
      this.stats.pagesWritten++;
      this.#segments.set(segno, Math.max(this.#segments.get(segno)!, inSegment + 1));
      s.dirty = false;
    } catch (err) {
      error = ioError('pwrite', path, err);
    }
    if (!error && this.handler !== SyncHandlerId.NONE) {
      this.stats.syncRequests++;
      const queued = await this.#ctx.registerSyncRequest(this.#tag(segno), SyncRequestType.SYNC, false);
      if (!queued) {
        // The queue is full and could not be compacted: sync it ourselves (S2).
        try {
          await this.#io.fsync(h);
          this.stats.backendFsyncs++;
          this.#ctx.countBackendFsync();
        } catch (err) {
          await this.#closeHandle(h, path, err);
          this.#ctx.reportSyncFailure(ioError('fsync', path, err));
        }
      }
    }
    error = await this.#closeHandle(h, path, error);
    if (error) throw error;
  }

  /** Close `h`; returns the first error (an earlier one wins over a close failure). */
  async #closeHandle(h: FileHandle, path: string, earlier: unknown): Promise<unknown> {
    try {
      await this.#io.close(h);
    } catch (err) {
      return earlier ?? ioError('close', path, err);
    }
    return earlier;
  }

  /** S1-S4, for tests. */
  checkInvariants(): void {
    assert(this.#slots.length === this.bufferCount, 'slot count is fixed');
    assert(this.#pages.length === this.bufferCount * this.blockSize, 'page buffers are allocated once');
    let occupied = 0;
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i]!;
      if (s.pageNo < 0) {
        assert(!s.dirty, `empty slot ${i} is not dirty`);
        continue;
      }
      occupied++;
      assert(this.#slotOf.get(s.pageNo) === i, `page ${s.pageNo} maps to slot ${i}`);
      assert(s.pageNo >= this.#oldestPage, `page ${s.pageNo} is not below the truncation cutoff`);
    }
    assert(occupied === this.#slotOf.size, 'every mapped page has a slot and no slot is mapped twice');
    for (const [segno, pages] of this.#segments) {
      assert(pages >= 0 && pages <= SLRU_PAGES_PER_SEGMENT, `segment ${segno} holds 0..32 pages`);
    }
    if (this.handler === SyncHandlerId.NONE) {
      assert(this.stats.syncRequests === 0 && this.stats.forgetRequests === 0 && this.stats.dirSyncs === 0, 'an SLRU with handler NONE never asks for syncs (S3)');
    }
  }
}
