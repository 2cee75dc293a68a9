/**
 * Goal: bad input when opening a volume (reliability-anchors 8(d)): every
 * refused case is a LamstoreError (VOLUME_CORRUPT, BAD_ARGUMENT or an fs error code) naming the
 * file and the problem, never a TypeError/RangeError, and the file's bytes are identical before
 * and after; one damaged superblock slot opens from the other and checkVolume names it.
 * Method: a valid volume made through the engine in a temp dir, then damaged with node:fs
 * (fields rewritten with recomputed CRCs where the point is to get past the CRC); open through
 * the extension and checkVolume; sha256 of the file before and after. The exhaustive bit flips
 * and the random-mutation fuzz moved to test/campaign-bad-input.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { readFile, writeFile, mkdir, truncate as fsTruncate } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, LamstoreError, RealIO, crc32c } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { Volume, checkVolume, volumeExtension } from '../volume/index.js';
import { decodeCatalog, decodeSuperblock, encodeCatalog, SUPERBLOCK_BYTES } from '../volume/format.js';
import { hashFile, makePage, openVolumeEngine, rel } from './helpers/volume.js';
import { tempDir } from './helpers/index.js';
import { SMALL_BS } from './helpers/engine.js';

const SIZE = 1024 * 1024;

/** A volume with two forks, closed (so generation >= 2: both slots and a moved catalog). */
async function makeVolume(dir: string): Promise<string> {
  const path = join(dir, 'lam.vol');
  const { engine, smgr } = await openVolumeEngine({ dataDir: join(dir, 'data'), path, create: { sizeBytes: SIZE } });
  for (const r of [rel(1), rel(2)]) {
    await smgr.create(r, 0);
    for (let b = 0; b < 10; b++) await smgr.extend(r, 0, b, makePage(r, 0, b));
  }
  await engine.close();
  return path;
}

