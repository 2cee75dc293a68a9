/**
 * RealIO: FileIO over node:fs (callback API, so no call blocks the event loop) and fs-ext's
 * flock. This is the only module that imports node:fs for data files (a test greps for others).
 *
 * Durability notes, where the syncs happen:
 *  - fdatasync(2) flushes the data and the metadata needed to read it back (the file size), not
 *    mtime; that is why the volume is zero-filled at creation: later overwrites inside it change
 *    no size, so fdatasync is enough for them.
 *  - A new file's directory entry is made durable only by fsync on the directory (fsyncDir);
 *    Linux needs a descriptor of the directory for that, opened read-only.
 *  - No `writeback` (FileIO C7): Node has no sync_file_range, posix_fadvise or msync, and no
 *    package we use provides one, so RealIO leaves the optional method out rather than fake it.
 *    The writeback hints BufferSync schedules (reference section 9) are then counted by
 *    CountingIO and dropped: on real files the kernel starts writeback on its own schedule and
 *    the checkpoint's fsyncs carry the whole flush. Durability is unaffected: a hint never
 *    replaces a sync.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import type { FileHandle, FileIO, FileStat, LockMode, OpenOptions } from './file-io.js';
import { fsError } from './file-io.js';

interface FsExt {
  flock(fd: number, flags: string, callback: (err: NodeJS.ErrnoException | null) => void): void;
}
const fsExt = createRequire(import.meta.url)('fs-ext') as FsExt;

class RealHandle implements FileHandle {
  constructor(
    readonly path: string,
    readonly fd: number,
    readonly readOnly: boolean,
  ) {}
  closed = false;
}

function call<T>(fn: (cb: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn((err, value) => (err ? reject(err) : resolve(value)));
  });
}

export class RealIO implements FileIO {
  #handle(h: FileHandle, syscall: string): RealHandle {
    if (!(h instanceof RealHandle)) throw fsError('EBADF', syscall, h.path, 'not a RealIO handle');
    if (h.closed) throw fsError('EBADF', syscall, h.path, 'handle is closed');
    return h;
  }

  async open(path: string, options: OpenOptions = {}): Promise<FileHandle> {
    const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL } = fs.constants;
    let flags = options.readOnly ? O_RDONLY : O_RDWR;
    if (options.create) flags |= O_CREAT;
    if (options.create && options.exclusive) flags |= O_EXCL;
    const fd = await call<number>((cb) => fs.open(path, flags, 0o644, cb));
    // A directory opens fine with O_RDONLY; refuse it here so callers get EISDIR up front.
    const st = await call<fs.Stats>((cb) => fs.fstat(fd, cb)).catch(async (err: unknown) => {
      await call<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
      throw err;
    });
    if (!st.isFile()) {
      await call<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
      throw fsError(st.isDirectory() ? 'EISDIR' : 'EINVAL', 'open', path, 'not a regular file');
    }
    return new RealHandle(path, fd, options.readOnly === true);
  }

  async close(h: FileHandle): Promise<void> {
    const rh = this.#handle(h, 'close');
    rh.closed = true;
    await call<void>((cb) => fs.close(rh.fd, (e) => cb(e, undefined)));
  }

  async pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    const rh = this.#handle(h, 'read');
    let done = 0;
    while (done < buffer.length) {
      const n = await call<number>((cb) => fs.read(rh.fd, buffer, done, buffer.length - done, offsetBytes + done, cb));
      if (n === 0) break; // end of file (C3)
      done += n;
    }
    return done;
  }

  async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    const rh = this.#handle(h, 'write');
    let done = 0;
    while (done < buffer.length) {
      const n = await call<number>((cb) => fs.write(rh.fd, buffer, done, buffer.length - done, offsetBytes + done, cb));
      if (n <= 0) throw fsError('EIO', 'write', rh.path, 'write made no progress');
      done += n;
    }
  }

  async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    const rh = this.#handle(h, 'writev');
    let pending = buffers.slice();
    let position = offsetBytes;
    while (pending.length > 0) {
      const n = await call<number>((cb) => fs.writev(rh.fd, pending as Uint8Array[] as NodeJS.ArrayBufferView[], position, cb));
      if (n <= 0) throw fsError('EIO', 'writev', rh.path, 'write made no progress');
      position += n;
      // Drop what was written; a partly written buffer continues from where it stopped (C2).
      let left = n;
      const rest: Uint8Array[] = [];
      for (const b of pending) {
        if (left >= b.length) left -= b.length;
        else {
          rest.push(left > 0 ? b.subarray(left) : b);
          left = 0;
        }
      }
      pending = rest;
    }
  }

  async fsync(h: FileHandle): Promise<void> {
    const rh = this.#handle(h, 'fsync');
    await call<void>((cb) => fs.fsync(rh.fd, (e) => cb(e, undefined)));
  }

  async fdatasync(h: FileHandle): Promise<void> {
    const rh = this.#handle(h, 'fdatasync');
    await call<void>((cb) => fs.fdatasync(rh.fd, (e) => cb(e, undefined)));
  }

  async ftruncate(h: FileHandle, lengthBytes: number): Promise<void> {
    const rh = this.#handle(h, 'ftruncate');
    await call<void>((cb) => fs.ftruncate(rh.fd, lengthBytes, (e) => cb(e, undefined)));
  }

  async size(h: FileHandle): Promise<number> {
    const rh = this.#handle(h, 'fstat');
    const st = await call<fs.Stats>((cb) => fs.fstat(rh.fd, cb));
    return st.size;
  }

  async unlink(path: string): Promise<void> {
    await call<void>((cb) => fs.unlink(path, (e) => cb(e, undefined)));
  }

  async rename(fromPath: string, toPath: string): Promise<void> {
    await call<void>((cb) => fs.rename(fromPath, toPath, (e) => cb(e, undefined)));
  }

  async mkdir(path: string): Promise<void> {
    await call<string | undefined>((cb) => fs.mkdir(path, { recursive: true }, cb));
  }

  async rmdir(path: string): Promise<void> {
    await call<void>((cb) => fs.rmdir(path, (e) => cb(e, undefined)));
  }

  async fsyncDir(path: string): Promise<void> {
    const fd = await call<number>((cb) => fs.open(path, fs.constants.O_RDONLY, cb));
    try {
      await call<void>((cb) => fs.fsync(fd, (e) => cb(e, undefined)));
    } finally {
      await call<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
    }
  }

  async stat(path: string): Promise<FileStat | null> {
    try {
      const st = await call<fs.Stats>((cb) => fs.stat(path, cb));
      return { kind: st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other', sizeBytes: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async readdir(path: string): Promise<string[]> {
    const names = await call<string[]>((cb) => fs.readdir(path, cb));
    return names.sort();
  }

  async flock(h: FileHandle, mode: LockMode): Promise<void> {
    const rh = this.#handle(h, 'flock');
    const flag = mode === 'exclusive' ? 'exnb' : mode === 'shared' ? 'shnb' : 'un';
    try {
      await call<void>((cb) => fsExt.flock(rh.fd, flag, (e) => cb(e, undefined)));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EWOULDBLOCK') e.code = 'EAGAIN';
      e.syscall ??= 'flock';
      e.path ??= rh.path;
      throw e;
    }
  }
}

/**
 * Temporary trees for programs built on the engine (the bench): outside FileIO on purpose, since
 * FileIO has no directory removal and these trees hold nothing durable. `removeTree` of a path
 * that does not exist succeeds.
 */
export async function makeTempDir(parentDir: string, prefix: string): Promise<string> {
  return fs.promises.mkdtemp(`${parentDir.replace(/\/+$/, '')}/${prefix}`);
}

export async function removeTree(path: string): Promise<void> {
  await fs.promises.rm(path, { recursive: true, force: true, maxRetries: 3 });
}

/** For exit handlers, where nothing asynchronous runs any more. */
export function removeTreeSync(path: string): void {
  fs.rmSync(path, { recursive: true, force: true, maxRetries: 3 });
}
