/**
 * Page-path throughput and the CRC-32C comparison, shared by `lamstore bench`
 * and the stand-alone script bench/page-path.ts.
 *
 * What is measured, in one call, on one relation of `pages` pages and the same seeded random
 * sequence of `ops` block numbers for every measurement:
 *  - hitReads       rel.read of pages resident in the pool (a new array per read)
 *  - hitReadIntos   rel.readInto of the same pages into one caller array (the lookup and the
 *                   8 KiB copy only), in whole passes over the same sequence: 200,000 calls
 *                   unrecorded (JIT warm-up), then at least 100,000 timed; also per second of
 *                   process CPU time (process.cpuUsage), which is what one core does when the
 *                   machine is shared and the wall clock counts time the process did not run
 *  - copyFloor      no engine: a Map lookup and an 8 KiB copy out of one array as large as the
 *                   pool, same sequence, same passes: what the issue says a hit should cost
 *  - poolWrites     rel.write absorbed by the pool (memcpy + dirty flag)
 *  - missReads      rel.read with sharedBuffers 16 (clock sweep + pread + checksum check)
 *  - evictionWrites rel.write with sharedBuffers 16: each write evicts a dirty page first
 *  - rawPreads / rawPwrites: RealIO pread / pwrite of the same pages at the same file offsets
 *    (md: the segment file; volume: the volume file at each page's physical block), so both
 *    storages are compared against raw I/O of exactly the bytes they touch.
 * Ratios: hit and miss reads to raw pread, pool and eviction writes to raw pwrite.
 *
 * Invariants:
 *  P1 Every engine is closed (and every raw handle closed) before the function returns or
 *     throws, so the caller can remove the directory.
 *  P2 The raw measurements run with no engine open: nothing else touches the file meanwhile.
 * Timings are wall clock: this is a bench, not a test; only the ratios are meant to compare.
 */
import { join } from 'node:path';
import { Engine, ForkNumber, RealIO, crc32c, type Extension, type FileIO, type RelFileLocator } from '../engine/index.js';
import { prng } from '../engine/testing.js';
import { crc32cTable } from './crc32c-table.js';
import { openVolumeReadOnly, volumeExtension } from '../volume/index.js';
import { nowMs, ratio } from './stats.js';

export type BenchStorage = 'md' | 'volume';

const PAGE_PATH_REL: RelFileLocator = { spcOid: 1663, dbOid: 5, relNumber: 16384 };
/** readInto hits: unrecorded calls before timing, and the fewest timed (see measurePagePath). */
const READ_INTO_WARMUP_CALLS = 200_000;
const READ_INTO_MIN_CALLS = 100_000;
/** PostgreSQL's smallest pool; every read or write of a random page then misses. */
const SMALL_POOL_BUFFERS = 16;

export interface PagePathOptions {
  /** An empty directory the measurement may fill (removed by the caller). */
  dir: string;
  storage: BenchStorage;
  /** Pages in the relation. */
  pages: number;
  /** Operations per measurement. */
  ops: number;
  blockSize?: number;
  seed?: number;
}

export interface PagePathResult {
  storage: BenchStorage;
  pages: number;
  ops: number;
  /** Operations per second. */
  hitReadsPerS: number;
  hitReadIntosPerS: number;
  /** readInto hits per second of this process's CPU time (user + system). */
  hitReadIntosPerCpuS: number;
  /** The floor of a hit (lookup + copy, no engine), by wall clock and by process CPU time. */
  copyFloorPerS: number;
  copyFloorPerCpuS: number;
  poolWritesPerS: number;
  missReadsPerS: number;
  evictionWritesPerS: number;
  rawPreadsPerS: number;
  rawPwritesPerS: number;
  /** Misses counted by the pool during the miss measurement (should be close to ops). */
  misses: number;
  ratios: {
    /** readInto hits / read hits: what not allocating a page per read buys. */
    hitReadIntoToHitRead: number;
    /** readInto hits / the copy floor, per CPU second: 1 means a hit costs a lookup and a copy. */
    hitReadIntoToCopyFloor: number;
    hitReadToRawPread: number;
    missReadToRawPread: number;
    poolWriteToRawPwrite: number;
    evictionWriteToRawPwrite: number;
  };
}

/** `count` block numbers in 0..n-1, seeded. */
export function randomBlocks(n: number, count: number, seed: number): number[] {
  const r = prng(seed);
  return Array.from({ length: count }, () => Math.floor(r() * n));
}

/** Operations per second of `fn` doing `ops` operations. */
export async function ratePerS(ops: number, fn: () => Promise<void>): Promise<number> {
  const t0 = nowMs();
  await fn();
  const s = (nowMs() - t0) / 1000;
  return ops / Math.max(s, 1e-9);
}

