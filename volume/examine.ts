/**
 * Examining a volume file: both superblocks and the active catalog, read and judged. Never
 * writes; never throws for bad content (only for I/O errors): Volume.open turns `fatal` into
 * VOLUME_CORRUPT, checkVolume lists `findings`.
 *
 * Invariants:
 *  E1 Nothing read is trusted before it is checked: a page is decoded only after its CRC matched
 *     the one its parent recorded (F3), and every count is bounded by the volume's size before
 *     anything sized by it is allocated (decodeSuperblock bounds the page counts).
 *  E2 The active superblock is the valid slot with the highest generation; there is no fallback
 *     past it (F3): the older slot's catalog pages may have been reused.
 *  E3 The result names every block the durable catalog references (`catalogBlocks`, the forks'
 *     extents), so the volume rebuilds its free space as everything else (F6).
 *  E4 The volume is as large as the active superblock records. A file shorter than that is
 *     refused (blocks the catalog may name are missing); a LONGER file is accepted without a
 *     finding: a grow that stopped after extending the file and before its superblock switch
 *     leaves exactly that (grow.ts G2), and the tail is simply not part of the volume until a
 *     later grow zero-fills it again and records it. The older slot may record a smaller
 *     volume than the active one (the size before a grow), never a larger one.
 *  E5 Snapshots (snapshots.ts S1-S6): the snapshot table the active superblock names is read
 *     page by page against its parents' CRCs, and every snapshot's catalog exactly as the live
 *     one (E1, F3, F4, F6 within it); a problem in any of them is fatal, since the blocks a
 *     snapshot holds must be known before anything is allocated. Across catalogs, a shared
 *     block must mean the same thing in each (S6), and the table's pages are shared with none.
 */
import { ErrorCode, LamstoreError, crc32c, forEachInFlight, ioError } from '../engine/index.js';
import type { FileHandle, FileIO } from '../engine/index.js';
import type { CatalogFork, CatalogItem, Finding, SlotResult, Superblock } from './format.js';
import { SLOT_COUNT, SLOT_NEVER_WRITTEN, SUPERBLOCK_BYTES, catalogFindings, compareItemKeys, decodeIndexPage, decodeLeafPage, decodeSuperblock, joinItems } from './format.js';
import { decodeSnapshotTablePage, sharingFindings } from './snapshots.js';
import type { SnapshotEntry } from './snapshots.js';

export interface SlotInfo {
  slot: number;
  valid: boolean;
  generation?: number;
  /** Why the slot is not valid. */
  reason?: string;
}

/** A leaf page of the active catalog, as read. */
export interface ExaminedLeaf {
  block: number;
  crc: number;
  items: CatalogItem[];
}

/** A snapshot as read: its table entry and its catalog, checked as strictly as the live one (E5). */
export interface ExaminedSnapshot {
  entry: SnapshotEntry;
  forks: CatalogFork[];
  indexBlocks: number[];
  leaves: ExaminedLeaf[];
}

/** A catalog root: what a superblock or a snapshot entry names. */
export interface CatalogRoot {
  generation: number;
  volumeSizeBytes: number;
  blockSizeBytes: number;
  indexBlock: number;
  indexCrc: number;
  indexPages: number;
  leafPages: number;
  forkCount: number;
}

export interface VolumeExamination {
  fileSizeBytes: number;
  slots: SlotInfo[];
  /** The newest valid superblock. */
  active?: Superblock;
  /** The active catalog's forks in key order (F4: items joined). */
  forks?: CatalogFork[];
  /** Its index chain (blocks, in chain order) and leaves (in index order). */
  indexBlocks?: number[];
  leaves?: ExaminedLeaf[];
  /** The snapshots the active superblock's table names, in name order (E5), and the table's pages. */
  snapshots?: ExaminedSnapshot[];
  snapshotTableBlocks?: number[];
  findings: Finding[];
  /** Set when the volume cannot be opened: the problem, in one line. */
  fatal?: string;
}

/** Leaf pages read at once at open (a volume of 100,000 forks has several hundred). */
const LEAF_READS_IN_FLIGHT = 32;

async function readAt(io: FileIO, handle: FileHandle, path: string, length: number, offset: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let n: number;
  try {
    n = await io.pread(handle, buf, offset);
  } catch (err) {
    throw ioError('read', path, err);
  }
  return n === length ? buf : buf.subarray(0, n);
}

