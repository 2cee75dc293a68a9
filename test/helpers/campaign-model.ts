/**
 * The model and commands of the model-based property test
 * (test/campaign-model-pbt.test.ts) and of its regression cases
 * (test/campaign-model-pbt-regressions.test.ts). Commands are plain data (`CmdSpec`) so a shrunk
 * failing sequence can be written down as an explicit list and replayed without fast-check.
 *
 * The model (deliberately much simpler than the engine):
 *  - `cur`: a map (storage, relation, fork) -> array of page fingerprints (sha-256); its length
 *    is nblocks; a missing key is a fork that does not exist.
 *  - `snap`: a copy of `cur` taken at each completed checkpoint (and at each reopen, which makes
 *    everything it finds durable): the durable state.
 *  - `since`: per fork, what happened after `snap`: every nblocks value the fork went through
 *    (-1 = absent) and, per block, every image written to it (extend or write).
 *  - `candidates`: copies of `cur` at checkpoints that failed part-way (a volume's metadata
 *    switch may have reached the disk before the failure).
 *
 * Allowed states after a crash (drop or prefix mode) or after close+reopen of a failed engine
 * (MA = model allowed; these are D1/D2 of DESIGN.md section 8 written for this model):
 *  MA1 volume, strict (copy-on-write, D1-D2 for format 2): the volume forks equal exactly `snap`
 *      or one of the `candidates`, one of them for all volume forks together: the same forks,
 *      nblocks and pages (never a mixture, never a torn or other page).
 *  MA2 md: each fork's nblocks (or absence) is its value in `snap` or a value it went through
 *      since (md has no metadata switch: a crash keeps each segment file's size from some point
 *      after the checkpoint; truncation passes through every segment boundary it crosses, since
 *      md shortens segments from the last one down, and a drop passes through 0 and absence).
 *  MA3 md: every page below the observed nblocks reads back as its image in `snap` (or a
 *      candidate), or as an image written to that block since `snap` (D2). A torn page would
 *      have to fail its checksum; the PBT uses only the drop and prefix crash modes, which never
 *      tear a write, so CHECKSUM_MISMATCH is never allowed here (the crash matrix covers the
 *      subset, torn and garbage modes).
 *  MA4 after the check, the observed state becomes `cur` and `snap` (reopen after an unclean
 *      stop fsyncs every file, and a crash image is durable as a whole).
 * A clean close+reopen must give back `cur` exactly.
 *
 * The SLRUs (clog, commit_ts, multixact through `engine.clog`, `engine.commitTs`,
 * `engine.multixact`), the same way: `slru` (now), `slruSnap` (at the last completed checkpoint,
 * or found by a reopen), `slruSince` (every value set, every mxid created since), and the
 * truncation cutoffs `cut`. Their contract (slru.ts S6, multixact.ts M3-M5, control-file.ts
 * CF5 d): what a completed checkpoint covered survives; what came after may be lost (an xid then
 * reads as never set); a truncation's cutoff is durable before the call returns.
 *  MS1 clog and commit_ts after an unclean stop: every xid below its cutoff is refused
 *      (BAD_ARGUMENT), every other xid reads back its value in `slruSnap` (never set: IN_PROGRESS,
 *      no timestamp) or a value set since (a page written by an eviction, or by a failed
 *      checkpoint), never anything else. MA4 applies: what is read becomes `slru` and `slruSnap`.
 *  MS2 multixact after an unclean stop: nextMxid lies between `slruSnap.nextMxid` (no mxid durable
 *      at a completed checkpoint is handed out again, M3) and `slru.nextMxid`; oldestMxid is the
 *      truncation cutoff; an mxid created before the last completed checkpoint (and not truncated)
 *      reads back its members exactly; one created since reads back its members exactly, or is
 *      BAD_ARGUMENT at or above nextMxid, or DATA_CORRUPT below it (M4: its offsets were lost);
 *      never other members. The model keeps those that read back; new mxids continue from nextMxid.
 *  MS3 A clean close+reopen gives back every value, every mxid, nextMxid and every cutoff exactly;
 *      while the engine runs every read agrees with `slru`, every create returns `slru.nextMxid`.
 * In the failed state SLRU reads still run (an eviction they need may be refused: ENGINE_FAILED)
 * and changes are ENGINE_FAILED.
 *
 * Faults (one injected fault, on the first call of one I/O kind during one operation):
 *  MF1 a fault that fires fails that operation with a LamstoreError; nothing reports success
 *      after it fired.
 *  MF2 a failed fsync or fdatasync (or directory fsync) in a checkpoint puts the engine in the
 *      failed state: checkpoint and writes throw ENGINE_FAILED; only reads, close+reopen and
 *      crash are generated after it, and the model falls back to MA1-MA4.
 *  MF3 a failed pwrite or open in a checkpoint fails that checkpoint; unless it hit volume
 *      metadata (which fails the engine), the engine keeps working and a later checkpoint makes
 *      the same data durable.
 *  MF4 a failed extend (pwrite/open) leaves nblocks unchanged; a failed read (pread) returns no
 *      data and caches nothing (the next read is correct); a failed eviction write during a
 *      page write fails that write or not at all.
 *  MF5 fsyncgate (a failed sync that also drops the file's pending writes, as Linux does) is
 *      generated for the volume's fdatasync only, the first or the second of a checkpoint: the
 *      copy-on-write volume recovers (MA1 holds after a reopen with or without a crash, and
 *      after later crashes). On md's fsync it is not generated: md leaves pages that reads still
 *      return but that no later sync will ever write; reopen (whose startup sync then
 *      "succeeds") cannot tell them from durable ones, so a later crash can revert them even
 *      after later checkpoints completed. The engine cannot repair that without a WAL or a
 *      rewrite of every file at an unclean start; test/fsyncgate.test.ts records md's behaviour
 *      and the fault loop checks fsyncgate's failed state.
 */
