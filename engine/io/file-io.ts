/**
 * FileIO: the one door to the disk. Every engine, checkpointer, volume and CLI file access goes
 * through it, so that a test can swap the real disk for SimDisk (power loss, faults) and a
 * counting wrapper can tell how many fsyncs a checkpoint made.
 *
 * Contract every implementation keeps:
 *  C1 Errors look like Node's: an Error with `code` ('ENOENT', 'EIO', 'ENOSPC', 'EAGAIN', ...),
 *     `syscall` and `path`. FileIO never wraps them; the engine does (errors.ts `ioError`).
 *  C2 `pwrite`/`pwritev` write the whole buffer or throw: a short write is retried inside the
 *     implementation, and a write that makes no progress is an error, never a silent truncation.
 *  C3 `pread` returns the bytes read; fewer than asked means end of file, never an error.
 *  C4 Durability: written data is durable only after `fsync` or `fdatasync` of that file
 *     returns (both also persist the file size the data needs). A new, renamed or removed name
 *     is durable only after `fsyncDir` of the directory that holds it.
 *  C5 `flock` never blocks: a conflicting lock fails at once with EAGAIN (EWOULDBLOCK).
 *  C6 Paths are absolute. `mkdir` creates missing parents; it does not make them durable.
 *  C7 `writeback` (optional) is a hint and nothing more: it may start writing a byte range of the
 *     file back to the device (sync_file_range(SYNC_FILE_RANGE_WRITE): start, don't wait), so a
 *     later fsync has less to do. It makes nothing durable and changes no contents; callers never
 *     count on it in place of fsync/fdatasync. An implementation that cannot do it leaves it out
 *     (or, for a wrapper, says `writebackSupported: false`).
 *  C8 `fsyncEach` (optional) is `fsync` of each handle, one after another in order, as one call:
 *     it stops at the first failure and never starts an fsync after one. What it answers says
 *     which succeeded (the first `done`), the failure of the next one, and each success's time.
 *     Callers use the `fsyncEach` function below, which falls back to a loop of `fsync`.
 *  C9 `pwriteEach` (optional) is `pwrite`/`pwritev` of each write, as one call: RealIO makes
 *     them one after another on its I/O thread when their pages sit in shared memory (the buffer
 *     pool's), where each call on libuv's pool would cost a thread's wakeup. It stops at the
 *     first failure and never starts a write after one. What it answers says which succeeded
 *     (the first `done`) and the failure of the next one. Callers use the `pwriteEach` function
 *     below, which falls back to the writes in flight together: then a failure is the first in
 *     order of those that failed, `done` the writes before it, and `later` the writes after it
 *     that were written whole all the same (a caller registers them for sync, smgr.ts W4).
 */
import { cleanUp, ioError } from '../errors.js';
import { forEachInFlight } from './in-flight.js';

/** An open file. Opaque: only the implementation that returned it may use it. */
export interface FileHandle {
  readonly path: string;
}

export interface OpenOptions {
  /** Create the file when it does not exist. @default false */
  create?: boolean;
  /** With `create`: fail with EEXIST when the file exists. @default false */
  exclusive?: boolean;
  /** Open for reading only; writes through the handle fail with EBADF. @default false */
  readOnly?: boolean;
}

export type FileKind = 'file' | 'directory' | 'other';

export interface FileStat {
  kind: FileKind;
  sizeBytes: number;
}

export type LockMode = 'exclusive' | 'shared' | 'unlock';

/** The kinds of call a FileIO counts and a fault can target. */
export const IO_KINDS = [
  'open',
  'close',
  'pread',
  'pwrite',
  'fsync',
  'fdatasync',
  'ftruncate',
  'size',
  'unlink',
  'rename',
  'mkdir',
  'fsyncDir',
  'stat',
  'readdir',
  'flock',
  'writeback',
] as const;
export type IoKind = (typeof IO_KINDS)[number];

