/**
 * Goal: what a completed md checkpoint makes durable survives a power loss (DESIGN.md D2/D4),
 * new files' names included; a torn page is caught by its checksum and never returned; and an
 * md checkpoint for R dirty relations costs exactly R data-file fsyncs.
 * Method: Engine on SimDisk with relSegBlocks 4 (several segments per relation); checkpoint,
 * then `crash('drop' | 'torn')` gives the disk a power loss would leave, and a new Engine opened
 * on it reads everything back. fsyncs are counted with engine.ioCounts() and CheckpointStats.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, ForkNumber, isLamstoreError, type RelFileLocator } from '../engine/index.js';
import { SimDisk, diffCounts, prng } from '../engine/testing.js';
import { BS, locator, onDisk, withEngine } from './helpers/engine.js';

const SEG = 4;

function pageFor(rel: number, block: number, version: number): Uint8Array {
  const p = new Uint8Array(BS);
  const r = prng(rel * 1_000_003 + block * 7919 + version);
  for (let i = 0; i < BS; i += 4) p[i] = Math.floor(r() * 256);
  p[0] = version;
  return p;
}

/** Pages compare without the engine's checksum bytes 8..11. */
function body(p: Uint8Array): string {
  const c = p.slice();
  c.fill(0, 8, 12);
  return Buffer.from(c).toString('base64');
}

const loc = (n: number): RelFileLocator => (locator(1000 + n));

