/**
 * Goal: named snapshots of a volume (volume/snapshots.ts S1-S6, volume.ts V7): a snapshot names a
 * completed checkpoint's catalog and its blocks are never reused while it exists, however many
 * checkpoints of random updates follow; the free-space rules hold with 0, 1 and 100 snapshots
 * (every block is free, live, pending or held, checkInvariants after every step); exclusive
 * block counts say what dropping frees; drop frees exactly that; rollback makes a snapshot the
 * live state and keeps it; refusals (bad, taken or missing name, no room) write nothing; the
 * embedded API opens a snapshot read-only and takes one of a running engine; a failed fdatasync
 * during a snapshot switch fails the volume; random online sequences of writes, truncations,
 * fork drops, syncs, snapshot creates and drops keep every snapshot as taken
 * (`LAMSTORE_SNAPSHOT_SEEDS` seeds, 3 by default).
 * Method: SimDisk; volumes built through the Volume API (test/helpers/snapshots.ts) or a real
 * Engine; every state compared page by page (hashes) with what it was when taken; the file
 * compared byte for byte where nothing may be written; checkVolume must find nothing.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber } from '../engine/index.js';
import { SimDisk, prng } from '../engine/testing.js';
import { checkVolume, listSnapshots, volumeExtension } from '../volume/index.js';
import { Volume } from '../volume/index.js';
import { SMALL_BS, codeOf } from './helpers/engine.js';
import { makePage, rel, sha256 } from './helpers/volume.js';
import { extendPages, fingerprint, openVol, rewritePages, snapshotFingerprint } from './helpers/snapshots.js';

const VOL = '/vol/lam.vol';
const KiB = 1024;

async function freshDisk(): Promise<SimDisk> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  return disk;
}

async function errorFindings(disk: SimDisk): Promise<string[]> {
  return (await checkVolume(VOL, { io: disk, checkPages: true })).filter((f) => f.severity === 'error').map((f) => `${f.part}: ${f.message}`);
}

/** Free + pending + blocks some owner holds = the whole data area: the accounting closes (V1, V7). */
function expectAccounting(vol: Volume): void {
  vol.checkInvariants();
  const info = vol.info();
  expect(info.freeBlocks).toBeLessThanOrEqual(info.volumeBlocks - 2);
}