export async function examineVolume(io: FileIO, handle: FileHandle, path: string): Promise<VolumeExamination> {
  let fileSizeBytes: number;
  try {
    fileSizeBytes = await io.size(handle);
  } catch (err) {
    throw ioError('fstat', path, err);
  }
  const ex: VolumeExamination = { fileSizeBytes, slots: [], findings: [] };
  if (fileSizeBytes < SUPERBLOCK_BYTES) {
    // 0 bytes is also what a creation killed before it sized the file leaves: holding nothing,
    // it may go.
    ex.fatal = fileSizeBytes === 0 ? 'file is empty (0 bytes), not a volume (an interrupted volume creation leaves this); it holds nothing and may be removed' : `file is ${fileSizeBytes} bytes, shorter than a ${SUPERBLOCK_BYTES}-byte superblock`;
    ex.findings.push({ severity: 'error', part: 'file', message: ex.fatal });
    return ex;
  }
  const results: SlotResult[] = [];
  results[0] = decodeSuperblock(await readAt(io, handle, path, SUPERBLOCK_BYTES, 0), 0);
  // Slot 1 sits at one block size; the block size is in the superblock. Take slot 0's when it
  // is valid, else try every legal block size.
  const r0 = results[0];
  const candidates = r0.ok ? [r0.sb.blockSizeBytes] : [8192, 4096, 16384, 32768];
  let r1: SlotResult | undefined;
  // Every place slot 1 may be is all zero (r1 reports the first place tried, unless a later one
  // holds something with the superblock magic: that is the slot 1 to report on).
  let slot1Zero = true;
  let r1Magic = false;
  for (const bs of candidates) {
    if (fileSizeBytes < bs + SUPERBLOCK_BYTES) continue;
    const r = decodeSuperblock(await readAt(io, handle, path, SUPERBLOCK_BYTES, bs), 1);
    if (r.ok || r.reason !== SLOT_NEVER_WRITTEN) slot1Zero = false;
    if (r.ok && r.sb.blockSizeBytes !== bs) {
      if (!r1Magic) r1 = { ok: false, reason: `found at offset ${bs} but records block size ${r.sb.blockSizeBytes}` };
      r1Magic = true;
      continue;
    }
    // Block 2 of a 4 KiB volume sits where slot 1 of an 8 KiB one would: a catalog page there is
    // not the reason slot 1 is invalid when slot 1 itself (at 4096) holds a damaged superblock.
    const magic = r.ok || (r.reason !== SLOT_NEVER_WRITTEN && !r.reason.startsWith('wrong magic'));
    if (r.ok || r1 === undefined || (magic && !r1Magic)) {
      r1 = r;
      r1Magic = magic;
    }
    if (r.ok) break;
  }
  results[1] = r1 ?? { ok: false, reason: `file is too short (${fileSizeBytes} bytes) to hold slot 1` };
  for (let slot = 0; slot < SLOT_COUNT; slot++) {
    const r = results[slot]!;
    ex.slots.push(r.ok ? { slot, valid: true, generation: r.sb.generation } : { slot, valid: false, reason: r.reason });
    if (!r.ok) ex.findings.push({ severity: 'error', part: `superblock slot ${slot}`, message: r.reason });
  }
  const valid = results.filter((r): r is { ok: true; sb: Superblock } => r.ok).map((r) => r.sb);
  if (valid.length === 0) {
    if (ex.slots.every((s) => s.reason === SLOT_NEVER_WRITTEN) && slot1Zero) {
      // createVolumeFile writes the superblocks last and removes its file on any error, so two
      // zero slots mean a process killed while creating (a signal, a crash, an Engine.open
      // stopped mid-creation). Say so: "corrupt" alone sends people looking for lost data.
      ex.fatal = 'the file was never completed as a volume (both superblock slots are all zero: its creation was interrupted); it may be removed and the volume created again';
      ex.findings.push({ severity: 'error', part: 'file', message: ex.fatal });
      return ex;
    }
    ex.fatal = `no valid superblock (slot 0: ${ex.slots[0]!.reason}; slot 1: ${ex.slots[1]!.reason})`;
    return ex;
  }
  valid.sort((a, b) => b.generation - a.generation);
  const sb = valid[0]!;
  ex.active = sb;
  if (valid.length === 2) {
    const other = valid[1]!;
    if (sb.generation !== other.generation + 1) {
      ex.findings.push({ severity: 'warning', part: `superblock slot ${other.slot}`, message: `generation ${other.generation} is not one below the active slot's ${sb.generation}` });
    }
    // E4: a grow (grow.ts G3) writes the larger size into the newer slot only, so the older slot
    // may record a smaller volume; never a larger one (volumes do not shrink) nor another block size.
    if (other.blockSizeBytes !== sb.blockSizeBytes) {
      ex.findings.push({ severity: 'error', part: `superblock slot ${other.slot}`, message: `block size ${other.blockSizeBytes} differs from the active slot's ${sb.blockSizeBytes}` });
    } else if (other.volumeSizeBytes > sb.volumeSizeBytes) {
      ex.findings.push({ severity: 'error', part: `superblock slot ${other.slot}`, message: `records a larger volume (${other.volumeSizeBytes} bytes) than the active slot (${sb.volumeSizeBytes}); a volume never shrinks` });
    }
  }
  // E4: only a shorter file is a problem; a longer one holds the tail of an unfinished grow.
  if (sb.volumeSizeBytes > fileSizeBytes) {
    ex.fatal = `superblock slot ${sb.slot} says the volume is ${sb.volumeSizeBytes} bytes but the file has only ${fileSizeBytes}`;
    ex.findings.push({ severity: 'error', part: 'file', message: ex.fatal });
    return ex;
  }
  try {
    const cat = await readCatalog(io, handle, path, sb, `superblock slot ${sb.slot}, generation ${sb.generation}`);
    ex.forks = cat.forks;
    ex.indexBlocks = cat.indexBlocks;
    ex.leaves = cat.leaves;
  } catch (err) {
    if (!(err instanceof CatalogProblem)) throw err;
    ex.fatal = err.message;
    ex.findings.push({ severity: 'error', part: 'catalog', message: ex.fatal });
    return ex;
  }
  const placement = catalogFindings(ex.forks!, [...ex.indexBlocks!, ...ex.leaves!.map((l) => l.block)], sb.volumeSizeBytes / sb.blockSizeBytes);
  ex.findings.push(...placement);
  const firstError = placement.find((f) => f.severity === 'error');
  if (firstError) ex.fatal = `${firstError.part} ${firstError.message}`;
  await examineSnapshots(io, handle, path, sb, ex);
  return ex;
}

