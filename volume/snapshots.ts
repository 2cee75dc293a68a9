/**
 * Snapshots of a volume: named, completed checkpoints whose catalogs (and every block they
 * reference) are kept while the live volume moves on. This file holds the pure parts: the
 * snapshot table's pages (encode, decode, validate), snapshot names, the set of blocks the
 * snapshots hold, how many of them each holds alone, and the cross-catalog sharing check. The
 * operations (create, list, drop, rollback) are Volume methods (volume.ts, "snapshots"); clone
 * is clone.ts. Byte tables in volume/README.md ("Snapshots").
 *
 * Invariants:
 *  S1 The superblock names the snapshot table in its bytes 72..91 (first page's block, page
 *     count, first page's CRC, snapshot count; all zero: no snapshots). The table is a chain of
 *     one-block pages, each carrying the next one's block and CRC, like the catalog's index
 *     chain (F3: the parent checksums the child). A table of n snapshots has exactly
 *     ceil(n / entriesPerPage) pages, every page full but the last, none empty; its entries are
 *     in strictly increasing name order (bytewise), so a duplicate name is detectable.
 *  S2 An entry names a catalog root exactly as a superblock does (first index page and its CRC,
 *     index and leaf page counts, fork count), the generation and time of the checkpoint that
 *     published that catalog, the volume size then, and when the snapshot was taken. Its
 *     catalog is read and checked at every open exactly as the live one is (examine.ts).
 *  S3 Block ownership: a block is free iff neither the live state (its current maps, its newest
 *     catalog, pending space) nor any snapshot's catalog (index chain, leaves, extents) nor the
 *     snapshot table references it. Snapshots share blocks with the live state and with each
 *     other: a snapshot costs only what later checkpoints replaced. The running volume keeps
 *     the union of the snapshots' blocks and the table's pages (`HeldSet`); the free space never
 *     takes back a held block (FreeSpace.give filters it out), so pending releases, immediate
 *     frees, truncations and drops cannot reuse one.
 *  S4 Every snapshot operation ends in exactly one superblock switch, the volume sync's: the new
 *     table pages go to free blocks, fdatasync, the superblock into the older slot, fdatasync
 *     (undone in the page cache on failure, as volume.ts #undoSwitch). A crash leaves the state
 *     before or after. The old table's pages become free only once the switch is durable; the
 *     blocks a dropped snapshot alone held become pending, free after the next durable capture.
 *  S5 Names are 1..63 bytes of [A-Za-z0-9._-], not starting with '.' or '-' (a name is safe in a
 *     file name and on a command line); a bad name is BAD_ARGUMENT naming no path.
 *  S6 Sharing across catalogs (checked by `sharingFindings`, for `lamstore check`): within one
 *     catalog no block appears twice (F6); a block two catalogs both reference must be a catalog
 *     page in both, or the same fork's same block in both. Anything else means one of them was
 *     reused while the other still named it.
 */
import { ErrorCode, LamstoreError, assert, crc32c } from '../engine/index.js';
import type { CatalogFork, Extent, Finding, PageRef, SnapshotTableRef } from './format.js';
import { FORMAT_VERSION, METADATA_BLOCKS, PAGE_HEADER_BYTES, SNAPSHOT_ENTRY_BYTES, SNAPSHOTS_MAX, describeForkKey, snapshotEntriesMax } from './format.js';

export const SNAPSHOT_TABLE_MAGIC = 'LAMSNAPT';
export const SNAPSHOT_NAME_BYTES_MAX = 63;
const NAME_BYTES = 64;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$/;

assert(NAME_BYTES > SNAPSHOT_NAME_BYTES_MAX, 'a name field always ends in a zero byte');
assert(PAGE_HEADER_BYTES + SNAPSHOT_ENTRY_BYTES <= 4096, 'a table page holds at least one entry');

/** One snapshot as the table records it (S2). */
export interface SnapshotEntry {
  name: string;
  /** The generation of the superblock that published this catalog. */
  generation: number;
  /** When that checkpoint was published (ms since 1970). */
  checkpointTimeMs: number;
  /** When the snapshot was taken (ms since 1970). */
  createdMs: number;
  volumeSizeBytes: number;
  indexBlock: number;
  indexCrc: number;
  indexPages: number;
  leafPages: number;
  forkCount: number;
}

