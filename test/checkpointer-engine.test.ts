/**
 * Goal: the checkpointer through the whole engine: writers keep working while a spread
 * checkpoint runs and a crash afterwards keeps every page of the completed checkpoint (D2);
 * the dirty-bytes trigger; a write failure fails the checkpoint and leaves the buffers dirty for
 * a retry. Method: SimDisk and a ManualClock driving the spread checkpoint's naps (no sleeps).
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber } from '../engine/index.js';
import { ManualClock, SimDisk } from '../engine/testing.js';
import { withEngine, BS, locator } from './helpers/engine.js';

const settle = () => new Promise((r) => setImmediate(r));
const rel = locator(16384);

function page(block: number, version: number): Uint8Array {
  const p = new Uint8Array(BS);
  p.fill((block * 7 + version) & 0xff, 16);
  new DataView(p.buffer).setUint32(0, block, true);
  new DataView(p.buffer).setUint32(4, version, true);
  return p;
}

describe('checkpointer through the engine', () => {
  it('writers run while a spread checkpoint runs; after a crash every page reads back as its checkpoint image or a later one', async () => {
    const disk = new SimDisk();
    const clock = new ManualClock(0);
    const engine = await Engine.open({ dataDir: '/data', io: disk, clock, sharedBuffers: 128, relSegBlocks: 8, checkpointTimeoutMs: 10_000 });
    const r = engine.relation(rel);
    await r.create(ForkNumber.MAIN);
    const N = 40;
    for (let b = 0; b < N; b++) await r.extend(ForkNumber.MAIN, page(b, 1));
    await engine.checkpoint(); // fast: the base state is durable
    for (let b = 0; b < N; b++) await r.write(ForkNumber.MAIN, b, page(b, 2));

    const allowed = new Map<number, Set<number>>(); // block -> versions it may read back as
    for (let b = 0; b < N; b++) allowed.set(b, new Set([2]));
    let done = false;
    const spread = engine.checkpoint({ fast: false }).then((s) => {
      done = true;
      return s;
    });
    let version = 3;
    let writesDuring = 0;
    while (!done) {
      const b = (version * 13) % N;
      allowed.get(b)!.add(version);
      await r.write(ForkNumber.MAIN, b, page(b, version++)); // works while the checkpoint sleeps
      expect((await r.read(ForkNumber.MAIN, b))[4]).toBe((version - 1) & 0xff);
      writesDuring++;
      await clock.advance(100);
      await settle();
    }
    const stats = await spread;
    expect(stats.sleptMs).toBeGreaterThan(0);
    expect(writesDuring).toBeGreaterThan(5);

    const crashed = disk.crash('drop', 7);
    await withEngine({ dataDir: '/data', io: crashed, relSegBlocks: 8 }, async (again) => {
      const r2 = again.relation(rel);
      expect(await r2.nblocks(ForkNumber.MAIN)).toBe(N);
      for (let b = 0; b < N; b++) {
        const got = await r2.read(ForkNumber.MAIN, b);
        const v = new DataView(got.buffer, got.byteOffset).getUint32(4, true);
        expect(allowed.get(b)!.has(v), `block ${b} read back version ${v}`).toBe(true);
        got.fill(0, 8, 12); // the engine's checksum bytes
        expect(got).toEqual(page(b, v));
      }
    });
    await engine.close().catch(() => {});
  });

  it('maxDirtyBytes: dirtying more than the limit starts a checkpoint by itself', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 64, maxDirtyBytes: 8 * BS, completionTarget: 0 }, async (engine) => {
      const r = engine.relation(rel);
      await r.create(ForkNumber.MAIN);
      // extend writes the new block through at once (as smgrextend does); the rewrites dirty buffers.
      for (let b = 0; b < 9; b++) await r.extend(ForkNumber.MAIN, page(b, 1));
      for (let b = 0; b < 8; b++) await r.write(ForkNumber.MAIN, b, page(b, 2));
      await settle();
      const before = engine.ioCounts().fsync;
      expect(before).toBe(1); // the control file's creation at open, nothing since
      await r.write(ForkNumber.MAIN, 8, page(8, 2)); // the ninth dirty page crosses the limit
      for (let i = 0; i < 50 && engine.ioCounts().fsync === before; i++) await settle();
      expect(engine.ioCounts().fsync).toBeGreaterThan(before);
      expect(engine.bufferPool.dirtyCount()).toBe(0);
      const durable = disk.crash('drop').readFileNow('/data/base/5/16384')!;
      expect(durable[BS * 8 + 4]).toBe(2);
    });
  });

  it('a write failure fails that checkpoint, leaves the buffers dirty, and a later checkpoint writes them', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 64 }, async (engine) => {
      const r = engine.relation(rel);
      await r.create(ForkNumber.MAIN);
      for (let b = 0; b < 4; b++) await r.extend(ForkNumber.MAIN, page(b, 1));
      await engine.checkpoint();
      for (let b = 0; b < 4; b++) await r.write(ForkNumber.MAIN, b, page(b, 2));
      disk.injectFault({ kind: 'pwrite', code: 'ENOSPC' });
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'ENOSPC' });
      expect(engine.failed).toBe(false); // a write failure is not a sync failure
      expect(engine.bufferPool.dirtyCount()).toBe(4);
      const s = await engine.checkpoint();
      expect(s.buffersWritten).toBe(4);
      const durable = disk.crash('drop').readFileNow('/data/base/5/16384')!;
      for (let b = 0; b < 4; b++) expect(durable[b * BS + 4]).toBe(2);
    });
  });
});
