/**
 * Goal: the on-disk format 2 of volume/format.ts byte by byte, and the two costs the catalog tree
 * was chosen for (volume/catalog.ts header): metadata written per checkpoint in proportion to
 * what changed, and an open that reads each catalog page once.
 *  - Round trips: superblock, index page, leaf page, each checked against the byte offsets of
 *    the tables in volume/README.md (helpers/volume.ts SB_FIELD, PAGE_FIELD, ENTRY_FIELD,
 *    ITEM_FIELD); a page's limits (a full index page, an item with itemExtentsMax extents alone
 *    filling a leaf); `forkItems` cutting a long map into items and `joinItems` joining them,
 *    refusing every F4 violation with VOLUME_CORRUPT naming the fork.
 *  - Metadata in proportion to change: FORKS forks of one block each (10,000; 100,000 with
 *    LAMSTORE_FIGURE=1), a checkpoint, then one page of one fork rewritten and a checkpoint:
 *    that checkpoint writes one leaf and the index chain, at most 64 KiB of catalog pages,
 *    counted twice: Volume.stats.catalogPagesWritten and every byte the FileIO was asked to
 *    write outside the data page and the superblock.
 *  - Open: reopening that volume reads one superblock per slot and every catalog page exactly
 *    once (index pages + leaf pages), counted on the FileIO; never a wall-clock assertion.
 * Method: the Volume API directly (no engine, a stub host) over SparseIO (helpers/io-doubles.ts:
 * zero pages are not stored, so the 8 GiB volume 100,000 forks need costs a few MB; each fork
 * reserves an 8-block first extent while the volume is open) wrapped in a FileIO that logs every
 * read and write. The open figure copies the image into a sparse real file in a temp dir and
 * opens it with RealIO; the time is printed (median of 5 opens, page cache warm), not asserted.
 * Figure line: `LAMSTORE_FIGURE=1 npx vitest run test/volume-format.test.ts`.
 */
import { describe, expect, it } from 'vitest';
import { open as fsOpen } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ErrorCode, LamstoreError, RealIO, crc32c } from '../engine/index.js';
import type { FileHandle, FileIO } from '../engine/index.js';
import { ForwardingIO } from '../engine/testing.js';
import { Volume, examineVolume } from '../volume/index.js';
import {
  EXTENT_BYTES,
  FORMAT_VERSION,
  INDEX_ENTRY_BYTES,
  ITEM_HEADER_BYTES,
  PAGE_HEADER_BYTES,
  SUPERBLOCK_BYTES,
  decodeIndexPage,
  decodeLeafPage,
  decodeSuperblock,
  encodeIndexPage,
  encodeLeafPage,
  encodeSuperblock,
  forkItems,
  indexEntriesMax,
  itemExtentsMax,
  joinItems,
} from '../volume/format.js';
import type { CatalogFork, CatalogItem, IndexEntry, Superblock } from '../volume/format.js';
import { ENTRY_FIELD, ITEM_FIELD, PAGE_FIELD, SB_FIELD, STUB_HOST, makePage, rel } from './helpers/volume.js';
import { SparseIO } from './helpers/io-doubles.js';
import { tempDir } from './helpers/index.js';

const FIGURE = process.env.LAMSTORE_FIGURE !== undefined && process.env.LAMSTORE_FIGURE !== '';
/** Forks of the proportion and open tests: 100,000 for the figure in volume/README.md. */
const FORKS = FIGURE ? 100_000 : 10_000;
const BS = 8192;
const CATALOG_BYTES_PER_SMALL_CHECKPOINT_MAX = 64 * 1024;

function corruptMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LamstoreError);
    expect((err as LamstoreError).code).toBe(ErrorCode.VOLUME_CORRUPT);
    return (err as Error).message;
  }
  throw new Error('expected VOLUME_CORRUPT');
}

const sb: Superblock = {
  slot: 1,
  blockSizeBytes: 4096,
  volumeSizeBytes: 1024 ** 4,
  generation: Number.MAX_SAFE_INTEGER, // odd: slot 1
  indexBlock: 2 ** 28 - 1,
  indexCrc: 0xdead_beef,
  indexPages: 3,
  leafPages: 700,
  forkCount: 123_456,
  timeMs: 1_767_225_600_123,
};

