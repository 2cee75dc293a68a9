/**
 * The volume's on-disk format: superblocks and catalog (DESIGN.md section 5; byte tables in
 * volume/README.md). Pure functions: encode, decode, validate. No I/O here.
 *
 * On-disk contract (all integers little-endian, all checksums CRC-32C):
 *  F1 Blocks 0 and 1 are the two superblock slots. Generation g is always written to slot g % 2,
 *     so a checkpoint always overwrites the OLDER slot and the newer one stays intact while it
 *     is written (LMDB's "transaction N writes meta page N % 2"). A slot holding a generation of
 *     the wrong parity is invalid: that catches a superblock copied into the wrong place.
 *  F2 A superblock is SUPERBLOCK_BYTES long at the start of its block, with its own CRC in the
 *     last 4 bytes; reserved bytes are zero (checked before trusting the CRC'd content, so a
 *     future format cannot be misread as this one). The rest of the block is ignored.
 *  F3 Opening picks the valid slot with the highest generation. Its catalog must match the
 *     length and CRC the superblock records; if it does not, the volume is VOLUME_CORRUPT (the
 *     older slot's catalog may legitimately have been overwritten, see F5, so there is no
 *     fallback past a valid superblock).
 *  F4 The catalog lists every relation fork in strictly increasing (spcOid, dbOid, relNumber,
 *     fork) order, each with nblocks and its extents in fork-block order. A fork with nblocks 0
 *     has no extents; otherwise its extents hold at least nblocks blocks and the last one holds
 *     block nblocks-1 (no wholly unused extent is recorded).
 *  F5 A catalog is written copy-on-write into space that neither the newest durable catalog nor
 *     any extent it lists uses. Free space is not stored: it is everything not used by blocks
 *     0-1, the catalog and the extents, rebuilt at open.
 *  F6 Extents lie inside [METADATA_BLOCKS, volumeBlocks), have length >= 1, and overlap neither
 *     each other nor the catalog's blocks.
 *
 * Every count and length read from disk is checked against the bytes actually present (and the
 * volume size) before anything sized by it is allocated.
 */
import { ErrorCode, LamstoreError, assert, crc32c, describeFork } from '../engine/index.js';

export const SUPERBLOCK_MAGIC = 'LAMSTORE';
export const CATALOG_MAGIC = 'LAMCATLG';
export const FORMAT_VERSION = 1;

/** Superblock slots: blocks 0 and 1 (DESIGN.md section 6). */
export const SLOT_COUNT = 2;
export const METADATA_BLOCKS = 2;
/** Bytes of a superblock covered by its CRC, CRC included. Fits in one 512-byte sector. */
export const SUPERBLOCK_BYTES = 128;
export const CATALOG_HEADER_BYTES = 32;
export const CATALOG_FORK_BYTES = 24;
export const CATALOG_EXTENT_BYTES = 8;

export const VOLUME_SIZE_BYTES_MIN = 64 * 1024;
/** 1 TiB: with 4 KiB blocks that is 2^28 blocks, so block offsets fit a uint32 with room. */
export const VOLUME_SIZE_BYTES_MAX = 1024 ** 4;
export const BLOCK_SIZE_BYTES_MIN = 4096;
export const BLOCK_SIZE_BYTES_MAX = 32768;
/**
 * Largest catalog we agree to read: a length field above it is corruption, refused before any
 * buffer is allocated. 1 GiB is ~130 million extents, far beyond any real volume.
 */
export const CATALOG_BYTES_MAX = 1024 ** 3;

