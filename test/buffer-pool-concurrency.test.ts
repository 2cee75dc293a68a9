/**
 * Goal: the buffer pool's concurrency rules (buffer-pool.ts B1-B6) hold when operations
 * interleave at awaits: a page being read in is not handed out half-filled, a buffer being
 * written is not evicted or reused, a change of a page BufferSync writes waits for it and leaves it dirty, a
 * failed write leaves buffers dirty, truncate and drop discard buffers; more operations in flight
 * than buffers are refused with BUFFERS_EXHAUSTED.
 * Method: Engine on a SimDisk behind GatedIO, which holds a chosen pread/pwrite until the test
 * releases it; the test acts while the call is held, then checks contents, flags (through
 * dirtyCount and checkInvariants) and counted reads.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, ForkNumber, isLamstoreError, type Engine, type Relation } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { GatedIO } from './helpers/gated-io.js';
import { BS, locator, onDisk, pageOf, withEngine } from './helpers/engine.js';

const REL = locator(42);
const tick = () => new Promise<void>((r) => setImmediate(r));
const isRel = (p: string) => p.endsWith('/base/5/42');

interface Setup {
  disk: SimDisk;
  io: GatedIO;
  engine: Engine;
  rel: Relation;
}

/** withEngine (16 buffers) on GatedIO over a SimDisk, with REL's main fork of `blocks` pages (block b holds b + 1). */
async function withRelation(blocks: number, run: (s: Setup) => Promise<void>): Promise<void> {
  const disk = new SimDisk();
  const io = new GatedIO(disk);
  await withEngine(onDisk(io, { sharedBuffers: 16 }), async (engine) => {
    const rel = engine.relation(REL);
    await rel.create(ForkNumber.MAIN);
    for (let b = 0; b < blocks; b++) await rel.extend(ForkNumber.MAIN, pageOf(b + 1));
    await run({ disk, io, engine, rel });
  });
}

