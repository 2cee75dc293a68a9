/**
 * Goal: the volume sync handler and checkpoint order (DESIGN.md section 5): a
 * checkpoint costs at most two fdatasync calls on the volume and no fsync, however many forks
 * are dirty, while the statistics still count one dispatched tag per dirty fork; metadata-only
 * changes become durable at the next checkpoint; a failed fdatasync fails the engine and the
 * volume. Method: an Engine on SimDisk (and once on a real temp dir) whose FileIO is wrapped in
 * a per-path counter; crash images (SimDisk.crash('drop')) show what reached disk.
 */
import { describe, expect, it } from 'vitest';
import { Engine, RealIO, SyncHandlerId } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import type { FileHandle, FileIO, FileStat, LockMode, OpenOptions } from '../engine/index.js';
import { openVolumeReadOnly, volumeExtension } from '../volume/index.js';
import { makePage, openVolumeEngine, rel, writePages } from './helpers/volume.js';
import { tempDir } from './helpers/index.js';
import { join } from 'node:path';
import { SMALL_BS } from './helpers/engine.js';

/** Counts fsync/fdatasync per path. */
class PathCountingIO implements FileIO {
  fdatasyncs = new Map<string, number>();
  fsyncs = new Map<string, number>();
  constructor(readonly inner: FileIO) {}
  count(path: string) {
    return { fdatasync: this.fdatasyncs.get(path) ?? 0, fsync: this.fsyncs.get(path) ?? 0 };
  }
  open(p: string, o?: OpenOptions) { return this.inner.open(p, o); }
  close(h: FileHandle) { return this.inner.close(h); }
  pread(h: FileHandle, b: Uint8Array, o: number) { return this.inner.pread(h, b, o); }
  pwrite(h: FileHandle, b: Uint8Array, o: number) { return this.inner.pwrite(h, b, o); }
  pwritev(h: FileHandle, b: readonly Uint8Array[], o: number) { return this.inner.pwritev(h, b, o); }
  async fsync(h: FileHandle) { this.fsyncs.set(h.path, (this.fsyncs.get(h.path) ?? 0) + 1); await this.inner.fsync(h); }
  async fdatasync(h: FileHandle) { this.fdatasyncs.set(h.path, (this.fdatasyncs.get(h.path) ?? 0) + 1); await this.inner.fdatasync(h); }
  ftruncate(h: FileHandle, n: number) { return this.inner.ftruncate(h, n); }
  size(h: FileHandle) { return this.inner.size(h); }
  unlink(p: string) { return this.inner.unlink(p); }
  rename(a: string, b: string) { return this.inner.rename(a, b); }
  mkdir(p: string) { return this.inner.mkdir(p); }
  fsyncDir(p: string) { return this.inner.fsyncDir(p); }
  stat(p: string): Promise<FileStat | null> { return this.inner.stat(p); }
  readdir(p: string) { return this.inner.readdir(p); }
  flock(h: FileHandle, m: LockMode) { return this.inner.flock(h, m); }
}

const VOL = '/vol/lam.vol';

async function simEngine(sizeBytes = 64 * 1024 * 1024, extra: { syncQueueSize?: number } = {}) {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  const io = new PathCountingIO(disk);
  const ext = volumeExtension({ path: VOL, create: { sizeBytes } });
  const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 256, syncQueueSize: 4096, io, preload: [ext], ...extra });
  return { disk, io, engine, smgr: engine.storageManager('volume'), volume: ext.volume! };
}

