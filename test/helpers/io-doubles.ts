/**
 * FileIO test doubles that wrap another FileIO (SimDisk or RealIO):
 *  - PassThroughIO forwards every call; the others override what they change.
 *  - SlowWriteIO makes writes cost time on an injected ManualClock (a slow disk without real
 *    sleeps), so a bounded close can be driven exactly.
 *  - NoSyncIO makes fsync/fdatasync of chosen paths return without syncing: a disk that lies.
 * No double swallows an error of the FileIO it wraps.
 */
import type { FileHandle, FileIO } from '../../engine/index.js';
import { ForwardingIO, type ManualClock } from '../../engine/testing.js';

/** Forwards every call (ForwardingIO); the doubles below override what they change. */
export class PassThroughIO extends ForwardingIO {}

/**
 * While `slow` is set, every pwrite/pwritev first moves `clock` forward by `msPerBlock` for each
 * block it writes (rounded up), as a disk that writes one block per `msPerBlock` would. Writes in
 * flight together add up: the disk serves them one after the other.
 */
export class SlowWriteIO extends PassThroughIO {
  slow = false;
  /** Blocks written while slow. */
  slowBlocksWritten = 0;

  constructor(
    inner: FileIO,
    readonly clock: ManualClock,
    readonly msPerBlock: number,
    readonly blockSize: number,
    /** The files whose writes are slow (and counted). @default every file */
    readonly slowFile: (path: string) => boolean = () => true,
  ) {
    super(inner);
  }

  async #cost(path: string, bytes: number): Promise<void> {
    if (!this.slow || !this.slowFile(path)) return;
    const blocks = Math.ceil(bytes / this.blockSize);
    this.slowBlocksWritten += blocks;
    await this.clock.advance(blocks * this.msPerBlock);
  }

  override async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    await this.#cost(h.path, buffer.length);
    return this.inner.pwrite(h, buffer, offsetBytes);
  }

  override async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    await this.#cost(h.path, buffers.reduce((n, b) => n + b.length, 0));
    return this.inner.pwritev(h, buffers, offsetBytes);
  }
}

/** fsync and fdatasync of a path for which `skip(path)` is true return at once, syncing nothing. */
export class NoSyncIO extends PassThroughIO {
  skipped = 0;

  constructor(
    inner: FileIO,
    readonly skip: (path: string) => boolean,
  ) {
    super(inner);
  }

  override async fsync(h: FileHandle): Promise<void> {
    if (this.skip(h.path)) {
      this.skipped++;
      return;
    }
    return this.inner.fsync(h);
  }

  override async fdatasync(h: FileHandle): Promise<void> {
    if (this.skip(h.path)) {
      this.skipped++;
      return;
    }
    return this.inner.fdatasync(h);
  }
}
