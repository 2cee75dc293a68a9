/**
 * The volume's on-disk format, version 2 (copy-on-write): superblocks and catalog pages
 * (DESIGN.md section 5; byte tables in volume/README.md). Pure functions: encode, decode,
 * validate. No I/O here.
 *
 * On-disk contract (all integers little-endian, all checksums CRC-32C):
 *  F1 Blocks 0 and 1 are the two superblock slots. Generation g is always written to slot g % 2,
 *     so a checkpoint always overwrites the OLDER slot and the newer one stays intact while it
 *     is written (LMDB's "transaction N writes meta page N % 2"). A slot holding a generation of
 *     the wrong parity is invalid: that catches a superblock copied into the wrong place.
 *  F2 A superblock is SUPERBLOCK_BYTES long at the start of its block, with its own CRC in the
 *     last 4 bytes; reserved bytes are zero (checked before trusting the CRC'd content, so a
 *     future format cannot be misread as this one). The rest of the block is ignored.
 *  F3 The catalog is a tree of one-block pages: a chain of index pages (the superblock names
 *     the first) whose entries name the leaf pages in key order; leaves hold the items. Every
 *     page's CRC (over the whole block) is stored in the page or superblock that names it, so a
 *     stale page left at a reused block is caught as surely as a torn one (ZFS's rule: the
 *     parent checksums the child). Opening picks the valid slot with the highest generation;
 *     every page of its catalog must verify or the volume is VOLUME_CORRUPT (no fallback: the
 *     older slot's catalog pages may have been reused).
 *  F4 Items are in strictly increasing (spcOid, dbOid, relNumber, fork, firstBlock) order across
 *     the leaves. A fork is one or more consecutive items: the first has firstBlock 0, each next
 *     one starts where the previous one's extents end, every item repeats the fork's nblocks,
 *     and the extents of all its items hold exactly nblocks blocks (no spare capacity is ever
 *     recorded). A fork with nblocks 0 is one item with no extents.
 *  F5 Every page and every extent a durable catalog references is never written again while it
 *     is durable: new pages and relocated data go to free space (volume.ts V3).
 *  F6 Extents and catalog pages lie inside [METADATA_BLOCKS, volumeBlocks), extents have length
 *     >= 1, and no two of them overlap. Free space is not stored: it is everything else,
 *     rebuilt at open.
 *
 * Every count and length read from disk is checked against the bytes actually present (and the
 * volume size) before anything sized by it is allocated.
 */
import { ErrorCode, LamstoreError, assert, checkOptionKeys, crc32c, describeFork, optionKeys } from '../engine/index.js';

export const SUPERBLOCK_MAGIC = 'LAMSTORE';
export const INDEX_PAGE_MAGIC = 'LAMCATIX';
export const LEAF_PAGE_MAGIC = 'LAMCATLF';
export const FORMAT_VERSION = 2;

/** Superblock slots: blocks 0 and 1 (DESIGN.md section 6). */
export const SLOT_COUNT = 2;
export const METADATA_BLOCKS = 2;
/** Bytes of a superblock covered by its CRC, CRC included. Fits in one 512-byte sector. */
export const SUPERBLOCK_BYTES = 128;
/** Every catalog page (index or leaf) starts with this header. */
export const PAGE_HEADER_BYTES = 32;
export const INDEX_ENTRY_BYTES = 32;
export const ITEM_HEADER_BYTES = 32;
export const EXTENT_BYTES = 8;

export const VOLUME_SIZE_BYTES_MIN = 64 * 1024;
/** 1 TiB: with 4 KiB blocks that is 2^28 blocks, so block offsets fit a uint32 with room. */
export const VOLUME_SIZE_BYTES_MAX = 1024 ** 4;
export const BLOCK_SIZE_BYTES_MIN = 4096;
export const BLOCK_SIZE_BYTES_MAX = 32768;

/** The first extent of a fork (DESIGN.md section 6: at most 8 blocks). */
export const EXTENT_BLOCKS_FIRST = 8;
/**
 * Growth doubles a fork's reserved capacity until one step would exceed this many bytes (then it
 * grows by this much at a time). Capacity beyond nblocks lives in memory only (F4): it keeps a
 * fork's extensions next to each other while the volume is open.
 */
export const EXTENT_BYTES_MAX = 16 * 1024 * 1024;

