/**
 * Goal: record exactly what lamstore does after an "fsyncgate" sync failure, on md and on the
 * volume, so that any change to it is seen. In fsyncgate mode a failed fsync/fdatasync also makes
 * the kernel forget the file's unsynced writes while still serving them from its cache: they will
 * never reach the disk, and nothing tells a reader so. On both, the engine enters the failed
 * state at once (every later write and checkpoint: ENGINE_FAILED). Then:
 *  - md, known limit (no WAL; README "Known limit", campaign-model MF5): after close and reopen
 *    without a crash (the page cache survives), the failed writes read back as if written; they
 *    are not dirty, so no later checkpoint writes them again, even one that completes and syncs
 *    the same file; after a power loss following that, they are gone: each overwritten block is
 *    back to its contents at the last completed checkpoint, and an appended block is gone with
 *    the file's length.
 *  - volume, recovered (format 2, copy-on-write; DESIGN.md section 8 D2 "also after a failed
 *    fdatasync"): no page write ever lands on a block the durable catalog references and the
 *    superblock never switched, so the failed checkpoint's pages sit in free space, referenced by
 *    nothing. A power loss (in every crash mode) and a reopen without one both read the volume
 *    exactly as of the last completed checkpoint: the same fork sizes, the same pages, block 0 at
 *    the same volume block; a later checkpoint builds on that. When the superblock's fdatasync
 *    is the one that fails, the switch was written and then forgotten: the volume undoes it in
 *    the cache (volume.ts #undoSwitch), so the reopen again finds the last completed checkpoint
 *    and a power loss during the reopened volume's next checkpoint finds it or that checkpoint,
 *    never a catalog whose blocks were reused.
 * Method: SimDisk with one injected fault in fsyncgate mode on the relation's file; durable bytes
 * inspected with readFileDurable; SimDisk.crash for the power loss.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber } from '../engine/index.js';
import { CRASH_MODES, SimDisk } from '../engine/testing.js';
import type { EngineOptions, Extension } from '../engine/index.js';
import { volumeExtension } from '../volume/index.js';
import type { VolumeExtension } from '../volume/index.js';
import { REL, SMALL_BS, fillOf, onDisk, pageOf, withEngine } from './helpers/engine.js';

const MD_SEGMENT = '/data/base/5/16384';
const VOLUME_PATH = '/vol/lam.vol';

type Storage = 'md' | 'volume';

/** Versions: 1 at the completed checkpoint, 2 the overwrite and 3 the append that fail to sync, 4 a later change. */
const page = (version: number) => pageOf(version, SMALL_BS);

function preload(storage: Storage): Extension[] {
  return storage === 'volume' ? [volumeExtension({ path: VOLUME_PATH, create: { sizeBytes: 4 * 1024 * 1024 } })] : [];
}

function optionsOn(disk: SimDisk, storage: Storage): EngineOptions {
  return onDisk(disk, { blockSize: SMALL_BS, preload: preload(storage) });
}

async function versions(engine: Engine, storage: Storage): Promise<number[]> {
  const rel = engine.relation(REL, { storage });
  const out: number[] = [];
  const n = await rel.nblocks(ForkNumber.MAIN);
  for (let b = 0; b < n; b++) out.push(fillOf(await rel.read(ForkNumber.MAIN, b)));
  return out;
}

/**
 * Blocks 0 and 1 made durable (v1) by a completed checkpoint; then block 0 overwritten (v2,
 * written by the next checkpoint's BufferSync) and block 2 appended (v3, written at once), and
 * that checkpoint's sync of the relation's file fails in fsyncgate mode: its `nth` sync of the
 * file (the volume's checkpoint makes two: the pages and catalog, then the superblock).
 * `physical`: the volume block that holds block 0 at the completed checkpoint (volume only).
 */
