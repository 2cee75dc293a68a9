/**
 * The checkpoint matrix: for each (R relations, P pages) cell and each
 * round, its rows measured back to back on the same file system:
 *
 *   md           R relations in md segment files, P pages rewritten in each, engine.checkpoint()
 *                with the engine's defaults: PostgreSQL's sync loop, one fsync after another
 *   mdConcurrent the same with `syncConcurrency` MD_CONCURRENT_SYNCS: fsyncs overlap on the pool
 *   volume       the same in one volume file, engine.checkpoint()
 *   rawSegments  no engine: the same bytes pwritten into R files, a writeback hint per file
 *                (sync_file_range, as md and PostgreSQL issue them), then one fsync per file, the
 *                fastest way this machine allows (M6)
 *   rawVolume    no engine: the same pages at the same offsets as the volume row's (where its
 *                last checkpoint wrote them: copy-on-write moves every page it writes), in a file
 *                of the volume's size zero-filled at setup: adjacent ones in one pwritev, 64 in
 *                flight, one fdatasync (what the volume's write phase could cost at best)
 *   rawExtent    no engine: the same bytes pwritten into one preallocated file, one fdatasync
 *                (the floor: nothing can make these bytes durable with less work); then, outside
 *                its timings, one 512-byte write at the file's start and a second fdatasync,
 *                timed apart (`switchMs`): what a copy-on-write commit adds to the floor at
 *                least (the superblock after the data, DESIGN.md §8), so floor + switch is the
 *                least any volume meeting that contract can cost
 *   postgres     (when the server binaries are given) R tables with P dirty heap pages each in a
 *                throwaway PostgreSQL cluster, CHECKPOINT, the server's own log line
 *                (bench/postgres.ts)
 *
 * Invariants (the comparison is only fair if they hold):
 *  M1 Every row of a round writes exactly R*P pages of new content (a new generation stamp per
 *     row), so each checkpoint finds exactly R*P dirty pages (checked: buffersWritten == R*P)
 *     and the kernel has the same number of dirty bytes to flush for each row.
 *  M2 Every row starts with nothing of the bench dirty in the page cache: each row ends with its
 *     sync, and setup ends with checkpoints and syncs of everything it wrote.
 *  M3 The order of the rows rotates by one each round, so md and volume alternate in
 *     position and no row always runs first (after setup) or last.
 *  M4 Relations and raw files are created once, for the largest R and P, and rewritten by every
 *     cell: cells differ only in how many pages they dirty, not in file creation cost.
 *  M5 Engines run with their defaults (relSegBlocks, maxOpenFiles, fsync on) except: a pool
 *     large enough that every rewrite is a buffer hit, no timed checkpoints, no sync ledger.
 *  M6 Raw segments keep every file open (as md's fd cache does up to maxOpenFiles) and issue the
 *     calls the fastest way measured here (BENCHMARKS.md, "The I/O candidates, side by side"):
 *     IN_FLIGHT_DEFAULT writes in flight, a writeback hint per file (where RealIO has them; all
 *     asked for at once, so they reach the sync thread together), then LIBUV_POOL_THREADS
 *     fsyncs in flight (libuv's pool of 4 runs that many; more in flight added nothing there).
 *  M7 The postgres row is optional: a cell has it in every round or in none, and it rotates with
 *     the others (M3). Its times are the server's (log_checkpoints), not timed here.
 *  M8 Engine rows also record the longest event-loop stall during the checkpoint: a
 *     `monitorEventLoopDelay({ resolution: 1 })` histogram covers `engine.checkpoint()` and
 *     nothing of the rewrite loop. The histogram records the gap between two firings of its
 *     timer, and its first firing records nothing: so the checkpoint starts only after the timer
 *     has fired once (a stall at its start is then measured), and the histogram is disabled only
 *     after the timer could fire again (a stall right before it resolves is measured too;
 *     disabling at once would drop it). The machine's scheduling lands in it as well, and so
 *     do V8's garbage collection pauses: the longest GC pause in the same window is recorded
 *     beside the stall (a PerformanceObserver of 'gc' entries), so a stall can be told apart
 *     from a collection, and on Linux the row's thread's run-queue wait over the same window
 *     (/proc/thread-self/schedstat: time it could have run but another thread had the CPU),
 *     the scheduler's share, and the longest busy stretch (BusySampler: the most CPU of the
 *     row's thread between two firings of a 1 ms timer), lamstore's own share: the part of a
 *     stall that is the engine working rather than waiting for a CPU. Each engine row runs on a
 *     thread of its own (engine-row.ts E1), so its heap, its collections and its event loop
 *     are its own engine's, as in a program that embeds one engine; `isolate: false` (`lamstore
 *     bench --one-thread`) runs the three on the main thread as before, one heap for all.
 *  M9 Raw rows write the engine rows' bytes from memory like theirs: R*P distinct pages, each
 *     stamped as the engine rows stamp theirs (M1), laid out as the engines' pools hold them
 *     (page (r, b) at r * pagesMax + b of one array as large as a pool) and rewritten before the
 *     timing, as the engine rows rewrite theirs before the checkpoint. One 8 KiB page written
 *     R*P times (the rows before 2026-12-02 12:50) stays in the CPU's cache and costs the kernel's
 *     copy nothing to read: at 16,000 pages that alone made a raw row 1.2x faster than writing
 *     distinct pages (BENCHMARKS.md, "Raw rows write distinct pages").
 */
