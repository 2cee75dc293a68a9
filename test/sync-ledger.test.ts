/**
 * Goal: the sync ledger catches a sync path that skips its fsync, and stays
 * quiet for a correct one: a custom extension's, md's segment sync and the volume's sync.
 * Method: a small extension that writes one file per tag through the engine's FileIO and
 * registers a SYNC request; its sync callback either fsyncs the file or (broken on purpose) does
 * nothing. For md and the volume, a stub on the engine's own storage manager object replaces its
 * sync path (md's syncSegment for one segment, the volume's syncTag) with one that returns
 * without syncing; no source is changed. The checkpoint must fail with SYNC_LEDGER naming the
 * file and the byte range.
 *
 * Why stubs of the sync path and not a FileIO double: Engine.open puts the ledger on top of the
 * FileIO it is given, so a FileIO whose fsync returns without syncing is, to the ledger, a sync
 * that succeeded. The last test records that limit: the ledger checks that every sync path made
 * its call, not that the disk kept its word.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, ForkNumber, SyncRequestType, type Extension, type FileIO, type FileTag } from '../engine/index.js';
import { MdStorageManager } from '../engine/md/md.js';
import { SimDisk } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { tempDir } from './helpers/index.js';
import { NoSyncIO } from './helpers/io-doubles.js';
import { withEngine, SMALL_BS, REL } from './helpers/engine.js';

function fileStore(skipFsync: boolean) {
  const state = { id: -1, io: undefined as unknown as FileIO, dir: '' };
  const pathOf = (tag: FileTag) => join(state.dir, `seg${tag.segno}`);
  const extension: Extension = {
    name: 'filestore',
    init(ctx) {
      state.io = ctx.io;
      state.dir = ctx.dataDir;
      state.id = ctx.registerSyncHandler({
        name: 'filestore',
        async syncFileTag(tag) {
          if (skipFsync) return; // the bug the ledger must catch
          const h = await ctx.io.open(pathOf(tag));
          try {
            await ctx.io.fsync(h);
          } finally {
            await ctx.io.close(h);
          }
        },
        describeTag: pathOf,
      });
    },
  };
  const write = async (engine: Engine, segno: number) => {
    const tag: FileTag = { handler: state.id, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno };
    const h = await state.io.open(pathOf(tag), { create: true });
    await state.io.pwrite(h, new Uint8Array(100).fill(segno), 0);
    await state.io.close(h);
    await engine.registerSyncRequest(tag, SyncRequestType.SYNC);
  };
  return { extension, write, pathOf };
}

/**
 * The sync path a test breaks stays broken, so the shutdown checkpoint of close fails the same way
 * the test's checkpoint did: its close must reject with SYNC_LEDGER too.
 */
const SHUTDOWN_FAILS_TOO = { closeRejects: ErrorCode.SYNC_LEDGER };

describe('sync ledger', () => {
  it('a handler that skips its fsync fails the checkpoint with SYNC_LEDGER naming the file and byte range', async () => {
    const store = fileStore(true);
    const dir = await tempDir();
    await withEngine({ dataDir: dir, preload: [store.extension], verifySync: true }, async (engine) => {
      await store.write(engine, 3);
      const err = await engine.checkpoint().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'SYNC_LEDGER' });
      expect((err as Error).message).toContain(join(dir, 'seg3'));
      expect((err as Error).message).toContain('bytes 0..99');
    }, SHUTDOWN_FAILS_TOO);
  });

  it('a correct handler passes, and the ledger is empty after the checkpoint', async () => {
    const store = fileStore(false);
    await withEngine({ dataDir: await tempDir(), preload: [store.extension], verifySync: true }, async (engine) => {
      for (let s = 0; s < 5; s++) await store.write(engine, s);
      expect(engine.ledger!.unsyncedPaths().length).toBe(5);
      await engine.checkpoint();
      expect(engine.ledger!.unsyncedPaths()).toEqual([]);
    });
  });

  it('a write issued after the checkpoint started is not held against it', async () => {
    const disk = new SimDisk();
    const store = fileStore(false);
    let late = false;
    // The extension's sync callback writes a new file mid-checkpoint: it belongs to the next one.
    const ext: Extension = {
      name: 'late',
      init(ctx) {
        const id = ctx.registerSyncHandler({
          name: 'late',
          async syncFileTag() {
            if (late) return;
            late = true;
            const h = await ctx.io.open('/data/late', { create: true });
            await ctx.io.pwrite(h, new Uint8Array(10), 0);
            await ctx.io.close(h);
          },
        });
        void id;
      },
    };
    await withEngine({ dataDir: '/data', io: disk, preload: [store.extension, ext], verifySync: true }, async (engine) => {
      await engine.registerSyncRequest({ handler: 6, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno: 0 }, SyncRequestType.SYNC);
      await engine.checkpoint();
      expect(engine.ledger!.unsyncedPaths()).toEqual(['/data/late']);
      // The next checkpoint has no request covering it: now it is a bug, and it is reported.
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'SYNC_LEDGER' });
    }, SHUTDOWN_FAILS_TOO);
  });
});

const VOLUME_PATH = '/vol/lam.vol';

function page(fill: number): Uint8Array {
  return new Uint8Array(SMALL_BS).fill(fill);
}

