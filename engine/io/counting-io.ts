/**
 * CountingIO: a FileIO wrapper that counts calls and bytes per kind, and open handles.
 *
 * Checkpoint statistics (fsyncCalls, fdatasyncCalls, bytesWritten, writebacksIssued) are
 * differences of these counters taken around the checkpoint, and the bench and tests read them to check the numbers
 * the design fixes (one fsync per dirty md segment, at most two fdatasyncs per volume).
 */
import type { FileHandle, FileIO, FileStat, IoKind, LockMode, OpenOptions } from './file-io.js';
import { IO_KINDS, carriesWriteback, fsError, totalLength } from './file-io.js';

export type IoCounts = Record<IoKind, number> & {
  bytesRead: number;
  bytesWritten: number;
  /**
   * Writeback hints the wrapped FileIO carried out (on RealIO: sync_file_range calls that
   * returned 0, so they reached the kernel). `writeback` counts every hint issued, carried out
   * or dropped; the two differ where the FileIO has no writeback (FileIO.writebackSupported).
   */
  writebacksIssued: number;
  /** Handles open now. */
  openHandles: number;
  /** The most handles open at once since the counters were created or reset. */
  openHandlesMax: number;
};

export function zeroCounts(): IoCounts {
  const c = { bytesRead: 0, bytesWritten: 0, writebacksIssued: 0, openHandles: 0, openHandlesMax: 0 } as IoCounts;
  for (const k of IO_KINDS) c[k] = 0;
  return c;
}

/** `after - before` for every counter except the open-handle gauges (taken from `after`). */
export function diffCounts(after: IoCounts, before: IoCounts): IoCounts {
  const d = zeroCounts();
  for (const k of IO_KINDS) d[k] = after[k] - before[k];
  d.bytesRead = after.bytesRead - before.bytesRead;
  d.bytesWritten = after.bytesWritten - before.bytesWritten;
  d.writebacksIssued = after.writebacksIssued - before.writebacksIssued;
  d.openHandles = after.openHandles;
  d.openHandlesMax = after.openHandlesMax;
  return d;
}

export class CountingIO implements FileIO {
  readonly #inner: FileIO;
  #counts = zeroCounts();

  constructor(inner: FileIO) {
    this.#inner = inner;
  }

  get inner(): FileIO {
    return this.#inner;
  }

  /** A snapshot of the counters. */
  counts(): IoCounts {
    return { ...this.#counts };
  }

  /** Zero the counters (open handles stay as they are; the maximum restarts from now). */
  reset(): void {
    const open = this.#counts.openHandles;
    this.#counts = zeroCounts();
    this.#counts.openHandles = open;
    this.#counts.openHandlesMax = open;
  }

  async open(path: string, options?: OpenOptions): Promise<FileHandle> {
    this.#counts.open++;
    const h = await this.#inner.open(path, options);
    const c = this.#counts;
    c.openHandles++;
    if (c.openHandles > c.openHandlesMax) c.openHandlesMax = c.openHandles;
    return h;
  }
  async close(h: FileHandle): Promise<void> {
    this.#counts.close++;
    try {
      await this.#inner.close(h);
    } catch (err) {
      // The handle is gone whether or not close reports an error (as with close(2)), except
      // EBADF: then it was not an open handle (closed twice, or never ours).
      if ((err as { code?: unknown } | null)?.code !== 'EBADF') this.#counts.openHandles--;
      throw err;
    }
    this.#counts.openHandles--;
  }
  async pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    this.#counts.pread++;
    const n = await this.#inner.pread(h, buffer, offsetBytes);
    this.#counts.bytesRead += n;
    return n;
  }
  async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    this.#counts.pwrite++;
    await this.#inner.pwrite(h, buffer, offsetBytes);
    this.#counts.bytesWritten += buffer.length;
  }
  async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    this.#counts.pwrite++;
    await this.#inner.pwritev(h, buffers, offsetBytes);
    this.#counts.bytesWritten += totalLength(buffers);
  }
  async fsync(h: FileHandle): Promise<void> {
    this.#counts.fsync++;
    await this.#inner.fsync(h);
  }
  async fdatasync(h: FileHandle): Promise<void> {
    this.#counts.fdatasync++;
    await this.#inner.fdatasync(h);
  }
  async ftruncate(h: FileHandle, lengthBytes: number): Promise<void> {
    this.#counts.ftruncate++;
    await this.#inner.ftruncate(h, lengthBytes);
  }
  async size(h: FileHandle): Promise<number> {
    this.#counts.size++;
    return this.#inner.size(h);
  }
  async unlink(path: string): Promise<void> {
    this.#counts.unlink++;
    await this.#inner.unlink(path);
  }
  async rename(fromPath: string, toPath: string): Promise<void> {
    this.#counts.rename++;
    await this.#inner.rename(fromPath, toPath);
  }
  async mkdir(path: string): Promise<void> {
    this.#counts.mkdir++;
    await this.#inner.mkdir(path);
  }
  async rmdir(path: string): Promise<void> {
    if (!this.#inner.rmdir) throw fsError('ENOSYS', 'rmdir', path, 'the wrapped FileIO cannot remove directories');
    await this.#inner.rmdir(path);
  }
  async fsyncDir(path: string): Promise<void> {
    this.#counts.fsyncDir++;
    await this.#inner.fsyncDir(path);
  }
  async stat(path: string): Promise<FileStat | null> {
    this.#counts.stat++;
    return this.#inner.stat(path);
  }
  async readdir(path: string): Promise<string[]> {
    this.#counts.readdir++;
    return this.#inner.readdir(path);
  }
  async flock(h: FileHandle, mode: LockMode): Promise<void> {
    this.#counts.flock++;
    await this.#inner.flock(h, mode);
  }
  /** The inner FileIO's answer (FileIO.writebackSupported). */
  get writebackSupported(): boolean {
    return carriesWriteback(this.#inner);
  }
  /**
   * Counted (`writeback`) whether or not the inner FileIO has `writeback`: that count is of
   * hints the engine issued. Forwarded when the inner has it; otherwise the hint ends here
   * (FileIO C7). `writebacksIssued` counts those the inner carried out: asked after the call,
   * since RealIO learns only from the kernel's ENOSYS that it cannot.
   */
  async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#counts.writeback++;
    if (!this.#inner.writeback) return;
    await this.#inner.writeback(h, offsetBytes, lengthBytes);
    if (this.#inner.writebackSupported !== false) this.#counts.writebacksIssued++;
  }
}
