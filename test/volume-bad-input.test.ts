/**
 * Goal: bad input when opening a volume (reliability-anchors 8(d)), format 2: every refused case
 * is a LamstoreError (VOLUME_CORRUPT, BAD_ARGUMENT or an fs error code) naming the file and the
 * problem, never a TypeError/RangeError, and the file's bytes are identical before and after;
 * one damaged superblock slot opens from the other and checkVolume names it. The catalog cases
 * damage one thing in one page (a leaf or an index page) and then fix every CRC a parent records
 * (index entry, previous index page, superblock, the superblock's own), so only the intended
 * defect remains and the check that catches it is the one named: CRC mismatches (a page
 * damaged, or a stale page of an older generation at the right block), placement (F6),
 * structure (F4: duplicates, order, nblocks, contiguity; counts; generations; the index chain).
 * Method: valid volumes made through the engine (two forks of 10 blocks) or through the Volume
 * API (16,300 empty forks: 129 leaves, two index pages) in a temp dir, then damaged with node:fs
 * and the byte helpers of helpers/volume.ts; open through Volume.open and the extension, and
 * checkVolume; sha256 of the file before and after. The exhaustive bit flips and the
 * random-mutation fuzz are in test/campaign-bad-input.test.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile, mkdir, truncate as fsTruncate } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, LamstoreError, RealIO, crc32c } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { Volume, checkVolume, volumeExtension } from '../volume/index.js';
import type { Extent, Finding } from '../volume/index.js';
import type { CatalogItem } from '../volume/format.js';
import { INDEX_ENTRY_BYTES, PAGE_HEADER_BYTES, SUPERBLOCK_BYTES, decodeIndexPage, decodeLeafPage, encodeIndexPage, indexEntriesMax } from '../volume/format.js';
import {
  ENTRY_FIELD,
  ITEM_FIELD,
  PAGE_FIELD,
  SB_FIELD,
  STUB_HOST,
  activeSuperblock,
  blockOf,
  catalogLayout,
  fixCatalogCrcs,
  fixSlotCrc,
  hashFile,
  itemOffsets,
  makePage,
  openVolumeEngine,
  rel,
  rewriteLeaf,
} from './helpers/volume.js';
import type { CatalogLayout } from './helpers/volume.js';
import { tempDir } from './helpers/index.js';
import { SMALL_BS } from './helpers/engine.js';

const SIZE = 1024 * 1024;
const VOLUME_BLOCKS = SIZE / SMALL_BS;

/**
 * A volume with two forks of 10 blocks, closed (generation >= 2: both slots valid). `older` is
 * the file as the checkpoint before the last one left it (5 blocks per fork): its catalog pages
 * are valid pages of an older generation.
 */
async function makeVolume(dir: string): Promise<{ path: string; older: Uint8Array }> {
  const path = join(dir, 'lam.vol');
  const { engine, smgr } = await openVolumeEngine({ dataDir: join(dir, 'data'), path, create: { sizeBytes: SIZE } });
  for (const r of [rel(1), rel(2)]) await smgr.create(r, 0);
  for (const r of [rel(1), rel(2)]) for (let b = 0; b < 5; b++) await smgr.extend(r, 0, b, makePage(r, 0, b));
  await engine.checkpoint();
  const older = new Uint8Array(await readFile(path));
  for (const r of [rel(1), rel(2)]) for (let b = 5; b < 10; b++) await smgr.extend(r, 0, b, makePage(r, 0, b));
  await engine.close();
  return { path, older };
}

async function volumeAt(dir: string): Promise<string> {
  return (await makeVolume(dir)).path;
}

/** Empty forks enough for 129 leaves (127 empty items each at 4 KiB) and so two index pages. */
const WIDE_FORKS = 16_300;
const WIDE_SIZE = 4 * 1024 * 1024;
let wideImage: Uint8Array;