import { join } from 'node:path';
import { IN_FLIGHT_DEFAULT, LIBUV_POOL_THREADS, RealIO, assert, forEachInFlight, type FileHandle, type FileIO } from '../engine/index.js';
import { WRITE_COMBINE_MAX_BLOCKS } from '../engine/testing.js';
import { matrixVolumeSizeBytes, relFileName, stamp, startEngineRow, type EngineRowKind, type EngineRowRunner } from './engine-row.js';
import { patternPage } from './page-path-measure.js';
import type { RoundSample } from './round-sample.js';
import { PostgresRow, type PgInstall } from './postgres.js';
import { nowMs, ratio, roundMs, summarize, type Summary } from './stats.js';

/** The rows every cell has. */
export const BASE_ROW_KINDS = ['md', 'mdConcurrent', 'volume', 'rawSegments', 'rawVolume', 'rawExtent'] as const;
export type BaseRowKind = (typeof BASE_ROW_KINDS)[number];
export const ROW_KINDS = [...BASE_ROW_KINDS, 'postgres'] as const;
export type RowKind = (typeof ROW_KINDS)[number];

/** The longest event-loop stall a checkpoint may cause, ms (the I/O path issue, part 6). */
export const STALL_TARGET_MS = 20;

export { MD_CONCURRENT_SYNCS, matrixVolumeSizeBytes } from './engine-row.js';
export type { RoundSample } from './round-sample.js';
/** Pages one pwritev may carry (IOV_MAX on Linux). */
const IOV_MAX = 1024;

export interface RowResult {
  kind: RowKind;
  samples: RoundSample[];
  writeMs: Summary;
  syncMs: Summary;
  totalMs: Summary;
  /** Per checkpoint (or raw run): min and max over the rounds. */
  fsyncCalls: { min: number; max: number };
  fdatasyncCalls: { min: number; max: number };
  /** Engine rows: the longest event-loop stall of any round's checkpoint, ms (M8); NaN for raw rows. */
  longestStallMs: number;
  /** Engine rows: the longest GC pause during any round's checkpoint, ms (M8); NaN for raw rows. */
  longestGcPauseMs: number;
  /** Engine rows on Linux: the most run-queue wait of any round's checkpoint, ms (M8); else NaN. */
  mostRunQueueWaitMs: number;
  /** Engine rows on Linux: the longest busy stretch of any round's checkpoint, ms (M8); else NaN. */
  longestBusyMs: number;
}

