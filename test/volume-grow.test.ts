/**
 * Goal: volumes grow (volume/grow.ts G1-G5, volume.ts V6, examine.ts E4). Offline, a crash at
 * any point of `growVolumeFile` leaves the old size or the new one with the same data, never a
 * refused volume; a file longer than its volume opens and a later grow reuses its tail; the
 * older slot may record a smaller size, never a larger one. Online, `grow: { step, max }` lets a
 * running engine write past its initial size up to max, then VOLUME_FULL names the way to grow;
 * what a checkpoint covered survives a crash, and a crash at any point while the engine grows
 * leaves the old or the new size and exactly one checkpoint's data (D1, D2). Growth is
 * serialized and counted; a full disk during growth is VOLUME_FULL with nothing changed; bad
 * grow options are BAD_ARGUMENT naming the key.
 * Method: SimDisk; a crash image (every mode) before every FileIO call of the operation, each
 * checked with checkVolume and reopened through a fresh Engine, every page compared byte for
 * byte; Volume.checkInvariants() after each step.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber } from '../engine/index.js';
import type { StorageManager } from '../engine/index.js';
import { CRASH_MODES, SimDisk } from '../engine/testing.js';
import { checkVolume, growVolumeFile, volumeExtension } from '../volume/index.js';
import type { Volume, VolumeGrowOptions } from '../volume/index.js';
import { decodeSuperblock, encodeSuperblock } from '../volume/format.js';
import { SMALL_BS, codeOf } from './helpers/engine.js';
import { makePage, rel, writePages } from './helpers/volume.js';

const VOL = '/vol/lam.vol';
const KiB = 1024;

async function openOn(io: SimDisk, options: { grow?: VolumeGrowOptions; create?: { sizeBytes: number } } = {}): Promise<{ engine: Engine; smgr: StorageManager; volume: Volume }> {
  const ext = volumeExtension({ path: VOL, ...options });
  const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 16, io, preload: [ext] });
  return { engine, smgr: engine.storageManager('volume'), volume: ext.volume! };
}

async function freshDisk(): Promise<SimDisk> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  return disk;
}

/** Extend `count` pages (version 1) of a fork from its current end. */
async function extendPages(smgr: StorageManager, relNumber: number, count: number): Promise<void> {
  const r = rel(relNumber);
  if (!(await smgr.exists(r, ForkNumber.MAIN))) await smgr.create(r, ForkNumber.MAIN);
  const from = await smgr.nblocks(r, ForkNumber.MAIN);
  for (let b = from; b < from + count; b++) await smgr.extend(r, ForkNumber.MAIN, b, makePage(r, ForkNumber.MAIN, b));
}

/** Every page of the fork reads back as `expected(b)` (byte for byte). */
async function expectPages(smgr: StorageManager, relNumber: number, nblocks: number, version: (b: number) => number = () => 1): Promise<void> {
  const r = rel(relNumber);
  expect(await smgr.nblocks(r, ForkNumber.MAIN)).toBe(nblocks);
  const buf = new Uint8Array(SMALL_BS);
  for (let b = 0; b < nblocks; b++) {
    await smgr.read(r, ForkNumber.MAIN, b, buf);
    expect(Buffer.from(buf).equals(Buffer.from(makePage(r, ForkNumber.MAIN, b, version(b)))), `relation ${relNumber} block ${b}`).toBe(true);
  }
}

/**
 * checkVolume's errors, except on the inactive slot: a crash while it was being rewritten leaves
 * it damaged, which check reports (it cannot tell that from media damage) and the next switch
 * rewrites (the crash matrix counts it apart the same way).
 */
async function errorFindings(io: SimDisk, activeSlot?: number): Promise<string[]> {
  const findings = await checkVolume(VOL, { io, checkPages: true });
  return findings.filter((f) => f.severity === 'error' && (activeSlot === undefined || f.part !== `superblock slot ${1 - activeSlot}`)).map((f) => `${f.part}: ${f.message}`);
}