async function failSyncInFsyncgateMode(storage: Storage, nth = 1, extra: Partial<EngineOptions> = {}): Promise<{ disk: SimDisk; engine: Engine; error: unknown; physical: number | undefined }> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  const extensions = preload(storage);
  const engine = await Engine.open(onDisk(disk, { blockSize: SMALL_BS, preload: extensions, ...extra }));
  const rel = engine.relation(REL, { storage });
  await rel.create(ForkNumber.MAIN);
  await rel.extend(ForkNumber.MAIN, page(1));
  await rel.extend(ForkNumber.MAIN, page(1));
  await engine.checkpoint();
  const physical = storage === 'volume' ? (extensions[0] as VolumeExtension).volume!.physicalBlock(REL, ForkNumber.MAIN, 0) : undefined;
  await rel.write(ForkNumber.MAIN, 0, page(2));
  await rel.extend(ForkNumber.MAIN, page(3));
  disk.injectFault(
    storage === 'md'
      ? { kind: 'fsync', code: 'EIO', fsyncgate: true, pathIncludes: MD_SEGMENT }
      : { kind: 'fdatasync', nth, code: 'EIO', fsyncgate: true, pathIncludes: VOLUME_PATH },
  );
  const error = await engine.checkpoint().then(
    () => null,
    (e: unknown) => e,
  );
  return { disk, engine, error, physical };
}