/** The first extent of a fork (DESIGN.md section 6: at most 8 blocks). */
export const EXTENT_BLOCKS_FIRST = 8;
/**
 * Growth doubles a fork's capacity until one step would exceed this many bytes (then it grows
 * by this much at a time). Why 16 MiB: a 1 GiB fork needs ~70 extents (under 600 bytes of
 * catalog, 7 binary-search steps per lookup), while the space a fork reserves beyond its data
 * stays below its own size for small forks and below 16 MiB for large ones. Extents that land
 * next to each other are merged (in-place extension), so the cap does not split sequential
 * writes: checkpoint writes coalesce across extent boundaries anyway.
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
  catalogOffset: 40,
  catalogLength: 48,
  catalogCrc: 52,
  reserved2: 56,
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
  catalogOffsetBlocks: number;
  catalogLengthBytes: number;
  catalogCrc: number;
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

export interface Catalog {
  generation: number;
  forks: CatalogFork[];
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
  v.setBigUint64(SB_OFF.catalogOffset, BigInt(sb.catalogOffsetBlocks), true);
  v.setUint32(SB_OFF.catalogLength, sb.catalogLengthBytes, true);
  v.setUint32(SB_OFF.catalogCrc, sb.catalogCrc, true);
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
  if (version !== FORMAT_VERSION) return { ok: false, reason: `unknown format version ${version} (this lamstore reads version ${FORMAT_VERSION})` };
  for (let i = SB_OFF.reserved2; i < SB_OFF.crc; i++) if (bytes[i] !== 0) return { ok: false, reason: `reserved byte ${i} is not zero` };
  if (v.getUint32(SB_OFF.reserved1, true) !== 0) return { ok: false, reason: 'reserved bytes 20..23 are not zero' };
  const writtenSlot = v.getUint32(SB_OFF.slot, true);
  const blockSizeBytes = v.getUint32(SB_OFF.blockSize, true);
  const volumeSizeBytes = u64(v, SB_OFF.volumeSize);
  const generation = u64(v, SB_OFF.generation);
  const catalogOffsetBlocks = u64(v, SB_OFF.catalogOffset);
  if (volumeSizeBytes === null || generation === null || catalogOffsetBlocks === null) return { ok: false, reason: 'a 64-bit field is above 2^53' };
  if (writtenSlot !== slot) return { ok: false, reason: `written for slot ${writtenSlot}, found in slot ${slot}` };
  if (generation % SLOT_COUNT !== slot) return { ok: false, reason: `generation ${generation} does not belong in slot ${slot} (generation g lives in slot g % 2)` };
  const geometry = checkVolumeGeometry(volumeSizeBytes, blockSizeBytes);
  if (geometry) return { ok: false, reason: geometry };
  const sb: Superblock = {
    slot,
    blockSizeBytes,
    volumeSizeBytes,
    generation,
    catalogOffsetBlocks,
    catalogLengthBytes: v.getUint32(SB_OFF.catalogLength, true),
    catalogCrc: v.getUint32(SB_OFF.catalogCrc, true),
  };
  const volumeBlocks = volumeSizeBytes / blockSizeBytes;
  if (sb.catalogLengthBytes < CATALOG_HEADER_BYTES || sb.catalogLengthBytes > CATALOG_BYTES_MAX) {
    return { ok: false, reason: `catalog length ${sb.catalogLengthBytes} is outside ${CATALOG_HEADER_BYTES}..${CATALOG_BYTES_MAX} bytes` };
  }
  const catalogBlocks = Math.ceil(sb.catalogLengthBytes / blockSizeBytes);
  if (sb.catalogOffsetBlocks < METADATA_BLOCKS || sb.catalogOffsetBlocks + catalogBlocks > volumeBlocks) {
    return { ok: false, reason: `catalog at blocks ${sb.catalogOffsetBlocks}..${sb.catalogOffsetBlocks + catalogBlocks - 1} is outside ${METADATA_BLOCKS}..${volumeBlocks - 1}` };
  }
  return { ok: true, sb };
}

export function hex(n: number): string {
  return '0x' + (n >>> 0).toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------- catalog

export function catalogBytes(forkCount: number, extentCount: number): number {
  return CATALOG_HEADER_BYTES + forkCount * CATALOG_FORK_BYTES + extentCount * CATALOG_EXTENT_BYTES;
}

export function compareForkKeys(a: ForkKey, b: ForkKey): number {
  return a.spcOid - b.spcOid || a.dbOid - b.dbOid || a.relNumber - b.relNumber || a.fork - b.fork;
}

/** Encode a catalog; `forks` must be in F4 order (asserted). */
export function encodeCatalog(catalog: Catalog): Uint8Array {
  let extentCount = 0;
  for (const f of catalog.forks) extentCount += f.extents.length;
  const out = new Uint8Array(catalogBytes(catalog.forks.length, extentCount));
  const v = new DataView(out.buffer);
  out.set(Buffer.from(CATALOG_MAGIC, 'latin1'), 0);
  v.setUint32(8, FORMAT_VERSION, true);
  v.setUint32(12, catalog.forks.length, true);
  v.setBigUint64(16, BigInt(catalog.generation), true);
  v.setUint32(24, extentCount, true);
  let at = CATALOG_HEADER_BYTES;
  let prev: ForkKey | null = null;
  for (const f of catalog.forks) {
    assert(prev === null || compareForkKeys(prev, f) < 0, 'catalog forks strictly increasing (F4)');
    prev = f;
    v.setUint32(at, f.spcOid, true);
    v.setUint32(at + 4, f.dbOid, true);
    v.setUint32(at + 8, f.relNumber, true);
    v.setUint8(at + 12, f.fork);
    v.setUint32(at + 16, f.nblocks, true);
    v.setUint32(at + 20, f.extents.length, true);
    at += CATALOG_FORK_BYTES;
    for (const e of f.extents) {
      v.setUint32(at, e.startBlock, true);
      v.setUint32(at + 4, e.lengthBlocks, true);
      at += CATALOG_EXTENT_BYTES;
    }
  }
  assert(at === out.length, 'catalog length matches its contents');
  return out;
}

/**
 * Decode a catalog whose CRC already matched. Throws VOLUME_CORRUPT on a structural problem
 * (the bytes cannot be parsed as a catalog); placement problems are `catalogFindings`'s job.
 */
