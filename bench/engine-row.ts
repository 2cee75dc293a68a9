/**
 * An engine row of the checkpoint matrix (matrix.ts): one Engine (md with PostgreSQL's sync
 * loop, md with MD_CONCURRENT_SYNCS fsyncs in flight, or the volume) holding R relations of P
 * pages, set up once (M4); then, each round, its pages rewritten and one checkpoint measured
 * (M1, M5, M8).
 *
 *  E1 Each engine row runs on a worker thread of its own (`isolate`, the default): its own V8
 *     heap and event loop, its own RealIO and so its own sync thread; libuv's pool stays the
 *     process's, shared as before. So a checkpoint meets only its own engine's garbage, as in a
 *     program that embeds one engine. On one thread (`isolate: false`, `lamstore bench
 *     --one-thread`, the bench before 2026-12-02 19:30) the three engines' objects and the
 *     raw rows' made one heap, and a row's collections marked and swept all of them: the
 *     longest GC pause inside a checkpoint reached 15-27 ms at R=1000 P=16, where one engine
 *     alone stays under 5 (BENCHMARKS.md, "Each engine row on a thread of its own"). Both
 *     ways run this same class; only the hop differs. The threads live until the matrix closes:
 *     fs-ext, which RealIO's locks come from, aborts the process when a thread loads it after
 *     another thread that had loaded it has exited (README.md, "Embedded use").
 *  E2 The worker takes one request at a time and answers each (a value, or the error, rebuilt
 *     on this side as the LamstoreError it was, so the CLI reports it as it would have).
 *  E3 A stop asked for while a worker works (SIGINT during setup): the main thread polls
 *     `checkAbort` while it waits and raises a shared flag that the worker's own checkAbort
 *     reads, so setup stops within a chunk, as on one thread, and the stop's own error is
 *     the one thrown here.
 *  E4 The worker's log lines come back as messages, in order, before its answer.
 */
import { join } from 'node:path';
import { PerformanceObserver, constants, monitorEventLoopDelay, performance, type PerformanceEntry } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { Engine, ErrorCode, ForkNumber, LIBUV_POOL_THREADS, LamstoreError, assert, type CheckpointStats, type Relation, type RelFileLocator } from '../engine/index.js';
import { diffCounts } from '../engine/testing.js';
import { volumeExtension, type VolumeExtension } from '../volume/index.js';
import type { GcKind, RoundSample } from './round-sample.js';
import { patternPage } from './page-path-measure.js';
import { threadSchedstat, type ThreadTimes } from './schedstat.js';

export type EngineRowKind = 'md' | 'mdConcurrent' | 'volume';

/** A round's figures of an engine row (RoundSample without its place in the round). */
export type EngineSample = Omit<RoundSample, 'round' | 'position'>;

/** First relNumber of the bench relations (PostgreSQL's FirstNormalObjectId is 16384). */
const REL_NUMBER_FIRST = 20000;
const DB_OID = 5;
/** md relations created side by side at setup (file creation is latency-bound). */
const MD_SETUP_CONCURRENCY = 8;
/** The mdConcurrent row's syncConcurrency: libuv's pool runs that many calls at once. */
export const MD_CONCURRENT_SYNCS = LIBUV_POOL_THREADS;

export interface EngineRowOptions {
  kind: EngineRowKind;
  /** The matrix's directory: the row keeps its files in a subdirectory named after its kind. */
  dir: string;
  relationsMax: number;
  pagesMax: number;
  blockSize: number;
}

export interface EngineRowHooks {
  /** The engine's log lines (none asked for, none formatted: see `EngineRow.open`). */
  onLog?: (line: string) => void;
  /** Called between setup steps; throws to stop. */
  checkAbort?: () => void;
}

function locator(r: number): RelFileLocator {
  return { spcOid: 1663, dbOid: DB_OID, relNumber: REL_NUMBER_FIRST + r };
}

/** Relation r's file name in a segment directory (the raw segments row names its files alike). */
export function relFileName(r: number): string {
  return String(REL_NUMBER_FIRST + r);
}

/**
 * Room for every relation's extents and the catalog: a fork's capacity starts at 8 blocks and
 * doubles, so P pages take max(8, next power of two of P) blocks; a quarter more and 8 MiB on
 * top keep the bench clear of VOLUME_FULL if the growth policy changes. Small, because creation
 * zero-fills the whole file and that is setup time.
 */
