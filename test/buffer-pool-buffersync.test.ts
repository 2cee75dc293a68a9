/**
 * Goal: BufferSync writes in the order and with the coalescing the design fixes (behaviour 39):
 * md buffers sorted by (tablespace, relNumber, fork, block) with tablespaces
 * interleaved in proportion to their buffer counts; consecutive blocks of one file become one
 * vectored write, split at segment boundaries; every storage manager gets its pages through the
 * one write contract (writeBuffers) in BufferSync order, in batches of at most 256.
 * Method: Engine on SimDisk behind GatedIO, which records every write (path, offset, length) in
 * issue order; a fake in-memory storage manager registered by a test extension records its
 * writeBuffers calls. Counts, never timings.
 */
import { describe, expect, it } from 'vitest';
import { ForkNumber, type PageWrite, type RelFileLocator, type StorageManager } from '../engine/index.js';
import { SimDisk, WRITE_COMBINE_MAX_BLOCKS } from '../engine/testing.js';
import { GatedIO } from './helpers/gated-io.js';
import { withEngine, BS, pageOf, locator } from './helpers/engine.js';


describe('BufferSync', () => {
  it('behaviour 39: (tablespace, relNumber, fork, block) order, tablespaces interleaved in proportion', async () => {
    const io = new GatedIO(new SimDisk());
    await withEngine({ dataDir: '/data', io, sharedBuffers: 64 }, async (engine) => {
      // Tablespace 1663: relations 20 and 10 (12 dirty buffers); tablespace 16500: relation 15 (6).
      const rels: [RelFileLocator, ForkNumber][] = [
        [locator(20), ForkNumber.MAIN],
        [{ spcOid: 16500, dbOid: 5, relNumber: 15 }, ForkNumber.MAIN],
        [locator(10), ForkNumber.FSM],
        [locator(10), ForkNumber.MAIN],
      ];
      for (const [loc, fork] of rels) {
        const rel = engine.relation(loc);
        await rel.create(fork);
        for (let b = 0; b < 12; b++) await rel.extend(fork, pageOf(1));
      }
      await engine.checkpoint();
      // Every other block, so no two dirty blocks are adjacent: one write per buffer. Written
      // in scrambled order.
      const dirty: [RelFileLocator, ForkNumber, number][] = [];
      for (const [loc, fork] of rels) {
        const n = loc.relNumber === 10 ? 3 : 6;
        for (let i = n - 1; i >= 0; i--) dirty.push([loc, fork, i * 2]);
      }
      for (const [loc, fork, b] of dirty) await engine.relation(loc).write(fork, b, pageOf(2));
      io.writes.length = 0;
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(18);
      expect(stats.rangesWritten).toBe(18);
      const order = io.writes.map((w) => `${w.path.replace('/data/', '')}@${w.offsetBytes / BS}`);
      const inA = order.filter((o) => o.startsWith('base/'));
      const inB = order.filter((o) => o.startsWith('pg_tblspc/'));
      expect(inA).toEqual([
        ...[0, 2, 4].map((b) => `base/5/10@${b}`),
        ...[0, 2, 4].map((b) => `base/5/10_fsm@${b}`),
        ...[0, 2, 4, 6, 8, 10].map((b) => `base/5/20@${b}`),
      ]);
      expect(inB).toEqual([0, 2, 4, 6, 8, 10].map((b) => `pg_tblspc/16500/PG_17_202406281/5/15@${b}`));
      // Proportional interleaving: A's progress slice is 18/12, B's 18/6; they never drift
      // apart by more than one slice of the larger.
      let a = 0;
      let b = 0;
      for (const o of order) {
        if (o.startsWith('base/')) a++;
        else b++;
        expect(Math.abs(a * (18 / 12) - b * (18 / 6))).toBeLessThanOrEqual(3);
      }
    });
  });

  it('consecutive blocks of one file coalesce into one vectored write, split at md segment boundaries', async () => {
    const io = new GatedIO(new SimDisk());
    await withEngine({ dataDir: '/data', io, sharedBuffers: 64, relSegBlocks: 4 }, async (engine) => {
      const rel = engine.relation(locator(30));
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 14; b++) await rel.extend(ForkNumber.MAIN);
      await engine.checkpoint();
      for (const b of [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13]) await rel.write(ForkNumber.MAIN, b, pageOf(b + 1));
      io.writes.length = 0;
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(12);
      // [0-3] [4-7] [8-9] (segment boundaries) and [12-13] (a gap).
      expect(stats.rangesWritten).toBe(4);
      // The data files' writes; the control file's one 512-byte record ends every checkpoint.
      const data = io.writes.filter((w) => w.path.startsWith('/data/base/'));
      expect(data.map((w) => [w.path.replace('/data/', ''), w.offsetBytes / BS, w.lengthBytes / BS])).toEqual([
        ['base/5/30', 0, 4],
        ['base/5/30.1', 0, 4],
        ['base/5/30.2', 0, 2],
        ['base/5/30.3', 0, 2],
      ]);
      expect(io.writes.length).toBe(data.length + 1);
      expect(stats.bytesWritten).toBe(12 * BS + 512);
      for (const b of [0, 5, 9, 13]) expect((await rel.read(ForkNumber.MAIN, b))[100]).toBe(b + 1);
    });
  });

  it('a storage manager gets its pages through writeBuffers in BufferSync (tag) order, batches of at most 256, checksums set', async () => {
    const batches: PageWrite[][] = [];
    const tagOrder = (rel: RelFileLocator, block: number) => rel.relNumber * 1000 + block;
    const pages = new Map<string, Uint8Array>();
    const nblocks = new Map<string, number>();
    const fk = (rel: RelFileLocator, fork: number) => `${rel.relNumber}/${fork}`;
    const fake: StorageManager = {
      name: 'fake',
      async create(rel, fork) {
        if (!nblocks.has(fk(rel, fork))) nblocks.set(fk(rel, fork), 0);
      },
      async exists(rel, fork) {
        return nblocks.has(fk(rel, fork));
      },
      async extend(rel, fork, blockNum, page) {
        pages.set(`${fk(rel, fork)}/${blockNum}`, page.slice());
        nblocks.set(fk(rel, fork), blockNum + 1);
      },
      async read(rel, fork, blockNum, into) {
        into.set(pages.get(`${fk(rel, fork)}/${blockNum}`)!);
      },
      open() {},
      async nblocks(rel, fork) {
        return nblocks.get(fk(rel, fork)) ?? 0;
      },
      async truncate() {},
      async unlink() {},
      async immediateSync() {},
      async registerSync() {},
      async writeBuffers(items) {
        batches.push(items.map((i) => ({ ...i, page: i.page.slice() })));
        for (const i of items) pages.set(`${fk(i.rel, i.fork)}/${i.blockNum}`, i.page.slice());
        return { writes: 1, runs: 1, relocated: 0 };
      },
    };
    const ext = { name: 'fake', init: (ctx: { registerStorageManager: (n: string, f: () => StorageManager) => void }) => ctx.registerStorageManager('fake', () => fake) };
    await withEngine({ dataDir: '/data', io: new SimDisk(), sharedBuffers: 512, preload: [ext] }, async (engine) => {
      for (let r = 1; r <= 4; r++) {
        const rel = engine.relation(locator(r), { storage: 'fake' });
        await rel.create(ForkNumber.MAIN);
        for (let b = 0; b < 100; b++) await rel.extend(ForkNumber.MAIN);
        for (let b = 99; b >= 0; b--) await rel.write(ForkNumber.MAIN, b, pageOf(r));
      }
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(400);
      expect(batches.map((b) => b.length)).toEqual([WRITE_COMBINE_MAX_BLOCKS, 400 - WRITE_COMBINE_MAX_BLOCKS]);
      expect(stats.rangesWritten).toBe(2);
      const order = batches.flat().map((i) => tagOrder(i.rel, i.blockNum));
      expect(order).toEqual([...order].sort((x, y) => x - y));
      // Pages arrive with their checksums set, as md's would.
      const { verifyPageChecksum } = await import('../engine/page.js');
      for (const i of batches.flat()) expect(verifyPageChecksum(i.page, i.blockNum)).toBe(true);
    });
  });

  it('a relation dropped while BufferSync writes another storage manager: its selected buffers, by then given up, are ordered by the tags they were selected with and skipped', async () => {
    const written: PageWrite[] = [];
    const fk = (rel: RelFileLocator, fork: number) => `${rel.relNumber}/${fork}`;
    const nblocks = new Map<string, number>();
    const fake: StorageManager = {
      name: 'zfake', // after md: BufferSync takes its storage managers in name order
      async create(rel, fork) {
        if (!nblocks.has(fk(rel, fork))) nblocks.set(fk(rel, fork), 0);
      },
      async exists(rel, fork) {
        return nblocks.has(fk(rel, fork));
      },
      async extend(rel, fork, blockNum) {
        nblocks.set(fk(rel, fork), blockNum + 1);
      },
      async read(_rel, _fork, _blockNum, into) {
        into.fill(0);
      },
      open() {},
      async nblocks(rel, fork) {
        return nblocks.get(fk(rel, fork)) ?? 0;
      },
      async truncate() {},
      async unlink(rel, fork) {
        for (const f of fork === undefined ? [0, 1, 2, 3] : [fork]) nblocks.delete(fk(rel, f));
      },
      async immediateSync() {},
      async registerSync() {},
      async writeBuffers(items) {
        written.push(...items);
        return { writes: 1, runs: 1, relocated: 0 };
      },
    };
    const ext = { name: 'zfake', init: (ctx: { registerStorageManager: (n: string, f: () => StorageManager) => void }) => ctx.registerStorageManager('zfake', () => fake) };
    const io = new GatedIO(new SimDisk());
    await withEngine({ dataDir: '/data', io, sharedBuffers: 64, preload: [ext] }, async (engine) => {
      const md = engine.relation(locator(1));
      await md.create(ForkNumber.MAIN);
      for (let b = 0; b < 4; b++) await md.extend(ForkNumber.MAIN);
      // Two tablespaces, so the fake's buffers go through the interleaving too.
      const kept = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 2 }, { storage: 'zfake' });
      const dropped = engine.relation({ spcOid: 16500, dbOid: 5, relNumber: 3 }, { storage: 'zfake' });
      for (const rel of [kept, dropped]) {
        await rel.create(ForkNumber.MAIN);
        for (let b = 0; b < 4; b++) await rel.extend(ForkNumber.MAIN);
      }
      await engine.checkpoint();
      written.length = 0;
      for (const rel of [md, kept, dropped]) for (let b = 0; b < 4; b++) await rel.write(ForkNumber.MAIN, b, pageOf(7));
      const gate = io.hold('pwrite', (path) => path.includes('/base/5/1'));
      const checkpoint = engine.checkpoint();
      await gate.reached; // BufferSync has selected all 12 buffers and writes md's
      await dropped.drop(); // the fake's 4 buffers of relation 3 are given up
      gate.release();
      const stats = await checkpoint;
      expect(stats.buffersWritten).toBe(8);
      expect(written.map((w) => `${w.rel.relNumber}/${w.blockNum}`)).toEqual(['2/0', '2/1', '2/2', '2/3']);
      engine.bufferPool.checkInvariants(true);
    });
  });
});
