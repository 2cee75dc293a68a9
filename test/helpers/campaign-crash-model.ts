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
import { FORKS, isLamstoreError } from '../../engine/index.js';
import type { Engine, ForkNumber } from '../../engine/index.js';

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

/** A volume fork read back after a crash: each page, or null when it failed its checksum. */
export interface ObservedFork {
  nblocks: number;
  pages: (Uint8Array | null)[];
}

/** A state the volume may be in after a crash: one checkpoint's capture of every volume fork. */
export interface VolumeCandidate {
  /** The checkpoint's number (the model's snapshot index). */
  id: number;
  /** forkKey -> nblocks and the sha256 of each page. */
  forks: Map<string, { nblocks: number; pages: string[] }>;
}

export interface VolumeVerdict {
  /** The candidate the whole volume equals (every fork's nblocks and every page), or null. */
  chosen: number | null;
  /** No single candidate explains the volume: its forks and sizes match none, or its pages mix two. */
  metaMixed: boolean;
  /** Pages that failed their checksum, sector mixes returned as data, and other data. */
  tornDetected: number;
  tornReturned: number;
  lost: number;
  pagesVerified: number;
  problems: string[];
}

/**
 * The strict copy-on-write rule (DESIGN.md section 8, D2 for format 2): after a crash the volume
 * reads back exactly as one of `candidates` (the last completed checkpoint, or the one that was
 * completing), every fork's nblocks and every page, chosen once for the whole volume, never page
 * by page. When none fits, each page is judged against the candidate whose forks and sizes match
 * (the first one, else the first candidate) to say what went wrong.
 */
export function judgeVolume(observed: Map<string, ObservedFork>, candidates: readonly VolumeCandidate[], images: Map<string, Uint8Array>): VolumeVerdict {
  const v: VolumeVerdict = { chosen: null, metaMixed: false, tornDetected: 0, tornReturned: 0, lost: 0, pagesVerified: 0, problems: [] };
  const hashes = new Map([...observed].map(([k, f]) => [k, f.pages.map((p) => (p === null ? null : sha256(p)))]));
  for (const f of observed.values()) v.pagesVerified += f.nblocks;
  const metaEqual = (c: VolumeCandidate) => c.forks.size === observed.size && [...c.forks].every(([k, f]) => observed.get(k)?.nblocks === f.nblocks);
  const pagesEqual = (c: VolumeCandidate) => [...c.forks].every(([k, f]) => f.pages.every((h, b) => hashes.get(k)![b] === h));
  const exact = candidates.find((c) => metaEqual(c) && pagesEqual(c));
  if (exact) {
    v.chosen = exact.id;
    return v;
  }
  const describe = (c: VolumeCandidate) => `checkpoint ${c.id} {${[...c.forks].map(([k, f]) => `${k}=${f.nblocks}`).join(' ')}}`;
  const metaMatches = candidates.filter(metaEqual);
  if (metaMatches.length === 0) {
    v.metaMixed = true;
    v.problems.push(`volume forks {${[...observed].map(([k, f]) => `${k}=${f.nblocks}`).join(' ')}} match none of ${candidates.map(describe).join(', ')}`);
  }
  const base = metaMatches[0] ?? candidates[0]!;
  const others = candidates.filter((c) => c !== base);
  for (const [k, f] of base.forks) {
    const obs = observed.get(k);
    if (!obs) continue;
    for (let b = 0; b < Math.min(f.nblocks, obs.nblocks); b++) {
      const h = hashes.get(k)![b];
      if (h === f.pages[b]) continue;
      const page = obs.pages[b] ?? null;
      if (page === null || h === null) {
        v.tornDetected++;
        v.problems.push(`${k} block ${b} fails its checksum (checkpoint ${base.id})`);
        continue;
      }
      const other = others.find((c) => c.forks.get(k)?.pages[b] === h);
      if (other) {
        v.metaMixed = true;
        v.problems.push(`${k} block ${b} is checkpoint ${other.id}'s page while the volume is checkpoint ${base.id}'s (a mix of two checkpoints)`);
        continue;
      }
      const allowed = new Set([f.pages[b]!, ...others.map((c) => c.forks.get(k)?.pages[b]).filter((x): x is string => x !== undefined)]);
      const verdict = judgePage(page, allowed, images);
      if (verdict === 'torn-returned') v.tornReturned++;
      else v.lost++;
      v.problems.push(`${k} block ${b}: ${verdict === 'torn-returned' ? 'a sector mix returned as data' : 'data of no checkpoint'} (checkpoint ${base.id})`);
    }
  }
  if (v.problems.length === 0) {
    v.metaMixed = true;
    v.problems.push(`the volume matches none of ${candidates.map(describe).join(', ')}`);
  }
  return v;
}

/** The volume forks of a model snapshot, as a candidate state of the volume. */
export function volumeCandidate(snapshot: Snapshot, id: number): VolumeCandidate {
  const forks = new Map<string, { nblocks: number; pages: string[] }>();
  for (const [k, f] of snapshot.forks) if (f.storage === 'volume') forks.set(k, { nblocks: f.nblocks, pages: f.pages.slice(0, f.nblocks) });
  return { id, forks };
}

/**
 * Every volume fork an engine shows (`forks`: the volume's info().forks), read through the
 * engine, so checksums are verified: a page that fails its checksum is null; any other error is
 * thrown.
 */
export async function readVolume(engine: Engine, forks: readonly { spcOid: number; dbOid: number; relNumber: number; fork: number; nblocks: number }[]): Promise<Map<string, ObservedFork>> {
  const out = new Map<string, ObservedFork>();
  for (const f of forks) {
    const h = engine.relation({ spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber }, { storage: 'volume' });
    const pages: (Uint8Array | null)[] = [];
    for (let b = 0; b < f.nblocks; b++) {
      try {
        pages.push(await h.read(f.fork as ForkNumber, b));
      } catch (err) {
        if (!isLamstoreError(err, 'CHECKSUM_MISMATCH')) throw err;
        pages.push(null);
      }
    }
    out.set(forkKey('volume', f.relNumber, f.fork), { nblocks: f.nblocks, pages });
  }
  return out;
}