export interface FileIO {
  open(path: string, options?: OpenOptions): Promise<FileHandle>;
  close(handle: FileHandle): Promise<void>;
  pread(handle: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number>;
  pwrite(handle: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void>;
  /** One vectored write of `buffers` laid end to end from `offsetBytes` (counted as one pwrite). */
  pwritev(handle: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void>;
  fsync(handle: FileHandle): Promise<void>;
  fdatasync(handle: FileHandle): Promise<void>;
  ftruncate(handle: FileHandle, lengthBytes: number): Promise<void>;
  size(handle: FileHandle): Promise<number>;
  unlink(path: string): Promise<void>;
  rename(fromPath: string, toPath: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /**
   * Optional: remove an empty directory (ENOTEMPTY otherwise). Only the cleanup of a failed
   * Engine.open uses it, on a directory that open itself created; not counted, not faulted.
   */
  rmdir?(path: string): Promise<void>;
  fsyncDir(path: string): Promise<void>;
  /** null when nothing is at `path`. */
  stat(path: string): Promise<FileStat | null>;
  readdir(path: string): Promise<string[]>;
  flock(handle: FileHandle, mode: LockMode): Promise<void>;
  /**
   * Optional writeback hint (C7) for `lengthBytes` bytes from `offsetBytes`: start writing them
   * back, do not wait. PostgreSQL's pg_flush_data. Absent where the platform offers no honest way.
   */
  writeback?(handle: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void>;
  /**
   * Optional: whether `writeback` carries hints out (RealIO: they reach the kernel; SimDisk:
   * its model). false: they stop here. A FileIO that has `writeback` and leaves this out is taken
   * to carry them out; a wrapper reports its inner FileIO's answer. It may turn false while
   * the FileIO is in use (RealIO after the kernel answers ENOSYS), never back to true.
   */
  readonly writebackSupported?: boolean;
  /** Optional (C8): fsync every handle in order, stopping at the first failure. */
  fsyncEach?(handles: readonly FileHandle[]): Promise<FsyncEachResult>;
  /** Optional (C9): every write in order, stopping at the first failure. */
  pwriteEach?(writes: readonly FileWrite[]): Promise<WriteEachResult>;
}

/** One write of C9: `buffers` one after another from `offsetBytes` (one buffer: a pwrite). */
export interface FileWrite {
  handle: FileHandle;
  buffers: readonly Uint8Array[];
  offsetBytes: number;
}

/** What `pwriteEach` answers (C9). */
export interface WriteEachResult {
  /** How many writes, from the first, were written whole. */
  done: number;
  /** The failure of write `done`, when there is one (done < writes.length exactly then). */
  error?: unknown;
  /**
   * With a failure, the writes after write `done` that were written whole all the same, in
   * order (only where the writes ran in flight together: the caller registers them for sync,
   * smgr.ts W4). Absent: none.
   */
  later?: number[];
}

/** The writes of a C9 answer that were written whole, in order: the first `done`, then `later`. */
export function writtenOf(r: WriteEachResult): number[] {
  const out = Array.from({ length: r.done }, (_, i) => i);
  if (r.later) out.push(...r.later);
  return out;
}

/**
 * C9: `io.pwriteEach` where the FileIO has it, otherwise the writes through `pwrite`/`pwritev`,
 * up to `inFlight` at once (see C9 for what a failure answers then). Never rejects: a pwriteEach
 * with no answer at all (RealIO's sync thread died) answers a failure with nothing known to
 * have landed, `{ done: 0, error }`, which the caller throws like any other.
 */
export async function pwriteEach(io: FileIO, writes: readonly FileWrite[], inFlight: number): Promise<WriteEachResult> {
  if (!io.pwriteEach) return pwriteInFlight(io, writes, inFlight);
  try {
    return await io.pwriteEach(writes);
  } catch (error) {
    return { done: 0, error };
  }
}

/** C9 as calls of `pwrite`/`pwritev`, up to `inFlight` at once; every call is waited for. */
export async function pwriteInFlight(io: Pick<FileIO, 'pwrite' | 'pwritev'>, writes: readonly FileWrite[], inFlight: number): Promise<WriteEachResult> {
  let failedAt = writes.length;
  let error: unknown;
  const written: number[] = [];
  const write = async (w: FileWrite, i: number): Promise<void> => {
    try {
      await (w.buffers.length === 1 ? io.pwrite(w.handle, w.buffers[0]!, w.offsetBytes) : io.pwritev(w.handle, w.buffers, w.offsetBytes));
      written.push(i);
    } catch (err) {
      if (i < failedAt) {
        failedAt = i;
        error = err;
      }
      throw err; // so that no write starts after it
    }
  };
  // Writes start in order, so every write before the first failed one started, and succeeded.
  // The failure is kept above: it is the answer's, not lost.
  await forEachInFlight(writes, inFlight, write).catch(() => undefined);
  if (failedAt === writes.length) return { done: writes.length };
  const later = written.filter((i) => i > failedAt).sort((a, b) => a - b);
  return later.length > 0 ? { done: failedAt, error, later } : { done: failedAt, error };
}

/** What `fsyncEach` answers (C8). */
export interface FsyncEachResult {
  /** How many handles, from the first, were fsynced successfully. */
  done: number;
  /** The failure of handle `done`, when there is one (done < handles.length exactly then). */
  error?: unknown;
  /** Each success's duration in microseconds (length `done`). */
  us: number[];
}

/**
 * fsync `handles` one after another (C8): `io.fsyncEach` where the FileIO has it (RealIO: one
 * round trip to an I/O thread for the lot), otherwise a loop of `io.fsync` timed with `now` (ms).
 */
export async function fsyncEach(io: FileIO, handles: readonly FileHandle[], now: () => number = () => performance.now()): Promise<FsyncEachResult> {
  return io.fsyncEach ? io.fsyncEach(handles) : fsyncOneByOne(io, handles, now);
}

/** C8 as a loop of `io.fsync`, timed with `now` (ms): what a FileIO without fsyncEach amounts to. */
export async function fsyncOneByOne(io: Pick<FileIO, 'fsync'>, handles: readonly FileHandle[], now: () => number = () => performance.now()): Promise<FsyncEachResult> {
  const us: number[] = [];
  for (const h of handles) {
    const started = now();
    try {
      await io.fsync(h);
    } catch (error) {
      return { done: us.length, error, us };
    }
    us.push(Math.round((now() - started) * 1000));
  }
  return { done: us.length, us };
}

/** Whether `io`'s writeback hints go anywhere (see FileIO.writebackSupported). */
export function carriesWriteback(io: FileIO): boolean {
  return typeof io.writeback === 'function' && io.writebackSupported !== false;
}

/**
 * `io.open` with its failure turned into an IO_ERROR that names the file and the syscall
 * (errors.ts `ioError`): what every caller opening a file to work on it needs around the call.
 */
export async function openFile(io: FileIO, path: string, options?: OpenOptions): Promise<FileHandle> {
  try {
    return await io.open(path, options);
  } catch (err) {
    throw ioError('open', path, err);
  }
}

/**
 * Run `work` on an open handle, then close it. A close that fails after `work` succeeded is an
 * IO_ERROR naming the file; one that fails after `work` threw is kept on that error's
 * `suppressed` list (errors.ts cleanUp): the first error is the one reported, none is dropped.
 */
export async function closeAfter<T>(io: FileIO, handle: FileHandle, path: string, work: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (err) {
    await cleanUp(err, `${path}: close`, () => io.close(handle));
    throw err;
  }
  await closeOrThrow(io, handle, path);
  return result;
}

/** Close a handle whose work succeeded: a failure is an IO_ERROR naming the file. */
export async function closeOrThrow(io: FileIO, handle: FileHandle, path: string): Promise<void> {
  try {
    await io.close(handle);
  } catch (err) {
    throw ioError('close', path, err);
  }
}

/** Build an error shaped like Node's fs errors (contract C1). */
export function fsError(code: string, syscall: string, path: string, message?: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: ${message ?? 'operation failed'}, ${syscall} '${path}'`) as NodeJS.ErrnoException;
  err.code = code;
  err.syscall = syscall;
  err.path = path;
  const errnos: Record<string, number> = {
    ENOENT: -2,
    EIO: -5,
    EBADF: -9,
    EAGAIN: -11,
    EACCES: -13,
    EEXIST: -17,
    ENOTDIR: -20,
    EISDIR: -21,
    EINVAL: -22,
    ENOSPC: -28,
    EROFS: -30,
    ENOTEMPTY: -39,
    ENOSYS: -38,
    EDQUOT: -122,
  };
  err.errno = errnos[code] ?? -1;
  return err;
}

/** Total length of a list of buffers. */
export function totalLength(buffers: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of buffers) n += b.length;
  return n;
}
