/**
 * The durability model shared by the kill -9 loop and the fault loop:
 * what the workload wrote, what the last acknowledged checkpoint made durable, and what a
 * recovered store may legitimately show (DESIGN.md section 8, D1, D2 and D4).
 *
 * A fork is named by a key `storage:relNumber:fork`; its content is the list of page digests
 * (pageDigest) of blocks 0..nblocks-1. The workload tells the model every change BEFORE it makes
 * it (an intent: if the process dies or the call fails, the change may or may not have happened)
 * and every checkpoint it begins and every one that resolved (the ack).
 *
 * Invariants:
 *  CM1 `acked` is the content of every fork at the last acknowledged checkpoint; nothing that
 *      happened after it is in it. After an ack nothing is "since" and nothing is in flight.
 *  CM2 For each fork touched since the ack, `since` holds every digest written to each block,
 *      the smallest and largest nblocks it had, and whether it was dropped.
 *  CM3 Every checkpoint begun since the ack (none resolved) is in flight: its nblocks per fork are
 *      kept, as the volume may have switched its metadata to them before the process died.
 *
 *  CM4 A change whose engine call failed (the fault loop) may or may not have happened: `uncertain`
 *      keeps the image an overwritten block had before it, which the checkpoints begun after it may
 *      hold instead of the intended one.
 *
 * What `verifyVolume` allows after a crash, for all volume forks together (copy-on-write, DESIGN.md
 * section 8 D1-D2 strict for format 2): exactly the acknowledged checkpoint or one in flight, the
 * same forks, nblocks and pages, one of them for the whole volume; a page that fails its checksum
 * (volume torn-detected), pages of two checkpoints (meta-mixed) or anything else (lost) fail.
 *
 * What `verify` allows for an md fork (anything else is counted as lost or meta-mixed):
 *  - a fork in `acked` exists unless it was dropped since; a fork created since may be missing;
 *  - nblocks: unchanged forks exactly the acked nblocks; otherwise anything between the smallest
 *    and largest size it had since (md's segment sizes are whatever the kernel kept or the sync
 *    phase reached: D4 covers only completed checkpoints);
 *  - each block below nblocks reads back as its acked image or as an image written to it since
 *    (D2); a checksum failure only for a block written since (torn-detected), never returned.
 */
import { createHash } from 'node:crypto';
import type { ForkNumber, RelFileLocator } from '../../engine/index.js';

export type StorageName = 'md' | 'volume';

export const DB_OID = 5;
export const SPC_OID = 1663;

/** 16 hex digits of the page's SHA-256: the kill worker computes it the same way. */
export function pageDigest(page: Uint8Array): string {
  return createHash('sha256').update(page).digest('hex').slice(0, 16);
}

export function forkKey(storage: StorageName, relNumber: number, fork: number): string {
  return `${storage}:${relNumber}:${fork}`;
}

export function parseForkKey(key: string): { storage: StorageName; rel: RelFileLocator; relNumber: number; fork: ForkNumber } {
  const [storage, rel, fork] = key.split(':');
  if ((storage !== 'md' && storage !== 'volume') || rel === undefined || fork === undefined) throw new Error(`bad fork key ${key}`);
  const relNumber = Number(rel);
  return { storage, relNumber, rel: { spcOid: SPC_OID, dbOid: DB_OID, relNumber }, fork: Number(fork) as ForkNumber };
}

interface Since {
  written: Map<number, Set<string>>;
  minNblocks: number;
  maxNblocks: number;
  dropped: boolean;
}

/** What one recovered fork looks like; `read(b)` gives the block's digest or 'torn' (CHECKSUM_MISMATCH). */
export interface RecoveredFork {
  exists: boolean;
  nblocks: number;
  read(block: number): Promise<string | 'torn'>;
}

export interface VerifyTally {
  pagesVerified: number;
  lost: number;
  /** md pages written since the acknowledged checkpoint that failed their checksum (allowed). */
  tornDetected: number;
  metaMixed: number;
  /** Volume states judged, volume pages that failed their checksum (never allowed), states at a checkpoint in flight. */
  volumeStates: number;
  volumeTornDetected: number;
  volumeChoseInflight: number;
  failures: string[];
}

export function newTally(): VerifyTally {
  return { pagesVerified: 0, lost: 0, tornDetected: 0, metaMixed: 0, volumeStates: 0, volumeTornDetected: 0, volumeChoseInflight: 0, failures: [] };
}

/** A checkpoint begun and not acknowledged: every fork's digests, and the other image an uncertain block may hold (CM4). */
interface Inflight {
  forks: Map<string, string[]>;
  uncertain: Map<string, string>;
}