// F2: the fixed fields end before the CRC; the layout constants agree with each other.
const SB_OFF = {
  magic: 0,
  version: 8,
  slot: 12,
  blockSize: 16,
  reserved1: 20,
  volumeSize: 24,
  generation: 32,
  indexBlock: 40,
  indexPages: 48,
  indexCrc: 52,
  leafPages: 56,
  forkCount: 60,
  timeMs: 64,
  // The snapshot table root (snapshots.ts S1): all zero when the volume has no snapshots.
  snapBlock: 72,
  snapPages: 80,
  snapCrc: 84,
  snapCount: 88,
  reserved2: 92,
  crc: SUPERBLOCK_BYTES - 4,
} as const;
assert(SB_OFF.reserved2 < SB_OFF.crc, 'superblock fields end before its CRC');
assert(SUPERBLOCK_BYTES <= 512, 'a superblock fits in one sector, so it cannot tear internally');
assert(SUPERBLOCK_BYTES <= BLOCK_SIZE_BYTES_MIN, 'a superblock fits in its block');
assert(VOLUME_SIZE_BYTES_MAX / BLOCK_SIZE_BYTES_MIN <= 0xffff_ffff, 'block offsets fit in uint32');

export interface Superblock {
  slot: number;
  blockSizeBytes: number;
  volumeSizeBytes: number;
  generation: number;
  /** The first index page of the catalog, and the CRC of its block. */
  indexBlock: number;
  indexCrc: number;
  indexPages: number;
  leafPages: number;
  forkCount: number;
  /** When the checkpoint that wrote this superblock published it (ms since 1970). */
  timeMs: number;
  /** The snapshot table (snapshots.ts S1); absent when the volume has no snapshots. */
  snapshots?: SnapshotTableRef;
}

/** Where the snapshot table starts, its page count, the first page's CRC and the snapshots in it. */
export interface SnapshotTableRef {
  block: number;
  pages: number;
  crc: number;
  count: number;
}

/** Bytes of one snapshot table entry (volume/README.md "Snapshot table"). */
export const SNAPSHOT_ENTRY_BYTES = 128;
/** Most snapshots a volume holds: each is a catalog read and checked at every open. */
export const SNAPSHOTS_MAX = 1000;

/** Snapshot entries one table page holds. */
export function snapshotEntriesMax(blockSizeBytes: number): number {
  return Math.floor((blockSizeBytes - PAGE_HEADER_BYTES) / SNAPSHOT_ENTRY_BYTES);
}

export interface Extent {
  /** Volume offset of the extent's first block, in blocks. */
  startBlock: number;
  lengthBlocks: number;
}

export interface ForkKey {
  spcOid: number;
  dbOid: number;
  relNumber: number;
  fork: number;
}

export interface CatalogFork extends ForkKey {
  nblocks: number;
  extents: Extent[];
}

/** One leaf item: a stretch of a fork's map starting at fork block `firstBlock` (F4). */
export interface CatalogItem extends CatalogFork {
  firstBlock: number;
}

/** An index entry: the key of a leaf's first item, where the leaf is, and its CRC. */
export interface IndexEntry extends ForkKey {
  firstBlock: number;
  block: number;
  crc: number;
}

/** A reference to a page: its block and the CRC of the whole block. */
export interface PageRef {
  block: number;
  crc: number;
}

export interface IndexPage {
  generation: number;
  entries: IndexEntry[];
  next: PageRef | null;
}

export interface LeafPage {
  generation: number;
  items: CatalogItem[];
}