export interface CellRatios {
  /** md / volume, medians. */
  mdToVolumeSync: number;
  mdToVolumeTotal: number;
  /** rawSegments / rawExtent: what the hardware says the md/volume ratio should be. */
  rawSegmentsToExtentSync: number;
  rawSegmentsToExtentTotal: number;
  /** (md/volume sync) / (rawSegments/rawExtent sync): 1 means the engine adds nothing to the gap. */
  syncRatioAgreement: number;
  volumeToFloorTotal: number;
  volumeToFloorSync: number;
  /** volume total / (floor total + the floor row's switchMs), medians: against the least a copy-on-write commit costs. */
  volumeToCowFloorTotal: number;
  /** (floor total + switchMs) / floor total, medians: what the second fdatasync costs here. */
  cowFloorToFloorTotal: number;
  mdToRawSegmentsTotal: number;
  mdToRawSegmentsSync: number;
  /** mdConcurrent / rawSegments and / postgres, medians of totals. */
  mdConcurrentToRawSegmentsTotal: number;
  mdConcurrentToPostgresTotal: number;
  /** volume write phase / rawVolume write phase: what the engine adds to the same writes. */
  volumeToRawVolumeWrite: number;
  /** With the postgres row (NaN, JSON null, without): md / postgres and postgres / volume, medians. */
  mdToPostgresTotal: number;
  mdToPostgresSync: number;
  postgresToVolumeTotal: number;
  postgresToVolumeSync: number;
}

export interface CellResult {
  relations: number;
  pages: number;
  dirtyPages: number;
  dirtyBytes: number;
  rows: Record<BaseRowKind, RowResult> & { postgres?: RowResult };
  ratios: CellRatios;
}

export interface MatrixOptions {
  /** An empty directory on the file system to measure. */
  dir: string;
  relationsMax: number;
  pagesMax: number;
  blockSize: number;
  /** Checkpoint log lines of the engines (the caller prints them with --verbose). */
  onLog?: (storage: 'md' | 'mdConcurrent' | 'volume', line: string) => void;
  /** Called between steps; throws to stop the run (a stop signal). */
  checkAbort?: () => void;
  /** Measure the postgres row with these binaries (M7). */
  postgres?: PgInstall;
  /** The bench's temporary root (the postgres row may need to open it to another user). */
  tempRoot?: string;
  /**
   * What to do when the postgres row cannot be set up: 'fail' the run, or 'skip' the row and
   * report why through onPostgresSkipped.
   */
  postgresSetupFailure?: 'fail' | 'skip';
  onPostgresSkipped?: (reason: string) => void;
  /** Each engine row on a worker thread of its own (engine-row.ts E1); default true. */
  isolate?: boolean;
}

/**
 * M9: the raw rows' R*P pages of generation `gen`, (r, b) at r * P + b of the result, each the
 * engine rows' page for (gen, r, b), written into its place in `all` (the pool-like array).
 */
function rawPagesOf(all: readonly Uint8Array[], pagesMax: number, R: number, P: number, gen: number): Uint8Array[] {
  const pattern = patternPage(all[0]!.length, gen);
  const out: Uint8Array[] = new Array(R * P);
  for (let r = 0; r < R; r++) {
    for (let b = 0; b < P; b++) {
      const page = all[r * pagesMax + b]!;
      page.set(pattern);
      stamp(page, gen, r, b);
      out[r * P + b] = page;
    }
  }
  return out;
}

