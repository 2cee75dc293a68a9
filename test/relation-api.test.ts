/**
 * Goal: the relation API of DESIGN.md section 6 over md does what it promises, and refuses bad
 * input with the right LamstoreError code without writing anything.
 * Method: a real Engine on a temporary directory (and SimDisk where we count calls); every
 * refusal is followed by a check that the files and I/O counters did not change.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, ForkNumber, verifyPageChecksum, type Engine, type Relation, type RelFileLocator } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { tempDir } from './helpers/index.js';
import { BS, REL, codeOf, onDisk, pageOf as page, withEngine, type WithEngineExpectations } from './helpers/engine.js';

describe('relation API', () => {
  it('create, extend, read a copy, write, nblocks, truncate, drop', async () => {
    await withEngine({ dataDir: await tempDir(), sharedBuffers: 16, relSegBlocks: 4 }, async (engine) => {
      const rel = engine.relation(REL);
      expect(await rel.exists(ForkNumber.MAIN)).toBe(false);
      await rel.create(ForkNumber.MAIN);
      expect(await rel.exists(ForkNumber.MAIN)).toBe(true);
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(0);
      for (let i = 0; i < 10; i++) expect(await rel.extend(ForkNumber.MAIN, page(i + 1))).toBe(i);
      expect(await rel.extend(ForkNumber.MAIN)).toBe(10); // zero page
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(11);
      const a = await rel.read(ForkNumber.MAIN, 3);
      expect(a[0]).toBe(4);
      expect(a[100]).toBe(4);
      a.fill(99); // the caller's copy; the pool's page is untouched
      expect((await rel.read(ForkNumber.MAIN, 3))[0]).toBe(4);
      expect((await rel.read(ForkNumber.MAIN, 10)).every((b) => b === 0)).toBe(true);
      await rel.write(ForkNumber.MAIN, 3, page(42));
      expect((await rel.read(ForkNumber.MAIN, 3))[200]).toBe(42);
      await rel.truncate(ForkNumber.MAIN, 2);
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(2);
      expect(await codeOf(rel.read(ForkNumber.MAIN, 3))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
      expect(await rel.extend(ForkNumber.MAIN, page(7))).toBe(2);
      expect((await rel.read(ForkNumber.MAIN, 2))[0]).toBe(7);
      await rel.drop();
      expect(await rel.exists(ForkNumber.MAIN)).toBe(false);
      expect(await codeOf(rel.read(ForkNumber.MAIN, 0))).toBe(ErrorCode.RELATION_NOT_FOUND);
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('pages survive close and reopen (the shutdown checkpoint writes dirty buffers)', async () => {
    const options = { dataDir: await tempDir(), sharedBuffers: 16, relSegBlocks: 4 };
    await withEngine(options, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      for (let i = 0; i < 9; i++) await rel.extend(ForkNumber.MAIN);
      for (let i = 0; i < 9; i++) await rel.write(ForkNumber.MAIN, i, page(i + 10));
    });
    await withEngine(options, async (engine) => {
      const rel = engine.relation(REL);
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(9);
      for (let i = 0; i < 9; i++) expect((await rel.read(ForkNumber.MAIN, i))[0]).toBe(i + 10);
    });
  });

  describe('bad input: a clear LamstoreError and nothing written', () => {
    interface Setup {
      disk: SimDisk;
      engine: Engine;
      rel: Relation;
      /** The files' bytes, the pwrite count and the dirty buffers, before the refusals. */
      before: object;
      snapshot: () => object;
    }

    /** withEngine on a SimDisk with REL's main fork of two checkpointed pages. */
    async function withSetup(run: (s: Setup) => Promise<void>, expected: WithEngineExpectations = {}): Promise<void> {
      const disk = new SimDisk();
      await withEngine(
        onDisk(disk, { sharedBuffers: 16, relSegBlocks: 4 }),
        async (engine) => {
          const rel = engine.relation(REL);
          await rel.create(ForkNumber.MAIN);
          await rel.extend(ForkNumber.MAIN, page(1));
          await rel.extend(ForkNumber.MAIN, page(2));
          await engine.checkpoint();
          const snapshot = () => ({ files: disk.listFiles().map((f) => [f, Buffer.from(disk.readFileNow(f)!).toString('hex')]), writes: engine.ioCounts().pwrite, dirty: engine.bufferPool.dirtyCount() });
          await run({ disk, engine, rel, before: snapshot(), snapshot });
        },
        expected,
      );
    }

    it.each([
      ['negative', -1],
      ['fractional', 1.5],
      ['NaN', Number.NaN],
      ['2^32', 2 ** 32],
      ['InvalidBlockNumber', 0xffffffff],
      ['a string', '1' as unknown as number],
    ])('block number %s is BAD_ARGUMENT for read and write', async (_name, block) => {
      await withSetup(async ({ engine, rel, before, snapshot }) => {
        expect(await codeOf(rel.read(ForkNumber.MAIN, block))).toBe(ErrorCode.BAD_ARGUMENT);
        expect(await codeOf(rel.write(ForkNumber.MAIN, block, page(9)))).toBe(ErrorCode.BAD_ARGUMENT);
        expect(await codeOf(rel.truncate(ForkNumber.MAIN, block))).toBe(ErrorCode.BAD_ARGUMENT);
        expect(snapshot()).toEqual(before);
      });
    });

    it('reading or writing a block >= nblocks is BLOCK_OUT_OF_RANGE; truncating up too', async () => {
      await withSetup(async ({ engine, rel, before, snapshot }) => {
        expect(await codeOf(rel.read(ForkNumber.MAIN, 2))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
        expect(await codeOf(rel.read(ForkNumber.MAIN, 1000))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
        expect(await codeOf(rel.write(ForkNumber.MAIN, 2, page(9)))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
        expect(await codeOf(rel.truncate(ForkNumber.MAIN, 3))).toBe(ErrorCode.BLOCK_OUT_OF_RANGE);
        expect(snapshot()).toEqual(before);
      });
    });

    it('a page of the wrong length or type is BAD_ARGUMENT', async () => {
      await withSetup(async ({ engine, rel, before, snapshot }) => {
        for (const bad of [new Uint8Array(BS - 1), new Uint8Array(BS + 1), new Uint8Array(0), 'x' as unknown as Uint8Array, null as unknown as Uint8Array]) {
          expect(await codeOf(rel.write(ForkNumber.MAIN, 0, bad))).toBe(ErrorCode.BAD_ARGUMENT);
          expect(await codeOf(rel.extend(ForkNumber.MAIN, bad))).toBe(ErrorCode.BAD_ARGUMENT);
        }
        expect(await rel.nblocks(ForkNumber.MAIN)).toBe(2);
        expect(snapshot()).toEqual(before);
      });
    });

    it('a relation or fork never created is RELATION_NOT_FOUND', async () => {
      await withSetup(async ({ engine, rel, before, snapshot }) => {
        const other = engine.relation({ ...REL, relNumber: 99999 });
        expect(await codeOf(other.read(ForkNumber.MAIN, 0))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(other.write(ForkNumber.MAIN, 0, page(1)))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(other.extend(ForkNumber.MAIN, page(1)))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(other.nblocks(ForkNumber.MAIN))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(other.truncate(ForkNumber.MAIN, 0))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(other.drop())).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(rel.read(ForkNumber.FSM, 0))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(await codeOf(rel.extend(ForkNumber.VISIBILITY_MAP))).toBe(ErrorCode.RELATION_NOT_FOUND);
        expect(snapshot()).toEqual(before);
      });
    });

    it('a locator with an out-of-range oid, a bad fork or an unknown storage is refused at once', async () => {
      await withSetup(async ({ engine, rel, before, snapshot }) => {
        for (const loc of [
          { ...REL, spcOid: -1 },
          { ...REL, dbOid: 2 ** 32 },
          { ...REL, relNumber: 1.5 },
          { spcOid: 1663, dbOid: 5 },
          null,
        ]) {
          expect(await codeOf(() => engine.relation(loc as RelFileLocator))).toBe(ErrorCode.BAD_ARGUMENT);
        }
        expect(await codeOf(() => engine.relation(REL, { storage: 'nope' }))).toBe(ErrorCode.UNKNOWN_STORAGE);
        expect(await codeOf(() => engine.relation(REL, { persistence: 'temp' as 'permanent' }))).toBe(ErrorCode.BAD_ARGUMENT);
        for (const fork of [-1, 4, 0.5, Number.NaN]) {
          expect(await codeOf(rel.read(fork as ForkNumber, 0))).toBe(ErrorCode.BAD_ARGUMENT);
          expect(await codeOf(rel.create(fork as ForkNumber))).toBe(ErrorCode.BAD_ARGUMENT);
        }
        expect(snapshot()).toEqual(before);
      });
    });

    it('writes after a failed sync are ENGINE_FAILED; after close ENGINE_CLOSED', async () => {
      let failed: { engine: Engine; rel: Relation } | undefined;
      // A failed engine's close rejects with ENGINE_FAILED: withSetup requires exactly that.
      await withSetup(
        async ({ disk, engine, rel }) => {
          await rel.write(ForkNumber.MAIN, 0, page(5));
          disk.injectFault({ kind: 'fsync', code: 'EIO' });
          await expect(engine.checkpoint()).rejects.toMatchObject({ code: ErrorCode.IO_ERROR, errno: 'EIO', syscall: 'fsync' });
          expect(engine.failed).toBe(true);
          const writesBefore = engine.ioCounts().pwrite;
          expect(await codeOf(rel.write(ForkNumber.MAIN, 0, page(6)))).toBe(ErrorCode.ENGINE_FAILED);
          expect(await codeOf(rel.extend(ForkNumber.MAIN))).toBe(ErrorCode.ENGINE_FAILED);
          expect(await codeOf(rel.truncate(ForkNumber.MAIN, 0))).toBe(ErrorCode.ENGINE_FAILED);
          expect(await codeOf(rel.drop())).toBe(ErrorCode.ENGINE_FAILED);
          expect(await codeOf(rel.create(ForkNumber.FSM))).toBe(ErrorCode.ENGINE_FAILED);
          expect((await rel.read(ForkNumber.MAIN, 0))[0]).toBe(5); // reads keep working
          expect(engine.ioCounts().pwrite).toBe(writesBefore);
          failed = { engine, rel };
        },
        { closeRejects: ErrorCode.ENGINE_FAILED },
      );
      const { engine, rel } = failed!;
      expect(await codeOf(rel.read(ForkNumber.MAIN, 0))).toBe(ErrorCode.ENGINE_CLOSED);
      expect(await codeOf(rel.write(ForkNumber.MAIN, 0, page(1)))).toBe(ErrorCode.ENGINE_CLOSED);
      expect(await codeOf(() => engine.relation(REL))).toBe(ErrorCode.ENGINE_CLOSED);
    });
  });
});

