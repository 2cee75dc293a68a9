/**
 * The pending-unlink log, `<dataDir>/lam_pending_unlinks`: md's durable record of the relations
 * it dropped whose main fork's first segment (the placeholder, md.ts M4) waits for the next
 * checkpoint to unlink it. PostgreSQL needs no such file: WAL replay redoes the drop, and the
 * checkpoint after it unlinks. lamstore has no WAL, so without this a crash between a drop and
 * the next completed checkpoint left the zero-length placeholder forever (the 2000-kill soak
 * left 1180 of them, each one more fsync for every later startup sync).
 *
 * On-disk contract (all integers little-endian): a sequence of LOG_ENTRY_BYTES = 32 byte entries,
 * 16 to a 512-byte sector, none across a sector boundary:
 *
 *   offset  bytes  field
 *        0      4  magic "LPUL"
 *        4      4  kind: 1 dropped (its placeholder is to be removed), 2 created again
 *        8      4  spcOid
 *       12      4  dbOid
 *       16      4  relNumber
 *       20      8  reserved, zero
 *       28      4  CRC-32C of bytes 0-27
 *
 * A relation is pending when its last entry is "dropped".
 *
 * Invariants:
 *  PU1 md appends "dropped", durably (fsync, and the directory's when the file is new), BEFORE
 *      it truncates the main fork's first segment of a permanent relation it drops. So after any
 *      crash a placeholder has an entry. If the drop then fails before it made the placeholder,
 *      md appends "created again" (the relation lives on) before it reports the failure.
 *  PU2 Before md creates any fork of a pending relation again, it appends "created again",
 *      durably: the log never makes the next open remove a file created since the drop. This,
 *      not the size of the main fork, is what tells a placeholder from a relation created again
 *      (an empty one is zero-length too).
 *  PU3 Appends are serialized and each is durable before the next is written, so only the last
 *      entry can be torn by a crash; an entry that fails its CRC or has another magic is skipped
 *      (the operation it announced never began).
 *  PU4 The log is emptied (truncated to 0 and the next entry written at 0, one fsync for both)
 *      by the first append after every "dropped" placeholder was unlinked by a checkpoint
 *      (`unlinked`). While some never are (a checkpoint keeps failing, a FILTER request cancelled
 *      the unlink), an append that finds LOG_ENTRIES_MAX entries rewrites the log with just the
 *      pending ones (temporary file, fsync, rename, fsync of the directory). Entries left behind
 *      are harmless: a "dropped" whose placeholder is gone names no file, and one whose relation
 *      was created again is followed by "created again". A clean close empties it the same way
 *      (`tidy`, after the shutdown checkpoint unlinked every placeholder).
 *  PU5 At open, `finish` replays the log. For each pending relation, every segment file of every
 *      fork of it is removed, the main fork's first segment last (an interrupted finish is
 *      finished by the next open), then the directory is fsynced; then the log is emptied. Its
 *      main fork is usually the zero-length placeholder, but not always: a power loss may have
 *      lost the placeholder's truncation (never synced: the checkpoint that would have synced it
 *      unlinks it instead), bringing back the dropped relation's old size and pages, or the crash
 *      came between the entry and the truncation, while the drop call had not returned. The drop
 *      is finished either way, so a drop that returned before the crash is done after the next
 *      open (DESIGN.md D4), whatever the crash kept. The open does this whether the stop was
 *      clean or not (after a clean stop the log names nothing left, unless an unlink failed).
 *  PU6 A failed fsync of the log is a sync failure (the engine's failed state); `fsync: false`
 *      skips the fsyncs, never a write.
 */
import { dirname, join } from 'node:path';
import { crc32c } from '../checksum.js';
import { ErrorCode, LamstoreError, assert, errnoOf, ioError } from '../errors.js';
import type { FileHandle, FileIO } from '../io/file-io.js';
import { closeAfter } from '../io/file-io.js';
import { Mutex } from '../mutex.js';
import type { RelFileLocator } from '../relfile.js';
import { FORK_NAMES, locatorKey } from '../relfile.js';
import { relPath } from './paths.js';

