/**
 * The crash-matrix model: what a workload has written, per checkpoint, to
 * relation forks on md and on the volume and to clog, kept much simpler than the engine (a map
 * from fork to page hashes, a map from xid to status), and the judgement of one page read back
 * after a crash.
 *
 * Invariants:
 *  M1 Every change is recorded BEFORE the engine call that makes it is issued, so a crash image
 *     taken during that call (SimDisk.beforeCall) already allows the new content.
 *  M2 `snapshots[i]` is the logical state when checkpoint i started (snapshot 0: empty, before
 *     anything); `since[i]` collects everything changed after snapshot i was taken: page images
 *     written per block, the smallest nblocks each fork had, dropped relations, clog statuses set.
 *     Those sets only grow, so an image judged against them later can only gain allowed content.
 *  M3 `committed` is the last checkpoint whose `engine.checkpoint()` resolved (C_k); `inflight`
 *     the one running (C_k+1), or null.
 */
import { createHash } from 'node:crypto';
import { FORKS } from '../../engine/index.js';

export type Storage = 'md' | 'volume';

export interface ForkState {
  storage: Storage;
  relNumber: number;
  fork: number;
  nblocks: number;
  /** sha256 of each block's image. */
  pages: string[];
}

export interface Snapshot {
  forks: Map<string, ForkState>;
  clog: Map<number, number>;
}

export interface Since {
  /** `${forkKey}/${block}` -> hashes of images written since the snapshot. */
  written: Map<string, Set<string>>;
  /** forkKey -> smallest nblocks the fork had since the snapshot (truncates lower it). */
  minNblocks: Map<string, number>;
  /** `${storage}:${relNumber}` of relations dropped since. */
  dropped: Set<string>;
  /** xid -> statuses set since. */
  clog: Map<number, Set<number>>;
}

export const forkKey = (storage: Storage, relNumber: number, fork: number): string => `${storage}:${relNumber}/${fork}`;

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function emptySince(): Since {
  return { written: new Map(), minNblocks: new Map(), dropped: new Set(), clog: new Map() };
}

function cloneSnapshot(s: Snapshot): Snapshot {
  return {
    forks: new Map([...s.forks].map(([k, v]) => [k, { ...v, pages: [...v.pages] }])),
    clog: new Map(s.clog),
  };
}

export class CrashModel {
  state: Snapshot = { forks: new Map(), clog: new Map() };
  snapshots: Snapshot[] = [{ forks: new Map(), clog: new Map() }];
  since: Since[] = [emptySince()];
  committed = 0;
  inflight: number | null = null;
  /** Every page image by hash, to tell a sector mix of allowed images (torn) from other data. */
  readonly images = new Map<string, Uint8Array>();

  create(storage: Storage, relNumber: number, fork: number): void {
    this.state.forks.set(forkKey(storage, relNumber, fork), { storage, relNumber, fork, nblocks: 0, pages: [] });
  }

  fork(storage: Storage, relNumber: number, fork: number): ForkState {
    const st = this.state.forks.get(forkKey(storage, relNumber, fork));
    if (!st) throw new Error(`model: no fork ${forkKey(storage, relNumber, fork)}`);
    return st;
  }

  /** Record an image for a block (write or extend); returns nothing, call before the engine call. */
  noteWrite(st: ForkState, block: number, page: Uint8Array): void {
    const h = sha256(page);
    this.images.set(h, page.slice());
    st.pages[block] = h;
    if (block >= st.nblocks) st.nblocks = block + 1;
    const k = `${forkKey(st.storage, st.relNumber, st.fork)}/${block}`;
    for (const s of this.since) {
      let set = s.written.get(k);
      if (!set) s.written.set(k, (set = new Set()));
      set.add(h);
    }
  }

  noteTruncate(st: ForkState, nblocks: number): void {
    const k = forkKey(st.storage, st.relNumber, st.fork);
    for (const s of this.since) s.minNblocks.set(k, Math.min(s.minNblocks.get(k) ?? st.nblocks, nblocks));
    st.nblocks = nblocks;
    st.pages.length = nblocks;
  }

  noteDrop(storage: Storage, relNumber: number): void {
    for (const f of FORKS) this.state.forks.delete(forkKey(storage, relNumber, f));
    for (const s of this.since) s.dropped.add(`${storage}:${relNumber}`);
  }

  noteClog(xid: number, status: number): void {
    this.state.clog.set(xid, status);
    for (const s of this.since) {
      let set = s.clog.get(xid);
      if (!set) s.clog.set(xid, (set = new Set()));
      set.add(status);
    }
  }

  /** Before engine.checkpoint(): the state it will make durable becomes snapshot `inflight`. */
  beginCheckpoint(): void {
    this.snapshots.push(cloneSnapshot(this.state));
    this.since.push(emptySince());
    this.inflight = this.snapshots.length - 1;
  }

  /** After engine.checkpoint() resolved. */
  endCheckpoint(): void {
    if (this.inflight === null) throw new Error('model: no checkpoint in flight');
    this.committed = this.inflight;
    this.inflight = null;
  }
}

export type PageVerdict = 'ok' | 'lost' | 'torn-returned';

/**
 * Judge a page read back: 'ok' when its hash is allowed; 'torn-returned' when every 512-byte
 * sector equals the same sector of some allowed image (a torn write returned as data, which the
 * checksum should have caught); 'lost' otherwise.
 */
export function judgePage(page: Uint8Array, allowed: Set<string>, images: Map<string, Uint8Array>, sectorBytes = 512): PageVerdict {
  if (allowed.has(sha256(page))) return 'ok';
  const candidates = [...allowed].map((h) => images.get(h)).filter((p): p is Uint8Array => p !== undefined && p.length === page.length);
  if (candidates.length === 0) return 'lost';
  for (let at = 0; at < page.length; at += sectorBytes) {
    const sector = page.subarray(at, at + sectorBytes);
    if (!candidates.some((c) => Buffer.compare(c.subarray(at, at + sectorBytes), sector) === 0)) return 'lost';
  }
  return 'torn-returned';
}
