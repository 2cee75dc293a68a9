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
 * What `verify` allows after a crash (anything else is counted as lost or meta-mixed):
 *  - a fork in `acked` exists unless it was dropped since; a fork created since may be missing;
 *  - nblocks: unchanged forks exactly the acked nblocks; a volume fork the acked one or that of a
 *    checkpoint in flight (D1: the volume's metadata is one switch or the other, never a mix);
 *    an md fork anything between the smallest and largest size it had since (md's segment sizes
 *    are whatever the kernel kept or the sync phase reached: D4 covers only completed checkpoints);
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
  tornDetected: number;
  metaMixed: number;
  failures: string[];
}

export function newTally(): VerifyTally {
  return { pagesVerified: 0, lost: 0, tornDetected: 0, metaMixed: 0, failures: [] };
}

export class DurabilityModel {
  /** What the workload believes now (intents applied). */
  readonly cur = new Map<string, string[]>();
  /** CM1. */
  acked = new Map<string, string[]>();
  /** Acks seen in all. */
  acks = 0;
  readonly #since = new Map<string, Since>();
  #inflight: Map<string, number>[] = [];

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

  /** A checkpoint begins (CM3). */
  begin(): void {
    this.#inflight.push(new Map([...this.cur].map(([k, v]) => [k, v.length])));
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
    this.acks++;
    return mismatch;
  }

  /** Every fork the model knows (current and acknowledged). */
  keys(): string[] {
    return [...new Set([...this.cur.keys(), ...this.acked.keys()])].sort();
  }

  /** Check one recovered fork against the rules in the header; tallies go into `t`. */
  async verify(key: string, rec: RecoveredFork, t: VerifyTally, where: string): Promise<void> {
    const { storage } = parseForkKey(key);
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
    let ok: boolean;
    if (!s) ok = rec.nblocks === ackedN;
    else if (storage === 'volume') ok = rec.nblocks === ackedN || this.#inflight.some((m) => m.get(key) === rec.nblocks);
    else ok = rec.nblocks >= Math.min(ackedN, s.minNblocks) && rec.nblocks <= Math.max(ackedN, s.maxNblocks);
    if (!ok) {
      t.metaMixed++;
      t.failures.push(`${where}: ${key} has ${rec.nblocks} blocks; acknowledged ${ackedN}, in flight ${this.#inflight.map((m) => m.get(key)).join('/') || '-'}, since ${s ? `${s.minNblocks}..${s.maxNblocks}` : 'unchanged'}`);
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
  }
}