/** S5: the name, or BAD_ARGUMENT saying what is wrong with it. */
export function checkSnapshotName(name: unknown): string {
  if (typeof name !== 'string') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `snapshot name must be a string, got ${typeof name}`);
  if (!NAME_RE.test(name)) {
    throw new LamstoreError(
      ErrorCode.BAD_ARGUMENT,
      `bad snapshot name ${JSON.stringify(name)}: a name is 1..${SNAPSHOT_NAME_BYTES_MAX} characters of A-Z a-z 0-9 . _ -, not starting with '.' or '-'`,
    );
  }
  return name;
}

/** Bytewise order of names (ASCII only, S5): the table's order (S1). */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function corrupt(path: string, what: string): LamstoreError {
  return new LamstoreError(ErrorCode.VOLUME_CORRUPT, `${path}: volume is corrupt: ${what}`, { path });
}

/**
 * Encode the table of `entries` (sorted here) as pages at blocks from `alloc`, written last to
 * first so each carries the next one's CRC (S1). Returns the pages and the superblock's ref
 * (null for no snapshots: no pages).
 */
export function encodeSnapshotTable(entries: readonly SnapshotEntry[], generation: number, blockSizeBytes: number, alloc: () => number): { writes: { block: number; bytes: Uint8Array }[]; ref: SnapshotTableRef | null } {
  assert(entries.length <= SNAPSHOTS_MAX, 'the table holds at most SNAPSHOTS_MAX snapshots');
  if (entries.length === 0) return { writes: [], ref: null };
  const sorted = [...entries].sort((a, b) => compareNames(a.name, b.name));
  for (let i = 1; i < sorted.length; i++) assert(sorted[i - 1]!.name !== sorted[i]!.name, 'snapshot names are unique (S1)');
  const perPage = snapshotEntriesMax(blockSizeBytes);
  const pages = Math.ceil(sorted.length / perPage);
  const blocks = Array.from({ length: pages }, () => alloc());
  const writes: { block: number; bytes: Uint8Array }[] = [];
  let next: PageRef | null = null;
  for (let k = pages - 1; k >= 0; k--) {
    const slice = sorted.slice(k * perPage, (k + 1) * perPage);
    const out = new Uint8Array(blockSizeBytes);
    const v = new DataView(out.buffer);
    out.set(Buffer.from(SNAPSHOT_TABLE_MAGIC, 'latin1'), 0);
    v.setUint32(8, FORMAT_VERSION, true);
    v.setUint32(12, slice.length, true);
    v.setBigUint64(16, BigInt(generation), true);
    v.setUint32(24, next?.block ?? 0, true);
    v.setUint32(28, next?.crc ?? 0, true);
    let at = PAGE_HEADER_BYTES;
    for (const e of slice) {
      checkSnapshotName(e.name);
      out.set(Buffer.from(e.name, 'latin1'), at);
      v.setBigUint64(at + 64, BigInt(e.generation), true);
      v.setBigUint64(at + 72, BigInt(Math.max(0, Math.floor(e.checkpointTimeMs))), true);
      v.setBigUint64(at + 80, BigInt(Math.max(0, Math.floor(e.createdMs))), true);
      v.setBigUint64(at + 88, BigInt(e.volumeSizeBytes), true);
      v.setBigUint64(at + 96, BigInt(e.indexBlock), true);
      v.setUint32(at + 104, e.indexPages, true);
      v.setUint32(at + 108, e.indexCrc, true);
      v.setUint32(at + 112, e.leafPages, true);
      v.setUint32(at + 116, e.forkCount, true);
      at += SNAPSHOT_ENTRY_BYTES;
    }
    next = { block: blocks[k]!, crc: crc32c(out) };
    writes.push({ block: blocks[k]!, bytes: out });
  }
  return { writes, ref: { block: next!.block, crc: next!.crc, pages, count: sorted.length } };
}

