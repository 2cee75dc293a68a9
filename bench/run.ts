/**
 * One bench run: machine, checkpoint matrix, page path, aged sequential read, CRC-32C, in a temporary
 * directory under `options.dir`. Knows nothing of the command line (bench/command.ts does).
 *
 * Invariants:
 *  B1 Everything the run writes lives under one temporary directory `root`, created here and
 *     removed here on success, on error and on interrupt (`checkAbort` throwing); engines are
 *     closed before it is removed. `hooks.onRoot` hands the path out so an exit handler can
 *     remove it synchronously if the process must stop harder.
 *  B2 The matrix runs before the page-path measurements and its files are removed first, so
 *     the page cache and disk are not crowded by one part while the other is measured; the
 *     aged sequential read runs last, its files removed as soon as it is done.
 *  B3 The result holds every raw number (each round of each row), plus summaries, ratios and
 *     the expected-shape checks (BENCHMARKS.md); nothing in it is a formatting of another
 *     field only.
 *  B4 The postgres row: 'off' never looks for a server; 'auto' measures it when the binaries
 *     are found and skips it otherwise, also when its cluster cannot be set up (result.postgres
 *     says why, in one line); 'on' fails the run instead of skipping. Its server is stopped
 *     with the matrix (bench/postgres.ts G1).
 */
import { join } from 'node:path';
import { RealIO } from '../engine/index.js';
import { makeTempDir, removeTree } from '../engine/testing.js';
import { machineInfo, type MachineInfo } from './machine.js';
import { CheckpointMatrix, MD_CONCURRENT_SYNCS, STALL_TARGET_MS, summarizeCell, type CellResult, type RoundSample, type RowKind } from './matrix.js';
import { findPostgres, searchedWhere, type PgInstall } from './postgres.js';
import { compareCrc32c, measurePagePath, type CrcResult, type PagePathResult } from './page-path-measure.js';
import { AGED_EXTENTS_MAX, AGED_READ_RATIO_MIN, measureAgedRead, type AgedReadResult } from './aged-read.js';

export interface BenchOptions {
  /** R values of the matrix. */
  relations: number[];
  /** P values of the matrix. */
  pages: number[];
  rounds: number;
  /** An existing directory on the file system to measure. */
  dir: string;
  blockSize: number;
  /** Part 4: pages in the relation, operations per measurement. */
  pagePathPages: number;
  pagePathOps: number;
  /** Part 4's aged sequential read (aged-read.ts): forks in each set (fresh, aged), timed rounds. */
  agedReadForks: number;
  agedReadRounds: number;
  /** CRC-32C measurement length (1 is about 0.3 s). */
  crcScale: number;
  /** fdatasync latency samples. */
  latencySamples: number;
  /** Unrecorded rounds before the first cell (JIT, page cache). */
  warmupRounds: number;
  /**
   * Unrecorded rounds at the start of every cell, all rows: the first checkpoints at a new R and P
   * run before V8's optimising compiler has caught up with the paths at the new sizes (the
   * volume row alone at R=1000 P=1, after 3 rounds: 28, 40, 32, 17, 29, 25, 14, 36, 25, then
   * 13-16 ms; under `node --no-opt` every round stays at 21-30 ms), and a long-running engine is
   * what the matrix measures, not its first checkpoints at a new size.
   */
  cellWarmupRounds: number;
  /** The postgres row (B4): 'auto' when the server binaries are found. */
  postgres: 'auto' | 'on' | 'off';
  /**
   * Each engine row on a worker thread of its own (engine-row.ts E1; the default), or all three
   * on the main thread, one heap for all (`--one-thread`, the yardstick before 2026-12-02 19:30).
   */
  isolateEngines?: boolean;
}

/** What became of the postgres row. */
export interface PostgresInfo {
  mode: BenchOptions['postgres'];
  measured: boolean;
  /** Where the binaries were found, and the server version. */
  binDir?: string;
  version?: string;
  /** The user the server ran as (when the bench runs as root). */
  user?: string;
  /** One line: why the row is missing. */
  skipped?: string;
}