async function expectRefused(path: string, pattern: RegExp, codes = ['VOLUME_CORRUPT']): Promise<LamstoreError> {
  const isFile = existsSync(path) && statSync(path).isFile();
  const before = isFile ? await hashFile(path) : null;
  let caught: unknown;
  try {
    const vol = await Volume.open({ io: new RealIO(), path });
    await vol.close();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(LamstoreError);
  const e = caught as LamstoreError;
  expect(codes).toContain(e.code);
  expect(e.message).toContain(path);
  expect(e.message).toMatch(pattern);
  // Through the extension too (what Engine.open users see).
  const viaEngine = await Engine.open({ dataDir: join(path, '..', 'data-bad'), blockSize: SMALL_BS, preload: [volumeExtension({ path })] }).catch((err: unknown) => err);
  expect(viaEngine).toBeInstanceOf(LamstoreError);
  expect((viaEngine as LamstoreError).code).toBe(e.code);
  if (before !== null) expect(await hashFile(path)).toBe(before);
  else if (!isFile && existsSync(path)) expect(statSync(path).isDirectory()).toBe(true);
  else expect(existsSync(path)).toBe(false);
  return e;
}

/** Rewrite fields of a superblock slot and recompute its CRC. */
async function patchSlot(path: string, slot: number, patch: (v: DataView) => void): Promise<void> {
  const buf = await readFile(path);
  const at = slot * SMALL_BS;
  const v = new DataView(buf.buffer, buf.byteOffset + at, SUPERBLOCK_BYTES);
  patch(v);
  v.setUint32(SUPERBLOCK_BYTES - 4, crc32c(new Uint8Array(buf.buffer, buf.byteOffset + at, SUPERBLOCK_BYTES - 4)), true);
  await writeFile(path, buf);
}

function activeSlot(buf: Uint8Array): number {
  const a = decodeSuperblock(buf.subarray(0, SUPERBLOCK_BYTES), 0);
  const b = decodeSuperblock(buf.subarray(SMALL_BS, SMALL_BS + SUPERBLOCK_BYTES), 1);
  if (a.ok && b.ok) return a.sb.generation > b.sb.generation ? 0 : 1;
  return a.ok ? 0 : 1;
}

/** Replace the active catalog with `mutate(catalog)` (same or other length), fixing the superblock's CRC fields. */
async function patchCatalog(path: string, mutate: (c: ReturnType<typeof decodeCatalog>) => Uint8Array | void): Promise<void> {
  const buf = new Uint8Array(await readFile(path));
  const slot = activeSlot(buf);
  const r = decodeSuperblock(buf.subarray(slot * SMALL_BS, slot * SMALL_BS + SUPERBLOCK_BYTES), slot);
  if (!r.ok) throw new Error('fixture has a valid active slot');
  const at = r.sb.catalogOffsetBlocks * SMALL_BS;
  const cat = decodeCatalog(buf.subarray(at, at + r.sb.catalogLengthBytes), path, r.sb.generation);
  const bytes = mutate(cat) ?? encodeCatalog(cat);
  buf.set(bytes, at);
  await writeFile(path, buf);
  await patchSlot(path, slot, (v) => {
    v.setUint32(48, bytes.length, true);
    v.setUint32(52, crc32c(bytes), true);
  });
}

describe('volume bad input', () => {
  it('a missing file is an fs error (ENOENT) naming the file, and nothing is created', async () => {
    const dir = await tempDir();
    const e = await expectRefused(join(dir, 'nope.vol'), /ENOENT/, ['IO_ERROR']);
    expect(e.errno).toBe('ENOENT');
  });

  it('a directory is BAD_ARGUMENT', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'd.vol'));
    await expectRefused(join(dir, 'd.vol'), /directory/, ['BAD_ARGUMENT']);
  });

  it('a 0-byte file and a file shorter than its header are VOLUME_CORRUPT', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'empty.vol'), new Uint8Array(0));
    await expectRefused(join(dir, 'empty.vol'), /empty/);
    await writeFile(join(dir, 'short.vol'), new Uint8Array(100).fill(7));
    await expectRefused(join(dir, 'short.vol'), /shorter than/);
  });

  it('wrong magic in both slots', async () => {
    const path = await makeVolume(await tempDir());
    const buf = await readFile(path);
    buf.write('NOTAVOLM', 0, 'latin1');
    buf.write('NOTAVOLM', SMALL_BS, 'latin1');
    await writeFile(path, buf);
    await expectRefused(path, /wrong magic/);
    expect((await checkVolume(path)).map((f) => f.part)).toEqual(expect.arrayContaining(['superblock slot 0', 'superblock slot 1']));
  });

  it('right magic, unknown format version (CRC recomputed)', async () => {
    const path = await makeVolume(await tempDir());
    for (const s of [0, 1]) await patchSlot(path, s, (v) => v.setUint32(8, 99, true));
    await expectRefused(path, /unknown format version 99/);
  });

  it('block size out of range or not a power of two (CRC recomputed)', async () => {
    for (const bad of [1000, 65536, 6144]) {
      const path = await makeVolume(await tempDir());
      for (const s of [0, 1]) await patchSlot(path, s, (v) => v.setUint32(16, bad, true));
      await expectRefused(path, new RegExp(`block size ${bad}`));
    }
  });

  it('volume size in the header larger than the file', async () => {
    const path = await makeVolume(await tempDir());
    await fsTruncate(path, SIZE / 2);
    await expectRefused(path, /says the volume is \d+ bytes but the file has only/);
  });

  it('a catalog CRC mismatch', async () => {
    const path = await makeVolume(await tempDir());
    const buf = new Uint8Array(await readFile(path));
    const slot = activeSlot(buf);
    const r = decodeSuperblock(buf.subarray(slot * SMALL_BS, slot * SMALL_BS + SUPERBLOCK_BYTES), slot);
    if (!r.ok) throw new Error('valid');
    buf[r.sb.catalogOffsetBlocks * SMALL_BS + 40]! ^= 0x10;
    await writeFile(path, buf);
    await expectRefused(path, /catalog CRC mismatch/);
    expect((await checkVolume(path)).some((f) => f.part === 'catalog' && /CRC/.test(f.message))).toBe(true);
  });

  it('catalog extents that overlap each other, overlap the metadata, or leave the file', async () => {
    const cases: [string, (c: ReturnType<typeof decodeCatalog>) => void, RegExp][] = [
      ['overlap', (c) => void (c.forks[1]!.extents[0]!.startBlock = c.forks[0]!.extents[0]!.startBlock + 1), /overlaps/],
      ['metadata', (c) => void (c.forks[0]!.extents[0]!.startBlock = 1), /overlaps the superblocks/],
      ['leaves', (c) => void (c.forks[0]!.extents[0]!.startBlock = SIZE / SMALL_BS - 2), /leave the volume/],
      ['zero length', (c) => void (c.forks[0]!.extents[0]!.lengthBlocks = 0), /length 0|nblocks/],
      ['nblocks beyond extents', (c) => void (c.forks[0]!.nblocks = 1000), /exceeds/],
    ];
    for (const [, mutate, pattern] of cases) {
      const path = await makeVolume(await tempDir());
      await patchCatalog(path, mutate);
      await expectRefused(path, pattern);
      const findings = await checkVolume(path);
      expect(findings.some((f) => f.severity === 'error' && /relation 1663\/5\/\d fork main/.test(f.part))).toBe(true);
    }
  });

  it('duplicate entries, a fork number out of range, and counts above what the catalog holds (refused before allocating)', async () => {
    const dup = await makeVolume(await tempDir());
    await patchCatalog(dup, (c) => {
      const bytes = encodeCatalog(c);
      const second = 32 + 24 + 8 * c.forks[0]!.extents.length;
      new DataView(bytes.buffer).setUint32(second + 8, c.forks[0]!.relNumber, true);
      return bytes;
    });
    await expectRefused(dup, /duplicate entry/);

    const forkRange = await makeVolume(await tempDir());
    await patchCatalog(forkRange, (c) => {
      const bytes = encodeCatalog(c);
      bytes[32 + 12] = 9;
      return bytes;
    });
    await expectRefused(forkRange, /fork number 9 is out of range/);

    for (const [field, value] of [
      [12, 0xffff_ffff],
      [24, 0xffff_fff0],
    ] as const) {
      const counts = await makeVolume(await tempDir());
      await patchCatalog(counts, (c) => {
        const bytes = encodeCatalog(c);
        new DataView(bytes.buffer).setUint32(field, value, true);
        return bytes;
      });
      await expectRefused(counts, /claims/);
    }

    const huge = await makeVolume(await tempDir());
    for (const s of [0, 1]) await patchSlot(huge, s, (v) => v.setUint32(48, 0xffff_ffff, true));
    await expectRefused(huge, /catalog length 4294967295/);

    const above53 = await makeVolume(await tempDir());
    for (const s of [0, 1]) await patchSlot(above53, s, (v) => v.setBigUint64(24, 1n << 60n, true));
    await expectRefused(above53, /2\^53/);
  });

  it('generations in the wrong slot (equal or out of order) are invalid slots', async () => {
    const path = await makeVolume(await tempDir());
    for (const s of [0, 1]) await patchSlot(path, s, (v) => v.setBigUint64(32, 7n, true));
    // Equal generations: slot 0 cannot hold an odd one, and slot 1's no longer matches its catalog.
    await expectRefused(path, /generation/);
    const findings = await checkVolume(path);
    expect(findings.find((f) => f.part === 'superblock slot 0')?.message).toMatch(/does not belong in slot 0/);
  });

  it('one damaged slot: the volume opens from the other and checkVolume reports the damaged slot', async () => {
    for (const damage of ['active', 'older'] as const) {
      const dir = await tempDir();
      const path = await makeVolume(dir);
      const buf = new Uint8Array(await readFile(path));
      const active = activeSlot(buf);
      const slot = damage === 'active' ? active : 1 - active;
      buf[slot * SMALL_BS + 30]! ^= 0x01;
      await writeFile(path, buf);
      const before = await hashFile(path);
      const findings = await checkVolume(path, { checkPages: true });
      expect(findings.filter((f) => f.severity === 'error').map((f) => f.part)).toEqual([`superblock slot ${slot}`]);
      expect(findings[0]!.message).toMatch(/CRC mismatch/);
      const vol = await Volume.open({ io: new RealIO(), path });
      const info = vol.info();
      expect(info.activeSlot).toBe(1 - slot);
      expect(info.slots[slot]!.valid).toBe(false);
      await vol.close();
      expect(await hashFile(path)).toBe(before);
      if (damage === 'older') expect(info.forks.map((f) => f.nblocks)).toEqual([10, 10]);
    }
  });

  it('both slots damaged: refused', async () => {
    const path = await makeVolume(await tempDir());
    const buf = await readFile(path);
    buf[30]! ^= 1;
    buf[SMALL_BS + 30]! ^= 1;
    await writeFile(path, buf);
    await expectRefused(path, /no valid superblock.*CRC mismatch/);
  });

  it('create: bad sizes are BAD_ARGUMENT naming the option; ENOSPC while zero-filling leaves no file', async () => {
    const dir = await tempDir();
    for (const sizeBytes of [100_000, 8 * 8192, 2 * 1024 ** 4, Number.NaN, -1, 1.5, '1MB' as unknown as number]) {
      const err = await Volume.open({ io: new RealIO(), path: join(dir, 'x.vol'), create: { sizeBytes, blockSize: 8192 } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LamstoreError);
      expect((err as LamstoreError).code).toBe('BAD_ARGUMENT');
      expect((err as Error).message).toContain('create.sizeBytes');
      expect(existsSync(join(dir, 'x.vol'))).toBe(false);
    }
    const disk = new SimDisk();
    await disk.mkdir('/v');
    disk.injectFault({ kind: 'pwrite', code: 'ENOSPC', nth: 2, pathIncludes: 'lam.vol' });
    const progress: number[] = [];
    const err = await Volume.open({ io: disk, path: '/v/lam.vol', create: { sizeBytes: 16 * 1024 * 1024, blockSize: SMALL_BS, onProgress: (p) => progress.push(p.doneBytes) } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IO_ERROR', errno: 'ENOSPC' });
    expect((err as Error).message).toContain('/v/lam.vol');
    expect(progress).toEqual([4 * 1024 * 1024]);
    expect(disk.listFiles()).toEqual([]);
    expect(disk.openHandleCount).toBe(0);
  });
});
