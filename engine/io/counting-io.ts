/**
 * CountingIO: a FileIO wrapper that counts calls and bytes per kind, and open handles.
 *
 * Checkpoint statistics (fsyncCalls, fdatasyncCalls, bytesWritten, writebacksIssued) are
 * differences of these counters taken around the checkpoint, and the bench and tests read them to check the numbers
 * the design fixes (one fsync per dirty md segment, at most two fdatasyncs per volume).
 */
import type { FileHandle, FileIO, FileWrite, FsyncEachResult, IoKind, OpenOptions, WriteEachResult } from './file-io.js';
import { IO_KINDS, fsyncOneByOne, totalLength, writtenOf } from './file-io.js';
import { ForwardingIO, type FileIOMethod } from './forwarding-io.js';

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

export class CountingIO extends ForwardingIO {
  #counts = zeroCounts();

  /** C9, present only where the inner FileIO has it: each write attempted counts as one call. */
  declare pwriteEach?: (writes: readonly FileWrite[]) => Promise<WriteEachResult>;

  constructor(inner: FileIO) {
    super(inner);
    if (inner.pwriteEach) this.pwriteEach = (writes) => this.#pwriteEach(writes);
  }

  async #pwriteEach(writes: readonly FileWrite[]): Promise<WriteEachResult> {
    const r = await this.inner.pwriteEach!(writes);
    const written = writtenOf(r);
    this.#counts.pwrite += written.length + (r.error === undefined ? 0 : 1);
    for (const i of written) this.#counts.bytesWritten += totalLength(writes[i]!.buffers);
    return r;
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

  /**
   * Every call is counted under its name when it is made, before it completes; pwritev counts
   * as a pwrite (one write call), rmdir not at all (FileIO: not counted, not faulted). The calls
   * that also move bytes or handles add that below.
   */
  protected override around<T>(method: FileIOMethod, call: () => Promise<T>): Promise<T> {
    if (method === 'pwritev') this.#counts.pwrite++;
    else if (method !== 'rmdir') this.#counts[method]++;
    return call();
  }

  /** C8 through the inner FileIO's own fsyncEach when it has one: each fsync attempted counts once. */
  override async fsyncEach(handles: readonly FileHandle[]): Promise<FsyncEachResult> {
    if (!this.inner.fsyncEach) return fsyncOneByOne(this, handles); // each one counted by around()
    const r = await this.inner.fsyncEach(handles);
    this.#counts.fsync += r.done + (r.error === undefined ? 0 : 1);
    return r;
  }

  override async open(path: string, options?: OpenOptions): Promise<FileHandle> {
    const h = await super.open(path, options);
    const c = this.#counts;
    c.openHandles++;
    if (c.openHandles > c.openHandlesMax) c.openHandlesMax = c.openHandles;
    return h;
  }
  override async close(h: FileHandle): Promise<void> {
    try {
      await super.close(h);
    } catch (err) {
      // The handle is gone whether or not close reports an error (as with close(2)), except
      // EBADF: then it was not an open handle (closed twice, or never ours).
      if ((err as { code?: unknown } | null)?.code !== 'EBADF') this.#counts.openHandles--;
      throw err;
    }
    this.#counts.openHandles--;
  }
  override async pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    const n = await super.pread(h, buffer, offsetBytes);
    this.#counts.bytesRead += n;
    return n;
  }
  override async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    await super.pwrite(h, buffer, offsetBytes);
    this.#counts.bytesWritten += buffer.length;
  }
  override async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    await super.pwritev(h, buffers, offsetBytes);
    this.#counts.bytesWritten += totalLength(buffers);
  }
  /**
   * Counted (`writeback`) whether or not the inner FileIO has `writeback`: that count is of
   * hints the engine issued. Forwarded when the inner has it; otherwise the hint ends here
   * (FileIO C7). `writebacksIssued` counts those the inner carried out: asked after the call,
   * since RealIO learns only from the kernel's ENOSYS that it cannot.
   */
  override async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    await super.writeback(h, offsetBytes, lengthBytes);
    if (this.inner.writeback && this.inner.writebackSupported !== false) this.#counts.writebacksIssued++;
  }
}
