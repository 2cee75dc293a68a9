/**
 * Goal: the README's embedded use works as written on a real file (engine + relation API +
 * checkpoint + reopen), and openVolumeReadOnly reports what `lamstore inspect`/`map` need.
 * Method: a temp dir on the real disk; pages compared byte for byte after reopen; the inspect
 * numbers checked against each other (used + free + pending + metadata = volume blocks).
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Engine, ForkNumber } from '../engine/index.js';
import { checkVolume, openVolumeReadOnly, volumeExtension } from '../volume/index.js';
import { tempDir } from './helpers/index.js';
import { locator } from './helpers/engine.js';
import { syncThreadMessages } from '../engine/io/sync-thread.js';

describe('volume embedded use', () => {
  it('the README example: create, extend, write, checkpoint, close, reopen, read back', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    const progress: number[] = [];
    const engine = await Engine.open({ dataDir: join(dir, 'data'), sharedBuffers: 64, preload: [volumeExtension({ path, create: { sizeBytes: 1 << 22, onProgress: (p) => progress.push(p.doneBytes) } })] });
    expect(progress[progress.length - 1]).toBe(1 << 22);
    const rel = engine.relation(locator(16384), { storage: 'volume' });
    await rel.create(ForkNumber.MAIN);
    const page = new Uint8Array(8192).fill(7);
    const page2 = new Uint8Array(8192).fill(9);
    const blk = await rel.extend(ForkNumber.MAIN, page);
    await rel.write(ForkNumber.MAIN, blk, page2);
    const stats = await engine.checkpoint();
    expect(stats.fdatasyncCalls).toBeLessThanOrEqual(2);
    await engine.close();

    const again = await Engine.open({ dataDir: join(dir, 'data'), sharedBuffers: 64, preload: [volumeExtension({ path })] });
    const back = await again.relation(locator(16384), { storage: 'volume' }).read(ForkNumber.MAIN, blk);
    expect(back[0]).toBe(9);
    expect(back[8191]).toBe(9);
    await again.close();
    expect(await checkVolume(path, { checkPages: true })).toEqual([]);
  });

  it('a checkpoint\'s page writes go to the sync thread as one message per batch (the pool is shared memory, FileIO C9), and land where the map says', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    const engine = await Engine.open({ dataDir: join(dir, 'data'), sharedBuffers: 64, preload: [volumeExtension({ path, create: { sizeBytes: 1 << 22 } })] });
    const rels = [16384, 16385, 16386].map((n) => engine.relation(locator(n), { storage: 'volume' }));
    for (const rel of rels) {
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 2; b++) await rel.extend(ForkNumber.MAIN, new Uint8Array(8192));
    }
    await engine.checkpoint();
    for (let r = 0; r < rels.length; r++) for (let b = 0; b < 2; b++) await rels[r]!.write(ForkNumber.MAIN, b, new Uint8Array(8192).fill(10 * r + b + 1));
    const before = syncThreadMessages;
    const stats = await engine.checkpoint();
    expect(stats.buffersWritten).toBe(6);
    expect(syncThreadMessages - before).toBe(1); // 6 pages, one batch, one stream: one message
    await engine.close();
    const again = await Engine.open({ dataDir: join(dir, 'data'), sharedBuffers: 64, preload: [volumeExtension({ path })] });
    for (let r = 0; r < 3; r++) for (let b = 0; b < 2; b++) expect((await again.relation(locator(16384 + r), { storage: 'volume' }).read(ForkNumber.MAIN, b))[100]).toBe(10 * r + b + 1);
    await again.close();
    expect(await checkVolume(path, { checkPages: true })).toEqual([]);
  });

  it('openVolumeReadOnly reports slots, sizes, used/free/pending blocks, forks with extents, largest free run', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    const engine = await Engine.open({ dataDir: join(dir, 'data'), sharedBuffers: 64, blockSize: 4096, preload: [volumeExtension({ path, create: { sizeBytes: 1 << 20 } })] });
    const a = engine.relation(locator(1), { storage: 'volume' });
    await a.create(ForkNumber.MAIN);
    await a.create(ForkNumber.FSM);
    for (let i = 0; i < 20; i++) await a.extend(ForkNumber.MAIN);
    await a.extend(ForkNumber.FSM);
    await engine.close();
    const info = await openVolumeReadOnly(path);
    expect(info.blockSizeBytes).toBe(4096);
    expect(info.volumeSizeBytes).toBe(1 << 20);
    expect(info.volumeBlocks).toBe(256);
    expect(info.slots.every((s) => s.valid)).toBe(true);
    expect(info.slots[info.activeSlot]!.generation).toBe(info.generation);
    expect(info.forks.map((f) => [f.relNumber, f.forkName, f.nblocks])).toEqual([
      [1, 'main', 20],
      [1, 'fsm', 1],
    ]);
    expect(info.forks[0]!.extents.reduce((n, e) => n + e.lengthBlocks, 0)).toBeGreaterThanOrEqual(20);
    expect(info.usedBlocks + info.freeBlocks + info.pendingFreeBlocks + info.metadataBlocks).toBe(info.volumeBlocks);
    expect(info.largestFreeRunBlocks).toBe(Math.max(...info.freeRuns.map((r) => r.lengthBlocks)));
  });
});
