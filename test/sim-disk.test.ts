/**
 * Goal: SimDisk, on its own, keeps the promises DESIGN.md section 2 makes for it: what a crash
 * keeps in each mode, that directory entries need fsyncDir, that faults fire exactly where they
 * are asked to with the code asked for, the fsyncgate mode, flock and handle counting.
 * Method: small scripted sequences of FileIO calls on a fresh SimDisk, then `crash(mode, seed)`
 * and inspection of the new disk (and of the old one, which must not change). Modes with random
 * choices are looped over seeds; every failing assertion names the seed.
 */
import { describe, expect, it } from 'vitest';
import { SimDisk, CRASH_MODES } from '../engine/testing.js';
import type { FaultCode } from '../engine/testing.js';
import type { FileHandle, IoKind } from '../engine/io/file-io.js';

const SECTOR = 512;

function filled(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

/** The byte every sector of `bytes` is filled with, or -1 for a sector of mixed bytes. */
function sectorBytes(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let s = 0; s < bytes.length; s += SECTOR) {
    const sector = bytes.subarray(s, s + SECTOR);
    const first = sector[0]!;
    out.push(sector.every((b) => b === first) ? first : -1);
  }
  return out;
}

/** A disk with directory /d (durable) holding file /d/f with `bytes` durable under a durable name. */
async function diskWithFile(bytes: Uint8Array): Promise<{ disk: SimDisk; h: FileHandle }> {
  const disk = new SimDisk();
  await disk.mkdir('/d');
  await disk.fsyncDir('/');
  const h = await disk.open('/d/f', { create: true });
  await disk.pwrite(h, bytes, 0);
  await disk.fsync(h);
  await disk.fsyncDir('/d');
  return { disk, h };
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

describe('SimDisk crash: durability of data', () => {
  it('unsynced writes vanish on a drop crash; synced ones stay', async () => {
    const { disk, h } = await diskWithFile(filled(1024, 1));
    await disk.pwrite(h, filled(512, 2), 0); // synced below
    await disk.fdatasync(h);
    await disk.pwrite(h, filled(512, 3), 512); // never synced
    await disk.pwrite(h, filled(512, 4), 1024); // never synced, extends the file
    expect(sectorBytes(disk.readFileNow('/d/f')!)).toEqual([2, 3, 4]);

    const after = disk.crash('drop', 7);
    expect(sectorBytes(after.readFileNow('/d/f')!)).toEqual([2, 1]);
    expect(after.pendingCount).toBe(0);
  });

  it('an unsynced truncate is undone by a drop crash; a synced one stays', async () => {
    const { disk, h } = await diskWithFile(filled(2048, 1));
    await disk.ftruncate(h, 512);
    expect(disk.crash('drop').readFileNow('/d/f')!.length).toBe(2048);
    await disk.fsync(h);
    expect(disk.crash('drop').readFileNow('/d/f')!.length).toBe(512);
  });
});

describe('SimDisk crash: durability of names', () => {
  it('a new file name vanishes unless its directory was fsynced', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/d');
    await disk.fsyncDir('/');
    const h = await disk.open('/d/new', { create: true });
    await disk.pwrite(h, filled(512, 9), 0);
    await disk.fsync(h); // the data is durable, the name is not
    expect(disk.crash('drop').readFileNow('/d/new')).toBeNull();
    expect(disk.crash('drop').listFiles()).toEqual([]);

    await disk.fsyncDir('/d');
    const after = disk.crash('drop');
    expect(after.listFiles()).toEqual(['/d/new']);
    expect(sectorBytes(after.readFileNow('/d/new')!)).toEqual([9]);
  });

  it('a durable name over unsynced data comes back empty', async () => {
    const disk = new SimDisk();
    const h = await disk.open('/x', { create: true });
    await disk.pwrite(h, filled(512, 9), 0);
    await disk.fsyncDir('/');
    expect(disk.crash('drop').readFileNow('/x')).toEqual(new Uint8Array(0));
  });

  it('a new directory vanishes (with its files) unless its parent was fsynced', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/a/b');
    const h = await disk.open('/a/b/f', { create: true });
    await disk.fsync(h);
    await disk.fsyncDir('/a/b');
    await disk.fsyncDir('/a');
    expect(disk.crash('drop').listFiles()).toEqual([]); // '/' never fsynced: /a is not durable
    await disk.fsyncDir('/');
    expect(disk.crash('drop').listFiles()).toEqual(['/a/b/f']);
  });

  it('unlink is undone by a crash unless the directory was fsynced', async () => {
    const { disk } = await diskWithFile(filled(512, 1));
    await disk.unlink('/d/f');
    expect(disk.readFileNow('/d/f')).toBeNull();
    const back = disk.crash('drop');
    expect(sectorBytes(back.readFileNow('/d/f')!)).toEqual([1]);

    await disk.fsyncDir('/d');
    expect(disk.crash('drop').readFileNow('/d/f')).toBeNull();
  });

  it('rename is undone by a crash unless the directory was fsynced', async () => {
    const { disk } = await diskWithFile(filled(512, 1));
    await disk.rename('/d/f', '/d/g');
    expect(disk.listFiles()).toEqual(['/d/g']);
    expect(disk.crash('drop').listFiles()).toEqual(['/d/f']);

    await disk.fsyncDir('/d');
    const after = disk.crash('drop');
    expect(after.listFiles()).toEqual(['/d/g']);
    expect(sectorBytes(after.readFileNow('/d/g')!)).toEqual([1]);
  });

  it('a file unlinked while open keeps its handle usable', async () => {
    const { disk, h } = await diskWithFile(filled(512, 1));
    await disk.unlink('/d/f');
    const buf = new Uint8Array(512);
    expect(await disk.pread(h, buf, 0)).toBe(512);
    await disk.pwrite(h, filled(512, 2), 0);
    await disk.fsync(h);
    expect(disk.listFiles()).toEqual([]);
  });
});

