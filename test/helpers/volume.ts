/**
 * Fixtures for the volume suites: an engine with the volume extension on SimDisk or a real
 * temporary directory, pages that carry valid checksums, file hashes, a stub host for the
 * Volume API without an engine, and the on-disk format's byte offsets with helpers that find,
 * rewrite and re-checksum the catalog pages of an image.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Engine, crc32c, setPageChecksum } from '../../engine/index.js';
import type { FileIO, ForkNumber, RelFileLocator, StorageManager } from '../../engine/index.js';
import { SMALL_BS } from './engine.js';
import { volumeExtension } from '../../volume/index.js';
import type { Volume, VolumeCreateOptions, VolumeHost } from '../../volume/index.js';
import {
  EXTENT_BYTES,
  INDEX_ENTRY_BYTES,
  ITEM_HEADER_BYTES,
  PAGE_HEADER_BYTES,
  SUPERBLOCK_BYTES,
  decodeIndexPage,
  decodeLeafPage,
  decodeSuperblock,
  encodeLeafPage,
} from '../../volume/format.js';
import type { LeafPage, Superblock } from '../../volume/format.js';


export interface VolumeEngine {
  engine: Engine;
  smgr: StorageManager;
  volume: Volume;
}

export async function openVolumeEngine(options: {
  io?: FileIO;
  dataDir: string;
  path: string;
  create?: VolumeCreateOptions;
  readOnly?: boolean;
  blockSize?: number;
  /** The pool's pages, also the volume's reserve for dirty pages (volume.ts V5). @default 256 */
  sharedBuffers?: number;
}): Promise<VolumeEngine> {
  const ext = volumeExtension({ path: options.path, create: options.create, readOnly: options.readOnly });
  const engine = await Engine.open({ dataDir: options.dataDir, blockSize: options.blockSize ?? SMALL_BS, sharedBuffers: options.sharedBuffers ?? 256, io: options.io, preload: [ext] });
  return { engine, smgr: engine.storageManager('volume'), volume: ext.volume! };
}

/** Write existing blocks `blockNum`.. of one fork through the write contract (smgr.ts W1-W4). */
export async function writePages(smgr: StorageManager, r: RelFileLocator, fork: ForkNumber, blockNum: number, pages: readonly Uint8Array[]): Promise<number> {
  return (await smgr.writeBuffers(pages.map((page, i) => ({ rel: r, fork, blockNum: blockNum + i, page })), 'eviction')).writes;
}

export function rel(relNumber: number, dbOid = 5): RelFileLocator {
  return { spcOid: 1663, dbOid, relNumber };
}

