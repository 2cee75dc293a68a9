/**
 * Goal: a crash at any point of snapshot create, drop or rollback (volume/snapshots.ts S4) leaves
 * either the state before or the state after, exactly: the same snapshot names and every
 * snapshot's and the live state's every page; never a snapshot whose blocks were reused, also
 * once the reopened volume has rewritten every live page (so the free space rebuilt after the
 * crash cannot include a block a snapshot names); and the volume checks clean.
 * Method: SimDisk; a crash image in every mode (prefix and subset with two seeds) before every
 * FileIO call of the operation (open, switch, close), plus the state after; each image is
 * opened, its state read (the live fingerprint and each snapshot's, test/helpers/snapshots.ts)
 * and compared with both allowed states; checkInvariants; checkVolume errors except on the
 * inactive slot (a crash while it was rewritten leaves it damaged, which check cannot tell from
 * media damage); then every live page is rewritten twice with syncs between and every surviving
 * snapshot must still read back as it was taken. A crash at any point of a clone leaves no new
 * file, a file refused as never completed, or the whole clone; the source never changes. An
 * online drop followed by checkpoints that write over blocks only the dropped snapshot held:
 * after a crash anywhere, that snapshot is whole or gone and the other one whole.
 */
import { describe, expect, it } from 'vitest';
import { CRASH_MODES, SimDisk } from '../engine/testing.js';
import { checkVolume, cloneSnapshot, examineVolume } from '../volume/index.js';
import type { Volume } from '../volume/index.js';
import { extendPages, fingerprint, openVol, rewritePages, snapshotFingerprint } from './helpers/snapshots.js';
import { rel } from './helpers/volume.js';
import { ForkNumber } from '../engine/index.js';

const VOL = '/vol/lam.vol';
const KiB = 1024;

interface State {
  live: Record<string, string>;
  snapshots: Record<string, Record<string, string>>;
}

async function stateOf(disk: SimDisk): Promise<{ state: State; activeSlot: number }> {
  const vol = await openVol(disk, VOL, { readOnly: true });
  const live = await fingerprint(vol);
  const names = vol.listSnapshots().map((s) => s.name);
  const activeSlot = vol.info().activeSlot;
  vol.checkInvariants();
  await vol.close();
  const snapshots: State['snapshots'] = {};
  for (const name of names) snapshots[name] = await snapshotFingerprint(disk, VOL, name);
  return { state: { live, snapshots }, activeSlot };
}

/** The base: two forks, snapshot a, changes, snapshot b, more changes (all durable). */
async function baseDisk(): Promise<SimDisk> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  await disk.fsyncDir('/');
  const vol = await openVol(disk, VOL, { create: 1024 * KiB });
  await extendPages(vol, 16384, 12);
  await extendPages(vol, 16385, 6);
  await vol.syncNow();
  await vol.createSnapshot('a');
  await rewritePages(vol, 16384, [0, 1, 2, 3, 10], 2);
  await extendPages(vol, 16386, 4, 2);
  await vol.syncNow();
  await vol.createSnapshot('b');
  await rewritePages(vol, 16384, [4, 5, 6], 3);
  await vol.truncate(rel(16385), ForkNumber.MAIN, 2, { requestSync: () => true, countBackendSync() {}, reportSyncFailure: (e) => { throw e; }, exemptFromLedger() {} });
  await vol.syncNow();
  await vol.close();
  return disk;
}

/** Rewrite every live page twice (new blocks each time, so free space is used up and reused). */
async function churn(vol: Volume): Promise<void> {
  for (const version of [50, 51]) {
    for (const f of vol.info().forks) {
      if (f.nblocks === 0) continue;
      await rewritePages(vol, f.relNumber, [...Array(f.nblocks).keys()], version);
    }
    await vol.syncNow();
    vol.checkInvariants();
  }
}

