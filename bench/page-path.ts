/**
 * Page-path bench, stand-alone: what the relation API and buffer pool cost over raw FileIO, for
 * md and volume, and CRC-32C native vs table. `lamstore bench` runs the same measurements
 * (bench/page-path-measure.ts) after its checkpoint matrix; this script lets one run them
 * alone, longer.
 * Run: `npx tsx bench/page-path.ts [--pages N] [--ops N] [--storage md|volume|both]`.
 * Timings are wall clock (this is a bench, not a test); ratios are what to compare.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTempDir, removeTree } from '../engine/testing.js';
import { compareCrc32c, measurePagePath, type BenchStorage } from './page-path-measure.js';

const args = process.argv.slice(2);
const argOf = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const PAGES = Number(argOf('--pages', '4096'));
const OPS = Number(argOf('--ops', '50000'));
const STORAGE = argOf('--storage', 'both');
const storages: BenchStorage[] = STORAGE === 'both' ? ['md', 'volume'] : [STORAGE as BenchStorage];

async function main(): Promise<void> {
  const root = await makeTempDir(tmpdir(), 'lamstore-page-path-');
  try {
    console.log(`page path: ${PAGES} pages of 8192 B, ${OPS} operations each, random order (seeded), in ${root}`);
    for (const storage of storages) {
      const r = await measurePagePath({ dir: join(root, storage), storage, pages: PAGES, ops: OPS });
      const row = (label: string, v: number) => console.log(`${storage.padEnd(7)} ${label.padEnd(24)} ${v.toFixed(0).padStart(10)} /s`);
      row('buffer-hit reads', r.hitReadsPerS);
      row('buffer-hit readInto', r.hitReadIntosPerS);
      row('readInto per CPU-second', r.hitReadIntosPerCpuS);
      row('copy floor per CPU-second', r.copyFloorPerCpuS);
      row('pool writes (absorbed)', r.poolWritesPerS);
      row('miss reads', r.missReadsPerS);
      row('eviction writes', r.evictionWritesPerS);
      row('raw pread', r.rawPreadsPerS);
      row('raw pwrite', r.rawPwritesPerS);
      const q = r.ratios;
      console.log(
        `${storage.padEnd(7)} ratios: readInto-hit/read-hit ${q.hitReadIntoToHitRead.toFixed(2)}, readInto/copy-floor (CPU) ${q.hitReadIntoToCopyFloor.toFixed(2)}, hit/raw-pread ${q.hitReadToRawPread.toFixed(2)}, miss/raw-pread ${q.missReadToRawPread.toFixed(2)}, ` +
          `pool-write/raw-pwrite ${q.poolWriteToRawPwrite.toFixed(2)}, eviction-write/raw-pwrite ${q.evictionWriteToRawPwrite.toFixed(2)} (misses ${r.misses} of ${OPS})`,
      );
    }
    const crc = compareCrc32c();
    console.log(`CRC-32C on 8 KiB pages: native ${crc.nativeMBps.toFixed(0)} MB/s, table ${crc.tableMBps.toFixed(0)} MB/s, ratio ${crc.speedup.toFixed(1)}x`);
  } finally {
    await removeTree(root);
  }
}

await main();