import { createHash } from 'node:crypto';
import { Engine, SyncHandlerId, SyncRequestType, setPageChecksum } from '../../engine/index.js';
import { ManualClock, SimDisk } from '../../engine/testing.js';
import type { ClogStatus, CommitTsEntry, ForkNumber, IoKind, MultiXactMember, MultiXactStatus, RelFileLocator } from '../../engine/index.js';
import type { CrashMode, FaultCode } from '../../engine/testing.js';
import type { MdStorageManager } from '../../engine/md/md.js';
import { volumeExtension } from '../../volume/index.js';
import type { VolumeExtension } from '../../volume/index.js';
import { locator } from './engine.js';
import { withOneFault } from './io-doubles.js';

export type Storage = 'md' | 'volume';
export const STORAGES: readonly Storage[] = ['md', 'volume'];
export const RELS = [1, 2, 3] as const;
export const FORKS_USED: readonly ForkNumber[] = [0, 1];
export const BLOCK_SIZE = 4096;
export const REL_SEG_BLOCKS = 4;
export const SHARED_BUFFERS = 16;
export const VOLUME_PATH = '/vol/v';
export const VOLUME_BYTES = 2 * 1024 * 1024;
export const DATA_DIR = '/data';
/** Forks stay small so runs are fast; 12 crosses md segment (4) and first-extent (8) boundaries. */
export const MAX_BLOCKS = 12;
const ABSENT = -1;
const TORN = 'torn';

export type FaultTarget = 'checkpoint' | 'extend' | 'read' | 'write';

/**
 * The xids of the SLRU commands: clog pages 0, 1, 32, 33, 64, 67 (segments 0-2 at 4 KiB: 16384
 * xids a page, 32 pages a segment) and commit_ts pages over 80 segments (409 a page), so
 * truncation removes whole segments and 4 SLRU buffers evict.
 */
export const SLRU_XIDS = [1, 2, 5, 409, 500, 16383, 16384, 20000, 524287, 524288, 530000, 1048576, 1100000] as const;
const CLOG_XIDS_PER_PAGE = BLOCK_SIZE * 4;
const COMMIT_TS_XIDS_PER_PAGE = Math.floor(BLOCK_SIZE / 10);
const SLRU_SEGMENT_PAGES = 32;
export type SlruWhich = 'clog' | 'commitTs' | 'multixact';

export type CmdSpec =
  | { kind: 'create'; storage: Storage; rel: number; fork: ForkNumber }
  // `at` picks among the forks (or relations, for drop) the command applies to, in key order,
  // so almost every generated command applies; the picked fork is in the error message.
  | { kind: 'extend'; at: number }
  | { kind: 'write'; at: number; pick: number }
  | { kind: 'read'; at: number; pick: number }
  | { kind: 'truncate'; at: number; pick: number }
  | { kind: 'drop'; at: number }
  | { kind: 'checkpoint' }
  | { kind: 'closeReopen' }
  | { kind: 'crash'; mode: CrashMode; seed: number }
  | { kind: 'fault'; io: IoKind; code: FaultCode; fsyncgate: boolean; target: FaultTarget; at: number; pick: number }
  | { kind: 'syncRequest'; type: 'sync' | 'forget'; rel: number; fork: ForkNumber; segno: number }
  // `x` picks an xid of SLRU_XIDS; `pick` an mxid among those the model knows (or, one time in
  // eight, one never created or truncated away).
  | { kind: 'clogSet'; x: number; status: number }
  | { kind: 'clogGet'; x: number }
  | { kind: 'commitTsSet'; x: number }
  | { kind: 'commitTsGet'; x: number }
  | { kind: 'multixactCreate'; members: { x: number; status: number }[] }
  | { kind: 'multixactMembers'; pick: number }
  | { kind: 'slruTruncate'; which: SlruWhich; pick: number };

export type CmdKind = CmdSpec['kind'];
export const CMD_KINDS: readonly CmdKind[] = [
  'create', 'extend', 'write', 'read', 'truncate', 'drop', 'checkpoint', 'closeReopen', 'crash', 'fault', 'syncRequest',
  'clogSet', 'clogGet', 'commitTsSet', 'commitTsGet', 'multixactCreate', 'multixactMembers', 'slruTruncate',
];

type Store = Map<string, string[]>;
interface Since {
  sizes: Set<number>;
  written: Map<number, Set<string>>;
}

export interface PbtStats {
  runs: number;
  commands: number;
  crashes: number;
  faultsInjected: number;
  faultsFired: number;
  failedStates: number;
  uncleanReopens: number;
  pagesVerified: number;
  /** The strict volume rule: states judged, their pages, torn pages and mixed states (both must stay 0), states at a failed checkpoint's capture. */
  volumeStates: number;
  volumePages: number;
  volumeTornDetected: number;
  volumeMetaMixed: number;
  volumeChoseCandidate: number;
  /** SLRU values (xid statuses and timestamps) and mxids judged or read back; refusals of truncated xids checked. */
  slruValuesVerified: number;
  mxidsVerified: number;
  slruRefusalsVerified: number;
  /** After unclean stops: values set since the last checkpoint that read back unset, and mxids lost (MS1-MS2 allow both). */
  slruValuesLost: number;
  mxidsLost: number;
  slruTruncations: number;
  kinds: Set<CmdKind>;
}

export function newStats(): PbtStats {
  return {
    runs: 0, commands: 0, crashes: 0, faultsInjected: 0, faultsFired: 0, failedStates: 0, uncleanReopens: 0, pagesVerified: 0, volumeStates: 0, volumePages: 0, volumeTornDetected: 0, volumeMetaMixed: 0, volumeChoseCandidate: 0,
    slruValuesVerified: 0, mxidsVerified: 0, slruRefusalsVerified: 0, slruValuesLost: 0, mxidsLost: 0, slruTruncations: 0, kinds: new Set(),
  };
}

/** The SLRUs as the model keeps them. */
export interface SlruState {
  /** xid -> clog status (absent: IN_PROGRESS, 0). */
  clog: Map<number, number>;
  /** xid -> commit_ts entry as `timestamp:origin` (absent: none). */
  ts: Map<number, string>;
  /** mxid -> its members as JSON. */
  mx: Map<number, string>;
  nextMxid: number;
}
interface SlruSince {
  clog: Map<number, Set<number>>;
  ts: Map<number, Set<string>>;
  mx: Set<number>;
}
/** Truncation cutoffs: clog and commit_ts the oldest page kept, multixact the oldest mxid. Durable once the call returns. */
interface SlruCut {
  clogPage: number;
  tsPage: number;
  mxOldest: number;
}
const newSlru = (): SlruState => ({ clog: new Map(), ts: new Map(), mx: new Map(), nextMxid: 1 });
const cloneSlru = (s: SlruState): SlruState => ({ clog: new Map(s.clog), ts: new Map(s.ts), mx: new Map(s.mx), nextMxid: s.nextMxid });
const newSlruSince = (): SlruSince => ({ clog: new Map(), ts: new Map(), mx: new Set() });