async function crashMatrix(label: string, op: (disk: SimDisk) => Promise<void>): Promise<{ before: number; after: number }> {
  const disk = await baseDisk();
  const { state: before } = await stateOf(disk);
  const images: { index: number; mode: string; disk: SimDisk }[] = [];
  disk.onCall = (index) => {
    for (const mode of CRASH_MODES) for (const seed of mode === 'prefix' || mode === 'subset' ? [1, 2] : [1]) images.push({ index, mode, disk: disk.crash(mode, index * 10 + seed) });
  };
  await op(disk);
  disk.onCall = undefined;
  images.push({ index: disk.callCount + 1, mode: 'after', disk: disk.crash('drop') });
  const { state: after } = await stateOf(disk);
  expect(after, `${label} changes something`).not.toEqual(before);
  const outcomes = { before: 0, after: 0 };
  for (const img of images) {
    const what = `${label}: crash before call ${img.index} (${img.mode})`;
    const { state, activeSlot } = await stateOf(img.disk);
    if (JSON.stringify(state) === JSON.stringify(before)) outcomes.before++;
    else {
      expect(state, what).toEqual(after);
      outcomes.after++;
    }
    const findings = (await checkVolume(VOL, { io: img.disk, checkPages: true })).filter((f) => f.severity === 'error' && f.part !== `superblock slot ${1 - activeSlot}`);
    expect(findings, what).toEqual([]);
    // No block a surviving snapshot names is free: rewriting everything reuses free space only.
    const vol = await openVol(img.disk, VOL);
    await churn(vol);
    await vol.close();
    for (const [name, fp] of Object.entries(state.snapshots)) expect(await snapshotFingerprint(img.disk, VOL, name), `${what}: snapshot ${name} after churn`).toEqual(fp);
  }
  console.log(`snapshot-crash ${label}: states=${images.length} before=${outcomes.before} after=${outcomes.after}`);
  expect(outcomes.before).toBeGreaterThan(0);
  expect(outcomes.after).toBeGreaterThan(0);
  return outcomes;
}