describe('buffer pool concurrency', () => {
  it('a page being read in is not handed out half-filled: the second reader waits, one pread in all', async () => {
    await withRelation(4, async ({ io, engine, rel }) => {
      const gate = io.hold('pread', isRel);
      const before = engine.ioCounts().pread;
      let secondDone = false;
      const first = rel.read(ForkNumber.MAIN, 2);
      await gate.reached;
      const second = rel.read(ForkNumber.MAIN, 2).then((p) => {
        secondDone = true;
        return p;
      });
      for (let i = 0; i < 5; i++) await tick();
      expect(secondDone).toBe(false);
      engine.bufferPool.checkInvariants();
      gate.release();
      const [a, b] = await Promise.all([first, second]);
      expect(a[0]).toBe(3);
      expect(b[0]).toBe(3);
      expect(a[BS - 1]).toBe(3);
      expect(engine.ioCounts().pread - before).toBe(1);
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('a change of a page BufferSync is writing waits for the write (B3: it goes out from the pool, uncopied); the page stays dirty and the next checkpoint writes it', async () => {
    await withRelation(4, async ({ disk, io, engine, rel }) => {
      await engine.checkpoint();
      await rel.write(ForkNumber.MAIN, 1, pageOf(20));
      const gate = io.hold('pwrite', isRel);
      const ckpt = engine.checkpoint();
      await gate.reached; // BufferSync's write of block 1 is in flight, from the pool's memory
      let changed = false;
      const change = rel.write(ForkNumber.MAIN, 1, pageOf(30)).then(() => (changed = true));
      for (let i = 0; i < 5; i++) await tick();
      expect(changed).toBe(false); // waits for the write, as a content lock would
      expect((await rel.read(ForkNumber.MAIN, 1))[100]).toBe(20); // readable meanwhile (B8)
      gate.release();
      await change;
      const s1 = await ckpt;
      // The first checkpoint made 20 durable, whole.
      await withEngine({ dataDir: '/data', io: disk.crash('drop'), sharedBuffers: 16 }, async (after) => {
        expect((await after.relation(REL).read(ForkNumber.MAIN, 1))[100]).toBe(20);
      });
      expect(s1.buffersWritten).toBe(1);
      expect(engine.bufferPool.dirtyCount()).toBe(1);
      const s2 = await engine.checkpoint();
      expect(s2.buffersWritten).toBe(1);
      expect(engine.bufferPool.dirtyCount()).toBe(0);
      await withEngine({ dataDir: '/data', io: disk.crash('drop'), sharedBuffers: 16 }, async (after) => {
        expect((await after.relation(REL).read(ForkNumber.MAIN, 1))[100]).toBe(30);
      });
    });
  });

  it('behaviour 39 (first half): BufferSync writes only buffers dirty at checkpoint start', async () => {
    await withRelation(8, async ({ io, engine, rel }) => {
      await engine.checkpoint();
      await rel.write(ForkNumber.MAIN, 0, pageOf(50));
      await rel.write(ForkNumber.MAIN, 4, pageOf(51));
      const gate = io.hold('pwrite', isRel);
      const ckpt = engine.checkpoint();
      await gate.reached;
      await rel.write(ForkNumber.MAIN, 6, pageOf(52)); // dirtied after the start: not this checkpoint's
      gate.release();
      const s = await ckpt;
      expect(s.buffersWritten).toBe(2);
      expect(engine.bufferPool.dirtyCount()).toBe(1);
    });
  });

  it('a buffer being written by eviction is not evicted or reused; readers still find its page', async () => {
    await withRelation(17, async ({ io, engine, rel }) => {
      for (let b = 0; b < 16; b++) await rel.write(ForkNumber.MAIN, b, pageOf(100 + b)); // 16 dirty buffers
      expect(engine.bufferPool.dirtyCount()).toBe(16);
      const gate = io.hold('pwrite', isRel);
      const before = engine.ioCounts().pread;
      const miss = rel.read(ForkNumber.MAIN, 16); // needs a victim; every buffer is dirty
      await gate.reached;
      engine.bufferPool.checkInvariants();
      // Every old page, the one under write included, is still there: hits, no reads.
      for (let b = 0; b < 16; b++) expect((await rel.read(ForkNumber.MAIN, b))[0]).toBe(100 + b);
      expect(engine.ioCounts().pread).toBe(before);
      gate.release();
      expect((await miss)[0]).toBe(17);
      expect(engine.ioCounts().pread - before).toBe(1);
      expect(engine.bufferPool.dirtyCount()).toBe(15);
      expect(engine.bufferPool.stats.evictionWrites).toBe(1);
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('a write failure fails the checkpoint and leaves the buffers dirty; the next checkpoint writes them', async () => {
    await withRelation(6, async ({ disk, engine, rel }) => {
      await engine.checkpoint();
      for (let b = 0; b < 6; b += 2) await rel.write(ForkNumber.MAIN, b, pageOf(60 + b));
      disk.injectFault({ kind: 'pwrite', code: 'EIO', pathIncludes: '/base/5/42' });
      const err = await engine.checkpoint().catch((e: unknown) => e);
      expect(isLamstoreError(err)).toBe(true);
      expect(engine.failed).toBe(false); // a write error is not a sync error
      expect(engine.bufferPool.dirtyCount()).toBe(3);
      engine.bufferPool.checkInvariants(true);
      const s = await engine.checkpoint();
      expect(s.buffersWritten).toBe(3);
      expect(engine.bufferPool.dirtyCount()).toBe(0);
    });
  });

  it('truncate and drop discard buffers, dirty ones too; regrown blocks read as what extend wrote', async () => {
    await withRelation(10, async ({ engine, rel }) => {
      await engine.checkpoint();
      for (let b = 0; b < 10; b++) await rel.write(ForkNumber.MAIN, b, pageOf(70 + b));
      await rel.truncate(ForkNumber.MAIN, 5);
      expect(engine.bufferPool.dirtyCount()).toBe(5);
      expect(await rel.extend(ForkNumber.MAIN, pageOf(9))).toBe(5);
      expect((await rel.read(ForkNumber.MAIN, 5))[0]).toBe(9);
      const s = await engine.checkpoint();
      expect(s.buffersWritten).toBe(5);
      await rel.write(ForkNumber.MAIN, 0, pageOf(1));
      await rel.drop();
      expect(engine.bufferPool.dirtyCount()).toBe(0);
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('a write racing a truncation never leaves a buffer past the new end', async () => {
    await withRelation(20, async ({ io, engine, rel }) => {
      for (let b = 0; b < 16; b++) await rel.write(ForkNumber.MAIN, b, pageOf(1)); // pool full of dirty pages
      const gate = io.hold('pwrite', isRel);
      const w = rel.write(ForkNumber.MAIN, 18, pageOf(2)); // checked nblocks, now evicting
      await gate.reached;
      const t = rel.truncate(ForkNumber.MAIN, 10);
      gate.release();
      const [wr] = await Promise.allSettled([w, t]);
      await t;
      // The write either lost the race (BLOCK_OUT_OF_RANGE after re-checking) or landed before.
      if (wr.status === 'rejected') expect(isLamstoreError(wr.reason, ErrorCode.BLOCK_OUT_OF_RANGE)).toBe(true);
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(10);
      const s = await engine.checkpoint(); // would fail if a buffer for block 18 were left dirty
      expect(s.buffersWritten).toBeLessThanOrEqual(10);
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('concurrent extends get distinct block numbers', async () => {
    await withRelation(0, async ({ engine, rel }) => {
      const blocks = await Promise.all(Array.from({ length: 20 }, (_, i) => rel.extend(ForkNumber.MAIN, pageOf(i + 1))));
      expect([...blocks].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      for (let i = 0; i < 20; i++) expect((await rel.read(ForkNumber.MAIN, blocks[i]!))[0]).toBe(i + 1);
    });
  });

  it('more writes in flight than buffers: a write that finds every buffer pinned and none doing I/O is BUFFERS_EXHAUSTED, the others land', async () => {
    await withRelation(20, async ({ engine, rel }) => {
      const results = await Promise.allSettled(Array.from({ length: 17 }, (_, b) => rel.write(ForkNumber.MAIN, b, pageOf(100 + b))));
      const refused = results.flatMap((r, b) => (r.status === 'rejected' ? [{ b, err: r.reason as { code?: string; message?: string } }] : []));
      expect(refused.length).toBeGreaterThan(0);
      for (const { err } of refused) {
        expect(err.code).toBe(ErrorCode.BUFFERS_EXHAUSTED);
        expect(err.message).toContain('sharedBuffers (16)');
      }
      for (let b = 0; b < 17; b++) {
        const landed = !refused.some((r) => r.b === b);
        expect((await rel.read(ForkNumber.MAIN, b))[0]).toBe(landed ? 100 + b : b + 1);
      }
      engine.bufferPool.checkInvariants(true);
    });
  });
});
