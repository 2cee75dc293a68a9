/**
 * Goal: md's fd cache keeps at most maxOpenFiles segment files open however
 * many relations are used, closes what it evicts, and never closes a handle in use; every page
 * still reads back.
 * Method: 1000 relations written, checkpointed and read back with maxOpenFiles 32 on SimDisk;
 * the engine's CountingIO gauge openHandlesMax counts every handle open at once. The engine
 * holds exactly one handle of its own, the data directory lock file (lamstore.lock), so the
 * bound asserted is 32 + 1. The same on real files for 200 relations. A close that answers late
 * keeps its slot (a SimDisk whose close waits a few turns, concurrent opens).
 * The default size (md.ts M7a): a checkpoint over N relations, N below the default, counted
 * with engine.ioCounts() around it after a warm-up checkpoint, makes no open and no close (on
 * SimDisk and on real files), where a cache of the old default 256 opens and closes every file
 * twice; the default's formula against given limits; the limit read from /proc/self/limits
 * agrees with `ulimit -n` in a child shell (which inherits it).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, MAX_OPEN_FILES_DEFAULT, type FileHandle, type RelFileLocator } from '../engine/index.js';
import { SimDisk, diffCounts } from '../engine/testing.js';
import { openFilesLimit } from '../engine/io/real-io.js';
import { MAX_OPEN_FILES_MIN, MdStorageManager, defaultMaxOpenFiles } from '../engine/md/md.js';
import { tempDir } from './helpers/index.js';
import { BS, locator, onDisk, withEngine } from './helpers/engine.js';

const MAX_OPEN = 32;
/** The data directory lock file and the control file, held open for the engine's lifetime. */
const ENGINE_FILE_HANDLES = 2;
const loc = (n: number): RelFileLocator => (locator(20000 + n));
function pageFor(r: number, b: number): Uint8Array {
  const p = new Uint8Array(BS);
  new DataView(p.buffer).setUint32(0, r, true);
  new DataView(p.buffer).setUint32(16, b, true);
  return p;
}

/** Relations 0..n-1, one block each (page r, 0). */
async function oneBlockRelations(engine: Engine, n: number): Promise<void> {
  for (let r = 0; r < n; r++) {
    const rel = engine.relation(loc(r));
    await rel.create(ForkNumber.MAIN);
    await rel.extend(ForkNumber.MAIN, pageFor(r, 0));
  }
}

async function exercise(dataDir: string, io: SimDisk | undefined, relations: number): Promise<void> {
  const opts = { dataDir, io, sharedBuffers: 64, maxOpenFiles: MAX_OPEN, relSegBlocks: 2 };
  const closed = await withEngine(opts, async (engine) => {
    const md = engine.storageManager('md') as MdStorageManager;
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
    expect(engine.ioCounts().openHandlesMax).toBeLessThanOrEqual(MAX_OPEN + ENGINE_FILE_HANDLES);
    expect(engine.ioCounts().openHandlesMax).toBeGreaterThan(MAX_OPEN / 2); // the cache was used
    return engine;
  });
  expect(closed.ioCounts().openHandles).toBe(0); // close released every fd

  await withEngine(opts, async (engine) => {
    for (let r = 0; r < relations; r++) {
      const rel = engine.relation(loc(r));
      for (let b = 0; b < 3; b++) {
        const p = await rel.read(ForkNumber.MAIN, b);
        const v = new DataView(p.buffer);
        expect(v.getUint32(0, true)).toBe(r);
        expect(v.getUint32(16, true)).toBe(b === 1 ? 101 : b);
      }
    }
    expect(engine.ioCounts().openHandlesMax).toBeLessThanOrEqual(MAX_OPEN + ENGINE_FILE_HANDLES);
  });
}

describe('md fd cache', () => {
  it('1000 relations with maxOpenFiles 32 never hold more than 32 segment fds, and every page reads back', async () => {
    await exercise('/data', new SimDisk(), 1000);
  });

  it('the same bound on real files (200 relations)', async () => {
    await exercise(await tempDir(), undefined, 200);
  });

  it('a handle still being closed keeps its slot: concurrent opens never pass maxOpenFiles while evicted handles close slowly', async () => {
    // close answers a few turns late, so other opens run while an evicted handle is still open.
    class SlowClose extends SimDisk {
      override async close(h: FileHandle): Promise<void> {
        for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
        await super.close(h);
      }
    }
    const disk = new SlowClose();
    await withEngine(onDisk(disk, { sharedBuffers: 64, maxOpenFiles: 4 }), async (engine) => {
      const md = engine.storageManager('md') as MdStorageManager;
      await oneBlockRelations(engine, 8);
      const before = engine.ioCounts();
      // The cache holds 4 of the 8 files: reading the other 4 at once evicts and closes 4.
      await Promise.all(Array.from({ length: 4 }, (_, r) => md.read(loc(r), ForkNumber.MAIN, 0, new Uint8Array(BS))));
      expect(engine.ioCounts().open - before.open).toBe(4);
      expect(engine.ioCounts().openHandlesMax).toBeLessThanOrEqual(4 + ENGINE_FILE_HANDLES);
      md.checkInvariants();
    });
    expect(disk.openHandleCount).toBe(0);
  });

  it('a handle in use is not closed by eviction; it closes when its user is done', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk, { sharedBuffers: 64, maxOpenFiles: 4 }), async (engine) => {
      const md = engine.storageManager('md') as MdStorageManager;
      await oneBlockRelations(engine, 8);
      // Eight reads at once of eight files through a cache of four: all succeed.
      const got = await Promise.all(Array.from({ length: 8 }, async (_, r) => {
        const into = new Uint8Array(BS);
        await md.read(loc(r), ForkNumber.MAIN, 0, into);
        return new DataView(into.buffer).getUint32(0, true);
      }));
      expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      md.checkInvariants();
      expect(md.openFileCount).toBeLessThanOrEqual(4);
    });
    expect(disk.openHandleCount).toBe(0);
  });
});