/** E5: the snapshot table and every snapshot's catalog, then the sharing across catalogs (S6). */
async function examineSnapshots(io: FileIO, handle: FileHandle, path: string, sb: Superblock, ex: VolumeExamination): Promise<void> {
  ex.snapshots = [];
  ex.snapshotTableBlocks = [];
  const ref = sb.snapshots;
  if (!ref) return;
  const bs = sb.blockSizeBytes;
  const volumeBlocks = sb.volumeSizeBytes / bs;
  const fail = (part: string, message: string): void => {
    ex.findings.push({ severity: 'error', part, message });
    ex.fatal ??= `${part}: ${message}`;
  };
  const entries: SnapshotEntry[] = [];
  let at: { block: number; crc: number } | null = { block: ref.block, crc: ref.crc };
  for (let k = 0; at !== null; k++) {
    if (k >= ref.pages) return fail('snapshot table', `its chain is longer than the ${ref.pages} pages its superblock records`);
    if (at.block < 2 || at.block >= volumeBlocks) return fail('snapshot table', `page ${k} at block ${at.block} lies outside the volume`);
    const bytes = await readAt(io, handle, path, bs, at.block * bs);
    if (bytes.length !== bs || crc32c(bytes) !== at.crc) return fail('snapshot table', `page ${k} at block ${at.block}: CRC mismatch`);
    let page;
    try {
      page = decodeSnapshotTablePage(bytes, path, `snapshot table page ${k} at block ${at.block}`, sb);
    } catch (err) {
      return fail('snapshot table', (err as Error).message.replace(`${path}: volume is corrupt: `, ''));
    }
    if (entries.length > 0 && page.entries[0]!.name <= entries[entries.length - 1]!.name) return fail('snapshot table', `page ${k}: snapshot names are out of order or duplicated`);
    entries.push(...page.entries);
    ex.snapshotTableBlocks.push(at.block);
    at = page.next;
  }
  if (ex.snapshotTableBlocks.length !== ref.pages) return fail('snapshot table', `its chain has ${ex.snapshotTableBlocks.length} pages, its superblock records ${ref.pages}`);
  if (entries.length !== ref.count) return fail('snapshot table', `it names ${entries.length} snapshots, its superblock records ${ref.count}`);
  for (const entry of entries) {
    const part = `snapshot ${entry.name}`;
    const root = { ...entry, blockSizeBytes: bs };
    try {
      const cat = await readCatalog(io, handle, path, root, `snapshot ${entry.name}, generation ${entry.generation}`);
      ex.snapshots.push({ entry, ...cat });
      for (const f of catalogFindings(cat.forks, [...cat.indexBlocks, ...cat.leaves.map((l) => l.block)], entry.volumeSizeBytes / bs)) fail(`${part}: ${f.part}`, f.message);
    } catch (err) {
      if (!(err instanceof CatalogProblem)) throw err;
      fail(part, err.message);
    }
  }
  if (ex.snapshots.length !== entries.length || !ex.forks) return;
  const catalogs = [
    { name: 'the live catalog', pageBlocks: [...ex.indexBlocks!, ...ex.leaves!.map((l) => l.block)], forks: ex.forks },
    ...ex.snapshots.map((s) => ({ name: `snapshot ${s.entry.name}`, pageBlocks: [...s.indexBlocks, ...s.leaves.map((l) => l.block)], forks: s.forks })),
  ];
  for (const f of sharingFindings(catalogs, ex.snapshotTableBlocks.map((block) => ({ block, owner: `the snapshot table page at block ${block}` })))) fail(f.part, f.message);
}