describe('snapshots in the format', () => {
  it('0 snapshots: the superblock bytes 72..123 stay zero, the list is empty, check is clean', async () => {
    const disk = await freshDisk();
    const vol = await openVol(disk, VOL, { create: 512 * KiB });
    await extendPages(vol, 16384, 10);
    await vol.syncNow();
    expect(vol.listSnapshots()).toEqual([]);
    expect(vol.info().snapshots).toEqual([]);
    expectAccounting(vol);
    await vol.close();
    const image = disk.readFileNow(VOL)!;
    for (const slot of [0, 1]) expect(image.subarray(slot * SMALL_BS + 72, slot * SMALL_BS + 124).every((b) => b === 0)).toBe(true);
    expect(await errorFindings(disk)).toEqual([]);
    expect(await listSnapshots(VOL, { io: disk })).toEqual([]);
  });

  it('1 snapshot: it reads back as taken after every page is rewritten; it holds exactly what later checkpoints replaced; dropping it frees that', async () => {
    const disk = await freshDisk();
    let vol = await openVol(disk, VOL, { create: 1024 * KiB });
    await extendPages(vol, 16384, 20);
    await extendPages(vol, 16385, 5);
    await vol.syncNow();
    const freeBefore = vol.info().freeBlocks;
    const taken = await fingerprint(vol);
    const info = await vol.createSnapshot('before-experiment', { nowMs: 1_700_000_000_000 });
    expect(info).toMatchObject({ name: 'before-experiment', createdMs: 1_700_000_000_000, forkCount: 2, exclusiveBlocks: 0 });
    expect(info.generation).toBe(vol.info().generation - 1);
    // The snapshot costs one table page now, nothing else.
    expect(vol.info().freeBlocks).toBe(freeBefore - 1);
    expectAccounting(vol);
    // Rewrite every page of one fork, twice, with checkpoints between.
    for (const version of [2, 3]) {
      await rewritePages(vol, 16384, [...Array(20).keys()], version);
      await vol.syncNow();
      expectAccounting(vol);
    }
    const [snap] = vol.listSnapshots();
    console.log(`snapshot-figure one: 25 data blocks, 20 rewritten in each of 2 checkpoints -> the snapshot holds ${snap!.exclusiveBlocks} blocks alone, ${snap!.blocks} in all`);
    // It alone holds the 20 pages rewritten and the catalog pages replaced since (leaf + index).
    expect(snap!.exclusiveBlocks).toBeGreaterThanOrEqual(20);
    expect(snap!.exclusiveBlocks).toBeLessThanOrEqual(20 + 4);
    const live = await fingerprint(vol);
    expect(live).not.toEqual(taken);
    await vol.close();
    expect(await snapshotFingerprint(disk, VOL, 'before-experiment')).toEqual(taken);
    expect(await errorFindings(disk)).toEqual([]);

    vol = await openVol(disk, VOL);
    expect(await fingerprint(vol)).toEqual(live);
    const freeHeld = vol.info().freeBlocks;
    const exclusive = vol.listSnapshots()[0]!.exclusiveBlocks;
    await vol.dropSnapshot('before-experiment');
    expect(vol.listSnapshots()).toEqual([]);
    // Exclusive blocks are pending until the next durable capture; the table page is free at once.
    expect(vol.info().freeBlocks).toBe(freeHeld + 1);
    expect(vol.info().pendingFreeBlocks).toBe(exclusive);
    expectAccounting(vol);
    await extendPages(vol, 16386, 1);
    await vol.syncNow();
    expectAccounting(vol);
    await vol.close();
    vol = await openVol(disk, VOL);
    expect(vol.info().snapshotHeldBlocks).toBe(0);
    expect(await fingerprint(vol)).toMatchObject(live);
    await vol.close();
    expect(await errorFindings(disk)).toEqual([]);
  });

  it('100 snapshots through checkpoints of random updates: every one reads back exactly as it was taken, before and after reopening; dropping them all returns every block', async () => {
    const disk = await freshDisk();
    const rand = prng(17);
    let vol = await openVol(disk, VOL, { create: 8 * 1024 * KiB });
    const rels = [16384, 16385, 16386, 16387];
    for (const r of rels) await extendPages(vol, r, 8);
    await vol.syncNow();
    const taken = new Map<string, Record<string, string>>();
    let version = 2;
    for (let i = 0; i < 100; i++) {
      // Random updates: rewrite a few pages, sometimes extend, sometimes truncate or drop and recreate.
      const r = rels[Math.floor(rand() * rels.length)]!;
      const n = vol.nblocks(rel(r), ForkNumber.MAIN);
      const roll = rand();
      if (roll < 0.1 && n > 2) await vol.truncate(rel(r), ForkNumber.MAIN, n - 2, { requestSync: () => true, countBackendSync() {}, reportSyncFailure: (e) => { throw e; }, exemptFromLedger() {} });
      else if (roll < 0.25) await extendPages(vol, r, 1 + Math.floor(rand() * 3), version);
      else if (n > 0) await rewritePages(vol, r, Array.from({ length: 1 + Math.floor(rand() * 4) }, () => Math.floor(rand() * n)), version);
      version++;
      await vol.syncNow();
      const name = `s${String(i).padStart(3, '0')}`;
      taken.set(name, await fingerprint(vol));
      await vol.createSnapshot(name);
      if (i % 10 === 0) expectAccounting(vol);
    }
    expectAccounting(vol);
    const list = vol.listSnapshots();
    {
      const info = vol.info();
      const live = info.forks.reduce((t, f) => t + f.nblocks, 0);
      console.log(`snapshot-figure hundred: ${list.length} snapshots over 100 checkpoints of random updates; live data ${live} blocks; snapshots hold ${info.snapshotHeldBlocks} blocks (${list.reduce((t, x) => t + x.exclusiveBlocks, 0)} exclusive in all, at most ${Math.max(...list.map((x) => x.exclusiveBlocks))} for one); table ${info.snapshotTableBlocks!.length} pages`);
    }
    expect(list.map((s) => s.name)).toEqual([...taken.keys()].sort());
    const live = await fingerprint(vol);
    await vol.close();
    expect(await errorFindings(disk)).toEqual([]);
    for (const [name, fp] of taken) expect(await snapshotFingerprint(disk, VOL, name), name).toEqual(fp);
    // Keep going with the snapshots in place: more checkpoints reuse only what no one holds.
    vol = await openVol(disk, VOL);
    expect(await fingerprint(vol)).toEqual(live);
    for (let k = 0; k < 20; k++) {
      const r = rels[k % rels.length]!;
      const n = vol.nblocks(rel(r), ForkNumber.MAIN);
      if (n > 0) await rewritePages(vol, r, [Math.floor(rand() * n), Math.floor(rand() * n)], version++);
      await vol.syncNow();
    }
    expectAccounting(vol);
    await vol.close();
    for (const [name, fp] of taken) expect(await snapshotFingerprint(disk, VOL, name), name).toEqual(fp);
    // Drop them all, in random order: nothing stays held, and the accounting closes with none.
    vol = await openVol(disk, VOL);
    const names = [...taken.keys()].sort(() => rand() - 0.5);
    for (const [k, name] of names.entries()) {
      await vol.dropSnapshot(name);
      if (k % 25 === 0) expectAccounting(vol);
    }
    await vol.syncNow();
    await vol.close();
    vol = await openVol(disk, VOL);
    const info = vol.info();
    expect(info.snapshots).toEqual([]);
    expect(info.snapshotHeldBlocks).toBe(0);
    // Every block is a superblock, a catalog page, a fork's block or free.
    const forkBlocks = info.forks.reduce((s, f) => s + f.extents.reduce((t, e) => t + e.lengthBlocks, 0), 0);
    expect(info.freeBlocks + forkBlocks + info.catalog.blocks + 2).toBe(info.volumeBlocks);
    await vol.close();
    expect(await errorFindings(disk)).toEqual([]);
  });
});

