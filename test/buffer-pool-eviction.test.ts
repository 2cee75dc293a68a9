/**
 * Goal: under heavy eviction pressure (sharedBuffers 16, 2000 pages) every read returns the last
 * page written, across checkpoints and a close/reopen; the pool's invariants hold after every
 * step; usage counts stay within 5 and hot pages survive the clock sweep.
 * Method: a seeded random mix of reads, writes and occasional checkpoints against a Map model,
 * run in small concurrent batches (distinct pages per batch, so the model is exact) on SimDisk
 * with relSegBlocks 32 (several segments per relation).
 */
import { describe, expect, it } from 'vitest';
import { ForkNumber, type RelFileLocator } from '../engine/index.js';
import { SimDisk, prng } from '../engine/testing.js';
import { withEngine, BS, locator } from './helpers/engine.js';

const RELS = 4;
const PER_REL = 500; // 2000 pages
const loc = (r: number): RelFileLocator => (locator(500 + r, 9));

function stamp(r: number, b: number, version: number): Uint8Array {
  const p = new Uint8Array(BS);
  const v = new DataView(p.buffer);
  v.setUint32(0, r, true);
  v.setUint32(4, b, true);
  v.setUint32(16, version, true);
  v.setUint32(BS - 4, version ^ 0xa5a5a5a5, true);
  return p;
}
const versionOf = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset).getUint32(16, true);

describe('buffer pool eviction', () => {
  it('sharedBuffers 16, 2000 pages, random reads and writes match a model', async () => {
    const seed = 20240611;
    const rand = prng(seed);
    const disk = new SimDisk();
    const opts = { dataDir: '/data', io: disk, sharedBuffers: 16, relSegBlocks: 32 };
    const model = new Map<string, number>();
    await withEngine(opts, async (engine) => {
      for (let r = 0; r < RELS; r++) {
        const rel = engine.relation(loc(r));
        await rel.create(ForkNumber.MAIN);
        for (let b = 0; b < PER_REL; b++) await rel.extend(ForkNumber.MAIN, stamp(r, b, 0));
      }
      let version = 1;
      for (let step = 0; step < 800; step++) {
        const picked = new Set<string>();
        const ops: Promise<void>[] = [];
        for (let k = 0; k < 6; k++) {
          // Skewed: a quarter of the accesses go to 8 hot pages.
          const hot = rand() < 0.25;
          const r = hot ? 0 : Math.floor(rand() * RELS);
          const b = hot ? Math.floor(rand() * 8) : Math.floor(rand() * PER_REL);
          const key = `${r}/${b}`;
          if (picked.has(key)) continue;
          picked.add(key);
          const rel = engine.relation(loc(r));
          if (rand() < 0.4) {
            const v = version++;
            model.set(key, v);
            ops.push(rel.write(ForkNumber.MAIN, b, stamp(r, b, v)));
          } else {
            const want = model.get(key) ?? 0;
            ops.push(
              rel.read(ForkNumber.MAIN, b).then((p) => {
                expect(versionOf(p), `seed ${seed} step ${step} page ${key}`).toBe(want);
                expect(new DataView(p.buffer).getUint32(BS - 4, true)).toBe((want ^ 0xa5a5a5a5) >>> 0);
              }),
            );
          }
        }
        await Promise.all(ops);
        engine.bufferPool.checkInvariants(true);
        if (step % 200 === 199) await engine.checkpoint();
      }
      const { hits, misses, evictionWrites } = engine.bufferPool.stats;
      expect(misses).toBeGreaterThan(1000); // the pool really was under pressure
      expect(evictionWrites).toBeGreaterThan(100);
      expect(hits).toBeGreaterThan(0);
    });

    await withEngine(opts, async (engine) => {
      for (let r = 0; r < RELS; r++) {
        const rel = engine.relation(loc(r));
        for (let b = 0; b < PER_REL; b++) expect(versionOf(await rel.read(ForkNumber.MAIN, b)), `page ${r}/${b}`).toBe(model.get(`${r}/${b}`) ?? 0);
      }
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('clock sweep: a page used over and over stays resident while a scan streams through', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 16 }, async (engine) => {
      const rel = engine.relation(loc(0));
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 200; b++) await rel.extend(ForkNumber.MAIN, stamp(0, b, 0));
      for (let i = 0; i < 5; i++) await rel.read(ForkNumber.MAIN, 0); // usage count up to 5
      const before = engine.ioCounts().pread;
      for (let b = 1; b < 200; b++) {
        await rel.read(ForkNumber.MAIN, b);
        if (b % 4 === 0) await rel.read(ForkNumber.MAIN, 0); // keeps it hot
      }
      // 199 scanned pages missed; block 0 never did.
      expect(engine.ioCounts().pread - before).toBe(199);
      engine.bufferPool.checkInvariants(true);
    });
  });
});
