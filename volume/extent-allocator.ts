/**
 * The extent allocator: free space of a volume as runs of blocks, the placement policy (where
 * relocated pages, grown forks and catalog pages go), and space waiting for a checkpoint before
 * it may be reused.
 *
 * Invariants (checkInvariants() verifies them; tests call it after every step):
 *  A1 Free runs are disjoint, non-empty, never adjacent (adjacent runs are merged on release),
 *     and lie inside [METADATA_BLOCKS, volumeBlocks).
 *  A2 `#byStart` and `#bySize` hold the same runs, ordered by start and by (length, start);
 *     `freeBlocks` is the sum of their lengths.
 *  A3 Space a durable or published catalog may still reference (a relocated page's old block, a
 *     truncated or dropped fork's blocks, a replaced catalog page) goes to `pending`, tagged with
 *     the first capture that no longer references it. It returns to the free runs only through
 *     `releaseUpTo(c)`, called once the superblock of capture c is durable: until then a crash
 *     must find the old pages there (F5).
 *  A4 Placement (the policy lives here): a checkpoint's pages go to `takeStream`, which continues
 *     where the last stream stopped while that run lasts, then takes the largest free run, so a
 *     checkpoint becomes as few sequential runs as free space allows; catalog pages take the
 *     smallest run (`takeOne`: they fill holes and leave long runs for data); a growing fork
 *     takes the space right after its last extent when free, else the best fit (volume.ts).
 *     The reserve that keeps a checkpoint possible is a number of free blocks, wherever they
 *     are (every catalog page is one block), checked by the volume (V5).
 *  A5 Blocks a snapshot holds (snapshots.ts S3, `setHeld`) are never free: `give` (and so
 *     `releaseUpTo` and `grow`) returns only the parts of a range that no snapshot holds; the
 *     rest stays with the snapshots until one that is dropped lets them go.
 *
 * Costs: best fit and in-place lookup are binary searches, O(log runs); taking or releasing a
 * run is a binary search plus an array splice.
 */
import { assert } from '../engine/index.js';
import type { Extent } from './format.js';
import { METADATA_BLOCKS } from './format.js';

/** What the free space needs of the snapshots' blocks (snapshots.ts HeldSet). */
export interface HeldBlocks {
  readonly empty: boolean;
  unheld(start: number, length: number): Extent[];
  countIn(start: number, length: number): number;
}

interface Run {
  start: number;
  length: number;
}

function bySizeCmp(a: Run, b: Run): number {
  return a.length - b.length || a.start - b.start;
}

