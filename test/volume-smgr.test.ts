/**
 * Goal: the volume storage manager keeps forks as extents: registration
 * under id 5, every operation for all four forks, geometric growth with in-place extension,
 * one pread/pwritev per contiguous run, freed space held back until a completed checkpoint,
 * VOLUME_FULL without loss. Method: an Engine on SimDisk with only the volume extension; the
 * storage manager is called directly (no buffer pool), pages carry checksums set by the test;
 * I/O is counted with engine.ioCounts(), and Volume.checkInvariants() runs after each step.
 */
import { describe, expect, it } from 'vitest';
import { ForkNumber, verifyPageChecksum } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import type { ForkNumber as Fork } from '../engine/index.js';
import { EXTENT_BLOCKS_FIRST } from '../volume/index.js';
import { makePage, openVolumeEngine, rel, writePages } from './helpers/volume.js';
import { SMALL_BS } from './helpers/engine.js';

const VOL = '/vol/lam.vol';

async function fresh(sizeBytes = 4 * 1024 * 1024) {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  const ve = await openVolumeEngine({ io: disk, dataDir: '/data', path: VOL, create: { sizeBytes } });
  return { disk, ...ve };
}

describe('volume storage manager', () => {
  it('registers sync handler "volume" with id 5 and storage manager "volume"', async () => {
    const { engine, smgr } = await fresh();
    expect(engine.syncHandlers().find((h) => h.name === 'volume')).toEqual({ id: 5, name: 'volume', builtin: false });
    expect(smgr.name).toBe('volume');
    await engine.close();
  });

  it('create, extend, read, write, writev, nblocks, truncate, unlink work for all four forks and survive reopen', async () => {
    const { disk, engine, smgr, volume } = await fresh();
    const r = rel(16384);
    const forks: Fork[] = [ForkNumber.MAIN, ForkNumber.FSM, ForkNumber.VISIBILITY_MAP, ForkNumber.INIT];
    for (const f of forks) {
      expect(await smgr.exists(r, f)).toBe(false);
      await smgr.create(r, f);
      expect(await smgr.exists(r, f)).toBe(true);
      for (let b = 0; b < 20; b++) await smgr.extend(r, f, b, makePage(r, f, b));
      volume.checkInvariants();
    }
    for (const f of forks) {
      await writePages(smgr, r, f, 3, [makePage(r, f, 3, 2)]);
      await writePages(smgr, r, f, 10, [makePage(r, f, 10, 2), makePage(r, f, 11, 2)]);
      expect(await smgr.nblocks(r, f)).toBe(20);
    }
    await smgr.truncate(r, ForkNumber.FSM, 5);
    await smgr.unlink(r, ForkNumber.INIT);
    await expect(smgr.read(r, ForkNumber.INIT, 0, new Uint8Array(SMALL_BS))).rejects.toMatchObject({ code: 'RELATION_NOT_FOUND' });
    await expect(smgr.read(r, ForkNumber.FSM, 5, new Uint8Array(SMALL_BS))).rejects.toMatchObject({ code: 'BLOCK_OUT_OF_RANGE' });
    await expect(writePages(smgr, r, ForkNumber.MAIN, 20, [makePage(r, 0, 20)])).rejects.toMatchObject({ code: 'BLOCK_OUT_OF_RANGE' });
    // A write finds its fork by relation number: a dropped fork, another database's relation of
    // the same number and a locator that is no locator are refused as before.
    await expect(writePages(smgr, r, ForkNumber.INIT, 0, [makePage(r, 3, 0)])).rejects.toMatchObject({ code: 'RELATION_NOT_FOUND' });
    await expect(writePages(smgr, { ...r, dbOid: r.dbOid + 1 }, ForkNumber.MAIN, 0, [makePage(r, 0, 0)])).rejects.toMatchObject({ code: 'RELATION_NOT_FOUND' });
    await expect(writePages(smgr, { ...r, spcOid: -1 }, ForkNumber.MAIN, 0, [makePage(r, 0, 0)])).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(writePages(smgr, r, 7 as ForkNumber, 0, [makePage(r, 0, 0)])).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    volume.checkInvariants();
    await engine.close();

    const again = await openVolumeEngine({ io: disk, dataDir: '/data', path: VOL });
    const buf = new Uint8Array(SMALL_BS);
    for (const f of [ForkNumber.MAIN, ForkNumber.VISIBILITY_MAP] as Fork[]) {
      expect(await again.smgr.nblocks(r, f)).toBe(20);
      for (let b = 0; b < 20; b++) {
        await again.smgr.read(r, f, b, buf);
        expect(Buffer.from(buf).equals(makePage(r, f, b, [3, 10, 11].includes(b) ? 2 : 1))).toBe(true);
      }
    }
    expect(await again.smgr.nblocks(r, ForkNumber.FSM)).toBe(5);
    expect(await again.smgr.exists(r, ForkNumber.INIT)).toBe(false);
    again.volume.checkInvariants();
    await again.engine.close();
  });

  it('growth is geometric: the first extent is at most 8 blocks and capacity doubles; free space after the last extent is used in place', async () => {
    // 6 MiB: the 500 blocks below, their reserve (a pool of 256 pages, V5) and room to spare.
    const { engine, smgr, volume } = await fresh(6 * 1024 * 1024);
    const a = rel(1);
    const b = rel(2);
    await smgr.create(a, 0);
    await smgr.create(b, 0);
    await smgr.extend(a, 0, 0, makePage(a, 0, 0));
    await smgr.extend(b, 0, 0, makePage(b, 0, 0));
    const first = volume.info().forks.find((f) => f.relNumber === 1)!;
    expect(first.extents.length).toBe(1);
    expect(first.extents[0]!.lengthBlocks).toBeLessThanOrEqual(EXTENT_BLOCKS_FIRST);
    // a and b interleave: a's second extent cannot follow its first (b sits there).
    for (let i = 1; i < 100; i++) {
      await smgr.extend(a, 0, i, makePage(a, 0, i));
      await smgr.extend(b, 0, i, makePage(b, 0, i));
    }
    const lens = volume.info().forks.find((f) => f.relNumber === 1)!.extents.map((e) => e.lengthBlocks);
    expect(lens).toEqual([8, 8, 16, 32, 64]);
    // Alone, c grows in place: one extent however far it grows (space after it stays free).
    const c = rel(3);
    await smgr.create(c, 0);
    for (let i = 0; i < 300; i++) await smgr.extend(c, 0, i, makePage(c, 0, i));
    const cx = volume.info().forks.find((f) => f.relNumber === 3)!.extents;
    expect(cx.length).toBe(1);
    expect(cx[0]!.lengthBlocks).toBeGreaterThanOrEqual(300);
    volume.checkInvariants();
    await engine.close();
  });

  it('consecutive blocks inside one extent are one pwritev; a read is one pread', async () => {
    const { engine, smgr } = await fresh();
    const a = rel(1);
    await smgr.create(a, 0);
    for (let i = 0; i < 8; i++) await smgr.extend(a, 0, i, makePage(a, 0, i));
    const before = engine.ioCounts();
    await writePages(smgr, a, 0, 0, Array.from({ length: 8 }, (_, i) => makePage(a, 0, i, 3)));
    const buf = new Uint8Array(SMALL_BS);
    await smgr.read(a, 0, 5, buf);
    const after = engine.ioCounts();
    expect(after.pwrite - before.pwrite).toBe(1);
    expect(after.pread - before.pread).toBe(1);
    expect(verifyPageChecksum(buf, 5)).toBe(true);
    await engine.close();
  });

  it('writeBuffers writes a batch of pages of different forks as one run: one pwritev (copy-on-write)', async () => {
    const { engine, smgr } = await fresh();
    const a = rel(1);
    const b = rel(2);
    await smgr.create(a, 0);
    await smgr.create(b, 0);
    for (let i = 0; i < 8; i++) await smgr.extend(a, 0, i, makePage(a, 0, i));
    for (let i = 0; i < 8; i++) await smgr.extend(b, 0, i, makePage(b, 0, i));
    const items = [
      ...Array.from({ length: 8 }, (_, i) => ({ rel: a, fork: 0 as Fork, blockNum: i, page: makePage(a, 0, i, 2) })),
      ...Array.from({ length: 8 }, (_, i) => ({ rel: b, fork: 0 as Fork, blockNum: i, page: makePage(b, 0, i, 2) })),
    ];
    const before = engine.ioCounts();
    const written = await smgr.writeBuffers(items, 'checkpoint'); // in tag order: one stream of new blocks
    expect(written).toEqual({ writes: 1, runs: 1, relocated: 16 });
    expect(engine.ioCounts().pwrite - before.pwrite).toBe(1);
    const stats = await engine.checkpoint();
    expect(stats.tagsDispatched.volume).toBe(2);
    await engine.close();
  });

  it('space freed by truncate or drop is reused only after the next completed checkpoint', async () => {
    const { engine, smgr, volume } = await fresh(256 * 1024); // 64 blocks
    const a = rel(1);
    await smgr.create(a, 0);
    for (let i = 0; i < 16; i++) await smgr.extend(a, 0, i, makePage(a, 0, i));
    await engine.checkpoint();
    const freeBefore = volume.info().freeBlocks;
    await smgr.truncate(a, 0, 4);
    const mid = volume.info();
    expect(mid.freeBlocks).toBe(freeBefore);
    expect(mid.pendingFreeBlocks).toBe(12); // the durable catalog still names blocks 4..15
    // The old space is not available yet: a new fork grows only until the volume is full.
    const b = rel(2);
    await smgr.create(b, 0);
    const fill = async (): Promise<number> => {
      for (let i = await smgr.nblocks(b, 0); ; i++) {
        try {
          await smgr.extend(b, 0, i, makePage(b, 0, i));
        } catch (err) {
          expect((err as { code: string }).code).toBe('VOLUME_FULL');
          return smgr.nblocks(b, 0);
        }
      }
    };
    const before = await fill();
    volume.checkInvariants();
    await engine.checkpoint();
    expect(volume.info().pendingFreeBlocks).toBe(0);
    // Released: b grows further (by half of what a gave up: each block b adds is also one more
    // block the reserve keeps for relocating it, V5).
    expect(await fill()).toBeGreaterThan(before);
    volume.checkInvariants();
    await engine.close();
  });

  it('VOLUME_FULL fails only the write that needed space; the reserve keeps the checkpoint possible; everything written stays intact and durable', async () => {
    const { disk, engine, smgr, volume } = await fresh(256 * 1024);
    const rels = [rel(1), rel(2), rel(3)];
    for (const r of rels) await smgr.create(r, 0);
    const written = new Map<number, number>();
    let failures = 0;
    for (let i = 0; i < 100; i++) {
      for (const r of rels) {
        const n = written.get(r.relNumber) ?? 0;
        try {
          await smgr.extend(r, 0, n, makePage(r, 0, n));
          written.set(r.relNumber, n + 1);
        } catch (err) {
          expect((err as { code: string }).code).toBe('VOLUME_FULL');
          expect((err as Error).message).toContain(VOL);
          failures++;
        }
      }
      volume.checkInvariants();
    }
    expect(failures).toBeGreaterThan(0);
    // V5: what is left free is the reserve: one block per page the pool could hold dirty (all of
    // them here: 256 buffers) plus the catalog. Rewriting every page, as a checkpoint must when
    // every page is dirty, fits in it.
    let live = 0;
    for (const n of written.values()) live += n;
    expect(volume.info().freeBlocks).toBeGreaterThanOrEqual(live);
    // An eviction would be refused now (it would eat the reserve); BufferSync's writes draw on it.
    await expect(writePages(smgr, rels[0]!, 0, 0, [makePage(rels[0]!, 0, 0, 2)])).rejects.toMatchObject({ code: 'VOLUME_FULL' });
    for (const r of rels) {
      await smgr.writeBuffers(Array.from({ length: written.get(r.relNumber)! }, (_, b) => ({ rel: r, fork: 0 as Fork, blockNum: b, page: makePage(r, 0, b, 2) })), 'checkpoint');
    }
    await engine.checkpoint(); // the catalog still fits: the checkpoint succeeds
    volume.checkInvariants();
    await engine.close();
    const again = await openVolumeEngine({ io: disk, dataDir: '/data', path: VOL });
    const buf = new Uint8Array(SMALL_BS);
    for (const r of rels) {
      expect(await again.smgr.nblocks(r, 0)).toBe(written.get(r.relNumber));
      for (let b = 0; b < written.get(r.relNumber)!; b++) {
        await again.smgr.read(r, 0, b, buf);
        expect(Buffer.from(buf).equals(makePage(r, 0, b, 2))).toBe(true);
      }
    }
    await again.engine.close();
  });

  it('a read-only volume reads but refuses writes', async () => {
    const { disk, engine, smgr } = await fresh();
    const a = rel(1);
    await smgr.create(a, 0);
    await smgr.extend(a, 0, 0, makePage(a, 0, 0));
    await engine.close();
    const ro = await openVolumeEngine({ io: disk, dataDir: '/data2', path: VOL, readOnly: true });
    const buf = new Uint8Array(SMALL_BS);
    await ro.smgr.read(a, 0, 0, buf);
    expect(Buffer.from(buf).equals(makePage(a, 0, 0))).toBe(true);
    await expect(writePages(ro.smgr, a, 0, 0, [buf])).rejects.toMatchObject({ code: 'VOLUME_READ_ONLY', path: VOL });
    await ro.engine.close();
  });

  it('extending past the end fills the gap with zero pages (reused space never shows old data)', async () => {
    const { engine, smgr } = await fresh();
    const a = rel(1);
    await smgr.create(a, 0);
    await smgr.extend(a, 0, 5, makePage(a, 0, 5));
    expect(await smgr.nblocks(a, 0)).toBe(6);
    const buf = new Uint8Array(SMALL_BS);
    await smgr.read(a, 0, 2, buf);
    expect(buf.every((x) => x === 0)).toBe(true);
    await engine.close();
  });
});