describe('sync ledger on the built-in sync paths', () => {
  it("md: a segment sync that skips one segment's fsync fails the checkpoint with SYNC_LEDGER naming that segment file and byte range", async () => {
    const dir = await tempDir();
    // Four blocks a segment: six blocks make segments 0 (full) and 1 (two blocks).
    await withEngine({ dataDir: dir, blockSize: SMALL_BS, relSegBlocks: 4, verifySync: true }, async (engine) => {
      const md = engine.storageManager('md');
      expect(md).toBeInstanceOf(MdStorageManager);
      // The sync phase hands md its tags in batches (syncSegments, pending-ops.ts P6).
      const syncSegments = (md as MdStorageManager).syncSegments.bind(md);
      const skipped: number[] = [];
      (md as MdStorageManager).syncSegments = async (tags: readonly FileTag[]) => {
        const us: number[] = [];
        for (const tag of tags) {
          if (tag.segno === 1) {
            skipped.push(tag.segno); // the bug the ledger must catch: segment 1 is never fsynced
            us.push(0);
            continue;
          }
          const r = await syncSegments([tag]);
          if (r.error !== undefined) return { done: us.length, error: r.error, us };
          us.push(r.us[0]!);
        }
        return { done: us.length, us };
      };
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 6; b++) await rel.extend(ForkNumber.MAIN, page(b + 1));
      const err = await engine.checkpoint().catch((e: unknown) => e);
      expect(skipped).toEqual([1]);
      expect(err).toMatchObject({ code: 'SYNC_LEDGER', path: join(dir, 'base/5/16384.1') });
      // Segment 1's oldest unsynced write: block 4, the first block of the segment.
      expect((err as Error).message).toBe(
        `${join(dir, 'base/5/16384.1')}: bytes 0..${SMALL_BS - 1} written before the checkpoint started are still not synced after it (a sync path skipped this file)`,
      );
      // Segment 0 was synced: the ledger names only the file that was skipped.
      expect(engine.ledger!.unsyncedPaths()).toEqual([join(dir, 'base/5/16384.1')]);
    }, SHUTDOWN_FAILS_TOO);
  });

  it('volume: a volume sync that skips its fdatasync fails the checkpoint with SYNC_LEDGER naming the volume file and the byte range of the first page', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const ext = volumeExtension({ path: VOLUME_PATH, create: { sizeBytes: 4 * 1024 * 1024 } });
    await withEngine({ dataDir: '/data', io: disk, blockSize: SMALL_BS, preload: [ext], verifySync: true }, async (engine) => {
      const volume = ext.volume!;
      let skipped = 0;
      volume.syncTag = async () => {
        skipped++; // the bug the ledger must catch: the volume is never fdatasynced
      };
      const rel = engine.relation(REL, { storage: 'volume' });
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 3; b++) await rel.extend(ForkNumber.MAIN, page(b + 1));
      const first = volume.physicalBlock(REL, ForkNumber.MAIN, 0) * SMALL_BS;
      const err = await engine.checkpoint().catch((e: unknown) => e);
      expect(skipped).toBeGreaterThan(0);
      expect(err).toMatchObject({ code: 'SYNC_LEDGER', path: VOLUME_PATH });
      expect((err as Error).message).toBe(
        `${VOLUME_PATH}: bytes ${first}..${first + SMALL_BS - 1} written before the checkpoint started are still not synced after it (a sync path skipped this file)`,
      );
    }, SHUTDOWN_FAILS_TOO);
  });

  it('volume: pages a checkpoint writes itself and then skips syncing pass that checkpoint and fail the next one (the ledger holds a checkpoint only to writes from before its start)', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const ext = volumeExtension({ path: VOLUME_PATH, create: { sizeBytes: 4 * 1024 * 1024 } });
    await withEngine({ dataDir: '/data', io: disk, blockSize: SMALL_BS, preload: [ext], verifySync: true }, async (engine) => {
      const volume = ext.volume!;
      const rel = engine.relation(REL, { storage: 'volume' });
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, page(1));
      await engine.checkpoint(); // correct sync: everything durable, ledger empty
      expect(engine.ledger!.unsyncedPaths()).toEqual([]);
      volume.syncTag = async () => {};
      // Dirty in the buffer pool only: BufferSync writes it during the next checkpoint.
      await rel.write(ForkNumber.MAIN, 0, page(2));
      await engine.checkpoint();
      expect(engine.ledger!.unsyncedPaths()).toEqual([VOLUME_PATH]);
      const at = volume.physicalBlock(REL, ForkNumber.MAIN, 0) * SMALL_BS;
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'SYNC_LEDGER', message: expect.stringContaining(`${VOLUME_PATH}: bytes ${at}..${at + SMALL_BS - 1} written`) });
    }, SHUTDOWN_FAILS_TOO);
  });

  it('limit: a FileIO whose fsync returns without syncing is beyond the ledger; the checkpoint passes and a power loss loses the page', async () => {
    const disk = new SimDisk();
    const segment = '/data/base/5/16384';
    const io: FileIO = new NoSyncIO(disk, (path) => path === segment);
    const engine = await Engine.open({ dataDir: '/data', io, blockSize: SMALL_BS, verifySync: true });
    const rel = engine.relation(REL);
    await rel.create(ForkNumber.MAIN);
    await rel.extend(ForkNumber.MAIN, page(7));
    await engine.checkpoint();
    expect(engine.ledger!.unsyncedPaths()).toEqual([]);
    await engine.close();
    expect((io as NoSyncIO).skipped).toBeGreaterThan(0);
    // The name is durable (md fsyncs the directory), the block is not.
    expect(disk.crash('drop').readFileNow(segment)?.length).toBe(0);
  });
});