export interface Model {
  cur: Store;
  snap: Store;
  candidates: Store[];
  since: Map<string, Since>;
  failed: boolean;
  /** md relations dropped since the last completed checkpoint (their main fork is a tombstone). */
  tombstones: Set<number>;
  version: number;
  slru: SlruState;
  slruSnap: SlruState;
  slruSince: SlruSince;
  cut: SlruCut;
  stats: PbtStats;
}

export interface Real {
  disk: SimDisk;
  engine: Engine;
  ext: VolumeExtension;
}

export const keyOf = (storage: Storage, rel: number, fork: number): string => `${storage}:${rel}:${fork}`;
export const loc = (rel: number): RelFileLocator => (locator(rel));
const clone = (s: Store): Store => new Map([...s].map(([k, v]) => [k, [...v]]));
const sizeOf = (s: Store, k: string): number => s.get(k)?.length ?? ABSENT;

function fingerprint(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 24);
}

/** A page that names its storage, relation, fork, block and version, with a valid checksum. */
function makePage(storage: Storage, rel: number, fork: number, blk: number, version: number): Uint8Array {
  const p = new Uint8Array(BLOCK_SIZE);
  const v = new DataView(p.buffer);
  v.setUint32(0, rel, true);
  v.setUint32(4, blk, true);
  v.setUint32(12, fork + (storage === 'volume' ? 100 : 0), true);
  v.setUint32(16, version, true);
  for (let i = 20; i < BLOCK_SIZE; i += 64) v.setUint32(i, (version * 2654435761 + i) >>> 0, true);
  setPageChecksum(p, blk);
  return p;
}

export function newModel(stats: PbtStats): Model {
  return { cur: new Map(), snap: new Map(), candidates: [], since: new Map(), failed: false, tombstones: new Set(), version: 0, slru: newSlru(), slruSnap: newSlru(), slruSince: newSlruSince(), cut: { clogPage: 0, tsPage: 0, mxOldest: 1 }, stats };
}

function sinceOf(m: Model, k: string): Since {
  let s = m.since.get(k);
  if (!s) m.since.set(k, (s = { sizes: new Set([sizeOf(m.snap, k)]), written: new Map() }));
  return s;
}
function noteSize(m: Model, k: string, n: number): void {
  sinceOf(m, k).sizes.add(n);
}
function noteWritten(m: Model, k: string, blk: number, fp: string): void {
  const s = sinceOf(m, k);
  let set = s.written.get(blk);
  if (!set) s.written.set(blk, (set = new Set()));
  set.add(fp);
}
function commit(m: Model): void {
  m.snap = clone(m.cur);
  m.since.clear();
  m.candidates = [];
  m.tombstones.clear();
  m.slruSnap = cloneSlru(m.slru);
  m.slruSince = newSlruSince();
}

// ------------------------------------------------------------------ the real system

export async function openEngine(disk: SimDisk): Promise<Real> {
  const ext = volumeExtension({ path: VOLUME_PATH, create: { sizeBytes: VOLUME_BYTES, blockSize: BLOCK_SIZE } });
  const engine = await Engine.open({
    dataDir: DATA_DIR,
    io: disk,
    // Time never moves: no timed checkpoint ever runs, so every run is deterministic.
    clock: new ManualClock(),
    blockSize: BLOCK_SIZE,
    sharedBuffers: SHARED_BUFFERS,
    relSegBlocks: REL_SEG_BLOCKS,
    slruBuffers: 4,
    preload: [ext],
  });
  return { disk, engine, ext };
}

export async function setup(stats: PbtStats): Promise<{ model: Model; real: Real }> {
  stats.runs++;
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  await disk.fsyncDir('/');
  return { model: newModel(stats), real: await openEngine(disk) };
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? ((err as { code?: string }).code ?? undefined) : undefined;
}

async function expectCode(what: string, p: Promise<unknown>, codes: readonly string[]): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    if (codes.includes(codeOf(err) ?? '')) return err;
    throw new Error(`${what}: expected ${codes.join('|')}, got ${codeOf(err)}: ${(err as Error).message}`, { cause: err });
  }
  throw new Error(`${what}: expected ${codes.join('|')}, but it succeeded`);
}

function fail(msg: string): never {
  throw new Error(msg);
}

function checkInvariants(r: Real): void {
  r.engine.bufferPool.checkInvariants();
  r.ext.volume!.checkInvariants();
  (r.engine.storageManager('md') as MdStorageManager).checkInvariants();
}

/** Every fork the model can name, as the engine shows it now. */
async function observe(m: Model, r: Real): Promise<Store> {
  const out: Store = new Map();
  for (const storage of STORAGES) {
    for (const rel of RELS) {
      const h = r.engine.relation(loc(rel), { storage });
      for (const fork of FORKS_USED) {
        if (!(await h.exists(fork))) continue;
        const n = await h.nblocks(fork);
        const pages: string[] = [];
        for (let b = 0; b < n; b++) {
          m.stats.pagesVerified++;
          try {
            pages.push(fingerprint(await h.read(fork, b)));
          } catch (err) {
            if (codeOf(err) !== 'CHECKSUM_MISMATCH') throw err;
            pages.push(TORN);
          }
        }
        out.set(keyOf(storage, rel, fork), pages);
      }
    }
  }
  return out;
}

const describe = (s: Store, keys: string[]) => keys.map((k) => `${k}=${sizeOf(s, k)}`).join(' ');

