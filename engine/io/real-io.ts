/**
 * RealIO: FileIO over node:fs (callback API, so no call blocks the event loop) and fs-ext's
 * flock. This is the only module that imports node:fs for data files (a test greps for others).
 *
 * flock is fs-ext's synchronous call: every lock lamstore takes is non-blocking (FileIO C5), so
 * the syscall returns at once, and fs-ext's asynchronous flock queues its work on the process's
 * default libuv loop and calls back into whichever isolate that loop belongs to: on a worker
 * thread it aborted the whole process (V8's "Cannot create a handle without a HandleScope")
 * the first time an engine opened a volume there.
 *
 * Durability notes, where the syncs happen:
 *  - fdatasync(2) flushes the data and the metadata needed to read it back (the file size), not
 *    mtime; that is why the volume is zero-filled at creation: later overwrites inside it change
 *    no size, so fdatasync is enough for them.
 *  - A new file's directory entry is made durable only by fsync on the directory (fsyncDir);
 *    Linux needs a descriptor of the directory for that, opened read-only.
 *  - `writeback` (FileIO C7) is sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE) on
 *    Linux, called through koffi on the descriptor node:fs gave us (sync-file-range.ts says why
 *    koffi), on the sync thread (sync-thread.ts S6 says why not in line): the hints asked for in
 *    one turn of the event loop go to the thread in one message, each answered on its own. A
 *    `syncFileRange` given as an option (a test's double) is called in line. A failure throws a
 *    Node-style error (code EBADF, EIO, ...; syscall 'sync_file_range'), which md turns into the
 *    failed state as PostgreSQL's data_sync_elevel does: on Linux a failed writeback can consume
 *    the error a later fsync would report.
 *    ENOSYS alone is not an error (PostgreSQL's pg_flush_data does the same): the kernel lacks
 *    the call, the hint only ever saved time, and RealIO stops trying (writebackSupported turns
 *    false). Elsewhere (not Linux, koffi unable to load) RealIO leaves the method out rather than
 *    fake it, and `writebackSupported` / `writebackUnsupportedReason` say so: the hints are then
 *    counted by CountingIO and dropped, and the checkpoint's fsyncs carry the whole flush.
 *    Durability is the same either way: a hint never replaces a sync.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { getSystemErrorMap } from 'node:util';
import type { FileHandle, FileIO, FileStat, FileWrite, FsyncEachResult, LockMode, OpenOptions, WriteEachResult } from './file-io.js';
import { fsError, pwriteInFlight } from './file-io.js';
import { assert } from '../errors.js';
import { IN_FLIGHT_DEFAULT } from './in-flight.js';
import { fsyncOnThread, hintsOnThread, writesOnThread, type HintReply, type WriteThreadReply } from './sync-thread.js';
import { ENOSYS, loadSyncFileRange, type SyncFileRangeFn } from './sync-file-range.js';

interface FsExt {
  /** Throws a Node-style error (code EAGAIN for a lock held elsewhere, EBADF, ...). */
  flockSync(fd: number, flags: string): void;
}
const fsExt = createRequire(import.meta.url)('fs-ext') as FsExt;

/**
 * The same bytes in fewer iovecs: neighbours that are consecutive views of one ArrayBuffer (a
 * run of buffer-pool pages, which sit side by side in one ArrayBuffer) become one view. Node's
 * writev binding costs about half a microsecond of main-thread time per iovec: 16,000 pages a
 * checkpoint were 8-9 ms of it. Always a new array (the caller's is never changed).
 */
function joinAdjacent(buffers: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let run: Uint8Array | undefined;
  let runLength = 0;
  for (const b of buffers) {
    if (run !== undefined && b.buffer === run.buffer && b.byteOffset === run.byteOffset + runLength) {
      runLength += b.byteLength;
      continue;
    }
    if (run !== undefined) out.push(runLength === run.byteLength ? run : new Uint8Array(run.buffer, run.byteOffset, runLength));
    run = b;
    runLength = b.byteLength;
  }
  if (run !== undefined) out.push(runLength === run.byteLength ? run : new Uint8Array(run.buffer, run.byteOffset, runLength));
  return out;
}

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