export const BENCH_DEFAULTS = {
  relations: [10, 100, 1000],
  pages: [1, 16],
  rounds: 5,
  blockSize: 8192,
  pagePathPages: 1024,
  pagePathOps: 3000,
  agedReadForks: 128,
  agedReadRounds: 5,
  crcScale: 1,
  latencySamples: 100,
  warmupRounds: 1,
  cellWarmupRounds: 5,
  postgres: 'auto',
} as const;

/** `--quick`: under 20 s on 2 cores; explicit flags still win. */
export const BENCH_QUICK = {
  relations: [10, 100],
  pages: [1, 16],
  rounds: 2,
  pagePathPages: 256,
  pagePathOps: 1000,
  agedReadForks: 16,
  agedReadRounds: 3,
  crcScale: 0.1,
  latencySamples: 100,
  warmupRounds: 1,
  cellWarmupRounds: 0,
} as const;

export interface BenchCheck {
  /** The cell's R and P; for the aged-read checks, forks per set and pages per fork. */
  relations: number;
  pages: number;
  name:
    | 'mdFsyncsAtLeastR'
    | 'volumeFdatasyncsAtMost2'
    | 'volumeFsyncOnlyControlFile'
    | 'syncRatioWithin20Percent'
    | 'volumeWithin1.3xFloor'
    | 'checkpointStallAtMost20ms'
    | 'checkpointBusyStretchAtMost20ms'
    | 'mdConcurrentWithin1.3xRawSegments'
    | 'mdWithin1.5xPostgres'
    | 'volumeWriteWithin1.5xRawVolume'
    | 'agedExtentsAtMost16'
    | 'agedReadAtLeast0.7xFresh';
  /** Design facts (counts) must pass; timing shapes are expectations that may miss on a noisy machine. */
  kind: 'count' | 'timing';
  pass: boolean;
  detail: string;
}

export interface BenchResult {
  tool: 'lamstore bench';
  formatVersion: 1;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  options: BenchOptions;
  machine: MachineInfo;
  cells: CellResult[];
  pagePath: { md: PagePathResult; volume: PagePathResult };
  agedRead: AgedReadResult;
  crc32c: CrcResult;
  checks: BenchCheck[];
  postgres: PostgresInfo;
}

export type BenchStep = 'machine' | 'setup' | 'round' | 'page-path' | 'aged-read' | 'crc32c';

export interface BenchHooks {
  onRoot?(root: string): void;
  /** Number of steps, once known (for a progress bar). */
  onPlan?(steps: number): void;
  /** A step finished; `label` says which. */
  onStep?(step: BenchStep, label: string): void;
  /** A matrix cell finished (all its rounds). */
  onCell?(cell: CellResult): void;
  onLog?(storage: 'md' | 'mdConcurrent' | 'volume', line: string): void;
  /** Throws to stop the run (between steps). */
  checkAbort?(): void;
}

