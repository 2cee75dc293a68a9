/**
 * Goal: `rel.readInto(fork, block, dst)` (DESIGN.md section 6) fills the caller's array with the
 * same bytes `read` returns, refuses a bad `dst`, honours read's errors (BAD_ARGUMENT,
 * BLOCK_OUT_OF_RANGE, RELATION_NOT_FOUND, ENGINE_CLOSED, CHECKSUM_MISMATCH on a miss), never
 * leaves part of a page in `dst`, and on a buffer hit hands back `dst` itself with no I/O.
 * Also relation.ts R5/R6: the nblocks a handle caches never lets a block past a truncation
 * through, and a read racing a truncation leaves no buffer behind past the new end.
 * Method: Engines on SimDisk (md and volume); hits and misses are counted with the pool's
 * statistics and preads with engine.ioCounts(); pages are damaged on the SimDisk image between
 * a close and a reopen; GatedIO holds md's ftruncate to run a read inside a truncation.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, ForkNumber, isLamstoreError } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { openVolumeReadOnly, volumeExtension } from '../volume/index.js';
import { GatedIO } from './helpers/gated-io.js';
import { BS, REL, codeOf, withEngine } from './helpers/engine.js';

const VOL = '/vol/read-into.lamvol';
type Storage = 'md' | 'volume';

/** A page whose bytes depend on `seed` everywhere (bytes 8-11 are the engine's checksum). */
function seededPage(seed: number): Uint8Array {
  const p = new Uint8Array(BS);
  for (let i = 0; i < BS; i++) p[i] = (i * 13 + seed * 101) & 0xff;
  return p;
}

async function open(disk: SimDisk, storage: Storage, sharedBuffers = 64): Promise<Engine> {
  const preload = storage === 'volume' ? [volumeExtension({ path: VOL, create: { sizeBytes: 8 * 1024 * 1024 } })] : [];
  if (storage === 'volume') await disk.mkdir('/vol');
  return Engine.open({ dataDir: '/data', io: disk, sharedBuffers, preload });
}

async function withRelation(storage: Storage, blocks: number, fn: (e: Engine, rel: ReturnType<Engine['relation']>, disk: SimDisk) => Promise<void>): Promise<void> {
  const disk = new SimDisk();
  const engine = await open(disk, storage);
  try {
    const rel = engine.relation(REL, { storage });
    await rel.create(ForkNumber.MAIN);
    for (let b = 0; b < blocks; b++) await rel.extend(ForkNumber.MAIN, seededPage(b));
    await fn(engine, rel, disk);
    engine.bufferPool.checkInvariants(true);
  } finally {
    await engine.close();
  }
}