function corrupt(path: string, what: string): LamstoreError {
  return new LamstoreError(ErrorCode.VOLUME_CORRUPT, `${path}: volume is corrupt: ${what}`, { path });
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export function checkVolumeGeometry(volumeSizeBytes: number, blockSizeBytes: number): string | null {
  if (!Number.isInteger(blockSizeBytes) || blockSizeBytes < BLOCK_SIZE_BYTES_MIN || blockSizeBytes > BLOCK_SIZE_BYTES_MAX || !isPowerOfTwo(blockSizeBytes)) {
    return `block size ${blockSizeBytes} is not a power of two in ${BLOCK_SIZE_BYTES_MIN}..${BLOCK_SIZE_BYTES_MAX}`;
  }
  if (!Number.isSafeInteger(volumeSizeBytes) || volumeSizeBytes < VOLUME_SIZE_BYTES_MIN || volumeSizeBytes > VOLUME_SIZE_BYTES_MAX) {
    return `volume size ${volumeSizeBytes} is outside ${VOLUME_SIZE_BYTES_MIN}..${VOLUME_SIZE_BYTES_MAX} bytes`;
  }
  if (volumeSizeBytes % blockSizeBytes !== 0) return `volume size ${volumeSizeBytes} is not a multiple of the block size ${blockSizeBytes}`;
  const blocks = volumeSizeBytes / blockSizeBytes;
  if (blocks < volumeBlocksMin()) {
    return `volume size ${volumeSizeBytes} holds ${blocks} blocks of ${blockSizeBytes}; at least ${volumeBlocksMin()} are needed (2 superblocks, 2 catalog copies, one ${EXTENT_BLOCKS_FIRST}-block extent)`;
  }
  return null;
}

/** Online growth (`volumeExtension({ grow })`, volume.ts V6). */
export interface VolumeGrowOptions {
  /** Bytes added at each growth: a multiple of the block size, > 0. */
  step: number;
  /** The volume never grows past this many bytes: a multiple of the block size, >= its size. */
  max: number;
}

const GROW_OPTION_KEYS = optionKeys<VolumeGrowOptions>({ step: true, max: true });

/**
 * Check `grow` options: BAD_ARGUMENT naming the key (`grow.step`, `grow.max`). Without a block
 * size only the shape and the numbers are checked (at the volumeExtension call); with the
 * volume's block size and size (at open) also the multiples and max >= the size.
 */
export function checkGrowOptions(grow: unknown, what: string, volume?: { blockSizeBytes: number; volumeSizeBytes: number }): VolumeGrowOptions {
  if (typeof grow !== 'object' || grow === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option grow must be an object { step, max }, got ${grow === null ? 'null' : typeof grow}`);
  checkOptionKeys(grow, GROW_OPTION_KEYS, what);
  const g = grow as Partial<VolumeGrowOptions>;
  for (const key of ['step', 'max'] as const) {
    const v = g[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option grow.${key} must be a positive whole number of bytes, got ${String(v)}`);
  }
  const step = g.step!;
  const max = g.max!;
  if (max > VOLUME_SIZE_BYTES_MAX) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option grow.max ${max} is above the largest volume, ${VOLUME_SIZE_BYTES_MAX} bytes`);
  if (volume) {
    const bs = volume.blockSizeBytes;
    if (step % bs !== 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option grow.step ${step} is not a multiple of the block size ${bs}`);
    if (max % bs !== 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option grow.max ${max} is not a multiple of the block size ${bs}`);
    if (max < volume.volumeSizeBytes) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option grow.max ${max} is below the volume's size, ${volume.volumeSizeBytes} bytes`);
  }
  return { step, max };
}

/** Superblocks + two catalog copies (copy-on-write) + one first extent. */
export function volumeBlocksMin(): number {
  return METADATA_BLOCKS + 2 + EXTENT_BLOCKS_FIRST;
}

/** The growth cap in blocks for a block size. */
export function extentBlocksMax(blockSizeBytes: number): number {
  return Math.max(EXTENT_BLOCKS_FIRST, EXTENT_BYTES_MAX / blockSizeBytes);
}

// ---------------------------------------------------------------- superblock