describe('md checkpoint and crash', () => {
  it('a checkpoint then a crash (drop) reads back every page written before it, across several segments per relation', async () => {
    const disk = new SimDisk();
    const engine = await Engine.open({ dataDir: '/data', io: disk, sharedBuffers: 16, relSegBlocks: SEG });
    const model = new Map<string, Uint8Array>();
    const RELS = 5;
    const BLOCKS = 3 * SEG + 2; // four segments each
    for (let r = 0; r < RELS; r++) {
      const rel = engine.relation(loc(r));
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < BLOCKS; b++) await rel.extend(ForkNumber.MAIN, pageFor(r, b, 1));
      // Overwrite some through the pool (dirty buffers, many evicted with 16 buffers).
      for (let b = 0; b < BLOCKS; b += 2) await rel.write(ForkNumber.MAIN, b, pageFor(r, b, 2));
      for (let b = 0; b < BLOCKS; b++) model.set(`${r}/${b}`, pageFor(r, b, b % 2 === 0 ? 2 : 1));
    }
    await engine.checkpoint();
    // Written after the checkpoint, never synced: a 'drop' crash loses these.
    for (let r = 0; r < RELS; r++) await engine.relation(loc(r)).write(ForkNumber.MAIN, 1, pageFor(r, 1, 9));
    const crashed = disk.crash('drop', 7);

    const after = await Engine.open({ dataDir: '/data', io: crashed, sharedBuffers: 16, relSegBlocks: SEG });
    try {
      for (let r = 0; r < RELS; r++) {
        const rel = after.relation(loc(r));
        expect(await rel.nblocks(ForkNumber.MAIN)).toBe(BLOCKS);
        for (let b = 0; b < BLOCKS; b++) expect(body(await rel.read(ForkNumber.MAIN, b)), `rel ${r} block ${b}`).toBe(body(model.get(`${r}/${b}`)!));
      }
      expect(crashed.listFiles().filter((f) => f.startsWith('/data/base/5/1000'))).toEqual(['/data/base/5/1000', '/data/base/5/1000.1', '/data/base/5/1000.2', '/data/base/5/1000.3']);
    } finally {
      await after.close();
      await engine.close();
    }
  });

  it('new files and directories are durable after the checkpoint that syncs them, not before', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 16, relSegBlocks: SEG }, async (engine) => {
      const rel = engine.relation(locator(5, 77));
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < SEG + 1; b++) await rel.extend(ForkNumber.MAIN, pageFor(5, b, 1));
      // Before a checkpoint nothing of it has a durable name.
      expect(disk.crash('drop').listFiles().filter((f) => f.includes('/base/77/'))).toEqual([]);
      await engine.checkpoint();
      expect(disk.crash('drop').listFiles().filter((f) => f.includes('/base/77/'))).toEqual(['/data/base/77/5', '/data/base/77/5.1']);
      // A segment added later is covered by the next checkpoint.
      for (let b = SEG + 1; b < 2 * SEG + 1; b++) await rel.extend(ForkNumber.MAIN, pageFor(5, b, 1));
      expect(disk.crash('drop').listFiles().filter((f) => f.includes('/base/77/'))).toHaveLength(2);
      await engine.checkpoint();
      expect(disk.crash('drop').listFiles().filter((f) => f.includes('/base/77/'))).toHaveLength(3);
    });
  });

  it('a torn page (crash mode torn) fails its checksum with CHECKSUM_MISMATCH naming relation, fork and block, and is never returned', async () => {
    let mismatches = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const disk = new SimDisk();
      const engine = await Engine.open({ dataDir: '/data', io: disk, sharedBuffers: 16, relSegBlocks: SEG });
      const rel = engine.relation(loc(1));
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 8; b++) await rel.extend(ForkNumber.MAIN, pageFor(1, b, 1));
      await engine.checkpoint();
      // Rewrite block 6, then force it out by eviction (reads of other pages, all clean), so
      // the last unsynced write on the disk is exactly that page.
      await rel.write(ForkNumber.MAIN, 6, pageFor(1, 6, 2));
      const other = engine.relation(loc(2));
      await other.create(ForkNumber.MAIN);
      for (let b = 0; b < 20; b++) await other.extend(ForkNumber.MAIN);
      for (let b = 0; b < 20; b++) await other.read(ForkNumber.MAIN, b);
      expect(engine.bufferPool.dirtyCount()).toBe(0);
      const crashed = disk.crash('torn', seed);
      await engine.close();

      await withEngine({ dataDir: '/data', io: crashed, sharedBuffers: 16, relSegBlocks: SEG }, async (after) => {
        const r = after.relation(loc(1));
        for (let attempt = 0; attempt < 2; attempt++) {
          let got: Uint8Array | undefined;
          let error: unknown;
          try {
            got = await r.read(ForkNumber.MAIN, 6);
          } catch (err) {
            error = err;
          }
          if (error) {
            expect(isLamstoreError(error, ErrorCode.CHECKSUM_MISMATCH)).toBe(true);
            expect((error as Error).message).toContain('relation 1663/5/1001 fork main');
            expect((error as Error).message).toContain('block 6');
            if (attempt === 0) mismatches++;
          } else {
            // Old or new, never a mix.
            expect([body(pageFor(1, 6, 1)), body(pageFor(1, 6, 2))]).toContain(body(got!));
          }
        }
        // The neighbours are intact.
        expect(body(await r.read(ForkNumber.MAIN, 5))).toBe(body(pageFor(1, 5, 1)));
        after.bufferPool.checkInvariants(true);
      });
    }
    expect(mismatches).toBeGreaterThan(0);
  });

  it('a corrupted byte on disk is CHECKSUM_MISMATCH, an all-zero page is valid', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk, { sharedBuffers: 16 }), async (engine) => {
      const rel = engine.relation(loc(3));
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, pageFor(3, 0, 1));
      await rel.extend(ForkNumber.MAIN);
    });
    const bytes = disk.readFileNow('/data/base/5/1003')!;
    bytes[100] = bytes[100]! ^ 1;
    disk.putFile('/data/base/5/1003', bytes);
    await withEngine(onDisk(disk, { sharedBuffers: 16 }), async (engine) => {
      const r = engine.relation(loc(3));
      const err = await r.read(ForkNumber.MAIN, 0).catch((e: unknown) => e);
      expect(isLamstoreError(err, ErrorCode.CHECKSUM_MISMATCH)).toBe(true);
      expect((await r.read(ForkNumber.MAIN, 1)).every((b) => b === 0)).toBe(true);
    });
  });

  it('an md checkpoint for R dirty relations makes exactly R fsyncs on data files (directory fsyncs counted apart)', async () => {
    for (const R of [1, 10, 40]) {
      const disk = new SimDisk();
      await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 64, relSegBlocks: SEG }, async (engine) => {
        for (let r = 0; r < R; r++) {
          const rel = engine.relation(loc(r));
          await rel.create(ForkNumber.MAIN);
          await rel.extend(ForkNumber.MAIN, pageFor(r, 0, 1));
        }
        // First checkpoint: R new files (create + extend coalesce to one tag each) plus the
        // directory fsyncs that make their names durable: base/5, base and the data directory.
        // And one more fsync, every checkpoint's last step: its record in the control file.
        let before = engine.ioCounts();
        const first = await engine.checkpoint();
        let d = diffCounts(engine.ioCounts(), before);
        expect(d.fsync).toBe(R + 1);
        expect(d.fsyncDir).toBe(3);
        // CheckpointStats.fsyncCalls counts every fsync, directories and control file included.
        expect(first.fsyncCalls).toBe(R + 3 + 1);

        // Second: each relation dirtied by one buffer write; no new names, so no directory fsync.
        for (let r = 0; r < R; r++) await engine.relation(loc(r)).write(ForkNumber.MAIN, 0, pageFor(r, 0, 2));
        before = engine.ioCounts();
        const second = await engine.checkpoint();
        d = diffCounts(engine.ioCounts(), before);
        expect(second.buffersWritten).toBe(R);
        expect(d.fsync).toBe(R + 1);
        expect(d.fsyncDir).toBe(0);
        expect(second.fsyncCalls - d.fsyncDir).toBe(R + 1);
        expect(second.syncFiles).toBe(R);
        expect(second.tagsDispatched).toEqual({ md: R });
      });
    }
  });
});