describe('snapshots among random online operations', () => {
  it.each(Array.from({ length: Number(process.env.LAMSTORE_SNAPSHOT_SEEDS ?? 3) }, (_, i) => i + 1))('seed %i: creates and drops interleaved with writes, truncations, drops of forks and syncs keep every snapshot intact and the accounting exact', async (seed) => {
    const disk = await freshDisk();
    const rand = prng(seed * 7919);
    const host = { requestSync: () => true, countBackendSync() {}, reportSyncFailure: (e: unknown): never => { throw e; }, exemptFromLedger() {} };
    let vol = await openVol(disk, VOL, { create: 4096 * KiB });
    const rels = [16384, 16385, 16386];
    for (const r of rels) await extendPages(vol, r, 6);
    await vol.syncNow();
    const model = new Map<string, Record<string, string>>();
    let version = 2;
    let next = 0;
    for (let step = 0; step < 300; step++) {
      const r = rels[Math.floor(rand() * rels.length)]!;
      const exists = vol.exists(rel(r), ForkNumber.MAIN);
      const n = exists ? vol.nblocks(rel(r), ForkNumber.MAIN) : 0;
      const roll = rand();
      if (roll < 0.3 && n > 0) await rewritePages(vol, r, Array.from({ length: 1 + Math.floor(rand() * 3) }, () => Math.floor(rand() * n)), version++);
      else if (roll < 0.45) await extendPages(vol, r, 1 + Math.floor(rand() * 3), version++);
      else if (roll < 0.5 && n > 1) await vol.truncate(rel(r), ForkNumber.MAIN, Math.floor(n / 2), host);
      else if (roll < 0.53 && exists) await vol.unlink(rel(r), ForkNumber.MAIN, host);
      else if (roll < 0.7) await vol.syncNow();
      else if (roll < 0.85 && model.size < 12) {
        // The snapshot names what the volume holds once its own sync ran: take the state then.
        await vol.syncNow();
        const name = `r${next++}`;
        const fp = await fingerprint(vol);
        await vol.createSnapshot(name);
        model.set(name, fp);
      } else if (model.size > 0) {
        const names = [...model.keys()];
        const name = names[Math.floor(rand() * names.length)]!;
        await vol.dropSnapshot(name);
        model.delete(name);
      }
      vol.checkInvariants();
      expect(vol.listSnapshots().map((x) => x.name)).toEqual([...model.keys()].sort());
      if (step % 50 === 49) {
        await vol.syncNow();
        const live = await fingerprint(vol);
        await vol.close();
        for (const [name, fp] of model) expect(await snapshotFingerprint(disk, VOL, name), `seed ${seed} step ${step} snapshot ${name}`).toEqual(fp);
        expect(await errorFindings(disk)).toEqual([]);
        vol = await openVol(disk, VOL);
        expect(await fingerprint(vol)).toEqual(live);
        vol.checkInvariants();
      }
    }
    await vol.close();
  });
});

