/**
 * Goal: the data losses and broken promises an outside audit found, each pinned by a test that
 * failed before its fix: fsync off still publishes the volume's metadata; a failed open leaves
 * the data directory as it found it (clean stays clean, a directory it made is gone); a nearly
 * full volume with an unlogged relation reopens after a crash; a checkpoint with a writer
 * running still makes at most 2 fdatasyncs on the volume; dataSyncRetry is honoured by the
 * volume; close() of a failed engine rejects with ENGINE_FAILED after releasing everything.
 * Method: the public API (Engine, relations, volumeExtension) on SimDisk (crashes, faults,
 * counted calls) and, for fsync off and the failed open, on real files in a temp directory.
 */
import { describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ControlState, Engine, ForkNumber, readControlFile } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import type { EngineOptions, Relation } from '../engine/index.js';
import { openVolumeReadOnly, volumeExtension } from '../volume/index.js';
import { tempDir } from './helpers/index.js';
import { onDisk, withEngine, SMALL_BS, taggedPage, tagOf } from './helpers/engine.js';

const VOL = '/vol/lam.vol';

/** A page tagged `tag` (taggedPage) of the volume's block size. */
const page = (tag: number) => taggedPage(tag, SMALL_BS);
const loc = (relNumber: number) => ({ spcOid: 1663, dbOid: 5, relNumber });

async function simDisk(): Promise<SimDisk> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  return disk;
}

/** An engine at /data on `disk` with the volume at VOL (created with `sizeBytes` when missing). */
function volumeOptions(disk: SimDisk, extra: Partial<EngineOptions> = {}, sizeBytes = 16 * 1024 * 1024): EngineOptions {
  return onDisk(disk, { blockSize: SMALL_BS, sharedBuffers: 512, preload: [volumeExtension({ path: VOL, create: { sizeBytes } })], ...extra });
}

/** Unlogged volume relation 7: INIT holds page 1, MAIN pages 40, 41, ... (`mainPages` of them). */
async function unloggedWithInit(engine: Engine, mainPages: number): Promise<Relation> {
  const u = engine.relation(loc(7), { storage: 'volume', persistence: 'unlogged' });
  await u.create(ForkNumber.INIT);
  await u.extend(ForkNumber.INIT, page(1));
  await u.create(ForkNumber.MAIN);
  for (let b = 0; b < mainPages; b++) await u.extend(ForkNumber.MAIN, page(40 + b));
  return u;
}

async function readAll(r: Relation, fork: ForkNumber = ForkNumber.MAIN): Promise<number[]> {
  const out: number[] = [];
  const n = await r.nblocks(fork);
  for (let b = 0; b < n; b++) out.push(tagOf(await r.read(fork, b)));
  return out;
}

describe('fsync: false skips flushes, never the volume metadata (audit 1)', () => {
  it('a volume relation and an md relation made with fsync off survive a clean close and reopen', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'data');
    const path = join(dir, 'lam.vol');
    const open = () => Engine.open({ dataDir, blockSize: SMALL_BS, fsync: false, preload: [volumeExtension({ path, create: { sizeBytes: 4 * 1024 * 1024 } })] });
    const engine = await open();
    const v = engine.relation(loc(1), { storage: 'volume' });
    const m = engine.relation(loc(2));
    for (const r of [v, m]) {
      await r.create(ForkNumber.MAIN);
      for (let b = 0; b < 3; b++) await r.extend(ForkNumber.MAIN, page(10 + b));
    }
    const stats = await engine.checkpoint();
    expect(stats.fdatasyncCalls + stats.fsyncCalls).toBe(0); // no flush at all
    await v.write(ForkNumber.MAIN, 1, page(21));
    await engine.close();

    // Before the fix the catalog was written only by the volume's sync handler, which the sync
    // phase never calls with fsync off: the volume came back empty.
    const info = await openVolumeReadOnly(path);
    expect(info.forks.map((f) => [f.relNumber, f.nblocks])).toEqual([[1, 3]]);
    const again = await open();
    try {
      expect(await readAll(again.relation(loc(1), { storage: 'volume' }))).toEqual([10, 21, 12]);
      expect(await readAll(again.relation(loc(2)))).toEqual([10, 11, 12]);
    } finally {
      await again.close();
    }
  });
});