export function encodeSuperblock(sb: Superblock): Uint8Array {
  assert(sb.slot === sb.generation % SLOT_COUNT, 'generation g goes to slot g % 2 (F1)');
  assert(Number.isSafeInteger(sb.generation) && sb.generation >= 0, 'generation is a safe integer');
  const out = new Uint8Array(SUPERBLOCK_BYTES);
  const v = new DataView(out.buffer);
  out.set(Buffer.from(SUPERBLOCK_MAGIC, 'latin1'), SB_OFF.magic);
  v.setUint32(SB_OFF.version, FORMAT_VERSION, true);
  v.setUint32(SB_OFF.slot, sb.slot, true);
  v.setUint32(SB_OFF.blockSize, sb.blockSizeBytes, true);
  v.setBigUint64(SB_OFF.volumeSize, BigInt(sb.volumeSizeBytes), true);
  v.setBigUint64(SB_OFF.generation, BigInt(sb.generation), true);
  v.setBigUint64(SB_OFF.indexBlock, BigInt(sb.indexBlock), true);
  v.setUint32(SB_OFF.indexPages, sb.indexPages, true);
  v.setUint32(SB_OFF.indexCrc, sb.indexCrc, true);
  v.setUint32(SB_OFF.leafPages, sb.leafPages, true);
  v.setUint32(SB_OFF.forkCount, sb.forkCount, true);
  v.setBigUint64(SB_OFF.timeMs, BigInt(Math.max(0, Math.floor(sb.timeMs))), true);
  if (sb.snapshots) {
    assert(sb.snapshots.count >= 1 && sb.snapshots.pages >= 1 && sb.snapshots.block >= METADATA_BLOCKS, 'a snapshot table names at least one snapshot');
    v.setBigUint64(SB_OFF.snapBlock, BigInt(sb.snapshots.block), true);
    v.setUint32(SB_OFF.snapPages, sb.snapshots.pages, true);
    v.setUint32(SB_OFF.snapCrc, sb.snapshots.crc, true);
    v.setUint32(SB_OFF.snapCount, sb.snapshots.count, true);
  }
  v.setUint32(SB_OFF.crc, crc32c(out.subarray(0, SB_OFF.crc)), true);
  // Pair assertion: what we write must decode to what we meant.
  const back = decodeSuperblock(out, sb.slot);
  assert(back.ok && back.sb.generation === sb.generation, 'encoded superblock decodes');
  return out;
}

export type SlotResult = { ok: true; sb: Superblock } | { ok: false; reason: string };

/** The reason of a slot that is all zero: what creation leaves until it writes the superblocks. */
export const SLOT_NEVER_WRITTEN = 'never written (all zero)';

function u64(v: DataView, off: number): number | null {
  const big = v.getBigUint64(off, true);
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(big);
}