/** Operations per second of `fn` doing `ops` operations, by wall clock and by process CPU time. */
export async function ratesPerS(ops: number, fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = nowMs();
  await fn();
  const s = (nowMs() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { wall: ops / Math.max(s, 1e-9), cpu: ops / Math.max((c.user + c.system) / 1e6, 1e-9) };
}

/** A page whose bytes depend on `seed` (the engine owns bytes 8-11 and overwrites them). */
export function patternPage(blockSize: number, seed: number): Uint8Array {
  const page = new Uint8Array(blockSize);
  for (let i = 0; i < blockSize; i++) page[i] = (i * 31 + seed * 7) & 0xff;
  return page;
}

/** A volume large enough for `pages` pages of `blockSize` with room for the catalog. */
export function volumeSizeBytesFor(pages: number, blockSize: number): number {
  const MiB = 1 << 20;
  // Data, its growth capacity, and the copy-on-write reserve (volume.ts V5).
  const bytes = pages * blockSize * 3 + 4 * MiB;
  return Math.ceil(bytes / MiB) * MiB;
}

function openEngine(dir: string, storage: BenchStorage, sharedBuffers: number, blockSize: number, pages: number): Promise<Engine> {
  const preload: Extension[] = storage === 'volume' ? [volumeExtension({ path: join(dir, 'page-path.lamvol'), create: { sizeBytes: volumeSizeBytesFor(pages, blockSize) } })] : [];
  // verifySync off: the ledger is a test aid and would be measured too.
  return Engine.open({ dataDir: join(dir, 'data'), blockSize, sharedBuffers, preload, verifySync: false, checkpointTimeoutMs: 86_400_000 });
}

async function withEngine<T>(engine: Engine, fn: (engine: Engine) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(engine);
  } catch (err) {
    // P1: close before reporting; the original error is the one that matters.
    await engine.close().catch(() => undefined);
    throw err;
  }
  await engine.close();
  return result;
}

/**
 * The floor of a buffer hit: `pages` pages in one array (as the pool keeps them), a Map from
 * block to slot, and per call one lookup and one copy into `dst`, over the same block sequence
 * with the same warm-up and passes as the readInto measurement. Synchronous: it leaves out the
 * promise every engine call costs, so readInto/floor shows all the engine adds to a hit.
 */
async function copyFloor(pages: number, blockSize: number, blocks: readonly number[], passes: number): Promise<{ wall: number; cpu: number }> {
  const memory = new Uint8Array(pages * blockSize).fill(7);
  const views = Array.from({ length: pages }, (_, i) => memory.subarray(i * blockSize, (i + 1) * blockSize));
  const slotOf = new Map<number, number>();
  for (let b = 0; b < pages; b++) slotOf.set(b, pages - 1 - b);
  const dst = new Uint8Array(blockSize);
  let sum = 0;
  const pass = () => {
    for (const b of blocks) {
      dst.set(views[slotOf.get(b)!]!);
      sum += dst[b & 4095]!;
    }
  };
  for (let n = 0; n < READ_INTO_WARMUP_CALLS; n += blocks.length) pass();
  const r = await ratesPerS(passes * blocks.length, async () => {
    for (let k = 0; k < passes; k++) pass();
  });
  // `sum` keeps the copies from being optimised away.
  if (sum < 0) throw new Error('unreachable');
  return r;
}

