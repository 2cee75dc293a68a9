/**
 * The catalog as the running volume keeps it: leaf pages in key order, each knowing which forks
 * it describes, and which of them changed since the last capture. `build` writes a new catalog
 * in proportion to what changed: the changed leaves (repacked) and the index chain; every other
 * leaf is referenced where it already is (copy-on-write pages, as in LMDB).
 *
 * Invariants (checkInvariants() verifies T1-T3):
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

export class CatalogTree {
  readonly blockSize: number;
  readonly #leafBytes: number;
  readonly #extentsMax: number;
  #pages: CatPage[] = [];
  /** Index pages of the newest built catalog. */
  #indexBlocks: number[];
  #forkCount = 0;

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
      const page: CatPage = { block: leaf.block, crc: leaf.crc, lo: { spcOid: first.spcOid, dbOid: first.dbOid, relNumber: first.relNumber, fork: first.fork, firstBlock: first.firstBlock }, forks: [], dirty: false };
      for (const it of leaf.items) {
        if (it.firstBlock === 0) f = forks[next++];
        assert(f !== undefined && compareRef(f, it) === 0, 'the forks are given in catalog order');
        if (page.forks[page.forks.length - 1] !== f) page.forks.push(f);
        addPage(f, page);
      }
      this.#pages.push(page);
    }
    assert(next === forks.length, 'every fork given has items');
    this.#forkCount = forks.length;
  }

  get forkCount(): number {
    return this.#forkCount;
  }

  get indexPageCount(): number {
    return this.#indexBlocks.length;
  }

  get leafCount(): number {
    return this.#pages.length;
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
      const page: CatPage = { block: -1, crc: 0, lo: loOf(f, 0), forks: [f], dirty: true };
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
    const shares = (a: CatPage, b: CatPage): boolean => a.forks.length > 0 && b.forks.length > 0 && a.forks[a.forks.length - 1]!.key === b.forks[0]!.key;
    for (let i = 1; i < this.#pages.length; i++) if (this.#pages[i - 1]!.dirty && shares(this.#pages[i - 1]!, this.#pages[i]!)) this.#pages[i]!.dirty = true;
    for (let i = this.#pages.length - 2; i >= 0; i--) if (this.#pages[i + 1]!.dirty && shares(this.#pages[i]!, this.#pages[i + 1]!)) this.#pages[i]!.dirty = true;
  }

  /**
   * Write the catalog as of now (T3). `alloc()` returns a free block; `generation` is the one
   * the superblock will carry.
   */
  build(generation: number, src: CatalogSource, alloc: () => number): BuiltCatalog {
    const writes: { block: number; bytes: Uint8Array }[] = [];
    const replaced: number[] = [];
    const newPages: CatPage[] = [];
    const out: CatPage[] = [];
    this.#spreadDirty();
    let i = 0;
    while (i < this.#pages.length) {
      if (!this.#pages[i]!.dirty) {
        out.push(this.#pages[i++]!);
        continue;
      }
      // A run of consecutive dirty pages; a small result absorbs the next clean page too, so
      // leaves emptied by drops merge instead of lingering one fork each.
      let j = i;
      while (j < this.#pages.length && this.#pages[j]!.dirty) j++;
      let items = this.#itemsOf(this.#pages.slice(i, j), src);
      while (j < this.#pages.length && this.#bytesOf(items) < this.#leafBytes / 4) {
        items = items.concat(this.#itemsOf([this.#pages[j]!], src));
        j++;
      }
      // The run's last page may end inside a fork that continues in the next page: take it too.
      while (j < this.#pages.length && this.#pages[j]!.forks.length > 0 && this.#pages[j]!.forks[0]!.key === this.#pages[j - 1]!.forks[this.#pages[j - 1]!.forks.length - 1]?.key) {
        items = items.concat(this.#itemsOf([this.#pages[j]!], src));
        j++;
      }
      for (let k = i; k < j; k++) {
        const p = this.#pages[k]!;
        if (p.block >= 0) replaced.push(p.block);
      }
      for (const p of this.#pack(items, generation, alloc, writes)) {
        out.push(p);
        newPages.push(p);
      }
      i = j;
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

  /** The items of the pages' forks as they are now, each with the fork it belongs to. */
  #itemsOf(pages: readonly CatPage[], src: CatalogSource): Owned[] {
    const items: Owned[] = [];
    let last: ForkRef | undefined;
    for (const p of pages) {
      for (const f of p.forks) {
        if (f === last) continue; // a fork spanning two pages of the run
        last = f;
        for (const item of forkItems(src.forkMap(f), this.#extentsMax)) items.push({ item, owner: f });
      }
    }
    return items;
  }

  #bytesOf(items: readonly Owned[]): number {
    let n = 0;
    for (const it of items) n += itemBytes(it.item.extents.length);
    return n;
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
      pages.push({ block, crc: crc32c(bytes), lo: { spcOid: first.spcOid, dbOid: first.dbOid, relNumber: first.relNumber, fork: first.fork, firstBlock: first.firstBlock }, forks, dirty: false });
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
   * Blocks a build could need now at most: every leaf rewritten (the items of all forks, with
   * `extents` extents in all, packed into pages, plus one page per dirty run for the partly
   * filled page each run ends with) and the index chain over them.
   */
  static blocksForBuild(blockSize: number, forks: number, extents: number, leafPagesNow: number): number {
    const bytes = (forks + Math.ceil(extents / itemExtentsMax(blockSize))) * ITEM_HEADER_BYTES + extents * EXTENT_BYTES;
    const leaves = Math.ceil(bytes / (blockSize - PAGE_HEADER_BYTES)) + leafPagesNow + 1;
    return leaves + Math.ceil(leaves / indexEntriesMax(blockSize)) + 1;
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
  }
}
