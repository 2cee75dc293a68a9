/**
 * Aged sequential read (the copy-on-write issue's part 4): a sequential read of a fork that copy-on-write has
 * scattered and the checkpoint's defragmentation pass (volume/volume.ts D1-D2) has kept at its
 * bound, against the same read of a fork written once, contiguously. `lamstore bench` runs it
 * after the page path; `measureAgedRead` is all of it.
 *
 * Method, in one volume file and one engine (8 KiB pages by default):
 *  - two sets of `forks` forks of `pages` pages each, every fork extended page by page to its
 *    full size before the next one starts (so each is contiguous): first the aged set, then the
 *    fresh set;
 *  - aging: `updatesPerFork` random single-page updates per aged fork on average (seeded), through
 *    rel.write, with a checkpoint after every `forks / 4` of them; the fresh set is never written
 *    again. After every checkpoint the largest extent count of any aged fork is recorded;
 *  - timed reads, `rounds` times: every block of every fork in fork-block order, fork i of the
 *    fresh set next to fork i of the aged set (which goes first alternates), through the storage
 *    manager (smgr.read: the volume's map lookup and one pread per page, no buffer pool, so both
 *    sets pay the same per-page cost and only where the pages lie differs). A machine shared
 *    with others slows both sets alike that way. Before each fork's read the page cache is dropped
 *    (posix_fadvise(POSIX_FADV_DONTNEED) through koffi: the pages are clean, the last checkpoint
 *    fdatasynced them), so every fork is read from the device, the kernel's readahead starting
 *    afresh at its first block and not carried over from the fork before. Where the drop is not
 *    available (not Linux, koffi missing) the reads are warm and the result says why;
 *  - a warm read of each set (page cache kept, after one unrecorded pass): what the engine's
 *    own per-extent work costs, with no device in the way.
 * Rates are MB/s (10^6 bytes) of the whole set. The ratio is the median over rounds of aged /
 * fresh within the round: both sets of a round ran side by side under the same load, so their
 * ratio is steadier than a ratio of medians on a machine shared with others.
 *
 * Invariants:
 *  A1 The engine is closed before the function returns or throws (the caller removes `dir`).
 *  A2 Both sets hold the same number of forks and pages; each read checks its fork's block count
 *     and the volume refuses a short read: a mistake that read fewer bytes would show as a speedup.
 * Timings are wall clock: this is a bench, not a test; only the ratio is meant to compare.
 */
import { join } from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { Engine, ForkNumber, type RelFileLocator, type StorageManager } from '../engine/index.js';
import { openLibc, prng } from '../engine/testing.js';
import { volumeExtension, type Volume } from '../volume/index.js';
import { median, nowMs, ratio, summarize, type Summary } from './stats.js';
import { patternPage } from './page-path-measure.js';

/** The fork size: 64 pages. */
export const AGED_READ_PAGES = 64;
/** The bound on a fork's extents after aging (part 4). */
export const AGED_EXTENTS_MAX = 16;
/** The target: an aged fork reads at least this fast, relative to a fresh one. */
export const AGED_READ_RATIO_MIN = 0.7;

export interface AgedReadOptions {
  /** An empty directory the measurement may fill (removed by the caller). */
  dir: string;
  /** Forks in each set (fresh and aged). */
  forks: number;
  /** Pages per fork. @default 64 */
  pages?: number;
  /** @default 8192 */
  blockSize?: number;
  /** Random single-page updates per aged fork, on average. @default 16 */
  updatesPerFork?: number;
  /** Timed reads of each set. @default 5 */
  rounds?: number;
  seed?: number;
  /** Drop the page cache before each fork's timed read when it can be. @default true */
  dropCache?: boolean;
  /** Called between checkpoints of the aging; throws to stop. */
  checkAbort?: () => void;
}

export interface AgedSetResult {
  forks: number;
  /** Extents per fork when the reads ran (Volume.info). */
  extentsPerFork: { mean: number; max: number };
  /** MB/s of each round's read of the whole set. */
  samples: number[];
  readMBps: Summary;
  /** MB/s of one read with the page cache kept, after an unrecorded one. */
  warmReadMBps: number;
}

export interface AgedReadResult {
  forks: number;
  pages: number;
  blockSize: number;
  rounds: number;
  /** The aging: checkpoints, single-page updates, and the largest extent count of any fork after any of its checkpoints. */
  checkpoints: number;
  updates: number;
  agingExtentsMax: number;
  forksDefragmented: number;
  pagesDefragmented: number;
  /** Whether the timed reads started from a dropped page cache, how, or why not. */
  cache: { dropped: boolean; via?: string; reason?: string };
  fresh: AgedSetResult;
  aged: AgedSetResult;
  /** Aged / fresh read rate of each round (the two sets were read side by side, fork by fork). */
  roundRatios: number[];
  ratios: {
    /** Median of roundRatios: the aged >= 0.7x fresh. */
    agedToFreshRead: number;
    agedToFreshWarmRead: number;
  };
}

