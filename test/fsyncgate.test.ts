/**
 * Goal: record exactly what lamstore does today after an "fsyncgate" sync failure (README
 * "Known limit", campaign-model MF5), on md and on the volume, so that any change to it is seen.
 * In fsyncgate mode a failed fsync/fdatasync also makes the kernel forget the file's unsynced
 * writes while still serving them from its cache: they will never reach the disk, and nothing
 * tells a reader so. Today:
 *  - the engine enters the failed state at once (every later write and checkpoint: ENGINE_FAILED);
 *  - after close and reopen without a crash (the page cache survives), the failed writes read
 *    back as if written; they are not dirty, so no later checkpoint writes them again, even one
 *    that completes and syncs the same file;
 *  - after a power loss following that, they are gone: each overwritten block is back to its
 *    contents at the last completed checkpoint before the failure, and on md an appended block
 *    is gone with the file's length.
 * On the volume the appended block is already gone at the reopen: its catalog was never
 * published. The copy-on-write volume (DESIGN.md section 5, format 2; section 8 D2 "also after a
 * failed fdatasync") never writes over a block the durable catalog references, so the volume
 * case will then read the last completed checkpoint both at the reopen and after the power loss
 * ("recovered"); that issue flips the volume test's expectations. md keeps this limit (no WAL).
 * Method: SimDisk with one injected fault in fsyncgate mode on the relation's file; durable bytes
 * inspected with readFileDurable; crash('drop') for the power loss.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import type { EngineOptions, Extension } from '../engine/index.js';
import { volumeExtension } from '../volume/index.js';
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
 * that checkpoint's sync of the relation's file fails in fsyncgate mode.
 */
async function failSyncInFsyncgateMode(storage: Storage): Promise<{ disk: SimDisk; engine: Engine; error: unknown }> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  const engine = await Engine.open(optionsOn(disk, storage));
  const rel = engine.relation(REL, { storage });
  await rel.create(ForkNumber.MAIN);
  await rel.extend(ForkNumber.MAIN, page(1));
  await rel.extend(ForkNumber.MAIN, page(1));
  await engine.checkpoint();
  await rel.write(ForkNumber.MAIN, 0, page(2));
  await rel.extend(ForkNumber.MAIN, page(3));
  disk.injectFault(
    storage === 'md'
      ? { kind: 'fsync', code: 'EIO', fsyncgate: true, pathIncludes: MD_SEGMENT }
      : { kind: 'fdatasync', code: 'EIO', fsyncgate: true, pathIncludes: VOLUME_PATH },
  );
  const error = await engine.checkpoint().then(
    () => null,
    (e: unknown) => e,
  );
  return { disk, engine, error };
}

describe("fsyncgate: today's known limit (no WAL)", () => {
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

  it('volume, known limit until the copy-on-write volume issue flips it to recovered: an fsyncgate fdatasync failure fails the engine; a reopen without a crash reads the overwritten block as written (the append is already gone), a later checkpoint does not rewrite it, and a power loss then reverts it to the last completed checkpoint', async () => {
    const { disk, engine, error } = await failSyncInFsyncgateMode('volume');
    expect(error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining(`EIO: injected fault, fdatasync '${VOLUME_PATH}'`) });
    expect(engine.failed).toBe(true);
    await expect(engine.relation(REL, { storage: 'volume' }).write(ForkNumber.MAIN, 1, page(9))).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });

    // Reopen, no crash. The superblock was never switched, so the catalog is the completed
    // checkpoint's (2 blocks: the append is gone), but block 0 is read in place from the cache.
    // With copy-on-write this becomes [1, 1]: the v2 page would sit in free space.
    await withEngine(optionsOn(disk, 'volume'), async (reopened) => {
      expect(reopened.openStats.uncleanStop).toBe(true);
      expect(reopened.failed).toBe(false);
      expect(await versions(reopened, 'volume')).toEqual([2, 1]);
      await reopened.relation(REL, { storage: 'volume' }).write(ForkNumber.MAIN, 1, page(4));
      const stats = await reopened.checkpoint();
      expect(stats.buffersWritten).toBe(1);
      expect(await versions(reopened, 'volume')).toEqual([2, 4]);
    });

    // Power loss after a clean close: block 0 is back to the last completed checkpoint before
    // the failure. With copy-on-write: [1, 4] here too, but the reopen above agrees with it.
    await withEngine(optionsOn(disk.crash('drop'), 'volume'), async (afterPowerLoss) => {
      expect(afterPowerLoss.openStats.uncleanStop).toBe(false);
      expect(await versions(afterPowerLoss, 'volume')).toEqual([1, 4]);
    });
  });
});