function u64(v: DataView, off: number): number | null {
  const big = v.getBigUint64(off, true);
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(big);
}

/**
 * Decode one table page whose CRC already matched (S1, S2). Every entry is judged against the
 * superblock naming the table: a snapshot is older than it (generation below), no larger a
 * volume, and its catalog root fits its volume. Throws VOLUME_CORRUPT.
 */
export function decodeSnapshotTablePage(bytes: Uint8Array, path: string, what: string, sb: { generation: number; volumeSizeBytes: number; blockSizeBytes: number }): { entries: SnapshotEntry[]; next: PageRef | null } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const magic = Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1');
  if (magic !== SNAPSHOT_TABLE_MAGIC) throw corrupt(path, `${what} has wrong magic ${JSON.stringify(magic)} (expected "${SNAPSHOT_TABLE_MAGIC}")`);
  if (v.getUint32(8, true) !== FORMAT_VERSION) throw corrupt(path, `${what} has unknown format version ${v.getUint32(8, true)}`);
  const count = v.getUint32(12, true);
  const generation = u64(v, 16);
  if (generation === null || generation > sb.generation) throw corrupt(path, `${what} has generation ${String(generation)}, newer than its superblock's ${sb.generation}`);
  if (count < 1 || count > snapshotEntriesMax(bytes.length)) throw corrupt(path, `${what} claims ${count} entries; a page holds 1..${snapshotEntriesMax(bytes.length)}`);
  const nextBlock = v.getUint32(24, true);
  const next = nextBlock === 0 ? null : { block: nextBlock, crc: v.getUint32(28, true) };
  if (next === null && v.getUint32(28, true) !== 0) throw corrupt(path, `${what} names no next page but carries a next CRC`);
  const entries: SnapshotEntry[] = [];
  let at = PAGE_HEADER_BYTES;
  for (let i = 0; i < count; i++, at += SNAPSHOT_ENTRY_BYTES) {
    const raw = bytes.subarray(at, at + NAME_BYTES);
    const len = raw.indexOf(0);
    const name = Buffer.from(raw.subarray(0, len < 0 ? NAME_BYTES : len)).toString('latin1');
    const where = `${what} entry ${i}`;
    if (len < 1 || !NAME_RE.test(name) || raw.subarray(len).some((b) => b !== 0)) throw corrupt(path, `${where}: bad snapshot name ${JSON.stringify(name)}`);
    if (v.getBigUint64(at + 120, true) !== 0n) throw corrupt(path, `${where} (snapshot ${name}): reserved bytes are not zero`);
    const fields = [64, 72, 80, 88, 96].map((o) => u64(v, at + o));
    if (fields.some((f) => f === null)) throw corrupt(path, `${where} (snapshot ${name}): a 64-bit field is above 2^53`);
    const [gen, checkpointTimeMs, createdMs, volumeSizeBytes, indexBlock] = fields as number[];
    const e: SnapshotEntry = {
      name,
      generation: gen!,
      checkpointTimeMs: checkpointTimeMs!,
      createdMs: createdMs!,
      volumeSizeBytes: volumeSizeBytes!,
      indexBlock: indexBlock!,
      indexPages: v.getUint32(at + 104, true),
      indexCrc: v.getUint32(at + 108, true),
      leafPages: v.getUint32(at + 112, true),
      forkCount: v.getUint32(at + 116, true),
    };
    const bs = sb.blockSizeBytes;
    if (e.generation >= sb.generation) throw corrupt(path, `${where} (snapshot ${name}): generation ${e.generation} is not older than its superblock's ${sb.generation}`);
    if (e.volumeSizeBytes % bs !== 0 || e.volumeSizeBytes > sb.volumeSizeBytes || e.volumeSizeBytes / bs <= METADATA_BLOCKS) {
      throw corrupt(path, `${where} (snapshot ${name}): volume size ${e.volumeSizeBytes} is not a size of this volume (${sb.volumeSizeBytes} bytes, blocks of ${bs})`);
    }
    const blocks = e.volumeSizeBytes / bs;
    if (e.indexBlock < METADATA_BLOCKS || e.indexBlock >= blocks) throw corrupt(path, `${where} (snapshot ${name}): catalog index page at block ${e.indexBlock} is outside ${METADATA_BLOCKS}..${blocks - 1}`);
    if (e.indexPages < 1 || e.indexPages + e.leafPages > blocks - METADATA_BLOCKS) throw corrupt(path, `${where} (snapshot ${name}): catalog of ${e.indexPages} index and ${e.leafPages} leaf pages does not fit its volume`);
    if (entries.length > 0 && compareNames(entries[entries.length - 1]!.name, name) >= 0) throw corrupt(path, `${where}: snapshot names are out of order or duplicated (${name})`);
    entries.push(e);
  }
  return { entries, next };
}

