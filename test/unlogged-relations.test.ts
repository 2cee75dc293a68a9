/**
 * Goal: unlogged relations on md: no sync requests and no fsync at ordinary
 * checkpoints, durable at the shutdown checkpoint, and after an unclean stop the main fork is
 * reset from the INIT fork (PostgreSQL's ResetUnloggedRelations); permanent relations untouched.
 * Method: SimDisk with counted calls; processCrash() for a kill -9 (page cache kept).
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, type EngineOptions } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { BS, locator, onDisk, taggedPage, tagOf, withEngine } from './helpers/engine.js';

const unloggedRel = locator(500);
const permanentRel = locator(600);


async function setUp(disk: SimDisk) {
  const engine = await Engine.open({ dataDir: '/data', io: disk, sharedBuffers: 64 });
  const u = engine.relation(unloggedRel, { persistence: 'unlogged' });
  await u.create(ForkNumber.INIT);
  await u.extend(ForkNumber.INIT, taggedPage(1)); // the empty state: one page
  await u.create(ForkNumber.MAIN);
  for (let b = 0; b < 4; b++) await u.extend(ForkNumber.MAIN, taggedPage(10 + b));
  const p = engine.relation(permanentRel);
  await p.create(ForkNumber.MAIN);
  await p.extend(ForkNumber.MAIN, taggedPage(77));
  return { engine, u, p };
}

describe('unlogged relations', () => {
  it('ordinary checkpoints neither sync nor write an unlogged main fork; its INIT fork is synced', async () => {
    const disk = new SimDisk();
    const { engine, u } = await setUp(disk);
    await engine.checkpoint();
    for (let b = 0; b < 4; b++) await u.write(ForkNumber.MAIN, b, taggedPage(20 + b));
    const s = await engine.checkpoint();
    expect(s.buffersWritten).toBe(0); // the unlogged buffers were skipped
    expect(s.tagsDispatched.md ?? 0).toBe(0);
    const durable = disk.crash('drop');
    // init and the permanent relation are durable; the unlogged main fork never was synced.
    expect(durable.readFileNow('/data/base/5/500_init')?.length).toBe(BS);
    expect(durable.readFileNow('/data/base/5/600')?.length).toBe(BS);
    expect(durable.readFileNow('/data/base/5/500')?.length ?? 0).toBe(0);
    await engine.close();
  });

  it('the shutdown checkpoint writes and syncs unlogged forks; a clean reopen keeps them', async () => {
    const disk = new SimDisk();
    const { engine, u } = await setUp(disk);
    for (let b = 0; b < 4; b++) await u.write(ForkNumber.MAIN, b, taggedPage(30 + b));
    const fsyncBefore = engine.ioCounts().fsync;
    await engine.close();
    expect(engine.ioCounts().fsync).toBeGreaterThan(fsyncBefore); // the shutdown synced them
    const durable = disk.crash('drop');
    await withEngine({ dataDir: '/data', io: durable }, async (again) => {
      expect(again.openStats.uncleanStop).toBe(false);
      expect(again.openStats.unloggedReset).toBe(0);
      const u2 = again.relation(unloggedRel, { persistence: 'unlogged' });
      expect(await u2.nblocks(ForkNumber.MAIN)).toBe(4);
      for (let b = 0; b < 4; b++) expect(tagOf(await u2.read(ForkNumber.MAIN, b))).toBe(30 + b);
    });
  });

  it('after an unclean stop the main fork is reset from INIT; the permanent relation is untouched', async () => {
    const disk = new SimDisk();
    const { engine, u, p } = await setUp(disk);
    for (let b = 0; b < 4; b++) await u.write(ForkNumber.MAIN, b, taggedPage(40 + b));
    await p.write(ForkNumber.MAIN, 0, taggedPage(78));
    await engine.checkpoint();
    disk.processCrash(); // kill -9: no shutdown checkpoint
    await withEngine({ dataDir: '/data', io: disk }, async (again) => {
      expect(again.openStats.uncleanStop).toBe(true);
      expect(again.openStats.unloggedReset).toBe(1);
      const u2 = again.relation(unloggedRel, { persistence: 'unlogged' });
      expect(await u2.nblocks(ForkNumber.MAIN)).toBe(1);
      expect(tagOf(await u2.read(ForkNumber.MAIN, 0))).toBe(1); // the INIT fork's page
      expect(tagOf(await again.relation(permanentRel).read(ForkNumber.MAIN, 0))).toBe(78);
      // The reset is durable: a power loss now still shows the reset state.
      const durable = disk.crash('drop');
      expect(durable.readFileNow('/data/base/5/500')?.[0]).toBe(1);
      expect(durable.readFileNow('/data/base/5/500')?.length).toBe(BS);
    });
  });
});

describe('unlogged relations on the volume', () => {
  /** An engine at /data on `disk` with a 4 MiB volume at /vol/v and 16 buffers. */
  function volumeOptions(disk: SimDisk): EngineOptions {
    return onDisk(disk, { sharedBuffers: 16, preload: [volumeExtension({ path: '/vol/v', create: { sizeBytes: 4 * 1024 * 1024, blockSize: BS } })] });
  }

  it('no tags for the unlogged main fork at ordinary checkpoints (even after eviction); shutdown syncs it; an unclean stop resets it from INIT', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const engine = await Engine.open(volumeOptions(disk));
    const u = engine.relation(unloggedRel, { storage: 'volume', persistence: 'unlogged' });
    await u.create(ForkNumber.INIT);
    await u.extend(ForkNumber.INIT, taggedPage(1));
    await u.create(ForkNumber.MAIN);
    for (let b = 0; b < 40; b++) await u.extend(ForkNumber.MAIN, taggedPage(10 + (b % 50)));
    const s1 = await engine.checkpoint(); // INIT's tag only
    expect(s1.tagsDispatched.volume).toBe(1);
    // 40 rewrites through 16 buffers: evictions write unlogged pages; the ledger (on in tests) must not object.
    for (let b = 0; b < 40; b++) await u.write(ForkNumber.MAIN, b, taggedPage(60 + b));
    const s2 = await engine.checkpoint();
    expect(s2.tagsDispatched.volume ?? 0).toBe(0);
    expect(s2.buffersWritten).toBe(0);

    disk.processCrash();
    const { again, before } = await withEngine(volumeOptions(disk), async (again) => {
      expect(again.openStats.unloggedReset).toBe(1);
      const u2 = again.relation(unloggedRel, { storage: 'volume', persistence: 'unlogged' });
      expect(await u2.nblocks(ForkNumber.MAIN)).toBe(1);
      expect(tagOf(await u2.read(ForkNumber.MAIN, 0))).toBe(1);
      for (let b = 0; b < 3; b++) await u2.extend(ForkNumber.MAIN, taggedPage(90 + b));
      return { again, before: again.ioCounts().fdatasync };
    });
    expect(again.ioCounts().fdatasync).toBeGreaterThan(before); // the shutdown synced the volume
    await withEngine(volumeOptions(disk.crash('drop')), async (third) => {
      expect(third.openStats.uncleanStop).toBe(false);
      const u3 = third.relation(unloggedRel, { storage: 'volume', persistence: 'unlogged' });
      expect(await u3.nblocks(ForkNumber.MAIN)).toBe(4);
      expect(tagOf(await u3.read(ForkNumber.MAIN, 3))).toBe(92);
    });
  });
});

describe('preload failure cleanup', () => {
  it('an extension failing after the volume was preloaded leaves the volume closed and unlocked', async () => {
    const { volumeExtension } = await import('../volume/index.js');
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const failing = { name: 'boom', init() { throw new Error('boom'); } };
    const vol = volumeExtension({ path: '/vol/v', create: { sizeBytes: 1024 * 1024, blockSize: BS } });
    await expect(Engine.open({ dataDir: '/data', io: disk, preload: [vol, failing] })).rejects.toThrow('boom');
    expect(disk.openHandleCount).toBe(0);
    const ok = await Engine.open({ dataDir: '/data', io: disk, preload: [volumeExtension({ path: '/vol/v' })] });
    await ok.close();
  });
});