export function matrixVolumeSizeBytes(relationsMax: number, pagesMax: number, blockSize: number): number {
  const MiB = 1 << 20;
  const perRelationBlocks = Math.max(8, 2 ** Math.ceil(Math.log2(pagesMax)));
  // The relations' extents, plus the copy-on-write reserve (one free block per page that may be
  // dirty: every page here), plus a quarter for the catalog and the stream's slack.
  const bytes = relationsMax * (perRelationBlocks + pagesMax) * blockSize * 1.25 + 8 * MiB;
  return Math.ceil(bytes / MiB) * MiB;
}

/** Writes `page` stamped with (generation, relation, block) in bytes 16..27 (M1). */
export function stamp(page: Uint8Array, generation: number, r: number, b: number): void {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  v.setUint32(16, generation, true);
  v.setUint32(20, r, true);
  v.setUint32(24, b, true);
}

/**
 * Resolves after a 2 ms timer: the histogram's 1 ms timer, due first, fires before it (timers
 * run in due order), so it has fired at least once since the call.
 */
function timerTurns(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 2));
}

/** A 'gc' performance entry's kind (perf_hooks constants NODE_PERFORMANCE_GC_*), by name. */
function gcKindName(kind: number | undefined): GcKind {
  switch (kind) {
    case constants.NODE_PERFORMANCE_GC_MINOR:
      return 'minor';
    case constants.NODE_PERFORMANCE_GC_MAJOR:
      return 'major';
    case constants.NODE_PERFORMANCE_GC_INCREMENTAL:
      return 'incremental';
    case constants.NODE_PERFORMANCE_GC_WEAKCB:
      return 'weakcb';
    default:
      return 'unknown';
  }
}

/**
 * M8's busy stretches: a 1 ms interval timer reads this thread's CPU time at each firing; the
 * most CPU between two firings is the longest stretch the event loop could not run a timer
 * because the thread itself was working (JavaScript, a collection, a synchronous call),
 * whatever the scheduler did meanwhile. About 15 µs a firing (one read of /proc). Linux only.
 */
class BusySampler {
  #last: number;
  #timer: NodeJS.Timeout;
  maxNs = 0;
  /** performance.now() when the longest stretch was seen to end. */
  maxEndedAt = NaN;
  constructor(start: number) {
    this.#last = start;
    this.#timer = setInterval(() => this.sample(), 1);
  }
  sample(): void {
    const now = threadSchedstat();
    if (!now) return;
    if (now.cpu - this.#last > this.maxNs) {
      this.maxNs = now.cpu - this.#last;
      this.maxEndedAt = performance.now();
    }
    this.#last = now.cpu;
  }
  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }
}

/** One engine row, on whichever thread created it (E1). */
export class EngineRow {
  readonly #engine: Engine;
  readonly #rels: Relation[];
  readonly #o: EngineRowOptions;
  readonly #volume: VolumeExtension | null;

  private constructor(engine: Engine, rels: Relation[], o: EngineRowOptions, volume: VolumeExtension | null) {
    this.#engine = engine;
    this.#rels = rels;
    this.#o = o;
    this.#volume = volume;
  }

