/**
 * The sync ledger (`verifySync: true`): a FileIO wrapper that remembers, per file, every write
 * and truncate not yet covered by an fsync/fdatasync of that file, tagged with the ledger epoch
 * in which it was issued. The checkpointer starts a new epoch when a checkpoint starts and, when
 * the checkpoint's sync phase has finished, asks the ledger whether any write from an earlier
 * epoch is still unsynced. Such a write is a bug in a sync path (a storage manager that forgot
 * its SYNC request, a handler that skipped its fsync): the checkpoint would have claimed
 * durability it does not have. The checkpoint then fails with SYNC_LEDGER naming the file and
 * the byte range.
 *
 * This is the "fsync checker" PostgreSQL developers asked for: it catches a missing fsync at the
 * checkpoint that should have done it, not after a power loss.
 *
 * Invariants:
 *  L1 An entry exists for a file iff it has writes or truncates not covered by a later
 *     successful sync of that file; it records the oldest of them. A failed sync covers nothing.
 *  L2 Unlinking a file forgets its entries (nothing left to make durable); a rename moves them.
 *  L3 Files for which `exempt(path)` is true (unlogged relations, which only the shutdown
 *     checkpoint syncs) are never reported; nor is a write announced with exemptNextWrite (an
 *     unlogged fork's page inside a shared file such as the volume).
 */
import type { FileHandle, FileIO, FileStat, FileWrite, FsyncEachResult, LockMode, OpenOptions, WriteEachResult } from './file-io.js';
import { carriesWriteback, fsError, fsyncEach, totalLength, writtenOf } from './file-io.js';
import { ErrorCode, LamstoreError } from '../errors.js';

interface UnsyncedRange {
  startBytes: number;
  endBytes: number;
  epoch: number;
  kind: 'write' | 'truncate';
}

export interface SyncLedgerOptions {
  /** Paths never reported (L3); asked only by `verify`. @default none */
  exempt?: (path: string) => boolean;
}

export class SyncLedgerIO implements FileIO {
  readonly #inner: FileIO;
  readonly #unsynced = new Map<string, UnsyncedRange>();
  readonly #exempt: (path: string) => boolean;
  #epoch = 0;

  /** C9, present only where the inner FileIO has it: the writes done are recorded (L1). */
  declare pwriteEach?: (writes: readonly FileWrite[]) => Promise<WriteEachResult>;

  constructor(inner: FileIO, options: SyncLedgerOptions = {}) {
    this.#inner = inner;
    this.#exempt = options.exempt ?? (() => false);
    if (inner.pwriteEach) this.pwriteEach = (writes) => this.#pwriteEach(writes);
  }

  async #pwriteEach(writes: readonly FileWrite[]): Promise<WriteEachResult> {
    const exempt = writes.map((w) => this.#takeExemption(w.handle.path, w.offsetBytes, totalLength(w.buffers)));
    const r = await this.#inner.pwriteEach!(writes);
    for (const i of writtenOf(r)) {
      const w = writes[i]!;
      if (!exempt[i]) this.#note(w.handle.path, { startBytes: w.offsetBytes, endBytes: w.offsetBytes + totalLength(w.buffers), kind: 'write' });
    }
    return r;
  }

  /** Start a new epoch; returns it. Writes issued from now on belong to it. */
  beginEpoch(): number {
    return ++this.#epoch;
  }

  /**
   * Throw SYNC_LEDGER for the first write issued before `epoch` that is still unsynced.
   * Called when the checkpoint that began `epoch` has finished its sync phase.
   */
  verify(epoch: number): void {
    for (const [path, stale] of this.#unsynced) {
      if (this.#exempt(path) || stale.epoch >= epoch) continue;
      const what = stale.kind === 'write' ? `bytes ${stale.startBytes}..${stale.endBytes - 1} written` : `truncation to ${stale.startBytes} bytes`;
      throw new LamstoreError(ErrorCode.SYNC_LEDGER, `${path}: ${what} before the checkpoint started are still not synced after it (a sync path skipped this file)`, { path });
    }
  }

  /** One-shot exemptions: the next write of exactly this range is not recorded (L3). */
  readonly #exemptWrites = new Map<string, string[]>();

  /** Do not record the next write of exactly [offsetBytes, offsetBytes + lengthBytes) of `path`. */
  exemptNextWrite(path: string, offsetBytes: number, lengthBytes: number): void {
    let list = this.#exemptWrites.get(path);
    if (!list) this.#exemptWrites.set(path, (list = []));
    list.push(`${offsetBytes}+${lengthBytes}`);
  }

  #takeExemption(path: string, offsetBytes: number, lengthBytes: number): boolean {
    const list = this.#exemptWrites.get(path);
    const i = list?.indexOf(`${offsetBytes}+${lengthBytes}`) ?? -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    if (list!.length === 0) this.#exemptWrites.delete(path);
    return true;
  }