export class CheckpointMatrix {
  readonly #o: MatrixOptions;
  readonly #io: FileIO = new RealIO();
  #md: EngineRowRunner | null = null;
  #mdConcurrent: EngineRowRunner | null = null;
  #volume: EngineRowRunner | null = null;
  /**
   * Volume block of (relation r, block b) at r * pagesMax + b, for the rawVolume row: where the
   * volume row's last checkpoint wrote the page (copy-on-write moves it at every checkpoint).
   */
  #volumeBlocks: Float64Array = new Float64Array(0);
  /** rawSegments' files, open for the whole run (M6). */
  #segHandles: FileHandle[] = [];
  /** The raw rows' pages (M9): page (r, b) is #rawPages[r * pagesMax + b], a view of one array. */
  #rawPages: Uint8Array[] = [];
  #postgres: PostgresRow | null = null;
  #generation = 0;

  private constructor(options: MatrixOptions) {
    this.#o = options;
  }

  get #segDir(): string {
    return join(this.#o.dir, 'raw-segments');
  }
  get #extentPath(): string {
    return join(this.#o.dir, 'raw-extent.dat');
  }
  get #rawVolumePath(): string {
    return join(this.#o.dir, 'raw-volume.dat');
  }
  #segPath(r: number): string {
    return join(this.#segDir, relFileName(r));
  }

  /** Create the engines, every relation and the raw files (M4), all durable (M2). */
  static async setup(options: MatrixOptions): Promise<CheckpointMatrix> {
    const m = new CheckpointMatrix(options);
    try {
      await m.#setup();
    } catch (err) {
      await m.close({ discard: true });
      throw err;
    }
    return m;
  }