describe('SimDisk crash modes', () => {
  /**
   * Four files with durable names, then six pending operations in a known order: five writes
   * (each to its own sector, so each is observable alone) and one directory operation (a new
   * name /d/n). Returns which of the six the crashed disk kept.
   */
  async function sixPending(): Promise<{ disk: SimDisk; kept: (d: SimDisk) => boolean[] }> {
    const disk = new SimDisk();
    await disk.mkdir('/d');
    await disk.fsyncDir('/');
    const names = ['/d/a', '/d/b'];
    const hs: FileHandle[] = [];
    for (const n of names) {
      const h = await disk.open(n, { create: true });
      await disk.pwrite(h, filled(3 * SECTOR, 0xee), 0);
      await disk.fsync(h);
      hs.push(h);
    }
    await disk.fsyncDir('/d');
    const n = await disk.open('/d/n', { create: true, exclusive: false }); // name op: pending 0
    await disk.fsync(n); // its (empty) data is durable, its name is not
    // pending 1..5: writes, issue order a0 b0 a1 b1 a2 (sector index)
    await disk.pwrite(hs[0]!, filled(SECTOR, 1), 0);
    await disk.pwrite(hs[1]!, filled(SECTOR, 2), 0);
    await disk.pwrite(hs[0]!, filled(SECTOR, 3), SECTOR);
    await disk.pwrite(hs[1]!, filled(SECTOR, 4), SECTOR);
    await disk.pwrite(hs[0]!, filled(SECTOR, 5), 2 * SECTOR);
    expect(disk.pendingCount).toBe(6);
    const kept = (d: SimDisk): boolean[] => {
      const a = sectorBytes(d.readFileNow('/d/a')!);
      const b = sectorBytes(d.readFileNow('/d/b')!);
      // Every sector is exactly its old or its new content, never anything else.
      expect([0xee, 1]).toContain(a[0]);
      expect([0xee, 3]).toContain(a[1]);
      expect([0xee, 5]).toContain(a[2]);
      expect([0xee, 2]).toContain(b[0]);
      expect([0xee, 4]).toContain(b[1]);
      return [d.readFileNow('/d/n') !== null, a[0] === 1, b[0] === 2, a[1] === 3, b[1] === 4, a[2] === 5];
    };
    return { disk, kept };
  }

  it("'drop' keeps no pending operation", async () => {
    const { disk, kept } = await sixPending();
    for (let seed = 1; seed <= 20; seed++) expect(kept(disk.crash('drop', seed)), `seed ${seed}`).toEqual([false, false, false, false, false, false]);
  });

  it("'prefix' keeps a prefix of the pending operations in issue order (data and names)", async () => {
    const { disk, kept } = await sixPending();
    const lengths = new Set<number>();
    for (let seed = 1; seed <= 200; seed++) {
      const k = kept(disk.crash('prefix', seed));
      const n = k.indexOf(false) < 0 ? k.length : k.indexOf(false);
      expect(k.slice(n).every((x) => !x), `seed ${seed}: ${k.join(',')} is not a prefix`).toBe(true);
      lengths.add(n);
    }
    // Every cut point, from nothing to everything, shows up.
    expect([...lengths].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("'subset' keeps some subset, not only prefixes", async () => {
    const { disk, kept } = await sixPending();
    const seen = new Set<string>();
    let nonPrefix = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const k = kept(disk.crash('subset', seed));
      seen.add(k.map(Number).join(''));
      const n = k.indexOf(false) < 0 ? k.length : k.indexOf(false);
      if (k.slice(n).some((x) => x)) nonPrefix++;
    }
    expect(nonPrefix).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThan(20); // of 64 possible subsets
  });

  it("'subset' applies the kept operations in issue order", async () => {
    // Two writes to the same sector: when both are kept, the later one wins.
    const { disk, h } = await diskWithFile(filled(SECTOR, 0));
    await disk.pwrite(h, filled(SECTOR, 1), 0);
    await disk.pwrite(h, filled(SECTOR, 2), 0);
    const outcomes = new Set<number>();
    for (let seed = 1; seed <= 100; seed++) outcomes.add(sectorBytes(disk.crash('subset', seed).readFileNow('/d/f')!)[0]!);
    expect([...outcomes].sort()).toEqual([0, 1, 2]);
    // Prefix mode can never keep the second write without the first; its outcome 2 proves order.
    const prefixOutcomes = new Set<number>();
    for (let seed = 1; seed <= 100; seed++) prefixOutcomes.add(sectorBytes(disk.crash('prefix', seed).readFileNow('/d/f')!)[0]!);
    expect([...prefixOutcomes].sort()).toEqual([0, 1, 2]);
  });

  it("'torn' mixes old and new 512-byte sectors of the last pending write, and nothing else", async () => {
    const sectors = 8;
    const { disk, h } = await diskWithFile(filled(sectors * SECTOR, 0xaa));
    await disk.pwrite(h, filled(SECTOR, 0x11), 0); // an earlier pending write: dropped by torn
    // The last pending write covers sectors 1..7 with a distinct byte per sector.
    const last = new Uint8Array((sectors - 1) * SECTOR);
    for (let s = 0; s < sectors - 1; s++) last.fill(0x20 + s, s * SECTOR, (s + 1) * SECTOR);
    await disk.pwrite(h, last, SECTOR);

    let mixedSeed = -1;
    for (let seed = 1; seed <= 50; seed++) {
      const got = sectorBytes(disk.crash('torn', seed).readFileNow('/d/f')!);
      expect(got.length, `seed ${seed}`).toBe(sectors);
      expect(got[0], `seed ${seed}: the earlier write is dropped`).toBe(0xaa);
      let oldCount = 0;
      let newCount = 0;
      for (let s = 1; s < sectors; s++) {
        // Each sector is wholly old or wholly new (sectorBytes gives -1 for a mixed sector).
        if (got[s] === 0xaa) oldCount++;
        else if (got[s] === 0x20 + s - 1) newCount++;
        else throw new Error(`seed ${seed}: sector ${s} holds ${got[s]}, neither old nor new`);
      }
      if (oldCount > 0 && newCount > 0 && mixedSeed < 0) mixedSeed = seed;
    }
    expect(mixedSeed, 'some seed tears the write into old and new sectors').toBeGreaterThan(0);
  });

  it("'torn' with a write not aligned to sectors tears at file sector boundaries", async () => {
    const { disk, h } = await diskWithFile(filled(4 * SECTOR, 0xaa));
    await disk.pwrite(h, filled(2 * SECTOR, 0x55), SECTOR / 2); // covers half of 0, all of 1, half of 2
    for (let seed = 1; seed <= 30; seed++) {
      const f = disk.crash('torn', seed).readFileNow('/d/f')!;
      for (let s = 0; s < 3; s++) {
        const from = Math.max(s * SECTOR, SECTOR / 2);
        const to = Math.min((s + 1) * SECTOR, SECTOR / 2 + 2 * SECTOR);
        const part = f.subarray(from, to);
        expect(part.every((b) => b === part[0]) && (part[0] === 0xaa || part[0] === 0x55), `seed ${seed} sector ${s}`).toBe(true);
      }
      expect(f.subarray(0, SECTOR / 2).every((b) => b === 0xaa)).toBe(true);
      expect(f.subarray(SECTOR / 2 + 2 * SECTOR).every((b) => b === 0xaa)).toBe(true);
    }
  });

  it("'garbage' changes only the sectors of one pending write", async () => {
    const sectors = 6;
    const { disk, h } = await diskWithFile(filled(sectors * SECTOR, 0xaa));
    await disk.pwrite(h, filled(SECTOR, 1), 0); // sector 0
    await disk.pwrite(h, filled(2 * SECTOR, 2), 2 * SECTOR); // sectors 2-3
    await disk.pwrite(h, filled(SECTOR, 3), 5 * SECTOR); // sector 5
    const ranges = [[0], [2, 3], [5]];
    const hit = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const f = disk.crash('garbage', seed).readFileNow('/d/f')!;
      expect(f.length).toBe(sectors * SECTOR);
      const changed: number[] = [];
      for (let s = 0; s < sectors; s++) if (!f.subarray(s * SECTOR, (s + 1) * SECTOR).every((b) => b === 0xaa)) changed.push(s);
      const which = ranges.findIndex((r) => r.includes(changed[0]!));
      expect(which, `seed ${seed}: changed sectors ${changed.join(',')}`).toBeGreaterThanOrEqual(0);
      // Only sectors of that one write changed, and not to the write's own bytes (garbage).
      for (const s of changed) expect(ranges[which], `seed ${seed}`).toContain(s);
      for (const s of changed) expect(sectorBytes(f.subarray(s * SECTOR, (s + 1) * SECTOR))[0], `seed ${seed}`).toBe(-1);
      hit.add(which);
    }
    expect([...hit].sort()).toEqual([0, 1, 2]);
  });

  it('crash() is deterministic for a seed and leaves the original disk untouched', async () => {
    const { disk, kept } = await sixPending();
    const before = { files: disk.listFiles(), a: disk.readFileNow('/d/a'), b: disk.readFileNow('/d/b'), pending: disk.pendingCount };
    const image = (d: SimDisk) => JSON.stringify(d.listFiles().map((p) => [p, Buffer.from(d.readFileNow(p)!).toString('hex')]));
    for (const mode of CRASH_MODES) {
      for (let seed = 1; seed <= 15; seed++) {
        const x = disk.crash(mode, seed);
        const y = disk.crash(mode, seed);
        expect(image(x), `${mode} seed ${seed}`).toBe(image(y));
      }
    }
    // Untouched: current bytes, names and pending operations, and a drop crash still drops all.
    expect(disk.listFiles()).toEqual(before.files);
    expect(disk.readFileNow('/d/a')).toEqual(before.a);
    expect(disk.readFileNow('/d/b')).toEqual(before.b);
    expect(disk.pendingCount).toBe(before.pending);
    expect(kept(disk.crash('drop'))).toEqual([false, false, false, false, false, false]);
    expect(sectorBytes(disk.readFileDurable('/d/a')!)).toEqual([0xee, 0xee, 0xee]);
  });

  it('a crashed disk is fully durable and usable', async () => {
    const { disk } = await sixPending();
    const after = disk.crash('subset', 3);
    expect(after.pendingCount).toBe(0);
    expect(after.openHandleCount).toBe(0);
    const snapshot = after.listFiles();
    expect(after.crash('drop').listFiles()).toEqual(snapshot);
    const h = await after.open('/d/a');
    await after.pwrite(h, filled(SECTOR, 7), 0);
    await after.close(h);
  });
});

describe('SimDisk faults', () => {
  const codes: FaultCode[] = ['EIO', 'ENOSPC', 'EDQUOT', 'EROFS'];

  /** One call of each kind on /d/f (or /d for directory kinds). */
  const callOf: Record<string, (disk: SimDisk, h: FileHandle) => Promise<unknown>> = {
    open: (d) => d.open('/d/f'),
    pread: (d, h) => d.pread(h, new Uint8Array(16), 0),
    pwrite: (d, h) => d.pwrite(h, filled(16, 1), 0),
    fsync: (d, h) => d.fsync(h),
    fdatasync: (d, h) => d.fdatasync(h),
    ftruncate: (d, h) => d.ftruncate(h, 16),
    size: (d, h) => d.size(h),
    fsyncDir: (d) => d.fsyncDir('/d'),
    stat: (d) => d.stat('/d/f'),
    readdir: (d) => d.readdir('/d'),
    mkdir: (d) => d.mkdir('/d'),
    flock: (d, h) => d.flock(h, 'shared'),
    writeback: (d, h) => d.writeback(h, 0, 16),
  };

  for (const [kind, call] of Object.entries(callOf)) {
    it(`a fault on '${kind}' fires exactly at the nth call, once, with its code`, async () => {
      for (const code of codes) {
        const { disk, h } = await diskWithFile(filled(512, 1));
        disk.injectFault({ kind: kind as IoKind, nth: 3, code });
        await call(disk, h);
        await call(disk, h);
        await rejectsWith(call(disk, h), code);
        await call(disk, h); // once: the 4th succeeds
        await call(disk, h);
      }
    });
  }

  it('a fault on pwritev counts as a pwrite call', async () => {
    const { disk, h } = await diskWithFile(filled(512, 1));
    disk.injectFault({ kind: 'pwrite', nth: 2, code: 'ENOSPC' });
    await disk.pwritev(h, [filled(8, 1)], 0);
    await rejectsWith(disk.pwritev(h, [filled(8, 2), filled(8, 3)], 0), 'ENOSPC');
    await disk.pwritev(h, [filled(8, 4)], 0);
  });

  it('unlink and rename faults fire at the nth call', async () => {
    const disk = new SimDisk();
    for (const n of ['a', 'b', 'c', 'd']) await disk.close(await disk.open(`/${n}`, { create: true }));
    disk.injectFault({ kind: 'unlink', nth: 2, code: 'EROFS' });
    disk.injectFault({ kind: 'rename', nth: 1, code: 'EIO' });
    await disk.unlink('/a');
    await rejectsWith(disk.unlink('/b'), 'EROFS');
    await disk.unlink('/b');
    await rejectsWith(disk.rename('/c', '/e'), 'EIO');
    await disk.rename('/c', '/e');
    expect(disk.listFiles()).toEqual(['/d', '/e']);
  });

  it('a failing call has no effect', async () => {
    const { disk, h } = await diskWithFile(filled(512, 1));
    disk.injectFault({ kind: 'pwrite', code: 'ENOSPC' });
    await rejectsWith(disk.pwrite(h, filled(1024, 2), 0), 'ENOSPC');
    expect(sectorBytes(disk.readFileNow('/d/f')!)).toEqual([1]);
    disk.injectFault({ kind: 'ftruncate', code: 'EIO' });
    await rejectsWith(disk.ftruncate(h, 0), 'EIO');
    expect(disk.readFileNow('/d/f')!.length).toBe(512);
    disk.injectFault({ kind: 'open', code: 'EROFS' });
    await rejectsWith(disk.open('/d/g', { create: true }), 'EROFS');
    expect(disk.listFiles()).toEqual(['/d/f']);
    disk.injectFault({ kind: 'unlink', code: 'EIO' });
    await rejectsWith(disk.unlink('/d/f'), 'EIO');
    expect(disk.listFiles()).toEqual(['/d/f']);
    // A failed fsync (not fsyncgate) keeps the writes pending: a later fsync makes them durable.
    await disk.pwrite(h, filled(512, 3), 0);
    disk.injectFault({ kind: 'fsync', code: 'EIO' });
    await rejectsWith(disk.fsync(h), 'EIO');
    expect(sectorBytes(disk.crash('drop').readFileNow('/d/f')!)).toEqual([1]);
    await disk.fsync(h);
    expect(sectorBytes(disk.crash('drop').readFileNow('/d/f')!)).toEqual([3]);
  });

  it('a persistent fault keeps failing every later call of its kind', async () => {
    const { disk, h } = await diskWithFile(filled(512, 1));
    disk.injectFault({ kind: 'fdatasync', nth: 2, code: 'EIO', persistent: true });
    await disk.fdatasync(h);
    for (let i = 0; i < 5; i++) await rejectsWith(disk.fdatasync(h), 'EIO');
    await disk.fsync(h); // other kinds are not affected
    disk.clearFaults();
    await disk.fdatasync(h);
  });

  it('pathIncludes: only calls on matching paths count and fail', async () => {
    const disk = new SimDisk();
    const a = await disk.open('/data/a', { create: true }).catch(() => null);
    expect(a).toBeNull(); // no /data yet
    await disk.mkdir('/data');
    const ha = await disk.open('/data/a', { create: true });
    const hb = await disk.open('/data/b', { create: true });
    disk.injectFault({ kind: 'fsync', nth: 2, code: 'EDQUOT', pathIncludes: '/b' });
    await disk.fsync(ha);
    await disk.fsync(hb); // 1st matching call
    await disk.fsync(ha);
    await disk.fsync(ha);
    await rejectsWith(disk.fsync(hb), 'EDQUOT'); // 2nd matching call
    await disk.fsync(hb);
  });

  it('two faults on one kind each fire at their own call', async () => {
    const { disk, h } = await diskWithFile(filled(512, 1));
    disk.injectFault({ kind: 'pread', nth: 1, code: 'EIO' });
    disk.injectFault({ kind: 'pread', nth: 3, code: 'ENOSPC' });
    const buf = new Uint8Array(8);
    await rejectsWith(disk.pread(h, buf, 0), 'EIO');
    await disk.pread(h, buf, 0);
    await rejectsWith(disk.pread(h, buf, 0), 'ENOSPC');
    await disk.pread(h, buf, 0);
  });

  it('a close fault releases the handle and reports the error', async () => {
    const { disk, h } = await diskWithFile(filled(512, 1));
    expect(disk.openHandleCount).toBe(1);
    disk.injectFault({ kind: 'close', code: 'EIO' });
    await rejectsWith(disk.close(h), 'EIO');
    expect(disk.openHandleCount).toBe(0);
    await rejectsWith(disk.pread(h, new Uint8Array(1), 0), 'EBADF');
  });

  it('a recursive mkdir is one mkdir call (faults and onCall count it once)', async () => {
    const disk = new SimDisk();
    const seen: IoKind[] = [];
    disk.onCall = (_i, kind) => seen.push(kind);
    disk.injectFault({ kind: 'mkdir', nth: 2, code: 'EIO' });
    await disk.mkdir('/a/b/c/d');
    expect(seen).toEqual(['mkdir']);
    await rejectsWith(disk.mkdir('/x/y'), 'EIO');
    expect(await disk.stat('/x')).toBeNull();
    expect(disk.callCount).toBe(3); // two mkdirs and a stat
  });

  it('fsyncgate: a failed fdatasync drops the pending writes; reads still see them; a crash loses them', async () => {
    const { disk, h } = await diskWithFile(filled(1024, 1));
    await disk.pwrite(h, filled(512, 2), 0);
    disk.injectFault({ kind: 'fdatasync', code: 'EIO', fsyncgate: true });
    await rejectsWith(disk.fdatasync(h), 'EIO');
    await disk.fdatasync(h); // "succeeds", as Linux reports after dropping the dirty pages
    const buf = new Uint8Array(1024);
    await disk.pread(h, buf, 0);
    expect(sectorBytes(buf)).toEqual([2, 1]); // the page cache still has the write
    expect(sectorBytes(disk.crash('drop').readFileNow('/d/f')!)).toEqual([1, 1]); // the disk does not
    expect(sectorBytes(disk.readFileDurable('/d/f')!)).toEqual([1, 1]);
    // Writes after the failure become durable normally.
    await disk.pwrite(h, filled(512, 3), 512);
    await disk.fdatasync(h);
    expect(sectorBytes(disk.crash('drop').readFileNow('/d/f')!)).toEqual([1, 3]);
  });

  it('fsyncgate drops only the failing file\'s writes', async () => {
    const disk = new SimDisk();
    const a = await disk.open('/a', { create: true });
    const b = await disk.open('/b', { create: true });
    await disk.fsyncDir('/');
    await disk.pwrite(a, filled(512, 1), 0);
    await disk.pwrite(b, filled(512, 2), 0);
    disk.injectFault({ kind: 'fsync', code: 'EIO', fsyncgate: true, pathIncludes: '/a' });
    await rejectsWith(disk.fsync(a), 'EIO');
    await disk.fsync(b);
    const after = disk.crash('drop');
    expect(after.readFileNow('/a')!.length).toBe(0);
    expect(sectorBytes(after.readFileNow('/b')!)).toEqual([2]);
  });
});

describe('SimDisk flock and handles', () => {
  it('exclusive and shared locks conflict with EAGAIN across handles, never within one', async () => {
    const disk = new SimDisk();
    const a = await disk.open('/lock', { create: true });
    const b = await disk.open('/lock');
    const c = await disk.open('/lock');
    await disk.flock(a, 'exclusive');
    await disk.flock(a, 'exclusive'); // re-locking one's own lock is fine
    await rejectsWith(disk.flock(b, 'exclusive'), 'EAGAIN');
    await rejectsWith(disk.flock(b, 'shared'), 'EAGAIN');
    await disk.flock(a, 'shared'); // downgrade
    await disk.flock(b, 'shared');
    await disk.flock(c, 'shared');
    await rejectsWith(disk.flock(c, 'exclusive'), 'EAGAIN'); // others hold shared
    await disk.flock(a, 'unlock');
    await disk.flock(b, 'unlock');
    await disk.flock(c, 'exclusive'); // upgrade once alone
    await rejectsWith(disk.flock(a, 'shared'), 'EAGAIN');
    await disk.close(c); // close releases the lock
    await disk.flock(a, 'exclusive');
    await disk.close(a);
    await disk.close(b);
  });

  it('locks are per file: other files are not affected', async () => {
    const disk = new SimDisk();
    const a = await disk.open('/one', { create: true });
    const b = await disk.open('/two', { create: true });
    await disk.flock(a, 'exclusive');
    await disk.flock(b, 'exclusive');
  });

  it('openHandleCount follows opens and closes; a closed handle is EBADF', async () => {
    const disk = new SimDisk();
    expect(disk.openHandleCount).toBe(0);
    const a = await disk.open('/f', { create: true });
    const b = await disk.open('/f');
    expect(disk.openHandleCount).toBe(2);
    await rejectsWith(disk.open('/missing'), 'ENOENT');
    expect(disk.openHandleCount).toBe(2);
    await disk.close(a);
    expect(disk.openHandleCount).toBe(1);
    await rejectsWith(disk.close(a), 'EBADF');
    await rejectsWith(disk.pwrite(a, filled(1, 1), 0), 'EBADF');
    await disk.close(b);
    expect(disk.openHandleCount).toBe(0);
  });

  it('open follows the options: ENOENT, EEXIST with exclusive, EISDIR, EBADF when read-only', async () => {
    const disk = new SimDisk();
    await rejectsWith(disk.open('/f'), 'ENOENT');
    await rejectsWith(disk.open('/nodir/f', { create: true }), 'ENOENT');
    const h = await disk.open('/f', { create: true, exclusive: true });
    await rejectsWith(disk.open('/f', { create: true, exclusive: true }), 'EEXIST');
    await disk.mkdir('/dir');
    await rejectsWith(disk.open('/dir'), 'EISDIR');
    const ro = await disk.open('/f', { readOnly: true });
    await rejectsWith(disk.pwrite(ro, filled(1, 1), 0), 'EBADF');
    await rejectsWith(disk.ftruncate(ro, 0), 'EBADF');
    expect(await disk.stat('/f')).toEqual({ kind: 'file', sizeBytes: 0 });
    expect(await disk.stat('/dir')).toMatchObject({ kind: 'directory' });
    expect(await disk.stat('/nothing')).toBeNull();
    expect(await disk.readdir('/')).toEqual(['dir', 'f']);
    await disk.close(h);
    await disk.close(ro);
  });

  it('pread returns fewer bytes at end of file, and 0 past it', async () => {
    const { disk, h } = await diskWithFile(filled(100, 1));
    expect(await disk.pread(h, new Uint8Array(64), 64)).toBe(36);
    expect(await disk.pread(h, new Uint8Array(64), 100)).toBe(0);
    expect(await disk.pread(h, new Uint8Array(64), 500)).toBe(0);
    expect(await disk.size(h)).toBe(100);
  });
});

describe('SimDisk edge cases', () => {
  it('a zero-length write changes nothing, not even the size, as on a real file system', async () => {
    const { disk, h } = await diskWithFile(filled(100, 1));
    await disk.pwrite(h, new Uint8Array(0), 4096);
    await disk.pwritev(h, [], 8192);
    expect(await disk.size(h)).toBe(100);
    expect(disk.pendingCount).toBe(0);
  });

  it('rename of a name onto itself changes nothing; onto a directory is EISDIR', async () => {
    const { disk } = await diskWithFile(filled(512, 1));
    await disk.rename('/d/f', '/d/f');
    expect(disk.listFiles()).toEqual(['/d/f']);
    expect(disk.pendingCount).toBe(0);
    await disk.mkdir('/d/sub');
    await rejectsWith(disk.rename('/d/f', '/d/sub'), 'EISDIR');
    expect(disk.listFiles()).toEqual(['/d/f']);
  });

  it('rename over an existing file replaces it; a crash before fsyncDir brings the old one back', async () => {
    const disk = new SimDisk();
    for (const [name, byte] of [['/old', 1], ['/new', 2]] as const) {
      const h = await disk.open(name, { create: true });
      await disk.pwrite(h, filled(512, byte), 0);
      await disk.fsync(h);
      await disk.close(h);
    }
    await disk.fsyncDir('/');
    await disk.rename('/new', '/old');
    expect(sectorBytes(disk.readFileNow('/old')!)).toEqual([2]);
    expect(disk.listFiles()).toEqual(['/old']);
    const back = disk.crash('drop');
    expect(back.listFiles()).toEqual(['/new', '/old']);
    expect(sectorBytes(back.readFileNow('/old')!)).toEqual([1]);
    await disk.fsyncDir('/');
    expect(sectorBytes(disk.crash('drop').readFileNow('/old')!)).toEqual([2]);
  });

  it("'torn' with tornTarget 'random' tears one pending write, of either file", async () => {
    const disk = new SimDisk();
    const hs: FileHandle[] = [];
    for (const name of ['/a', '/b']) {
      const h = await disk.open(name, { create: true });
      await disk.pwrite(h, filled(4 * SECTOR, 0xaa), 0);
      await disk.fsync(h);
      hs.push(h);
    }
    await disk.fsyncDir('/');
    await disk.pwrite(hs[0]!, filled(4 * SECTOR, 1), 0);
    await disk.pwrite(hs[1]!, filled(4 * SECTOR, 2), 0);
    const touched = new Set<string>();
    for (let seed = 1; seed <= 60; seed++) {
      const d = disk.crash('torn', seed, { tornTarget: 'random' });
      const a = sectorBytes(d.readFileNow('/a')!);
      const b = sectorBytes(d.readFileNow('/b')!);
      expect(a.every((x) => x === 0xaa || x === 1) && b.every((x) => x === 0xaa || x === 2), `seed ${seed}`).toBe(true);
      const aNew = a.some((x) => x === 1);
      const bNew = b.some((x) => x === 2);
      expect(aNew && bNew, `seed ${seed}: only one write is torn`).toBe(false);
      if (aNew) touched.add('a');
      if (bNew) touched.add('b');
    }
    expect([...touched].sort()).toEqual(['a', 'b']);
  });
});