/** Decode one slot's bytes (at least SUPERBLOCK_BYTES). Never throws on bad content. */
export function decodeSuperblock(bytes: Uint8Array, slot: number): SlotResult {
  if (bytes.length < SUPERBLOCK_BYTES) return { ok: false, reason: `only ${bytes.length} bytes present, a superblock needs ${SUPERBLOCK_BYTES}` };
  const v = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_BYTES);
  let allZero = true;
  for (let i = 0; i < SUPERBLOCK_BYTES; i++) if (bytes[i] !== 0) allZero = false;
  if (allZero) return { ok: false, reason: SLOT_NEVER_WRITTEN };
  const magic = Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1');
  if (magic !== SUPERBLOCK_MAGIC) return { ok: false, reason: `wrong magic ${JSON.stringify(magic)} (expected "${SUPERBLOCK_MAGIC}")` };
  const stored = v.getUint32(SB_OFF.crc, true);
  const actual = crc32c(bytes.subarray(0, SB_OFF.crc));
  if (stored !== actual) return { ok: false, reason: `superblock CRC mismatch (stored ${hex(stored)}, computed ${hex(actual)})` };
  const version = v.getUint32(SB_OFF.version, true);
  if (version === 1) {
    return { ok: false, reason: `format version 1 (the in-place volume) is not read by this lamstore, which reads version ${FORMAT_VERSION} (copy-on-write) only; copy the data out with the lamstore that wrote it` };
  }
  if (version !== FORMAT_VERSION) return { ok: false, reason: `unknown format version ${version} (this lamstore reads version ${FORMAT_VERSION})` };
  for (let i = SB_OFF.reserved2; i < SB_OFF.crc; i++) if (bytes[i] !== 0) return { ok: false, reason: `reserved byte ${i} is not zero` };
  if (v.getUint32(SB_OFF.reserved1, true) !== 0) return { ok: false, reason: 'reserved bytes 20..23 are not zero' };
  const writtenSlot = v.getUint32(SB_OFF.slot, true);
  const blockSizeBytes = v.getUint32(SB_OFF.blockSize, true);
  const volumeSizeBytes = u64(v, SB_OFF.volumeSize);
  const generation = u64(v, SB_OFF.generation);
  const indexBlock = u64(v, SB_OFF.indexBlock);
  const timeMs = u64(v, SB_OFF.timeMs);
  const snapBlock = u64(v, SB_OFF.snapBlock);
  if (volumeSizeBytes === null || generation === null || indexBlock === null || timeMs === null || snapBlock === null) return { ok: false, reason: 'a 64-bit field is above 2^53' };
  if (writtenSlot !== slot) return { ok: false, reason: `written for slot ${writtenSlot}, found in slot ${slot}` };
  if (generation % SLOT_COUNT !== slot) return { ok: false, reason: `generation ${generation} does not belong in slot ${slot} (generation g lives in slot g % 2)` };
  const geometry = checkVolumeGeometry(volumeSizeBytes, blockSizeBytes);
  if (geometry) return { ok: false, reason: geometry };
  const sb: Superblock = {
    slot,
    blockSizeBytes,
    volumeSizeBytes,
    generation,
    indexBlock,
    indexPages: v.getUint32(SB_OFF.indexPages, true),
    indexCrc: v.getUint32(SB_OFF.indexCrc, true),
    leafPages: v.getUint32(SB_OFF.leafPages, true),
    forkCount: v.getUint32(SB_OFF.forkCount, true),
    timeMs,
  };
  const volumeBlocks = volumeSizeBytes / blockSizeBytes;
  if (sb.indexBlock < METADATA_BLOCKS || sb.indexBlock >= volumeBlocks) {
    return { ok: false, reason: `catalog index page at block ${sb.indexBlock} is outside ${METADATA_BLOCKS}..${volumeBlocks - 1}` };
  }
  // Every page is a block of its own: the counts cannot exceed the volume (this bounds every
  // allocation sized by them before a page is read).
  if (sb.indexPages < 1 || sb.indexPages + sb.leafPages > volumeBlocks - METADATA_BLOCKS) {
    return { ok: false, reason: `catalog of ${sb.indexPages} index and ${sb.leafPages} leaf pages does not fit a volume of ${volumeBlocks} blocks` };
  }
  const snapPages = v.getUint32(SB_OFF.snapPages, true);
  const snapCrc = v.getUint32(SB_OFF.snapCrc, true);
  const snapCount = v.getUint32(SB_OFF.snapCount, true);
  if (snapBlock !== 0 || snapPages !== 0 || snapCrc !== 0 || snapCount !== 0) {
    // snapshots.ts S1: a table names 1..SNAPSHOTS_MAX snapshots in exactly as many pages as they fill.
    if (snapBlock < METADATA_BLOCKS || snapBlock >= volumeBlocks) return { ok: false, reason: `snapshot table at block ${snapBlock} is outside ${METADATA_BLOCKS}..${volumeBlocks - 1}` };
    if (snapCount < 1 || snapCount > SNAPSHOTS_MAX) return { ok: false, reason: `snapshot count ${snapCount} is outside 1..${SNAPSHOTS_MAX}` };
    if (snapPages !== Math.ceil(snapCount / snapshotEntriesMax(blockSizeBytes))) return { ok: false, reason: `snapshot table of ${snapPages} pages does not match its ${snapCount} snapshots` };
    sb.snapshots = { block: snapBlock, pages: snapPages, crc: snapCrc, count: snapCount };
  }
  return { ok: true, sb };
}