  /**
   * Open the engine and create every relation with its pages, all durable (M2, M4). No onLog at
   * all unless the caller wants the lines: with one set, the sync phase formats a "checkpoint
   * sync: file=..." line per synced file, which at R=1000 is measurable time.
   */
  static async open(o: EngineRowOptions, hooks: EngineRowHooks = {}): Promise<EngineRow> {
    const { dir, relationsMax: R, pagesMax: P, blockSize } = o;
    const common = {
      blockSize,
      sharedBuffers: Math.max(16, R * P + 1024),
      checkpointTimeoutMs: 86_400_000,
      verifySync: false,
      ...(hooks.onLog ? { onLog: hooks.onLog } : {}),
    };
    let volume: VolumeExtension | null = null;
    let engine: Engine;
    if (o.kind === 'volume') {
      volume = volumeExtension({
        path: join(dir, 'volume', 'bench.lamvol'),
        // The zero-fill is most of setup at large R (8.6 GB at R = 100000): a stop asked
        // for meanwhile takes effect within a chunk, and createVolumeFile removes the file.
        create: { sizeBytes: matrixVolumeSizeBytes(R, P, blockSize), onProgress: () => hooks.checkAbort?.() },
      });
      engine = await Engine.open({ ...common, dataDir: join(dir, 'volume'), preload: [volume] });
    } else if (o.kind === 'md') {
      engine = await Engine.open({ ...common, dataDir: join(dir, 'md') });
    } else {
      engine = await Engine.open({ ...common, dataDir: join(dir, 'md-concurrent'), syncConcurrency: MD_CONCURRENT_SYNCS });
    }
    const rels: Relation[] = [];
    try {
      const storage = o.kind === 'volume' ? 'volume' : 'md';
      for (let r = 0; r < R; r++) rels.push(engine.relation(locator(r), { storage }));
      const page = patternPage(blockSize, 0);
      // One volume relation at a time, so each grows in place into few, long extents.
      const concurrency = o.kind === 'volume' ? 1 : MD_SETUP_CONCURRENCY;
      let next = 0;
      const worker = async () => {
        while (next < R) {
          hooks.checkAbort?.();
          const rel = rels[next++]!;
          await rel.create(ForkNumber.MAIN);
          for (let b = 0; b < P; b++) await rel.extend(ForkNumber.MAIN, page);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      await engine.checkpoint();
    } catch (err) {
      // The files are about to be removed: bound the shutdown checkpoint, keep the first error.
      await engine.close({ timeoutMs: 0 }).catch(() => undefined);
      throw err;
    }
    return new EngineRow(engine, rels, o, volume);
  }

  /** Rewrite the cell's R*P pages with generation `gen` (M1), then one measured checkpoint (M8). */
  async round(R: number, P: number, gen: number): Promise<EngineSample> {
    const engine = this.#engine;
    const page = patternPage(this.#o.blockSize, gen);
    for (let r = 0; r < R; r++) {
      const rel = this.#rels[r]!;
      for (let b = 0; b < P; b++) {
        stamp(page, gen, r, b);
        await rel.write(ForkNumber.MAIN, b, page);
      }
    }
    const before = engine.ioCounts();
    const stalls = monitorEventLoopDelay({ resolution: 1 });
    const gcPauses: { duration: number; kind: GcKind }[] = [];
    const pause = (e: PerformanceEntry) => ({ duration: e.duration, kind: gcKindName((e as { detail?: { kind?: number } }).detail?.kind) });
    const windowStart = performance.now();
    const gcs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (e.startTime >= windowStart) gcPauses.push(pause(e));
    });
    gcs.observe({ entryTypes: ['gc'] });
    const schedBefore = threadSchedstat();
    const busy = schedBefore ? new BusySampler(schedBefore.cpu) : null;
    stalls.enable();
    let st: CheckpointStats;
    let schedAfter: ThreadTimes | null = null;
    let checkpointStart = NaN;
    try {
      await timerTurns(); // M8: the timer's first firing, which records nothing
      checkpointStart = performance.now();
      st = await engine.checkpoint();
      await timerTurns(); // M8: a firing after the checkpoint's last synchronous stretch
    } finally {
      stalls.disable();
      busy?.stop();
      schedAfter = threadSchedstat();
      for (const e of gcs.takeRecords()) if (e.startTime >= windowStart) gcPauses.push(pause(e));
      gcs.disconnect();
    }
    // Histogram values are ns; an empty histogram (a checkpoint shorter than one tick) has max 0.
    const maxStallMs = stalls.count > 0 ? stalls.max / 1e6 : 0;
    const longestGc = gcPauses.reduce<(typeof gcPauses)[number] | null>((a, e) => (a === null || e.duration > a.duration ? e : a), null);
    const maxGcPauseMs = longestGc?.duration ?? 0;
    const maxGcPauseKind = longestGc?.kind;
    const runQueueWaitMs = schedBefore && schedAfter ? (schedAfter.wait - schedBefore.wait) / 1e6 : undefined;
    const maxBusyMs = busy ? busy.maxNs / 1e6 : undefined;
    // Where in the checkpoint the longest stretch ended (it may end in the turn after it).
    const maxBusyEndMs = busy && busy.maxNs > 0 ? busy.maxEndedAt - checkpointStart : undefined;
    const d = diffCounts(engine.ioCounts(), before);
    assert(st.buffersWritten === R * P, `checkpoint of ${engine.dataDir} wrote ${st.buffersWritten} buffers, expected R*P = ${R * P} (M1)`);
    return {
      writeMs: st.writeMs,
      syncMs: st.syncMs,
      totalMs: st.totalMs,
      fsyncCalls: st.fsyncCalls,
      fdatasyncCalls: st.fdatasyncCalls,
      bytesWritten: st.bytesWritten,
      rangesWritten: st.rangesWritten,
      buffersWritten: st.buffersWritten,
      syncFiles: st.syncFiles,
      tagsDispatched: { ...st.tagsDispatched },
      maxStallMs,
      maxGcPauseMs,
      ...(maxGcPauseKind !== undefined ? { maxGcPauseKind } : {}),
      ...(runQueueWaitMs !== undefined ? { runQueueWaitMs } : {}),
      ...(maxBusyMs !== undefined ? { maxBusyMs } : {}),
      ...(maxBusyEndMs !== undefined ? { maxBusyEndMs } : {}),
      io: { open: d.open, close: d.close, pwrite: d.pwrite, fsync: d.fsync, fdatasync: d.fdatasync, fsyncDir: d.fsyncDir, bytesWritten: d.bytesWritten },
    };
  }

  /**
   * The volume row only: where the volume holds page (r, b) of the cell now, at r * P + b of the
   * result (after a checkpoint: the block it has just written the page to).
   */
  blocks(R: number, P: number): Float64Array {
    const vol = this.#volume?.volume;
    assert(vol != null, `${this.#engine.dataDir}: only the volume row has volume blocks`);
    const out = new Float64Array(R * P);
    for (let r = 0; r < R; r++) for (let b = 0; b < P; b++) out[r * P + b] = vol.physicalBlock(locator(r), ForkNumber.MAIN, b);
    return out;
  }

  /** Close the engine; `discard`: its files are about to be removed, bound the shutdown checkpoint. */
  async close(discard: boolean): Promise<void> {
    if (discard) await this.#engine.close({ timeoutMs: 0 });
    else await this.#engine.close();
  }
}

// ------------------------------------------------------------------ the hop (E1-E4)

/** What the matrix holds of an engine row, on its own thread or on this one. */
export interface EngineRowRunner {
  round(R: number, P: number, gen: number): Promise<EngineSample>;
  blocks(R: number, P: number): Promise<Float64Array>;
  /** Always ends the row (and its thread), whatever the engine's close throws. */
  close(discard: boolean): Promise<void>;
}

/** The messages of the hop: requests in, answers and log lines out. */
export type EngineRowCall = { op: 'open' } | { op: 'round'; R: number; P: number; gen: number } | { op: 'blocks'; R: number; P: number } | { op: 'close'; discard: boolean };
export type EngineRowRequest = EngineRowCall & { id: number };
export type EngineRowAnswer = { id: number; value: unknown } | { id: number; error: ErrorImage } | { log: string };

/** An error as it crosses the hop (E2). */
export interface ErrorImage {
  message: string;
  stack?: string | undefined;
  code?: string | undefined;
  path?: string | undefined;
  errno?: string | undefined;
  syscall?: string | undefined;
  lamstore: boolean;
}

export interface EngineRowWorkerData {
  options: EngineRowOptions;
  log: boolean;
  /** Int32 flag, 1 once a stop is asked for (E3). */
  abort: SharedArrayBuffer;
}

export function errorImage(err: unknown): ErrorImage {
  if (!(err instanceof Error)) return { message: String(err), lamstore: false };
  const e = err as Error & { code?: unknown; path?: unknown; errno?: unknown; syscall?: unknown };
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  return { message: e.message, stack: e.stack, code: str(e.code), path: str(e.path), errno: str(e.errno), syscall: str(e.syscall), lamstore: e instanceof LamstoreError };
}

/** The error an ErrorImage was taken of, rebuilt on this side of the hop (E2). */
export function errorOf(image: ErrorImage): Error {
  if (image.lamstore && image.code !== undefined && (Object.values(ErrorCode) as string[]).includes(image.code)) {
    return new LamstoreError(image.code as ErrorCode, image.message, { path: image.path, errno: image.errno, syscall: image.syscall });
  }
  const err = new Error(image.message) as Error & { code?: string };
  if (image.code !== undefined) err.code = image.code;
  if (image.stack !== undefined) err.stack = image.stack;
  return err;
}

/** How often the main thread asks `checkAbort` while a worker works (E3). */
const ABORT_POLL_MS = 50;

class EngineRowThread implements EngineRowRunner {
  readonly #worker: Worker;
  readonly #abort: Int32Array;
  readonly #hooks: EngineRowHooks;
  readonly #what: string;
  #nextId = 1;
  #pending: { id: number; resolve: (v: unknown) => void; reject: (e: unknown) => void } | null = null;
  /** The stop's own error, once checkAbort threw (E3). */
  #stopped: unknown = undefined;
  /** Why the worker can take no more requests (it exited or threw outside a request). */
  #dead: Error | null = null;