/** MA1-MA3: is `obs` a state the model allows after an unclean stop? */
export function allowedProblems(m: Model, obs: Store): string[] {
  const problems: string[] = [];
  const all: string[] = [];
  for (const storage of STORAGES) for (const rel of RELS) for (const fork of FORKS_USED) all.push(keyOf(storage, rel, fork));
  const volKeys = all.filter((k) => k.startsWith('volume:'));
  const cands = [m.snap, ...m.candidates];
  m.stats.volumeStates++;
  for (const k of volKeys) m.stats.volumePages += obs.get(k)?.length ?? 0;
  // MA1 and MA3 on the volume, strict: exactly one candidate, every fork's size and every page.
  const sizesMatch = cands.filter((c) => volKeys.every((k) => sizeOf(c, k) === sizeOf(obs, k)));
  const exact = sizesMatch.find((c) => volKeys.every((k) => (obs.get(k) ?? []).every((fp, b) => c.get(k)![b] === fp)));
  if (sizesMatch.length === 0) {
    m.stats.volumeMetaMixed++;
    problems.push(`MA1: volume forks {${describe(obs, volKeys)}} match none of ${cands.map((c) => `{${describe(c, volKeys)}}`).join(', ')}`);
  } else if (exact === undefined) {
    const c = sizesMatch[0]!;
    for (const k of volKeys) {
      (obs.get(k) ?? []).forEach((fp, b) => {
        if (fp === c.get(k)![b]) return;
        if (fp === TORN) {
          m.stats.volumeTornDetected++;
          problems.push(`MA3: volume ${k} block ${b} fails its checksum (the volume never tears)`);
        } else if (sizesMatch.some((o) => o.get(k)![b] === fp)) {
          m.stats.volumeMetaMixed++;
          problems.push(`MA3: volume ${k} block ${b} is another checkpoint's page (a mix of two checkpoints)`);
        } else problems.push(`MA3: volume ${k} block ${b} reads back an image of none of the ${sizesMatch.length} checkpoints its sizes match`);
      });
    }
  } else if (exact !== m.snap) m.stats.volumeChoseCandidate++;
  for (const k of all) {
    if (k.startsWith('volume:')) continue; // judged whole above
    const n = sizeOf(obs, k);
    const since = m.since.get(k);
    // MA2
    if (k.startsWith('md:')) {
      const sizes = new Set([sizeOf(m.snap, k), ...(since?.sizes ?? [])]);
      if (!sizes.has(n)) problems.push(`MA2: ${k} nblocks ${n} is none of ${[...sizes].join(',')} (-1 = absent)`);
    }
    // MA3
    const pages = obs.get(k) ?? [];
    for (let b = 0; b < pages.length; b++) {
      const fp = pages[b]!;
      if (fp === TORN) {
        problems.push(`MA3: ${k} block ${b} fails its checksum (drop/prefix crashes never tear)`);
        continue;
      }
      if (cands.some((c) => c.get(k)?.[b] === fp)) continue;
      if (since?.written.get(b)?.has(fp)) continue;
      problems.push(`MA3: ${k} block ${b} reads back an image never written there since the checkpoint`);
    }
  }
  return problems;
}

/** Reopen after an unclean stop: check MA1-MA3 and MS1-MS2, then adopt what is there (MA4). */
async function verifyUncleanReopen(m: Model, r: Real, what: string): Promise<void> {
  m.stats.uncleanReopens++;
  const obs = await observe(m, r);
  const problems = allowedProblems(m, obs);
  const slru = await judgeSlrus(m, r, false, problems);
  if (problems.length > 0) fail(`${what}: state not allowed:\n  ${problems.slice(0, 8).join('\n  ')}`);
  m.cur = obs;
  m.slru = slru;
  m.failed = false;
  commit(m);
}

async function verifyExact(m: Model, r: Real, what: string): Promise<void> {
  const obs = await observe(m, r);
  const keys = new Set([...obs.keys(), ...m.cur.keys()]);
  for (const k of keys) {
    const a = obs.get(k);
    const e = m.cur.get(k);
    if (!a || !e || a.length !== e.length) fail(`${what}: ${k} nblocks ${a?.length ?? 'absent'}, model ${e?.length ?? 'absent'}`);
    for (let b = 0; b < e.length; b++) if (a[b] !== e[b]) fail(`${what}: ${k} block ${b} differs from the model`);
  }
  const problems: string[] = [];
  await judgeSlrus(m, r, true, problems);
  if (problems.length > 0) fail(`${what}:\n  ${problems.slice(0, 8).join('\n  ')}`);
}

// ------------------------------------------------------------------ SLRUs

const clogPageOf = (xid: number) => Math.floor(xid / CLOG_XIDS_PER_PAGE);
const tsPageOf = (xid: number) => Math.floor(xid / COMMIT_TS_XIDS_PER_PAGE);
const xidOf = (x: number): number => SLRU_XIDS[x % SLRU_XIDS.length]!;
const clogKept = (m: Model, xid: number) => clogPageOf(xid) >= m.cut.clogPage;
const tsKept = (m: Model, xid: number) => tsPageOf(xid) >= m.cut.tsPage;
/** Truncation keeps whole segments: the first page kept is the first of the cutoff's segment. */
const segmentStart = (page: number) => Math.floor(page / SLRU_SEGMENT_PAGES) * SLRU_SEGMENT_PAGES;
const tsText = (e: CommitTsEntry | null): string | null => (e === null ? null : `${e.timestampUs}:${e.originId}`);
const membersText = (list: readonly MultiXactMember[]): string => JSON.stringify(list.map((x) => [x.xid, x.status]));

/** A read that may be refused: its value, or the refusal's code. */
async function attempt<T>(p: () => Promise<T>): Promise<{ value: T; code?: undefined } | { value?: undefined; code: string }> {
  try {
    return { value: await p() };
  } catch (err) {
    const code = codeOf(err);
    if (code === undefined) throw err;
    return { code };
  }
}

/**
 * MS1-MS3: the SLRUs as the engine shows them now. `exact` (a clean reopen): every value equals
 * `slru`. Otherwise (an unclean stop) the allowed states of MS1-MS2. Problems go to `problems`;
 * returns the state found, for the model to adopt.
 */