/** The expected shape (BENCHMARKS.md), per cell. */
export function shapeChecks(cells: readonly CellResult[]): BenchCheck[] {
  const out: BenchCheck[] = [];
  for (const c of cells) {
    const { relations: R, pages: P } = c;
    const md = c.rows.md;
    const vol = c.rows.volume;
    const base = { relations: R, pages: P };
    out.push({ ...base, name: 'mdFsyncsAtLeastR', kind: 'count', pass: md.fsyncCalls.min >= R, detail: `md fsyncs per checkpoint ${md.fsyncCalls.min}..${md.fsyncCalls.max}, R = ${R}` });
    out.push({ ...base, name: 'volumeFdatasyncsAtMost2', kind: 'count', pass: vol.fdatasyncCalls.max <= 2, detail: `volume fdatasyncs per checkpoint ${vol.fdatasyncCalls.min}..${vol.fdatasyncCalls.max}` });
    // Every engine checkpoint ends with one fsync of the control file (engine/control-file.ts);
    // the volume itself gets none.
    out.push({ ...base, name: 'volumeFsyncOnlyControlFile', kind: 'count', pass: vol.fsyncCalls.min === 1 && vol.fsyncCalls.max === 1, detail: `volume checkpoint fsyncs ${vol.fsyncCalls.min}..${vol.fsyncCalls.max} (the control file's record; none on the volume)` });
    const a = c.ratios.syncRatioAgreement;
    out.push({
      ...base,
      name: 'syncRatioWithin20Percent',
      kind: 'timing',
      pass: Math.abs(a - 1) <= 0.2,
      detail: `md/volume sync ${c.ratios.mdToVolumeSync.toFixed(2)} vs raw segments/extent sync ${c.ratios.rawSegmentsToExtentSync.toFixed(2)} (x${a.toFixed(2)})`,
    });
    out.push({ ...base, name: 'volumeWithin1.3xFloor', kind: 'timing', pass: c.ratios.volumeToFloorTotal <= 1.3, detail: `volume total / floor total ${c.ratios.volumeToFloorTotal.toFixed(2)}; / (floor + a superblock write and second fdatasync, the least a copy-on-write commit costs: ${c.ratios.cowFloorToFloorTotal.toFixed(2)}x the floor) ${c.ratios.volumeToCowFloorTotal.toFixed(2)}` });
    // The I/O path's targets (BENCHMARKS.md): md at most 1.3x the raw segments row (with the
    // sync phase's calls in flight, as the raw row has them), at most 1.5x PostgreSQL, and the
    // volume's write phase at most 1.5x the same writes with no engine.
    out.push({ ...base, name: 'mdConcurrentWithin1.3xRawSegments', kind: 'timing', pass: c.ratios.mdConcurrentToRawSegmentsTotal <= 1.3, detail: `md (syncConcurrency ${MD_CONCURRENT_SYNCS}) total / raw segments total ${c.ratios.mdConcurrentToRawSegmentsTotal.toFixed(2)}` });
    if (Number.isFinite(c.ratios.mdToPostgresTotal)) {
      out.push({ ...base, name: 'mdWithin1.5xPostgres', kind: 'timing', pass: c.ratios.mdToPostgresTotal <= 1.5, detail: `md total / postgres total ${c.ratios.mdToPostgresTotal.toFixed(2)}; with syncConcurrency ${MD_CONCURRENT_SYNCS} ${c.ratios.mdConcurrentToPostgresTotal.toFixed(2)}` });
    }
    out.push({ ...base, name: 'volumeWriteWithin1.5xRawVolume', kind: 'timing', pass: c.ratios.volumeToRawVolumeWrite <= 1.5, detail: `volume write phase / raw volume write ${c.ratios.volumeToRawVolumeWrite.toFixed(2)}` });
    const stall = Math.max(md.longestStallMs, c.rows.mdConcurrent.longestStallMs, vol.longestStallMs);
    out.push({
      ...base,
      name: 'checkpointStallAtMost20ms',
      kind: 'timing',
      pass: stall <= STALL_TARGET_MS,
      detail:
        `longest event-loop stall during a checkpoint: md ${md.longestStallMs.toFixed(1)} ms, md (syncConcurrency ${MD_CONCURRENT_SYNCS}) ${c.rows.mdConcurrent.longestStallMs.toFixed(1)} ms, volume ${vol.longestStallMs.toFixed(1)} ms (target ${STALL_TARGET_MS}); ` +
        `longest GC pause in the same checkpoints ${Math.max(md.longestGcPauseMs, c.rows.mdConcurrent.longestGcPauseMs, vol.longestGcPauseMs).toFixed(1)} ms, ` +
        `most run-queue wait of a row's thread in one of them ${Math.max(md.mostRunQueueWaitMs, c.rows.mdConcurrent.mostRunQueueWaitMs, vol.mostRunQueueWaitMs).toFixed(1)} ms`,
    });
    // lamstore's own share of the stalls (matrix.ts M8): the CPU of the row's thread between two timer
    // firings, whatever the scheduler did. Linux only (schedstat).
    const busy = Math.max(md.longestBusyMs, c.rows.mdConcurrent.longestBusyMs, vol.longestBusyMs);
    if (Number.isFinite(busy)) {
      out.push({
        ...base,
        name: 'checkpointBusyStretchAtMost20ms',
        kind: 'timing',
        pass: busy <= STALL_TARGET_MS,
        detail: `longest main-thread busy stretch during a checkpoint (CPU between two firings of a 1 ms timer): md ${md.longestBusyMs.toFixed(1)} ms, md (syncConcurrency ${MD_CONCURRENT_SYNCS}) ${c.rows.mdConcurrent.longestBusyMs.toFixed(1)} ms, volume ${vol.longestBusyMs.toFixed(1)} ms (target ${STALL_TARGET_MS})`,
      });
    }
  }
  return out;
}