  constructor(o: EngineRowOptions, hooks: EngineRowHooks) {
    this.#hooks = hooks;
    this.#what = `the ${o.kind} row's thread`;
    const abort = new SharedArrayBuffer(4);
    this.#abort = new Int32Array(abort);
    const data: EngineRowWorkerData = { options: o, log: hooks.onLog !== undefined, abort };
    this.#worker = new Worker(new URL('./engine-row-worker.js', import.meta.url), { workerData: data });
    this.#worker.on('message', (m: EngineRowAnswer) => this.#answer(m));
    this.#worker.on('error', (err) => this.#die(err instanceof Error ? err : new Error(String(err))));
    this.#worker.on('exit', (code) => this.#die(new Error(`${this.#what} exited (code ${code})`)));
  }

  #answer(m: EngineRowAnswer): void {
    if ('log' in m) {
      this.#hooks.onLog?.(m.log);
      return;
    }
    const p = this.#pending;
    assert(p !== null && p.id === m.id, `${this.#what}: an answer to the request in flight`);
    this.#pending = null;
    if ('error' in m) p.reject(this.#stopped !== undefined ? this.#stopped : errorOf(m.error));
    else p.resolve(m.value);
  }

  #die(err: Error): void {
    this.#dead ??= err;
    const p = this.#pending;
    this.#pending = null;
    p?.reject(this.#stopped !== undefined ? this.#stopped : err);
  }