describe('rollback and refusals', () => {
  it('rollback makes the snapshot the live state (generation + 1), keeps it, and frees what only the old state held', async () => {
    const disk = await freshDisk();
    let vol = await openVol(disk, VOL, { create: 1024 * KiB });
    await extendPages(vol, 16384, 10);
    await vol.syncNow();
    const taken = await fingerprint(vol);
    await vol.createSnapshot('base');
    await extendPages(vol, 16385, 30, 2); // only the later state holds these
    await rewritePages(vol, 16384, [0, 1, 2], 3);
    await vol.syncNow();
    const generation = vol.info().generation;
    await vol.close();
    vol = await openVol(disk, VOL);
    await vol.rollbackToSnapshot('base');
    expect(await codeOf(() => vol.nblocks(rel(16384), ForkNumber.MAIN))).toBe('ENGINE_CLOSED');
    vol = await openVol(disk, VOL);
    expect(vol.info().generation).toBe(generation + 1);
    expect(await fingerprint(vol)).toEqual(taken);
    expect(vol.exists(rel(16385), ForkNumber.MAIN)).toBe(false);
    expect(vol.listSnapshots().map((s) => s.name)).toEqual(['base']);
    // Every live block is the snapshot's: it holds none alone; the 30 + 3 later pages are free.
    expect(vol.listSnapshots()[0]!.exclusiveBlocks).toBe(0);
    const info = vol.info();
    expect(info.freeBlocks).toBe(info.volumeBlocks - 2 - info.snapshotHeldBlocks! - info.snapshotTableBlocks!.length);
    expectAccounting(vol);
    // The rolled-back state lives on: writes relocate, the snapshot stays as taken.
    await rewritePages(vol, 16384, [0, 5], 9);
    await vol.syncNow();
    expectAccounting(vol);
    await vol.close();
    expect(await snapshotFingerprint(disk, VOL, 'base')).toEqual(taken);
    expect(await errorFindings(disk)).toEqual([]);
  });

  it('a bad, taken or missing name is BAD_ARGUMENT naming no path, and the file is left byte for byte as it was', async () => {
    const disk = await freshDisk();
    let vol = await openVol(disk, VOL, { create: 512 * KiB });
    await extendPages(vol, 16384, 4);
    await vol.createSnapshot('a');
    await vol.close();
    const before = sha256(disk.readFileNow(VOL)!);
    vol = await openVol(disk, VOL);
    for (const bad of ['', '.hidden', '-x', 'a/b', 'sp ace', 'x'.repeat(64), 'é']) {
      const err = await vol.createSnapshot(bad).catch((e: unknown) => e);
      expect(err, bad).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/bad snapshot name/) });
      expect((err as { path?: string }).path).toBeUndefined();
    }
    expect(await vol.createSnapshot('a').catch((e: unknown) => e)).toMatchObject({ code: 'BAD_ARGUMENT', message: 'a snapshot named a exists already in the volume' });
    // The refusal comes before the `checkpoint` option runs (the engine's checkpoint would write).
    let checkpoints = 0;
    const taken = await vol.createSnapshot('a', { checkpoint: async () => void checkpoints++ }).catch((e: unknown) => e);
    expect(taken).toMatchObject({ code: 'BAD_ARGUMENT', message: 'a snapshot named a exists already in the volume' });
    expect(checkpoints).toBe(0);
    expect(await vol.dropSnapshot('b').catch((e: unknown) => e)).toMatchObject({ code: 'BAD_ARGUMENT', message: 'no snapshot named b in the volume (it has a)' });
    expect(await vol.rollbackToSnapshot('b').catch((e: unknown) => e)).toMatchObject({ code: 'BAD_ARGUMENT' });
    expect(await codeOf(openVol(disk, VOL, { snapshot: 'b' }))).toBe('VOLUME_LOCKED'); // the writer holds it
    await vol.close();
    expect(await openVol(disk, VOL, { snapshot: 'b' }).catch((e: unknown) => e)).toMatchObject({ code: 'BAD_ARGUMENT', message: 'no snapshot named b in the volume (it has a)' });
    expect(sha256(disk.readFileNow(VOL)!)).toBe(before);
    // Names at the limits are fine.
    vol = await openVol(disk, VOL);
    await vol.createSnapshot('x'.repeat(63));
    await vol.createSnapshot('A_z-0.9');
    expect(vol.listSnapshots().map((s) => s.name)).toEqual(['A_z-0.9', 'a', 'x'.repeat(63)]);
    await vol.close();
    expect(await errorFindings(disk)).toEqual([]);
  });

  it('a snapshot needs room for every later checkpoint (V5 counts the live blocks it shares, 36, and the catalog pages, a leaf and an index page): VOLUME_FULL writes nothing; a rollback likewise', async () => {
    const disk = await freshDisk();
    let vol = await openVol(disk, VOL, { create: 256 * KiB }); // 64 blocks of 4 KiB
    await extendPages(vol, 16384, 36);
    await vol.syncNow();
    await vol.close();
    const before = sha256(disk.readFileNow(VOL)!);
    vol = await openVol(disk, VOL);
    const err = await vol.createSnapshot('big').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VOLUME_FULL', message: expect.stringMatching(/no room for snapshot big .* 38 of them because later checkpoints may relocate every live block and rewrite every catalog page the snapshots share/) });
    expect(vol.failure).toBeNull();
    await vol.close();
    expect(sha256(disk.readFileNow(VOL)!)).toBe(before);
    // With room, the shared blocks count in the reserve: a write that would eat into it is refused.
    vol = await openVol(disk, VOL);
    await vol.truncate(rel(16384), ForkNumber.MAIN, 12, { requestSync: () => true, countBackendSync() {}, reportSyncFailure: (e) => { throw e; }, exemptFromLedger() {} });
    await vol.syncNow();
    await vol.createSnapshot('small');
    expectAccounting(vol);
    await vol.close();
  });

  it('with grow: { step, max } a snapshot that needs room grows the volume first (V6)', async () => {
    const disk = await freshDisk();
    const grow = { step: 64 * KiB, max: 1024 * KiB };
    let vol = await openVol(disk, VOL, { create: 256 * KiB });
    await extendPages(vol, 16384, 36);
    await vol.syncNow();
    await vol.close();
    vol = await Volume.open({ io: disk, path: VOL, blockSize: SMALL_BS, grow });
    await vol.createSnapshot('grown');
    expect(vol.volumeSizeBytes).toBeGreaterThan(256 * KiB);
    expect(vol.stats.grows).toBeGreaterThan(0);
    expectAccounting(vol);
    await vol.close();
    expect(await errorFindings(disk)).toEqual([]);
    vol = await openVol(disk, VOL);
    expect(vol.volumeSizeBytes).toBeGreaterThan(256 * KiB);
    expect(vol.listSnapshots().map((x) => x.name)).toEqual(['grown']);
    await vol.close();
  });

  it('a failed fdatasync during a snapshot switch puts the volume in its failed state; the reopened volume is the state before or after', async () => {
    const disk = await freshDisk();
    let vol = await openVol(disk, VOL, { create: 512 * KiB });
    await extendPages(vol, 16384, 4);
    await vol.syncNow();
    disk.injectFault({ kind: 'fdatasync', code: 'EIO' });
    expect(await codeOf(vol.createSnapshot('x'))).toBe('ENGINE_FAILED');
    expect(vol.failure).not.toBeNull();
    expect(await codeOf(extendPages(vol, 16384, 1))).toBe('ENGINE_FAILED');
    await vol.close();
    disk.clearFaults();
    vol = await openVol(disk, VOL);
    expect(vol.listSnapshots().length).toBeLessThanOrEqual(1);
    expect(vol.nblocks(rel(16384), ForkNumber.MAIN)).toBe(4);
    expectAccounting(vol);
    await vol.close();
  });
});

