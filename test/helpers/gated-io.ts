/**
 * GatedIO: a FileIO wrapper that can hold chosen calls until the test releases them, so a test
 * can make operations interleave at exactly the await it wants (a write in flight while a page
 * is modified, a read in flight while another reader arrives, a truncation half done). Also
 * records every write as (path, offset, bytes) in issue order.
 */
import type { FileHandle, FileIO, FileStat, LockMode, OpenOptions } from '../../engine/index.js';

export interface WriteRecord {
  path: string;
  offsetBytes: number;
  lengthBytes: number;
}

type Kind = 'pread' | 'pwrite' | 'ftruncate' | 'fsync';

export class GatedIO implements FileIO {
  readonly inner: FileIO;
  readonly writes: WriteRecord[] = [];
  #gates: { kind: Kind; match: (path: string) => boolean; hit: () => void; open: Promise<void> }[] = [];

  constructor(inner: FileIO) {
    this.inner = inner;
  }

  /**
   * Hold the next call of `kind` whose path matches; returns `reached` (resolves when a call is
   * held) and `release`.
   */
  hold(kind: Kind, match: (path: string) => boolean = () => true): { reached: Promise<void>; release: () => void } {
    let hit!: () => void;
    const reached = new Promise<void>((r) => (hit = r));
    let release!: () => void;
    const open = new Promise<void>((r) => (release = r));
    this.#gates.push({ kind, match, hit, open });
    return { reached, release };
  }

  async #gate(kind: Kind, path: string): Promise<void> {
    const i = this.#gates.findIndex((g) => g.kind === kind && g.match(path));
    if (i < 0) return;
    const g = this.#gates[i]!;
    this.#gates.splice(i, 1);
    g.hit();
    await g.open;
  }

  open(path: string, options?: OpenOptions): Promise<FileHandle> {
    return this.inner.open(path, options);
  }
  close(h: FileHandle): Promise<void> {
    return this.inner.close(h);
  }
  async pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    await this.#gate('pread', h.path);
    return this.inner.pread(h, buffer, offsetBytes);
  }
  async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    await this.#gate('pwrite', h.path);
    this.writes.push({ path: h.path, offsetBytes, lengthBytes: buffer.length });
    return this.inner.pwrite(h, buffer, offsetBytes);
  }
  async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    await this.#gate('pwrite', h.path);
    this.writes.push({ path: h.path, offsetBytes, lengthBytes: buffers.reduce((n, b) => n + b.length, 0) });
    return this.inner.pwritev(h, buffers, offsetBytes);
  }
  async fsync(h: FileHandle): Promise<void> {
    await this.#gate('fsync', h.path);
    return this.inner.fsync(h);
  }
  fdatasync(h: FileHandle): Promise<void> {
    return this.inner.fdatasync(h);
  }
  async ftruncate(h: FileHandle, lengthBytes: number): Promise<void> {
    await this.#gate('ftruncate', h.path);
    return this.inner.ftruncate(h, lengthBytes);
  }
  size(h: FileHandle): Promise<number> {
    return this.inner.size(h);
  }
  unlink(path: string): Promise<void> {
    return this.inner.unlink(path);
  }
  rename(fromPath: string, toPath: string): Promise<void> {
    return this.inner.rename(fromPath, toPath);
  }
  mkdir(path: string): Promise<void> {
    return this.inner.mkdir(path);
  }
  rmdir(path: string): Promise<void> {
    return this.inner.rmdir!(path);
  }
  fsyncDir(path: string): Promise<void> {
    return this.inner.fsyncDir(path);
  }
  stat(path: string): Promise<FileStat | null> {
    return this.inner.stat(path);
  }
  readdir(path: string): Promise<string[]> {
    return this.inner.readdir(path);
  }
  flock(h: FileHandle, mode: LockMode): Promise<void> {
    return this.inner.flock(h, mode);
  }
}