describe('a failed Engine.open leaves the data directory as it found it (audit 2, 11)', () => {
  it('after a clean close, one failed open (mistyped volume path) and a good open, nothing is reset', async () => {
    const disk = await simDisk();
    const engine = await Engine.open(volumeOptions(disk));
    await unloggedWithInit(engine, 4);
    await engine.close();

    const typo = Engine.open({ dataDir: '/data', blockSize: SMALL_BS, io: disk, preload: [volumeExtension({ path: '/vol/lam.vl' })] });
    await expect(typo).rejects.toMatchObject({ code: 'IO_ERROR', errno: 'ENOENT' });
    expect(disk.openHandleCount).toBe(0);

    await withEngine(volumeOptions(disk), async (again) => {
      expect(again.openStats.uncleanStop).toBe(false);
      expect(again.openStats.unloggedReset).toBe(0);
      expect(await readAll(again.relation(loc(7), { storage: 'volume', persistence: 'unlogged' }))).toEqual([40, 41, 42, 43]);
    });
  });

  it('a failed open after an unclean stop leaves it unclean: the next open still resets', async () => {
    const disk = await simDisk();
    const engine = await Engine.open(volumeOptions(disk));
    await unloggedWithInit(engine, 2);
    await engine.checkpoint();
    disk.processCrash();
    await expect(Engine.open({ dataDir: '/data', blockSize: SMALL_BS, io: disk, preload: [volumeExtension({ path: '/vol/nope.vol' })] })).rejects.toMatchObject({ errno: 'ENOENT' });
    await withEngine(volumeOptions(disk), async (again) => {
      expect(again.openStats.uncleanStop).toBe(true);
      expect(again.openStats.unloggedReset).toBe(1);
      expect(await readAll(again.relation(loc(7), { storage: 'volume', persistence: 'unlogged' }))).toEqual([1]);
    });
  });

  it('a failed open of a new data directory removes the directory it created (real files)', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'new-data');
    const open = Engine.open({ dataDir, preload: [volumeExtension({ path: join(dir, 'missing.vol') })] });
    await expect(open).rejects.toMatchObject({ code: 'IO_ERROR', errno: 'ENOENT' });
    expect(await stat(dataDir).catch((e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
  });

  it('a failed open of an existing clean directory leaves its control file saying "shut down" (real files)', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'data');
    await (await Engine.open({ dataDir })).close();
    await expect(Engine.open({ dataDir, preload: [volumeExtension({ path: join(dir, 'missing.vol') })] })).rejects.toMatchObject({ errno: 'ENOENT' });
    expect((await readControlFile(dataDir)).record.state).toBe(ControlState.SHUT_DOWN);
    const again = await Engine.open({ dataDir });
    expect(again.openStats.uncleanStop).toBe(false);
    await again.close();
  });
});

describe('a nearly full volume with an unlogged relation reopens after a crash (audit 3)', () => {
  it('the reset of the unlogged main fork reuses its own space: every reopen works and the volume stays full', async () => {
    const disk = await simDisk();
    const sizeBytes = 1024 * 1024; // 256 blocks of 4 KiB
    const engine = await Engine.open(volumeOptions(disk, {}, sizeBytes));
    const u = engine.relation(loc(7), { storage: 'volume', persistence: 'unlogged' });
    await u.create(ForkNumber.INIT);
    await u.extend(ForkNumber.INIT, page(1));
    await u.create(ForkNumber.MAIN);
    for (let b = 0; b < 40; b++) await u.extend(ForkNumber.MAIN, page(100 + b));
    const filler = engine.relation(loc(8), { storage: 'volume' });
    await filler.create(ForkNumber.MAIN);
    let full: unknown = null;
    for (let b = 0; b < 1000 && full === null; b++) {
      await filler.extend(ForkNumber.MAIN, page(2)).catch((e: unknown) => (full = e));
    }
    expect(full).toMatchObject({ code: 'VOLUME_FULL' });
    await engine.checkpoint();
    const fillerBlocks = await filler.nblocks(ForkNumber.MAIN);

    let d = disk;
    for (let round = 0; round < 3; round++) {
      d.processCrash(); // kill -9: the stop is unclean
      const again = await Engine.open(volumeOptions(d, {}, sizeBytes)); // VOLUME_FULL here before the fix, every time
      try {
        expect(again.openStats.uncleanStop).toBe(true);
        expect(again.openStats.unloggedReset).toBe(1);
        expect(await readAll(again.relation(loc(7), { storage: 'volume', persistence: 'unlogged' }))).toEqual([1]);
        expect(await again.relation(loc(8), { storage: 'volume' }).nblocks(ForkNumber.MAIN)).toBe(fillerBlocks);
        await again.checkpoint();
      } finally {
        if (round === 2) await again.close();
      }
      d = disk;
    }
  });
});