class CatalogProblem extends Error {}

/** Read the index chain and the leaves a root names, verifying each page against its parent (E1). */
async function readCatalog(io: FileIO, handle: FileHandle, path: string, sb: CatalogRoot, where: string): Promise<{ forks: CatalogFork[]; indexBlocks: number[]; leaves: ExaminedLeaf[] }> {
  const bs = sb.blockSizeBytes;
  const volumeBlocks = sb.volumeSizeBytes / bs;
  const decode = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new CatalogProblem((err as Error).message.replace(`${path}: volume is corrupt: `, ''));
    }
  };
  const indexBlocks: number[] = [];
  const entries: { block: number; crc: number; key: CatalogItem }[] = [];
  let at: { block: number; crc: number } | null = { block: sb.indexBlock, crc: sb.indexCrc };
  for (let k = 0; at !== null; k++) {
    if (k >= sb.indexPages) throw new CatalogProblem(`catalog index chain is longer than the ${sb.indexPages} pages its superblock records (${where})`);
    if (at.block < 2 || at.block >= volumeBlocks) throw new CatalogProblem(`catalog index page ${k} at block ${at.block} lies outside the volume (${where})`);
    const bytes = await readAt(io, handle, path, bs, at.block * bs);
    if (bytes.length !== bs || crc32c(bytes) !== at.crc) throw new CatalogProblem(`catalog index page ${k} at block ${at.block}: CRC mismatch (${where})`);
    const page = decode(() => decodeIndexPage(bytes, path, `catalog index page ${k} at block ${at!.block}`, sb.generation));
    indexBlocks.push(at.block);
    for (const e of page.entries) entries.push({ block: e.block, crc: e.crc, key: { spcOid: e.spcOid, dbOid: e.dbOid, relNumber: e.relNumber, fork: e.fork, firstBlock: e.firstBlock, nblocks: 0, extents: [] } });
    at = page.next;
  }
  if (indexBlocks.length !== sb.indexPages) throw new CatalogProblem(`catalog index chain has ${indexBlocks.length} pages, its superblock records ${sb.indexPages} (${where})`);
  if (entries.length !== sb.leafPages) throw new CatalogProblem(`catalog index names ${entries.length} leaf pages, its superblock records ${sb.leafPages} (${where})`);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.block < 2 || e.block >= volumeBlocks) throw new CatalogProblem(`catalog leaf ${i} at block ${e.block} lies outside the volume (${where})`);
    if (i > 0 && compareItemKeys(entries[i - 1]!.key, e.key) >= 0) throw new CatalogProblem(`catalog index entries ${i - 1} and ${i} are out of order (${where})`);
  }
  const leaves: ExaminedLeaf[] = new Array(entries.length);
  await forEachInFlight(
    entries.map((e, i) => ({ e, i })),
    LEAF_READS_IN_FLIGHT,
    async ({ e, i }) => {
      const bytes = await readAt(io, handle, path, bs, e.block * bs);
      if (bytes.length !== bs || crc32c(bytes) !== e.crc) throw new CatalogProblem(`catalog leaf ${i} at block ${e.block}: CRC mismatch (${where})`);
      const page = decode(() => decodeLeafPage(bytes, path, `catalog leaf ${i} at block ${e.block}`, sb.generation));
      if (compareItemKeys(page.items[0]!, e.key) !== 0) throw new CatalogProblem(`catalog leaf ${i} at block ${e.block} does not start with the key its index entry records (${where})`);
      leaves[i] = { block: e.block, crc: e.crc, items: page.items };
    },
  );
  const items: CatalogItem[] = [];
  for (const l of leaves) for (const it of l.items) items.push(it);
  const forks = decode(() => joinItems(items, path));
  if (forks.length !== sb.forkCount) throw new CatalogProblem(`catalog holds ${forks.length} forks, its superblock records ${sb.forkCount} (${where})`);
  return { forks, indexBlocks, leaves };
}

/** Read and check one catalog named by a root (the durable one, for an online snapshot). */
export async function readCatalogRoot(io: FileIO, handle: FileHandle, path: string, root: CatalogRoot, where: string): Promise<{ forks: CatalogFork[]; indexBlocks: number[]; leaves: ExaminedLeaf[] }> {
  try {
    return await readCatalog(io, handle, path, root, where);
  } catch (err) {
    if (err instanceof CatalogProblem) throw new LamstoreError(ErrorCode.VOLUME_CORRUPT, `${path}: volume is corrupt: ${err.message}`, { path });
    throw err;
  }
}