describe('volume sync handler', () => {
  for (const n of [1, 100, 1000]) {
    it(`a checkpoint after dirtying ${n} forks: 2 fdatasync and no fsync on the volume, ${n} tags dispatched`, async () => {
      const { io, engine, smgr, volume } = await simEngine();
      for (let i = 0; i < n; i++) {
        await smgr.create(rel(i + 1), 0);
        await smgr.extend(rel(i + 1), 0, 0, makePage(rel(i + 1), 0, 0));
      }
      await engine.checkpoint();
      // Page writes only: every fork gets one page rewritten, which moves it (copy-on-write), so
      // the map changes too: data + catalog, then the superblock.
      for (let i = 0; i < n; i++) await writePages(smgr, rel(i + 1), 0, 0, [makePage(rel(i + 1), 0, 0, 2)]);
      let before = io.count(VOL);
      let stats = await engine.checkpoint();
      let after = io.count(VOL);
      expect(after.fdatasync - before.fdatasync).toBe(2);
      expect(after.fsync - before.fsync).toBe(0);
      expect(stats.tagsDispatched.volume).toBe(n);
      expect(stats.fdatasyncCalls).toBe(2);
      // Data and metadata: every fork grows by one block.
      for (let i = 0; i < n; i++) await smgr.extend(rel(i + 1), 0, 1, makePage(rel(i + 1), 0, 1));
      before = io.count(VOL);
      stats = await engine.checkpoint();
      after = io.count(VOL);
      expect(after.fdatasync - before.fdatasync).toBe(2);
      expect(after.fsync - before.fsync).toBe(0);
      expect(stats.tagsDispatched.volume).toBe(n);
      expect(stats.fsyncCalls).toBe(1); // not the volume's: the control file's record of the checkpoint
      console.log(`fdatasync-count: dirty-forks=${n} pages-only=2 with-extends=2 tags=${n} fsync=0`);
      volume.checkInvariants();
      await engine.close();
    });
  }

  it('on a real file, 100 dirty forks cost 2 fdatasync calls on the volume', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    const io = new PathCountingIO(new RealIO());
    const engine = await Engine.open({ dataDir: join(dir, 'data'), blockSize: SMALL_BS, io, preload: [volumeExtension({ path, create: { sizeBytes: 8 * 1024 * 1024 } })] });
    const smgr = engine.storageManager('volume');
    for (let i = 0; i < 100; i++) {
      await smgr.create(rel(i + 1), 0);
      await smgr.extend(rel(i + 1), 0, 0, makePage(rel(i + 1), 0, 0));
    }
    const before = io.count(path);
    const stats = await engine.checkpoint();
    expect(io.count(path).fdatasync - before.fdatasync).toBe(2);
    expect(io.count(path).fsync - before.fsync).toBe(0);
    expect(stats.tagsDispatched.volume).toBe(100);
    await engine.close();
  });

  it('a checkpoint with nothing dirty issues no fdatasync', async () => {
    const { io, engine } = await simEngine();
    const before = io.count(VOL);
    await engine.checkpoint();
    expect(io.count(VOL).fdatasync - before.fdatasync).toBe(0);
    await engine.close();
  });

  it('create, truncate and drop alone (no page written) are durable after the next checkpoint', async () => {
    const { disk, engine, smgr } = await simEngine(1024 * 1024);
    const a = rel(1);
    const b = rel(2);
    await smgr.create(a, 0);
    await smgr.create(b, 0);
    for (let i = 0; i < 20; i++) await smgr.extend(b, 0, i, makePage(b, 0, i));
    await engine.checkpoint();
    await smgr.create(rel(3), 2);
    await smgr.truncate(b, 0, 7);
    await smgr.unlink(a);
    const st = await engine.checkpoint();
    expect(st.tagsDispatched.volume).toBe(3);
    const image = disk.crash('drop');
    const info = await openVolumeReadOnly(VOL, { io: image });
    expect(info.forks.map((f) => [f.relNumber, f.fork, f.nblocks])).toEqual([
      [2, 0, 7],
      [3, 2, 0],
    ]);
    await engine.close();
  });

  it("a fork's sync need outlives checkpoints and its own drop: a tag synced outside a checkpoint still finds a later write, also to the fork made again under the same key", async () => {
    const { disk, engine, smgr, volume } = await simEngine();
    const a = rel(7);
    const tag = { handler: SyncHandlerId.FIRST_DYNAMIC, forkNum: 0, rlocator: a, segno: 0 }; // the volume's, the one extension here
    const durablePage = async (version: number) => {
      const image = disk.crash('drop');
      const ext = volumeExtension({ path: VOL });
      const again = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 16, io: image, preload: [ext] });
      const page = new Uint8Array(SMALL_BS);
      await again.storageManager('volume').read(a, 0, 0, page);
      await again.close();
      return Buffer.compare(page, makePage(a, 0, 0, version)) === 0;
    };
    await smgr.create(a, 0);
    await smgr.extend(a, 0, 0, makePage(a, 0, 0, 1));
    await engine.checkpoint(); // covers the fork: its need stays (kept while the fork lives)
    volume.checkInvariants();
    await writePages(smgr, a, 0, 0, [makePage(a, 0, 0, 2)]);
    const syncs = volume.stats.volumeSyncs;
    await volume.syncTag(tag);
    expect(volume.stats.volumeSyncs).toBe(syncs + 1);
    expect(await durablePage(2)).toBe(true);
    // Dropped and made again: the new fork takes over the key's need.
    await smgr.unlink(a);
    await engine.checkpoint();
    await smgr.create(a, 0);
    await smgr.extend(a, 0, 0, makePage(a, 0, 0, 3));
    volume.checkInvariants();
    await volume.syncTag(tag);
    expect(await durablePage(3)).toBe(true);
    await engine.close();
  });

  it('the sync epoch: later tags of a checkpoint return at once, one volume sync per checkpoint', async () => {
    const { engine, smgr, volume } = await simEngine();
    for (let i = 0; i < 50; i++) {
      await smgr.create(rel(i + 1), 0);
      await smgr.extend(rel(i + 1), 0, 0, makePage(rel(i + 1), 0, 0));
    }
    const s0 = { ...volume.stats };
    await engine.checkpoint();
    expect(volume.stats.volumeSyncs - s0.volumeSyncs).toBe(1);
    expect(volume.stats.metadataSwitches - s0.metadataSwitches).toBe(1);
    expect(volume.stats.epoch - s0.epoch).toBe(1);
    await engine.close();
  });

  it('a failed fdatasync on the volume puts the engine in the failed state and the volume refuses writes', async () => {
    const { disk, engine, smgr } = await simEngine();
    const a = rel(1);
    await smgr.create(a, 0);
    await smgr.extend(a, 0, 0, makePage(a, 0, 0));
    disk.injectFault({ kind: 'fdatasync', code: 'EIO', pathIncludes: 'lam.vol' });
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(engine.failed).toBe(true);
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    const err = await writePages(smgr, a, 0, 0, [makePage(a, 0, 0, 2)]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ENGINE_FAILED' });
    expect((err as Error).message).toContain(VOL);
    // Reads keep working.
    const buf = new Uint8Array(SMALL_BS);
    await smgr.read(a, 0, 0, buf);
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
  });

  it('a full request queue makes the writer sync the volume itself (backend fsync), and the data is durable', async () => {
    const { disk, engine, smgr } = await simEngine(8 * 1024 * 1024, { syncQueueSize: 2 });
    for (let i = 0; i < 10; i++) {
      await smgr.create(rel(i + 1), 0);
      await smgr.extend(rel(i + 1), 0, 0, makePage(rel(i + 1), 0, 0));
    }
    const stats = await engine.checkpoint();
    expect(stats.backendFsyncs).toBeGreaterThan(0);
    const info = await openVolumeReadOnly(VOL, { io: disk.crash('drop') });
    expect(info.forks.length).toBe(10);
    await engine.close();
  });
});