describe('format 2 round trips', () => {
  it('a superblock: every field at the offset of the README table, reserved bytes zero, its CRC last', () => {
    const bytes = encodeSuperblock(sb);
    expect(bytes.length).toBe(SUPERBLOCK_BYTES);
    const back = decodeSuperblock(bytes, 1);
    expect(back).toEqual({ ok: true, sb });
    const v = new DataView(bytes.buffer);
    expect(Buffer.from(bytes.subarray(SB_FIELD.magic, 8)).toString('latin1')).toBe('LAMSTORE');
    expect(v.getUint32(SB_FIELD.version, true)).toBe(FORMAT_VERSION);
    expect(FORMAT_VERSION).toBe(2);
    expect(v.getUint32(SB_FIELD.slot, true)).toBe(1);
    expect(v.getUint32(SB_FIELD.blockSize, true)).toBe(4096);
    expect(v.getUint32(20, true)).toBe(0);
    expect(v.getBigUint64(SB_FIELD.volumeSize, true)).toBe(BigInt(1024 ** 4));
    expect(v.getBigUint64(SB_FIELD.generation, true)).toBe(BigInt(Number.MAX_SAFE_INTEGER));
    expect(v.getBigUint64(SB_FIELD.indexBlock, true)).toBe(BigInt(2 ** 28 - 1));
    expect(v.getUint32(SB_FIELD.indexPages, true)).toBe(3);
    expect(v.getUint32(SB_FIELD.indexCrc, true)).toBe(0xdead_beef);
    expect(v.getUint32(SB_FIELD.leafPages, true)).toBe(700);
    expect(v.getUint32(SB_FIELD.forkCount, true)).toBe(123_456);
    expect(v.getBigUint64(SB_FIELD.timeMs, true)).toBe(1_767_225_600_123n);
    expect(bytes.subarray(72, SB_FIELD.crc).every((b) => b === 0)).toBe(true);
    expect(v.getUint32(SB_FIELD.crc, true)).toBe(crc32c(bytes.subarray(0, SB_FIELD.crc)));
    // Where a superblock is judged: in the other slot, with a reserved byte set, with page
    // counts the volume cannot hold (CRC recomputed each time, so the check itself is reached).
    expect(decodeSuperblock(bytes, 0)).toEqual({ ok: false, reason: 'written for slot 1, found in slot 0' });
    const forged = (patch: (v: DataView) => void) => {
      const b = bytes.slice();
      const w = new DataView(b.buffer);
      patch(w);
      w.setUint32(SB_FIELD.crc, crc32c(b.subarray(0, SB_FIELD.crc)), true);
      return decodeSuperblock(b, 1);
    };
    expect(forged((w) => w.setUint8(100, 1))).toEqual({ ok: false, reason: 'reserved byte 100 is not zero' });
    expect(forged((w) => w.setUint32(SB_FIELD.indexPages, 0, true))).toMatchObject({ ok: false, reason: expect.stringMatching(/catalog of 0 index and 700 leaf pages does not fit/) });
    expect(forged((w) => w.setBigUint64(SB_FIELD.indexBlock, 1n, true))).toMatchObject({ ok: false, reason: expect.stringMatching(/catalog index page at block 1 is outside 2\.\./) });
    expect(forged((w) => w.setUint32(SB_FIELD.version, 1, true))).toMatchObject({ ok: false, reason: expect.stringMatching(/^format version 1 /) });
  });

  it('an index page: header and 32-byte entries at the README offsets, a full page, the next page named with its CRC', () => {
    const entries: IndexEntry[] = Array.from({ length: indexEntriesMax(4096) }, (_, i) => ({ spcOid: 1663, dbOid: 5, relNumber: 1000 + i, fork: i % 4, firstBlock: i * 3, block: 10 + i, crc: (0x9e37_79b9 * (i + 1)) >>> 0 }));
    expect(entries.length).toBe((4096 - PAGE_HEADER_BYTES) / INDEX_ENTRY_BYTES);
    const next = { block: 4242, crc: 0xfeed_f00d };
    const bytes = encodeIndexPage({ generation: 77, entries, next }, 4096);
    expect(bytes.length).toBe(4096);
    expect(decodeIndexPage(bytes, '/v', 'index', 77)).toEqual({ generation: 77, entries, next });
    const v = new DataView(bytes.buffer);
    expect(Buffer.from(bytes.subarray(PAGE_FIELD.magic, 8)).toString('latin1')).toBe('LAMCATIX');
    expect(v.getUint32(PAGE_FIELD.version, true)).toBe(2);
    expect(v.getUint32(PAGE_FIELD.count, true)).toBe(entries.length);
    expect(v.getBigUint64(PAGE_FIELD.generation, true)).toBe(77n);
    expect(v.getUint32(PAGE_FIELD.nextBlock, true)).toBe(4242);
    expect(v.getUint32(PAGE_FIELD.nextCrc, true)).toBe(0xfeed_f00d);
    const e = entries[5]!;
    const at = PAGE_HEADER_BYTES + 5 * INDEX_ENTRY_BYTES;
    expect([v.getUint32(at + ENTRY_FIELD.spcOid, true), v.getUint32(at + ENTRY_FIELD.dbOid, true), v.getUint32(at + ENTRY_FIELD.relNumber, true), v.getUint8(at + ENTRY_FIELD.fork)]).toEqual([1663, 5, e.relNumber, e.fork]);
    expect([v.getUint32(at + ENTRY_FIELD.firstBlock, true), v.getUint32(at + ENTRY_FIELD.block, true), v.getUint32(at + ENTRY_FIELD.crc, true)]).toEqual([e.firstBlock, e.block, e.crc]);
    expect(bytes.subarray(at + 13, at + 16).every((b) => b === 0) && bytes.subarray(at + 28, at + 32).every((b) => b === 0)).toBe(true);
    // The last page of a chain names no next page: block and CRC zero.
    const last = encodeIndexPage({ generation: 3, entries: [], next: null }, 4096);
    expect(last.subarray(24, 32).every((b) => b === 0)).toBe(true);
    expect(decodeIndexPage(last, '/v', 'index', 3)).toEqual({ generation: 3, entries: [], next: null });
    // Refused: newer than the superblock, a next CRC without a next page, one entry too many,
    // a reserved byte, a leaf read as an index page.
    expect(corruptMessage(() => decodeIndexPage(bytes, '/v', 'catalog index page 0', 76))).toMatch(/catalog index page 0 has generation 77, newer than its superblock's 76/);
    const stray = last.slice();
    new DataView(stray.buffer).setUint32(PAGE_FIELD.nextCrc, 1, true);
    expect(corruptMessage(() => decodeIndexPage(stray, '/v', 'ix', 3))).toMatch(/ix names no next page but carries a next CRC/);
    const over = bytes.slice();
    new DataView(over.buffer).setUint32(PAGE_FIELD.count, entries.length + 1, true);
    expect(corruptMessage(() => decodeIndexPage(over, '/v', 'ix', 77))).toMatch(/ix claims 128 entries, more than a page holds/);
    const reserved = bytes.slice();
    reserved[at + 30] = 1;
    expect(corruptMessage(() => decodeIndexPage(reserved, '/v', 'ix', 77))).toMatch(/ix entry 5: reserved bytes are not zero/);
    const leaf = encodeLeafPage({ generation: 1, items: [{ spcOid: 1, dbOid: 1, relNumber: 1, fork: 0, nblocks: 0, firstBlock: 0, extents: [] }] }, 4096);
    expect(corruptMessage(() => decodeIndexPage(leaf, '/v', 'ix', 1))).toMatch(/ix has wrong magic "LAMCATLF" \(expected "LAMCATIX"\)/);
    expect(() => encodeIndexPage({ generation: 1, entries: [...entries, entries[0]!], next: null }, 4096)).toThrow(/index entries fit the page/);
  });

  it('a leaf page: items (32-byte header, 8 bytes per extent) at the README offsets; one item of itemExtentsMax extents fills a leaf exactly', () => {
    const items: CatalogItem[] = [
      { spcOid: 1663, dbOid: 5, relNumber: 1, fork: 0, nblocks: 0, firstBlock: 0, extents: [] },
      { spcOid: 1663, dbOid: 5, relNumber: 1, fork: 1, nblocks: 11, firstBlock: 0, extents: [{ startBlock: 40, lengthBlocks: 3 }, { startBlock: 90, lengthBlocks: 8 }] },
      { spcOid: 1663, dbOid: 5, relNumber: 2, fork: 3, nblocks: 0xffff_fffe, firstBlock: 0xffff_0000, extents: [{ startBlock: 0xffff_fff0, lengthBlocks: 7 }] },
    ];
    const bytes = encodeLeafPage({ generation: 9, items }, 4096);
    expect(decodeLeafPage(bytes, '/v', 'leaf', 9)).toEqual({ generation: 9, items });
    const v = new DataView(bytes.buffer);
    expect(Buffer.from(bytes.subarray(0, 8)).toString('latin1')).toBe('LAMCATLF');
    expect(v.getUint32(PAGE_FIELD.count, true)).toBe(3);
    expect(bytes.subarray(PAGE_FIELD.nextBlock, 32).every((b) => b === 0)).toBe(true);
    const at = PAGE_HEADER_BYTES + ITEM_HEADER_BYTES; // item 1
    expect([v.getUint32(at + ITEM_FIELD.relNumber, true), v.getUint8(at + ITEM_FIELD.fork), v.getUint32(at + ITEM_FIELD.nblocks, true), v.getUint32(at + ITEM_FIELD.firstBlock, true), v.getUint32(at + ITEM_FIELD.extentCount, true)]).toEqual([1, 1, 11, 0, 2]);
    expect([v.getUint32(at + ITEM_HEADER_BYTES, true), v.getUint32(at + ITEM_HEADER_BYTES + 4, true), v.getUint32(at + ITEM_HEADER_BYTES + EXTENT_BYTES, true)]).toEqual([40, 3, 90]);
    // One item with itemExtentsMax extents is the largest a leaf holds, to the last byte.
    const max = itemExtentsMax(4096);
    expect(PAGE_HEADER_BYTES + ITEM_HEADER_BYTES + max * EXTENT_BYTES).toBe(4096);
    const big: CatalogItem = { spcOid: 1, dbOid: 1, relNumber: 1, fork: 0, nblocks: max, firstBlock: 0, extents: Array.from({ length: max }, (_, i) => ({ startBlock: 2 + 2 * i, lengthBlocks: 1 })) };
    expect(decodeLeafPage(encodeLeafPage({ generation: 1, items: [big] }, 4096), '/v', 'leaf', 1).items).toEqual([big]);
    expect(() => encodeLeafPage({ generation: 1, items: [{ ...big, extents: [...big.extents, { startBlock: 5000, lengthBlocks: 1 }] }] }, 4096)).toThrow(/leaf items fit the page/);
    expect(() => encodeLeafPage({ generation: 1, items: [items[1]!, items[0]!] }, 4096)).toThrow(/strictly increasing/);
    // An empty leaf is refused (a leaf exists only to hold items).
    const empty = bytes.slice();
    new DataView(empty.buffer).setUint32(PAGE_FIELD.count, 0, true);
    expect(corruptMessage(() => decodeLeafPage(empty, '/v', 'leaf', 9))).toMatch(/leaf holds no items/);
  });

  it('forkItems cuts a map longer than itemExtentsMax into items that each fit a leaf; joinItems joins them back (F4)', () => {
    const max = itemExtentsMax(4096);
    const extents = Array.from({ length: 2 * max + 3 }, (_, i) => ({ startBlock: 10 + 3 * i, lengthBlocks: 1 + (i % 2) }));
    const nblocks = extents.reduce((n, e) => n + e.lengthBlocks, 0);
    const fork: CatalogFork = { spcOid: 1663, dbOid: 5, relNumber: 7, fork: 2, nblocks, extents };
    const items = forkItems(fork, max);
    expect(items.map((it) => it.extents.length)).toEqual([max, max, 3]);
    const starts = [0, extents.slice(0, max).reduce((n, e) => n + e.lengthBlocks, 0), extents.slice(0, 2 * max).reduce((n, e) => n + e.lengthBlocks, 0)];
    expect(items.map((it) => it.firstBlock)).toEqual(starts);
    expect(items.every((it) => it.nblocks === nblocks && it.relNumber === 7 && it.fork === 2)).toBe(true);
    // Each item alone fits a leaf; all three in one leaf do not.
    for (const it of items) encodeLeafPage({ generation: 1, items: [it] }, 4096);
    expect(() => encodeLeafPage({ generation: 1, items }, 4096)).toThrow(/fit/);
    const other: CatalogFork = { spcOid: 1663, dbOid: 5, relNumber: 8, fork: 0, nblocks: 0, extents: [] };
    expect(forkItems(other, max)).toEqual([{ ...other, firstBlock: 0, extents: [] }]);
    const exact: CatalogFork = { ...fork, relNumber: 9, extents: extents.slice(0, max), nblocks: starts[1]! };
    expect(forkItems(exact, max)).toHaveLength(1);
    expect(joinItems([...items, ...forkItems(other, max), ...forkItems(exact, max)], '/v')).toEqual([fork, other, exact]);
  });

  it('joinItems refuses every F4 violation with VOLUME_CORRUPT naming the fork', () => {
    const max = 2;
    const fork: CatalogFork = {
      spcOid: 1663,
      dbOid: 5,
      relNumber: 3,
      fork: 0,
      nblocks: 10,
      extents: [
        { startBlock: 10, lengthBlocks: 2 },
        { startBlock: 20, lengthBlocks: 3 },
        { startBlock: 30, lengthBlocks: 5 },
      ],
    };
    const good = forkItems(fork, max); // items at blocks 0 and 5
    expect(good.map((it) => it.firstBlock)).toEqual([0, 5]);
    expect(joinItems(good, '/v')).toEqual([fork]);
    const name = 'relation 1663/5/3 fork main';
    const cases: [string, CatalogItem[], RegExp][] = [
      ['first item not at block 0', [{ ...good[0]!, firstBlock: 1 }, { ...good[1]!, firstBlock: 6 }], /its first item starts at block 1, not 0/],
      ['a gap between items', [good[0]!, { ...good[1]!, firstBlock: 6 }], /an item starts at block 6, the previous ones end at 5/],
      ['items overlapping', [good[0]!, { ...good[1]!, firstBlock: 4 }], /an item starts at block 4, the previous ones end at 5/],
      ['the same item twice', [good[0]!, good[0]!, good[1]!], /an item starts at block 0, the previous ones end at 5/],
      ['items disagreeing on nblocks', [good[0]!, { ...good[1]!, nblocks: 9 }], /items disagree on nblocks \(10, 9\)/],
      ['spare capacity recorded', [{ ...good[0]!, nblocks: 8 }, { ...good[1]!, nblocks: 8 }], /its extents hold 10 blocks but nblocks is 8/],
      ['a block missing', [{ ...good[0]!, nblocks: 12 }, { ...good[1]!, nblocks: 12 }], /its extents hold 10 blocks but nblocks is 12/],
      ['the last item missing', [good[0]!], /its extents hold 5 blocks but nblocks is 10/],
      ['an item without extents', [good[0]!, { ...good[1]!, extents: [] }], /an item of a fork with 10 blocks holds no extents/],
      ['an empty fork with an extent', [{ ...good[0]!, nblocks: 0, extents: [{ startBlock: 4, lengthBlocks: 1 }] }], /its extents hold 1 blocks but nblocks is 0/],
    ];
    for (const [what, items, pattern] of cases) {
      const message = corruptMessage(() => joinItems(items, '/v/lam.vol'));
      expect(message, what).toContain(`/v/lam.vol: volume is corrupt: ${name}`);
      expect(message, what).toMatch(pattern);
    }
    // Forks out of order: a later fork's items before an earlier one's.
    const before: CatalogFork = { ...fork, relNumber: 2, nblocks: 0, extents: [] };
    expect(corruptMessage(() => joinItems([...good, ...forkItems(before, max)], '/v'))).toMatch(/relation 1663\/5\/2 fork main: items are out of order/);
  });
});

/** Logs every read and write the volume asks of its FileIO while `logging` is set. */
class LoggingIO extends ForwardingIO {
  logging = false;
  reads: { offset: number; length: number }[] = [];
  writes: { offset: number; length: number }[] = [];

  override async pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    if (this.logging) this.reads.push({ offset: offsetBytes, length: buffer.length });
    return this.inner.pread(h, buffer, offsetBytes);
  }
  override async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    if (this.logging) this.writes.push({ offset: offsetBytes, length: buffer.length });
    return this.inner.pwrite(h, buffer, offsetBytes);
  }
  override async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    if (this.logging) this.writes.push({ offset: offsetBytes, length: buffers.reduce((n, b) => n + b.length, 0) });
    return this.inner.pwritev(h, buffers, offsetBytes);
  }
  clear(): void {
    this.reads = [];
    this.writes = [];
  }
}

