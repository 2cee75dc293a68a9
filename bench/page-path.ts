/**
 * Page-path bench: what the relation API and buffer pool cost over raw FileIO, and what an md
 * checkpoint costs in fsyncs. Run: `npx tsx bench/page-path.ts [--pages N] [--ops N]`.
 *
 * Measured in one run, on the same file and the same page numbers:
 *  - buffer-hit reads/s    rel.read of pages resident in the pool (a copy out per read)
 *  - miss reads/s          rel.read with sharedBuffers 16 (clock sweep + pread + checksum check)
 *  - raw pread/s           RealIO pread of the same pages (OS page cache, like the misses)
 *  - pool writes/s         rel.write absorbed by the pool (memcpy + dirty flag)
 *  - eviction writes/s     rel.write with sharedBuffers 16: each write evicts a dirty page
 *                          (checksum + pwrite + sync request)
 *  - raw pwrite/s          RealIO pwrite of the same pages
 *  - md checkpoint fsyncs for R dirty relations (R = 10, 100, 1000): must be R
 *  - CRC-32C: native (@node-rs/crc32) vs the table-driven TypeScript one, MB/s on 8 KiB pages
 * Timings are wall clock (this is a bench, not a test); ratios are what to compare.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, ForkNumber, RealIO, crc32c, diffCounts, prng, type RelFileLocator } from '../engine/index.js';
import { crc32cTable } from '../engine/checksum.js';
import { relPath } from '../engine/md/paths.js';

const BS = 8192;
const args = process.argv.slice(2);
const argOf = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const PAGES = argOf('--pages', 4096);
const OPS = argOf('--ops', 50_000);
const REL: RelFileLocator = { spcOid: 1663, dbOid: 5, relNumber: 16384 };

function order(n: number, count: number, seed: number): number[] {
  const r = prng(seed);
  return Array.from({ length: count }, () => Math.floor(r() * n));
}

async function timed(label: string, ops: number, fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  const s = (performance.now() - t0) / 1000;
  const rate = ops / s;
  console.log(`${label.padEnd(28)} ${rate.toFixed(0).padStart(10)} /s`);
  return rate;
}

async function pagePath(dir: string): Promise<void> {
  const page = new Uint8Array(BS);
  for (let i = 0; i < BS; i++) page[i] = (i * 31) & 0xff;
  // Build the relation once.
  {
    const engine = await Engine.open({ dataDir: dir, sharedBuffers: 64 });
    const rel = engine.relation(REL);
    await rel.create(ForkNumber.MAIN);
    for (let b = 0; b < PAGES; b++) await rel.extend(ForkNumber.MAIN, page);
    await engine.close();
  }
  const blocks = order(PAGES, OPS, 1);
  const results: Record<string, number> = {};

  {
    const engine = await Engine.open({ dataDir: dir, sharedBuffers: PAGES + 16 });
    const rel = engine.relation(REL);
    for (let b = 0; b < PAGES; b++) await rel.read(ForkNumber.MAIN, b); // warm
    results.hit = await timed('buffer-hit reads', OPS, async () => {
      for (const b of blocks) await rel.read(ForkNumber.MAIN, b);
    });
    results.poolWrite = await timed('pool writes (absorbed)', OPS, async () => {
      for (const b of blocks) await rel.write(ForkNumber.MAIN, b, page);
    });
    await engine.close();
  }
  {
    const engine = await Engine.open({ dataDir: dir, sharedBuffers: 16 });
    const rel = engine.relation(REL);
    const before = engine.bufferPool.stats.misses;
    results.miss = await timed('miss reads', OPS, async () => {
      for (const b of blocks) await rel.read(ForkNumber.MAIN, b);
    });
    console.log(`${''.padEnd(28)} (misses ${engine.bufferPool.stats.misses - before} of ${OPS})`);
    results.evictWrite = await timed('eviction writes', OPS, async () => {
      for (const b of blocks) await rel.write(ForkNumber.MAIN, b, page);
    });
    await engine.close();
  }
  {
    const io = new RealIO();
    const h = await io.open(relPath(dir, REL, 0, 0));
    const buf = new Uint8Array(BS);
    results.rawRead = await timed('raw pread', OPS, async () => {
      for (const b of blocks) await io.pread(h, buf, b * BS);
    });
    results.rawWrite = await timed('raw pwrite', OPS, async () => {
      for (const b of blocks) await io.pwrite(h, page, b * BS);
    });
    await io.close(h);
  }
  console.log(`ratios: hit/raw-pread ${(results.hit! / results.rawRead!).toFixed(2)}, miss/raw-pread ${(results.miss! / results.rawRead!).toFixed(2)}, ` +
    `pool-write/raw-pwrite ${(results.poolWrite! / results.rawWrite!).toFixed(2)}, eviction-write/raw-pwrite ${(results.evictWrite! / results.rawWrite!).toFixed(2)}`);
}

async function checkpointFsyncs(root: string): Promise<void> {
  for (const R of [10, 100, 1000]) {
    const dir = join(root, `ckpt-${R}`);
    const engine = await Engine.open({ dataDir: dir, sharedBuffers: 2048 });
    const page = new Uint8Array(BS).fill(1);
    for (let r = 0; r < R; r++) {
      const rel = engine.relation({ ...REL, relNumber: 30000 + r });
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, page);
    }
    await engine.checkpoint(); // makes the new files and their names durable
    for (let r = 0; r < R; r++) await engine.relation({ ...REL, relNumber: 30000 + r }).write(ForkNumber.MAIN, 0, new Uint8Array(BS).fill(2));
    const before = engine.ioCounts();
    const stats = await engine.checkpoint();
    const d = diffCounts(engine.ioCounts(), before);
    console.log(`md checkpoint R=${String(R).padEnd(5)} buffers ${stats.buffersWritten}, fsync ${d.fsync}, directory fsyncs ${d.fsyncDir}, fdatasync ${d.fdatasync}, CheckpointStats.fsyncCalls ${stats.fsyncCalls}, sync ${stats.syncMs.toFixed(0)} ms`);
    await engine.close();
  }
}

function crcCompare(): void {
  const pages = Array.from({ length: 256 }, (_, i) => {
    const p = new Uint8Array(BS);
    const r = prng(i + 1);
    for (let k = 0; k < BS; k++) p[k] = Math.floor(r() * 256);
    return p;
  });
  const run = (fn: (b: Uint8Array) => number, rounds: number) => {
    let x = 0;
    const t0 = performance.now();
    for (let k = 0; k < rounds; k++) for (const p of pages) x ^= fn(p);
    const s = (performance.now() - t0) / 1000;
    return { mbps: (rounds * pages.length * BS) / s / 1e6, x };
  };
  for (const p of pages) if (crc32c(p) !== crc32cTable(p)) throw new Error('crc32c implementations disagree');
  run(crc32c, 20);
  run(crc32cTable, 2); // warm up
  const native = run(crc32c, 400);
  const table = run(crc32cTable, 20);
  console.log(`CRC-32C on 8 KiB pages: native ${native.mbps.toFixed(0)} MB/s, table ${table.mbps.toFixed(0)} MB/s, ratio ${(native.mbps / table.mbps).toFixed(1)}x`);
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'lamstore-bench-'));
  try {
    console.log(`page path: ${PAGES} pages of ${BS} B, ${OPS} operations each, random order (seeded), in ${root}`);
    await pagePath(join(root, 'pages'));
    await checkpointFsyncs(root);
    crcCompare();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
