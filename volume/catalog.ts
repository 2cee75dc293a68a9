/**
 * The catalog as the running volume keeps it: leaf pages in key order, each knowing which forks
 * it describes, and which of them changed since the last capture. `build` writes a new catalog
 * in proportion to what changed: the changed leaves (repacked) and the index chain; every other
 * leaf is referenced where it already is (copy-on-write pages, as in LMDB).
 *
 * Invariants (checkInvariants() verifies T1, T2 and T4):
 *  T1 `#pages` is in key order: page i's forks all sort before page i+1's, a fork's items may
 *     span consecutive pages (a fork too large for one page), and every fork of the volume is in
 *     the pages listed for it in `#forkPages`, which are exactly the pages holding it.
 *  T2 A page with `block === -1` (never written, or its write was abandoned) is dirty.
 *  T3 `build` is synchronous: the catalog it returns describes the forks exactly as they were
 *     when it ran (the capture instant). It takes new blocks from `alloc` and reports the blocks
 *     it stopped referencing (`replaced`); the caller frees those once the catalog naming them
 *     is no longer durable (V3 of volume.ts). If the new catalog is never published, `abandon`
 *     marks its pages dirty and blockless again and returns their blocks (free at once: no
 *     superblock ever named them).
 *  T4 Two adjacent leaves never fit in one (the B-tree merge rule): after every build, the bytes
 *     of leaf i and leaf i+1 together exceed a leaf's room. Greedy packing gives it inside a run
 *     of rewritten leaves; `build` restores it where a rewritten leaf meets a kept one by taking
 *     the kept one into the rewrite. So a catalog whose items take P leaves' worth of bytes has
 *     at most 2P - 1 leaves, whatever its history, and `maxBlocks` bounds it from the fork count
 *     and the blocks of all forks alone (what V5 of volume.ts reserves).
 *
 * Metadata per checkpoint: the leaves holding changed forks plus every index page. An index
 * entry is 32 bytes (255 per 8 KiB page), so 100,000 forks of one extent each, packed into 491
 * leaves at 8 KiB, need 2 index pages: a checkpoint that rewrote one page of one fork writes
 * 1 leaf + 2 index pages, 24 KiB (test/volume-format.test.ts); 64 KiB would allow 7 index pages,
 * 1785 leaves. A base-plus-delta log would write less on most checkpoints but all
 * of the base whenever it folds; the tree's cost per checkpoint has no such spike.
 */
import { assert, crc32c } from '../engine/index.js';
import type { CatalogFork, CatalogItem, ForkKey, IndexEntry } from './format.js';
import {
  EXTENT_BYTES,
  ITEM_HEADER_BYTES,
  PAGE_HEADER_BYTES,
  compareForkKeys,
  encodeIndexPage,
  encodeLeafPage,
  forkItems,
  indexEntriesMax,
  itemBytes,
  itemExtentsMax,
} from './format.js';

/**
 * A fork as the tree knows it: the volume's own fork object (ForkState), which carries the
 * pages the tree put it in (`catPages`: one page, or several for a fork too large for one; null
 * when dropped). Keeping them on the fork spares a map of 100,000 entries and its lookups.
 */
export interface ForkRef {
  readonly key: string;
  readonly rel: { spcOid: number; dbOid: number; relNumber: number };
  readonly fork: number;
  catPages: CatPage | CatPage[] | null;
}

export interface CatPage {
  /** The page's block, or -1 when it has none yet (T2). */
  block: number;
  crc: number;
  /** Key of its first item (the index entry). */
  lo: ForkKey & { firstBlock: number };
  /** The forks with items in this page, in key order. */
  forks: ForkRef[];
  /** Bytes of its items as written (exact while the page is clean; T4). */
  bytes: number;
  dirty: boolean;
}

/** What the catalog needs from the volume at a capture: a fork's map as it is now. */
export interface CatalogSource {
  /** nblocks and extents holding exactly nblocks blocks (F4). */
  forkMap(ref: ForkRef): CatalogFork;
}

export interface BuiltCatalog {
  /** Pages to write (each one block). */
  writes: { block: number; bytes: Uint8Array }[];
  indexBlock: number;
  indexCrc: number;
  indexPages: number;
  leafPages: number;
  forkCount: number;
  /** Blocks of pages the previous catalog referenced and this one does not. */
  replaced: number[];
  /** Pages of this build, for `abandon`. */
  readonly newPages: readonly CatPage[];
  readonly indexBlocks: readonly number[];
}