  request(req: EngineRowCall): Promise<unknown> {
    if (this.#dead) return Promise.reject(this.#dead);
    assert(this.#pending === null, `${this.#what}: one request at a time (E2)`);
    const id = this.#nextId++;
    const answered = new Promise<unknown>((resolve, reject) => (this.#pending = { id, resolve, reject }));
    this.#worker.postMessage({ ...req, id });
    const check = this.#hooks.checkAbort;
    if (!check) return answered;
    const poll = setInterval(() => {
      try {
        check();
      } catch (err) {
        this.#stopped ??= err;
        Atomics.store(this.#abort, 0, 1);
        clearInterval(poll);
      }
    }, ABORT_POLL_MS);
    return answered.finally(() => clearInterval(poll));
  }

  async open(): Promise<void> {
    await this.request({ op: 'open' });
  }

  async round(R: number, P: number, gen: number): Promise<EngineSample> {
    return (await this.request({ op: 'round', R, P, gen })) as EngineSample;
  }

  async blocks(R: number, P: number): Promise<Float64Array> {
    return (await this.request({ op: 'blocks', R, P })) as Float64Array;
  }

  async close(discard: boolean): Promise<void> {
    try {
      if (!this.#dead) await this.request({ op: 'close', discard });
    } finally {
      this.#dead ??= new Error(`${this.#what} is closed`);
      await this.#worker.terminate();
    }
  }
}

class EngineRowHere implements EngineRowRunner {
  readonly #row: EngineRow;
  constructor(row: EngineRow) {
    this.#row = row;
  }
  round(R: number, P: number, gen: number): Promise<EngineSample> {
    return this.#row.round(R, P, gen);
  }
  async blocks(R: number, P: number): Promise<Float64Array> {
    return this.#row.blocks(R, P);
  }
  close(discard: boolean): Promise<void> {
    return this.#row.close(discard);
  }
}

/** Set an engine row up, on a worker thread of its own unless `isolate` is false (E1). */
export async function startEngineRow(o: EngineRowOptions, hooks: EngineRowHooks, isolate: boolean): Promise<EngineRowRunner> {
  if (!isolate) return new EngineRowHere(await EngineRow.open(o, hooks));
  const t = new EngineRowThread(o, hooks);
  try {
    await t.open();
  } catch (err) {
    await t.close(true).catch(() => undefined); // the setup's error is the one to report
    throw err;
  }
  return t;
}
