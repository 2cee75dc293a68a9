/**
 * libc's pwrite, pwritev, fsync, fdatasync and sysconf through koffi, for the FFI candidates of
 * `bench/io-candidates.ts` (main thread and worker threads alike: koffi loads in a worker).
 * The symbols are looked up in the running process (dlopen of NULL) through the engine's
 * `openLibc` (engine/io/libc.ts, lamstore/testing), as sync_file_range is. Every call is
 * synchronous on the calling thread.
 */
import { getSystemErrorMap } from 'node:util';
import { openLibc } from '../engine/testing.js';

export interface Libc {
  pwrite(fd: number, buf: Uint8Array, offset: number): void;
  pwritev(fd: number, bufs: readonly Uint8Array[], offset: number): void;
  fsync(fd: number): void;
  fdatasync(fd: number): void;
  /** sysconf(_SC_IOV_MAX), or null when it gives no answer. */
  iovMax(): number | null;
}

export type LibcProbe = { libc: Libc } | { libc: null; reason: string };

/** _SC_IOV_MAX in glibc's and musl's <bits/confname.h> (_SC_UIO_MAXIOV), every Linux architecture. */
const SC_IOV_MAX = 60;

function errnoError(syscall: string, errno: number): Error {
  const known = errno > 0 ? getSystemErrorMap().get(-errno) : undefined;
  const err = new Error(`${syscall} failed: ${known ? `${known[0]} (${known[1]})` : `errno ${errno}`}`) as NodeJS.ErrnoException;
  err.code = known?.[0] ?? 'EUNKNOWN';
  err.syscall = syscall;
  return err;
}

let probed: LibcProbe | undefined;

export function loadLibc(): LibcProbe {
  probed ??= probe();
  return probed;
}

function probe(): LibcProbe {
  if (process.platform !== 'linux') return { libc: null, reason: `the libc calls are declared for Linux only (platform ${process.platform})` };
  const opened = openLibc();
  if (opened.koffi === null) return { libc: null, reason: opened.reason };
  const { koffi, lib } = opened;
  try {
    koffi.struct('lamstore_bench_iovec', { iov_base: 'void *', iov_len: 'size_t' });
    const pwrite = lib.func('int64_t pwrite(int fd, const void *buf, size_t count, int64_t offset)');
    const pwritev = lib.func('int64_t pwritev(int fd, const lamstore_bench_iovec *iov, int iovcnt, int64_t offset)');
    const fsync = lib.func('int fsync(int fd)');
    const fdatasync = lib.func('int fdatasync(int fd)');
    const sysconf = lib.func('long sysconf(int name)');
    const check = (syscall: string, got: number | bigint, want: number): void => {
      if (Number(got) === want) return;
      if (Number(got) < 0) throw errnoError(syscall, koffi.errno());
      throw new Error(`${syscall} wrote ${Number(got)} of ${want} bytes`);
    };
    return {
      libc: {
        pwrite: (fd, buf, offset) => check('pwrite', pwrite(fd, buf, buf.length, offset), buf.length),
        pwritev: (fd, bufs, offset) => {
          let bytes = 0;
          const iov = bufs.map((b) => {
            bytes += b.length;
            return { iov_base: b, iov_len: b.length };
          });
          check('pwritev', pwritev(fd, iov, iov.length, offset), bytes);
        },
        fsync: (fd) => check('fsync', fsync(fd), 0),
        fdatasync: (fd) => check('fdatasync', fdatasync(fd), 0),
        iovMax: () => {
          const v = Number(sysconf(SC_IOV_MAX));
          return Number.isSafeInteger(v) && v > 0 ? v : null;
        },
      },
    };
  } catch (err) {
    return { libc: null, reason: `libc calls not available through koffi (${err instanceof Error ? err.message : String(err)})` };
  }
}