/** compareForkKeys for a ForkRef, without making a key object. */
function compareRef(a: ForkRef, k: ForkKey): number {
  return a.rel.spcOid - k.spcOid || a.rel.dbOid - k.dbOid || a.rel.relNumber - k.relNumber || a.fork - k.fork;
}

function loOf(f: ForkRef, firstBlock: number): ForkKey & { firstBlock: number } {
  return { spcOid: f.rel.spcOid, dbOid: f.rel.dbOid, relNumber: f.rel.relNumber, fork: f.fork, firstBlock };
}

function pagesOf(f: ForkRef): readonly CatPage[] {
  const p = f.catPages;
  return p === null ? [] : Array.isArray(p) ? p : [p];
}

function addPage(f: ForkRef, page: CatPage): void {
  const p = f.catPages;
  if (p === null) f.catPages = page;
  else if (Array.isArray(p)) {
    if (p[p.length - 1] !== page) p.push(page);
  } else if (p !== page) f.catPages = [p, page];
}

/** An item and the fork it belongs to. */
interface Owned {
  item: CatalogItem;
  owner: ForkRef;
}

/** Pages a build rewrites: the items they will hold and the pages they replace. */
interface ItemsSeg {
  kind: 'items';
  items: Owned[];
  pages: CatPage[];
}

/** A build's segment of the leaf list: pages kept as they are, or items to repack. */
type Seg = { kind: 'kept'; pages: CatPage[] } | ItemsSeg;

/** A fork continues from page a into page b. */
function sharesFork(a: CatPage, b: CatPage): boolean {
  return a.forks.length > 0 && b.forks.length > 0 && a.forks[a.forks.length - 1] === b.forks[0];
}

export class CatalogTree {
  readonly blockSize: number;
  readonly #leafBytes: number;
  readonly #extentsMax: number;
  #pages: CatPage[] = [];
  /** Index pages of the newest built catalog. */
  #indexBlocks: number[];
  #forkCount = 0;
  #version = 0;