export interface RealIOOptions {
  /**
   * What carries the writeback hint. Default: the process's sync_file_range (Linux, through
   * koffi) or none. `null`: no writeback, as on a platform without it. Tests pass a double
   * here (a call on a bad descriptor) to reach the error path with a real errno.
   */
  syncFileRange?: SyncFileRangeFn | null;
}

/** A Node-style error (FileIO C1) for an errno a native call returned: code, errno < 0, syscall, path. */
function errnoError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  const known = errno > 0 ? getSystemErrorMap().get(-errno) : undefined;
  const err = fsError(known?.[0] ?? 'EUNKNOWN', syscall, path, known?.[1] ?? `errno ${errno}`);
  err.errno = known ? -errno : -1;
  return err;
}

/** A hint waiting for the sync thread (S6), with what its answer settles. */
interface QueuedHint {
  fd: number;
  offsetBytes: number;
  lengthBytes: number;
  path: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class RealIO implements FileIO {
  #syncFileRange: SyncFileRangeFn | null;
  #writebackUnsupportedReason: string | null;
  /** Where koffi is, when hints go to the sync thread; null: they are made in line. */
  #hintThreadKoffi: string | null = null;
  /** Hints asked for in this turn of the event loop, sent together at its end. */
  #hints: QueuedHint[] = [];
  /** Present only where sync_file_range is (FileIO C7: left out, not faked). */
  declare writeback?: (h: FileHandle, offsetBytes: number, lengthBytes: number) => Promise<void>;

  constructor(options: RealIOOptions = {}) {
    if (options.syncFileRange !== undefined) {
      this.#syncFileRange = options.syncFileRange;
      this.#writebackUnsupportedReason = options.syncFileRange ? null : 'writeback turned off (RealIO option syncFileRange: null)';
    } else {
      const probe = loadSyncFileRange();
      this.#syncFileRange = probe.fn;
      this.#writebackUnsupportedReason = probe.fn ? null : probe.reason;
      if (probe.fn) this.#hintThreadKoffi = probe.koffiPath;
    }
    if (this.#syncFileRange) this.writeback = (h, offsetBytes, lengthBytes) => this.#writeback(h, offsetBytes, lengthBytes);
  }

  /** Whether writeback hints reach the kernel (FileIO `writebackSupported`). */
  get writebackSupported(): boolean {
    return this.#syncFileRange !== null;
  }

  /** Why they do not (null when they do): said once, here, instead of at every hint. */
  get writebackUnsupportedReason(): string | null {
    return this.#writebackUnsupportedReason;
  }

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
    let pending = joinAdjacent(buffers);
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

  /**
   * FileIO C8 on the sync thread (sync-thread.ts): one round trip for the lot instead of one per
   * file. A handle that is not open fails in its place, after the ones before it are synced.
   */
  async fsyncEach(handles: readonly FileHandle[]): Promise<FsyncEachResult> {
    const fds: number[] = [];
    let refused: unknown;
    for (const h of handles) {
      try {
        fds.push(this.#handle(h, 'fsync').fd);
      } catch (err) {
        refused = err;
        break;
      }
    }
    const reply = fds.length > 0 ? await fsyncOnThread(fds) : { us: [] };
    const done = reply.us.length;
    if (reply.error) {
      const e = reply.error;
      // Node's errno is negative; without one (never seen) the thread's message is all there is.
      const path = handles[done]!.path;
      const err = e.errno !== undefined ? errnoError(-e.errno, 'fsync', path) : fsError(e.code ?? 'EIO', 'fsync', path, e.message);
      return { done, error: err, us: reply.us };
    }
    return refused === undefined ? { done, us: reply.us } : { done, error: refused, us: reply.us };
  }

  /**
   * FileIO C9 on the sync thread (sync-thread.ts S7) when every page is a view of a
   * SharedArrayBuffer (the buffer pool's): one round trip for the lot instead of a libuv request
   * and a thread wakeup per write. Otherwise the writes go through libuv, IN_FLIGHT_DEFAULT at
   * once; so does a lone write of one page (an eviction): it saves no wakeup, and the thread's
   * round trip of two messages cost it more than libuv's one request (md's eviction writes
   * 9-12k/s against 13-17k/s; BENCHMARKS.md, "md's writes on the sync thread"). A handle that
   * is not open fails in its place, after the writes before it.
   */
  async pwriteEach(writes: readonly FileWrite[]): Promise<WriteEachResult> {
    if (writes.length === 1 && writes[0]!.buffers.length === 1) return pwriteInFlight(this, writes, 1);
    const sabs: SharedArrayBuffer[] = [];
    const ops: number[] = [];
    let refused: unknown;
    let sent = 0;
    for (const w of writes) {
      let rh: RealHandle;
      try {
        rh = this.#handle(w.handle, w.buffers.length === 1 ? 'write' : 'writev');
      } catch (err) {
        refused = err;
        break;
      }
      const views = joinAdjacent(w.buffers);
      ops.push(rh.fd, w.offsetBytes, views.length);
      for (const v of views) {
        if (!(v.buffer instanceof SharedArrayBuffer)) return pwriteInFlight(this, writes, IN_FLIGHT_DEFAULT);
        let k = sabs.indexOf(v.buffer);
        if (k < 0) k = sabs.push(v.buffer) - 1;
        ops.push(k, v.byteOffset, v.byteLength);
      }
      sent++;
    }
    // S8: the hints asked for since the last message go with these writes, made before them
    // (those the thread cannot make stay queued, for #sendHints to make in line).
    const hints = sent > 0 && this.#hintThreadKoffi !== null ? this.#takeHints() : null;
    let reply: WriteThreadReply;
    try {
      reply = sent > 0 ? await writesOnThread(sabs, ops, hints ? { ranges: hints.ranges, koffiPath: hints.koffiPath! } : undefined) : { done: 0 };
    } catch (err) {
      if (hints) this.#failHints(hints.batch, err);
      throw err;
    }
    if (hints) {
      assert(reply.hints !== undefined, 'the sync thread answers the hints a batch of writes carried (S8)');
      this.#settleHints(hints.batch, reply.hints);
    }
    if (reply.error) {
      const e = reply.error;
      const w = writes[reply.done]!;
      const syscall = w.buffers.length === 1 ? 'write' : 'writev';
      const err = e.errno !== undefined ? errnoError(-e.errno, syscall, w.handle.path) : fsError(e.code ?? 'EIO', syscall, w.handle.path, e.message);
      return { done: reply.done, error: err };
    }
    return refused === undefined ? { done: reply.done } : { done: reply.done, error: refused };
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
      fsExt.flockSync(rh.fd, flag); // non-blocking (C5): returns at once; see the header
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EWOULDBLOCK') e.code = 'EAGAIN';
      e.syscall ??= 'flock';
      e.path ??= rh.path;
      throw e;
    }
  }

  /**
   * sync_file_range(SYNC_FILE_RANGE_WRITE) of `lengthBytes` from `offsetBytes`: on the sync
   * thread, or in line (a test's double, or a thread that could not load koffi). Resolves once
   * the call has been made; the caller keeps the handle open until then (S2).
   */
  async #writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    const rh = this.#handle(h, 'sync_file_range');
    if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) {
      throw fsError('EINVAL', 'sync_file_range', rh.path, `bad range ${offsetBytes}+${lengthBytes}`);
    }
    if (!this.#syncFileRange) return; // the kernel said ENOSYS earlier
    if (this.#hintThreadKoffi === null) return this.#hintAnswered(this.#syncFileRange(rh.fd, offsetBytes, lengthBytes), rh.path);
    return new Promise<void>((resolve, reject) => {
      if (this.#hints.length === 0) setImmediate(() => this.#sendHints());
      this.#hints.push({ fd: rh.fd, offsetBytes, lengthBytes, path: rh.path, resolve, reject });
    });
  }

  /**
   * One message for the turn's hints; each settles with its own answer (S6). Nothing to send
   * when a batch of writes has taken them meanwhile (sync-thread.ts S8).
   */
  #sendHints(): void {
    const taken = this.#takeHints();
    if (taken === null) return;
    // Queued before the thread said it cannot make hints: in line, as every later one.
    if (taken.koffiPath === null) return this.#settleHints(taken.batch, { unavailable: 'hints are made in line' });
    hintsOnThread(taken.ranges, taken.koffiPath).then(
      (reply) => this.#settleHints(taken.batch, reply),
      (err: unknown) => this.#failHints(taken.batch, err),
    );
  }

  /** The hints queued for the sync thread, taken to be sent (S6, S8); null when there are none. */
  #takeHints(): { batch: QueuedHint[]; ranges: number[]; koffiPath: string | null } | null {
    if (this.#hints.length === 0) return null;
    const batch = this.#hints;
    this.#hints = [];
    const ranges: number[] = [];
    for (const q of batch) ranges.push(q.fd, q.offsetBytes, q.lengthBytes);
    return { batch, ranges, koffiPath: this.#hintThreadKoffi };
  }

  /** Each hint of `batch` settles with its own answer. */
  #settleHints(batch: readonly QueuedHint[], reply: HintReply): void {
    if ('unavailable' in reply) {
      // The thread cannot load koffi: in line from now on, as before the thread existed.
      this.#hintThreadKoffi = null;
    }
    batch.forEach((q, i) => {
      try {
        const call = this.#syncFileRange;
        const errno = 'errnos' in reply ? reply.errnos[i]! : call ? call(q.fd, q.offsetBytes, q.lengthBytes) : 0;
        this.#hintAnswered(errno, q.path);
        q.resolve();
      } catch (err) {
        q.reject(err);
      }
    });
  }

  /** The thread died: every hint of the batch fails with why. */
  #failHints(batch: readonly QueuedHint[], err: unknown): void {
    for (const q of batch) q.reject(err);
  }

  /** A hint's errno: 0 is done; ENOSYS stops hinting (not an I/O error); anything else throws. */
  #hintAnswered(errno: number, path: string): void {
    if (errno === 0) return;
    if (errno === ENOSYS) {
      // Not an I/O error: nothing was tried. Stop hinting, and say why (pg_flush_data does the same).
      this.#syncFileRange = null;
      this.#hintThreadKoffi = null;
      this.#writebackUnsupportedReason = 'the kernel has no sync_file_range (ENOSYS)';
      return;
    }
    throw errnoError(errno, 'sync_file_range', path);
  }
}

/**
 * RLIMIT_NOFILE's soft limit of this process (the most descriptors it may hold), from
 * /proc/self/limits on Linux; null where it cannot be read or is unlimited. md sizes its fd
 * cache from it (md.ts `defaultMaxOpenFiles`). Node raises the soft limit to the hard one at
 * start-up, so this is usually the hard limit.
 */
export function openFilesLimit(): number | null {
  if (process.platform !== 'linux') return null;
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/limits', 'utf8');
  } catch (err) {
    // No /proc (a container without it) or no right to read it: the caller uses its fixed
    // default. Anything else is a real failure and is reported.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM') return null;
    throw err;
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  const soft = m ? Number(m[1]) : Number.NaN;
  return Number.isSafeInteger(soft) && soft > 0 ? soft : null;
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