describe('a checkpoint with a writer running makes at most 2 fdatasyncs on the volume (audit 4)', () => {
  it('300 dirty forks and a task extending relations during every checkpoint', async () => {
    const disk = await simDisk();
    const engine = await Engine.open(volumeOptions(disk, {}, 64 * 1024 * 1024));
    const rels: Relation[] = [];
    for (let i = 0; i < 300; i++) {
      const r = engine.relation(loc(1000 + i), { storage: 'volume' });
      await r.create(ForkNumber.MAIN);
      await r.extend(ForkNumber.MAIN, page(i));
      rels.push(r);
    }
    await engine.checkpoint();
    let stop = false;
    let extended = 0;
    const writer = (async () => {
      // Yields at every await, so its extends interleave with every phase of the checkpoint.
      while (!stop) {
        await rels[extended % rels.length]!.extend(ForkNumber.MAIN, page(7));
        extended++;
      }
    })();
    try {
      for (let round = 0; round < 4; round++) {
        for (let i = 0; i < rels.length; i++) await rels[i]!.write(ForkNumber.MAIN, 0, page(round * 10 + (i % 10)));
        const before = extended;
        const stats = await engine.checkpoint();
        expect(extended).toBeGreaterThan(before); // the writer really ran during it
        expect(stats.tagsDispatched.volume).toBeGreaterThanOrEqual(300);
        expect(stats.fdatasyncCalls).toBeLessThanOrEqual(2);
      }
    } finally {
      stop = true;
      await writer;
    }
    // And what the last checkpoint covered is durable.
    const snapshot = await Promise.all(rels.slice(0, 20).map((r) => r.read(ForkNumber.MAIN, 0)));
    await engine.checkpoint();
    const crashed = disk.crash('drop');
    await withEngine(volumeOptions(crashed, {}, 64 * 1024 * 1024), async (again) => {
      for (let i = 0; i < 20; i++) expect(tagOf(await again.relation(loc(1000 + i), { storage: 'volume' }).read(ForkNumber.MAIN, 0))).toBe(tagOf(snapshot[i]!));
    });
    await engine.close();
  });
});

describe('dataSyncRetry is honoured by the volume (audit 5)', () => {
  for (const nth of [1, 2]) {
    const which = nth === 1 ? 'data and catalog' : 'superblock switch';
    it(`after one EIO on the ${which} fdatasync, only that checkpoint fails; the next makes everything durable`, async () => {
      const disk = await simDisk();
      const engine = await Engine.open(volumeOptions(disk, { dataSyncRetry: true }));
      const v = engine.relation(loc(1), { storage: 'volume' });
      await v.create(ForkNumber.MAIN);
      await v.extend(ForkNumber.MAIN, page(1));
      await engine.checkpoint();
      await v.write(ForkNumber.MAIN, 0, page(2));
      await v.extend(ForkNumber.MAIN, page(3)); // a metadata change: two fdatasyncs
      disk.injectFault({ kind: 'fdatasync', code: 'EIO', nth, pathIncludes: 'lam.vol' });
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'IO_ERROR', errno: 'EIO' });
      expect(engine.failed).toBe(false);
      await v.extend(ForkNumber.MAIN, page(4)); // the volume still takes writes
      const stats = await engine.checkpoint();
      expect(stats.fdatasyncCalls).toBeLessThanOrEqual(nth === 2 ? 3 : 2); // a switch in doubt is redone first
      await withEngine(volumeOptions(disk.crash('drop')), async (again) => {
        expect(await readAll(again.relation(loc(1), { storage: 'volume' }))).toEqual([2, 3, 4]);
      });
      await engine.close();
    });
  }

  it('a switch in doubt is never overwritten by a later generation: a crash at every call of the retry leaves a volume that opens', async () => {
    for (let cut = 0; cut < 12; cut++) {
      const disk = await simDisk();
      const ext = volumeExtension({ path: VOL, create: { sizeBytes: 16 * 1024 * 1024 } });
      const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 512, io: disk, dataSyncRetry: true, preload: [ext] });
      const v = engine.relation(loc(1), { storage: 'volume' });
      await v.create(ForkNumber.MAIN);
      await v.extend(ForkNumber.MAIN, page(1));
      await engine.checkpoint();
      await v.extend(ForkNumber.MAIN, page(2));
      disk.injectFault({ kind: 'fdatasync', code: 'EIO', nth: 2, pathIncludes: 'lam.vol' });
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'EIO' });
      await v.extend(ForkNumber.MAIN, page(3));
      let calls = 0;
      let image: SimDisk | null = null;
      disk.onCall = () => {
        if (calls++ === cut) image = disk.crash('torn', cut + 1);
      };
      await engine.checkpoint();
      disk.onCall = undefined;
      ext.volume!.checkInvariants();
      const after = image ?? disk.crash('torn', 99);
      await withEngine(volumeOptions(after), async (again) => {
        const got = await readAll(again.relation(loc(1), { storage: 'volume' }));
        expect([[1], [1, 2], [1, 2, 3]]).toContainEqual(got);
      });
      await engine.close();
    }
  });
});

describe('close() of a failed engine (audit 6)', () => {
  it('rejects with ENGINE_FAILED after releasing locks and descriptors', async () => {
    const disk = await simDisk();
    const engine = await Engine.open(volumeOptions(disk));
    const v = engine.relation(loc(1), { storage: 'volume' });
    await v.create(ForkNumber.MAIN);
    await v.extend(ForkNumber.MAIN, page(1));
    disk.injectFault({ kind: 'fdatasync', code: 'EIO', pathIncludes: 'lam.vol' });
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(engine.failed).toBe(true);
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    expect(disk.openHandleCount).toBe(0);
    await expect(engine.close()).resolves.toBeUndefined(); // closed already: nothing more to say
    const again = await Engine.open(volumeOptions(disk)); // the data directory and volume locks were released
    expect(again.openStats.uncleanStop).toBe(true);
    await again.close();
  });
});
