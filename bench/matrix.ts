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
 *     do V8's garbage collection pauses, whoever made the garbage (the bench's process holds
 *     three engines and the raw rows): the longest GC pause in the same window is recorded
 *     beside the stall (a PerformanceObserver of 'gc' entries), so a stall can be told apart
 *     from a collection, and on Linux the main thread's run-queue wait over the same window
 *     (/proc/self/task/<pid>/schedstat: time it could have run but another thread had the CPU),
 *     the scheduler's share, and the longest busy stretch (BusySampler: the most main-thread CPU
 *     between two firings of a 1 ms timer), lamstore's own share: the part of a stall that is
 *     the process working rather than waiting for a CPU.
 *  M9 Raw rows write the engine rows' bytes from memory like theirs: R*P distinct pages, each
 *     stamped as the engine rows stamp theirs (M1), laid out as the engines' pools hold them
 *     (page (r, b) at r * pagesMax + b of one array as large as a pool) and rewritten before the
 *     timing, as the engine rows rewrite theirs before the checkpoint. One 8 KiB page written
 *     R*P times (the rows before 2026-12-02 12:50) stays in the CPU's cache and costs the kernel's
 *     copy nothing to read: at 16,000 pages that alone made a raw row 1.2x faster than writing
 *     distinct pages (BENCHMARKS.md, "Raw rows write distinct pages").
 */
import { join } from 'node:path';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Engine, ForkNumber, IN_FLIGHT_DEFAULT, LIBUV_POOL_THREADS, RealIO, assert, forEachInFlight, type CheckpointStats, type FileHandle, type FileIO, type IoCounts, type Relation, type RelFileLocator } from '../engine/index.js';
import { WRITE_COMBINE_MAX_BLOCKS, diffCounts } from '../engine/testing.js';
import { volumeExtension, type VolumeExtension } from '../volume/index.js';
import { patternPage } from './page-path-measure.js';
import { mainSchedstat, type ThreadTimes } from './schedstat.js';
import { PostgresRow, type PgInstall } from './postgres.js';
import type { PgCheckpointLine } from './postgres-log.js';
import { nowMs, ratio, roundMs, summarize, type Summary } from './stats.js';

/** The rows every cell has. */
export const BASE_ROW_KINDS = ['md', 'mdConcurrent', 'volume', 'rawSegments', 'rawVolume', 'rawExtent'] as const;
export type BaseRowKind = (typeof BASE_ROW_KINDS)[number];
export const ROW_KINDS = [...BASE_ROW_KINDS, 'postgres'] as const;
export type RowKind = (typeof ROW_KINDS)[number];

/** The longest event-loop stall a checkpoint may cause, ms (the I/O path issue, part 6). */
export const STALL_TARGET_MS = 20;

/** First relNumber of the bench relations (PostgreSQL's FirstNormalObjectId is 16384). */
const REL_NUMBER_FIRST = 20000;
const DB_OID = 5;
/** md relations created side by side at setup (file creation is latency-bound). */
const MD_SETUP_CONCURRENCY = 8;
/** The mdConcurrent row's syncConcurrency: libuv's pool runs that many calls at once. */
export const MD_CONCURRENT_SYNCS = LIBUV_POOL_THREADS;
/** Pages one pwritev may carry (IOV_MAX on Linux). */
const IOV_MAX = 1024;

export interface RoundSample {
  round: number;
  /** 0-based position of the row within its round (M3). */
  position: number;
  writeMs: number;
  syncMs: number;
  totalMs: number;
  fsyncCalls: number;
  fdatasyncCalls: number;
  bytesWritten: number;
  /** pwrite/pwritev calls. */
  rangesWritten: number;
  /** Engine rows: CheckpointStats (buffersWritten, syncFiles, tagsDispatched) and the io counters' difference. */
  buffersWritten?: number;
  syncFiles?: number;
  tagsDispatched?: Record<string, number>;
  /** rawExtent: the superblock-sized write and second fdatasync after the floor's, ms (not in totalMs). */
  switchMs?: number;
  /** Engine rows: the longest event-loop stall during engine.checkpoint(), ms (M8). */
  maxStallMs?: number;
  /** Engine rows: the longest garbage-collection pause in the same window, ms (M8; 0: none). */
  maxGcPauseMs?: number;
  /** Engine rows on Linux: the main thread's run-queue wait over the same window, ms (M8). */
  runQueueWaitMs?: number;
  /** Engine rows on Linux: the most main-thread CPU between two firings of a 1 ms timer, ms (M8). */
  maxBusyMs?: number;
  io?: Pick<IoCounts, 'open' | 'close' | 'pwrite' | 'fsync' | 'fdatasync' | 'fsyncDir' | 'bytesWritten'>;
  /** Postgres row: the server's checkpoint line and CHECKPOINT as the client timed it. */
  postgres?: { clientMs: number; line: PgCheckpointLine };
}

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
}

