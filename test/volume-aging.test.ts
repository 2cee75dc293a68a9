/**
 * Goal: copy-on-write scatters a fork a little with every page write, and the checkpoint's
 * defragmentation pass (volume.ts D1-D2) keeps that bounded (the part 4): after an aging
 * workload (200 checkpoints of random single-page updates over forks of 64 pages) no fork has
 * more than 16 extents after any checkpoint and every page reads back its latest version, also
 * after a close and a reopen and with writes racing the checkpoints; a page written while the
 * pass copies its fork keeps the newer version (D2); the pass never leaves a fork more scattered
 * than it found it (D1, when free space is in short runs only).
 * Method: an engine with the volume extension (4 KiB pages); the aging workload goes through the
 * relation API (rel.write into the buffer pool, engine.checkpoint() writes the dirty pages and
 * runs the pass), a seeded PRNG picks the pages and a model holds every page's version;
 * Volume.info() and checkInvariants() after every checkpoint. The D1-D2 cases call the storage
 * manager directly and hold the pass's I/O with GatedIO.
 * Sizes: CI 100 forks on SimDisk; LAMSTORE_FIGURE_FORKS=1000 gives the figure of BENCHMARKS.md on
 * a real file in a temporary directory (256 MiB of data is too much for SimDisk's memory).
 * Updates per checkpoint are forks / 10 at every size (10 in CI, 100 for the figure), so each
 * fork sees 20 updates on average; the volume is twice the data plus 4 MiB.
 * LAMSTORE_AGING_SEED picks the PRNG's seed (default 1; printed on failure).
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, RealIO } from '../engine/index.js';
import type { FileIO, Relation, RelFileLocator, StorageManager } from '../engine/index.js';
import { SimDisk, prng } from '../engine/testing.js';
import { FreeSpace } from '../volume/extent-allocator.js';
import { DEFRAG_EXTENTS_MIN, volumeExtension } from '../volume/index.js';
import type { Volume } from '../volume/index.js';
import { makePage, openVolumeEngine, rel, type VolumeEngine } from './helpers/volume.js';
import { SMALL_BS } from './helpers/engine.js';
import { GatedIO } from './helpers/gated-io.js';
import { tempDir } from './helpers/index.js';

const FORKS = Number(process.env.LAMSTORE_FIGURE_FORKS ?? 100);
const PAGES = 64;
const CHECKPOINTS = 200;
const UPDATES = Math.max(1, Math.round(FORKS / 10));
const SEED = Number(process.env.LAMSTORE_AGING_SEED ?? 1);
/** The bound (part 4); the pass itself rewrites a fork past max(8, nblocks / 256) (D1). */
const EXTENTS_MAX = 16;
const MAIN = ForkNumber.MAIN;
const MiB = 1 << 20;

/** Relation of fork number `f` of a workload. */
const relOf = (f: number): RelFileLocator => rel(1000 + f);

/** The version a page of makePage carries (bytes 16-19). */
const versionOf = (page: Uint8Array): number => new DataView(page.buffer, page.byteOffset).getUint32(16, true);

/** The fork with the most extents, and that count. */
function worstFork(volume: Volume): { relNumber: number; extents: number; detail: string } {
  const info = volume.info();
  const worst = info.forks.reduce((a, x) => (x.extents.length > a.extents.length ? x : a));
  return { relNumber: worst.relNumber, extents: worst.extents.length, detail: `${JSON.stringify(worst.extents)}; ${info.freeRuns.length} free runs, the largest ${info.largestFreeRunBlocks} blocks` };
}

/** Every page of `forks` forks reads back the version the model holds. */
async function expectModel(rels: readonly Relation[], versions: Uint32Array): Promise<void> {
  for (let f = 0; f < rels.length; f++) {
    for (let b = 0; b < PAGES; b++) {
      const got = await rels[f]!.read(MAIN, b);
      const want = versions[f * PAGES + b]!;
      // One expect per mismatch only: 64,000 expect calls would cost more than the reads.
      if (!Buffer.from(got).equals(makePage(relOf(f), MAIN, b, want))) expect.fail(`relation ${relOf(f).relNumber} block ${b}: version ${versionOf(got)} read, ${want} written last (seed ${SEED})`);
    }
  }
}