export class DurabilityModel {
  /** What the workload believes now (intents applied). */
  readonly cur = new Map<string, string[]>();
  /** CM1. */
  acked = new Map<string, string[]>();
  /** Acks seen in all. */
  acks = 0;
  readonly #since = new Map<string, Since>();
  #inflight: Inflight[] = [];
  /** CM4: `${key}/${block}` -> the image the block had before a change that failed. */
  readonly #uncertain = new Map<string, string>();
  /** The last overwrite of an existing block, for CM4. */
  #lastWrite: { key: string; block: number; before: string } | null = null;

  #touch(key: string): Since {
    let s = this.#since.get(key);
    if (!s) {
      const n = this.acked.get(key)?.length ?? 0;
      s = { written: new Map(), minNblocks: n, maxNblocks: n, dropped: false };
      this.#since.set(key, s);
    }
    return s;
  }

  /** True while a checkpoint has begun and not been acknowledged. */
  get inCheckpoint(): boolean {
    return this.#inflight.length > 0;
  }

  create(key: string): void {
    if (!this.cur.has(key)) this.cur.set(key, []);
    this.#touch(key);
  }

  /** A write of block `block` (an extend when block === nblocks). */
  write(key: string, block: number, digest: string): void {
    const pages = this.cur.get(key);
    if (!pages) throw new Error(`model: write to unknown fork ${key}`);
    if (block > pages.length) throw new Error(`model: write past the end of ${key} (block ${block}, nblocks ${pages.length})`);
    this.#lastWrite = block < pages.length ? { key, block, before: pages[block]! } : null;
    pages[block] = digest;
    const s = this.#touch(key);
    let set = s.written.get(block);
    if (!set) s.written.set(block, (set = new Set()));
    set.add(digest);
    s.maxNblocks = Math.max(s.maxNblocks, pages.length);
  }

  truncate(key: string, nblocks: number): void {
    const pages = this.cur.get(key);
    if (!pages) throw new Error(`model: truncate of unknown fork ${key}`);
    pages.length = Math.min(pages.length, nblocks);
    const s = this.#touch(key);
    s.minNblocks = Math.min(s.minNblocks, nblocks);
  }

  drop(key: string): void {
    this.cur.delete(key);
    const s = this.#touch(key);
    s.dropped = true;
    s.minNblocks = 0;
  }

  /**
   * A change failed: the fork really has `nblocks` blocks (null: it does not exist), which the
   * intent may have overstated. The "since" record keeps what was attempted.
   */
  settle(key: string, nblocks: number | null): void {
    const pages = this.cur.get(key);
    if (!pages) return;
    if (nblocks === null) this.cur.delete(key);
    else if (nblocks < pages.length) pages.length = nblocks;
  }

  /**
   * The change made last failed (CM4): if it overwrote a block, that block may still hold its
   * image from before, in every checkpoint begun from now on.
   */
  lastChangeFailed(): void {
    const w = this.#lastWrite;
    if (w && this.cur.get(w.key)?.[w.block] !== undefined) this.#uncertain.set(`${w.key}/${w.block}`, w.before);
    this.#lastWrite = null;
  }

  /** A checkpoint begins (CM3). */
  begin(): void {
    this.#inflight.push({ forks: new Map([...this.cur].map(([k, v]) => [k, [...v]])), uncertain: new Map(this.#uncertain) });
  }

  /**
   * The checkpoint begun last resolved. `reported`, when given (the kill worker's own digests),
   * must equal the model's current state: the two sides agree on what was acknowledged.
   */
  ack(reported?: Map<string, string[]>): string | null {
    let mismatch: string | null = null;
    if (reported) {
      const keys = new Set([...reported.keys(), ...this.cur.keys()]);
      for (const k of keys) {
        const a = reported.get(k)?.join(',');
        const b = this.cur.get(k)?.join(',');
        if (a !== b) mismatch ??= `ack digests of ${k} differ from the model`;
      }
    }
    this.acked = new Map([...this.cur].map(([k, v]) => [k, [...v]]));
    this.#since.clear();
    this.#inflight = [];
    this.#uncertain.clear();
    this.acks++;
    return mismatch;
  }

  /** Every fork the model knows (current, acknowledged and in flight). */
  keys(): string[] {
    return [...new Set([...this.cur.keys(), ...this.acked.keys(), ...this.#inflight.flatMap((f) => [...f.forks.keys()])])].sort();
  }

  /**
   * Judge every volume fork together (the strict rule in the header); `forks` holds every volume
   * fork of keys(). Returns the digests read of the forks that exist ('torn' for a page that
   * failed its checksum).
   */
  async verifyVolume(forks: Map<string, RecoveredFork>, t: VerifyTally, where: string): Promise<Map<string, string[]>> {
    t.volumeStates++;
    const read = new Map<string, string[]>();
    for (const [k, f] of forks) {
      if (!f.exists) continue;
      const ds: string[] = [];
      for (let b = 0; b < f.nblocks; b++) {
        t.pagesVerified++;
        ds.push(await f.read(b));
      }
      read.set(k, ds);
    }
    const volume = (m: Map<string, string[]>) => new Map([...m].filter(([k]) => parseForkKey(k).storage === 'volume'));
    const candidates: { name: string; forks: Map<string, string[]>; uncertain: Map<string, string> }[] = [
      { name: 'acknowledged', forks: volume(this.acked), uncertain: new Map() },
      ...this.#inflight.map((f, i) => ({ name: `in flight #${i + 1}`, forks: volume(f.forks), uncertain: f.uncertain })),
    ];
    const sizesEqual = (c: (typeof candidates)[number]) => c.forks.size === read.size && [...c.forks].every(([k, ds]) => read.get(k)?.length === ds.length);
    const pageOk = (c: (typeof candidates)[number], k: string, b: number, got: string) => got === c.forks.get(k)![b] || got === c.uncertain.get(`${k}/${b}`);
    const exact = candidates.find((c) => sizesEqual(c) && [...c.forks].every(([k]) => read.get(k)!.every((got, b) => pageOk(c, k, b, got))));
    if (exact) {
      if (exact !== candidates[0]) t.volumeChoseInflight++;
      return read;
    }
    const describe = (m: Map<string, string[]>) => `{${[...m].map(([k, ds]) => `${k}=${ds.length}`).join(' ')}}`;
    const matches = candidates.filter(sizesEqual);
    if (matches.length === 0) {
      t.metaMixed++;
      t.failures.push(`${where}: volume forks ${describe(read)} match none of ${candidates.map((c) => `${c.name} ${describe(c.forks)}`).join(', ')}`);
      return read;
    }
    const c = matches[0]!;
    let mixed = false;
    for (const [k, ds] of read) {
      ds.forEach((got, b) => {
        if (pageOk(c, k, b, got)) return;
        if (got === 'torn') {
          t.volumeTornDetected++;
          t.failures.push(`${where}: volume ${k} block ${b} fails its checksum (the volume never tears)`);
        } else if (matches.some((o) => o !== c && pageOk(o, k, b, got))) {
          mixed = true;
          t.failures.push(`${where}: volume ${k} block ${b} is another checkpoint's page than the ${c.name} one the volume's sizes match (a mix)`);
        } else {
          t.lost++;
          t.failures.push(`${where}: volume ${k} block ${b} reads back ${got}, the ${c.name} checkpoint has ${c.forks.get(k)![b]}`);
        }
      });
    }
    if (mixed) t.metaMixed++;
    return read;
  }

  /** Check one recovered md fork against the rules in the header; tallies go into `t`. */
  async verify(key: string, rec: RecoveredFork, t: VerifyTally, where: string): Promise<void> {
    if (parseForkKey(key).storage !== 'md') throw new Error(`model: ${key} is judged by verifyVolume, with every volume fork`);
    const a = this.acked.get(key);
    const s = this.#since.get(key);
    if (!rec.exists) {
      if (a !== undefined && !s?.dropped) {
        t.lost++;
        t.failures.push(`${where}: ${key} was acknowledged with ${a.length} blocks and is missing`);
      }
      return;
    }
    if (s?.dropped) return; // a drop in flight: either side is fine, nothing to compare
    const ackedN = a?.length ?? 0;
    const ok = !s ? rec.nblocks === ackedN : rec.nblocks >= Math.min(ackedN, s.minNblocks) && rec.nblocks <= Math.max(ackedN, s.maxNblocks);
    if (!ok) {
      t.metaMixed++;
      t.failures.push(`${where}: ${key} has ${rec.nblocks} blocks; acknowledged ${ackedN}, since ${s ? `${s.minNblocks}..${s.maxNblocks}` : 'unchanged'}`);
      return;
    }
    for (let b = 0; b < rec.nblocks; b++) {
      t.pagesVerified++;
      const written = s?.written.get(b);
      const got = await rec.read(b);
      if (got === 'torn') {
        if (written) t.tornDetected++;
        else {
          t.lost++;
          t.failures.push(`${where}: ${key} block ${b} fails its checksum and was not written since the acknowledged checkpoint`);
        }
        continue;
      }
      if ((a !== undefined && b < a.length && got === a[b]) || written?.has(got)) continue;
      t.lost++;
      t.failures.push(`${where}: ${key} block ${b} reads back ${got}, expected ${a?.[b] ?? '-'}${written ? ` or one of ${[...written].join('/')}` : ''}`);
    }
  }

  /** The recovered store becomes the new acknowledged state (the next run continues on it). */
  resetTo(recovered: Map<string, string[]>): void {
    this.cur.clear();
    for (const [k, v] of recovered) this.cur.set(k, [...v]);
    this.acked = new Map([...recovered].map(([k, v]) => [k, [...v]]));
    this.#since.clear();
    this.#inflight = [];
    this.#uncertain.clear();
    this.#lastWrite = null;
  }
}