  async #setup(): Promise<void> {
    const { dir, relationsMax: R, pagesMax: P, blockSize } = this.#o;
    // The parts touch disjoint files: run them side by side, so setup costs the slowest of them
    // rather than their sum (each is bound by I/O latency, not by the CPU).
    const results = await Promise.allSettled([
      this.#startEngine('md').then((row) => (this.#md = row)),
      this.#startEngine('mdConcurrent').then((row) => (this.#mdConcurrent = row)),
      this.#startEngine('volume').then(async (row) => {
        this.#volume = row;
        // Where each page lives, for the rawVolume row until the volume row's first checkpoint.
        this.#volumeBlocks = new Float64Array(R * P);
        await this.#trackVolumeBlocks(R, P);
      }),
      this.#setupRaw(patternPage(blockSize, 0)),
      this.#setupPostgres(),
    ]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    await this.#io.fsyncDir(dir);
  }

  /** An engine row, set up (engine-row.ts), on a thread of its own unless told otherwise (E1). */
  #startEngine(kind: EngineRowKind): Promise<EngineRowRunner> {
    const { dir, relationsMax, pagesMax, blockSize, onLog, checkAbort } = this.#o;
    const hooks = {
      ...(onLog ? { onLog: (line: string) => onLog(kind, line) } : {}),
      ...(checkAbort ? { checkAbort } : {}),
    };
    return startEngineRow({ kind, dir, relationsMax, pagesMax, blockSize }, hooks, this.#o.isolate !== false);
  }

  async #setupPostgres(): Promise<void> {
    const install = this.#o.postgres;
    if (!install) return;
    try {
      this.#postgres = await PostgresRow.start(install, {
        dir: join(this.#o.dir, 'postgres'),
        root: this.#o.tempRoot ?? this.#o.dir,
        relationsMax: this.#o.relationsMax,
        pagesMax: this.#o.pagesMax,
        blockSize: this.#o.blockSize,
        checkAbort: this.#o.checkAbort,
      });
    } catch (err) {
      if (this.#o.postgresSetupFailure !== 'skip') throw new Error(`postgres row: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      this.#o.onPostgresSkipped?.(`setup failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** The rows this matrix measures (M7). */
  get kinds(): readonly RowKind[] {
    return this.#postgres ? ROW_KINDS : BASE_ROW_KINDS;
  }

  /** The running postgres row's server, for the report (null when the row is not measured). */
  get postgresUser(): string | null | undefined {
    return this.#postgres ? this.#postgres.user : undefined;
  }

  async #setupRaw(page: Uint8Array): Promise<void> {
    const { relationsMax: R, pagesMax: P } = this.#o;
    const io = this.#io;
    const source = new Uint8Array(R * P * page.length);
    this.#rawPages = Array.from({ length: R * P }, (_, i) => source.subarray(i * page.length, (i + 1) * page.length));
    await io.mkdir(this.#segDir);
    for (let r = 0; r < R; r++) {
      this.#o.checkAbort?.();
      const h = await io.open(this.#segPath(r), { create: true });
      this.#segHandles.push(h); // open for the whole run (M6); closed by close()
      await io.pwritev(h, Array.from({ length: P }, () => page), 0);
      await io.fsync(h);
    }
    await io.fsyncDir(this.#segDir);
    // The rawVolume row's file: as large as the volume and zero-filled like it, so its
    // overwrites change no file size either.
    const sizeBlocks = matrixVolumeSizeBytes(R, P, page.length) / page.length;
    const hv = await io.open(this.#rawVolumePath, { create: true });
    try {
      await this.#writeContiguous(hv, new Uint8Array(page.length), sizeBlocks);
      await io.fsync(hv);
    } finally {
      await io.close(hv);
    }
    const h = await io.open(this.#extentPath, { create: true });
    try {
      await this.#writeContiguous(h, page, R * P);
      await io.fsync(h);
    } finally {
      await io.close(h);
    }
  }

  /** `pages` copies of `page` from offset 0, in chunks as large as BufferSync's; returns the call count. */
  async #writeContiguous(h: FileHandle, page: Uint8Array, pages: number): Promise<number> {
    const chunk = Array.from({ length: Math.min(pages, WRITE_COMBINE_MAX_BLOCKS) }, () => page);
    let calls = 0;
    for (let done = 0; done < pages; done += chunk.length) {
      const n = Math.min(chunk.length, pages - done);
      await this.#io.pwritev(h, n === chunk.length ? chunk : chunk.slice(0, n), done * page.length);
      calls++;
    }
    return calls;
  }

  /** One round of cell (R, P): the four rows in rotated order (M3). */
  async runRound(R: number, P: number, round: number): Promise<Map<RowKind, RoundSample>> {
    assert(R <= this.#o.relationsMax && P <= this.#o.pagesMax, `cell ${R}x${P} fits the matrix set up`);
    const out = new Map<RowKind, RoundSample>();
    const kinds = this.kinds;
    for (let i = 0; i < kinds.length; i++) {
      this.#o.checkAbort?.();
      const kind = kinds[(i + round) % kinds.length]!;
      const gen = ++this.#generation;
      let s: Omit<RoundSample, 'round' | 'position'>;
      if (kind === 'md') s = await this.#md!.round(R, P, gen);
      else if (kind === 'mdConcurrent') s = await this.#mdConcurrent!.round(R, P, gen);
      else if (kind === 'rawVolume') s = await this.#rawVolume(R, P, gen);
      else if (kind === 'volume') {
        s = await this.#volume!.round(R, P, gen);
        await this.#trackVolumeBlocks(R, P);
      }
      else if (kind === 'rawSegments') s = await this.#rawSegments(R, P, gen);
      else if (kind === 'postgres') s = await this.#postgresRow(R, P);
      else s = await this.#rawExtent(R, P, gen);
      out.set(kind, { round, position: i, ...s });
    }
    return out;
  }

  async #postgresRow(R: number, P: number): Promise<Omit<RoundSample, 'round' | 'position'>> {
    const { line, clientMs } = await this.#postgres!.round(R, P);
    return {
      writeMs: line.writeMs,
      syncMs: line.syncMs,
      totalMs: line.totalMs,
      // The server's own counts: files fsynced in its sync phase (WAL flushes are not in them),
      // one write per buffer.
      fsyncCalls: line.syncFiles,
      fdatasyncCalls: 0,
      bytesWritten: line.buffersWritten * this.#o.blockSize,
      rangesWritten: line.buffersWritten,
      buffersWritten: line.buffersWritten,
      syncFiles: line.syncFiles,
      postgres: { clientMs, line },
    };
  }

  async #rawSegments(R: number, P: number, gen: number): Promise<Omit<RoundSample, 'round' | 'position'>> {
    const io = this.#io;
    const blockSize = this.#o.blockSize;
    const pages = rawPagesOf(this.#rawPages, this.#o.pagesMax, R, P, gen);
    const files = this.#segHandles.slice(0, R);
    const t0 = nowMs();
    await forEachInFlight(files, IN_FLIGHT_DEFAULT, (h, r) => (P === 1 ? io.pwrite(h, pages[r]!, 0) : io.pwritev(h, pages.slice(r * P, (r + 1) * P), 0)));
    // The hints md and PostgreSQL give before their fsyncs (checkpoint_flush_after): without
    // them the fsyncs start the writeback themselves, 1.6-2.1x slower here (BENCHMARKS.md,
    // "The md sync loop on a sync thread"), and the row would not be the floor it claims to be.
    // All asked for at once: RealIO sends one turn's hints to the sync thread in one message.
    const writeback = io.writeback?.bind(io);
    if (writeback) await forEachInFlight(files, files.length, (h) => writeback(h, 0, P * blockSize));
    const t1 = nowMs();
    await forEachInFlight(files, LIBUV_POOL_THREADS, (h) => io.fsync(h));
    const t2 = nowMs();
    return { writeMs: t1 - t0, syncMs: t2 - t1, totalMs: t2 - t0, fsyncCalls: R, fdatasyncCalls: 0, bytesWritten: R * P * blockSize, rangesWritten: R };
  }

  /**
   * Read where the volume holds the cell's pages now (outside every timing): after a checkpoint
   * of the volume row, the blocks it has just written them to.
   */
  async #trackVolumeBlocks(R: number, P: number): Promise<void> {
    const blocks = await this.#volume!.blocks(R, P);
    const pagesMax = this.#o.pagesMax;
    for (let r = 0; r < R; r++) for (let b = 0; b < P; b++) this.#volumeBlocks[r * pagesMax + b] = blocks[r * P + b]!;
  }

  /** The volume row's pages, at the volume row's offsets, with no engine (see the header). */
  async #rawVolume(R: number, P: number, gen: number): Promise<Omit<RoundSample, 'round' | 'position'>> {
    const io = this.#io;
    const blockSize = this.#o.blockSize;
    const pages = rawPagesOf(this.#rawPages, this.#o.pagesMax, R, P, gen);
    const blocks = new Float64Array(R * P);
    for (let r = 0; r < R; r++) for (let b = 0; b < P; b++) blocks[r * P + b] = this.#volumeBlocks[r * this.#o.pagesMax + b]!;
    const h = await io.open(this.#rawVolumePath);
    let t0: number;
    let t1: number;
    let t2: number;
    let runs: { start: number; pages: Uint8Array[] }[];
    try {
      t0 = nowMs();
      const order = Array.from({ length: R * P }, (_, i) => i).sort((x, y) => blocks[x]! - blocks[y]!);
      runs = [];
      for (const i of order) {
        const b = blocks[i]!;
        const last = runs[runs.length - 1];
        if (last && last.start + last.pages.length === b && last.pages.length < IOV_MAX) last.pages.push(pages[i]!);
        else runs.push({ start: b, pages: [pages[i]!] });
      }
      await forEachInFlight(runs, IN_FLIGHT_DEFAULT, (run) => (run.pages.length === 1 ? io.pwrite(h, run.pages[0]!, run.start * blockSize) : io.pwritev(h, run.pages, run.start * blockSize)));
      t1 = nowMs();
      await io.fdatasync(h);
      t2 = nowMs();
    } finally {
      await io.close(h);
    }
    return { writeMs: t1 - t0, syncMs: t2 - t1, totalMs: t2 - t0, fsyncCalls: 0, fdatasyncCalls: 1, bytesWritten: R * P * blockSize, rangesWritten: runs.length };
  }

  async #rawExtent(R: number, P: number, gen: number): Promise<Omit<RoundSample, 'round' | 'position'>> {
    const io = this.#io;
    const pages = rawPagesOf(this.#rawPages, this.#o.pagesMax, R, P, gen);
    const t0 = nowMs();
    const h = await io.open(this.#extentPath);
    let t1: number;
    let t2: number;
    let t3: number;
    let calls = 0;
    try {
      // In chunks as large as BufferSync's batches, one after another.
      for (let done = 0; done < pages.length; done += WRITE_COMBINE_MAX_BLOCKS) {
        await io.pwritev(h, pages.slice(done, done + WRITE_COMBINE_MAX_BLOCKS), done * this.#o.blockSize);
        calls++;
      }
      t1 = nowMs();
      await io.fdatasync(h);
      t2 = nowMs();
      await io.pwrite(h, pages[0]!.subarray(0, 512), 0);
      await io.fdatasync(h);
      t3 = nowMs();
    } finally {
      await io.close(h);
    }
    return { writeMs: t1 - t0, syncMs: t2 - t1, totalMs: t2 - t0, switchMs: t3 - t2, fsyncCalls: 0, fdatasyncCalls: 1, bytesWritten: R * P * this.#o.blockSize, rangesWritten: calls };
  }

  /**
   * Close the engine rows and the raw files. `discard` (error or interrupt): bound the shutdown checkpoint, since the
   * files are about to be removed; errors of that close are dropped in favour of the first one.
   */
  async close(options: { discard?: boolean } = {}): Promise<void> {
    const engines = [this.#md, this.#mdConcurrent, this.#volume].filter((e): e is EngineRowRunner => e !== null);
    const pg = this.#postgres;
    const handles = this.#segHandles;
    this.#md = this.#mdConcurrent = this.#volume = this.#postgres = null;
    this.#segHandles = [];
    // Every file and engine is closed whatever fails before it; the first failure is thrown.
    let first: unknown;
    const attempt = async (fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        first ??= err;
      }
    };
    try {
      for (const h of handles) await attempt(() => this.#io.close(h));
      for (const e of engines) {
        if (options.discard) await e.close(true).catch(() => undefined);
        else await attempt(() => e.close(false));
      }
    } finally {
      // The server goes in every case (bench/postgres.ts G1).
      await pg?.stop();
    }
    if (first !== undefined) throw first;
  }
}

/** M8's figures, on engine rows only (runQueueWaitMs and maxBusyMs on Linux only). */
const M8_FIELDS = ['maxStallMs', 'maxGcPauseMs', 'runQueueWaitMs', 'maxBusyMs', 'maxBusyEndMs'] as const;

/** A sample with its times and M8 figures rounded; a figure it lacks stays absent. */
function roundSample(s: RoundSample): RoundSample {
  const out: RoundSample = { ...s, writeMs: roundMs(s.writeMs), syncMs: roundMs(s.syncMs), totalMs: roundMs(s.totalMs) };
  for (const f of M8_FIELDS) {
    const v = s[f];
    if (v !== undefined) out[f] = roundMs(v);
  }
  return out;
}

/** The largest M8 figure `f` among the samples that have it; NaN when none has (raw rows). */
function mostOf(samples: readonly RoundSample[], f: (typeof M8_FIELDS)[number]): number {
  const v = samples.flatMap((s) => (s[f] !== undefined ? [s[f]] : []));
  return v.length > 0 ? Math.max(...v) : NaN;
}

/** Summaries and ratios of a cell's rounds. */
export function summarizeCell(relations: number, pages: number, blockSize: number, rounds: readonly Map<RowKind, RoundSample>[]): CellResult {
  const rows = {} as CellResult['rows'];
  for (const kind of ROW_KINDS) {
    // M7: a row is in every round of the cell or in none.
    if (kind === 'postgres' && !rounds.every((m) => m.has(kind))) continue;
    const samples = rounds.map((m) => roundSample(m.get(kind)!));
    const fs = samples.map((s) => s.fsyncCalls);
    const fds = samples.map((s) => s.fdatasyncCalls);
    rows[kind] = {
      kind,
      samples,
      writeMs: summarize(samples.map((s) => s.writeMs)),
      syncMs: summarize(samples.map((s) => s.syncMs)),
      totalMs: summarize(samples.map((s) => s.totalMs)),
      fsyncCalls: { min: Math.min(...fs), max: Math.max(...fs) },
      fdatasyncCalls: { min: Math.min(...fds), max: Math.max(...fds) },
      longestStallMs: mostOf(samples, 'maxStallMs'),
      longestGcPauseMs: mostOf(samples, 'maxGcPauseMs'),
      mostRunQueueWaitMs: mostOf(samples, 'runQueueWaitMs'),
      longestBusyMs: mostOf(samples, 'maxBusyMs'),
    };
  }
  const med = (k: RowKind, f: 'syncMs' | 'totalMs') => rows[k]?.[f].median ?? NaN;
  const mdToVolumeSync = ratio(med('md', 'syncMs'), med('volume', 'syncMs'));
  const rawSegmentsToExtentSync = ratio(med('rawSegments', 'syncMs'), med('rawExtent', 'syncMs'));
  const switches = (rows.rawExtent?.samples ?? []).map((s) => s.switchMs).filter((v): v is number => v !== undefined);
  const switchMedian = switches.length > 0 ? summarize(switches).median : NaN;
  return {
    relations,
    pages,
    dirtyPages: relations * pages,
    dirtyBytes: relations * pages * blockSize,
    rows,
    ratios: {
      mdToVolumeSync,
      mdToVolumeTotal: ratio(med('md', 'totalMs'), med('volume', 'totalMs')),
      rawSegmentsToExtentSync,
      rawSegmentsToExtentTotal: ratio(med('rawSegments', 'totalMs'), med('rawExtent', 'totalMs')),
      syncRatioAgreement: ratio(mdToVolumeSync, rawSegmentsToExtentSync),
      volumeToFloorTotal: ratio(med('volume', 'totalMs'), med('rawExtent', 'totalMs')),
      volumeToFloorSync: ratio(med('volume', 'syncMs'), med('rawExtent', 'syncMs')),
      volumeToCowFloorTotal: ratio(med('volume', 'totalMs'), med('rawExtent', 'totalMs') + switchMedian),
      cowFloorToFloorTotal: ratio(med('rawExtent', 'totalMs') + switchMedian, med('rawExtent', 'totalMs')),
      mdToRawSegmentsTotal: ratio(med('md', 'totalMs'), med('rawSegments', 'totalMs')),
      mdToRawSegmentsSync: ratio(med('md', 'syncMs'), med('rawSegments', 'syncMs')),
      mdConcurrentToRawSegmentsTotal: ratio(med('mdConcurrent', 'totalMs'), med('rawSegments', 'totalMs')),
      mdConcurrentToPostgresTotal: ratio(med('mdConcurrent', 'totalMs'), med('postgres', 'totalMs')),
      volumeToRawVolumeWrite: ratio(rows.volume?.writeMs.median ?? NaN, rows.rawVolume?.writeMs.median ?? NaN),
      mdToPostgresTotal: ratio(med('md', 'totalMs'), med('postgres', 'totalMs')),
      mdToPostgresSync: ratio(med('md', 'syncMs'), med('postgres', 'syncMs')),
      postgresToVolumeTotal: ratio(med('postgres', 'totalMs'), med('volume', 'totalMs')),
      postgresToVolumeSync: ratio(med('postgres', 'syncMs'), med('volume', 'syncMs')),
    },
  };
}