// ------------------------------------------------------------ the page cache

/** Drops a file's clean pages from the page cache, or says why it cannot. */
export type PageCacheDrop = { drop: (path: string) => void; via: string } | { drop: null; reason: string };

/** <fcntl.h>: O_RDONLY is 0 on every Linux architecture. */
const O_RDONLY = 0;
/** <linux/fadvise.h>: POSIX_FADV_DONTNEED is 4, except 6 on s390x (its 64-bit fadvise64_64). */
const POSIX_FADV_DONTNEED = process.arch === 's390x' ? 6 : 4;

function errnoMessage(errno: number): string {
  const known = errno > 0 ? getSystemErrorMap().get(-errno) : undefined;
  return known ? `${known[0]} (${known[1]})` : `errno ${errno}`;
}

let probed: PageCacheDrop | undefined;

/**
 * posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) on a descriptor of its own (open O_RDONLY, then
 * close): the page cache belongs to the file, not the descriptor, so the engine's own stays
 * untouched. Looked up once.
 */
export function loadPageCacheDrop(): PageCacheDrop {
  probed ??= probePageCacheDrop();
  return probed;
}

function probePageCacheDrop(): PageCacheDrop {
  if (process.platform !== 'linux') return { drop: null, reason: `posix_fadvise is declared for Linux only (platform ${process.platform})` };
  const opened = openLibc();
  if (opened.koffi === null) return { drop: null, reason: opened.reason };
  const { koffi, lib } = opened;
  try {
    const open = lib.func('int open(const char *path, int flags, ...)');
    const close = lib.func('int close(int fd)');
    // off_t is 64 bits on every Linux ABI koffi supports (the C library's symbol takes 64-bit offsets).
    const fadvise = lib.func('int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)');
    return {
      via: 'posix_fadvise(POSIX_FADV_DONTNEED) through koffi',
      drop: (path) => {
        const fd = Number(open(path, O_RDONLY));
        if (fd < 0) throw new Error(`open ${path} to drop its page cache: ${errnoMessage(koffi.errno())}`);
        try {
          // posix_fadvise returns the error number itself (errno is left alone).
          const rc = Number(fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
          if (rc !== 0) throw new Error(`posix_fadvise ${path} POSIX_FADV_DONTNEED: ${errnoMessage(rc)}`);
        } finally {
          close(fd);
        }
      },
    };
  } catch (err) {
    return { drop: null, reason: `posix_fadvise not available through koffi (${err instanceof Error ? err.message : String(err)})` };
  }
}

// ------------------------------------------------------------ the measurement

const AGED_REL_BASE = 30_000;
const FRESH_REL_BASE = 20_000;
const locator = (relNumber: number): RelFileLocator => ({ spcOid: 1663, dbOid: 5, relNumber });

/** Extents of the MAIN forks of `rels` in the volume's map. */
function extentsOf(volume: Volume, rels: readonly RelFileLocator[]): number[] {
  const byRel = new Map<number, number>();
  for (const f of volume.info().forks) if (f.fork === ForkNumber.MAIN) byRel.set(f.relNumber, f.extents.length);
  return rels.map((r) => byRel.get(r.relNumber)!);
}

/** Volume size for two sets: the data twice over (copy-on-write room for the aging) plus 8 MiB. */
export function agedVolumeSizeBytes(forks: number, pages: number, blockSize: number): number {
  const MiB = 1 << 20;
  return Math.ceil((2 * 2 * forks * pages * blockSize) / MiB + 8) * MiB;
}

export async function measureAgedRead(options: AgedReadOptions): Promise<AgedReadResult> {
  const { dir, forks } = options;
  const pages = options.pages ?? AGED_READ_PAGES;
  const blockSize = options.blockSize ?? 8192;
  const updatesPerFork = options.updatesPerFork ?? 16;
  const rounds = options.rounds ?? 5;
  const fork = ForkNumber.MAIN;
  const path = join(dir, 'aged-read.lamvol');
  const wantDrop = options.dropCache !== false;
  const probe = wantDrop ? loadPageCacheDrop() : { drop: null, reason: 'page cache drop turned off (dropCache: false)' };
  const drop = probe.drop;

  const ext = volumeExtension({ path, create: { sizeBytes: agedVolumeSizeBytes(forks, pages, blockSize) } });
  // verifySync off: the ledger is a test aid and would be measured too; no timed checkpoints.
  const engine = await Engine.open({ dataDir: join(dir, 'data'), blockSize, sharedBuffers: 256, preload: [ext], verifySync: false, checkpointTimeoutMs: 86_400_000 });
  let result: AgedReadResult;
  try {
    const volume = ext.volume!;
    const smgr: StorageManager = engine.storageManager('volume');
    const aged = Array.from({ length: forks }, (_, i) => locator(AGED_REL_BASE + i));
    const fresh = Array.from({ length: forks }, (_, i) => locator(FRESH_REL_BASE + i));
    const page = patternPage(blockSize, 1);
    for (const r of [...aged, ...fresh]) {
      const rel = engine.relation(r, { storage: 'volume' });
      await rel.create(fork);
      for (let b = 0; b < pages; b++) await rel.extend(fork, page);
    }
    await engine.checkpoint();
    options.checkAbort?.();

    // The aging.
    const random = prng(options.seed ?? 1);
    const rels = aged.map((r) => engine.relation(r, { storage: 'volume' }));
    const perCheckpoint = Math.max(1, Math.ceil(forks / 4));
    const updates = updatesPerFork * forks;
    const before = { forks: volume.stats.forksDefragmented, pages: volume.stats.pagesDefragmented };
    let checkpoints = 0;
    let agingExtentsMax = 0;
    for (let done = 0; done < updates; ) {
      for (let u = 0; u < perCheckpoint && done < updates; u++, done++) {
        const f = Math.floor(random() * forks);
        const b = Math.floor(random() * pages);
        await rels[f]!.write(fork, b, patternPage(blockSize, 2 + done));
      }
      await engine.checkpoint();
      checkpoints++;
      agingExtentsMax = Math.max(agingExtentsMax, ...extentsOf(volume, aged));
      options.checkAbort?.();
    }

    // The reads (A2: every page whole, every fork its full size).
    const buf = new Uint8Array(blockSize);
    const setBytes = forks * pages * blockSize;
    const readFork = async (r: RelFileLocator, cold: boolean): Promise<number> => {
      if (cold) drop!(path);
      const t0 = nowMs();
      const n = await smgr.nblocks(r, fork);
      if (n !== pages) throw new Error(`aged read: relation ${r.relNumber} has ${n} blocks, not ${pages}`);
      for (let b = 0; b < n; b++) await smgr.read(r, fork, b, buf);
      return nowMs() - t0;
    };
    const mbps = (ms: number): number => setBytes / 1e6 / (Math.max(ms, 1e-6) / 1000);
    /** One pass over both sets, fork i of each side by side (which goes first alternates with i and the round). */
    const readBoth = async (cold: boolean, round: number): Promise<{ fresh: number; aged: number }> => {
      let freshMs = 0;
      let agedMs = 0;
      for (let i = 0; i < forks; i++) {
        if ((i + round) % 2 === 0) {
          freshMs += await readFork(fresh[i]!, cold);
          agedMs += await readFork(aged[i]!, cold);
        } else {
          agedMs += await readFork(aged[i]!, cold);
          freshMs += await readFork(fresh[i]!, cold);
        }
      }
      return { fresh: mbps(freshMs), aged: mbps(agedMs) };
    };
    const samples = { fresh: [] as number[], aged: [] as number[] };
    const cold = drop !== null;
    if (!cold) await readBoth(false, 0); // warm the cache for warm rounds
    for (let k = 0; k < rounds; k++) {
      const r = await readBoth(cold, k);
      samples.fresh.push(r.fresh);
      samples.aged.push(r.aged);
      options.checkAbort?.();
    }
    await readBoth(false, 0); // fills the cache
    const warmRates = await readBoth(false, 1);
    const warmFresh = warmRates.fresh;
    const warmAged = warmRates.aged;

    const setResult = (set: readonly RelFileLocator[], s: number[], warmMBps: number): AgedSetResult => {
      const ex = extentsOf(volume, set);
      return { forks: set.length, extentsPerFork: { mean: ex.reduce((a, b) => a + b, 0) / ex.length, max: Math.max(...ex) }, samples: s, readMBps: summarize(s), warmReadMBps: warmMBps };
    };
    const roundRatios = samples.aged.map((a, k) => ratio(a, samples.fresh[k]!));
    const freshResult = setResult(fresh, samples.fresh, warmFresh);
    const agedResult = setResult(aged, samples.aged, warmAged);
    result = {
      forks,
      pages,
      blockSize,
      rounds,
      checkpoints,
      updates,
      agingExtentsMax,
      forksDefragmented: volume.stats.forksDefragmented - before.forks,
      pagesDefragmented: volume.stats.pagesDefragmented - before.pages,
      cache: probe.drop !== null ? { dropped: true, via: probe.via } : { dropped: false, reason: probe.reason },
      fresh: freshResult,
      aged: agedResult,
      roundRatios,
      ratios: {
        agedToFreshRead: median(roundRatios),
        agedToFreshWarmRead: ratio(agedResult.warmReadMBps, freshResult.warmReadMBps),
      },
    };
  } catch (err) {
    // A1: close before reporting; the original error is the one that matters.
    await engine.close().catch(() => undefined);
    throw err;
  }
  await engine.close();
  return result;
}