describe.each<Storage>(['md', 'volume'])('rel.readInto over %s', (storage) => {
  it('fills dst with the bytes read returns and resolves to dst itself, on a miss and on a hit', async () => {
    await withRelation(storage, 6, async (engine, rel) => {
      await rel.write(ForkNumber.MAIN, 4, seededPage(40));
      await engine.checkpoint();
      const dst = new Uint8Array(BS);
      for (let b = 0; b < 6; b++) {
        const copy = await rel.read(ForkNumber.MAIN, b);
        dst.fill(0xee);
        expect(await rel.readInto(ForkNumber.MAIN, b, dst)).toBe(dst);
        expect(Buffer.from(dst).equals(Buffer.from(copy))).toBe(true);
      }
      // A Buffer is a Uint8Array: accepted as dst too.
      const buf = Buffer.alloc(BS);
      expect(await rel.readInto(ForkNumber.MAIN, 4, buf)).toBe(buf);
      expect(buf.equals(Buffer.from(await rel.read(ForkNumber.MAIN, 4)))).toBe(true);
    });
  });

  it('reads from disk through readInto match read after a reopen (miss path, checksum verified)', async () => {
    const disk = new SimDisk();
    let engine = await open(disk, storage);
    const rel = engine.relation(REL, { storage });
    await rel.create(ForkNumber.MAIN);
    for (let b = 0; b < 5; b++) await rel.extend(ForkNumber.MAIN, seededPage(b + 7));
    await rel.extend(ForkNumber.MAIN); // an all-zero page is valid
    await engine.close();
    engine = await open(disk, storage);
    try {
      const r = engine.relation(REL, { storage });
      const dst = new Uint8Array(BS);
      const misses = engine.bufferPool.stats.misses;
      for (let b = 0; b < 6; b++) {
        await r.readInto(ForkNumber.MAIN, b, dst);
        const expected = b < 5 ? seededPage(b + 7) : new Uint8Array(BS);
        expected.set(dst.subarray(8, 12), 8); // the checksum bytes are the engine's
        expect(Buffer.from(dst).equals(Buffer.from(expected))).toBe(true);
      }
      expect(engine.bufferPool.stats.misses - misses).toBe(6);
    } finally {
      await engine.close();
    }
  });

  it('a hit resolves to dst itself, counts one pool hit and no miss, and issues no pread', async () => {
    await withRelation(storage, 4, async (engine, rel) => {
      const dst = new Uint8Array(BS);
      await rel.readInto(ForkNumber.MAIN, 2, dst); // resident now (extend does not load the pool)
      const { hits, misses } = engine.bufferPool.stats;
      const preads = engine.ioCounts().pread;
      for (let i = 0; i < 100; i++) expect(await rel.readInto(ForkNumber.MAIN, 2, dst)).toBe(dst);
      expect(engine.bufferPool.stats.hits - hits).toBe(100);
      expect(engine.bufferPool.stats.misses - misses).toBe(0);
      expect(engine.ioCounts().pread - preads).toBe(0);
      expect(dst[100]).toBe(seededPage(2)[100]);
    });
  });

  it.each([
    ['4096 bytes', () => new Uint8Array(BS / 2)],
    ['8193 bytes', () => new Uint8Array(BS + 1)],
    ['empty', () => new Uint8Array(0)],
    ['an ArrayBuffer', () => new ArrayBuffer(BS)],
    ['a Uint16Array of 8192 bytes', () => new Uint16Array(BS / 2)],
    ['a DataView', () => new DataView(new ArrayBuffer(BS))],
    ['a plain array', () => Array.from({ length: BS }, () => 0)],
    ['null', () => null],
    ['undefined', () => undefined],
  ])('dst %s is BAD_ARGUMENT, and nothing is read', async (_name, make) => {
    await withRelation(storage, 2, async (engine, rel) => {
      const preads = engine.ioCounts().pread;
      const { hits, misses } = engine.bufferPool.stats;
      const err = await rel.readInto(ForkNumber.MAIN, 0, make() as Uint8Array).catch((e: unknown) => e);
      expect(isLamstoreError(err, ErrorCode.BAD_ARGUMENT)).toBe(true);
      expect((err as Error).message).toMatch(/dst must be a Uint8Array of 8192 bytes/);
      expect(engine.ioCounts().pread).toBe(preads);
      expect(engine.bufferPool.stats).toMatchObject({ hits, misses });
    });
  });

  it('bad fork or block numbers are BAD_ARGUMENT, delivered as a rejection (never a synchronous throw)', async () => {
    await withRelation(storage, 2, async (_engine, rel) => {
      const dst = new Uint8Array(BS);
      for (const [fork, block] of [[7, 0], [-1, 0], [0, -1], [0, 1.5], [0, 0xffffffff], [0, 2 ** 32]] as const) {
        let p: Promise<unknown> | undefined;
        expect(() => (p = rel.readInto(fork as ForkNumber, block, dst))).not.toThrow();
        expect(await codeOf(p!)).toBe(ErrorCode.BAD_ARGUMENT);
      }
    });
  });

  it('a block at or past nblocks is BLOCK_OUT_OF_RANGE; a fork never created is RELATION_NOT_FOUND; dst untouched', async () => {
    await withRelation(storage, 3, async (_engine, rel) => {
      const dst = new Uint8Array(BS).fill(0x5a);
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 3, dst))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 1_000_000, dst))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      expect(await codeOf(rel.readInto(ForkNumber.FSM, 0, dst))).toBe(ErrorCode.RELATION_NOT_FOUND);
      expect(dst.every((b) => b === 0x5a)).toBe(true);
      // The block the last extend adds becomes readable at once (the cached nblocks is a floor).
      await rel.readInto(ForkNumber.MAIN, 2, dst);
      expect(await rel.extend(ForkNumber.MAIN, seededPage(3))).toBe(3);
      await rel.readInto(ForkNumber.MAIN, 3, dst);
      expect(dst[100]).toBe(seededPage(3)[100]);
    });
  });

  it('after truncate a block that was resident and in range is BLOCK_OUT_OF_RANGE; after drop RELATION_NOT_FOUND', async () => {
    await withRelation(storage, 5, async (_engine, rel) => {
      const dst = new Uint8Array(BS);
      for (let b = 0; b < 5; b++) await rel.readInto(ForkNumber.MAIN, b, dst); // all resident, nblocks cached
      await rel.truncate(ForkNumber.MAIN, 2);
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 4, dst))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 2, dst))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      expect(await rel.readInto(ForkNumber.MAIN, 1, dst)).toBe(dst);
      // Another handle on the same relation truncates: this handle's cache must not let block 1 through.
      const other = _engine.relation(REL, { storage });
      await other.truncate(ForkNumber.MAIN, 1);
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 1, dst))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      await other.drop();
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 0, dst))).toBe(ErrorCode.RELATION_NOT_FOUND);
    });
  });

  it('a page damaged on disk is CHECKSUM_MISMATCH on the miss, dst untouched, and stays refused', async () => {
    const disk = new SimDisk();
    let engine = await open(disk, storage);
    const rel = engine.relation(REL, { storage });
    await rel.create(ForkNumber.MAIN);
    for (let b = 0; b < 3; b++) await rel.extend(ForkNumber.MAIN, seededPage(b + 1));
    await engine.close();
    // Where block 1 lives: in md its own file's block 1; in the volume, where its extent puts it.
    const physical = storage === 'volume' ? (await openVolumeReadOnly(VOL, { io: disk })).forks[0]!.extents[0]!.startBlock + 1 : 1;
    const file = storage === 'volume' ? VOL : '/data/base/5/16384';
    const bytes = disk.readFileNow(file)!;
    bytes[physical * BS + 500] = bytes[physical * BS + 500]! ^ 0x10;
    disk.putFile(file, bytes);
    engine = await open(disk, storage);
    try {
      const r = engine.relation(REL, { storage });
      const dst = new Uint8Array(BS).fill(0x33);
      for (let i = 0; i < 2; i++) {
        const err = await r.readInto(ForkNumber.MAIN, 1, dst).catch((e: unknown) => e);
        expect(isLamstoreError(err, ErrorCode.CHECKSUM_MISMATCH)).toBe(true);
        expect((err as Error).message).toMatch(/relation 1663\/5\/16384 fork main block 1/);
        expect(dst.every((b) => b === 0x33)).toBe(true);
      }
      // The neighbours are fine.
      await r.readInto(ForkNumber.MAIN, 2, dst);
      expect(dst[100]).toBe(seededPage(3)[100]);
      engine.bufferPool.checkInvariants(true);
    } finally {
      await engine.close();
    }
  });

  it('a closed engine is ENGINE_CLOSED', async () => {
    const disk = new SimDisk();
    const engine = await open(disk, storage);
    const rel = engine.relation(REL, { storage });
    await rel.create(ForkNumber.MAIN);
    await rel.extend(ForkNumber.MAIN, seededPage(1));
    await rel.readInto(ForkNumber.MAIN, 0, new Uint8Array(BS));
    await engine.close();
    expect(await codeOf(rel.readInto(ForkNumber.MAIN, 0, new Uint8Array(BS)))).toBe(ErrorCode.ENGINE_CLOSED);
  });
});