/**
 * Create `relations` one-block relations, checkpoint once (warm-up), rewrite one page in each,
 * and return the I/O counts of the second checkpoint.
 */
async function checkpointOverRelations(dataDir: string, io: SimDisk | undefined, relations: number, maxOpenFiles?: number) {
  return withEngine({ dataDir, io, sharedBuffers: 2 * relations + 64, maxOpenFiles }, async (engine) => {
    for (let r = 0; r < relations; r++) {
      const rel = engine.relation(loc(r));
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, pageFor(r, 0));
    }
    await engine.checkpoint(); // warm-up: the relations' first sync and their new names
    for (let r = 0; r < relations; r++) await engine.relation(loc(r)).write(ForkNumber.MAIN, 0, pageFor(r, 1));
    const before = engine.ioCounts();
    const stats = await engine.checkpoint();
    const d = diffCounts(engine.ioCounts(), before);
    expect(stats.buffersWritten).toBe(relations);
    expect(d.fsync).toBe(relations + 1); // one per dirty segment and the control file; no directory: the names are durable
    return { maxOpenFiles: engine.maxOpenFiles, opens: d.open, closes: d.close };
  });
}

describe('md fd cache default (M7a)', () => {
  it('min(1000, half the open-file limit), 1000 when the limit is unknown, never below the engine minimum', () => {
    expect(MAX_OPEN_FILES_DEFAULT).toBe(1000);
    expect(defaultMaxOpenFiles(null)).toBe(1000);
    expect(defaultMaxOpenFiles(1_048_576)).toBe(1000);
    expect(defaultMaxOpenFiles(2000)).toBe(1000);
    expect(defaultMaxOpenFiles(1024)).toBe(512);
    expect(defaultMaxOpenFiles(256)).toBe(128);
    expect(defaultMaxOpenFiles(5)).toBe(MAX_OPEN_FILES_MIN);
  });

  it.runIf(process.platform === 'linux')('the limit read from /proc/self/limits is the soft RLIMIT_NOFILE a child shell inherits', () => {
    const limit = openFilesLimit();
    const shell = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' });
    expect(shell.status).toBe(0);
    expect(limit).toBe(Number(shell.stdout.trim()));
  });

  it('the engine takes the default from the process limit; an explicit maxOpenFiles wins', async () => {
    let engine = await Engine.open({ dataDir: '/data', io: new SimDisk() });
    expect(engine.maxOpenFiles).toBe(defaultMaxOpenFiles(openFilesLimit()));
    await engine.close();
    engine = await Engine.open({ dataDir: '/data', io: new SimDisk(), maxOpenFiles: 64 });
    expect(engine.maxOpenFiles).toBe(64);
    await engine.close();
  });

  it('a checkpoint over 600 relations opens and closes nothing after a warm-up with the default; a cache of 256 churns every file twice (SimDisk)', async () => {
    const N = 600;
    const withDefault = await checkpointOverRelations('/data', new SimDisk(), N);
    expect(withDefault.maxOpenFiles).toBeGreaterThan(N); // a machine whose limit allows it (CI's does)
    expect({ opens: withDefault.opens, closes: withDefault.closes }).toEqual({ opens: 0, closes: 0 });
    // What the default replaces: the write phase and the sync phase each walk all 600 files in
    // the same order, so an LRU of 256 misses every time.
    const old = await checkpointOverRelations('/data', new SimDisk(), N, 256);
    expect(old.opens).toBe(2 * N);
    expect(old.closes).toBe(2 * N);
  });

  it('the same on real files: 300 relations, no open or close in the checkpoint after a warm-up', async () => {
    const r = await checkpointOverRelations(await tempDir(), undefined, 300);
    expect({ opens: r.opens, closes: r.closes }).toEqual({ opens: 0, closes: 0 });
  });
});