async function judgeSlrus(m: Model, r: Real, exact: boolean, problems: string[]): Promise<SlruState> {
  const e = r.engine;
  const out = newSlru();
  const rule = exact ? 'MS3' : 'MS1';
  for (const xid of SLRU_XIDS) {
    const checks = [
      { name: 'clog', kept: clogKept(m, xid), read: async () => e.clog.getStatus(xid) as Promise<number | string | null>, now: m.slru.clog.get(xid) ?? 0, snap: m.slruSnap.clog.get(xid) ?? 0, since: m.slruSince.clog.get(xid), unset: 0, put: (v: unknown) => v !== 0 && out.clog.set(xid, v as number) },
      { name: 'commit_ts', kept: tsKept(m, xid), read: async () => tsText(await e.commitTs.get(xid)), now: m.slru.ts.get(xid) ?? null, snap: m.slruSnap.ts.get(xid) ?? null, since: m.slruSince.ts.get(xid), unset: null, put: (v: unknown) => v !== null && out.ts.set(xid, v as string) },
    ];
    for (const c of checks) {
      const got = await attempt(c.read);
      if (!c.kept) {
        m.stats.slruRefusalsVerified++;
        if (got.code !== 'BAD_ARGUMENT') problems.push(`${rule}: ${c.name} xid ${xid} lies below the truncation cutoff but reads ${got.code ?? String(got.value)}`);
        continue;
      }
      m.stats.slruValuesVerified++;
      if (got.code !== undefined) {
        problems.push(`${rule}: ${c.name} xid ${xid}: ${got.code}`);
        continue;
      }
      const v = got.value;
      if (exact) {
        if (v !== c.now) problems.push(`MS3: ${c.name} xid ${xid} reads ${String(v)}, model ${String(c.now)}`);
      } else {
        const allowed = new Set<unknown>([c.snap, ...((c.since ?? []) as Iterable<unknown>)]);
        if (!allowed.has(v)) problems.push(`MS1: ${c.name} xid ${xid} reads ${String(v)}: neither its value at the last checkpoint (${String(c.snap)}) nor one set since`);
        else if (v !== c.now) m.stats.slruValuesLost++;
      }
      c.put(v);
    }
  }
  // multixact (MS2, MS3)
  const mx = e.multixact;
  const next = mx.nextMxid;
  if (exact ? next !== m.slru.nextMxid : next < m.slruSnap.nextMxid || next > m.slru.nextMxid) {
    problems.push(`${exact ? 'MS3' : 'MS2'}: nextMxid ${next}, model ${exact ? m.slru.nextMxid : `${m.slruSnap.nextMxid}..${m.slru.nextMxid}`}`);
  }
  if (mx.oldestMxid !== m.cut.mxOldest) problems.push(`${exact ? 'MS3' : 'MS2'}: oldestMxid ${mx.oldestMxid}, the truncation cutoff is ${m.cut.mxOldest}`);
  out.nextMxid = next;
  const ids = [...new Set([...m.slru.mx.keys(), ...m.slruSnap.mx.keys()])].filter((id) => id >= m.cut.mxOldest).sort((a, b) => a - b);
  for (const id of ids) {
    m.stats.mxidsVerified++;
    const got = await attempt(async () => membersText(await mx.getMembers(id)));
    const durable = m.slruSnap.mx.get(id);
    const now = m.slru.mx.get(id);
    if (exact || durable !== undefined) {
      const want = exact ? now : durable;
      if (got.value === undefined || got.value !== want) problems.push(`${exact ? 'MS3' : 'MS2'}: mxid ${id} reads ${got.value ?? got.code}, ${exact ? 'model' : 'durable since the last checkpoint:'} ${want}`);
      else out.mx.set(id, got.value);
      continue;
    }
    // Created since the last completed checkpoint.
    if (got.value !== undefined) {
      if (got.value !== now) problems.push(`MS2: mxid ${id} reads other members ${got.value}, created with ${now}`);
      else out.mx.set(id, got.value);
    } else if ((got.code === 'BAD_ARGUMENT' && id >= next) || (got.code === 'DATA_CORRUPT' && id < next)) m.stats.mxidsLost++;
    else problems.push(`MS2: mxid ${id} created since the last checkpoint: ${got.code} with nextMxid ${next}`);
  }
  if (m.cut.mxOldest > 1) {
    m.stats.slruRefusalsVerified++;
    const below = await attempt(() => mx.getMembers(m.cut.mxOldest - 1));
    if (below.code !== 'BAD_ARGUMENT') problems.push(`${exact ? 'MS3' : 'MS2'}: mxid ${m.cut.mxOldest - 1} lies below the truncation cutoff but reads ${below.code ?? 'members'}`);
  }
  return out;
}

function noteSince<V>(map: Map<number, Set<V>>, xid: number, v: V): void {
  let set = map.get(xid);
  if (!set) map.set(xid, (set = new Set()));
  set.add(v);
}