function locator(r: number): RelFileLocator {
  return { spcOid: 1663, dbOid: DB_OID, relNumber: REL_NUMBER_FIRST + r };
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

/**
 * Resolves after a 2 ms timer: the histogram's 1 ms timer, due first, fires before it (timers
 * run in due order), so it has fired at least once since the call.
 */
function timerTurns(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 2));
}

/**
 * M8's busy stretches: a 1 ms interval timer reads the main thread's CPU time at each firing;
 * the most CPU between two firings is the longest stretch the event loop could not run a timer
 * because the main thread itself was working (JavaScript, a collection, a synchronous call),
 * whatever the scheduler did meanwhile. About 15 µs a firing (one read of /proc). Linux only.
 */
class BusySampler {
  #last: number;
  #timer: NodeJS.Timeout;
  maxNs = 0;
  constructor(start: number) {
    this.#last = start;
    this.#timer = setInterval(() => this.sample(), 1);
  }
  sample(): void {
    const now = mainSchedstat();
    if (!now) return;
    if (now.cpu - this.#last > this.maxNs) this.maxNs = now.cpu - this.#last;
    this.#last = now.cpu;
  }
  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }
}

/** Writes `page` stamped with (generation, relation, block) in bytes 16..27 (M1). */
function stamp(page: Uint8Array, generation: number, r: number, b: number): void {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  v.setUint32(16, generation, true);
  v.setUint32(20, r, true);
  v.setUint32(24, b, true);
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
  #md: Engine | null = null;
  #mdConcurrent: Engine | null = null;
  #volume: Engine | null = null;
  #mdRels: Relation[] = [];
  #mdConcurrentRels: Relation[] = [];
  #volumeRels: Relation[] = [];
  /**
   * Volume block of (relation r, block b) at r * pagesMax + b, for the rawVolume row: where the
   * volume row's last checkpoint wrote the page (copy-on-write moves it at every checkpoint).
   */
  #volumeBlocks: Float64Array = new Float64Array(0);
  #volumeExt: VolumeExtension | null = null;
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
    return join(this.#segDir, String(REL_NUMBER_FIRST + r));
  }

  /**
   * No onLog at all unless the caller wants the lines: with one set, the sync phase formats a
   * "checkpoint sync: file=..." line per synced file, which at R=1000 is measurable time.
   */
  #logTo(storage: 'md' | 'mdConcurrent' | 'volume'): ((line: string) => void) | undefined {
    const onLog = this.#o.onLog;
    return onLog ? (line) => onLog(storage, line) : undefined;
  }

  /** Create both engines, every relation and the raw files (M4), all durable (M2). */
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
    const common = {
      blockSize,
      sharedBuffers: Math.max(16, R * P + 1024),
      checkpointTimeoutMs: 86_400_000,
      verifySync: false,
    };
    const page = patternPage(blockSize, 0);
    // The three parts touch disjoint files: run them side by side, so setup costs the slowest
    // of them rather than their sum (each is bound by I/O latency, not by the CPU).
    const results = await Promise.allSettled([
      (async () => {
        this.#md = await Engine.open({ ...common, dataDir: join(dir, 'md'), onLog: this.#logTo('md') });
        await this.#setupRelations(this.#md, this.#mdRels, 'md', page, MD_SETUP_CONCURRENCY);
        this.#mdConcurrent = await Engine.open({ ...common, dataDir: join(dir, 'md-concurrent'), syncConcurrency: MD_CONCURRENT_SYNCS, onLog: this.#logTo('mdConcurrent') });
        await this.#setupRelations(this.#mdConcurrent, this.#mdConcurrentRels, 'md', page, MD_SETUP_CONCURRENCY);
      })(),
      (async () => {
        const ext = volumeExtension({
          path: join(dir, 'volume', 'bench.lamvol'),
          // The zero-fill is most of setup at large R (8.6 GB at R = 100000): a stop asked
          // for meanwhile takes effect within a chunk, and createVolumeFile removes the file.
          create: { sizeBytes: matrixVolumeSizeBytes(R, P, blockSize), onProgress: () => this.#o.checkAbort?.() },
        });
        this.#volume = await Engine.open({
          ...common,
          dataDir: join(dir, 'volume'),
          onLog: this.#logTo('volume'),
          preload: [ext],
        });
        // One volume relation at a time, so each grows in place into few, long extents.
        await this.#setupRelations(this.#volume, this.#volumeRels, 'volume', page, 1);
        // Where each page lives, for the rawVolume row until the volume row's first checkpoint.
        this.#volumeExt = ext;
        this.#volumeBlocks = new Float64Array(R * P);
        this.#trackVolumeBlocks(R, P);
      })(),
      this.#setupRaw(page),
      this.#setupPostgres(),
    ]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    await this.#io.fsyncDir(dir);
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

  async #setupRelations(engine: Engine, rels: Relation[], storage: 'md' | 'volume', page: Uint8Array, concurrency: number): Promise<void> {
    const { relationsMax: R, pagesMax: P } = this.#o;
    for (let r = 0; r < R; r++) rels.push(engine.relation(locator(r), { storage }));
    let next = 0;
    const worker = async () => {
      while (next < R) {
        this.#o.checkAbort?.();
        const rel = rels[next++]!;
        await rel.create(ForkNumber.MAIN);
        for (let b = 0; b < P; b++) await rel.extend(ForkNumber.MAIN, page);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await engine.checkpoint();
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
      if (kind === 'md') s = await this.#engineRow(this.#md!, this.#mdRels, R, P, gen);
      else if (kind === 'mdConcurrent') s = await this.#engineRow(this.#mdConcurrent!, this.#mdConcurrentRels, R, P, gen);
      else if (kind === 'rawVolume') s = await this.#rawVolume(R, P, gen);
      else if (kind === 'volume') {
        s = await this.#engineRow(this.#volume!, this.#volumeRels, R, P, gen);
        this.#trackVolumeBlocks(R, P);
      }
      else if (kind === 'rawSegments') s = await this.#rawSegments(R, P, gen);
      else if (kind === 'postgres') s = await this.#postgresRow(R, P);
      else s = await this.#rawExtent(R, P, gen);
      out.set(kind, { round, position: i, ...s });
    }
    return out;
  }

  async #engineRow(engine: Engine, rels: readonly Relation[], R: number, P: number, gen: number): Promise<Omit<RoundSample, 'round' | 'position'>> {
    const page = patternPage(this.#o.blockSize, gen);
    for (let r = 0; r < R; r++) {
      const rel = rels[r]!;
      for (let b = 0; b < P; b++) {
        stamp(page, gen, r, b);
        await rel.write(ForkNumber.MAIN, b, page);
      }
    }
    const before = engine.ioCounts();
    const stalls = monitorEventLoopDelay({ resolution: 1 });
    const gcPauses: number[] = [];
    const windowStart = performance.now();
    const gcs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (e.startTime >= windowStart) gcPauses.push(e.duration);
    });
    gcs.observe({ entryTypes: ['gc'] });
    const schedBefore = mainSchedstat();
    const busy = schedBefore ? new BusySampler(schedBefore.cpu) : null;
    stalls.enable();
    let st: CheckpointStats;
    let schedAfter: ThreadTimes | null = null;
    try {
      await timerTurns(); // M8: the timer's first firing, which records nothing
      st = await engine.checkpoint();
      await timerTurns(); // M8: a firing after the checkpoint's last synchronous stretch
    } finally {
      stalls.disable();
      busy?.stop();
      schedAfter = mainSchedstat();
      for (const e of gcs.takeRecords()) if (e.startTime >= windowStart) gcPauses.push(e.duration);
      gcs.disconnect();
    }
    // Histogram values are ns; an empty histogram (a checkpoint shorter than one tick) has max 0.
    const maxStallMs = stalls.count > 0 ? stalls.max / 1e6 : 0;
    const maxGcPauseMs = gcPauses.length > 0 ? Math.max(...gcPauses) : 0;
    const runQueueWaitMs = schedBefore && schedAfter ? (schedAfter.wait - schedBefore.wait) / 1e6 : undefined;
    const maxBusyMs = busy ? busy.maxNs / 1e6 : undefined;
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
      ...(runQueueWaitMs !== undefined ? { runQueueWaitMs } : {}),
      ...(maxBusyMs !== undefined ? { maxBusyMs } : {}),
      io: { open: d.open, close: d.close, pwrite: d.pwrite, fsync: d.fsync, fdatasync: d.fdatasync, fsyncDir: d.fsyncDir, bytesWritten: d.bytesWritten },
    };
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
  #trackVolumeBlocks(R: number, P: number): void {
    const vol = this.#volumeExt!.volume!;
    const pagesMax = this.#o.pagesMax;
    for (let r = 0; r < R; r++) for (let b = 0; b < P; b++) this.#volumeBlocks[r * pagesMax + b] = vol.physicalBlock(locator(r), ForkNumber.MAIN, b);
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
   * Close both engines. `discard` (error or interrupt): bound the shutdown checkpoint, since the
   * files are about to be removed; errors of that close are dropped in favour of the first one.
   */
  async close(options: { discard?: boolean } = {}): Promise<void> {
    const engines = [this.#md, this.#mdConcurrent, this.#volume].filter((e): e is Engine => e !== null);
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
        if (options.discard) await e.close({ timeoutMs: 0 }).catch(() => undefined);
        else await attempt(() => e.close());
      }
    } finally {
      // The server goes in every case (bench/postgres.ts G1).
      await pg?.stop();
    }
    if (first !== undefined) throw first;
  }
}

/** M8's figures, on engine rows only (runQueueWaitMs and maxBusyMs on Linux only). */
const M8_FIELDS = ['maxStallMs', 'maxGcPauseMs', 'runQueueWaitMs', 'maxBusyMs'] as const;

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