describe('a crash at any point of a snapshot operation leaves the state before or after', () => {
  it('create', async () => {
    await crashMatrix('create', async (disk) => {
      const vol = await openVol(disk, VOL);
      await vol.createSnapshot('c');
      await vol.close();
    });
  });

  it('drop', async () => {
    await crashMatrix('drop', async (disk) => {
      const vol = await openVol(disk, VOL);
      await vol.dropSnapshot('a');
      await vol.close();
    });
  });

  it('rollback', async () => {
    await crashMatrix('rollback', async (disk) => {
      const vol = await openVol(disk, VOL);
      await vol.rollbackToSnapshot('a');
    });
  });

  it('an online create: the volume sync it runs first, then the switch (three allowed states: before, synced, after)', async () => {
    const disk = await baseDisk();
    const vol0 = await openVol(disk, VOL);
    await rewritePages(vol0, 16386, [0, 1], 7);
    const images: { index: number; mode: string; disk: SimDisk }[] = [];
    disk.onCall = (index) => {
      for (const mode of CRASH_MODES) images.push({ index, mode, disk: disk.crash(mode, index * 10 + 1) });
    };
    await vol0.createSnapshot('online');
    disk.onCall = undefined;
    await vol0.close();
    const { state: after } = await stateOf(disk);
    let seen = 0;
    for (const img of images) {
      const what = `online create: crash before call ${img.index} (${img.mode})`;
      const { state } = await stateOf(img.disk);
      const names = Object.keys(state.snapshots).sort();
      if (names.includes('online')) {
        expect(state, what).toEqual(after);
        seen++;
      } else expect(names, what).toEqual(['a', 'b']);
      for (const [name, fp] of Object.entries(state.snapshots)) if (name !== 'online') expect(fp, what).toEqual(after.snapshots[name]);
    }
    expect(seen).toBeGreaterThan(0);
  });

  it('clone: a crash at any point leaves no new file, a file refused as never completed, or the whole clone; the source is unchanged', async () => {
    const disk = await baseDisk();
    const source = disk.readFileNow(VOL)!;
    const expected = await snapshotFingerprint(disk, VOL, 'b');
    const images: { index: number; mode: string; disk: SimDisk }[] = [];
    disk.onCall = (index) => {
      for (const mode of CRASH_MODES) images.push({ index, mode, disk: disk.crash(mode, index * 10 + 1) });
    };
    await cloneSnapshot(VOL, 'b', '/vol/copy.vol', { io: disk });
    disk.onCall = undefined;
    images.push({ index: disk.callCount + 1, mode: 'after', disk: disk.crash('drop') });
    const outcomes = { absent: 0, refused: 0, whole: 0 };
    for (const img of images) {
      const what = `clone: crash before call ${img.index} (${img.mode})`;
      expect(Buffer.from(img.disk.readFileNow(VOL)!).equals(Buffer.from(source)), what).toBe(true);
      if (img.disk.readFileNow('/vol/copy.vol') === null) {
        outcomes.absent++;
        continue;
      }
      const opened = await openVol(img.disk, '/vol/copy.vol', { readOnly: true }).catch((e: unknown) => e);
      if (!(opened && typeof opened === 'object' && 'info' in opened)) {
        expect((opened as { code?: string }).code, what).toBe('VOLUME_CORRUPT');
        outcomes.refused++;
        continue;
      }
      const vol = opened as Volume;
      const fp = await fingerprint(vol);
      await vol.close();
      expect(fp, what).toEqual(expected);
      outcomes.whole++;
    }
    console.log(`snapshot-crash clone: states=${images.length} absent=${outcomes.absent} refused=${outcomes.refused} whole=${outcomes.whole}`);
    expect(outcomes.refused).toBeGreaterThan(0);
    expect(outcomes.whole).toBeGreaterThan(0);
  });

  it('an online drop followed by checkpoints that reuse its blocks: after a crash anywhere the dropped snapshot is whole or gone, the other whole, the volume clean', async () => {
    const disk = await baseDisk();
    const { state: before } = await stateOf(disk);
    const blocksOf = async (d: SimDisk) => {
      const handle = await d.open(VOL, { readOnly: true });
      const ex = await examineVolume(d, handle, VOL);
      await d.close(handle);
      const set = (pages: number[], forks: { extents: { startBlock: number; lengthBlocks: number }[] }[]) => {
        const out = new Set(pages);
        for (const f of forks) for (const e of f.extents) for (let k = 0; k < e.lengthBlocks; k++) out.add(e.startBlock + k);
        return out;
      };
      const live = set([...ex.indexBlocks!, ...ex.leaves!.map((l) => l.block)], ex.forks!);
      const snaps = new Map(ex.snapshots!.map((x) => [x.entry.name, set([...x.indexBlocks, ...x.leaves.map((l) => l.block)], x.forks)]));
      return { live, snaps };
    };
    const initial = await blocksOf(disk);
    const onlyA = [...initial.snaps.get('a')!].filter((b) => !initial.live.has(b) && !initial.snaps.get('b')!.has(b));
    expect(onlyA.length).toBeGreaterThan(0);
    const images: { index: number; mode: string; disk: SimDisk }[] = [];
    const vol = await openVol(disk, VOL);
    disk.onCall = (index) => {
      for (const mode of CRASH_MODES) images.push({ index, mode, disk: disk.crash(mode, index * 10 + 1) });
    };
    await vol.dropSnapshot('a');
    await churn(vol); // the blocks only 'a' held become pending, then free, then written again
    disk.onCall = undefined;
    await vol.close();
    // The churn did write over blocks only 'a' held: the case the crash images must survive.
    const final = await blocksOf(disk);
    expect(onlyA.some((b) => final.live.has(b))).toBe(true);
    let gone = 0;
    for (const img of images) {
      const what = `online drop + churn: crash before call ${img.index} (${img.mode})`;
      const { state, activeSlot } = await stateOf(img.disk);
      expect(state.snapshots['b'], what).toEqual(before.snapshots['b']);
      if (state.snapshots['a'] === undefined) gone++;
      else expect(state.snapshots['a'], what).toEqual(before.snapshots['a']);
      const findings = (await checkVolume(VOL, { io: img.disk, checkPages: true })).filter((f) => f.severity === 'error' && f.part !== `superblock slot ${1 - activeSlot}`);
      expect(findings, what).toEqual([]);
    }
    expect(gone).toBeGreaterThan(0);
    expect(gone).toBeLessThan(images.length);
  });
});