/** The blocks one catalog references: its pages (one block each) and its forks' extents. */
export function catalogExtents(pageBlocks: readonly number[], forks: readonly CatalogFork[]): Extent[] {
  const out: Extent[] = pageBlocks.map((b) => ({ startBlock: b, lengthBlocks: 1 }));
  for (const f of forks) for (const e of f.extents) out.push({ startBlock: e.startBlock, lengthBlocks: e.lengthBlocks });
  return out;
}

/**
 * A set of blocks as sorted, disjoint, non-adjacent runs (S3): the union of every snapshot's
 * blocks and the table's pages. Lookups are binary searches.
 */
export class HeldSet {
  readonly #starts: number[] = [];
  readonly #ends: number[] = [];
  readonly blocks: number;

  constructor(extents: Iterable<Extent>) {
    const sorted = [...extents].filter((e) => e.lengthBlocks > 0).sort((a, b) => a.startBlock - b.startBlock);
    let n = 0;
    for (const e of sorted) {
      const end = e.startBlock + e.lengthBlocks;
      const k = this.#starts.length - 1;
      if (k >= 0 && e.startBlock <= this.#ends[k]!) {
        if (end > this.#ends[k]!) {
          n += end - this.#ends[k]!;
          this.#ends[k] = end;
        }
      } else {
        this.#starts.push(e.startBlock);
        this.#ends.push(end);
        n += e.lengthBlocks;
      }
    }
    this.blocks = n;
  }

  static readonly EMPTY = new HeldSet([]);

  get empty(): boolean {
    return this.#starts.length === 0;
  }

  runs(): Extent[] {
    return this.#starts.map((s, i) => ({ startBlock: s, lengthBlocks: this.#ends[i]! - s }));
  }