/** The SLRU commands (MS3 while the engine runs). In the failed state only the reads run. */
async function runSlru(spec: Extract<CmdSpec, { kind: 'clogSet' | 'clogGet' | 'commitTsSet' | 'commitTsGet' | 'multixactCreate' | 'multixactMembers' | 'slruTruncate' }>, m: Model, r: Real): Promise<void> {
  const e = r.engine;
  switch (spec.kind) {
    case 'clogSet': {
      const xid = xidOf(spec.x);
      const status = spec.status & 3;
      if (!clogKept(m, xid)) {
        await expectCode(`clog.setStatus(${xid}) below the cutoff`, e.clog.setStatus(xid, status as ClogStatus), ['BAD_ARGUMENT']);
        return;
      }
      await e.clog.setStatus(xid, status as ClogStatus);
      if (status === 0) m.slru.clog.delete(xid);
      else m.slru.clog.set(xid, status);
      noteSince(m.slruSince.clog, xid, status);
      return;
    }
    case 'clogGet': {
      const xid = xidOf(spec.x);
      const got = await attempt(() => e.clog.getStatus(xid));
      if (!clogKept(m, xid)) {
        if (got.code !== 'BAD_ARGUMENT') fail(`clog.getStatus(${xid}) below the cutoff: ${got.code ?? got.value}`);
        m.stats.slruRefusalsVerified++;
        return;
      }
      if (m.failed && got.code === 'ENGINE_FAILED') return; // an eviction write it needed was refused
      m.stats.slruValuesVerified++;
      if (got.value !== (m.slru.clog.get(xid) ?? 0)) fail(`clog.getStatus(${xid}): ${got.code ?? got.value}, model ${m.slru.clog.get(xid) ?? 0}`);
      return;
    }
    case 'commitTsSet': {
      const xid = xidOf(spec.x);
      const v = ++m.version;
      const timestampUs = BigInt(v) * 1000n + 1n;
      const originId = v & 0xffff;
      if (!tsKept(m, xid)) {
        await expectCode(`commitTs.set(${xid}) below the cutoff`, e.commitTs.set(xid, timestampUs, originId), ['BAD_ARGUMENT']);
        return;
      }
      await e.commitTs.set(xid, timestampUs, originId);
      const text = `${timestampUs}:${originId}`;
      m.slru.ts.set(xid, text);
      noteSince(m.slruSince.ts, xid, text);
      return;
    }
    case 'commitTsGet': {
      const xid = xidOf(spec.x);
      const got = await attempt(async () => tsText(await e.commitTs.get(xid)));
      if (!tsKept(m, xid)) {
        if (got.code !== 'BAD_ARGUMENT') fail(`commitTs.get(${xid}) below the cutoff: ${got.code ?? got.value}`);
        m.stats.slruRefusalsVerified++;
        return;
      }
      if (m.failed && got.code === 'ENGINE_FAILED') return;
      m.stats.slruValuesVerified++;
      if (got.value !== (m.slru.ts.get(xid) ?? null)) fail(`commitTs.get(${xid}): ${got.code ?? got.value}, model ${m.slru.ts.get(xid) ?? null}`);
      return;
    }
    case 'multixactCreate': {
      const members = spec.members.map((x) => ({ xid: 1000 + x.x, status: (x.status % 6) as MultiXactStatus }));
      const mxid = await e.multixact.create(members);
      if (mxid !== m.slru.nextMxid) fail(`multixact.create returned ${mxid}, model's next mxid ${m.slru.nextMxid}`);
      m.slru.mx.set(mxid, membersText(members));
      m.slru.nextMxid = mxid + 1;
      m.slruSince.mx.add(mxid);
      return;
    }
    case 'multixactMembers': {
      const ids = [...m.slru.mx.keys()].sort((a, b) => a - b);
      if (ids.length === 0 || spec.pick % 8 === 7) {
        // Never created, or truncated away (or 0, InvalidMultiXactId).
        const id = spec.pick % 16 === 7 ? m.cut.mxOldest - 1 : m.slru.nextMxid;
        const got = await attempt(() => e.multixact.getMembers(id));
        if (got.code !== 'BAD_ARGUMENT') fail(`multixact.getMembers(${id}) (outside oldest ${m.cut.mxOldest} .. next ${m.slru.nextMxid}): ${got.code ?? 'members'}`);
        m.stats.slruRefusalsVerified++;
        return;
      }
      const id = ids[spec.pick % ids.length]!;
      const got = await attempt(async () => membersText(await e.multixact.getMembers(id)));
      if (m.failed && got.code === 'ENGINE_FAILED') return;
      m.stats.mxidsVerified++;
      if (got.value !== m.slru.mx.get(id)) fail(`multixact.getMembers(${id}): ${got.value ?? got.code}, model ${m.slru.mx.get(id)}`);
      return;
    }
    case 'slruTruncate': {
      m.stats.slruTruncations++;
      if (spec.which === 'multixact') {
        const oldest = m.cut.mxOldest + (spec.pick % (m.slru.nextMxid - m.cut.mxOldest + 1));
        await e.multixact.truncate(oldest);
        m.cut.mxOldest = Math.max(m.cut.mxOldest, oldest);
        for (const id of [...m.slru.mx.keys()]) if (id < m.cut.mxOldest) m.slru.mx.delete(id);
        return;
      }
      const xid = xidOf(spec.pick);
      if (spec.which === 'clog') {
        await e.clog.truncate(xid);
        m.cut.clogPage = Math.max(m.cut.clogPage, segmentStart(clogPageOf(xid)));
        for (const x of [...m.slru.clog.keys()]) if (!clogKept(m, x)) m.slru.clog.delete(x);
      } else {
        await e.commitTs.truncate(xid);
        m.cut.tsPage = Math.max(m.cut.tsPage, segmentStart(tsPageOf(xid)));
        for (const x of [...m.slru.ts.keys()]) if (!tsKept(m, x)) m.slru.ts.delete(x);
      }
      return;
    }
  }
}

// ------------------------------------------------------------------ commands

interface ForkRef {
  storage: Storage;
  rel: number;
  fork: ForkNumber;
}

function parseKey(k: string): ForkRef {
  const [storage, rel, fork] = k.split(':');
  return { storage: storage as Storage, rel: Number(rel), fork: Number(fork) as ForkNumber };
}

/** Existing forks that satisfy `pred`, in key order. */
function forksWhere(m: Model, pred: (n: number) => boolean): string[] {
  return [...m.cur.keys()].filter((k) => pred(m.cur.get(k)!.length)).sort();
}
const extendable = (n: number) => n < MAX_BLOCKS;
const nonEmpty = (n: number) => n > 0;

/** The fork (or relation) a command with `at` works on, or null when there is none. */
function targetOf(spec: CmdSpec, m: Model): (ForkRef & { key: string }) | null {
  let keys: string[];
  switch (spec.kind) {
    case 'extend':
      keys = forksWhere(m, extendable);
      break;
    case 'write':
    case 'read':
      keys = forksWhere(m, nonEmpty);
      break;
    case 'truncate':
    case 'drop':
      keys = forksWhere(m, () => true);
      break;
    case 'fault':
      keys = spec.target === 'extend' ? forksWhere(m, extendable) : spec.target === 'checkpoint' ? ['md:0:0'] : forksWhere(m, nonEmpty);
      break;
    default:
      return null;
  }
  if (keys.length === 0) return null;
  const key = keys[spec.at % keys.length]!;
  return { key, ...parseKey(key) };
}