export const PENDING_UNLINKS_FILE = 'lam_pending_unlinks';
export const LOG_ENTRY_BYTES = 32;
/** PU4: a log past this many entries with relations still pending is rewritten with just them. */
export const LOG_ENTRIES_MAX = 4096;
const LOG_MAGIC = 0x4c55504c; // "LPUL" little-endian
const CRC_OFFSET = LOG_ENTRY_BYTES - 4;
assert(512 % LOG_ENTRY_BYTES === 0, 'a log entry never crosses a 512-byte sector boundary (PU3)');

export const LogEntryKind = { DROPPED: 1, CREATED_AGAIN: 2 } as const;
export type LogEntryKind = (typeof LogEntryKind)[keyof typeof LogEntryKind];

export interface LogEntry {
  kind: LogEntryKind;
  rel: RelFileLocator;
}

export function encodeLogEntry(e: LogEntry): Uint8Array {
  assert(e.kind === LogEntryKind.DROPPED || e.kind === LogEntryKind.CREATED_AGAIN, `log entry kind ${e.kind}`);
  const bytes = new Uint8Array(LOG_ENTRY_BYTES);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, LOG_MAGIC, true);
  v.setUint32(4, e.kind, true);
  v.setUint32(8, e.rel.spcOid, true);
  v.setUint32(12, e.rel.dbOid, true);
  v.setUint32(16, e.rel.relNumber, true);
  v.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), true);
  return bytes;
}

/** One entry, or null when it is torn, garbled or not an entry (PU3). */
export function decodeLogEntry(bytes: Uint8Array): LogEntry | null {
  assert(bytes.length === LOG_ENTRY_BYTES, `a log entry is ${LOG_ENTRY_BYTES} bytes`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(0, true) !== LOG_MAGIC || v.getUint32(CRC_OFFSET, true) !== crc32c(bytes.subarray(0, CRC_OFFSET))) return null;
  const kind = v.getUint32(4, true);
  if (kind !== LogEntryKind.DROPPED && kind !== LogEntryKind.CREATED_AGAIN) return null;
  return { kind, rel: { spcOid: v.getUint32(8, true), dbOid: v.getUint32(12, true), relNumber: v.getUint32(16, true) } };
}

/** The relations whose last entry is "dropped", in the order of their last entry. */
export function pendingOf(bytes: Uint8Array): RelFileLocator[] {
  const last = new Map<string, LogEntry>();
  for (let at = 0; at + LOG_ENTRY_BYTES <= bytes.length; at += LOG_ENTRY_BYTES) {
    const e = decodeLogEntry(bytes.subarray(at, at + LOG_ENTRY_BYTES));
    if (!e) continue;
    const key = locatorKey(e.rel);
    last.delete(key);
    last.set(key, e);
  }
  return [...last.values()].filter((e) => e.kind === LogEntryKind.DROPPED).map((e) => e.rel);
}

export interface PendingUnlinkContext {
  readonly io: FileIO;
  readonly dataDir: string;
  readonly enableFsync: boolean;
  /** A failed fsync: enter the failed state; throws ENGINE_FAILED (PU6). */
  reportSyncFailure(err: unknown): never;
}

export class PendingUnlinkLog {
  readonly path: string;
  readonly #ctx: PendingUnlinkContext;
  readonly #mutex = new Mutex();
  #handle: FileHandle | null = null;
  /** Entries in the file now. */
  #entries = 0;
  /** Relations whose last entry in the file is "dropped" (PU2 asks). */
  readonly #lastDropped = new Set<string>();
  /** Of those, the ones whose placeholder no checkpoint has unlinked yet (PU4 waits for them). */
  readonly #awaitingUnlink = new Map<string, RelFileLocator>();

  constructor(ctx: PendingUnlinkContext) {
    this.#ctx = ctx;
    this.path = join(ctx.dataDir, PENDING_UNLINKS_FILE);
  }