export function hex(n: number): string {
  return '0x' + (n >>> 0).toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------- catalog pages

export function compareForkKeys(a: ForkKey, b: ForkKey): number {
  return a.spcOid - b.spcOid || a.dbOid - b.dbOid || a.relNumber - b.relNumber || a.fork - b.fork;
}

/** F4's order: fork key, then firstBlock. */
export function compareItemKeys(a: ForkKey & { firstBlock: number }, b: ForkKey & { firstBlock: number }): number {
  return compareForkKeys(a, b) || a.firstBlock - b.firstBlock;
}

/** Bytes an item with `extents` extents takes in a leaf. */
export function itemBytes(extents: number): number {
  return ITEM_HEADER_BYTES + extents * EXTENT_BYTES;
}

/** Most extents one item may hold (one item alone fills a leaf). */
export function itemExtentsMax(blockSizeBytes: number): number {
  return Math.floor((blockSizeBytes - PAGE_HEADER_BYTES - ITEM_HEADER_BYTES) / EXTENT_BYTES);
}

/** Index entries one index page holds. */
export function indexEntriesMax(blockSizeBytes: number): number {
  return Math.floor((blockSizeBytes - PAGE_HEADER_BYTES) / INDEX_ENTRY_BYTES);
}

function writeHeader(out: Uint8Array, v: DataView, magic: string, count: number, generation: number, next: PageRef | null): void {
  out.set(Buffer.from(magic, 'latin1'), 0);
  v.setUint32(8, FORMAT_VERSION, true);
  v.setUint32(12, count, true);
  v.setBigUint64(16, BigInt(generation), true);
  v.setUint32(24, next?.block ?? 0, true);
  v.setUint32(28, next?.crc ?? 0, true);
}

function writeKey(v: DataView, at: number, k: ForkKey): void {
  v.setUint32(at, k.spcOid, true);
  v.setUint32(at + 4, k.dbOid, true);
  v.setUint32(at + 8, k.relNumber, true);
  v.setUint8(at + 12, k.fork);
}

/** One index page (a whole block); `next` names the following index page, null on the last. */
export function encodeIndexPage(page: IndexPage, blockSizeBytes: number): Uint8Array {
  assert(page.entries.length <= indexEntriesMax(blockSizeBytes), 'index entries fit the page');
  const out = new Uint8Array(blockSizeBytes);
  const v = new DataView(out.buffer);
  writeHeader(out, v, INDEX_PAGE_MAGIC, page.entries.length, page.generation, page.next);
  let at = PAGE_HEADER_BYTES;
  for (const e of page.entries) {
    writeKey(v, at, e);
    v.setUint32(at + 16, e.firstBlock, true);
    v.setUint32(at + 20, e.block, true);
    v.setUint32(at + 24, e.crc, true);
    at += INDEX_ENTRY_BYTES;
  }
  return out;
}

/** One leaf page (a whole block); items must be in F4 order (asserted) and fit. */
export function encodeLeafPage(page: LeafPage, blockSizeBytes: number): Uint8Array {
  const out = new Uint8Array(blockSizeBytes);
  const v = new DataView(out.buffer);
  writeHeader(out, v, LEAF_PAGE_MAGIC, page.items.length, page.generation, null);
  let at = PAGE_HEADER_BYTES;
  let prev: CatalogItem | null = null;
  for (const it of page.items) {
    assert(prev === null || compareItemKeys(prev, it) < 0, 'leaf items strictly increasing (F4)');
    assert(at + itemBytes(it.extents.length) <= blockSizeBytes, 'leaf items fit the page');
    prev = it;
    writeKey(v, at, it);
    v.setUint32(at + 16, it.nblocks, true);
    v.setUint32(at + 20, it.firstBlock, true);
    v.setUint32(at + 24, it.extents.length, true);
    at += ITEM_HEADER_BYTES;
    for (const e of it.extents) {
      v.setUint32(at, e.startBlock, true);
      v.setUint32(at + 4, e.lengthBlocks, true);
      at += EXTENT_BYTES;
    }
  }
  return out;
}

function readHeader(bytes: Uint8Array, path: string, what: string, magic: string, maxGeneration: number): { v: DataView; count: number; generation: number; next: PageRef | null } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (bytes.length < PAGE_HEADER_BYTES) throw corrupt(path, `${what} is ${bytes.length} bytes, shorter than a page header`);
  const m = Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1');
  if (m !== magic) throw corrupt(path, `${what} has wrong magic ${JSON.stringify(m)} (expected "${magic}")`);
  const version = v.getUint32(8, true);
  if (version !== FORMAT_VERSION) throw corrupt(path, `${what} has unknown format version ${version}`);
  const generation = u64(v, 16);
  if (generation === null || generation > maxGeneration) throw corrupt(path, `${what} has generation ${String(generation)}, newer than its superblock's ${maxGeneration}`);
  const nextBlock = v.getUint32(24, true);
  const next = nextBlock === 0 ? null : { block: nextBlock, crc: v.getUint32(28, true) };
  if (next === null && v.getUint32(28, true) !== 0) throw corrupt(path, `${what} names no next page but carries a next CRC`);
  return { v, count: v.getUint32(12, true), generation, next };
}

function readKey(v: DataView, at: number): ForkKey & { reservedOk: boolean } {
  return {
    spcOid: v.getUint32(at, true),
    dbOid: v.getUint32(at + 4, true),
    relNumber: v.getUint32(at + 8, true),
    fork: v.getUint8(at + 12),
    reservedOk: v.getUint8(at + 13) === 0 && v.getUint16(at + 14, true) === 0,
  };
}