describe('offline grow (growVolumeFile)', () => {
  it('a crash before any FileIO call of a grow leaves the old size or the new one, the same data, and a volume that opens and checks clean', async () => {
    const disk = await freshDisk();
    const oldSize = 512 * KiB;
    const newSize = 1024 * KiB;
    {
      const { engine, smgr } = await openOn(disk, { create: { sizeBytes: oldSize } });
      await extendPages(smgr, 16384, 20);
      await extendPages(smgr, 16385, 10);
      await engine.close();
    }
    const images: { index: number; mode: string; disk: SimDisk }[] = [];
    disk.onCall = (index) => {
      // drop is deterministic; the other modes draw from the seed (two draws where the cut or subset matters).
      for (const mode of CRASH_MODES) for (const seed of mode === 'prefix' || mode === 'subset' ? [1, 2] : [1]) images.push({ index, mode, disk: disk.crash(mode, index * 10 + seed) });
    };
    const result = await growVolumeFile(VOL, { io: disk, sizeBytes: newSize });
    disk.onCall = undefined;
    images.push({ index: disk.callCount + 1, mode: 'after', disk: disk.crash('drop') });
    expect(result).toMatchObject({ oldSizeBytes: oldSize, newSizeBytes: newSize, blockSizeBytes: SMALL_BS });

    const outcomes = { old: 0, new: 0, longerFile: 0 };
    let reused = false;
    for (const img of images) {
      const what = `crash before call ${img.index} (${img.mode})`;
      const fileBytes = img.disk.readFileNow(VOL)!.length;
      const { engine, smgr, volume } = await openOn(img.disk);
      const activeSlot = volume.info().activeSlot;
      volume.checkInvariants();
      expect([oldSize, newSize], what).toContain(volume.volumeSizeBytes);
      expect(fileBytes, what).toBeGreaterThanOrEqual(volume.volumeSizeBytes);
      if (volume.volumeSizeBytes === oldSize) outcomes.old++;
      else outcomes.new++;
      if (fileBytes > volume.volumeSizeBytes) outcomes.longerFile++;
      await expectPages(smgr, 16384, 20);
      await expectPages(smgr, 16385, 10);
      await engine.close();
      expect(await errorFindings(img.disk, activeSlot), what).toEqual([]);
      if (!reused && fileBytes > oldSize && volume.volumeSizeBytes === oldSize) {
        // E4 / G4: the tail an unfinished grow left is simply grown over again.
        reused = true;
        const again = await growVolumeFile(VOL, { io: img.disk, sizeBytes: newSize });
        expect(again.oldSizeBytes).toBe(oldSize);
        expect(await errorFindings(img.disk)).toEqual([]);
        const after = await openOn(img.disk);
        expect(after.volume.volumeSizeBytes).toBe(newSize);
        await expectPages(after.smgr, 16384, 20);
        await after.engine.close();
      }
    }
    console.log(`grow-crash: states=${images.length} old-size=${outcomes.old} new-size=${outcomes.new} longer-file=${outcomes.longerFile}`);
    expect(outcomes.old).toBeGreaterThan(0);
    expect(outcomes.new).toBeGreaterThan(0);
    expect(outcomes.longerFile).toBeGreaterThan(0);
    expect(reused).toBe(true);
  });

  it('refuses a size not larger, not a multiple of the block size or too large, a locked and a corrupt volume, and writes nothing', async () => {
    const disk = await freshDisk();
    {
      const { engine, smgr } = await openOn(disk, { create: { sizeBytes: 256 * KiB } });
      await extendPages(smgr, 16384, 5);
      await engine.close();
    }
    const before = disk.readFileNow(VOL)!;
    const calls = disk.callCount;
    for (const [sizeBytes, problem] of [
      [128 * KiB, /smaller than the volume's 262144: a volume cannot shrink/],
      [256 * KiB, /is the volume's size already/],
      [256 * KiB + 1000, /not a multiple of the block size 4096/],
      [2 * 1024 ** 4, /is outside/],
      [0, /positive whole number/],
      [1.5, /positive whole number/],
    ] as const) {
      const err = await growVolumeFile(VOL, { io: disk, sizeBytes }).catch((e: unknown) => e);
      expect(err, String(sizeBytes)).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(problem) });
      expect((err as { path?: string }).path).toBeUndefined();
    }
    // Only opens, locks, reads and closes happened.
    expect(Buffer.from(disk.readFileNow(VOL)!).equals(Buffer.from(before))).toBe(true);
    expect(disk.callCount).toBeGreaterThan(calls);

    const { engine } = await openOn(disk);
    expect(await codeOf(growVolumeFile(VOL, { io: disk, sizeBytes: 512 * KiB }))).toBe('VOLUME_LOCKED');
    await engine.close();

    const damaged = disk.readFileNow(VOL)!;
    damaged.fill(0xee, 0, 64);
    damaged.fill(0xee, SMALL_BS, SMALL_BS + 64);
    disk.putFile(VOL, damaged);
    expect(await codeOf(growVolumeFile(VOL, { io: disk, sizeBytes: 512 * KiB }))).toBe('VOLUME_CORRUPT');
    expect(Buffer.from(disk.readFileNow(VOL)!).equals(Buffer.from(damaged))).toBe(true);
  });

  it('the older slot may record a smaller volume (what a grow leaves), never a larger one; a longer file is no finding', async () => {
    const disk = await freshDisk();
    await openOn(disk, { create: { sizeBytes: 256 * KiB } }).then((v) => v.engine.close());
    const r = await growVolumeFile(VOL, { io: disk, sizeBytes: 512 * KiB });
    expect(await checkVolume(VOL, { io: disk })).toEqual([]);
    // A longer file (the tail of a grow that stopped before its switch).
    const bytes = disk.readFileNow(VOL)!;
    const longer = new Uint8Array(bytes.length + 64 * KiB);
    longer.set(bytes);
    disk.putFile(VOL, longer);
    expect(await checkVolume(VOL, { io: disk })).toEqual([]);
    // The older slot claims a larger volume than the active one: an error finding (and still opens).
    const olderSlot = (r.generation - 1) % 2;
    const older = decodeSuperblock(longer.subarray(olderSlot * SMALL_BS), olderSlot);
    expect(older.ok).toBe(true);
    if (!older.ok) return;
    expect(older.sb.volumeSizeBytes).toBe(256 * KiB);
    longer.set(encodeSuperblock({ ...older.sb, volumeSizeBytes: 1024 * KiB }), olderSlot * SMALL_BS);
    disk.putFile(VOL, longer);
    expect(await checkVolume(VOL, { io: disk })).toEqual([
      { severity: 'error', part: `superblock slot ${olderSlot}`, message: `records a larger volume (${1024 * KiB} bytes) than the active slot (${512 * KiB}); a volume never shrinks` },
    ]);
    const { engine, volume } = await openOn(disk);
    expect(volume.volumeSizeBytes).toBe(512 * KiB);
    await engine.close();
  });
});