  /** Index of the first run ending after `block`. */
  #first(block: number): number {
    let lo = 0;
    let hi = this.#ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ends[mid]! <= block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(block: number): boolean {
    const i = this.#first(block);
    return i < this.#starts.length && this.#starts[i]! <= block;
  }

  /** Held blocks in [start, start + length). */
  countIn(start: number, length: number): number {
    const end = start + length;
    let n = 0;
    for (let i = this.#first(start); i < this.#starts.length && this.#starts[i]! < end; i++) n += Math.min(end, this.#ends[i]!) - Math.max(start, this.#starts[i]!);
    return n;
  }

  /** The parts of [start, start + length) that are not held, in order. */
  unheld(start: number, length: number): Extent[] {
    const end = start + length;
    const out: Extent[] = [];
    let at = start;
    for (let i = this.#first(start); i < this.#starts.length && this.#starts[i]! < end; i++) {
      if (this.#starts[i]! > at) out.push({ startBlock: at, lengthBlocks: this.#starts[i]! - at });
      at = Math.max(at, this.#ends[i]!);
    }
    if (at < end) out.push({ startBlock: at, lengthBlocks: end - at });
    return out;
  }
}

/**
 * For each owner (a list of extents, disjoint within the owner), the blocks no other owner
 * covers: a sweep over every extent's ends. Owner 0 is usually the live state; the count of
 * snapshot i is its "exclusive blocks", what dropping it alone frees.
 */
export function exclusiveBlocks(owners: readonly (readonly Extent[])[]): number[] {
  const events: { at: number; owner: number; delta: number }[] = [];
  owners.forEach((list, owner) => {
    for (const e of list) {
      if (e.lengthBlocks <= 0) continue;
      events.push({ at: e.startBlock, owner, delta: 1 }, { at: e.startBlock + e.lengthBlocks, owner, delta: -1 });
    }
  });
  events.sort((a, b) => a.at - b.at);
  const depth = new Array<number>(owners.length).fill(0);
  const out = new Array<number>(owners.length).fill(0);
  let active = 0; // owners with depth > 0
  let sum = 0; // sum over active owners of their index (names the owner when active === 1)
  let prev = 0;
  for (let i = 0; i < events.length; ) {
    const at = events[i]!.at;
    if (active === 1) out[sum] = out[sum]! + (at - prev);
    for (; i < events.length && events[i]!.at === at; i++) {
      const ev = events[i]!;
      const before = depth[ev.owner]!;
      depth[ev.owner] = before + ev.delta;
      if (before === 0 && ev.delta > 0) {
        active++;
        sum += ev.owner;
      } else if (before === 1 && ev.delta < 0) {
        active--;
        sum -= ev.owner;
      }
    }
    prev = at;
  }
  return out;
}

/** One catalog for the sharing check: its name, pages, and forks. */
export interface NamedCatalog {
  name: string;
  pageBlocks: readonly number[];
  forks: readonly CatalogFork[];
}

/**
 * S6: blocks two catalogs share must mean the same thing in both (a catalog page, or the same
 * fork's same block). `extra` are blocks that belong to no catalog (the snapshot table) and may
 * be shared with none. At most `max` findings are listed.
 */
export function sharingFindings(catalogs: readonly NamedCatalog[], extra: readonly { block: number; owner: string }[], max = 100): Finding[] {
  interface Span {
    start: number;
    end: number;
    cat: number;
    /** -1: a catalog page; -2: a block of no catalog; else the fork's index in `keys`. */
    fork: number;
    /** Fork block of `start` (forks). */
    forkStart: number;
    what: string;
  }
  const keys = new Map<string, number>();
  const spans: Span[] = [];
  catalogs.forEach((c, cat) => {
    for (const b of c.pageBlocks) spans.push({ start: b, end: b + 1, cat, fork: -1, forkStart: 0, what: `a catalog page of ${c.name}` });
    for (const f of c.forks) {
      const key = `${f.spcOid}/${f.dbOid}/${f.relNumber}/${f.fork}`;
      let id = keys.get(key);
      if (id === undefined) keys.set(key, (id = keys.size));
      let fb = 0;
      for (const e of f.extents) {
        spans.push({ start: e.startBlock, end: e.startBlock + e.lengthBlocks, cat, fork: id, forkStart: fb, what: `${describeForkKey(f)} of ${c.name}` });
        fb += e.lengthBlocks;
      }
    }
  });
  for (const x of extra) spans.push({ start: x.block, end: x.block + 1, cat: -1, fork: -2, forkStart: 0, what: x.owner });
  spans.sort((a, b) => a.start - b.start);
  const findings: Finding[] = [];
  let reported = 0;
  const seen = new Set<string>();
  const active: Span[] = [];
  for (const s of spans) {
    for (let i = active.length - 1; i >= 0; i--) if (active[i]!.end <= s.start) active.splice(i, 1);
    for (const a of active) {
      if (a.cat === s.cat && a.cat !== -1) continue; // within one catalog: F6's placement check
      const same = a.fork === s.fork && a.fork !== -2 && (a.fork === -1 || a.forkStart - a.start === s.forkStart - s.start);
      if (same) continue;
      const key = `${a.what}|${s.what}`;
      if (seen.has(key)) continue;
      seen.add(key);
      reported++;
      if (findings.length < max) {
        findings.push({ severity: 'error', part: s.what, message: `shares blocks ${s.start}..${Math.min(a.end, s.end) - 1} with ${a.what}, which holds something else there` });
      }
    }
    active.push(s);
  }
  if (reported > max) findings.push({ severity: 'error', part: 'snapshots', message: `${reported} conflicting shares (${max} listed)` });
  return findings;
}