export async function measurePagePath(options: PagePathOptions): Promise<PagePathResult> {
  const { dir, storage, pages, ops } = options;
  const blockSize = options.blockSize ?? 8192;
  const fork = ForkNumber.MAIN;
  const page = patternPage(blockSize, 1);
  const blocks = randomBlocks(pages, ops, options.seed ?? 1);
  const relOpts = { storage };

  // Build the relation once, and find where each page lives in its file.
  const offsets = await withEngine(await openEngine(dir, storage, 64, blockSize, pages), async (engine) => {
    const rel = engine.relation(PAGE_PATH_REL, relOpts);
    await rel.create(fork);
    for (let b = 0; b < pages; b++) await rel.extend(fork, page);
    await engine.checkpoint();
    const out = new Float64Array(pages);
    for (let b = 0; b < pages; b++) out[b] = b * blockSize;
    return out;
  });
  if (storage === 'volume') {
    // In the volume a block lives where its fork's extents put it: lay them end to end.
    const info = await openVolumeReadOnly(join(dir, 'page-path.lamvol'));
    const f = info.forks.find((x) => x.relNumber === PAGE_PATH_REL.relNumber && x.fork === fork)!;
    let b = 0;
    for (const e of f.extents) for (let i = 0; i < e.lengthBlocks && b < pages; i++) offsets[b++] = (e.startBlock + i) * blockSize;
  }

  const hit = await withEngine(await openEngine(dir, storage, pages + 16, blockSize, pages), async (engine) => {
    const rel = engine.relation(PAGE_PATH_REL, relOpts);
    for (let b = 0; b < pages; b++) await rel.read(fork, b); // warm the pool
    const hitReadsPerS = await ratePerS(ops, async () => {
      for (const b of blocks) await rel.read(fork, b);
    });
    const dst = new Uint8Array(blockSize);
    // At a million calls a second, `ops` readInto calls (3000 by default) are over before V8 has
    // optimised the path, and would measure the compiler: run whole passes over `blocks`, first
    // READ_INTO_WARMUP_CALLS unrecorded, then at least READ_INTO_MIN_CALLS timed. One function
    // for both, so the timed passes run the code the warm-up optimised.
    const pass = async () => {
      for (const b of blocks) await rel.readInto(fork, b, dst);
    };
    for (let n = 0; n < READ_INTO_WARMUP_CALLS; n += blocks.length) await pass();
    const passes = Math.ceil(READ_INTO_MIN_CALLS / blocks.length);
    const hitsBefore = engine.bufferPool.stats.hits;
    const into = await ratesPerS(passes * blocks.length, async () => {
      for (let k = 0; k < passes; k++) await pass();
    });
    if (engine.bufferPool.stats.hits - hitsBefore !== passes * blocks.length) throw new Error('page path: the timed readInto calls were not all buffer hits');
    const floor = await copyFloor(pages, blockSize, blocks, passes);
    const poolWritesPerS = await ratePerS(ops, async () => {
      for (const b of blocks) await rel.write(fork, b, page);
    });
    return { hitReadsPerS, hitReadIntosPerS: into.wall, hitReadIntosPerCpuS: into.cpu, copyFloorPerS: floor.wall, copyFloorPerCpuS: floor.cpu, poolWritesPerS };
  });

  const miss = await withEngine(await openEngine(dir, storage, SMALL_POOL_BUFFERS, blockSize, pages), async (engine) => {
    const rel = engine.relation(PAGE_PATH_REL, relOpts);
    const before = engine.bufferPool.stats.misses;
    const missReadsPerS = await ratePerS(ops, async () => {
      for (const b of blocks) await rel.read(fork, b);
    });
    const misses = engine.bufferPool.stats.misses - before;
    const evictionWritesPerS = await ratePerS(ops, async () => {
      for (const b of blocks) await rel.write(fork, b, page);
    });
    return { missReadsPerS, evictionWritesPerS, misses };
  });

  // P2: raw I/O of the same pages, engine closed.
  const io: FileIO = new RealIO();
  const file = storage === 'volume' ? join(dir, 'page-path.lamvol') : join(dir, 'data', 'base', String(PAGE_PATH_REL.dbOid), String(PAGE_PATH_REL.relNumber));
  const h = await io.open(file);
  let raw: { rawPreadsPerS: number; rawPwritesPerS: number };
  try {
    const buf = new Uint8Array(blockSize);
    const rawPreadsPerS = await ratePerS(ops, async () => {
      for (const b of blocks) await io.pread(h, buf, offsets[b]!);
    });
    const rawPwritesPerS = await ratePerS(ops, async () => {
      for (const b of blocks) await io.pwrite(h, page, offsets[b]!);
    });
    raw = { rawPreadsPerS, rawPwritesPerS };
  } finally {
    await io.close(h);
  }

  return {
    storage,
    pages,
    ops,
    ...hit,
    ...miss,
    ...raw,
    ratios: {
      hitReadIntoToHitRead: ratio(hit.hitReadIntosPerS, hit.hitReadsPerS),
      hitReadIntoToCopyFloor: ratio(hit.hitReadIntosPerCpuS, hit.copyFloorPerCpuS),
      hitReadToRawPread: ratio(hit.hitReadsPerS, raw.rawPreadsPerS),
      missReadToRawPread: ratio(miss.missReadsPerS, raw.rawPreadsPerS),
      poolWriteToRawPwrite: ratio(hit.poolWritesPerS, raw.rawPwritesPerS),
      evictionWriteToRawPwrite: ratio(miss.evictionWritesPerS, raw.rawPwritesPerS),
    },
  };
}

export interface CrcResult {
  /** MB/s (10^6 bytes) on 8 KiB pages of random bytes. */
  nativeMBps: number;
  tableMBps: number;
  /** native / table. */
  speedup: number;
}

/**
 * CRC-32C native (@node-rs/crc32, SSE4.2/ARMv8 instructions) against the table-driven
 * TypeScript version, on the same 8 KiB random pages. `scale` 1 runs about 0.3 s.
 */
export function compareCrc32c(scale = 1, blockSize = 8192): CrcResult {
  const pages = Array.from({ length: 64 }, (_, i) => {
    const p = new Uint8Array(blockSize);
    const r = prng(i + 1);
    for (let k = 0; k < blockSize; k++) p[k] = Math.floor(r() * 256);
    return p;
  });
  for (const p of pages) {
    if (crc32c(p) !== crc32cTable(p)) throw new Error('CRC-32C native and table implementations disagree');
  }
  const run = (fn: (b: Uint8Array) => number, rounds: number) => {
    let x = 0;
    const t0 = nowMs();
    for (let k = 0; k < rounds; k++) for (const p of pages) x ^= fn(p);
    const s = (nowMs() - t0) / 1000;
    // x keeps the calls from being optimised away.
    return x === 0.5 ? 0 : (rounds * pages.length * blockSize) / Math.max(s, 1e-9) / 1e6;
  };
  run(crc32c, 10); // warm up both
  run(crc32cTable, 2);
  const nativeMBps = run(crc32c, Math.max(1, Math.round(800 * scale)));
  const tableMBps = run(crc32cTable, Math.max(1, Math.round(60 * scale)));
  return { nativeMBps, tableMBps, speedup: ratio(nativeMBps, tableMBps) };
}