/** Decode an index page whose CRC already matched. Throws VOLUME_CORRUPT on a structural problem. */
export function decodeIndexPage(bytes: Uint8Array, path: string, what: string, maxGeneration: number): IndexPage {
  const { v, count, generation, next } = readHeader(bytes, path, what, INDEX_PAGE_MAGIC, maxGeneration);
  if (count > indexEntriesMax(bytes.length)) throw corrupt(path, `${what} claims ${count} entries, more than a page holds`);
  const entries: IndexEntry[] = [];
  let at = PAGE_HEADER_BYTES;
  for (let i = 0; i < count; i++, at += INDEX_ENTRY_BYTES) {
    const k = readKey(v, at);
    if (!k.reservedOk || v.getUint32(at + 28, true) !== 0) throw corrupt(path, `${what} entry ${i}: reserved bytes are not zero`);
    if (k.fork > 3) throw corrupt(path, `${what} entry ${i}: fork number ${k.fork} is out of range 0..3`);
    entries.push({ spcOid: k.spcOid, dbOid: k.dbOid, relNumber: k.relNumber, fork: k.fork, firstBlock: v.getUint32(at + 16, true), block: v.getUint32(at + 20, true), crc: v.getUint32(at + 24, true) });
  }
  return { generation, entries, next };
}

/** Decode a leaf page whose CRC already matched. Throws VOLUME_CORRUPT on a structural problem. */
export function decodeLeafPage(bytes: Uint8Array, path: string, what: string, maxGeneration: number): LeafPage {
  const { v, count, generation, next } = readHeader(bytes, path, what, LEAF_PAGE_MAGIC, maxGeneration);
  if (next !== null) throw corrupt(path, `${what}: a leaf page names a next page`);
  if (count === 0) throw corrupt(path, `${what} holds no items`);
  const items: CatalogItem[] = [];
  let at = PAGE_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + ITEM_HEADER_BYTES > bytes.length) throw corrupt(path, `${what} item ${i} runs past the page's end`);
    const k = readKey(v, at);
    const name = `${what} item ${i} (relation ${k.spcOid}/${k.dbOid}/${k.relNumber} fork ${k.fork})`;
    if (!k.reservedOk || v.getUint32(at + 28, true) !== 0) throw corrupt(path, `${name}: reserved bytes are not zero`);
    if (k.fork > 3) throw corrupt(path, `${name}: fork number ${k.fork} is out of range 0..3`);
    const n = v.getUint32(at + 24, true);
    const it: CatalogItem = { spcOid: k.spcOid, dbOid: k.dbOid, relNumber: k.relNumber, fork: k.fork, nblocks: v.getUint32(at + 16, true), firstBlock: v.getUint32(at + 20, true), extents: [] };
    at += ITEM_HEADER_BYTES;
    if (at + n * EXTENT_BYTES > bytes.length) throw corrupt(path, `${name}: claims ${n} extents, more than the page holds`);
    for (let x = 0; x < n; x++, at += EXTENT_BYTES) it.extents.push({ startBlock: v.getUint32(at, true), lengthBlocks: v.getUint32(at + 4, true) });
    if (items.length > 0 && compareItemKeys(items[items.length - 1]!, it) >= 0) throw corrupt(path, `${name}: items are out of order or duplicated`);
    items.push(it);
  }
  return { generation, items };
}

/**
 * Join the items of a whole catalog (in index order) into forks, checking F4. Throws
 * VOLUME_CORRUPT naming the fork on the first problem.
 */
export function joinItems(items: readonly CatalogItem[], path: string): CatalogFork[] {
  const forks: CatalogFork[] = [];
  let cur: CatalogFork | null = null;
  let covered = 0;
  let shared = false;
  const finish = (): void => {
    if (cur && covered !== cur.nblocks) throw corrupt(path, `${describeForkKey(cur)}: its extents hold ${covered} blocks but nblocks is ${cur.nblocks}`);
  };
  for (const it of items) {
    if (cur === null || compareForkKeys(cur, it) !== 0) {
      finish();
      if (cur !== null && compareForkKeys(cur, it) > 0) throw corrupt(path, `${describeForkKey(it)}: items are out of order`);
      if (it.firstBlock !== 0) throw corrupt(path, `${describeForkKey(it)}: its first item starts at block ${it.firstBlock}, not 0`);
      if (it.extents.length === 0 && it.nblocks !== 0) throw corrupt(path, `${describeForkKey(it)}: an item of a fork with ${it.nblocks} blocks holds no extents`);
      // Most forks are one item: the fork shares the item's extents, copied only if a second
      // item follows (the items themselves are never changed).
      cur = { spcOid: it.spcOid, dbOid: it.dbOid, relNumber: it.relNumber, fork: it.fork, nblocks: it.nblocks, extents: it.extents };
      shared = true;
      forks.push(cur);
      covered = 0;
      for (const e of it.extents) covered += e.lengthBlocks;
      continue;
    } else if (it.nblocks !== cur.nblocks) {
      throw corrupt(path, `${describeForkKey(it)}: items disagree on nblocks (${cur.nblocks}, ${it.nblocks})`);
    } else if (it.firstBlock !== covered) {
      throw corrupt(path, `${describeForkKey(it)}: an item starts at block ${it.firstBlock}, the previous ones end at ${covered}`);
    }
    if (it.extents.length === 0 && it.nblocks !== 0) throw corrupt(path, `${describeForkKey(it)}: an item of a fork with ${it.nblocks} blocks holds no extents`);
    if (shared) {
      cur.extents = [...cur.extents];
      shared = false;
    }
    for (const e of it.extents) {
      cur.extents.push(e);
      covered += e.lengthBlocks;
    }
  }
  finish();
  return forks;
}