describe('embedded: volumeExtension({ snapshot }) and a snapshot of a running engine', () => {
  async function engineOn(disk: SimDisk, options: { snapshot?: string; create?: number } = {}) {
    const ext = volumeExtension({ path: VOL, ...(options.snapshot !== undefined ? { snapshot: options.snapshot } : {}), ...(options.create !== undefined ? { create: { sizeBytes: options.create } } : {}) });
    const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 16, io: disk, preload: [ext] });
    return { engine, ext, volume: ext.volume! };
  }

  it('an online snapshot (engine.checkpoint, then volume.createSnapshot) is what a read-only snapshot engine later reads; writes to it are VOLUME_READ_ONLY and the file stays byte for byte', async () => {
    const disk = await freshDisk();
    const r = rel(16384);
    {
      const { engine, volume } = await engineOn(disk, { create: 2048 * KiB });
      const relation = engine.relation(r, { storage: 'volume' });
      await relation.create(ForkNumber.MAIN);
      for (let b = 0; b < 12; b++) await relation.extend(ForkNumber.MAIN, makePage(r, ForkNumber.MAIN, b, 1));
      // The checkpoint option: the engine's dirty pages reach the volume first.
      const snap = await volume.createSnapshot('online', { checkpoint: () => engine.checkpoint() });
      expect(snap.name).toBe('online');
      // The engine keeps running: more writes, more checkpoints.
      for (let b = 0; b < 12; b += 2) await relation.write(ForkNumber.MAIN, b, makePage(r, ForkNumber.MAIN, b, 2));
      await relation.extend(ForkNumber.MAIN, makePage(r, ForkNumber.MAIN, 12, 2));
      await engine.checkpoint();
      expect(volume.listSnapshots()[0]!.exclusiveBlocks).toBeGreaterThanOrEqual(6);
      volume.checkInvariants();
      await engine.close();
    }
    const before = sha256(disk.readFileNow(VOL)!);
    {
      const { engine, volume } = await engineOn(disk, { snapshot: 'online' });
      expect(volume.readOnly).toBe(true);
      expect(volume.openedSnapshot).toBe('online');
      const relation = engine.relation(r, { storage: 'volume' });
      expect(await relation.nblocks(ForkNumber.MAIN)).toBe(12);
      for (let b = 0; b < 12; b++) expect(Buffer.from(await relation.read(ForkNumber.MAIN, b)).equals(Buffer.from(makePage(r, ForkNumber.MAIN, b, 1)))).toBe(true);
      const err = await relation.extend(ForkNumber.MAIN, makePage(r, ForkNumber.MAIN, 12, 9)).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'VOLUME_READ_ONLY', message: expect.stringMatching(/snapshot online is open \(read-only\)/) });
      expect(await codeOf(relation.truncate(ForkNumber.MAIN, 1))).toBe('VOLUME_READ_ONLY');
      expect(await codeOf(engine.relation(rel(99), { storage: 'volume' }).create(ForkNumber.MAIN))).toBe('VOLUME_READ_ONLY');
      expect(await codeOf(volume.createSnapshot('again'))).toBe('VOLUME_READ_ONLY');
      await engine.checkpoint();
      await engine.close();
    }
    expect(sha256(disk.readFileNow(VOL)!)).toBe(before);
    // The live state is the later one.
    const { engine } = await engineOn(disk);
    const relation = engine.relation(r, { storage: 'volume' });
    expect(await relation.nblocks(ForkNumber.MAIN)).toBe(13);
    expect(Buffer.from(await relation.read(ForkNumber.MAIN, 0)).equals(Buffer.from(makePage(r, ForkNumber.MAIN, 0, 2)))).toBe(true);
    await engine.close();
    expect(await errorFindings(disk)).toEqual([]);
  });

  it('a failed fdatasync during an online snapshot fails the volume, then the engine at its next checkpoint', async () => {
    const disk = await freshDisk();
    const r = rel(16384);
    const { engine, volume } = await engineOn(disk, { create: 1024 * KiB });
    const relation = engine.relation(r, { storage: 'volume' });
    await relation.create(ForkNumber.MAIN);
    for (let b = 0; b < 4; b++) await relation.extend(ForkNumber.MAIN, makePage(r, ForkNumber.MAIN, b, 1));
    await engine.checkpoint();
    disk.injectFault({ kind: 'fdatasync', code: 'EIO' });
    expect(await codeOf(volume.createSnapshot('x'))).toBe('ENGINE_FAILED');
    disk.clearFaults();
    await relation.write(ForkNumber.MAIN, 0, makePage(r, ForkNumber.MAIN, 0, 2));
    expect(await codeOf(engine.checkpoint())).toBe('ENGINE_FAILED');
    await engine.close().catch(() => {});
  });

  it('writes racing an online snapshot: the snapshot stays as it was when taken, whatever is rewritten after', async () => {
    const disk = await freshDisk();
    const vol = await openVol(disk, VOL, { create: 2048 * KiB });
    await extendPages(vol, 16384, 30);
    await extendPages(vol, 16385, 10);
    await vol.syncNow();
    const creating = vol.createSnapshot('raced');
    // Writes land while the snapshot's sync, catalog read and switch are under way.
    const racing = (async () => {
      for (let k = 0; k < 10; k++) await rewritePages(vol, 16384, [k, k + 10], 100 + k);
      await extendPages(vol, 16386, 5, 7);
    })();
    await Promise.all([creating, racing]);
    vol.checkInvariants();
    await vol.close();
    const taken = await snapshotFingerprint(disk, VOL, 'raced');
    const again = await openVol(disk, VOL);
    for (let round = 0; round < 3; round++) {
      for (const f of again.info().forks) await rewritePages(again, f.relNumber, [...Array(f.nblocks).keys()], 200 + round);
      await again.syncNow();
      again.checkInvariants();
    }
    await again.close();
    expect(await snapshotFingerprint(disk, VOL, 'raced')).toEqual(taken);
    expect(await errorFindings(disk)).toEqual([]);
  });

  it('V5 with a snapshot sharing the catalog: on a volume filled up to its reserve, every checkpoint that rewrites every leaf still has room (V5 counts the data and the catalog pages the snapshot holds: replacing either frees no block)', async () => {
    const disk = await freshDisk();
    const forks = 300; // about 4 leaves at 4 KiB
    const ext = volumeExtension({ path: VOL, create: { sizeBytes: 16 * 1024 * KiB } }); // first extents of 8 blocks: 2400 blocks
    const engine = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: forks, io: disk, preload: [ext] });
    const volume = ext.volume!;
    const rels = Array.from({ length: forks }, (_, i) => engine.relation(rel(20000 + i), { storage: 'volume' }));
    for (const [i, r] of rels.entries()) {
      await r.create(ForkNumber.MAIN);
      await r.extend(ForkNumber.MAIN, makePage(rel(20000 + i), ForkNumber.MAIN, 0, 1));
    }
    await volume.createSnapshot('held', { checkpoint: () => engine.checkpoint() });
    // Fill the volume until the reserve refuses an extend: free space is the reserve, no more.
    const filler = engine.relation(rel(19999), { storage: 'volume' });
    await filler.create(ForkNumber.MAIN);
    for (let b = 0; ; b++) {
      const err = await filler.extend(ForkNumber.MAIN, makePage(rel(19999), ForkNumber.MAIN, b, 1)).then(() => null, (e: unknown) => e);
      if (err !== null) {
        expect(err).toMatchObject({ code: 'VOLUME_FULL' });
        break;
      }
    }
    // Every checkpoint dirties every fork (so every leaf is rewritten) and must find room.
    for (let round = 2; round < 6; round++) {
      for (const [i, r] of rels.entries()) await r.write(ForkNumber.MAIN, 0, makePage(rel(20000 + i), ForkNumber.MAIN, 0, round));
      await engine.checkpoint();
      volume.checkInvariants();
    }
    await engine.close();
    expect(await errorFindings(disk)).toEqual([]);
  });

  it('volumeExtension refuses a bad snapshot name, snapshot with create, and readOnly: false, naming the option', () => {
    expect(() => volumeExtension({ path: VOL, snapshot: '../x' })).toThrow(/bad snapshot name/);
    expect(() => volumeExtension({ path: VOL, snapshot: 'a', create: { sizeBytes: 1 << 20 } })).toThrow(/snapshot and create exclude each other/);
    expect(() => volumeExtension({ path: VOL, snapshot: 'a', readOnly: false })).toThrow(/readOnly cannot be false/);
  });
});
