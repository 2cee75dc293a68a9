/**
 * The pure part of `bench/io-candidates.ts` (flags, the candidates, the calls of each shape),
 * kept apart so a test can check it without touching a disk.
 *
 * Invariants (test/bench-io-candidates.test.ts):
 *  P1 Flags are strict: an unknown flag, a missing or malformed value, or a flag given twice is
 *     a UsageError naming it; nothing is measured.
 *  P2 Every shape's write items cover each of its pages exactly once; a vectored item never
 *     holds more than IOV_MAX buffers (one pwritev(2) call each).
 *  P3 Shape A rewrites one page per file, at an offset inside the file's 64 KiB, and syncs every
 *     file once (fsync); B, C and C1 sync their one file once (fdatasync).
 */
import { UsageError, parsePositiveInt } from '../cmdline/args.js';

export const PAGE_SIZE = 8192;
/** Shape A's file size and shape B's stride: 8 pages. */
export const FILE_SIZE_A = 64 * 1024;
export const STRIDE_B = 64 * 1024;
/** Shape B's file is preallocated to at least this (the volume is zero-filled at creation). */
export const VOLUME_MIN_BYTES = 64 * 1024 * 1024;

export interface IoCandidatesOptions {
  dir: string | null;
  json: boolean;
  runs: number;
  pages: number;
  /** Internal: this process is a child the parent forked with another libuv setting (`--child uv16|uring`). */
  child: ChildRuntime | null;
  help: boolean;
}

export const USAGE = `usage: node dist/bench/io-candidates.js [--dir DIR] [--json] [--runs N] [--pages N]
  --dir DIR   where the temporary files go (default: the OS temp directory); a subdirectory is made and removed
  --json      print the results as JSON on stdout (progress stays on stderr)
  --runs N    measured runs of every candidate and shape (default 5; one warm-up run comes first)
  --pages N   pages of every shape: files in A, scattered pages in B, buffers in C (default 1000)`;

/** P1: strict flags. `argv` without node and the script. */
export function parseIoCandidatesArgs(argv: readonly string[]): IoCandidatesOptions {
  const out: IoCandidatesOptions = { dir: null, json: false, runs: 5, pages: 1000, child: null, help: false };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const takesValue = flag === '--dir' || flag === '--runs' || flag === '--pages' || flag === '--child';
    const isFlag = takesValue || flag === '--json' || flag === '--help' || flag === '-h';
    if (!isFlag) throw new UsageError(arg.startsWith('-') ? `unknown option '${flag}'` : `unexpected argument '${arg}'`);
    if (seen.has(flag)) throw new UsageError(`option '${flag}' given twice`);
    seen.add(flag);
    if (!takesValue) {
      if (eq > 0) throw new UsageError(`option '${flag}' takes no value`);
      if (flag === '--json') out.json = true;
      else out.help = true;
      continue;
    }
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`option '${flag}' needs a value`);
      i++;
    }
    if (flag === '--dir') {
      if (value === '') throw new UsageError(`option '--dir' needs a directory`);
      out.dir = value;
    } else if (flag === '--runs') out.runs = parsePositiveInt(value, '--runs', 100);
    else if (flag === '--pages') out.pages = parsePositiveInt(value, '--pages', 16384);
    else {
      if (value !== 'uv16' && value !== 'uring') throw new UsageError(`option '--child' '${value}' is not a child kind (uv16, uring)`);
      out.child = value;
    }
  }
  return out;
}

export type ShapeId = 'A' | 'B' | 'C' | 'C1';
export const SHAPES: readonly ShapeId[] = ['A', 'B', 'C', 'C1'];
export const SHAPE_LABELS: Readonly<Record<ShapeId, string>> = {
  A: 'A md-like: N files of 64 KiB, one 8 KiB page rewritten in each, then every file fsynced',
  B: 'B volume-like scattered: N pages every 64 KiB in one preallocated file, one fdatasync',
  C: 'C volume-like contiguous: N pages in pwritevs of at most IOV_MAX buffers, one fdatasync',
  C1: 'C1 the same contiguous pages unvectored: N pwrites of 8 KiB, one fdatasync',
};

/** One call of a phase: pwrite (pageCount 1) or pwritev of pages [firstPage, firstPage + pageCount), or a sync of `fd`. */
export interface Item {
  fd: number;
  offset: number;
  firstPage: number;
  pageCount: number;
}

export type SyncOp = 'fsync' | 'fdatasync';

export interface ShapePlan {
  write: Item[];
  sync: Item[];
  syncOp: SyncOp;
}

export interface ShapeFiles {
  /** Shape A's files, one per page. */
  fdsA: readonly number[];
  /** Shape B's preallocated file. */
  fdB: number;
  /** Shapes C and C1's file (pages * 8 KiB). */
  fdC: number;
}

/** The calls of one run of `shape` (P2, P3). `run` moves A's page inside each file from run to run. */
export function planShape(shape: ShapeId, files: ShapeFiles, pages: number, iovMax: number, run: number): ShapePlan {
  const one = (fd: number): Item => ({ fd, offset: 0, firstPage: 0, pageCount: 0 });
  switch (shape) {
    case 'A': {
      const slots = FILE_SIZE_A / PAGE_SIZE;
      const write = files.fdsA.slice(0, pages).map((fd, i) => ({ fd, offset: ((run + i) % slots) * PAGE_SIZE, firstPage: i, pageCount: 1 }));
      return { write, sync: files.fdsA.slice(0, pages).map(one), syncOp: 'fsync' };
    }
    case 'B': {
      const write = Array.from({ length: pages }, (_, i) => ({ fd: files.fdB, offset: i * STRIDE_B, firstPage: i, pageCount: 1 }));
      return { write, sync: [one(files.fdB)], syncOp: 'fdatasync' };
    }
    case 'C': {
      const write = vectorPieces(pages, iovMax).map(({ firstPage, pageCount }) => ({ fd: files.fdC, offset: firstPage * PAGE_SIZE, firstPage, pageCount }));
      return { write, sync: [one(files.fdC)], syncOp: 'fdatasync' };
    }
    case 'C1': {
      const write = Array.from({ length: pages }, (_, i) => ({ fd: files.fdC, offset: i * PAGE_SIZE, firstPage: i, pageCount: 1 }));
      return { write, sync: [one(files.fdC)], syncOp: 'fdatasync' };
    }
  }
}