describe('volume sync handler through the relation API and the buffer pool', () => {
  for (const n of [1, 100, 1000]) {
    it(`BufferSync writes ${n} relations' dirty pages in volume order, coalesced across forks; the checkpoint costs 2 fdatasync and no fsync`, async () => {
      const disk = new SimDisk();
      await disk.mkdir('/vol');
      const io = new PathCountingIO(disk);
      // Room for the data twice over: the volume keeps one free block per page the pool may hold
      // dirty (V5 of volume.ts).
      const ext = volumeExtension({ path: VOL, create: { sizeBytes: 80 * 1024 * 1024 } });
      const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: Math.max(64, 8 * n), io, preload: [ext] });
      const rels = Array.from({ length: n }, (_, i) => engine.relation(rel(i + 1), { storage: 'volume' }));
      for (const r of rels) {
        await r.create(0);
        for (let b = 0; b < 8; b++) await r.extend(0);
      }
      await engine.checkpoint();
      // Dirty every page in the pool (no I/O yet), plus one metadata change per relation.
      for (const [i, r] of rels.entries()) {
        for (let b = 0; b < 8; b++) await r.write(0, b, makePage(rel(i + 1), 0, b, 2));
        await r.create(1);
      }
      const before = io.count(VOL);
      const stats = await engine.checkpoint();
      const after = io.count(VOL);
      expect(after.fdatasync - before.fdatasync).toBe(2);
      expect(after.fsync - before.fsync).toBe(0);
      expect(stats.fsyncCalls).toBe(1); // the control file's record of the checkpoint
      expect(stats.tagsDispatched.volume).toBe(2 * n); // main and fsm of every relation
      expect(stats.buffersWritten).toBe(8 * n);
      // Copy-on-write: the batches go to one stream of free blocks, one pwritev per 256-page batch.
      expect(stats.rangesWritten).toBe(Math.ceil((8 * n) / 256));
      expect(stats.pagesRelocated).toBe(8 * n);
      expect(stats.runsWritten).toBe(Math.ceil((8 * n) / 256));
      console.log(`fdatasync-count (relation API): relations=${n} buffers=${stats.buffersWritten} ranges=${stats.rangesWritten} tags=${stats.tagsDispatched.volume} fdatasync=${after.fdatasync - before.fdatasync} fsync=0`);
      await engine.close();
      const again = await openVolumeEngine({ io: disk, dataDir: '/data', path: VOL });
      const page = await again.engine.relation(rel(n), { storage: 'volume' }).read(0, 7);
      expect(Buffer.from(page).equals(makePage(rel(n), 0, 7, 2))).toBe(true);
      await again.engine.close();
    });
  }
});