/**
 * Cut a fork's map into items of at most `itemExtentsMax` extents (F4). A fork with no blocks is
 * one empty item.
 */
export function forkItems(f: CatalogFork, extentsMax: number): CatalogItem[] {
  const items: CatalogItem[] = [];
  let first = 0;
  for (let i = 0; i < f.extents.length || items.length === 0; i += extentsMax) {
    const extents = f.extents.slice(i, i + extentsMax);
    items.push({ spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber, fork: f.fork, nblocks: f.nblocks, firstBlock: first, extents });
    for (const e of extents) first += e.lengthBlocks;
    if (f.extents.length === 0) break;
  }
  return items;
}

export interface Finding {
  severity: 'error' | 'warning';
  /** The part that is wrong: "superblock slot 0", "catalog", "relation 1663/5/16384 fork main", ... */
  part: string;
  message: string;
}

/** "relation 1663/5/16384 fork main", as the engine names a fork everywhere. */
export function describeForkKey(k: ForkKey): string {
  return describeFork(k, k.fork);
}

/**
 * Placement checks of a decoded catalog (F6): extents and catalog pages inside the volume, no
 * extent empty, nothing overlapping anything else or the superblocks.
 */
export function catalogFindings(forks: readonly CatalogFork[], catalogPages: readonly number[], volumeBlocks: number): Finding[] {
  const findings: Finding[] = [];
  const spans: { start: number; end: number; owner: string }[] = [{ start: 0, end: METADATA_BLOCKS, owner: 'the superblocks' }];
  for (const b of catalogPages) {
    if (b < METADATA_BLOCKS || b >= volumeBlocks) findings.push({ severity: 'error', part: 'catalog', message: `a page at block ${b} lies outside ${METADATA_BLOCKS}..${volumeBlocks - 1}` });
    else spans.push({ start: b, end: b + 1, owner: `the catalog page at block ${b}` });
  }
  for (const f of forks) {
    const part = describeForkKey(f);
    f.extents.forEach((e, i) => {
      if (e.lengthBlocks === 0) findings.push({ severity: 'error', part: `${part} extent ${i}`, message: 'has length 0' });
      else if (e.startBlock < METADATA_BLOCKS || e.startBlock + e.lengthBlocks > volumeBlocks) {
        findings.push({ severity: 'error', part: `${part} extent ${i}`, message: `blocks ${e.startBlock}..${e.startBlock + e.lengthBlocks - 1} leave the data area ${METADATA_BLOCKS}..${volumeBlocks - 1}` });
      } else spans.push({ start: e.startBlock, end: e.startBlock + e.lengthBlocks, owner: `${part} extent ${i}` });
    });
  }
  spans.sort((a, b) => a.start - b.start || a.end - b.end);
  // Compare each span with the one reaching furthest so far, so a span nested in a long one
  // is caught even when its neighbour in start order does not overlap it.
  let reach = spans[0]!;
  for (let i = 1; i < spans.length; i++) {
    const s = spans[i]!;
    if (s.start < reach.end) findings.push({ severity: 'error', part: s.owner, message: `overlaps ${reach.owner} (blocks ${s.start}..${Math.min(reach.end, s.end) - 1})` });
    if (s.end > reach.end) reach = s;
  }
  return findings;
}
