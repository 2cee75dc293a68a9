/**
 * Goal: md's fd cache keeps at most maxOpenFiles segment files open however
 * many relations are used, closes what it evicts, and never closes a handle in use; every page
 * still reads back.
 * Method: 1000 relations written, checkpointed and read back with maxOpenFiles 32 on SimDisk;
 * the engine's CountingIO gauge openHandlesMax counts every handle open at once. The engine
 * holds exactly one handle of its own, the data directory lock file (lamstore.lock), so the
 * bound asserted is 32 + 1. The same on real files for 200 relations.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, SimDisk, type RelFileLocator } from '../engine/index.js';
import { MdStorageManager } from '../engine/md/md.js';
import { tempDir } from './helpers/index.js';

const BS = 8192;
const MAX_OPEN = 32;
/** The data directory lock file, held open for the engine's lifetime. */
const LOCK_FILE_HANDLES = 1;
const loc = (n: number): RelFileLocator => ({ spcOid: 1663, dbOid: 5, relNumber: 20000 + n });
function pageFor(r: number, b: number): Uint8Array {
  const p = new Uint8Array(BS);
  new DataView(p.buffer).setUint32(0, r, true);
  new DataView(p.buffer).setUint32(16, b, true);
  return p;
}

async function exercise(dataDir: string, io: SimDisk | undefined, relations: number): Promise<void> {
  const opts = { dataDir, io, sharedBuffers: 64, maxOpenFiles: MAX_OPEN, relSegBlocks: 2 };
  let engine = await Engine.open(opts);
  const md = engine.storageManager('md') as MdStorageManager;
  try {
    for (let r = 0; r < relations; r++) {
      const rel = engine.relation(loc(r));
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < 3; b++) await rel.extend(ForkNumber.MAIN, pageFor(r, b)); // two segments each
      await rel.write(ForkNumber.MAIN, 1, pageFor(r, 100 + 1));
      expect(md.openFileCount).toBeLessThanOrEqual(MAX_OPEN);
    }
    await engine.checkpoint(); // the md sync handler opens through the same cache
    for (let r = 0; r < relations; r += 7) await engine.relation(loc(r)).read(ForkNumber.MAIN, 2);
    md.checkInvariants();
    expect(engine.ioCounts().openHandlesMax).toBeLessThanOrEqual(MAX_OPEN + LOCK_FILE_HANDLES);
    expect(engine.ioCounts().openHandlesMax).toBeGreaterThan(MAX_OPEN / 2); // the cache was used
  } finally {
    await engine.close();
  }
  expect(engine.ioCounts().openHandles).toBe(0); // close released every fd

  engine = await Engine.open(opts);
  try {
    for (let r = 0; r < relations; r++) {
      const rel = engine.relation(loc(r));
      for (let b = 0; b < 3; b++) {
        const p = await rel.read(ForkNumber.MAIN, b);
        const v = new DataView(p.buffer);
        expect(v.getUint32(0, true)).toBe(r);
        expect(v.getUint32(16, true)).toBe(b === 1 ? 101 : b);
      }
    }
    expect(engine.ioCounts().openHandlesMax).toBeLessThanOrEqual(MAX_OPEN + LOCK_FILE_HANDLES);
  } finally {
    await engine.close();
  }
}

describe('md fd cache', () => {
  it('1000 relations with maxOpenFiles 32 never hold more than 32 segment fds, and every page reads back', async () => {
    await exercise('/data', new SimDisk(), 1000);
  });

  it('the same bound on real files (200 relations)', async () => {
    await exercise(await tempDir(), undefined, 200);
  });

  it('a handle in use is not closed by eviction; it closes when its user is done', async () => {
    const disk = new SimDisk();
    const engine = await Engine.open({ dataDir: '/data', io: disk, sharedBuffers: 64, maxOpenFiles: 4 });
    const md = engine.storageManager('md') as MdStorageManager;
    try {
      for (let r = 0; r < 8; r++) {
        const rel = engine.relation(loc(r));
        await rel.create(ForkNumber.MAIN);
        await rel.extend(ForkNumber.MAIN, pageFor(r, 0));
      }
      // Eight reads at once of eight files through a cache of four: all succeed.
      const got = await Promise.all(Array.from({ length: 8 }, async (_, r) => {
        const into = new Uint8Array(BS);
        await md.read(loc(r), ForkNumber.MAIN, 0, into);
        return new DataView(into.buffer).getUint32(0, true);
      }));
      expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      md.checkInvariants();
      expect(md.openFileCount).toBeLessThanOrEqual(4);
    } finally {
      await engine.close();
    }
    expect(disk.openHandleCount).toBe(0);
  });
});