describe('online growth: volumeExtension({ grow: { step, max } })', () => {
  const grow = { step: 64 * KiB, max: 512 * KiB };

  it('writes past the initial size, grows by step up to max, then VOLUME_FULL says how to grow; a checkpoint makes the new size and the data durable', async () => {
    const disk = await freshDisk();
    const { engine, smgr, volume } = await openOn(disk, { create: { sizeBytes: 128 * KiB }, grow });
    let written = 0;
    let full: unknown;
    try {
      for (; written < 200; written++) await extendPages(smgr, 16384, 1);
    } catch (err) {
      full = err;
    }
    volume.checkInvariants();
    expect(full).toMatchObject({ code: 'VOLUME_FULL' });
    expect((full as Error).message).toMatch(/it may not grow past grow\.max \(524288 bytes, now 524288\): raise grow\.max, or grow it with `lamstore grow \/vol\/lam\.vol --size <larger size>`/);
    expect(written).toBeGreaterThan(32); // more than 128 KiB of pages
    expect(volume.volumeSizeBytes).toBe(grow.max);
    expect(volume.stats.grows).toBeGreaterThanOrEqual(2);
    expect(volume.stats.grownBytes).toBe(grow.max - 128 * KiB);
    expect(volume.stats.grownBytes % grow.step).toBe(0);
    // Pages written since the last checkpoint may be lost in a crash; a checkpoint makes them durable.
    await engine.checkpoint();
    const crashed = disk.crash('drop');
    expect(await errorFindings(crashed)).toEqual([]);
    const again = await openOn(crashed, { grow });
    expect(again.volume.volumeSizeBytes).toBe(grow.max);
    expect(again.volume.info().fileSizeBytes).toBe(grow.max);
    await expectPages(again.smgr, 16384, written);
    await again.engine.close();
    await engine.close();
  });

  it('without grow the VOLUME_FULL message says how to grow the volume', async () => {
    const disk = await freshDisk();
    const { engine, smgr, volume } = await openOn(disk, { create: { sizeBytes: 128 * KiB } });
    const err = await extendPages(smgr, 16384, 100).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VOLUME_FULL' });
    expect((err as Error).message).toMatch(/; grow it with `lamstore grow \/vol\/lam\.vol --size <larger size>` while no engine holds it, or open it with volumeExtension\(\{ path, grow: \{ step, max \} \}\)/);
    expect(volume.stats.grows).toBe(0);
    expect(volume.volumeSizeBytes).toBe(128 * KiB);
    await engine.close();
  });

  it('a crash before any FileIO call while the engine grows leaves the old or the new size and exactly one checkpoint (D1, D2)', async () => {
    const disk = await freshDisk();
    const initial = 128 * KiB;
    const n1 = 4; // fits the initial size with the V5 reserve: the first checkpoint records 128 KiB
    const n2 = 60;
    const { engine, smgr, volume } = await openOn(disk, { create: { sizeBytes: initial }, grow });
    await extendPages(smgr, 16384, n1);
    await engine.checkpoint();
    expect(volume.stats.grows).toBe(0);
    const images: { index: number; mode: string; disk: SimDisk }[] = [];
    disk.onCall = (index) => {
      for (const mode of CRASH_MODES) images.push({ index, mode, disk: disk.crash(mode, index) });
    };
    await extendPages(smgr, 16384, n2 - n1);
    await writePages(smgr, rel(16384), ForkNumber.MAIN, 0, [makePage(rel(16384), ForkNumber.MAIN, 0, 2)]);
    await engine.checkpoint();
    disk.onCall = undefined;
    images.push({ index: disk.callCount + 1, mode: 'after', disk: disk.crash('drop') });
    expect(volume.stats.grows).toBeGreaterThanOrEqual(1);
    const grownSize = volume.volumeSizeBytes;
    await engine.close();

    const outcomes = { first: 0, second: 0, grownUnrecorded: 0 };
    for (const img of images) {
      const what = `crash before call ${img.index} (${img.mode})`;
      const fileBytes = img.disk.readFileNow(VOL)!.length;
      const again = await openOn(img.disk, { grow });
      const activeSlot = again.volume.info().activeSlot;
      again.volume.checkInvariants();
      const size = again.volume.volumeSizeBytes;
      expect(size === initial || size === grownSize, `${what}: size ${size}`).toBe(true);
      const nblocks = await again.smgr.nblocks(rel(16384), ForkNumber.MAIN);
      if (nblocks === n1) {
        outcomes.first++;
        await expectPages(again.smgr, 16384, n1);
      } else {
        outcomes.second++;
        expect(nblocks, what).toBe(n2);
        expect(size, what).toBe(grownSize);
        await expectPages(again.smgr, 16384, n2, (b) => (b === 0 ? 2 : 1));
      }
      if (size === initial && fileBytes > initial) outcomes.grownUnrecorded++;
      await again.engine.close();
      expect(await errorFindings(img.disk, activeSlot), what).toEqual([]);
    }
    console.log(`online-grow-crash: states=${images.length} first-checkpoint=${outcomes.first} second-checkpoint=${outcomes.second} grown-file-old-size=${outcomes.grownUnrecorded}`);
    expect(outcomes.first).toBeGreaterThan(0);
    expect(outcomes.second).toBeGreaterThan(0);
    expect(outcomes.grownUnrecorded).toBeGreaterThan(0);
  });

  it('a page write (writeBuffers: copy-on-write needs a new block per page) that needs room grows too', async () => {
    const disk = await freshDisk();
    const { engine, smgr, volume } = await openOn(disk, { create: { sizeBytes: 64 * KiB }, grow: { step: 16 * KiB, max: 1024 * KiB } });
    await extendPages(smgr, 16384, 6);
    await engine.checkpoint();
    const r = rel(16384);
    const growsBefore = volume.stats.grows;
    // Every block the checkpoint made durable stays pending until the next one: 6 more blocks.
    await writePages(smgr, r, ForkNumber.MAIN, 0, Array.from({ length: 6 }, (_, b) => makePage(r, ForkNumber.MAIN, b, 2)));
    expect(volume.stats.grows).toBe(growsBefore + 1);
    volume.checkInvariants();
    await expectPages(smgr, 16384, 6, () => 2);
    await engine.checkpoint();
    const again = await openOn(disk.crash('drop'));
    expect(again.volume.volumeSizeBytes).toBe(volume.volumeSizeBytes);
    await expectPages(again.smgr, 16384, 6, () => 2);
    await again.engine.close();
    await engine.close();
  });

  it('concurrent writers that all need room share the growth (one at a time); the size is recorded by the next checkpoint', async () => {
    const disk = await freshDisk();
    const { engine, smgr, volume } = await openOn(disk, { create: { sizeBytes: 128 * KiB }, grow: { step: 32 * KiB, max: 1024 * KiB } });
    let ftruncates = 0;
    disk.onCall = (_index, kind) => {
      if (kind === 'ftruncate') ftruncates++;
    };
    await Promise.all([16384, 16385, 16386, 16387].map((n) => extendPages(smgr, n, 25)));
    disk.onCall = undefined;
    volume.checkInvariants();
    expect(volume.stats.grows).toBeGreaterThanOrEqual(1);
    expect(ftruncates).toBe(volume.stats.grows);
    expect(volume.stats.grownBytes).toBe(volume.volumeSizeBytes - 128 * KiB);
    for (const n of [16384, 16385, 16386, 16387]) await expectPages(smgr, n, 25);
    await engine.checkpoint();
    const again = await openOn(disk.crash('drop'));
    expect(again.volume.volumeSizeBytes).toBe(volume.volumeSizeBytes);
    for (const n of [16384, 16385, 16386, 16387]) await expectPages(again.smgr, n, 25);
    await again.engine.close();
    await engine.close();
  });

  it('a full disk while growing is VOLUME_FULL naming ENOSPC and changes nothing; a failed fdatasync while growing fails the volume', async () => {
    const disk = await freshDisk();
    const { engine, smgr, volume } = await openOn(disk, { create: { sizeBytes: 128 * KiB }, grow });
    await extendPages(smgr, 16384, 4);
    const sizeBefore = volume.volumeSizeBytes;
    const growsBefore = volume.stats.grows;
    let err: unknown;
    let written = 4;
    // The next extend that needs room grows: the first write after its ftruncate (the zero-fill's) fails.
    disk.onCall = (_index, kind) => {
      if (kind !== 'ftruncate') return;
      disk.onCall = undefined;
      disk.injectFault({ kind: 'pwrite', code: 'ENOSPC', pathIncludes: 'lam.vol' });
    };
    for (; written < 100 && err === undefined; written++) await extendPages(smgr, 16384, 1).catch((e: unknown) => (err = e));
    written--;
    expect(err).toMatchObject({ code: 'VOLUME_FULL', errno: 'ENOSPC', message: `/vol/lam.vol: volume is full and could not grow from ${sizeBefore} to ${sizeBefore + grow.step} bytes: write failed: ENOSPC` });
    expect(volume.stats.grows).toBe(growsBefore);
    expect(volume.volumeSizeBytes).toBe(sizeBefore);
    expect(disk.readFileNow(VOL)!.length).toBe(sizeBefore); // cut back
    volume.checkInvariants();
    // The fault was once: the next extend grows.
    await extendPages(smgr, 16384, 1);
    written++;
    expect(volume.stats.grows).toBe(growsBefore + 1);
    expect(volume.volumeSizeBytes).toBe(sizeBefore + grow.step);
    await expectPages(smgr, 16384, written);

    disk.injectFault({ kind: 'fdatasync', code: 'EIO', pathIncludes: 'lam.vol' });
    let failed: unknown;
    for (let i = 0; i < 100 && failed === undefined; i++) await extendPages(smgr, 16384, 1).catch((e: unknown) => (failed = e));
    expect(failed).toMatchObject({ code: 'ENGINE_FAILED' });
    expect(volume.failure).not.toBeNull();
    await expect(extendPages(smgr, 16384, 1)).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    await engine.close().catch(() => {});
  });

  it('bad grow options are BAD_ARGUMENT naming the key, at the call or at open; nothing is created', async () => {
    const bad = async (fn: () => unknown): Promise<string> => {
      try {
        await fn();
      } catch (err) {
        expect((err as { code?: string }).code).toBe('BAD_ARGUMENT');
        return (err as Error).message;
      }
      throw new Error('accepted');
    };
    const at = (g: unknown) => bad(() => volumeExtension({ path: VOL, grow: g as VolumeGrowOptions }));
    expect(await at({ step: 0, max: 1 << 20 })).toMatch(/option grow\.step must be a positive whole number of bytes, got 0/);
    expect(await at({ step: 4096, max: -1 })).toMatch(/option grow\.max must be a positive whole number/);
    expect(await at({ step: 4096 })).toMatch(/option grow\.max must be/);
    expect(await at({ step: 4096, max: 2 * 1024 ** 4 })).toMatch(/option grow\.max .* above the largest volume/);
    expect(await at({ step: 4096, max: 1 << 20, stp: 1 })).toBe('unknown option "stp" for volumeExtension({ grow }) (known: step, max)');
    expect(await at(5)).toMatch(/option grow must be an object/);

    const disk = await freshDisk();
    expect(await bad(() => openOn(disk, { create: { sizeBytes: 256 * KiB }, grow: { step: 64 * KiB, max: 128 * KiB } }))).toMatch(/option grow\.max 131072 is below the volume's size, 262144 bytes/);
    expect(disk.readFileNow(VOL)).toBeNull();
    await openOn(disk, { create: { sizeBytes: 256 * KiB } }).then((v) => v.engine.close());
    expect(await bad(() => openOn(disk, { grow: { step: 1000, max: 1024 * KiB } }))).toMatch(/option grow\.step 1000 is not a multiple of the block size 4096/);
    expect(await bad(() => openOn(disk, { grow: { step: 4096, max: 1024 * KiB + 4 } }))).toMatch(/option grow\.max 1048580 is not a multiple of the block size 4096/);
    expect(await bad(() => openOn(disk, { grow: { step: 4096, max: 128 * KiB } }))).toMatch(/option grow\.max 131072 is below the volume's size, 262144 bytes/);
    // The lock was released by every refused open.
    await openOn(disk, { grow: { step: 4096, max: 256 * KiB } }).then((v) => v.engine.close());
  });
});