/** `forks` forks of PAGES pages each, version 1, through the relation API, then a checkpoint. */
async function populate(ve: VolumeEngine, forks: number): Promise<Relation[]> {
  const rels: Relation[] = [];
  for (let f = 0; f < forks; f++) {
    const r = ve.engine.relation(relOf(f), { storage: 'volume' });
    await r.create(MAIN);
    for (let b = 0; b < PAGES; b++) await r.extend(MAIN, makePage(relOf(f), MAIN, b, 1));
    rels.push(r);
  }
  await ve.engine.checkpoint();
  return rels;
}

describe('volume aging', () => {
  it(`${CHECKPOINTS} checkpoints of ${UPDATES} random single-page updates over ${FORKS} forks of ${PAGES} pages: at most ${EXTENTS_MAX} extents per fork after every checkpoint, the pass ran, every page's latest version across a reopen`, async () => {
    const dataBytes = FORKS * PAGES * SMALL_BS;
    const sizeBytes = Math.ceil((2 * dataBytes) / MiB + 4) * MiB;
    let io: FileIO;
    let dir: string;
    if (dataBytes <= 64 * MiB) {
      const disk = new SimDisk();
      await disk.mkdir('/vol');
      io = disk;
      dir = '/vol';
    } else {
      io = new RealIO();
      dir = await tempDir('lamstore-aging-');
    }
    const path = join(dir, 'aging.lamvol');
    const dataDir = join(dir, 'data');
    let ve = await openVolumeEngine({ io, dataDir, path, create: { sizeBytes } });
    const rels = await populate(ve, FORKS);
    const versions = new Uint32Array(FORKS * PAGES).fill(1);
    const random = prng(SEED);
    let maxExtents = 0;
    const t0 = performance.now();
    for (let c = 1; c <= CHECKPOINTS; c++) {
      for (let u = 0; u < UPDATES; u++) {
        const f = Math.floor(random() * FORKS);
        const b = Math.floor(random() * PAGES);
        const v = ++versions[f * PAGES + b]!;
        await rels[f]!.write(MAIN, b, makePage(relOf(f), MAIN, b, v));
      }
      await ve.engine.checkpoint();
      ve.volume.checkInvariants();
      const worst = worstFork(ve.volume);
      maxExtents = Math.max(maxExtents, worst.extents);
      if (worst.extents > EXTENTS_MAX) expect.fail(`checkpoint ${c} (seed ${SEED}): relation ${worst.relNumber} has ${worst.extents} extents: ${worst.detail}`);
    }
    const agingS = (performance.now() - t0) / 1000;
    const info = ve.volume.info();
    const mean = info.forks.reduce((n, x) => n + x.extents.length, 0) / info.forks.length;
    const { forksDefragmented, pagesDefragmented, pagesRelocated } = ve.volume.stats;
    const updates = CHECKPOINTS * UPDATES;
    console.log(
      `aging: forks=${FORKS} pages=${PAGES} checkpoints=${CHECKPOINTS} updates=${updates} max-extents=${maxExtents} mean-extents=${mean.toFixed(2)} ` +
        `forks-defragmented=${forksDefragmented} pages-defragmented=${pagesDefragmented} (${(pagesDefragmented / updates).toFixed(1)} per update) pages-relocated=${pagesRelocated} ` +
        `block=${SMALL_BS} volume-blocks=${info.volumeBlocks} data-blocks=${FORKS * PAGES} free-runs=${info.freeRuns.length} largest-free-run=${info.largestFreeRunBlocks} ` +
        `on=${io instanceof SimDisk ? 'SimDisk' : 'a real file'} seed=${SEED} aging-seconds=${agingS.toFixed(1)}`,
    );
    // The workload scatters forks past the pass's threshold: without it they would grow ~2 extents per update.
    expect(forksDefragmented).toBeGreaterThan(0);
    expect(pagesDefragmented).toBeGreaterThan(0);
    expect(maxExtents).toBeGreaterThan(1);

    await expectModel(rels, versions);
    await ve.engine.close();
    ve = await openVolumeEngine({ io, dataDir, path });
    ve.volume.checkInvariants();
    expect(worstFork(ve.volume).extents).toBeLessThanOrEqual(EXTENTS_MAX);
    await expectModel(Array.from({ length: FORKS }, (_, f) => ve.engine.relation(relOf(f), { storage: 'volume' })), versions);
    await ve.engine.close();
  }, 1_800_000);

  it('writes racing the checkpoints (a small pool: eviction writes land while the pass copies): every page its latest version, across a reopen; the bound after a quiet checkpoint', async () => {
    const forks = 16;
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const path = '/vol/race.lamvol';
    // 16 buffers: nearly every write evicts a dirty page, through writeBuffers('eviction').
    let ve = await openVolumeEngine({ io: disk, dataDir: '/data', path, create: { sizeBytes: Math.ceil((2 * forks * PAGES * SMALL_BS) / MiB + 4) * MiB }, sharedBuffers: 16 });
    const rels = await populate(ve, forks);
    const versions = new Uint32Array(forks * PAGES).fill(1);
    const random = prng(SEED + 1);
    const update = async (): Promise<void> => {
      const f = Math.floor(random() * forks);
      const b = Math.floor(random() * PAGES);
      const v = ++versions[f * PAGES + b]!;
      await rels[f]!.write(MAIN, b, makePage(relOf(f), MAIN, b, v));
    };
    let raced = 0;
    for (let c = 0; c < 30; c++) {
      for (let u = 0; u < 8; u++) await update();
      let done = false;
      const checkpoint = ve.engine.checkpoint().finally(() => (done = true));
      // Writes for as long as the checkpoint runs (at most 32).
      for (let u = 0; !done && u < 32; u++, raced++) await update();
      await checkpoint;
      ve.volume.checkInvariants();
    }
    const { forksDefragmented, pagesDefragmented } = ve.volume.stats;
    console.log(`aging with writes racing the checkpoints: forks=${forks} checkpoints=30 raced-updates=${raced} forks-defragmented=${forksDefragmented} pages-defragmented=${pagesDefragmented} copies-dropped=${forksDefragmented * PAGES - pagesDefragmented}`);
    expect(raced).toBeGreaterThan(0);
    expect(forksDefragmented).toBeGreaterThan(0);
    // Deterministic on SimDisk (seeded, no timers): some racing write moved a page the pass was
    // copying. Zero means the race no longer happens here: give the checkpoints more writes.
    expect(forksDefragmented * PAGES - pagesDefragmented, 'copies the pass dropped (D2)').toBeGreaterThan(0);
    await ve.engine.checkpoint(); // quiet: every fork a race left past the threshold is rewritten
    ve.volume.checkInvariants();
    expect(worstFork(ve.volume).extents).toBeLessThanOrEqual(DEFRAG_EXTENTS_MIN);
    await expectModel(rels, versions);
    await ve.engine.close();
    ve = await openVolumeEngine({ io: disk, dataDir: '/data', path, sharedBuffers: 16 });
    ve.volume.checkInvariants();
    await expectModel(Array.from({ length: forks }, (_, f) => ve.engine.relation(relOf(f), { storage: 'volume' })), versions);
    await ve.engine.close();
  });
});