/** A volume of WIDE_FORKS empty forks, built through the Volume API (no engine). */
async function makeWideImage(): Promise<Uint8Array> {
  const dir = await tempDir();
  const path = join(dir, 'wide.vol');
  const vol = await Volume.open({ io: new RealIO(), path, create: { sizeBytes: WIDE_SIZE, blockSize: SMALL_BS }, blockSize: SMALL_BS });
  for (let r = 1; r <= WIDE_FORKS; r++) await vol.create(rel(r), 0, STUB_HOST);
  await vol.syncNow();
  await vol.close();
  return new Uint8Array(await readFile(path));
}

async function wideVolumeAt(dir: string): Promise<string> {
  const path = join(dir, 'wide.vol');
  await writeFile(path, wideImage);
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

/** Refused, and checkVolume reports an error on `part` whose message matches too. */
async function expectRefusedAndFound(path: string, pattern: RegExp, part: string | RegExp): Promise<Finding[]> {
  await expectRefused(path, pattern);
  const findings = await checkVolume(path);
  const errors = findings.filter((f) => f.severity === 'error');
  expect(errors.some((f) => (typeof part === 'string' ? f.part === part : part.test(f.part)) && pattern.test(`${f.part} ${f.message}`)), JSON.stringify(errors)).toBe(true);
  return findings;
}

/** Rewrite fields of a superblock slot and recompute its CRC. */
async function patchSlot(path: string, slot: number, patch: (v: DataView) => void): Promise<void> {
  const buf = new Uint8Array(await readFile(path));
  patch(new DataView(buf.buffer, slot * SMALL_BS, SUPERBLOCK_BYTES));
  fixSlotCrc(buf, slot);
  await writeFile(path, buf);
}

/**
 * Damage the active catalog of the file at `path`: `damage` changes bytes of the image (with the
 * layout read before), then every parent CRC is recomputed so that only that defect remains,
 * unless `fixCrcs` is false (the CRC mismatch cases).
 */
async function damageCatalog(path: string, damage: (img: Uint8Array, layout: CatalogLayout) => void, fixCrcs = true): Promise<CatalogLayout> {
  const img = new Uint8Array(await readFile(path));
  const layout = catalogLayout(img);
  damage(img, layout);
  if (fixCrcs) fixCatalogCrcs(img, layout);
  await writeFile(path, img);
  return layout;
}

function view(img: Uint8Array, block: number): DataView {
  return new DataView(img.buffer, img.byteOffset + block * SMALL_BS, SMALL_BS);
}

/** A format 1 superblock (the table of the version 1 README): valid CRC, catalog at block 2 + slot. */
function formatOneSuperblock(slot: number, generation: number): Uint8Array {
  const out = new Uint8Array(SUPERBLOCK_BYTES);
  const v = new DataView(out.buffer);
  out.set(Buffer.from('LAMSTORE', 'latin1'), 0);
  v.setUint32(8, 1, true);
  v.setUint32(12, slot, true);
  v.setUint32(16, SMALL_BS, true);
  v.setBigUint64(24, BigInt(SIZE), true);
  v.setBigUint64(32, BigInt(generation), true);
  v.setBigUint64(40, BigInt(2 + slot), true);
  v.setUint32(48, 32, true);
  v.setUint32(52, 0x1234_5678, true);
  v.setUint32(124, crc32c(out.subarray(0, 124)), true);
  return out;
}

beforeAll(async () => {
  wideImage = await makeWideImage();
}, 60_000);

describe('volume bad input', () => {
  it('the fixtures: the small volume has one index page and one leaf, the wide one two index pages and 129 leaves; both check clean', async () => {
    const dir = await tempDir();
    const { path, older } = await makeVolume(dir);
    const small = catalogLayout(new Uint8Array(await readFile(path)));
    expect(small.index.length).toBe(1);
    expect(small.leaves.length).toBe(1);
    expect(catalogLayout(older).sb.generation).toBeLessThan(small.sb.generation);
    expect(await checkVolume(path, { checkPages: true })).toEqual([]);
    const wide = catalogLayout(wideImage);
    expect(wide.index.map((p) => p.leaves.length)).toEqual([indexEntriesMax(SMALL_BS), 129 - indexEntriesMax(SMALL_BS)]);
    expect(wide.sb).toMatchObject({ indexPages: 2, leafPages: 129, forkCount: WIDE_FORKS });
    expect(await checkVolume(await wideVolumeAt(dir))).toEqual([]);
  });

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
    const path = await volumeAt(await tempDir());
    const buf = await readFile(path);
    buf.write('NOTAVOLM', 0, 'latin1');
    buf.write('NOTAVOLM', SMALL_BS, 'latin1');
    await writeFile(path, buf);
    await expectRefused(path, /wrong magic/);
    expect((await checkVolume(path)).map((f) => f.part)).toEqual(expect.arrayContaining(['superblock slot 0', 'superblock slot 1']));
  });

  it('a format version 1 superblock (valid CRC) is refused with a message naming version 1', async () => {
    const path = await volumeAt(await tempDir());
    const buf = new Uint8Array(await readFile(path));
    buf.set(formatOneSuperblock(0, 4), 0);
    buf.set(formatOneSuperblock(1, 3), SMALL_BS);
    await writeFile(path, buf);
    const e = await expectRefused(path, /format version 1 \(the in-place volume\) is not read by this lamstore, which reads version 2/);
    expect(e.message).toMatch(/slot 0: format version 1.*slot 1: format version 1/);
    const findings = await checkVolume(path);
    expect(findings.filter((f) => f.part.startsWith('superblock slot')).map((f) => [f.part, /format version 1/.test(f.message)])).toEqual([
      ['superblock slot 0', true],
      ['superblock slot 1', true],
    ]);
    // One slot of version 1 beside a valid one: the valid one opens, check names the other.
    const mixed = await volumeAt(await tempDir());
    const img = new Uint8Array(await readFile(mixed));
    const older = 1 - activeSuperblock(img).slot;
    img.set(formatOneSuperblock(older, older), older * SMALL_BS);
    await writeFile(mixed, img);
    const vol = await Volume.open({ io: new RealIO(), path: mixed, readOnly: true });
    expect(vol.info().slots[older]).toMatchObject({ valid: false, reason: expect.stringMatching(/format version 1/) });
    await vol.close();
  });

  it('right magic, unknown format version (CRC recomputed)', async () => {
    const path = await volumeAt(await tempDir());
    for (const s of [0, 1]) await patchSlot(path, s, (v) => v.setUint32(SB_FIELD.version, 99, true));
    await expectRefused(path, /unknown format version 99 \(this lamstore reads version 2\)/);
  });

  it('block size out of range or not a power of two (CRC recomputed)', async () => {
    for (const bad of [1000, 65536, 6144]) {
      const path = await volumeAt(await tempDir());
      for (const s of [0, 1]) await patchSlot(path, s, (v) => v.setUint32(SB_FIELD.blockSize, bad, true));
      await expectRefused(path, new RegExp(`block size ${bad}`));
    }
  });

  it('volume size in the header larger than the file', async () => {
    const path = await volumeAt(await tempDir());
    await fsTruncate(path, SIZE / 2);
    await expectRefused(path, /says the volume is \d+ bytes but the file has only/);
  });

  it('a catalog page CRC mismatch: a leaf, an index page, a byte past the items (the CRC covers the whole block)', async () => {
    const cases: [string, (img: Uint8Array, l: CatalogLayout) => void, RegExp][] = [
      ['leaf item', (img, l) => void (img[l.leaves[0]! * SMALL_BS + PAGE_HEADER_BYTES + ITEM_FIELD.nblocks]! ^= 0x10), /catalog leaf 0 at block \d+: CRC mismatch \(superblock slot \d, generation \d+\)/],
      ['leaf tail', (img, l) => void (img[(l.leaves[0]! + 1) * SMALL_BS - 1]! ^= 0x01), /catalog leaf 0 at block \d+: CRC mismatch/],
      ['index entry', (img, l) => void (img[l.index[0]!.block * SMALL_BS + PAGE_HEADER_BYTES + ENTRY_FIELD.block]! ^= 0x04), /catalog index page 0 at block \d+: CRC mismatch/],
      ['index tail', (img, l) => void (img[(l.index[0]!.block + 1) * SMALL_BS - 100]! ^= 0x80), /catalog index page 0 at block \d+: CRC mismatch/],
    ];
    for (const [name, damage, pattern] of cases) {
      const path = await volumeAt(await tempDir());
      await damageCatalog(path, damage, false);
      await expectRefusedAndFound(path, pattern, 'catalog').catch((err: unknown) => {
        throw new Error(`${name}: ${String(err)}`);
      });
    }
    // The second index page of a chain, and a leaf it names.
    const wide = await wideVolumeAt(await tempDir());
    await damageCatalog(wide, (img, l) => void (img[l.index[1]!.block * SMALL_BS + 200]! ^= 1), false);
    await expectRefusedAndFound(wide, /catalog index page 1 at block \d+: CRC mismatch/, 'catalog');
    const wide2 = await wideVolumeAt(await tempDir());
    await damageCatalog(wide2, (img, l) => void (img[l.leaves[128]! * SMALL_BS + 100]! ^= 1), false);
    await expectRefusedAndFound(wide2, /catalog leaf 128 at block \d+: CRC mismatch/, 'catalog');
  });

  it('a stale page: a valid page of an older generation at the right block is caught by the CRC its parent records', async () => {
    for (const which of ['leaf', 'index page'] as const) {
      const { path, older } = await makeVolume(await tempDir());
      const img = new Uint8Array(await readFile(path));
      const now = catalogLayout(img);
      const then = catalogLayout(older);
      const [from, to] = which === 'leaf' ? [then.leaves[0]!, now.leaves[0]!] : [then.index[0]!.block, now.index[0]!.block];
      const stale = blockOf(older, from).slice();
      // Valid on its own: it decodes, and its generation is older than the superblock's.
      const decoded = which === 'leaf' ? decodeLeafPage(stale, path, 'stale', now.sb.generation) : decodeIndexPage(stale, path, 'stale', now.sb.generation);
      expect(decoded.generation).toBeLessThan(now.sb.generation);
      expect(crc32c(stale)).not.toBe(crc32c(blockOf(img, to)));
      img.set(stale, to * SMALL_BS);
      await writeFile(path, img);
      await expectRefusedAndFound(path, which === 'leaf' ? /catalog leaf 0 at block \d+: CRC mismatch/ : /catalog index page 0 at block \d+: CRC mismatch/, 'catalog');
    }
  });

  it('catalog extents that overlap each other, the superblocks or a catalog page, or leave the volume (F6)', async () => {
    const cases: [string, (img: Uint8Array, l: CatalogLayout) => void, RegExp][] = [
      ['each other', (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.items[1]!.extents[0]!.startBlock = p.items[0]!.extents[0]!.startBlock + 1)), /relation 1663\/5\/2 fork main extent 0 overlaps relation 1663\/5\/1 fork main extent 0/],
      ['superblocks', (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.items[0]!.extents[0]!.startBlock = 1)), /relation 1663\/5\/1 fork main extent 0 blocks 1\.\.\d+ leave the data area 2\.\./],
      ['leaf page', (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.items[0]!.extents[0]!.startBlock = l.leaves[0]!)), /relation 1663\/5\/1 fork main extent 0 overlaps the catalog page at block \d+/],
      ['index page', (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.items[1]!.extents[0]!.startBlock = l.index[0]!.block)), /relation 1663\/5\/2 fork main extent 0 overlaps the catalog page at block \d+/],
      ['past the end', (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.items[0]!.extents[0]!.startBlock = VOLUME_BLOCKS - 2)), new RegExp(`extent 0 blocks ${VOLUME_BLOCKS - 2}\\.\\.\\d+ leave the data area 2\\.\\.${VOLUME_BLOCKS - 1}`)],
      ['zero length', (img, l) => rewriteLeaf(img, l, 0, (p) => void p.items[0]!.extents.push({ startBlock: VOLUME_BLOCKS - 1, lengthBlocks: 0 })), /relation 1663\/5\/1 fork main extent \d has length 0/],
    ];
    for (const [name, damage, pattern] of cases) {
      const path = await volumeAt(await tempDir());
      await damageCatalog(path, damage);
      await expectRefusedAndFound(path, pattern, /^relation 1663\/5\/\d fork main extent \d$/).catch((err: unknown) => {
        throw new Error(`${name}: ${String(err)}`);
      });
    }
  });

  it('duplicate items, items out of order (in a leaf and across leaves), index entries out of order, a leaf not starting where its entry says', async () => {
    const cases: [string, (img: Uint8Array, l: CatalogLayout) => void, RegExp][] = [
      ['duplicate', (img, l) => view(img, l.leaves[0]!).setUint32(itemOffsets(blockOf(img, l.leaves[0]!))[1]! + ITEM_FIELD.relNumber, 1, true), /catalog leaf 0 at block \d+ item 1 \(relation 1663\/5\/1 fork 0\): items are out of order or duplicated/],
      ['out of order', (img, l) => view(img, l.leaves[0]!).setUint32(itemOffsets(blockOf(img, l.leaves[0]!))[1]! + ITEM_FIELD.relNumber, 0, true), /item 1 \(relation 1663\/5\/0 fork 0\): items are out of order or duplicated/],
      // The key of leaf 0 in its index entry no longer matches the leaf's first item.
      ['entry key', (img, l) => view(img, l.index[0]!.block).setUint32(PAGE_HEADER_BYTES + ENTRY_FIELD.relNumber, 0, true), /catalog leaf 0 at block \d+ does not start with the key its index entry records/],
    ];
    for (const [name, damage, pattern] of cases) {
      const path = await volumeAt(await tempDir());
      await damageCatalog(path, damage);
      await expectRefusedAndFound(path, pattern, 'catalog').catch((err: unknown) => {
        throw new Error(`${name}: ${String(err)}`);
      });
    }
    // Across leaves (the wide volume): leaf 5's last item sorts after leaf 6's first one while
    // every leaf is in order itself and the index entries are too: caught when the items join.
    const across = await wideVolumeAt(await tempDir());
    await damageCatalog(across, (img, l) => {
      const offs = itemOffsets(blockOf(img, l.leaves[5]!));
      view(img, l.leaves[5]!).setUint32(offs[offs.length - 1]! + ITEM_FIELD.relNumber, 999_999, true);
    });
    await expectRefusedAndFound(across, /relation 1663\/5\/\d+ fork main: items are out of order/, 'catalog');
    // Index entries out of order: the first entry of index page 1 swapped with the last of page 0.
    const entries = await wideVolumeAt(await tempDir());
    await damageCatalog(entries, (img, l) => {
      const last = PAGE_HEADER_BYTES + (l.index[0]!.leaves.length - 1) * INDEX_ENTRY_BYTES;
      const a = blockOf(img, l.index[0]!.block).slice(last, last + INDEX_ENTRY_BYTES);
      const b = blockOf(img, l.index[1]!.block).slice(PAGE_HEADER_BYTES, PAGE_HEADER_BYTES + INDEX_ENTRY_BYTES);
      img.set(b, l.index[0]!.block * SMALL_BS + last);
      img.set(a, l.index[1]!.block * SMALL_BS + PAGE_HEADER_BYTES);
      // The layout follows the swap, so each entry's CRC is fixed from the leaf it now names.
      l.index[0]!.leaves[l.index[0]!.leaves.length - 1] = l.leaves[127]!;
      l.index[1]!.leaves[0] = l.leaves[126]!;
    });
    await expectRefusedAndFound(entries, /catalog index entries 126 and 127 are out of order/, 'catalog');
  });

  it('a fork number out of range, in a leaf item and in an index entry', async () => {
    const leaf = await volumeAt(await tempDir());
    await damageCatalog(leaf, (img, l) => view(img, l.leaves[0]!).setUint8(PAGE_HEADER_BYTES + ITEM_FIELD.fork, 9));
    await expectRefusedAndFound(leaf, /catalog leaf 0 at block \d+ item 0 \(relation 1663\/5\/1 fork 9\): fork number 9 is out of range 0\.\.3/, 'catalog');
    const entry = await volumeAt(await tempDir());
    await damageCatalog(entry, (img, l) => view(img, l.index[0]!.block).setUint8(PAGE_HEADER_BYTES + ENTRY_FIELD.fork, 9));
    await expectRefusedAndFound(entry, /catalog index page 0 at block \d+ entry 0: fork number 9 is out of range 0\.\.3/, 'catalog');
  });

  it('counts above what a page or the volume holds are refused before anything is allocated by them', async () => {
    const cases: [string, (img: Uint8Array, l: CatalogLayout) => void, RegExp][] = [
      ['index entries', (img, l) => view(img, l.index[0]!.block).setUint32(PAGE_FIELD.count, 0xffff_ffff, true), /catalog index page 0 at block \d+ claims 4294967295 entries, more than a page holds/],
      ['extents of an item', (img, l) => view(img, l.leaves[0]!).setUint32(PAGE_HEADER_BYTES + ITEM_FIELD.extentCount, 0xffff_fff0, true), /item 0 \(relation 1663\/5\/1 fork 0\): claims 4294967280 extents, more than the page holds/],
      // Items past the real ones are zero bytes: the first is caught as out of order, and none
      // can run past the page's end (every item is checked against the bytes present).
      ['items of a leaf', (img, l) => view(img, l.leaves[0]!).setUint32(PAGE_FIELD.count, 0xffff_ffff, true), /catalog leaf 0 at block \d+ item 2 \(relation 0\/0\/0 fork 0\): items are out of order or duplicated/],
      ['items of a leaf, to the page end', (img, l) => {
        // One item that fills the page with extents, then a count of 2: the second item would
        // start past the page's end.
        view(img, l.leaves[0]!).setUint32(PAGE_FIELD.count, 2, true);
        view(img, l.leaves[0]!).setUint32(PAGE_HEADER_BYTES + ITEM_FIELD.extentCount, (SMALL_BS - PAGE_HEADER_BYTES - 32) / 8, true);
      }, /catalog leaf 0 at block \d+ item 1 runs past the page's end/],
    ];
    for (const [name, damage, pattern] of cases) {
      const path = await volumeAt(await tempDir());
      await damageCatalog(path, damage);
      await expectRefusedAndFound(path, pattern, 'catalog').catch((err: unknown) => {
        throw new Error(`${name}: ${String(err)}`);
      });
    }
    // The superblock's counts: page counts beyond the volume make the slot invalid before any
    // page is read; a fork count that disagrees with the catalog is caught after it is read.
    for (const [field, pattern] of [
      [SB_FIELD.indexPages, /catalog of 4294967295 index and \d+ leaf pages does not fit a volume of 256 blocks/],
      [SB_FIELD.leafPages, /catalog of \d+ index and 4294967295 leaf pages does not fit a volume of 256 blocks/],
    ] as const) {
      const path = await volumeAt(await tempDir());
      for (const s of [0, 1]) await patchSlot(path, s, (v) => v.setUint32(field, 0xffff_ffff, true));
      await expectRefused(path, pattern);
    }
    const forks = await volumeAt(await tempDir());
    await damageCatalog(forks, (img, l) => new DataView(img.buffer, l.sb.slot * SMALL_BS, SUPERBLOCK_BYTES).setUint32(SB_FIELD.forkCount, 0xffff_ffff, true));
    await expectRefusedAndFound(forks, /catalog holds 2 forks, its superblock records 4294967295/, 'catalog');

    const above53 = await volumeAt(await tempDir());
    for (const s of [0, 1]) await patchSlot(above53, s, (v) => v.setBigUint64(SB_FIELD.volumeSize, 1n << 60n, true));
    await expectRefused(above53, /2\^53/);
  });

  it('a fork whose extents do not hold exactly nblocks blocks (F4: no spare capacity, no missing block)', async () => {
    for (const [nblocks, pattern] of [
      [1000, /relation 1663\/5\/1 fork main: its extents hold 10 blocks but nblocks is 1000/],
      [5, /relation 1663\/5\/1 fork main: its extents hold 10 blocks but nblocks is 5/],
    ] as const) {
      const path = await volumeAt(await tempDir());
      await damageCatalog(path, (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.items[0]!.nblocks = nblocks)));
      await expectRefusedAndFound(path, pattern, 'catalog');
    }
  });

  it('a fork cut into several items: contiguous items open (and read), any gap, overlap, wrong start or disagreement is refused', async () => {
    /** Fork 1's 10 blocks as two items, blocks 0-3 and 4-9 (an extent cut where needed), then `tweak`. */
    const split = (tweak: (items: CatalogItem[]) => void) => (img: Uint8Array, l: CatalogLayout) =>
      rewriteLeaf(img, l, 0, (p) => {
        const it = p.items[0]!;
        const head: Extent[] = [];
        const tail: Extent[] = [];
        let at = 0;
        for (const e of it.extents) {
          const cut = Math.max(0, Math.min(e.lengthBlocks, 4 - at));
          if (cut > 0) head.push({ startBlock: e.startBlock, lengthBlocks: cut });
          if (cut < e.lengthBlocks) tail.push({ startBlock: e.startBlock + cut, lengthBlocks: e.lengthBlocks - cut });
          at += e.lengthBlocks;
        }
        const second: CatalogItem = { ...it, firstBlock: 4, extents: tail };
        it.extents = head;
        tweak([it, second]);
        p.items.splice(1, 0, second);
      });
    const ok = await volumeAt(await tempDir());
    await damageCatalog(ok, split(() => {}));
    expect(await checkVolume(ok, { checkPages: true })).toEqual([]);
    const vol = await Volume.open({ io: new RealIO(), path: ok, readOnly: true });
    const page = new Uint8Array(SMALL_BS);
    for (let b = 0; b < 10; b++) {
      await vol.read(rel(1), 0, b, page);
      expect(Buffer.compare(page, makePage(rel(1), 0, b))).toBe(0);
    }
    await vol.close();

    const cases: [string, Parameters<typeof split>[0], RegExp][] = [
      ['gap', (items) => void (items[1]!.firstBlock = 5), /relation 1663\/5\/1 fork main: an item starts at block 5, the previous ones end at 4/],
      ['overlap', (items) => void (items[1]!.firstBlock = 3), /an item starts at block 3, the previous ones end at 4/],
      ['first not at 0', (items) => {
        items[0]!.firstBlock = 1;
        items[1]!.firstBlock = 5;
      }, /relation 1663\/5\/1 fork main: its first item starts at block 1, not 0/],
      ['nblocks disagree', (items) => void (items[1]!.nblocks = 11), /relation 1663\/5\/1 fork main: items disagree on nblocks \(10, 11\)/],
      ['an item without extents', (items) => {
        items[1]!.extents = [];
      }, /relation 1663\/5\/1 fork main: an item of a fork with 10 blocks holds no extents/],
    ];
    for (const [name, tweak, pattern] of cases) {
      const path = await volumeAt(await tempDir());
      await damageCatalog(path, (img, l) => {
        split(tweak)(img, l);
        // The leaf's first item is fork 1's: its index entry records the same key, so the
        // leaf is read and the items reach the F4 check.
        view(img, l.index[0]!.block).setUint32(PAGE_HEADER_BYTES + ENTRY_FIELD.firstBlock, decodeLeafPage(blockOf(img, l.leaves[0]!), path, 'leaf', l.sb.generation).items[0]!.firstBlock, true);
      });
      await expectRefusedAndFound(path, pattern, 'catalog').catch((err: unknown) => {
        throw new Error(`${name}: ${String(err)}`);
      });
    }
  });

  it('a leaf or index page whose generation is newer than its superblock', async () => {
    const leaf = await volumeAt(await tempDir());
    await damageCatalog(leaf, (img, l) => rewriteLeaf(img, l, 0, (p) => void (p.generation = l.sb.generation + 1)));
    await expectRefusedAndFound(leaf, /catalog leaf 0 at block \d+ has generation (\d+), newer than its superblock's \d+/, 'catalog');
    const index = await volumeAt(await tempDir());
    await damageCatalog(index, (img, l) => {
      const page = decodeIndexPage(blockOf(img, l.index[0]!.block), index, 'index', l.sb.generation);
      img.set(encodeIndexPage({ ...page, generation: l.sb.generation + 2 }, SMALL_BS), l.index[0]!.block * SMALL_BS);
    });
    await expectRefusedAndFound(index, /catalog index page 0 at block \d+ has generation \d+, newer than its superblock's \d+/, 'catalog');
  });

  it('an index chain longer or shorter than its superblock records, a page of the wrong kind, a page outside the volume', async () => {
    const setActive = (field: number, value: number) => (img: Uint8Array, l: CatalogLayout) => new DataView(img.buffer, l.sb.slot * SMALL_BS, SUPERBLOCK_BYTES).setUint32(field, value, true);
    const cases: [string, (img: Uint8Array, l: CatalogLayout) => void, RegExp][] = [
      ['longer', setActive(SB_FIELD.indexPages, 1), /catalog index chain is longer than the 1 pages its superblock records/],
      ['shorter', setActive(SB_FIELD.indexPages, 3), /catalog index chain has 2 pages, its superblock records 3/],
      // The first page no longer names the second: the chain ends one page early.
      ['cut', (img, l) => {
        view(img, l.index[0]!.block).setUint32(PAGE_FIELD.nextBlock, 0, true);
        view(img, l.index[0]!.block).setUint32(PAGE_FIELD.nextCrc, 0, true);
        l.index.pop();
      }, /catalog index chain has 1 pages, its superblock records 2/],
      ['leaf count', setActive(SB_FIELD.leafPages, 128), /catalog index names 129 leaf pages, its superblock records 128/],
      // The superblock names a leaf as its index page (with that leaf's CRC).
      ['wrong kind', (img, l) => {
        setActive(SB_FIELD.indexBlock, l.leaves[0]!)(img, l);
        l.index[0]!.block = l.leaves[0]!;
        l.index[0]!.leaves = [];
        l.index.length = 1;
      }, /catalog index page 0 at block \d+ has wrong magic "LAMCATLF" \(expected "LAMCATIX"\)/],
      ['next outside', (img, l) => view(img, l.index[0]!.block).setUint32(PAGE_FIELD.nextBlock, 1, true), /catalog index page 1 at block 1 lies outside the volume/],
      ['leaf outside', (img, l) => {
        view(img, l.index[0]!.block).setUint32(PAGE_HEADER_BYTES + ENTRY_FIELD.block, 1 << 30, true);
        l.index[0]!.leaves[0] = l.leaves[1]!; // the CRC recorded is any page's: the block is refused first
      }, /catalog leaf 0 at block 1073741824 lies outside the volume/],
    ];
    for (const [name, damage, pattern] of cases) {
      const path = await wideVolumeAt(await tempDir());
      await damageCatalog(path, damage);
      await expectRefusedAndFound(path, pattern, 'catalog').catch((err: unknown) => {
        throw new Error(`${name}: ${String(err)}`);
      });
    }
  });

  it('generations in the wrong slot: both (refused), or one (the other opens, check names it)', async () => {
    const swapped = await volumeAt(await tempDir());
    await patchSlot(swapped, 0, (v) => v.setBigUint64(SB_FIELD.generation, 7n, true));
    await patchSlot(swapped, 1, (v) => v.setBigUint64(SB_FIELD.generation, 8n, true));
    await expectRefused(swapped, /no valid superblock \(slot 0: generation 7 does not belong in slot 0 .*slot 1: generation 8 does not belong in slot 1/);

    const equal = await volumeAt(await tempDir());
    for (const s of [0, 1]) await patchSlot(equal, s, (v) => v.setBigUint64(SB_FIELD.generation, 7n, true));
    const before = await hashFile(equal);
    const findings = await checkVolume(equal);
    expect(findings.find((f) => f.part === 'superblock slot 0')?.message).toMatch(/does not belong in slot 0/);
    const vol = await Volume.open({ io: new RealIO(), path: equal, readOnly: true });
    expect(vol.info()).toMatchObject({ activeSlot: 1, generation: 7 });
    await vol.close();
    expect(await hashFile(equal)).toBe(before);
  });

  it('one damaged slot: the volume opens from the other and checkVolume reports the damaged slot', async () => {
    for (const damage of ['active', 'older'] as const) {
      const dir = await tempDir();
      const path = await volumeAt(dir);
      const buf = new Uint8Array(await readFile(path));
      const active = activeSuperblock(buf).slot;
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
    const path = await volumeAt(await tempDir());
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