  /** PU1: call before the placeholder is made. */
  async dropped(rel: RelFileLocator): Promise<void> {
    await this.#mutex.run(async () => {
      await this.#append({ kind: LogEntryKind.DROPPED, rel });
      const key = locatorKey(rel);
      this.#lastDropped.add(key);
      this.#awaitingUnlink.set(key, { ...rel });
    });
  }

  /** PU2 (and PU1's failed drop): call before any fork of `rel` is created. No I/O unless `rel` is pending. */
  async creating(rel: RelFileLocator): Promise<void> {
    if (!this.#lastDropped.has(locatorKey(rel))) return;
    await this.#mutex.run(async () => {
      const key = locatorKey(rel);
      if (!this.#lastDropped.has(key)) return;
      await this.#append({ kind: LogEntryKind.CREATED_AGAIN, rel });
      this.#lastDropped.delete(key);
    });
  }

  /** A checkpoint unlinked `rel`'s placeholder (or found it gone): PU4 need not wait for it. */
  unlinked(rel: RelFileLocator): void {
    this.#awaitingUnlink.delete(locatorKey(rel));
  }

  /** Relations dropped whose placeholder no checkpoint has unlinked yet (tests). */
  get awaitingUnlinkCount(): number {
    return this.#awaitingUnlink.size;
  }

  /**
   * PU5, at open before md is used: remove what the log says is left of dropped relations.
   * Returns the number of relations whose placeholder was removed.
   */
  async finish(): Promise<number> {
    const io = this.#ctx.io;
    let st;
    try {
      st = await io.stat(this.path);
    } catch (err) {
      throw ioError('stat', this.path, err);
    }
    if (!st) return 0;
    if (st.kind !== 'file') throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${this.path}: pending-unlink log is not a regular file`, { path: this.path });
    const bytes = await this.#readAll(st.sizeBytes);
    this.#entries = Math.floor(bytes.length / LOG_ENTRY_BYTES);
    let removed = 0;
    for (const rel of pendingOf(bytes)) if (await this.#removeLeftovers(rel)) removed++;
    if (bytes.length > 0) await this.#mutex.run(() => this.#empty());
    return removed;
  }

  /**
   * After a clean shutdown checkpoint: empty the log when nothing it names is waiting (PU4), so
   * the next open has nothing to read. Nothing to do, no I/O.
   */
  async tidy(): Promise<void> {
    await this.#mutex.run(async () => {
      if (this.#entries > 0 && this.#awaitingUnlink.size === 0) await this.#empty();
    });
  }

  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = null;
    if (!h) return;
    try {
      await this.#ctx.io.close(h);
    } catch (err) {
      throw ioError('close', this.path, err);
    }
  }

  // ------------------------------------------------------------------ internals

  async #readAll(sizeBytes: number): Promise<Uint8Array> {
    const h = await this.#open();
    const bytes = new Uint8Array(sizeBytes);
    try {
      const n = await this.#ctx.io.pread(h, bytes, 0);
      return bytes.subarray(0, n);
    } catch (err) {
      throw ioError('pread', this.path, err);
    }
  }

  /** Every segment file of every fork of `rel`, MAIN's first segment last (PU5). */
  async #removeLeftovers(rel: RelFileLocator): Promise<boolean> {
    const io = this.#ctx.io;
    const main0 = relPath(this.#ctx.dataDir, rel, 0, 0);
    const dir = dirname(main0);
    try {
      const st = await io.stat(main0);
      // Gone: the checkpoint unlinked it (and the other forks went at the drop, M9).
      if (!st || st.kind !== 'file') return false;
      const name = new RegExp(`^${rel.relNumber}(?:_(?:${Object.values(FORK_NAMES).join('|')}))?(?:\\.\\d+)?$`);
      const files = (await io.readdir(dir)).filter((n) => name.test(n) && join(dir, n) !== main0);
      for (const n of files) {
        try {
          await io.unlink(join(dir, n));
        } catch (err) {
          if (errnoOf(err) !== 'ENOENT') throw err;
        }
      }
      await io.unlink(main0);
    } catch (err) {
      throw ioError('unlink', main0, err);
    }
    try {
      if (this.#ctx.enableFsync) await io.fsyncDir(dir);
    } catch (err) {
      this.#ctx.reportSyncFailure(ioError('fsync', dir, err));
    }
    return true;
  }

  async #open(): Promise<FileHandle> {
    if (this.#handle) return this.#handle;
    try {
      this.#handle = await this.#ctx.io.open(this.path);
    } catch (err) {
      throw ioError('open', this.path, err);
    }
    return this.#handle;
  }

  #fsync(h: FileHandle): Promise<void> {
    if (!this.#ctx.enableFsync) return Promise.resolve();
    return this.#ctx.io.fsync(h).catch((err: unknown) => this.#ctx.reportSyncFailure(ioError('fsync', this.path, err)));
  }

  /** Truncate to 0 and make it durable (PU4, PU5). */
  async #empty(): Promise<void> {
    const h = await this.#open();
    try {
      await this.#ctx.io.ftruncate(h, 0);
    } catch (err) {
      throw ioError('ftruncate', this.path, err);
    }
    await this.#fsync(h);
    this.#entries = 0;
    this.#lastDropped.clear();
    this.#awaitingUnlink.clear();
  }

  /** Write `e` durably (PU1-PU4). Runs under the mutex. */
  async #append(e: LogEntry): Promise<void> {
    const io = this.#ctx.io;
    if (this.#entries >= LOG_ENTRIES_MAX && this.#awaitingUnlink.size > 0 && this.#awaitingUnlink.size < LOG_ENTRIES_MAX / 2) await this.#rewrite();
    let created = false;
    if (!this.#handle) {
      try {
        this.#handle = await io.open(this.path);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw ioError('open', this.path, err);
        try {
          this.#handle = await io.open(this.path, { create: true });
        } catch (err2) {
          throw ioError('open', this.path, err2);
        }
        created = true;
      }
    }
    const h = this.#handle;
    // PU4: nothing the log names is waiting any more: start it again, in the same fsync.
    const restart = this.#entries > 0 && this.#awaitingUnlink.size === 0;
    try {
      if (restart) await io.ftruncate(h, 0);
      await io.pwrite(h, encodeLogEntry(e), (restart ? 0 : this.#entries) * LOG_ENTRY_BYTES);
    } catch (err) {
      throw ioError('pwrite', this.path, err);
    }
    this.#entries = restart ? 1 : this.#entries + 1;
    await this.#fsync(h);
    // Only now: until the truncation is durable, a relation it dropped from the log must still
    // get its "created again" (creating() waits for this append and looks again).
    if (restart) this.#lastDropped.clear();
    if (created && this.#ctx.enableFsync) {
      try {
        await io.fsyncDir(this.#ctx.dataDir);
      } catch (err) {
        this.#ctx.reportSyncFailure(ioError('fsync', this.#ctx.dataDir, err));
      }
    }
  }

  /** PU4: the log with only the relations still waiting, swapped in whole. */
  async #rewrite(): Promise<void> {
    const io = this.#ctx.io;
    const tmp = `${this.path}.tmp`;
    const pending = [...this.#awaitingUnlink.values()];
    const bytes = new Uint8Array(pending.length * LOG_ENTRY_BYTES);
    pending.forEach((rel, i) => bytes.set(encodeLogEntry({ kind: LogEntryKind.DROPPED, rel }), i * LOG_ENTRY_BYTES));
    let h: FileHandle;
    try {
      h = await io.open(tmp, { create: true });
    } catch (err) {
      throw ioError('open', tmp, err);
    }
    // An earlier error is the one to report; a failed close rides on it (or is the error).
    await closeAfter(io, h, tmp, async () => {
      try {
        await io.ftruncate(h, 0);
        await io.pwrite(h, bytes, 0);
      } catch (err) {
        throw ioError('pwrite', tmp, err);
      }
      if (this.#ctx.enableFsync) await io.fsync(h).catch((err: unknown) => this.#ctx.reportSyncFailure(ioError('fsync', tmp, err)));
    });
    await this.close();
    try {
      await io.rename(tmp, this.path);
    } catch (err) {
      throw ioError('rename', this.path, err);
    }
    if (this.#ctx.enableFsync) await io.fsyncDir(this.#ctx.dataDir).catch((err: unknown) => this.#ctx.reportSyncFailure(ioError('fsync', this.#ctx.dataDir, err)));
    this.#entries = pending.length;
    this.#lastDropped.clear();
    for (const rel of pending) this.#lastDropped.add(locatorKey(rel));
  }
}
