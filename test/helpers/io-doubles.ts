/**
 * FileIO test doubles. Those that wrap another FileIO (SimDisk or RealIO):
 *  - PassThroughIO forwards every call; the others override what they change.
 *  - SlowWriteIO makes writes cost time on an injected ManualClock (a slow disk without real
 *    sleeps), so a bounded close can be driven exactly.
 *  - NoSyncIO makes fsync/fdatasync of chosen paths return without syncing: a disk that lies.
 * No double swallows an error of the FileIO it wraps. And one that stands alone:
 *  - SparseIO holds one sparse file in memory: 4 KiB units never written with a non-zero byte
 *    are not stored and read as zeros, so a volume of many GiB whose pages are mostly zero costs
 *    little memory (SimDisk keeps every byte of a file twice, current and durable). No crash
 *    semantics: every write is durable at once.
 */
import { fsError } from '../../engine/index.js';
import type { FileHandle, FileIO, FileStat } from '../../engine/index.js';
import { ForwardingIO, type FaultSpec, type ManualClock, type SimDisk } from '../../engine/testing.js';

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

const ZERO_UNIT = new Uint8Array(65536);

function isZero(b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(b.buffer, b.byteOffset, b.length), ZERO_UNIT.subarray(0, b.length)) === 0;
}

/** One sparse file in memory (see the header); any path names it. */
export class SparseIO implements FileIO {
  /** Stored units by unit number: only those ever written with a non-zero byte. */
  readonly units = new Map<number, Uint8Array>();
  readonly unitBytes = 4096;
  sizeBytes = 0;
  exists = false;

  async open(path: string, o: { create?: boolean } = {}): Promise<FileHandle> {
    if (!this.exists && !o.create) throw fsError('ENOENT', 'open', path);
    this.exists = true;
    return { path };
  }
  async close(): Promise<void> {}
  async pread(_h: FileHandle, buf: Uint8Array, off: number): Promise<number> {
    const n = Math.max(0, Math.min(buf.length, this.sizeBytes - off));
    buf.fill(0, 0, n);
    for (let at = 0; at < n; ) {
      const u = Math.floor((off + at) / this.unitBytes);
      const inU = (off + at) % this.unitBytes;
      const k = Math.min(this.unitBytes - inU, n - at);
      const unit = this.units.get(u);
      if (unit) buf.set(unit.subarray(inU, inU + k), at);
      at += k;
    }
    return n;
  }
  async pwrite(h: FileHandle, buf: Uint8Array, off: number): Promise<void> {
    await this.pwritev(h, [buf], off);
  }
  async pwritev(_h: FileHandle, bufs: readonly Uint8Array[], off: number): Promise<void> {
    for (const buf of bufs) {
      for (let at = 0; at < buf.length; ) {
        const u = Math.floor((off + at) / this.unitBytes);
        const inU = (off + at) % this.unitBytes;
        const k = Math.min(this.unitBytes - inU, buf.length - at);
        const part = buf.subarray(at, at + k);
        let unit = this.units.get(u);
        if (!unit && !isZero(part)) this.units.set(u, (unit = new Uint8Array(this.unitBytes)));
        if (unit) unit.set(part, inU);
        at += k;
      }
      off += buf.length;
      this.sizeBytes = Math.max(this.sizeBytes, off);
    }
  }
  async fsync(): Promise<void> {}
  async fdatasync(): Promise<void> {}
  async ftruncate(_h: FileHandle, n: number): Promise<void> {
    // Bytes past a shrunk end read as zeros if the file grows again, as on a real file.
    for (const [u, unit] of this.units) {
      if (u * this.unitBytes >= n) this.units.delete(u);
      else if ((u + 1) * this.unitBytes > n) unit.fill(0, n - u * this.unitBytes);
    }
    this.sizeBytes = n;
  }
  async size(): Promise<number> {
    return this.sizeBytes;
  }
  async unlink(): Promise<void> {
    this.exists = false;
  }
  async rename(): Promise<void> {}
  async mkdir(): Promise<void> {}
  async fsyncDir(): Promise<void> {}
  async stat(): Promise<FileStat | null> {
    return this.exists ? { kind: 'file', sizeBytes: this.sizeBytes } : null;
  }
  async readdir(): Promise<string[]> {
    return [];
  }
  async flock(): Promise<void> {}
}

/**
 * Run `op` with one fault armed on `disk` (the campaigns' fault commands): whether it fired
 * (the fault's call was reached) and what `op` threw. Faults and the call hook are cleared after;
 * an error thrown although the fault never fired is not the fault's, so it is thrown on.
 */
export async function withOneFault(disk: SimDisk, fault: FaultSpec & { nth: number }, op: () => Promise<unknown>): Promise<{ fired: boolean; error: unknown }> {
  let fired = false;
  let calls = 0;
  disk.onCall = (_i, kind) => {
    if (kind === fault.kind && ++calls >= fault.nth) fired = true;
  };
  disk.injectFault(fault);
  let error: unknown;
  try {
    await op();
  } catch (err) {
    error = err;
  } finally {
    disk.onCall = undefined;
    disk.clearFaults();
  }
  if (error !== undefined && !fired) throw error;
  return { fired, error };
}