/** Write page `blk` of `r` with `version` as an eviction does (outside any checkpoint's own writes). */
async function evict(smgr: StorageManager, r: RelFileLocator, blk: number, version: number): Promise<void> {
  await smgr.writeBuffers([{ rel: r, fork: MAIN, blockNum: blk, page: makePage(r, MAIN, blk, version) }], 'eviction');
}

/** Every page of `r` (PAGES pages) through the storage manager: version 1 except `newer`. */
async function expectPages(smgr: StorageManager, r: RelFileLocator, newer: ReadonlyMap<number, number>): Promise<void> {
  const buf = new Uint8Array(SMALL_BS);
  for (let b = 0; b < PAGES; b++) {
    await smgr.read(r, MAIN, b, buf);
    expect(versionOf(buf), `block ${b}`).toBe(newer.get(b) ?? 1);
    expect(Buffer.from(buf).equals(makePage(r, MAIN, b, newer.get(b) ?? 1)), `block ${b} whole`).toBe(true);
  }
}

const extentsOf = (volume: Volume, r: RelFileLocator): number => volume.info().forks.find((f) => f.relNumber === r.relNumber && f.fork === MAIN)!.extents.length;

describe('the defragmentation pass (volume.ts D1-D2)', () => {
  /** A fork of PAGES pages scattered past the threshold by 5 eviction writes (version 2): 11 extents. */
  async function scatteredFork(io: FileIO): Promise<VolumeEngine & { a: RelFileLocator; newer: Map<number, number> }> {
    const ve = await openVolumeEngine({ io, dataDir: '/data', path: '/vol/d2.lamvol', create: { sizeBytes: 4 * MiB } });
    const a = rel(1);
    await ve.smgr.create(a, MAIN);
    for (let b = 0; b < PAGES; b++) await ve.smgr.extend(a, MAIN, b, makePage(a, MAIN, b, 1));
    await ve.engine.checkpoint();
    const newer = new Map<number, number>();
    for (const b of [5, 15, 25, 35, 45]) {
      await evict(ve.smgr, a, b, 2);
      newer.set(b, 2);
    }
    expect(extentsOf(ve.volume, a)).toBe(11);
    return { ...ve, a, newer };
  }

  it.each([
    ['reads the fork', 'pread'],
    ['writes the copy', 'pwrite'],
  ] as const)('D2: a page written while the pass %s keeps the newer version, across a reopen', async (_when, kind) => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const gated = new GatedIO(disk);
    const { engine, smgr, volume, a, newer } = await scatteredFork(gated);
    // No page is dirty in the pool (the writes went to the storage manager), so the first read
    // and the first write of the volume in this checkpoint are the pass's own.
    const gate = gated.hold(kind, (p) => p.endsWith('.lamvol'));
    const checkpoint = engine.checkpoint();
    await gate.reached;
    const before = { forks: volume.stats.forksDefragmented, pages: volume.stats.pagesDefragmented };
    await evict(smgr, a, 25, 3);
    newer.set(25, 3);
    volume.checkInvariants();
    gate.release();
    await checkpoint;
    volume.checkInvariants();
    // The fork was rewritten, all but the page that moved meanwhile: its copy was dropped.
    expect(volume.stats.forksDefragmented - before.forks).toBe(1);
    expect(volume.stats.pagesDefragmented - before.pages).toBe(PAGES - 1);
    expect(extentsOf(volume, a)).toBeLessThanOrEqual(3);
    await expectPages(smgr, a, newer);
    await engine.close();
    const again = await openVolumeEngine({ io: disk, dataDir: '/data', path: '/vol/d2.lamvol' });
    again.volume.checkInvariants();
    await expectPages(again.smgr, a, newer);
    await again.engine.close();
  });

  it.each([
    ['while the pass runs', 'pass'],
    ['before a sync outside any checkpoint', 'sync'],
  ] as const)('D1: a fork scattered %s is a candidate of the next pass', async (_when, how) => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const gated = new GatedIO(disk);
    const { engine, smgr, volume } = await openVolumeEngine({ io: gated, dataDir: '/data', path: '/vol/d1.lamvol', create: { sizeBytes: 4 * MiB } });
    const [a, b, c] = [rel(1), rel(2), rel(3)];
    for (const r of [a, b, c]) {
      await smgr.create(r, MAIN);
      for (let k = 0; k < PAGES; k++) await smgr.extend(r, MAIN, k, makePage(r, MAIN, k, 1));
    }
    await engine.checkpoint();
    const newer = { a: new Map<number, number>(), b: new Map<number, number>() };
    const scatter = async (r: RelFileLocator, model: Map<number, number>): Promise<void> => {
      for (const k of [5, 15, 25, 35, 45]) {
        await evict(smgr, r, k, 2);
        model.set(k, 2);
      }
      expect(extentsOf(volume, r)).toBe(11);
    };
    if (how === 'pass') {
      // The pass is reading fork a (the checkpoint's first read of the volume) when b's pages move.
      await scatter(a, newer.a);
      const gate = gated.hold('pread', (p) => p.endsWith('.lamvol'));
      const checkpoint = engine.checkpoint();
      await gate.reached;
      await scatter(b, newer.b);
      gate.release();
      await checkpoint;
      expect(volume.stats.forksDefragmented).toBe(1);
      expect(extentsOf(volume, a)).toBe(1);
    } else {
      await scatter(b, newer.b);
      await smgr.immediateSync(c, MAIN); // captures b's map outside a checkpoint: no pass
    }
    expect(extentsOf(volume, b)).toBe(11);
    // The next checkpoint: only c is written, b is not touched again.
    const defragmented = volume.stats.forksDefragmented;
    await evict(smgr, c, 0, 2);
    await engine.checkpoint();
    volume.checkInvariants();
    expect(volume.stats.forksDefragmented - defragmented).toBe(1);
    expect(extentsOf(volume, b)).toBe(1);
    await expectPages(smgr, a, newer.a);
    await expectPages(smgr, b, newer.b);
    await engine.close();
  });

  it('D1: with free space in short runs only the pass leaves a fork as it is (it scattered 11 extents into 25 before), and rewrites it into one run after its next write once a long run is free', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    // A pool of 16 keeps the reserve (V5) small, so the short runs hold a whole copy of the fork.
    const { engine, smgr, volume } = await openVolumeEngine({ io: disk, dataDir: '/data', path: '/vol/d1.lamvol', create: { sizeBytes: 2 * MiB }, sharedBuffers: 16 });
    const a = rel(1);
    await smgr.create(a, MAIN);
    for (let b = 0; b < PAGES; b++) await smgr.extend(a, MAIN, b, makePage(a, MAIN, b, 1));
    // Fill the rest with forks of 8 blocks, then cut each to 6: free space becomes 2-block holes.
    const fillers: RelFileLocator[] = [];
    while (volume.info().largestFreeRunBlocks >= 8 + 32) {
      const x = rel(100 + fillers.length);
      await smgr.create(x, MAIN);
      for (let b = 0; b < 8; b++) await smgr.extend(x, MAIN, b, makePage(x, MAIN, b, 1));
      fillers.push(x);
    }
    await engine.checkpoint();
    for (const x of fillers) await smgr.truncate(x, MAIN, 6);
    await engine.checkpoint(); // the cut blocks are free once this catalog is durable (A3)
    const info = volume.info();
    expect(info.largestFreeRunBlocks).toBeLessThan(PAGES / DEFRAG_EXTENTS_MIN + 32);
    expect(info.freeBlocks).toBeGreaterThan(PAGES + 32);
    const newer = new Map<number, number>();
    for (const b of [5, 15, 25, 35, 45]) {
      await evict(smgr, a, b, 2);
      newer.set(b, 2);
    }
    expect(extentsOf(volume, a)).toBe(11);
    await engine.checkpoint();
    volume.checkInvariants();
    expect(volume.stats.forksDefragmented).toBe(0);
    expect(extentsOf(volume, a)).toBe(11);
    await expectPages(smgr, a, newer);

    // Drop the last 12 fillers: a long run once the drop is durable; the next write of the fork
    // makes it a candidate again.
    for (const x of fillers.slice(-12)) await smgr.unlink(x, MAIN);
    await engine.checkpoint();
    await evict(smgr, a, 55, 2);
    newer.set(55, 2);
    await engine.checkpoint();
    volume.checkInvariants();
    expect(volume.stats.forksDefragmented).toBe(1);
    expect(extentsOf(volume, a)).toBe(1);
    await expectPages(smgr, a, newer);
    await engine.close();
  });

  it('D1 with fsync off: the checkpoint still runs the pass (checkpointEnd publishes the catalog then), across a reopen', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const open = async (create?: { sizeBytes: number }) => {
      const ext = volumeExtension({ path: '/vol/off.lamvol', create });
      const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 64, io: disk, preload: [ext], fsync: false });
      return { engine, smgr: engine.storageManager('volume'), volume: ext.volume! };
    };
    const { engine, smgr, volume } = await open({ sizeBytes: 4 * MiB });
    const a = rel(1);
    await smgr.create(a, MAIN);
    for (let k = 0; k < PAGES; k++) await smgr.extend(a, MAIN, k, makePage(a, MAIN, k, 1));
    await engine.checkpoint();
    const newer = new Map<number, number>();
    for (const k of [5, 15, 25, 35, 45]) {
      await evict(smgr, a, k, 2);
      newer.set(k, 2);
    }
    expect(extentsOf(volume, a)).toBe(11);
    await engine.checkpoint();
    volume.checkInvariants();
    expect(volume.stats.fdatasyncs).toBe(0);
    expect(volume.stats.forksDefragmented).toBe(1);
    expect(extentsOf(volume, a)).toBe(1);
    await expectPages(smgr, a, newer);
    await engine.close();
    const again = await open();
    expect(extentsOf(again.volume, a)).toBe(1);
    await expectPages(again.smgr, a, newer);
    await again.engine.close();
  });

  it('FreeSpace.streamRunCount counts the runs takeStream takes (up to limit + 1), taking nothing', () => {
    const N = 300;
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: N - 2, maxLength: N - 2 }), fc.nat(N - 1), fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 12 }), (used, cursor, n, limit) => {
        const extents = used.flatMap((u, i) => (u ? [{ startBlock: i + 2, lengthBlocks: 1 }] : []));
        const a = new FreeSpace(N, extents);
        fc.pre(n <= a.freeBlocks);
        const count = a.streamRunCount(n, cursor, limit);
        a.checkInvariants();
        const b = new FreeSpace(N, extents);
        const runs = b.takeStream(n, cursor).runs.length;
        expect(a.freeBlocks).toBe(b.freeBlocks + n);
        expect(count).toBe(Math.min(runs, limit + 1));
      }),
      { numRuns: 1000, seed: 7 },
    );
  });
});
