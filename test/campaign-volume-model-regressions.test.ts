/**
 * Goal: every failing sequence the volume model-based test (test/campaign-volume-model.test.ts)
 * found, shrunk by fast-check, kept as an explicit command list so the bug stays fixed (SQLite's
 * rule: no fix without a test that shows it). Method: each list runs through the same model and
 * commands (test/helpers/campaign-volume-model.ts) without fast-check; the test names the bug.
 *
 * Found and fixed (grow.ts G4, the undo of a failed switch): growVolumeFile's superblock
 * fdatasync failing in fsyncgate mode left the new superblock (the new size) in the page cache
 * only; a reopen without a power loss built on it, and a power loss then went back to the old
 * size: the reopened state was never durable. Worse, the reopened volume's next checkpoint
 * wrote generation g + 2 over the slot of g, the only durable superblock, while g + 1 was not
 * durable (the hazard volume.ts #undoSwitch removes from the volume sync). Shrunk case (seed
 * 20251202): a 16-block volume, growVolumeFile's second fdatasync failing (EIO, fsyncgate), a
 * reopen (judged), a power loss: the reopen had shown 17 blocks, the power loss left 16.
 *
 * Found and fixed (volume.ts V5, catalog.ts T4): "a checkpoint never runs out of room" did not
 * hold when the previous capture grew the catalog on a nearly full volume. The reserve was
 * computed from the catalog as it was (the leaves there were then); a build that added a leaf
 * took it and an index page from free space and raised the reserve the next checkpoint's page
 * writes asked for, so free space ended below it, and every later checkpoint with a dirty page
 * failed with VOLUME_FULL (nothing lost, nothing made durable), and so did the engine's close.
 * Shrunk case (seed 2): a 16-block volume, pool of 1 page: create, extend 1, sync (the first
 * leaf), a page write into the pool, checkpoint: VOLUME_FULL. Now the reserve is a bound that no
 * checkpoint raises (the most blocks any catalog of these forks and blocks can take, T4, kept
 * twice less what the catalog takes now), so the catalog's growth is paid for when the fork or
 * block that needs it is added, and a checkpoint's own writes never fail for room (VM3).
 *
 * Found and fixed (volume.ts createSnapshot, with snapshots in the model): a create under a
 * taken name ran its `checkpoint` option (the engine's checkpoint: the pool's pages written, a
 * volume sync) before answering BAD_ARGUMENT, where README "Snapshots" says the refusals come
 * before anything is written. Now the name is checked first, and again inside the sync chain.
 * Shrunk case: a pool of 1 page; create, extend 1, snapshot s0, a page write into the pool,
 * snapshot s0 again: the refusal must leave the page in the pool.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.js';
import { ManualClock, SimDisk } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { runVolumeSequence } from './helpers/campaign-volume-model.js';
import { makePage, rel } from './helpers/volume.js';
import { SMALL_BS } from './helpers/engine.js';

describe('volume model-based PBT regressions', () => {
  it('growVolumeFile: a superblock fdatasync failed in fsyncgate mode, a reopen without a power loss, then a power loss: the same size both times (grow.ts G4; shrunk from seed 20251202)', async () => {
    const stats = await runVolumeSequence({ sizeBlocks: 16, poolPages: 0, grow: null }, [
      { kind: 'fault', target: 'grow', io: 'fdatasync', nth: 2, code: 'EIO', fsyncgate: true, at: 0, pick: 0 },
      { kind: 'crash', mode: 'drop', seed: 0 },
    ]);
    expect(stats.commands).toBe(2);
    expect(stats.faultsFired).toBe(1);
  });

  it('V5: after a capture that added the catalog\'s first leaf, the next checkpoints write the pool\'s page (shrunk from seed 2; it was VOLUME_FULL)', async () => {
    const stats = await runVolumeSequence({ sizeBlocks: 16, poolPages: 1, grow: null }, [
      { kind: 'create', rel: 1, fork: 0 },
      { kind: 'extend', at: 0, skip: 0, count: 1 },
      { kind: 'sync' },
      { kind: 'write', picks: [{ at: 0, pick: 0 }], pooled: true },
      { kind: 'checkpoint' },
      { kind: 'write', picks: [{ at: 0, pick: 0 }], pooled: true },
      { kind: 'reopen', how: 'clean' },
    ]);
    expect(stats.checkpointWrites).toBe(2);
  });

  it('createSnapshot under a taken name is refused before its checkpoint option runs: the pool page stays dirty, nothing is written (volume.ts createSnapshot; found with snapshots in the model, seed 20251202)', async () => {
    const stats = await runVolumeSequence({ sizeBlocks: 32, poolPages: 1, grow: null }, [
      { kind: 'create', rel: 1, fork: 0 },
      { kind: 'extend', at: 0, skip: 0, count: 1 },
      { kind: 'snapCreate', slot: 0 },
      { kind: 'write', picks: [{ at: 0, pick: 0 }], pooled: true },
      { kind: 'snapCreate', slot: 0 },
      { kind: 'reopen', how: 'close' },
    ]);
    expect(stats.snapCreated).toBe(1);
    expect(stats.snapNameTaken).toBe(1);
    // Only the first create's checkpoint ran (it had no pool page); the page written after stays in the pool.
    expect(stats.checkpointWrites).toBe(0);
    expect(stats.snapshotsVerified).toBe(1);
  });

  it('V5 through the engine: on a nearly full volume every checkpoint writes its page and close succeeds; the extend that would take the room is VOLUME_FULL and changes nothing', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    await disk.fsyncDir('/');
    const ext = volumeExtension({ path: '/vol/v', create: { sizeBytes: 16 * SMALL_BS, blockSize: SMALL_BS } });
    const engine = await Engine.open({ dataDir: '/data', io: disk, clock: new ManualClock(), blockSize: SMALL_BS, sharedBuffers: 16, preload: [ext] });
    const r = engine.relation(rel(1), { storage: 'volume' });
    await r.create(0);
    await r.extend(0, makePage(rel(1), 0, 0, 1));
    // Fill the volume with blocks until the reserve refuses one.
    let blocks = 1;
    for (;;) {
      try {
        await r.extend(0, makePage(rel(1), 0, blocks, 1));
        blocks++;
      } catch (err) {
        expect(err).toMatchObject({ code: 'VOLUME_FULL' });
        break;
      }
    }
    expect(await r.nblocks(0)).toBe(blocks);
    for (let round = 2; round < 12; round++) {
      for (let b = 0; b < blocks; b++) await r.write(0, b, makePage(rel(1), 0, b, round));
      await engine.checkpoint();
      ext.volume!.checkInvariants();
    }
    await engine.close();
    expect(disk.openHandleCount).toBe(0);
    const again = await Engine.open({ dataDir: '/data', io: disk, clock: new ManualClock(), blockSize: SMALL_BS, sharedBuffers: 16, preload: [volumeExtension({ path: '/vol/v' })] });
    const r2 = again.relation(rel(1), { storage: 'volume' });
    expect(await r2.nblocks(0)).toBe(blocks);
    for (let b = 0; b < blocks; b++) expect(Buffer.from(await r2.read(0, b)).equals(Buffer.from(makePage(rel(1), 0, b, 11)))).toBe(true);
    await again.close();
  });
});