describe("fsyncgate: md's known limit (no WAL), the copy-on-write volume recovered", () => {
  it('md, known limit: an fsyncgate fsync failure fails the engine; a reopen without a crash reads the failed writes as written, a later checkpoint does not rewrite them, and a power loss then reverts the overwritten block to the last completed checkpoint and drops the appended one', async () => {
    const { disk, engine, error } = await failSyncInFsyncgateMode('md');
    expect(error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining(`EIO: injected fault, fsync '${MD_SEGMENT}'`) });
    expect(engine.failed).toBe(true);
    await expect(engine.relation(REL).write(ForkNumber.MAIN, 1, page(9))).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    // What the kernel serves and what the disk holds now differ, and no sync will reconcile them.
    expect(disk.readFileNow(MD_SEGMENT)!.length).toBe(3 * SMALL_BS);
    expect(disk.readFileDurable(MD_SEGMENT)!.length).toBe(2 * SMALL_BS);
    expect(disk.readFileDurable(MD_SEGMENT)![16]).toBe(1);
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });

    // Reopen, no crash: the startup sync "succeeds" with nothing left to write.
    await withEngine(optionsOn(disk, 'md'), async (reopened) => {
      expect(reopened.openStats.uncleanStop).toBe(true);
      expect(reopened.failed).toBe(false);
      expect(await versions(reopened, 'md')).toEqual([2, 1, 3]); // as if written
      // A later checkpoint that completes and syncs the same file: the failed writes are not dirty.
      await reopened.relation(REL).write(ForkNumber.MAIN, 1, page(4));
      const stats = await reopened.checkpoint();
      expect(stats.buffersWritten).toBe(1);
      expect(await versions(reopened, 'md')).toEqual([2, 4, 3]);
    });

    // Power loss after a clean close: the failed writes are lost, the later checkpoint's kept.
    await withEngine(optionsOn(disk.crash('drop'), 'md'), async (afterPowerLoss) => {
      expect(afterPowerLoss.openStats.uncleanStop).toBe(false);
      expect(await versions(afterPowerLoss, 'md')).toEqual([1, 4]);
    });
  });

  it('volume, recovered: an fsyncgate failure of the checkpoint\'s fdatasync fails the engine; a power loss in every crash mode and a reopen without a crash both read the volume exactly as of the last completed checkpoint (the failed checkpoint\'s pages were never referenced), and a later checkpoint builds on that', async () => {
    const { disk, engine, error, physical } = await failSyncInFsyncgateMode('volume');
    expect(error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining(`EIO: injected fault, fdatasync '${VOLUME_PATH}'`) });
    expect(engine.failed).toBe(true);
    await expect(engine.relation(REL, { storage: 'volume' }).write(ForkNumber.MAIN, 1, page(9))).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });

    // A power loss right after the failure, whatever it keeps of the forgotten and later writes.
    for (const mode of CRASH_MODES) {
      for (let seed = 1; seed <= 2; seed++) {
        await withEngine(optionsOn(disk.crash(mode, seed), 'volume'), async (afterPowerLoss) => {
          expect(await versions(afterPowerLoss, 'volume'), `${mode} seed ${seed}`).toEqual([1, 1]);
        });
      }
    }

    // Reopen, no crash (the page cache still serves the forgotten writes): the superblock never
    // switched, and copy-on-write put the v2 page and the v3 append in free space, so the
    // completed checkpoint's catalog maps block 0 to the block it had, holding v1.
    const ext = volumeExtension({ path: VOLUME_PATH });
    await withEngine(onDisk(disk, { blockSize: SMALL_BS, preload: [ext] }), async (reopened) => {
      expect(reopened.openStats.uncleanStop).toBe(true);
      expect(reopened.failed).toBe(false);
      expect(await versions(reopened, 'volume')).toEqual([1, 1]);
      expect(ext.volume!.physicalBlock(REL, ForkNumber.MAIN, 0)).toBe(physical);
      await reopened.relation(REL, { storage: 'volume' }).write(ForkNumber.MAIN, 1, page(4));
      const stats = await reopened.checkpoint();
      expect(stats.buffersWritten).toBe(1);
      expect(await versions(reopened, 'volume')).toEqual([1, 4]);
    });

    // Power loss after a clean close: the later checkpoint, on top of the last completed one.
    await withEngine(optionsOn(disk.crash('drop'), 'volume'), async (afterPowerLoss) => {
      expect(afterPowerLoss.openStats.uncleanStop).toBe(false);
      expect(await versions(afterPowerLoss, 'volume')).toEqual([1, 4]);
    });
  });

  it('volume, recovered: an fsyncgate failure of the superblock\'s fdatasync (the switch written, then forgotten) fails the engine; a reopen without a crash reads the last completed checkpoint, not the forgotten switch, and a power loss at any I/O call of the next checkpoint reads it or that checkpoint exactly', async () => {
    const { disk, engine, error } = await failSyncInFsyncgateMode('volume', 2);
    expect(error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining(`EIO: injected fault, fdatasync '${VOLUME_PATH}'`) });
    expect(engine.failed).toBe(true);
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    for (const mode of CRASH_MODES) {
      await withEngine(optionsOn(disk.crash(mode, 1), 'volume'), async (afterPowerLoss) => {
        expect(await versions(afterPowerLoss, 'volume'), mode).toEqual([1, 1]);
      });
    }

    // Reopen, no crash. The failed checkpoint's pages and catalog were durable, but its
    // superblock never will be: serving it from the cache would build the reopened volume on a
    // switch that a power loss undoes, after the older catalog's blocks were reused.
    await withEngine(optionsOn(disk, 'volume'), async (reopened) => {
      expect(reopened.openStats.uncleanStop).toBe(true);
      expect(await versions(reopened, 'volume')).toEqual([1, 1]);
      const rel = reopened.relation(REL, { storage: 'volume' });
      await rel.write(ForkNumber.MAIN, 0, page(5));
      await rel.write(ForkNumber.MAIN, 1, page(5));
      for (let b = 2; b < 8; b++) await rel.extend(ForkNumber.MAIN, page(6));
      const next = [5, 5, 6, 6, 6, 6, 6, 6];
      let images = 0;
      disk.beforeCall = async (index) => {
        for (const mode of CRASH_MODES) {
          images++;
          await withEngine(optionsOn(disk.crash(mode, index), 'volume'), async (afterPowerLoss) => {
            expect([[1, 1], next], `crash before call ${index}, ${mode}`).toContainEqual(await versions(afterPowerLoss, 'volume'));
          });
        }
      };
      try {
        await reopened.checkpoint();
      } finally {
        disk.beforeCall = undefined;
      }
      expect(images).toBeGreaterThan(0);
      expect(await versions(reopened, 'volume')).toEqual(next);
    });
  });

  it('volume, recovered with dataSyncRetry too: the superblock\'s fdatasync fails in fsyncgate mode, only the checkpoint fails, and the process is killed before any retry; the reopen reads the last completed checkpoint, and so does a power loss after it', async () => {
    const { disk, engine, error } = await failSyncInFsyncgateMode('volume', 2, { dataSyncRetry: true });
    expect(error).toMatchObject({ code: 'IO_ERROR' });
    expect(engine.failed).toBe(false); // dataSyncRetry: the switch is in doubt, to be redone (R2)
    // kill -9 before the next sync redoes it: the forgotten switch must not be served from the
    // page cache to the next process (#undoSwitch wrote zeros over its slot).
    disk.processCrash();
    await withEngine(optionsOn(disk, 'volume'), async (reopened) => {
      expect(reopened.openStats.uncleanStop).toBe(true);
      expect(await versions(reopened, 'volume')).toEqual([1, 1]);
    });
    for (const mode of CRASH_MODES) {
      await withEngine(optionsOn(disk.crash(mode, 1), 'volume'), async (afterPowerLoss) => {
        expect(await versions(afterPowerLoss, 'volume'), mode).toEqual([1, 1]);
      });
    }
  });
});