/** The expected shape of the aged sequential read (BENCHMARKS.md, the part 4). */
export function agedReadChecks(r: AgedReadResult): BenchCheck[] {
  const base = { relations: r.forks, pages: r.pages };
  const how = r.cache.dropped ? 'page cache dropped before each fork' : `warm reads: ${r.cache.reason}`;
  return [
    {
      ...base,
      name: 'agedExtentsAtMost16',
      kind: 'count',
      pass: r.agingExtentsMax <= AGED_EXTENTS_MAX && r.aged.extentsPerFork.max <= AGED_EXTENTS_MAX,
      detail: `most extents of an aged fork after any of ${r.checkpoints} checkpoints ${r.agingExtentsMax}, at the read ${r.aged.extentsPerFork.max} (mean ${r.aged.extentsPerFork.mean.toFixed(2)}); bound ${AGED_EXTENTS_MAX}`,
    },
    {
      ...base,
      name: 'agedReadAtLeast0.7xFresh',
      kind: 'timing',
      pass: r.ratios.agedToFreshRead >= AGED_READ_RATIO_MIN,
      detail: `aged / fresh sequential read ${r.ratios.agedToFreshRead.toFixed(2)} (${how}; target ${AGED_READ_RATIO_MIN})`,
    },
  ];
}

/** Seams for tests: where the postgres binaries come from. */
export interface BenchDeps {
  findPostgres?: () => Promise<PgInstall | null>;
}