/** Index of the first element for which `before(el)` is false (elements ordered). */
function lowerBound<T>(arr: readonly T[], before: (el: T) => boolean): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(arr[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface PendingFree extends Extent {
  /** The first capture whose catalog no longer references this space (A3). */
  version: number;
}

export class FreeSpace {
  /** The data area ends here; only `grow` moves it (never down). */
  #volumeBlocks: number;
  #byStart: Run[] = [];
  #bySize: Run[] = [];
  #pending: PendingFree[] = [];
  /** A5: blocks the snapshots hold; null when there are none. */
  #held: HeldBlocks | null = null;
  freeBlocks = 0;

  /** Free space = every block from METADATA_BLOCKS up that `used` does not cover. */
  constructor(volumeBlocks: number, used: readonly Extent[]) {
    this.#volumeBlocks = volumeBlocks;
    const sorted = [...used].sort((a, b) => a.startBlock - b.startBlock);
    let at = METADATA_BLOCKS;
    for (const u of sorted) {
      assert(u.startBlock >= at, `used extents do not overlap (block ${u.startBlock})`);
      if (u.startBlock > at) this.#insert({ start: at, length: u.startBlock - at });
      at = u.startBlock + u.lengthBlocks;
    }
    assert(at <= volumeBlocks, 'used extents lie inside the volume');
    if (at < volumeBlocks) this.#insert({ start: at, length: volumeBlocks - at });
  }

  get volumeBlocks(): number {
    return this.#volumeBlocks;
  }

  /**
   * The volume grew to `volumeBlocks` (volume.ts V6): the new tail becomes one free run, joined
   * to the last run when that one reaches the old end (A1 stays true: runs never adjacent).
   */
  grow(volumeBlocks: number): void {
    assert(Number.isSafeInteger(volumeBlocks) && volumeBlocks > this.#volumeBlocks, `a volume grows (${this.#volumeBlocks} -> ${volumeBlocks} blocks)`);
    const oldBlocks = this.#volumeBlocks;
    this.#volumeBlocks = volumeBlocks;
    this.give(oldBlocks, volumeBlocks - oldBlocks);
  }

  get runCount(): number {
    return this.#byStart.length;
  }

  get pendingBlocks(): number {
    let n = 0;
    for (const p of this.#pending) n += p.lengthBlocks;
    return n;
  }

  pendingList(): readonly PendingFree[] {
    return this.#pending;
  }

  /** Free runs in volume order (copies). */
  runs(): Extent[] {
    return this.#byStart.map((r) => ({ startBlock: r.start, lengthBlocks: r.length }));
  }

  largestRunBlocks(): number {
    return this.#bySize[this.#bySize.length - 1]?.length ?? 0;
  }

  #insert(r: Run): void {
    this.#byStart.splice(lowerBound(this.#byStart, (x) => x.start < r.start), 0, r);
    this.#bySize.splice(lowerBound(this.#bySize, (x) => bySizeCmp(x, r) < 0), 0, r);
    this.freeBlocks += r.length;
  }

  #remove(r: Run): void {
    const i = lowerBound(this.#byStart, (x) => x.start < r.start);
    assert(this.#byStart[i] === r, 'run found by start');
    this.#byStart.splice(i, 1);
    const j = lowerBound(this.#bySize, (x) => bySizeCmp(x, r) < 0);
    assert(this.#bySize[j] === r, 'run found by size');
    this.#bySize.splice(j, 1);
    this.freeBlocks -= r.length;
  }

  /** The free run containing `block`, if any. */
  runContaining(block: number): Run | undefined {
    const i = lowerBound(this.#byStart, (x) => x.start <= block) - 1;
    const r = this.#byStart[i];
    return r && block < r.start + r.length ? r : undefined;
  }

  /** Smallest run of at least `n` blocks, lowest start among equals. */
  bestFit(n: number): Run | undefined {
    return this.#bySize[lowerBound(this.#bySize, (x) => x.length < n)];
  }

  /** Remove [start, start+length) from the free space; it must lie inside one free run. */
  take(startBlock: number, lengthBlocks: number): void {
    assert(lengthBlocks >= 1, 'take at least one block');
    const r = this.runContaining(startBlock);
    assert(r !== undefined && startBlock + lengthBlocks <= r.start + r.length, `blocks ${startBlock}+${lengthBlocks} are free`);
    this.#remove(r);
    if (startBlock > r.start) this.#insert({ start: r.start, length: startBlock - r.start });
    const end = startBlock + lengthBlocks;
    if (end < r.start + r.length) this.#insert({ start: end, length: r.start + r.length - end });
  }

  /** A5: from now on, `held` blocks are never returned to the free runs. */
  setHeld(held: HeldBlocks | null): void {
    this.#held = held !== null && !held.empty ? held : null;
    if (this.#held) for (const r of this.#byStart) assert(this.#held.countIn(r.start, r.length) === 0, `A5: free blocks ${r.start}.. are not held by a snapshot`);
  }

  /** Return space to the free runs at once (only for space no durable catalog references), except what a snapshot holds (A5). */
  give(startBlock: number, lengthBlocks: number): void {
    if (this.#held === null) return this.#give(startBlock, lengthBlocks);
    for (const piece of this.#held.unheld(startBlock, lengthBlocks)) this.#give(piece.startBlock, piece.lengthBlocks);
  }

  #give(startBlock: number, lengthBlocks: number): void {
    assert(lengthBlocks >= 1 && startBlock >= METADATA_BLOCKS && startBlock + lengthBlocks <= this.#volumeBlocks, 'given space lies inside the data area');
    let start = startBlock;
    let length = lengthBlocks;
    const i = lowerBound(this.#byStart, (x) => x.start < start);
    const prev = this.#byStart[i - 1];
    const next = this.#byStart[i];
    assert(!prev || prev.start + prev.length <= start, `released blocks ${start}.. are not already free`);
    assert(!next || start + length <= next.start, `released blocks ..${start + length - 1} are not already free`);
    if (prev && prev.start + prev.length === start) {
      this.#remove(prev);
      start = prev.start;
      length += prev.length;
    }
    if (next && startBlock + lengthBlocks === next.start) {
      this.#remove(next);
      length += next.length;
    }
    this.#insert({ start, length });
  }

  /** Space the durable or a published catalog may reference until capture `version` is durable (A3). */
  deferFree(extent: Extent, version: number): void {
    assert(extent.lengthBlocks >= 1, 'deferred extent is not empty');
    // A checkpoint relocates a fork's consecutive blocks one after another: extend the last entry.
    const last = this.#pending[this.#pending.length - 1];
    if (last && last.version === version && last.startBlock + last.lengthBlocks === extent.startBlock) last.lengthBlocks += extent.lengthBlocks;
    else this.#pending.push({ startBlock: extent.startBlock, lengthBlocks: extent.lengthBlocks, version });
  }

  /** The superblock of capture `version` is durable: reuse what it no longer references (A3). */
  releaseUpTo(version: number): number {
    let released = 0;
    const keep: PendingFree[] = [];
    const go: PendingFree[] = [];
    for (const p of this.#pending) (p.version <= version ? go : keep).push(p);
    // In volume order, adjacent pieces joined: one give per stretch, not per block.
    go.sort((a, b) => a.startBlock - b.startBlock);
    for (let i = 0; i < go.length; ) {
      const start = go[i]!.startBlock;
      let end = start + go[i]!.lengthBlocks;
      let j = i + 1;
      while (j < go.length && go[j]!.startBlock === end) end += go[j++]!.lengthBlocks;
      this.give(start, end - start);
      released += end - start;
      i = j;
    }
    this.#pending = keep;
    return released;
  }

  /**
   * A4: `n` blocks for a stream of pages, as runs in the order to fill them. Where the last
   * stream stopped (`cursor`) when the rest of that run holds all `n` (consecutive batches of
   * one checkpoint stay one run), else the lowest run that holds them (first fit: the space the
   * checkpoint before last gave back is reused first, so the volume's working set stays compact
   * and warm in the page cache instead of wandering over the whole file), else as much as the
   * cursor's run holds and then the largest runs in turn. Returns the runs and the new cursor;
   * the caller checked that `n <= freeBlocks`.
   */
  takeStream(n: number, cursor: number): { runs: Extent[]; cursor: number } {
    assert(n <= this.freeBlocks, 'a stream fits the free space');
    const runs: Extent[] = [];
    const here = this.runContaining(cursor);
    let at = cursor;
    if (!here || here.start + here.length - cursor < n) {
      const first = this.largestRunBlocks() >= n ? this.#byStart.find((r) => r.length >= n) : undefined;
      if (first) at = first.start;
    }
    while (n > 0) {
      let r = this.runContaining(at);
      if (!r) {
        r = this.#bySize[this.#bySize.length - 1]!;
        at = r.start;
      }
      const len = Math.min(n, r.start + r.length - at);
      this.take(at, len);
      const last = runs[runs.length - 1];
      if (last && last.startBlock + last.lengthBlocks === at) last.lengthBlocks += len;
      else runs.push({ startBlock: at, lengthBlocks: len });
      at += len;
      n -= len;
    }
    return { runs, cursor: at };
  }

  /**
   * How many runs `takeStream(n, cursor)` would take now, counted up to `limit + 1` (the caller
   * only asks whether it stays within `limit`); takes nothing. It follows takeStream: one run when
   * the cursor's run or the largest holds `n`, else the rest of the cursor's run and then the
   * largest runs in turn (the part of the cursor's run before the cursor among them).
   */
  streamRunCount(n: number, cursor: number, limit: number): number {
    assert(n <= this.freeBlocks, 'a stream fits the free space');
    const here = this.runContaining(cursor);
    if ((here && here.start + here.length - cursor >= n) || this.largestRunBlocks() >= n) return 1;
    let left = n;
    let runs = 0;
    let before = 0;
    if (here) {
      left -= here.start + here.length - cursor;
      runs++;
      before = cursor - here.start;
    }
    for (let i = this.#bySize.length - 1; i >= 0 && left > 0 && runs <= limit; i--) {
      const r = this.#bySize[i]!;
      if (r === here) continue;
      if (before >= r.length) {
        left -= before;
        before = 0;
        i++; // r is still to come
      } else left -= r.length;
      runs++;
    }
    if (left > 0 && before > 0 && runs <= limit) runs++;
    return runs;
  }

  /** A4: one block from the smallest run (catalog pages fill holes). */
  takeOne(): number {
    const r = this.#bySize[0];
    assert(r !== undefined, 'a free block exists');
    const b = r.start;
    this.take(b, 1);
    return b;
  }

  /** A1, A2 and A3's disjointness from free space. */
  checkInvariants(): void {
    assert(this.#byStart.length === this.#bySize.length, 'A2: both orders hold the same runs');
    let sum = 0;
    let prevEnd = -1;
    for (const r of this.#byStart) {
      assert(r.length >= 1, 'A1: runs are non-empty');
      assert(r.start >= METADATA_BLOCKS && r.start + r.length <= this.#volumeBlocks, 'A1: runs inside the data area');
      assert(r.start > prevEnd, `A1: runs disjoint and not adjacent (block ${r.start})`);
      prevEnd = r.start + r.length;
      sum += r.length;
    }
    assert(sum === this.freeBlocks, 'A2: freeBlocks is the sum of the runs');
    for (let i = 1; i < this.#bySize.length; i++) assert(bySizeCmp(this.#bySize[i - 1]!, this.#bySize[i]!) < 0, 'A2: size order');
    for (const p of this.#pending) assert(this.runContaining(p.startBlock) === undefined, 'A3: pending space is not free yet');
  }
}

/**
 * Growth policy: how many blocks a fork with `capacityBlocks` in its extents should get next.
 * Doubling the capacity each time keeps a fork of N blocks in about log2(N/8) extents until the
 * cap, and bounds the space reserved beyond its data by its own size.
 */
export function growthBlocks(capacityBlocks: number, firstBlocks: number, maxBlocks: number): number {
  return Math.min(maxBlocks, Math.max(firstBlocks, capacityBlocks));
}