  /**
   * From an examined catalog: `leaves` in index order with their items, `indexBlocks` the chain,
   * and `forks` the volume's fork objects in catalog order (one per fork the items make: a fork
   * starts at its item with firstBlock 0, F4).
   */
  constructor(blockSize: number, leaves: readonly { block: number; crc: number; items: readonly CatalogItem[] }[], indexBlocks: readonly number[], forks: readonly ForkRef[]) {
    this.blockSize = blockSize;
    this.#leafBytes = blockSize - PAGE_HEADER_BYTES;
    this.#extentsMax = itemExtentsMax(blockSize);
    this.#indexBlocks = [...indexBlocks];
    let next = 0;
    let f: ForkRef | undefined;
    for (const leaf of leaves) {
      const first = leaf.items[0]!;
      const page: CatPage = { block: leaf.block, crc: leaf.crc, lo: { spcOid: first.spcOid, dbOid: first.dbOid, relNumber: first.relNumber, fork: first.fork, firstBlock: first.firstBlock }, forks: [], bytes: 0, dirty: false };
      for (const it of leaf.items) {
        page.bytes += itemBytes(it.extents.length);
        if (it.firstBlock === 0) f = forks[next++];
        assert(f !== undefined && compareRef(f, it) === 0, 'the forks are given in catalog order');
        if (page.forks[page.forks.length - 1] !== f) page.forks.push(f);
        addPage(f, page);
      }
      this.#pages.push(page);
    }
    assert(next === forks.length, 'every fork given has items');
    this.#forkCount = forks.length;
    // T4 for a catalog some other writer left: neighbours that fit in one leaf are rewritten at
    // the next build, so the bound holds from then on.
    for (let k = 0; k + 1 < this.#pages.length; k++) {
      const a = this.#pages[k]!;
      const b = this.#pages[k + 1]!;
      if (a.bytes + b.bytes <= this.#leafBytes) a.dirty = b.dirty = true;
    }
  }

  get forkCount(): number {
    return this.#forkCount;
  }

  get indexPageCount(): number {
    return this.#indexBlocks.length;
  }

  /** Grows at every build and abandon: what the pages are can only change then. */
  get version(): number {
    return this.#version;
  }

  get leafCount(): number {
    return this.#pages.length;
  }

  /** Blocks of the newest built catalog (leaves that have a block, and the index chain). */
  get pageCount(): number {
    let n = this.#indexBlocks.length;
    for (const p of this.#pages) if (p.block >= 0) n++;
    return n;
  }

  get dirty(): boolean {
    return this.#pages.some((p) => p.dirty) || this.#indexBlocks.length === 0;
  }

  /** Every block the newest built catalog references (index chain and leaves). */
  pageBlocks(): number[] {
    const out = [...this.#indexBlocks];
    for (const p of this.#pages) if (p.block >= 0) out.push(p.block);
    return out;
  }

  /** Index of the page a new fork with key `k` goes to: the last whose first key is <= k. */
  #pageFor(k: ForkKey): number {
    let lo = 0;
    let hi = this.#pages.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (compareForkKeys(this.#pages[mid]!.lo, k) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** A fork was created: it goes into the page its key belongs to (T1). */
  addFork(f: ForkRef): void {
    assert(f.catPages === null, `fork ${f.key} is new to the catalog`);
    this.#forkCount++;
    const k: ForkKey = { spcOid: f.rel.spcOid, dbOid: f.rel.dbOid, relNumber: f.rel.relNumber, fork: f.fork };
    if (this.#pages.length === 0) {
      const page: CatPage = { block: -1, crc: 0, lo: loOf(f, 0), forks: [f], bytes: 0, dirty: true };
      this.#pages.push(page);
      f.catPages = page;
      return;
    }
    const page = this.#pages[this.#pageFor(k)]!;
    // Insert in key order: the forks of a page are few (a page's worth), a linear search is fine.
    let i = page.forks.length;
    while (i > 0 && compareRef(page.forks[i - 1]!, k) > 0) i--;
    page.forks.splice(i, 0, f);
    if (compareForkKeys(k, page.lo) < 0) page.lo = loOf(f, 0);
    page.dirty = true;
    f.catPages = page;
  }

  /** A fork's map, size or existence changed: its pages are rewritten at the next build. */
  touch(f: ForkRef): void {
    const p = f.catPages;
    assert(p !== null, `fork ${f.key} is in the catalog`);
    if (Array.isArray(p)) for (const x of p) x.dirty = true;
    else p.dirty = true;
  }

  /** A fork was dropped: its pages lose it and are rewritten at the next build. */
  removeFork(f: ForkRef): void {
    const pages = pagesOf(f);
    assert(pages.length > 0, `fork ${f.key} is in the catalog`);
    for (const p of pages) {
      p.forks = p.forks.filter((x) => x !== f);
      p.dirty = true;
    }
    f.catPages = null;
    this.#forkCount--;
  }

  /**
   * Pages sharing a fork are rewritten together (a fork's items are cut afresh from its whole
   * map): spread dirtiness to neighbours that share a fork with a dirty page.
   */
  #spreadDirty(): void {
    const shares = sharesFork;
    for (let i = 1; i < this.#pages.length; i++) if (this.#pages[i - 1]!.dirty && shares(this.#pages[i - 1]!, this.#pages[i]!)) this.#pages[i]!.dirty = true;
    for (let i = this.#pages.length - 2; i >= 0; i--) if (this.#pages[i + 1]!.dirty && shares(this.#pages[i]!, this.#pages[i + 1]!)) this.#pages[i]!.dirty = true;
  }

  /**
   * Write the catalog as of now (T3). `alloc()` returns a free block; `generation` is the one
   * the superblock will carry.
   */
  build(generation: number, src: CatalogSource, alloc: () => number): BuiltCatalog {
    this.#version++;
    const writes: { block: number; bytes: Uint8Array }[] = [];
    const replaced: number[] = [];
    const newPages: CatPage[] = [];
    const out: CatPage[] = [];
    this.#spreadDirty();
    // The new leaf list as segments: kept pages (a clean page, with the clean pages a fork it
    // holds spans) and runs of items to repack (the dirty pages' forks as they are now).
    const segs: Seg[] = [];
    for (let i = 0; i < this.#pages.length; ) {
      const p = this.#pages[i]!;
      const last = segs[segs.length - 1];
      if (p.dirty) {
        const items = this.#itemsOf([p], src, last?.kind === 'items' ? last.items : null);
        if (last?.kind === 'items') last.items.push(...items);
        else segs.push({ kind: 'items', items, pages: [] });
        (segs[segs.length - 1] as ItemsSeg).pages.push(p);
      } else if (last?.kind === 'kept' && sharesFork(last.pages[last.pages.length - 1]!, p)) last.pages.push(p);
      else segs.push({ kind: 'kept', pages: [p] });
      i++;
    }
    this.#mergeNeighbours(segs, src);
    for (const seg of segs) {
      if (seg.kind === 'kept') {
        out.push(...seg.pages);
        continue;
      }
      for (const p of seg.pages) if (p.block >= 0) replaced.push(p.block);
      for (const p of this.#pack(seg.items, generation, alloc, writes)) {
        out.push(p);
        newPages.push(p);
      }
    }
    this.#pages = out;
    // Fork -> pages, for the pages just made (the others did not change).
    for (const p of newPages) for (const f of p.forks) f.catPages = null;
    for (const p of newPages) for (const f of p.forks) addPage(f, p);
    // The index chain, written last to first: each page carries the next one's CRC.
    const entries: IndexEntry[] = this.#pages.map((p) => ({ ...p.lo, block: p.block, crc: p.crc }));
    const perPage = indexEntriesMax(this.blockSize);
    const pageCount = Math.max(1, Math.ceil(entries.length / perPage));
    replaced.push(...this.#indexBlocks);
    const blocks = Array.from({ length: pageCount }, () => alloc());
    let next: { block: number; crc: number } | null = null;
    for (let k = pageCount - 1; k >= 0; k--) {
      const bytes = encodeIndexPage({ generation, entries: entries.slice(k * perPage, (k + 1) * perPage), next }, this.blockSize);
      next = { block: blocks[k]!, crc: crc32c(bytes) };
      writes.push({ block: blocks[k]!, bytes });
    }
    this.#indexBlocks = blocks;
    return { writes, indexBlock: next!.block, indexCrc: next!.crc, indexPages: pageCount, leafPages: this.#pages.length, forkCount: this.#forkCount, replaced, newPages, indexBlocks: blocks };
  }

  /** T3: a built catalog was never published. Its pages need writing again; returns its blocks. */
  abandon(built: BuiltCatalog): number[] {
    this.#version++;
    const blocks: number[] = [...built.indexBlocks];
    const live = new Set(this.#pages);
    for (const p of built.newPages) {
      if (p.block >= 0 && live.has(p)) {
        blocks.push(p.block);
        p.block = -1;
        p.dirty = true;
      }
    }
    if (this.#indexBlocks === built.indexBlocks) this.#indexBlocks = [];
    return blocks;
  }

  /**
   * The items of the pages' forks as they are now, each with the fork it belongs to. `before`,
   * the items these follow, ends with a fork spanning into the first page: it is not repeated.
   */
  #itemsOf(pages: readonly CatPage[], src: CatalogSource, before: readonly Owned[] | null = null): Owned[] {
    const items: Owned[] = [];
    let last: ForkRef | undefined = before !== null && before.length > 0 ? before[before.length - 1]!.owner : undefined;
    for (const p of pages) {
      for (const f of p.forks) {
        if (f === last) continue; // a fork spanning two pages of the run
        last = f;
        for (const item of forkItems(src.forkMap(f), this.#extentsMax)) items.push({ item, owner: f });
      }
    }
    return items;
  }

  /** Bytes of each page greedy packing makes of `items` (what #pack writes). */
  #layout(items: readonly Owned[]): number[] {
    const pages: number[] = [];
    let used = 0;
    for (const o of items) {
      const n = itemBytes(o.item.extents.length);
      if (used > 0 && used + n > this.#leafBytes) {
        pages.push(used);
        used = 0;
      }
      used += n;
    }
    if (used > 0) pages.push(used);
    return pages;
  }

  /**
   * T4 where repacked items meet kept pages: a kept neighbour that would share a leaf with the
   * run's first or last new leaf joins the run; a run left with no items (its forks dropped)
   * joins its two kept neighbours when they fit in one leaf. Repeats until no pair fits (each
   * step turns kept pages into items, so it ends).
   */
  #mergeNeighbours(segs: Seg[], src: CatalogSource): void {
    const room = this.#leafBytes;
    for (let k = 0; k < segs.length; k++) {
      const s = segs[k]!;
      if (s.kind !== 'items') continue;
      const prev = segs[k - 1];
      const next = segs[k + 1];
      const lay = this.#layout(s.items);
      const head = lay.length > 0 ? lay[0]! : prev?.kind === 'kept' ? prev.pages[prev.pages.length - 1]!.bytes : room + 1;
      const tail = lay.length > 0 ? lay[lay.length - 1]! : head;
      if (next?.kind === 'kept' && tail + next.pages[0]!.bytes <= room) {
        this.#absorb(s, next, src, 'after');
        segs.splice(k + 1, 1);
        const after = segs[k + 1];
        if (after?.kind === 'items') {
          this.#absorb(s, after, src, 'after');
          segs.splice(k + 1, 1);
        }
        k--; // look at this run again
      } else if (prev?.kind === 'kept' && lay.length > 0 && prev.pages[prev.pages.length - 1]!.bytes + head <= room) {
        this.#absorb(s, prev, src, 'before');
        segs.splice(--k, 1);
        const before = segs[k - 1];
        if (before?.kind === 'items') {
          this.#absorb(s, before, src, 'before');
          segs.splice(--k, 1);
        }
        k--;
      }
    }
  }

  /** Segment `o`, next to run `s` (before or after it), joins the run. */
  #absorb(s: ItemsSeg, o: Seg, src: CatalogSource, where: 'before' | 'after'): void {
    const items = o.kind === 'items' ? o.items : this.#itemsOf(o.pages, src);
    if (where === 'after') {
      s.items.push(...items);
      s.pages.push(...o.pages);
    } else {
      s.items = items.concat(s.items);
      s.pages = o.pages.concat(s.pages);
    }
  }

  /** Pack items into full pages (greedy, key order), write them, and return the pages. */
  #pack(items: readonly Owned[], generation: number, alloc: () => number, writes: { block: number; bytes: Uint8Array }[]): CatPage[] {
    const pages: CatPage[] = [];
    let cur: Owned[] = [];
    let used = 0;
    const flush = (): void => {
      if (cur.length === 0) return;
      const bytes = encodeLeafPage({ generation, items: cur.map((o) => o.item) }, this.blockSize);
      const block = alloc();
      writes.push({ block, bytes });
      const first = cur[0]!.item;
      const forks: ForkRef[] = [];
      for (const o of cur) if (forks[forks.length - 1] !== o.owner) forks.push(o.owner);
      pages.push({ block, crc: crc32c(bytes), lo: { spcOid: first.spcOid, dbOid: first.dbOid, relNumber: first.relNumber, fork: first.fork, firstBlock: first.firstBlock }, forks, bytes: used, dirty: false });
      cur = [];
      used = 0;
    };
    for (const o of items) {
      const n = itemBytes(o.item.extents.length);
      if (used + n > this.#leafBytes) flush();
      cur.push(o);
      used += n;
    }
    flush();
    return pages;
  }

  /**
   * The most blocks a catalog of `forks` forks holding `blocks` blocks in all can take, and so the
   * most any build of it writes (T4). A catalog extent holds at least one block (F4 records
   * exactly nblocks), so there are at most `blocks` extents, cut into at most
   * forks + ceil(blocks / itemExtentsMax) items; P leaves' worth of item bytes make at most
   * 2P - 1 leaves, and the index chain names them. It depends on neither the leaves there are
   * now nor the extent count, which checkpoints change, so the reserve built on it (V5 of
   * volume.ts) stays enough across checkpoints.
   */
  static maxBlocks(blockSize: number, forks: number, blocks: number): number {
    const items = forks + Math.ceil(blocks / itemExtentsMax(blockSize));
    const bytes = items * ITEM_HEADER_BYTES + blocks * EXTENT_BYTES;
    const leaves = Math.max(0, 2 * Math.ceil(bytes / (blockSize - PAGE_HEADER_BYTES)) - 1);
    return leaves + Math.max(1, Math.ceil(leaves / indexEntriesMax(blockSize)));
  }

  /** T1-T2, for the volume's forks `forks`. */
  checkInvariants(forks: Iterable<ForkRef>): void {
    let n = 0;
    for (const f of forks) {
      n++;
      const pages = pagesOf(f);
      assert(pages.length > 0, `T1: fork ${f.key} is in a page`);
      for (const p of pages) assert(p.forks.includes(f), `T1: fork ${f.key} is listed by its page`);
    }
    assert(n === this.#forkCount, 'T1: the tree knows every fork once');
    for (const p of this.#pages) assert(p.block >= 0 || p.dirty, 'T2: a page without a block is dirty');
    for (let k = 0; k + 1 < this.#pages.length; k++) {
      const a = this.#pages[k]!;
      const b = this.#pages[k + 1]!;
      assert(a.dirty || b.dirty || a.bytes + b.bytes > this.#leafBytes, 'T4: two clean neighbours never fit in one leaf');
    }
  }
}
