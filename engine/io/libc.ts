/**
 * The running process's C library through koffi (FFI), for the calls Node has no binding for:
 * sync_file_range for RealIO's writeback hints (sync-file-range.ts), and the raw libc calls the
 * bench compares (bench/io-candidates-libc.ts). The symbols are looked up in the process itself
 * (dlopen of NULL), which has the C library loaded already, glibc or musl alike. Why koffi:
 * sync-file-range.ts says.
 */
import { createRequire } from 'node:module';

/** The part of koffi's API lamstore uses. */
export interface Koffi {
  load(path: string | null): { func(definition: string): (...args: unknown[]) => number | bigint };
  struct(name: string, definition: Record<string, string>): unknown;
  /** errno of the calling thread, as the last call through koffi left it. */
  errno(): number;
}

/** koffi and the C library, or the one-line reason they cannot be had here. */
export type LibcOpening = { koffi: Koffi; lib: ReturnType<Koffi['load']>; path: string } | { koffi: null; reason: string };

/**
 * Open the C library through koffi. Callers declare Linux's functions, so they ask only on
 * Linux (and say so otherwise, in their own words).
 */
export function openLibc(): LibcOpening {
  let koffi: Koffi;
  let path: string;
  try {
    const require = createRequire(import.meta.url);
    path = require.resolve('koffi');
    koffi = require(path) as Koffi;
  } catch (err) {
    return { koffi: null, reason: `koffi did not load (${err instanceof Error ? err.message : String(err)})` };
  }
  try {
    return { koffi, lib: koffi.load(null), path };
  } catch (err) {
    return { koffi: null, reason: `the C library did not load through koffi (${err instanceof Error ? err.message : String(err)})` };
  }
}