/** Whether the command may run in this model state (fast-check's `check`). */
export function applicable(spec: CmdSpec, m: Model): boolean {
  if (m.failed && !(spec.kind === 'read' || spec.kind === 'closeReopen' || spec.kind === 'crash' || spec.kind === 'clogGet' || spec.kind === 'commitTsGet' || spec.kind === 'multixactMembers')) return false;
  switch (spec.kind) {
    case 'extend':
    case 'write':
    case 'read':
    case 'truncate':
    case 'drop':
    case 'fault':
      return targetOf(spec, m) !== null;
    case 'syncRequest':
      // SYNC only for an md fork that exists (its segment file is there); FORGET only for one
      // that does not (a dropped relation's leftover request, as md's own drop sends).
      return spec.type === 'sync' ? m.cur.has(keyOf('md', spec.rel, spec.fork)) : !m.cur.has(keyOf('md', spec.rel, spec.fork));
    default:
      return true;
  }
}

function toString(spec: CmdSpec): string {
  const { kind, ...rest } = spec;
  return `${kind}(${JSON.stringify(rest)})`;
}

async function doExtend(spec: ForkRef, m: Model, r: Real): Promise<void> {
  const k = keyOf(spec.storage, spec.rel, spec.fork);
  const pages = m.cur.get(k)!;
  const page = makePage(spec.storage, spec.rel, spec.fork, pages.length, ++m.version);
  const blk = await r.engine.relation(loc(spec.rel), { storage: spec.storage }).extend(spec.fork, page);
  if (blk !== pages.length) fail(`extend ${k}: got block ${blk}, model expects ${pages.length}`);
  const fp = fingerprint(page);
  pages.push(fp);
  noteWritten(m, k, blk, fp);
  noteSize(m, k, pages.length);
}

async function doWrite(spec: ForkRef & { pick: number }, m: Model, r: Real): Promise<void> {
  const k = keyOf(spec.storage, spec.rel, spec.fork);
  const pages = m.cur.get(k)!;
  const blk = spec.pick % pages.length;
  const page = makePage(spec.storage, spec.rel, spec.fork, blk, ++m.version);
  await r.engine.relation(loc(spec.rel), { storage: spec.storage }).write(spec.fork, blk, page);
  const fp = fingerprint(page);
  pages[blk] = fp;
  noteWritten(m, k, blk, fp);
}

async function doRead(spec: ForkRef & { pick: number }, m: Model, r: Real): Promise<void> {
  const k = keyOf(spec.storage, spec.rel, spec.fork);
  const pages = m.cur.get(k)!;
  const h = r.engine.relation(loc(spec.rel), { storage: spec.storage });
  const n = await h.nblocks(spec.fork);
  if (n !== pages.length) fail(`read ${k}: nblocks ${n}, model ${pages.length}`);
  const blk = spec.pick % pages.length;
  const fp = fingerprint(await h.read(spec.fork, blk));
  m.stats.pagesVerified++;
  if (fp !== pages[blk]) fail(`read ${k} block ${blk}: differs from the model`);
}

async function doCheckpoint(m: Model, r: Real): Promise<void> {
  await r.engine.checkpoint();
  commit(m);
}

async function runSpec(spec: CmdSpec, m: Model, r: Real): Promise<void> {
  switch (spec.kind) {
    case 'create': {
      const k = keyOf(spec.storage, spec.rel, spec.fork);
      const h = r.engine.relation(loc(spec.rel), { storage: spec.storage });
      if (spec.storage === 'md' && spec.fork === 0 && m.tombstones.has(spec.rel) && !m.cur.has(k)) {
        // md.ts M4: a dropped relation's main fork cannot be created again before the checkpoint.
        await expectCode(`create ${k} while its tombstone waits`, h.create(spec.fork), ['BAD_ARGUMENT']);
        return;
      }
      await h.create(spec.fork);
      if (!m.cur.has(k)) {
        m.cur.set(k, []);
        noteSize(m, k, 0);
      }
      return;
    }
    case 'extend':
      return doExtend(targetOf(spec, m)!, m, r);
    case 'write':
      return doWrite({ ...targetOf(spec, m)!, pick: spec.pick }, m, r);
    case 'read':
      return doRead({ ...targetOf(spec, m)!, pick: spec.pick }, m, r);
    case 'truncate': {
      const t = targetOf(spec, m)!;
      const k = t.key;
      const pages = m.cur.get(k)!;
      const n = spec.pick % (pages.length + 1);
      await r.engine.relation(loc(t.rel), { storage: t.storage }).truncate(t.fork, n);
      // MA2: md cuts segments from the last one down, passing through each boundary.
      for (let s = REL_SEG_BLOCKS * Math.ceil((n + 1) / REL_SEG_BLOCKS); s < pages.length; s += REL_SEG_BLOCKS) noteSize(m, k, s);
      pages.length = n;
      noteSize(m, k, n);
      return;
    }
    case 'drop': {
      const t = targetOf(spec, m)!;
      await r.engine.relation(loc(t.rel), { storage: t.storage }).drop();
      for (const f of FORKS_USED) {
        const k = keyOf(t.storage, t.rel, f);
        if (!m.cur.has(k)) continue;
        if (t.storage === 'md' && f === 0) m.tombstones.add(t.rel);
        m.cur.delete(k);
        noteSize(m, k, 0);
        noteSize(m, k, ABSENT);
      }
      return;
    }
    case 'checkpoint':
      return doCheckpoint(m, r);
    case 'closeReopen': {
      const wasFailed = m.failed;
      if (wasFailed) {
        // No shutdown checkpoint in the failed state; close must still release everything, and
        // reject with ENGINE_FAILED so a script learns its last changes are not durable.
        const err = await r.engine.close().then(() => null, (e: unknown) => e);
        if ((err as { code?: string } | null)?.code !== 'ENGINE_FAILED') fail(`close of a failed engine: expected ENGINE_FAILED, got ${String(err)}`);
      } else {
        await r.engine.close();
        commit(m);
      }
      if (r.disk.openHandleCount !== 0) fail(`close left ${r.disk.openHandleCount} handles open`);
      Object.assign(r, await openEngine(r.disk));
      if (r.engine.openStats.uncleanStop !== wasFailed) fail(`reopen: uncleanStop ${r.engine.openStats.uncleanStop}, expected ${wasFailed}`);
      if (wasFailed) await verifyUncleanReopen(m, r, 'reopen after the failed state');
      else await verifyExact(m, r, 'clean reopen');
      return;
    }
    case 'crash': {
      m.stats.crashes++;
      // The running engine is abandoned with its disk (power loss); it is never used again.
      const disk = r.disk.crash(spec.mode, spec.seed);
      Object.assign(r, await openEngine(disk));
      if (!r.engine.openStats.uncleanStop) fail('reopen after a crash did not see an unclean stop');
      await verifyUncleanReopen(m, r, `crash(${spec.mode}, ${spec.seed})`);
      return;
    }
    case 'syncRequest': {
      // A SYNC names a segment file that exists (a missing one is an error at the checkpoint,
      // as in PostgreSQL); a FORGET may name any segment.
      const n = m.cur.get(keyOf('md', spec.rel, spec.fork))?.length ?? 0;
      const segno = spec.type === 'sync' ? spec.segno % Math.max(1, Math.ceil(n / REL_SEG_BLOCKS)) : spec.segno;
      const tag = { handler: SyncHandlerId.MD, forkNum: spec.fork, rlocator: loc(spec.rel), segno };
      const ok = await r.engine.registerSyncRequest(tag, spec.type === 'sync' ? SyncRequestType.SYNC : SyncRequestType.FORGET);
      if (ok !== true) fail('registerSyncRequest did not accept the request');
      return;
    }
    case 'fault':
      return runFault(spec, m, r);
    case 'clogSet':
    case 'clogGet':
    case 'commitTsSet':
    case 'commitTsGet':
    case 'multixactCreate':
    case 'multixactMembers':
    case 'slruTruncate':
      return runSlru(spec, m, r);
  }
}