/** `pages` contiguous pages as pieces of at most `iovMax` buffers, in order (P2). */
export function vectorPieces(pages: number, iovMax: number): { firstPage: number; pageCount: number }[] {
  if (!Number.isSafeInteger(iovMax) || iovMax < 1) throw new RangeError(`IOV_MAX ${iovMax} is not a positive whole number`);
  const out: { firstPage: number; pageCount: number }[] = [];
  for (let first = 0; first < pages; first += iovMax) out.push({ firstPage: first, pageCount: Math.min(iovMax, pages - first) });
  return out;
}

/** Shape B's file size: every page's 64 KiB slot, and at least 64 MiB. */
export function volumeBytes(pages: number): number {
  return Math.max(VOLUME_MIN_BYTES, pages * STRIDE_B);
}

/**
 * How a candidate makes its calls.
 *  - async: node:fs callback calls wrapped in Promises (as RealIO makes them), `inFlight` at a
 *    time through the engine's forEachInFlight. `runtime`: this process (libuv's 4 threads), or
 *    a child process started with UV_THREADPOOL_SIZE=16 (`uv16`) or with UV_USE_IO_URING=1
 *    (`uring`: libuv submits the file calls to an io_uring instead of its threads; Node 20
 *    ships it off by default).
 *  - sync: fs.writeSync / writevSync / fsyncSync / fdatasyncSync on the main thread; with
 *    `yieldMs`, a turn of the event loop (setImmediate) whenever that long has passed.
 *  - workers: `workers` worker threads making synchronous calls (node:fs, or koffi's), pulling
 *    items from a shared queue (SharedArrayBuffer + Atomics); the batch is started and its end
 *    reported by postMessage.
 *  - koffi: libc's pwrite / pwritev / fsync / fdatasync through koffi, synchronous on the main thread.
 */
export type Candidate =
  | { id: string; group: number; label: string; kind: 'async'; inFlight: number; runtime: AsyncRuntime }
  | { id: string; group: number; label: string; kind: 'sync'; yieldMs: number | null }
  | { id: string; group: number; label: string; kind: 'workers'; workers: number; via: 'fs' | 'koffi' }
  | { id: string; group: number; label: string; kind: 'koffi' };

/** Where an async candidate runs: this process, or a child started with other libuv settings. */
export type ChildRuntime = 'uv16' | 'uring';
export type AsyncRuntime = 'main' | ChildRuntime;

/** The environment of each child: the one libuv setting that differs, the other pinned to its default. */
export const CHILD_ENV: Readonly<Record<ChildRuntime, Readonly<Record<string, string>>>> = {
  uv16: { UV_THREADPOOL_SIZE: '16', UV_USE_IO_URING: '0' },
  uring: { UV_THREADPOOL_SIZE: '4', UV_USE_IO_URING: '1' },
};

export const IN_FLIGHT_CANDIDATES = [4, 8, 16, 64] as const;

export function candidates(): Candidate[] {
  const out: Candidate[] = [{ id: 'async-1', group: 1, label: 'async, awaited one by one', kind: 'async', inFlight: 1, runtime: 'main' }];
  for (const k of IN_FLIGHT_CANDIDATES) out.push({ id: `async-k${k}`, group: 2, label: `async, ${k} in flight`, kind: 'async', inFlight: k, runtime: 'main' });
  for (const k of IN_FLIGHT_CANDIDATES) out.push({ id: `uv16-k${k}`, group: 3, label: `async, ${k} in flight, UV_THREADPOOL_SIZE=16`, kind: 'async', inFlight: k, runtime: 'uv16' });
  out.push({ id: 'sync', group: 4, label: 'sync calls on the main thread', kind: 'sync', yieldMs: null });
  out.push({ id: 'sync-yield5', group: 4, label: 'sync calls, event loop turn every 5 ms', kind: 'sync', yieldMs: 5 });
  // 16 as well: the thread count of (3), to tell the threads' number from the way calls reach them.
  for (const w of [2, 4, 16]) out.push({ id: `workers-${w}`, group: 5, label: `${w} worker threads, fs sync calls`, kind: 'workers', workers: w, via: 'fs' });
  out.push({ id: 'koffi', group: 6, label: 'koffi libc calls on the main thread', kind: 'koffi' });
  for (const w of [2, 4]) out.push({ id: `koffi-workers-${w}`, group: 6, label: `${w} worker threads, koffi libc calls`, kind: 'workers', workers: w, via: 'koffi' });
  // io_uring, the other anchor: what Node 20 offers of it (libuv's, behind UV_USE_IO_URING).
  for (const k of IN_FLIGHT_CANDIDATES) out.push({ id: `uring-k${k}`, group: 7, label: `async, ${k} in flight, io_uring (UV_USE_IO_URING=1)`, kind: 'async', inFlight: k, runtime: 'uring' });
  return out;
}

/** The order of round `round`: the list rotated by one each round, so no candidate always follows the same one. */
export function rotate<T>(list: readonly T[], round: number): T[] {
  if (list.length === 0) return [];
  const k = ((round % list.length) + list.length) % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}