export function decodeCatalog(bytes: Uint8Array, path: string, expectedGeneration: number): Catalog {
  if (bytes.length < CATALOG_HEADER_BYTES) throw corrupt(path, `catalog is ${bytes.length} bytes, shorter than its ${CATALOG_HEADER_BYTES}-byte header`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const magic = Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1');
  if (magic !== CATALOG_MAGIC) throw corrupt(path, `catalog has wrong magic ${JSON.stringify(magic)}`);
  const version = v.getUint32(8, true);
  if (version !== FORMAT_VERSION) throw corrupt(path, `catalog has unknown format version ${version}`);
  const forkCount = v.getUint32(12, true);
  const generation = u64(v, 16);
  const extentCount = v.getUint32(24, true);
  if (generation !== expectedGeneration) throw corrupt(path, `catalog generation ${String(generation)} does not match its superblock's ${expectedGeneration}`);
  if (v.getUint32(28, true) !== 0) throw corrupt(path, 'catalog reserved header bytes are not zero');
  // Guard the counts against the bytes present before allocating anything sized by them.
  if (catalogBytes(forkCount, extentCount) !== bytes.length) {
    throw corrupt(path, `catalog claims ${forkCount} forks and ${extentCount} extents (${catalogBytes(forkCount, extentCount)} bytes) but is ${bytes.length} bytes long`);
  }
  const forks: CatalogFork[] = [];
  let at = CATALOG_HEADER_BYTES;
  let extentsSeen = 0;
  let prev: ForkKey | null = null;
  for (let i = 0; i < forkCount; i++) {
    if (at + CATALOG_FORK_BYTES > bytes.length) throw corrupt(path, `catalog entry ${i} runs past the catalog's end`);
    const f: CatalogFork = {
      spcOid: v.getUint32(at, true),
      dbOid: v.getUint32(at + 4, true),
      relNumber: v.getUint32(at + 8, true),
      fork: v.getUint8(at + 12),
      nblocks: v.getUint32(at + 16, true),
      extents: [],
    };
    const name = `catalog entry ${i} (relation ${f.spcOid}/${f.dbOid}/${f.relNumber} fork ${f.fork})`;
    if (f.fork > 3) throw corrupt(path, `${name}: fork number ${f.fork} is out of range 0..3`);
    if (v.getUint8(at + 13) !== 0 || v.getUint16(at + 14, true) !== 0) throw corrupt(path, `${name}: reserved bytes are not zero`);
    if (prev !== null && compareForkKeys(prev, f) >= 0) {
      throw corrupt(path, compareForkKeys(prev, f) === 0 ? `${name}: duplicate entry` : `${name}: entries are out of order`);
    }
    prev = f;
    const n = v.getUint32(at + 20, true);
    at += CATALOG_FORK_BYTES;
    if (n > extentCount - extentsSeen) throw corrupt(path, `${name}: claims ${n} extents, more than the ${extentCount - extentsSeen} left in the catalog`);
    extentsSeen += n;
    for (let k = 0; k < n; k++) {
      f.extents.push({ startBlock: v.getUint32(at, true), lengthBlocks: v.getUint32(at + 4, true) });
      at += CATALOG_EXTENT_BYTES;
    }
    forks.push(f);
  }
  if (extentsSeen !== extentCount || at !== bytes.length) throw corrupt(path, `catalog header counts ${extentCount} extents but its entries hold ${extentsSeen}`);
  return { generation: expectedGeneration, forks };
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
 * Placement checks of a decoded catalog (F4, F6): extents inside the volume, not overlapping
 * each other, the superblocks or the catalog, and nblocks consistent with the extents.
 */
export function catalogFindings(catalog: Catalog, volumeBlocks: number, catalogArea: Extent): Finding[] {
  const findings: Finding[] = [];
  const spans: { start: number; end: number; owner: string }[] = [
    { start: 0, end: METADATA_BLOCKS, owner: 'the superblocks' },
    { start: catalogArea.startBlock, end: catalogArea.startBlock + catalogArea.lengthBlocks, owner: 'the catalog' },
  ];
  for (const f of catalog.forks) {
    const part = describeForkKey(f);
    let capacity = 0;
    f.extents.forEach((e, i) => {
      if (e.lengthBlocks === 0) findings.push({ severity: 'error', part: `${part} extent ${i}`, message: 'has length 0' });
      else if (e.startBlock + e.lengthBlocks > volumeBlocks) {
        findings.push({ severity: 'error', part: `${part} extent ${i}`, message: `blocks ${e.startBlock}..${e.startBlock + e.lengthBlocks - 1} leave the volume (${volumeBlocks} blocks)` });
      } else spans.push({ start: e.startBlock, end: e.startBlock + e.lengthBlocks, owner: `${part} extent ${i}` });
      capacity += e.lengthBlocks;
    });
    const last = f.extents[f.extents.length - 1];
    if (f.nblocks === 0 && f.extents.length > 0) findings.push({ severity: 'error', part, message: `has nblocks 0 but ${f.extents.length} extents` });
    if (f.nblocks > capacity) findings.push({ severity: 'error', part, message: `nblocks ${f.nblocks} exceeds its extents' ${capacity} blocks` });
    else if (last && f.nblocks <= capacity - last.lengthBlocks) findings.push({ severity: 'error', part, message: `last extent is unused (nblocks ${f.nblocks}, ${capacity} blocks in extents)` });
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