const SYNC_KINDS: readonly IoKind[] = ['fsync', 'fdatasync', 'fsyncDir'];

async function runFault(spec: Extract<CmdSpec, { kind: 'fault' }>, m: Model, r: Real): Promise<void> {
  m.stats.faultsInjected++;
  const t = { ...targetOf(spec, m)!, pick: spec.pick };
  // A checkpoint's volume sync makes two fdatasyncs (pages and catalog, then the superblock):
  // `pick` chooses which one fails. fsyncgate only on the volume's fdatasync (MF5).
  // fsync: `pick` chooses among the first three (md segments and SLRU segments, in the sync
  // phase's order).
  const nth = spec.target !== 'checkpoint' ? 1 : spec.io === 'fdatasync' ? 1 + (spec.pick % 2) : spec.io === 'fsync' ? 1 + (spec.pick % 3) : 1;
  // Model effects are applied only when the operation succeeds.
  const shadow: Model = { ...m, cur: clone(m.cur), since: new Map([...m.since].map(([k, v]) => [k, { sizes: new Set(v.sizes), written: new Map([...v.written].map(([b, s]) => [b, new Set(s)])) }])) };
  const { fired, error } = await withOneFault(r.disk, { kind: spec.io, nth, code: spec.code, fsyncgate: spec.fsyncgate && spec.io === 'fdatasync' }, async () => {
    if (spec.target === 'checkpoint') await doCheckpoint(shadow, r);
    else if (spec.target === 'extend') await doExtend(t, shadow, r);
    else if (spec.target === 'write') await doWrite(t, shadow, r);
    else await doRead(t, shadow, r);
  });
  if (fired) m.stats.faultsFired++;
  if (error === undefined) {
    // Not fired, or absorbed where that is allowed: a page write whose eviction write failed
    // may still succeed through another victim.
    if (fired && spec.target !== 'write') fail(`fault ${spec.io} ${spec.code} fired during ${spec.target} but it reported success (MF1)`);
    Object.assign(m, { cur: shadow.cur, snap: shadow.snap, since: shadow.since, candidates: shadow.candidates, tombstones: shadow.tombstones, version: shadow.version, slruSnap: shadow.slruSnap, slruSince: shadow.slruSince });
    return;
  }
  m.version = shadow.version;
  if (typeof error !== 'object' || error === null || (error as { name?: string }).name !== 'LamstoreError') {
    throw new Error(`fault ${spec.io} during ${spec.target}: not a LamstoreError: ${String(error)}`, { cause: error });
  }
  if (spec.target === 'checkpoint') {
    m.candidates.push(clone(m.cur));
    if (SYNC_KINDS.includes(spec.io) && !r.engine.failed) fail(`a failed ${spec.io} in a checkpoint did not fail the engine (MF2)`);
    if (r.engine.failed) {
      m.failed = true;
      m.stats.failedStates++;
      await expectCode('checkpoint in the failed state', r.engine.checkpoint(), ['ENGINE_FAILED']);
    }
    return;
  }
  if (r.engine.failed) fail(`a failed ${spec.io} during ${spec.target} put the engine in the failed state`);
  if (spec.target === 'extend') {
    const k = t.key;
    const n = await r.engine.relation(loc(t.rel), { storage: t.storage }).nblocks(t.fork);
    if (n !== m.cur.get(k)!.length) fail(`failed extend of ${k} changed nblocks to ${n} (model ${m.cur.get(k)!.length}) (MF4)`);
  } else if (spec.target === 'read') {
    await doRead(t, m, r); // MF4: nothing wrong was cached
  }
}

export class ModelCommand {
  constructor(readonly spec: CmdSpec) {}
  check(m: Readonly<Model>): boolean {
    return applicable(this.spec, m as Model);
  }
  async run(m: Model, r: Real): Promise<void> {
    m.stats.commands++;
    m.stats.kinds.add(this.spec.kind);
    try {
      await runSpec(this.spec, m, r);
      checkInvariants(r);
    } catch (err) {
      throw new Error(`${toString(this.spec)} failed: ${(err as Error).message}`, { cause: err });
    }
  }
  toString(): string {
    return toString(this.spec);
  }
}

/** Run an explicit command list (a regression case) without fast-check; skips inapplicable ones as fast-check would. */
export async function runSequence(specs: readonly CmdSpec[], stats = newStats()): Promise<PbtStats> {
  const { model, real } = await setup(stats);
  for (const s of specs) {
    const c = new ModelCommand(s);
    if (c.check(model)) await c.run(model, real);
  }
  return stats;
}