export async function runBench(options: BenchOptions, hooks: BenchHooks = {}, deps: BenchDeps = {}): Promise<BenchResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const abort = () => hooks.checkAbort?.();
  const root = await makeTempDir(options.dir, 'lamstore-bench-');
  hooks.onRoot?.(root);
  const cellsPlanned = options.relations.length * options.pages.length;
  hooks.onPlan?.(1 + 1 + options.warmupRounds + cellsPlanned * (options.cellWarmupRounds + options.rounds) + 2 + 1 + 1);
  try {
    // Latency measured inside root (B1); the file system reported is the directory the user chose.
    const machine = await machineInfo(options.dir, root, options.latencySamples);
    hooks.onStep?.('machine', `machine: ${machine.fsType}, fdatasync 8 KiB median ${machine.fdatasync8KiBMs.median.toFixed(3)} ms`);
    abort();

    const postgres: PostgresInfo = { mode: options.postgres, measured: false };
    let install: PgInstall | null = null;
    if (options.postgres === 'off') postgres.skipped = 'postgres row off (--no-postgres)';
    else {
      install = await (deps.findPostgres ?? findPostgres)();
      if (install) Object.assign(postgres, { binDir: install.binDir, version: install.version });
      else if (options.postgres === 'on') throw new Error(`--postgres: no PostgreSQL server binaries (initdb, postgres, psql) in ${searchedWhere()}`);
      else postgres.skipped = `postgres row skipped: no PostgreSQL server binaries (initdb, postgres, psql) in ${searchedWhere()}`;
    }
    const cells = await runMatrix(join(root, 'matrix'), root, options, hooks, install, postgres);
    abort();

    const md = await measurePagePath({ dir: join(root, 'page-path-md'), storage: 'md', pages: options.pagePathPages, ops: options.pagePathOps, blockSize: options.blockSize });
    hooks.onStep?.('page-path', 'page path md');
    abort();
    const volume = await measurePagePath({ dir: join(root, 'page-path-volume'), storage: 'volume', pages: options.pagePathPages, ops: options.pagePathOps, blockSize: options.blockSize });
    hooks.onStep?.('page-path', 'page path volume');
    abort();
    const agedRead = await measureAgedRead({ dir: join(root, 'aged-read'), forks: options.agedReadForks, rounds: options.agedReadRounds, blockSize: options.blockSize, checkAbort: hooks.checkAbort });
    await removeTree(join(root, 'aged-read'));
    hooks.onStep?.('aged-read', 'aged sequential read');
    abort();
    const crc = compareCrc32c(options.crcScale);
    hooks.onStep?.('crc32c', 'crc32c');

    return {
      tool: 'lamstore bench',
      formatVersion: 1,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - t0),
      options,
      machine,
      cells,
      pagePath: { md, volume },
      agedRead,
      crc32c: crc,
      checks: [...shapeChecks(cells), ...agedReadChecks(agedRead)],
      postgres,
    };
  } finally {
    await removeTree(root);
  }
}

async function runMatrix(dir: string, root: string, options: BenchOptions, hooks: BenchHooks, install: PgInstall | null, postgres: PostgresInfo): Promise<CellResult[]> {
  await new RealIO().mkdir(dir);
  const matrix = await CheckpointMatrix.setup({
    dir,
    relationsMax: Math.max(...options.relations),
    pagesMax: Math.max(...options.pages),
    blockSize: options.blockSize,
    onLog: hooks.onLog,
    checkAbort: hooks.checkAbort,
    postgres: install ?? undefined,
    tempRoot: root,
    postgresSetupFailure: options.postgres === 'on' ? 'fail' : 'skip',
    isolate: options.isolateEngines !== false,
    onPostgresSkipped: (reason) => (postgres.skipped = `postgres row skipped: ${reason}`),
  });
  postgres.measured = matrix.kinds.includes('postgres');
  const user = matrix.postgresUser;
  if (user) postgres.user = user;
  hooks.onStep?.('setup', 'setup');
  const cells: CellResult[] = [];
  try {
    for (let w = 0; w < options.warmupRounds; w++) {
      await matrix.runRound(options.relations[0]!, options.pages[0]!, w);
      hooks.onStep?.('round', 'warm-up');
    }
    for (const R of options.relations) {
      for (const P of options.pages) {
        const rounds: Map<RowKind, RoundSample>[] = [];
        for (let w = 0; w < options.cellWarmupRounds; w++) {
          await matrix.runRound(R, P, w);
          hooks.onStep?.('round', `R=${R} P=${P} warm-up ${w + 1}/${options.cellWarmupRounds}`);
        }
        for (let k = 0; k < options.rounds; k++) {
          rounds.push(await matrix.runRound(R, P, k));
          hooks.onStep?.('round', `R=${R} P=${P} round ${k + 1}/${options.rounds}`);
        }
        const cell = summarizeCell(R, P, options.blockSize, rounds);
        cells.push(cell);
        hooks.onCell?.(cell);
      }
    }
  } catch (err) {
    await matrix.close({ discard: true });
    throw err;
  }
  await matrix.close();
  // B2: free the matrix's space and page cache before the page path runs.
  await removeTree(dir);
  return cells;
}