/** A page whose bytes say which relation, fork, block and version it is, with its checksum. */
export function makePage(r: RelFileLocator, fork: ForkNumber, blk: number, version = 1, bs = SMALL_BS): Uint8Array {
  const p = new Uint8Array(bs);
  const v = new DataView(p.buffer);
  v.setUint32(0, r.relNumber, true);
  v.setUint32(4, blk, true);
  v.setUint32(12, fork, true);
  v.setUint32(16, version, true);
  for (let i = 20; i < bs; i += 4) v.setUint32(i, (r.relNumber * 7919 + blk * 104729 + version * 31 + i) >>> 0, true);
  setPageChecksum(p, blk);
  return p;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function hashFile(path: string): Promise<string> {
  return sha256(await readFile(path));
}

// ------------------------------------------------------------ the on-disk format, byte by byte

/**
 * Byte offsets of format 2 (the tables of volume/README.md), for tests that damage a volume
 * field by field. test/volume-format.test.ts checks them against what format.ts encodes.
 */
export const SB_FIELD = { magic: 0, version: 8, slot: 12, blockSize: 16, volumeSize: 24, generation: 32, indexBlock: 40, indexPages: 48, indexCrc: 52, leafPages: 56, forkCount: 60, timeMs: 64, crc: SUPERBLOCK_BYTES - 4 } as const;
/** The 32-byte header of every catalog page. */
export const PAGE_FIELD = { magic: 0, version: 8, count: 12, generation: 16, nextBlock: 24, nextCrc: 28 } as const;
/** An index entry (INDEX_ENTRY_BYTES) and a leaf item header (ITEM_HEADER_BYTES), from their start. */
export const ENTRY_FIELD = { spcOid: 0, dbOid: 4, relNumber: 8, fork: 12, firstBlock: 16, block: 20, crc: 24 } as const;
export const ITEM_FIELD = { spcOid: 0, dbOid: 4, relNumber: 8, fork: 12, nblocks: 16, firstBlock: 20, extentCount: 24 } as const;

/** Where the active catalog of a volume image lies (read before damaging it). */
export interface CatalogLayout {
  /** The active superblock. */
  sb: Superblock;
  /** Index pages in chain order, each with the leaf blocks its entries name. */
  index: { block: number; leaves: number[] }[];
  /** Leaf blocks in index order. */
  leaves: number[];
}

/** The newest valid superblock of an image. */
export function activeSuperblock(image: Uint8Array, bs = SMALL_BS): Superblock {
  const a = decodeSuperblock(image.subarray(0, SUPERBLOCK_BYTES), 0);
  const b = decodeSuperblock(image.subarray(bs, bs + SUPERBLOCK_BYTES), 1);
  if (a.ok && (!b.ok || a.sb.generation > b.sb.generation)) return a.sb;
  if (b.ok) return b.sb;
  throw new Error('the image has a valid superblock');
}

/** One block of an image. */
export function blockOf(image: Uint8Array, block: number, bs = SMALL_BS): Uint8Array {
  return image.subarray(block * bs, (block + 1) * bs);
}

/** The active catalog's pages of a valid image, decoded with format.ts. */
export function catalogLayout(image: Uint8Array, bs = SMALL_BS): CatalogLayout {
  const sb = activeSuperblock(image, bs);
  const layout: CatalogLayout = { sb, index: [], leaves: [] };
  let at: { block: number } | null = { block: sb.indexBlock };
  while (at !== null) {
    const page = decodeIndexPage(blockOf(image, at.block, bs), 'image', 'index page', sb.generation);
    const leaves = page.entries.map((e) => e.block);
    layout.index.push({ block: at.block, leaves });
    layout.leaves.push(...leaves);
    at = page.next;
  }
  return layout;
}

/** Recompute a superblock slot's own CRC after a field changed. */
export function fixSlotCrc(image: Uint8Array, slot: number, bs = SMALL_BS): void {
  const at = slot * bs;
  new DataView(image.buffer, image.byteOffset + at, SUPERBLOCK_BYTES).setUint32(SB_FIELD.crc, crc32c(image.subarray(at, at + SB_FIELD.crc)), true);
}

/**
 * After bytes of catalog pages changed: every CRC a parent records, recomputed from the pages
 * as they are now, bottom up (F3): each index entry's leaf CRC, each index page's next-page CRC
 * (last page first), the active superblock's index CRC, and that superblock's own CRC. Which
 * blocks are pages comes from `layout` (read before the change), so a page whose counts were
 * damaged still gets its parent fixed: only the intended defect remains.
 */
export function fixCatalogCrcs(image: Uint8Array, layout: CatalogLayout, bs = SMALL_BS): void {
  const view = (block: number) => new DataView(image.buffer, image.byteOffset + block * bs, bs);
  for (const ip of layout.index) {
    ip.leaves.forEach((leaf, i) => view(ip.block).setUint32(PAGE_HEADER_BYTES + i * INDEX_ENTRY_BYTES + ENTRY_FIELD.crc, crc32c(blockOf(image, leaf, bs)), true));
  }
  for (let k = layout.index.length - 2; k >= 0; k--) {
    view(layout.index[k]!.block).setUint32(PAGE_FIELD.nextCrc, crc32c(blockOf(image, layout.index[k + 1]!.block, bs)), true);
  }
  const slot = layout.sb.slot;
  new DataView(image.buffer, image.byteOffset + slot * bs, SUPERBLOCK_BYTES).setUint32(SB_FIELD.indexCrc, crc32c(blockOf(image, layout.index[0]!.block, bs)), true);
  fixSlotCrc(image, slot, bs);
}

/** Decode leaf `i` of the layout, let `mutate` change it, encode it back in place (CRCs not fixed). */
export function rewriteLeaf(image: Uint8Array, layout: CatalogLayout, i: number, mutate: (page: LeafPage) => void, bs = SMALL_BS): void {
  const block = layout.leaves[i]!;
  const page = decodeLeafPage(blockOf(image, block, bs), 'image', `leaf ${i}`, layout.sb.generation);
  mutate(page);
  image.set(encodeLeafPage(page, bs), block * bs);
}

/** Byte offsets (in the block) of every item header of a leaf page, read from its counts. */
export function itemOffsets(leaf: Uint8Array): number[] {
  const v = new DataView(leaf.buffer, leaf.byteOffset, leaf.length);
  const out: number[] = [];
  let at = PAGE_HEADER_BYTES;
  for (let i = 0, n = v.getUint32(PAGE_FIELD.count, true); i < n; i++) {
    out.push(at);
    at += ITEM_HEADER_BYTES + v.getUint32(at + ITEM_FIELD.extentCount, true) * EXTENT_BYTES;
  }
  return out;
}

/**
 * A VolumeHost without an engine: every sync request is taken and nothing syncs until the test
 * calls Volume.syncNow (or checkpointBegin/End around it). For building volumes through the
 * Volume API directly.
 */
export const STUB_HOST: VolumeHost = {
  requestSync: () => true,
  countBackendSync() {},
  reportSyncFailure: (e: unknown) => {
    throw e;
  },
  exemptFromLedger() {},
};