describe('readInto racing a truncation (relation.ts R5)', () => {
  it('a read that loads a block while md is truncating it leaves no stale buffer behind for a later extend', async () => {
    const disk = new SimDisk();
    const io = new GatedIO(disk);
    await withEngine({ dataDir: '/data', io, sharedBuffers: 16 }, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 4; b++) await rel.extend(ForkNumber.MAIN, seededPage(b + 1));
      const gate = io.hold('ftruncate', (p) => p.endsWith('/base/5/16384'));
      const truncation = rel.truncate(ForkNumber.MAIN, 2);
      await gate.reached; // buffers past block 2 discarded, the file not cut yet: nblocks still 4
      const dst = new Uint8Array(BS);
      await rel.readInto(ForkNumber.MAIN, 3, dst); // a miss: block 3 is loaded from the file
      expect(dst[100]).toBe(seededPage(4)[100]);
      gate.release();
      await truncation;
      expect(await codeOf(rel.readInto(ForkNumber.MAIN, 3, dst))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      expect(await rel.extend(ForkNumber.MAIN, seededPage(20))).toBe(2);
      expect(await rel.extend(ForkNumber.MAIN, seededPage(30))).toBe(3);
      // Block 3 is the new page, not the one loaded during the truncation.
      await rel.readInto(ForkNumber.MAIN, 3, dst);
      expect(dst[100]).toBe(seededPage(30)[100]);
      engine.bufferPool.checkInvariants(true);
    });
  });
});