describe('relation API: page bytes 8-11', () => {
  it('read returns the checksum in bytes 8-11, the same from a buffer hit and from disk', async () => {
    const options = { dataDir: await tempDir(), sharedBuffers: 16 };
    const p = page(7);
    const hit = await withEngine(options, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN);
      await rel.write(ForkNumber.MAIN, 0, p);
      return rel.read(ForkNumber.MAIN, 0);
    });
    expect(verifyPageChecksum(hit, 0)).toBe(true);
    expect(p[8]).toBe(7); // the caller's page is not touched
    await withEngine(options, async (engine) => {
      expect(Buffer.from(await engine.relation(REL).read(ForkNumber.MAIN, 0)).equals(Buffer.from(hit))).toBe(true);
    });
  });

  it('a write that hits the pool sets the checksum in the pool copy only, and what was written is the page as it was at the call', async () => {
    await withEngine({ dataDir: await tempDir(), sharedBuffers: 16 }, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN);
      await rel.read(ForkNumber.MAIN, 0); // resident: the next write of block 0 is a hit
      const hits = engine.bufferPool.stats.hits;
      const p = new Uint8Array(BS).fill(9);
      const done = rel.write(ForkNumber.MAIN, 0, p);
      p.fill(1); // changed before the write resolves: must not change what was written
      await done;
      expect(engine.bufferPool.stats.hits - hits).toBe(1);
      expect(p.every((b) => b === 1)).toBe(true); // bytes 8-11 of the caller's array untouched
      const back = await rel.read(ForkNumber.MAIN, 0);
      expect(back[0]).toBe(9);
      expect(back[BS - 1]).toBe(9);
      expect(verifyPageChecksum(back, 0)).toBe(true);
      // The same for a write that misses (block 1 was never loaded): it awaits, from a snapshot.
      const q = new Uint8Array(BS).fill(5);
      const missed = rel.write(ForkNumber.MAIN, 1, q);
      q.fill(2);
      await missed;
      const back1 = await rel.read(ForkNumber.MAIN, 1);
      expect(back1[100]).toBe(5);
      expect(verifyPageChecksum(back1, 1)).toBe(true);
      await engine.checkpoint();
      engine.bufferPool.checkInvariants(true);
    });
  });
});