/** A checkpoint as the engine drives the volume: the checkpoint's page writes, then the sync. */
async function checkpoint(vol: Volume, pages: { relNumber: number; page: Uint8Array }[] = []): Promise<void> {
  vol.checkpointBegin();
  if (pages.length > 0) await vol.writeBuffers(pages.map((p) => ({ rel: rel(p.relNumber), fork: 0, blockNum: 0, page: p.page })), STUB_HOST, 'checkpoint');
  await vol.syncNow();
  await vol.checkpointEnd(true);
}

/** Copy SparseIO's image into a sparse real file (only the units it stores are written). */
async function toRealFile(sparse: SparseIO, path: string): Promise<void> {
  const fh = await fsOpen(path, 'wx');
  try {
    await fh.truncate(sparse.sizeBytes);
    for (const [u, bytes] of sparse.units) await fh.write(bytes, 0, bytes.length, u * sparse.unitBytes);
  } finally {
    await fh.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe(`a volume of ${FORKS} forks`, () => {
  it('metadata in proportion to change: one page rewritten costs one leaf and the index chain (<= 64 KiB); reopening reads each catalog page once', { timeout: 600_000 }, async () => {
    const started = performance.now();
    // Each fork's first extent reserves 8 blocks while the volume is open: room for all of them,
    // the catalog and the checkpoint's relocations.
    const sizeBytes = Math.ceil((FORKS * 9 + 10_000) / 128) * 128 * BS;
    const sparse = new SparseIO();
    const io = new LoggingIO(sparse);
    const path = '/lam.vol';
    const vol = await Volume.open({ io, path, create: { sizeBytes, blockSize: BS }, blockSize: BS });
    const zero = new Uint8Array(BS);
    for (let r = 1; r <= FORKS; r++) {
      await vol.create(rel(r), 0, STUB_HOST);
      await vol.extend(rel(r), 0, 0, zero, STUB_HOST);
    }
    const built = performance.now();
    io.logging = true;
    await checkpoint(vol);
    io.logging = false;
    const first = { pages: vol.stats.catalogPagesWritten, info: vol.info() };
    const { indexPages, leafPages } = first.info.catalog;
    // About 204 one-extent items per 8 KiB leaf, 255 entries per index page.
    expect(leafPages).toBe(Math.ceil(FORKS / Math.floor((BS - PAGE_HEADER_BYTES) / (ITEM_HEADER_BYTES + EXTENT_BYTES))));
    expect(indexPages).toBe(Math.ceil(leafPages / indexEntriesMax(BS)));
    expect(first.pages).toBe(leafPages + indexPages);
    vol.checkInvariants();

    // One page of one fork in the middle, rewritten: copy-on-write moves it to a new block.
    const target = Math.floor(FORKS / 2);
    const page = makePage(rel(target), 0, 0, 2, BS);
    const oldBlock = vol.physicalBlock(rel(target), 0, 0);
    io.clear();
    io.logging = true;
    await checkpoint(vol, [{ relNumber: target, page }]);
    io.logging = false;
    const newBlock = vol.physicalBlock(rel(target), 0, 0);
    expect(newBlock).not.toBe(oldBlock);
    const catalogPagesWritten = vol.stats.catalogPagesWritten - first.pages;
    const data = io.writes.filter((w) => w.offset === newBlock * BS);
    const superblock = io.writes.filter((w) => w.offset < 2 * BS);
    const catalog = io.writes.filter((w) => w.offset !== newBlock * BS && w.offset >= 2 * BS);
    const catalogBytes = catalog.reduce((n, w) => n + w.length, 0);
    expect(data.map((w) => w.length)).toEqual([BS]);
    expect(superblock.map((w) => w.length)).toEqual([SUPERBLOCK_BYTES]);
    // One leaf (the fork's) and every index page, nothing else.
    expect(catalogPagesWritten).toBe(1 + indexPages);
    expect(catalogBytes).toBe(catalogPagesWritten * BS);
    expect(catalogBytes).toBeLessThanOrEqual(CATALOG_BYTES_PER_SMALL_CHECKPOINT_MAX);
    // A checkpoint with nothing changed writes nothing at all.
    io.clear();
    io.logging = true;
    await checkpoint(vol);
    io.logging = false;
    expect(io.writes).toEqual([]);
    // A metadata-only change (a new fork, no page): its leaf (two if the leaf splits) and the
    // index chain.
    const before = vol.stats.catalogPagesWritten;
    await vol.create(rel(FORKS + 1), 0, STUB_HOST);
    await checkpoint(vol);
    expect(vol.stats.catalogPagesWritten - before).toBeGreaterThanOrEqual(1 + indexPages);
    expect((vol.stats.catalogPagesWritten - before) * BS).toBeLessThanOrEqual(CATALOG_BYTES_PER_SMALL_CHECKPOINT_MAX);
    await vol.unlink(rel(FORKS + 1), 0, STUB_HOST);
    await checkpoint(vol);
    vol.checkInvariants();
    const info = vol.info();
    await vol.close();

    // Reopen: one read per superblock slot, then every catalog page once, nothing else.
    io.clear();
    io.logging = true;
    const again = await Volume.open({ io, path, readOnly: true });
    io.logging = false;
    const catalogBlocks = new Set(info.catalog.pageBlocks);
    expect(catalogBlocks.size).toBe(indexPages + leafPages);
    expect(io.reads.filter((r) => r.length === SUPERBLOCK_BYTES).map((r) => r.offset)).toEqual([0, BS]);
    const pageReads = io.reads.filter((r) => r.length !== SUPERBLOCK_BYTES);
    expect(pageReads.every((r) => r.length === BS)).toBe(true);
    expect(pageReads.map((r) => r.offset / BS).sort((a, b) => a - b)).toEqual([...catalogBlocks].sort((a, b) => a - b));
    expect(again.info().forks.length).toBe(FORKS);
    const back = new Uint8Array(BS);
    await again.read(rel(target), 0, 0, back);
    expect(Buffer.compare(back, page)).toBe(0);
    again.checkInvariants();
    await again.close();

    // The open on a real file: the same image in a sparse file, opened with RealIO.
    const dir = await tempDir();
    const real = join(dir, 'lam.vol');
    await toRealFile(sparse, real);
    const times: number[] = [];
    const examineTimes: number[] = [];
    let realPageReads = 0;
    for (let i = 0; i < 5; i++) {
      const counting = new LoggingIO(new RealIO() as FileIO);
      counting.logging = true;
      const t0 = performance.now();
      const v = await Volume.open({ io: counting, path: real, readOnly: true });
      times.push(performance.now() - t0);
      realPageReads = counting.reads.filter((r) => r.length === BS).length;
      expect(v.info().forks.length).toBe(FORKS);
      await v.close();
      // Of that: reading and checking the superblocks and every page (examine.ts), without
      // building the volume's in-memory maps and free space.
      const rio = new RealIO();
      const h = await rio.open(real, { readOnly: true });
      const t1 = performance.now();
      const ex = await examineVolume(rio, h, real);
      examineTimes.push(performance.now() - t1);
      await rio.close(h);
      expect(ex.fatal).toBeUndefined();
    }
    expect(realPageReads).toBe(indexPages + leafPages);
    console.log(
      `volume-format-figure: forks=${FORKS} block=${BS} leaves=${leafPages} index-pages=${indexPages} ` +
        `first-checkpoint-catalog-pages=${first.pages} (${((first.pages * BS) / 1024).toFixed(0)} KiB) ` +
        `one-page-checkpoint-catalog-pages=${catalogPagesWritten} (${catalogBytes / 1024} KiB) ` +
        `open-pages-read=${realPageReads} open-ms-median-of-5=${median(times).toFixed(1)} of-which-examine-ms=${median(examineTimes).toFixed(1)} (real file, page cache warm) ` +
        `build-s=${((built - started) / 1000).toFixed(1)} total-s=${((performance.now() - started) / 1000).toFixed(1)}`,
    );
  });
});
