/**
 * sync_file_range(2) for RealIO's writeback hint (FileIO C7; PostgreSQL's pg_flush_data with
 * sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)). Node has no binding for it, so
 * it is called through koffi (FFI): the symbol is looked up in the running process (dlopen of
 * NULL), which already has the C library loaded, glibc or musl alike.
 *
 * Why koffi, and why a synchronous call (measured, BENCHMARKS.md "Writeback hints"):
 *  - koffi ships its prebuilt binary inside its npm packages (one optional package per
 *    platform), so `npm install` compiles nothing; its own install script only re-checks that
 *    binary or compiles from source with CMake, and package.json's allowScripts denies it. A
 *    node-gyp addon would need a C compiler and Node's headers on every machine that installs
 *    lamstore, for a per-call cost no lower (both ~0.5 µs over the ~1.1 µs syscall here).
 *  - Where the call is made: SYNC_FILE_RANGE_WRITE only queues the range's dirty pages for
 *    writeback (median 10-16 µs for a dirty 256 KiB range), but it waits whenever the device's
 *    queue is full, and on the event loop such a wait blocks the embedding program (at R=1000
 *    P=16 the device's queue is full for much of md's write phase). So RealIO makes it on the sync thread (sync-thread.ts S6), all
 *    the hints of one turn of the event loop in one message, and BufferSync keeps a few issues
 *    in flight while it writes on (writeback.ts W5), so the round trip is not paid per hint as
 *    it would be through the libuv pool (koffi's `.async`: ~40 µs a hint, 4-7x the hint itself,
 *    and a pool thread taken from the checkpoint's own writes). A provider given to RealIO (a
 *    test's double) is called in line, as it was before the thread.
 *
 * Where there is no sync_file_range (not Linux, koffi missing or unable to load, the symbol
 * absent), `loadSyncFileRange` says why once and RealIO leaves `writeback` out: the hints stop
 * at CountingIO, counted as issued but not as reaching the kernel.
 */
import { openLibc } from './libc.js';

/**
 * <linux/fs.h>, the same value on every architecture: start writeback of the range's dirty
 * pages that are not already being written back; wait for nothing.
 */
export const SYNC_FILE_RANGE_WRITE = 2;

/** Linux's ENOSYS: the call exists in the C library but the kernel lacks it (PostgreSQL: WSL1). */
export const ENOSYS = 38;

/** Linux's EINTR: a signal interrupted the call; pg_flush_data makes it again. */
export const EINTR = 4;

/**
 * The C library's symbol as koffi declares it (off64_t on every Linux ABI koffi supports: it
 * takes 64-bit offsets). The main thread and the sync thread (sync-thread.ts S6) declare it alike.
 */
export const SYNC_FILE_RANGE_DECLARATION = 'int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)';

/**
 * sync_file_range(fd, offsetBytes, nbytes, SYNC_FILE_RANGE_WRITE) on a descriptor of this
 * process, made again when a signal interrupts it (EINTR). Returns 0, or the errno (positive)
 * the call failed with; never throws for a failed call.
 */
export type SyncFileRangeFn = (fd: number, offsetBytes: number, nbytes: number) => number;

/**
 * `koffiPath`: where koffi was found, so that the sync thread can load it too (sync-thread.ts
 * S6); null when the function is not koffi's.
 */
export type SyncFileRangeProbe = { fn: SyncFileRangeFn; via: string; koffiPath: string | null } | { fn: null; reason: string };

let probed: SyncFileRangeProbe | undefined;

/**
 * The process's sync_file_range, looked up once (the answer cannot change while the process
 * runs). `fn: null` comes with the reason, for RealIO's `writebackUnsupportedReason`.
 */
export function loadSyncFileRange(): SyncFileRangeProbe {
  probed ??= probeSyncFileRange(process.platform);
  return probed;
}

/** The look-up itself, for `platform` (a parameter so that a test can ask as another platform would). */
export function probeSyncFileRange(platform: string): SyncFileRangeProbe {
  if (platform !== 'linux') return { fn: null, reason: `sync_file_range is Linux only (platform ${platform})` };
  const opened = openLibc();
  if (opened.koffi === null) return { fn: null, reason: opened.reason };
  const { koffi, lib, path } = opened;
  try {
    const call = lib.func(SYNC_FILE_RANGE_DECLARATION);
    const errno = koffi.errno.bind(koffi);
    return {
      via: 'koffi',
      koffiPath: path,
      // errno is read at once, before any other call on this thread can change it.
      fn: (fd, offsetBytes, nbytes) => {
        for (;;) {
          const e = call(fd, offsetBytes, nbytes, SYNC_FILE_RANGE_WRITE) === 0 ? 0 : errno() || -1;
          if (e !== EINTR) return e; // interrupted: again, as pg_flush_data does
        }
      },
    };
  } catch (err) {
    return { fn: null, reason: `sync_file_range not found in the C library (${err instanceof Error ? err.message : String(err)})` };
  }
}