  /** Files with unsynced writes now (for tests). */
  unsyncedPaths(): string[] {
    return [...this.#unsynced.keys()].sort();
  }

  #note(path: string, range: Omit<UnsyncedRange, 'epoch'>): void {
    // Only the oldest unsynced operation of a file matters: epochs only grow, so if any
    // operation of the file is stale, the oldest one is.
    if (!this.#unsynced.has(path)) this.#unsynced.set(path, { ...range, epoch: this.#epoch });
  }

  open(path: string, options?: OpenOptions): Promise<FileHandle> {
    return this.#inner.open(path, options);
  }
  close(h: FileHandle): Promise<void> {
    return this.#inner.close(h);
  }
  pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    return this.#inner.pread(h, buffer, offsetBytes);
  }
  async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    const exempt = this.#takeExemption(h.path, offsetBytes, buffer.length);
    await this.#inner.pwrite(h, buffer, offsetBytes);
    if (exempt) return;
    this.#note(h.path, { startBytes: offsetBytes, endBytes: offsetBytes + buffer.length, kind: 'write' });
  }
  async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    const exempt = this.#takeExemption(h.path, offsetBytes, totalLength(buffers));
    await this.#inner.pwritev(h, buffers, offsetBytes);
    if (exempt) return;
    this.#note(h.path, { startBytes: offsetBytes, endBytes: offsetBytes + totalLength(buffers), kind: 'write' });
  }
  async fsync(h: FileHandle): Promise<void> {
    await this.#inner.fsync(h);
    this.#unsynced.delete(h.path);
  }
  /** C8: only the handles whose fsync succeeded are covered (L1). */
  async fsyncEach(handles: readonly FileHandle[]): Promise<FsyncEachResult> {
    const r = await fsyncEach(this.#inner, handles);
    for (let i = 0; i < r.done; i++) this.#unsynced.delete(handles[i]!.path);
    return r;
  }
  async fdatasync(h: FileHandle): Promise<void> {
    await this.#inner.fdatasync(h);
    this.#unsynced.delete(h.path);
  }
  async ftruncate(h: FileHandle, lengthBytes: number): Promise<void> {
    await this.#inner.ftruncate(h, lengthBytes);
    this.#note(h.path, { startBytes: lengthBytes, endBytes: lengthBytes, kind: 'truncate' });
  }
  size(h: FileHandle): Promise<number> {
    return this.#inner.size(h);
  }
  async unlink(path: string): Promise<void> {
    await this.#inner.unlink(path);
    this.#unsynced.delete(path);
  }
  async rename(fromPath: string, toPath: string): Promise<void> {
    await this.#inner.rename(fromPath, toPath);
    const moved = this.#unsynced.get(fromPath);
    this.#unsynced.delete(fromPath);
    if (moved) this.#unsynced.set(toPath, moved);
    else this.#unsynced.delete(toPath);
  }
  mkdir(path: string): Promise<void> {
    return this.#inner.mkdir(path);
  }
  rmdir(path: string): Promise<void> {
    if (!this.#inner.rmdir) return Promise.reject(fsError('ENOSYS', 'rmdir', path, 'the wrapped FileIO cannot remove directories'));
    return this.#inner.rmdir(path);
  }
  fsyncDir(path: string): Promise<void> {
    return this.#inner.fsyncDir(path);
  }
  stat(path: string): Promise<FileStat | null> {
    return this.#inner.stat(path);
  }
  readdir(path: string): Promise<string[]> {
    return this.#inner.readdir(path);
  }
  flock(h: FileHandle, mode: LockMode): Promise<void> {
    return this.#inner.flock(h, mode);
  }
  /** The inner FileIO's answer: this wrapper adds no place for hints to go. */
  get writebackSupported(): boolean {
    return carriesWriteback(this.#inner);
  }
  /** A writeback hint makes nothing durable (FileIO C7): forwarded, covers no entry. */
  async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.#inner.writeback?.(h, offsetBytes, lengthBytes);
  }
}
