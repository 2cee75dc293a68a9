/**
 * The model and commands of the volume model-based test (test/campaign-volume-model.test.ts):
 * the Volume API alone, no Engine. Commands are plain data (`VolCmdSpec`) so a shrunk failing
 * sequence can be written down and replayed without fast-check (`runVolumeSequence`).
 *
 * The real system: one `Volume` on a SimDisk (4 KiB pages), opened with `STUB_HOST` (every sync
 * request taken, nothing syncs until the harness calls syncNow), `poolPages` and, in some runs,
 * online growth (`grow: { step, max }`). The harness plays the engine's part: a small "buffer
 * pool" of dirty pages (at most poolPages) that its checkpoint hands to
 * `writeBuffers(.., 'checkpoint')` between checkpointBegin and syncNow, as BufferSync does; a
 * write that does not go to the pool goes to the volume at once (`'eviction'`).
 *
 * The model (much simpler than the volume): a state is a map fork -> page fingerprints (sha-256;
 * its length is nblocks), the volume's size in bytes, and the snapshots: per name, the forks it
 * must show (recorded when it was created, never changed after). Snapshot operations are
 * durable when they return (each is one superblock switch after a volume sync), so `vol` and
 * `snap` always name the same snapshots outside a crash judgement.
 *  - `vol`: what the volume shows now (reads, nblocks).
 *  - `pool`: pages written to the harness's pool and not yet to the volume.
 *  - `snap`: `vol` at the last completed volume sync (checkpoint or bare syncNow), with the size
 *    that sync recorded; after a reopen, what the reopen found.
 *  - `candidates`: captures of syncs that failed after their first fdatasync returned (their
 *    superblock may have reached the page cache, or the disk).
 *
 * Snapshots (`snapCreate`, `snapDrop`, names from VM_SNAPSHOT_NAMES): a create runs as the engine
 * runs one, `createSnapshot(name, { checkpoint: <the harness's checkpoint> })`, so the snapshot
 * records `vol` after that checkpoint, and `snap` becomes that state with the snapshot and the
 * size the switch recorded. A drop's switch names the durable catalog: `snap` loses the name and
 * takes the size now; `vol` keeps its forks.
 *
 * Allowed states (VM = volume model; D1-D2 of DESIGN.md section 8 for format 2, strict):
 *  VM1 After a power loss (SimDisk crash, any of the five modes, between commands or before any
 *      I/O call inside one) the volume equals EXACTLY one of: `snap`, a candidate, or (crash
 *      inside a checkpoint or sync) the capture of the sync under way; one state for the whole
 *      volume: every fork's existence, nblocks and page, the volume size, and the snapshot set
 *      with every snapshot's forks (VM6). Never a torn page (checksum failure), never a mix of
 *      two. A crash after a sync returned allows only its capture. Inside a snapshot create:
 *      also, from the moment its checkpoint returned, the state with the snapshot (present with
 *      exactly its recorded forks, or absent); inside a drop, the state without it (absent, or
 *      present with its forks). `lamstore check --pages` (checkVolume) finds no error on the image.
 *  VM2 After a reopen without a power loss (close without a checkpoint, or a kill: every handle
 *      closed, the page cache kept) the volume equals `snap` exactly, also after a failed sync
 *      (volume.ts #undoSwitch); after a checkpoint and a close, `vol` exactly; the snapshots in
 *      both cases exactly the model's (VM6).
 *  VM3 VOLUME_FULL is an allowed outcome of create, extend and an eviction write, and changes
 *      nothing (forks, maps, free and pending space, size); a checkpoint never fails with it
 *      (V5: the reserve keeps room for every pool page and the catalog). A snapshot create may
 *      end VOLUME_FULL (V5/V7: the blocks it would share raise the reserve) after its checkpoint
 *      completed: no snapshot is recorded and no fork's map or snapshot changes from how that
 *      checkpoint left them (free space may: the volume may have grown online for it, V6). A
 *      create under a taken name is BAD_ARGUMENT before anything runs, its checkpoint included.
 *  VM4 A failed fdatasync, or any failure inside a volume sync, is the failed state: every later
 *      change, sync and snapshot create or drop is ENGINE_FAILED, reads still work; only
 *      read, reopen and crash follow. So every candidate names the snapshots `snap` names.
 *      A failed eviction write (W3) fails that call; each of its pages reads back old or new and
 *      the volume keeps working. A failed extend leaves nblocks as it was; a failed read returns
 *      nothing and the next read is right.
 *  VM5 Offline growth (`growVolumeFile` on the closed volume) keeps the last checkpoint's
 *      contents and records the new size (G5); a crash or a failure during it leaves the old or
 *      the new size, the same contents (G4). Online growth never changes what a crash leaves but
 *      the size recorded by the capture that follows it (V6). Offline growth keeps the snapshots.
 *  VM6 After every reopen and every crash judgement, `listSnapshots()` names exactly the model's
 *      snapshots, and each, opened read-only on its own (`snapshot: name`; the live volume is
 *      closed for it, a writer's lock refuses the open), shows exactly its recorded forks:
 *      existence, nblocks, every page's fingerprint. A missing or an extra snapshot fails.
 * After every command: `volume.checkInvariants()` (V1, V2, V4, A1-A3, T1-T2).
 */
import { createHash } from 'node:crypto';
import { isLamstoreError, verifyPageChecksum } from '../../engine/index.js';
import type { ForkNumber, IoKind, PageWrite } from '../../engine/index.js';
import { SimDisk } from '../../engine/testing.js';
import type { CrashMode, FaultCode } from '../../engine/testing.js';
import { Volume, checkVolume, growVolumeFile } from '../../volume/index.js';
import { SMALL_BS } from './engine.js';
import { STUB_HOST, makePage, rel } from './volume.js';
import { forkKey, judgeVolume } from './campaign-crash-model.js';
import type { ObservedFork, VolumeCandidate } from './campaign-crash-model.js';
import { withOneFault } from './io-doubles.js';

export const VM_BS = SMALL_BS;
export const VM_PATH = '/vol/model.vol';
export const VM_RELS = [1, 2, 3] as const;
export const VM_FORKS: readonly ForkNumber[] = [0, 1, 2];
/** Past the first 8-block extent, small enough that runs stay fast. */
export const VM_MAX_BLOCKS = 20;
/** Offline growth stops here (SimDisk keeps every byte in memory). */
export const VM_SIZE_BLOCKS_MAX = 160;

export interface VolumeRunConfig {
  /** The volume's size at creation, in blocks. */
  sizeBlocks: number;
  /** The harness's pool: at most this many dirty pages (VolumeOpenOptions.poolPages). */
  poolPages: number;
  /** Online growth, in blocks; null: never grows online. */
  grow: { stepBlocks: number; maxBlocks: number } | null;
}

export type VolFaultTarget = 'checkpoint' | 'sync' | 'write' | 'extend' | 'read' | 'grow';

export type VolCmdSpec =
  | { kind: 'create'; rel: number; fork: ForkNumber }
  // `at` picks among the forks a command applies to, in key order, so almost every generated
  // command applies; `pick` a block; the fork and block are in the error message.
  | { kind: 'extend'; at: number; skip: number; count: number }
  | { kind: 'write'; picks: { at: number; pick: number }[]; pooled: boolean }
  | { kind: 'read'; at: number; pick: number }
  | { kind: 'truncate'; at: number; pick: number }
  | { kind: 'unlink'; at: number; all: boolean }
  | { kind: 'checkpoint' }
  | { kind: 'sync' }
  | { kind: 'crash'; mode: CrashMode; seed: number }
  | { kind: 'crashDuring'; inner: VolCmdSpec; call: number; mode: CrashMode; seed: number }
  | { kind: 'reopen'; how: 'clean' | 'close' | 'kill' }
  | { kind: 'grow'; byBlocks: number; checkpointFirst: boolean }
  | { kind: 'fault'; target: VolFaultTarget; io: IoKind; code: FaultCode; fsyncgate: boolean; nth: number; at: number; pick: number }
  // `slot` names one of VM_SNAPSHOT_NAMES (taken or not); `at` picks among the existing ones.
  | { kind: 'snapCreate'; slot: number }
  | { kind: 'snapDrop'; at: number };

export type VolCmdKind = VolCmdSpec['kind'];
export const CRASH_DURING_KINDS: readonly VolCmdKind[] = ['checkpoint', 'sync', 'write', 'extend', 'grow', 'snapCreate', 'snapDrop'];
export const VOL_CMD_KINDS: readonly VolCmdKind[] = ['create', 'extend', 'write', 'read', 'truncate', 'unlink', 'checkpoint', 'sync', 'crash', 'crashDuring', 'reopen', 'grow', 'fault', 'snapCreate', 'snapDrop'];
/** Few names, so creates often meet a taken name and drops are followed by re-creates. */
export const VM_SNAPSHOT_NAMES = ['s0', 's1', 's2'] as const;

type Forks = Map<string, string[]>;
interface State {
  forks: Forks;
  sizeBytes: number;
  /** Per snapshot name, the forks it must show (never changed once recorded: shared, not copied). */
  snapshots: Map<string, Forks>;
}
interface PoolPage {
  key: string;
  blk: number;
  fp: string;
  page: Uint8Array;
}

export interface VolumeModelStats {
  runs: number;
  commands: number;
  crashes: number;
  /** crashDuring commands, and those whose power loss came before an I/O call inside the command. */
  crashesDuring: number;
  crashesInside: number;
  faultsInjected: number;
  faultsFired: number;
  failedStates: number;
  /** Offline grows that completed, and online growths of the file. */
  growsOffline: number;
  growsOnline: number;
  volumeFull: number;
  /** VM1 judgements: states, pages read back, and what must stay 0. */
  states: number;
  pagesVerified: number;
  tornDetected: number;
  tornReturned: number;
  metaMixed: number;
  lost: number;
  checkErrors: number;
  /** Inactive superblock slots check reported damaged after a power loss during a switch (allowed). */
  interruptedSwitch: number;
  /** States equal to a sync under way (or failed), not to the last completed one. */
  choseCompleting: number;
  reopens: number;
  forksDefragmented: number;
  checkpointWrites: number;
  /** Snapshots created, refused for a taken name, refused with VOLUME_FULL, dropped. */
  snapCreated: number;
  snapNameTaken: number;
  snapFull: number;
  snapDropped: number;
  /** Snapshots opened read-only and compared with the model (VM6), and judgements that had any. */
  snapshotsVerified: number;
  snapshotStates: number;
  /** Crash states judged whose snapshot set was the one of an operation under way (created or dropped). */
  snapChoseCompleting: number;
  kinds: Set<VolCmdKind>;
  /** Commands run, per kind. */
  perKind: Record<string, number>;
}

export function newVolumeModelStats(): VolumeModelStats {
  return {
    runs: 0, commands: 0, crashes: 0, crashesDuring: 0, crashesInside: 0, faultsInjected: 0, faultsFired: 0, failedStates: 0, growsOffline: 0, growsOnline: 0, volumeFull: 0,
    states: 0, pagesVerified: 0, tornDetected: 0, tornReturned: 0, metaMixed: 0, lost: 0, checkErrors: 0, interruptedSwitch: 0, choseCompleting: 0, reopens: 0, forksDefragmented: 0, checkpointWrites: 0,
    snapCreated: 0, snapNameTaken: 0, snapFull: 0, snapDropped: 0, snapshotsVerified: 0, snapshotStates: 0, snapChoseCompleting: 0, kinds: new Set(), perKind: {},
  };
}

export interface VolumeModel {
  cfg: VolumeRunConfig;
  vol: State;
  pool: Map<string, PoolPage>;
  snap: State;
  candidates: State[];
  failed: boolean;
  version: number;
  /** Every page image by fingerprint (torn-returned detection). */
  images: Map<string, Uint8Array>;
  stats: VolumeModelStats;
}

export interface VolumeReal {
  disk: SimDisk;
  volume: Volume;
  /** volume.stats.grows and forksDefragmented already counted (per Volume instance). */
  grewSeen: number;
  defragSeen: number;
}

const keyOf = (r: number, fork: number): string => forkKey('volume', r, fork);
function parseKey(k: string): { r: number; fork: ForkNumber } {
  const m = /^volume:(\d+)\/(\d+)$/.exec(k)!;
  return { r: Number(m[1]), fork: Number(m[2]) as ForkNumber };
}
const poolKey = (k: string, blk: number) => `${k}#${blk}`;
const cloneForks = (f: Forks): Forks => new Map([...f].map(([k, v]) => [k, [...v]]));
const cloneState = (s: State): State => ({ forks: cloneForks(s.forks), sizeBytes: s.sizeBytes, snapshots: new Map(s.snapshots) });
const ZERO_PAGE = new Uint8Array(VM_BS);

function fingerprint(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
const ZERO_FP = fingerprint(ZERO_PAGE);

function fail(msg: string): never {
  throw new Error(msg);
}
function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined;
}
function describeState(s: State): string {
  const snaps = s.snapshots.size === 0 ? '' : ` snapshots=${[...s.snapshots.keys()].sort().join(',')}`;
  return `{${[...s.forks].sort().map(([k, v]) => `${k}=${v.length}`).join(' ')} size=${s.sizeBytes / VM_BS}${snaps}}`;
}

// ------------------------------------------------------------------ the real system

async function openVolume(disk: SimDisk, cfg: VolumeRunConfig, uncleanStart: boolean): Promise<Volume> {
  return Volume.open({
    io: disk,
    path: VM_PATH,
    blockSize: VM_BS,
    poolPages: cfg.poolPages,
    uncleanStart,
    ...(cfg.grow ? { grow: { step: cfg.grow.stepBlocks * VM_BS, max: cfg.grow.maxBlocks * VM_BS } } : {}),
  });
}

export async function setupVolumeModel(cfg: VolumeRunConfig, stats: VolumeModelStats): Promise<{ model: VolumeModel; real: VolumeReal }> {
  stats.runs++;
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  await disk.fsyncDir('/');
  const volume = await Volume.open({
    io: disk,
    path: VM_PATH,
    blockSize: VM_BS,
    create: { sizeBytes: cfg.sizeBlocks * VM_BS, blockSize: VM_BS },
    poolPages: cfg.poolPages,
    ...(cfg.grow ? { grow: { step: cfg.grow.stepBlocks * VM_BS, max: cfg.grow.maxBlocks * VM_BS } } : {}),
  });
  const empty: State = { forks: new Map(), sizeBytes: cfg.sizeBlocks * VM_BS, snapshots: new Map() };
  const model: VolumeModel = { cfg, vol: cloneState(empty), pool: new Map(), snap: cloneState(empty), candidates: [], failed: false, version: 0, images: new Map(), stats };
  return { model, real: { disk, volume, grewSeen: 0, defragSeen: 0 } };
}

/** Replace the volume (its old disk and handle are abandoned, as a power loss or a kill leaves them). */
async function reopenOn(r: VolumeReal, m: VolumeModel, disk: SimDisk, uncleanStart: boolean): Promise<void> {
  m.stats.reopens++;
  r.disk = disk;
  r.volume = await openVolume(disk, m.cfg, uncleanStart);
  r.grewSeen = 0;
  r.defragSeen = 0;
}

/** Every fork the volume shows, read page by page; a page failing its checksum is null. */
async function readAll(v: Volume): Promise<{ observed: Map<string, ObservedFork>; sizeBytes: number }> {
  const observed = new Map<string, ObservedFork>();
  for (const f of v.info().forks) {
    const pages: (Uint8Array | null)[] = [];
    for (let b = 0; b < f.nblocks; b++) {
      const page = new Uint8Array(VM_BS);
      await v.read(rel(f.relNumber), f.fork as ForkNumber, b, page);
      pages.push(verifyPageChecksum(page, b) ? page : null);
    }
    observed.set(keyOf(f.relNumber, f.fork), { nblocks: f.nblocks, pages });
  }
  return { observed, sizeBytes: v.volumeSizeBytes };
}

/**
 * Every snapshot the volume lists, each opened read-only and read whole. A snapshot cannot be
 * opened while the volume is open for writing (VOLUME_LOCKED), so the live volume is closed (a
 * close writes nothing) and opened again afterwards; only when it has snapshots, so that runs
 * without any keep judging the volume as the reopen left it.
 */
async function observeSnapshots(m: VolumeModel, r: VolumeReal): Promise<Map<string, Map<string, ObservedFork>>> {
  const names = r.volume.listSnapshots().map((x) => x.name);
  const out = new Map<string, Map<string, ObservedFork>>();
  if (names.length === 0) return out;
  await r.volume.close();
  for (const name of names) {
    const sv = await Volume.open({ io: r.disk, path: VM_PATH, blockSize: VM_BS, snapshot: name });
    try {
      if (sv.openedSnapshot !== name) fail(`snapshot ${name} opened as ${String(sv.openedSnapshot)}`);
      out.set(name, (await readAll(sv)).observed);
      m.stats.snapshotsVerified++;
    } finally {
      await sv.close();
    }
  }
  r.volume = await openVolume(r.disk, m.cfg, false);
  r.grewSeen = 0;
  r.defragSeen = 0;
  return out;
}

/** Why the observed snapshots are not exactly `expected` (names, forks, nblocks, pages), or null. */
function snapshotsMismatch(m: VolumeModel, observed: Map<string, Map<string, ObservedFork>>, expected: Map<string, Forks>): string | null {
  const a = [...observed.keys()].sort().join(',');
  const e = [...expected.keys()].sort().join(',');
  if (a !== e) return `snapshots [${a}], model [${e}]`;
  for (const [name, forks] of expected) {
    const obs = observed.get(name)!;
    const keys = new Set([...obs.keys(), ...forks.keys()]);
    for (const k of keys) {
      const of = obs.get(k);
      const ef = forks.get(k);
      if (!of || !ef || of.nblocks !== ef.length) return `snapshot ${name}: ${k} nblocks ${of?.nblocks ?? 'absent'}, model ${ef?.length ?? 'absent'}`;
      for (let b = 0; b < ef.length; b++) {
        m.stats.pagesVerified++;
        const page = of.pages[b];
        if (page === null || page === undefined) return `snapshot ${name}: ${k} block ${b} fails its checksum`;
        if (fingerprint(page) !== ef[b]) return `snapshot ${name}: ${k} block ${b} differs from the model`;
      }
    }
  }
  return null;
}

function toCandidate(s: State, id: number): VolumeCandidate {
  return { id, forks: new Map([...s.forks].map(([k, pages]) => [k, { nblocks: pages.length, pages: [...pages] }])) };
}

/**
 * VM1 / VM2: the volume as it is now equals exactly one of `allowed` (id 0 is the last completed
 * sync; others count as choseCompleting); the model then adopts it as `vol` and `snap`.
 */
async function judgeAndAdopt(m: VolumeModel, r: VolumeReal, allowed: readonly State[], what: string): Promise<void> {
  m.stats.states++;
  const { observed, sizeBytes } = await readAll(r.volume);
  // VM6: the snapshot set belongs to the same superblock as the live state, so it narrows the
  // allowed states before the live forks are judged.
  const observedSnaps = await observeSnapshots(m, r);
  if (observedSnaps.size > 0 || allowed.some((s) => s.snapshots.size > 0)) m.stats.snapshotStates++;
  const snapProblems = allowed.map((s) => snapshotsMismatch(m, observedSnaps, s.snapshots));
  if (snapProblems.every((p) => p !== null)) fail(`${what}: the snapshots match none of the allowed states': ${[...new Set(snapProblems)].join('; ')}`);
  const sameSize = allowed.map((s, id) => ({ s, id })).filter(({ s, id }) => s.sizeBytes === sizeBytes && snapProblems[id] === null);
  for (const f of observed.values()) m.stats.pagesVerified += f.nblocks;
  if (sameSize.length === 0) {
    m.stats.metaMixed++;
    fail(`${what}: volume size ${sizeBytes / VM_BS} blocks is none of the allowed states' ${allowed.map(describeState).join(', ')}`);
  }
  const verdict = judgeVolume(observed, sameSize.map(({ s, id }) => toCandidate(s, id)), m.images);
  m.stats.tornDetected += verdict.tornDetected;
  m.stats.tornReturned += verdict.tornReturned;
  m.stats.metaMixed += verdict.metaMixed ? 1 : 0;
  m.stats.lost += verdict.lost;
  if (verdict.chosen === null) {
    const obs = `{${[...observed].sort().map(([k, f]) => `${k}=${f.nblocks}`).join(' ')} size=${sizeBytes / VM_BS}}`;
    fail(`${what}: the volume ${obs} is none of ${allowed.map(describeState).join(', ')}:\n  ${verdict.problems.slice(0, 8).join('\n  ')}`);
  }
  if (verdict.chosen !== 0) m.stats.choseCompleting++;
  const chosen = allowed[verdict.chosen]!;
  if (!sameKeys(chosen.snapshots, allowed[0]!.snapshots)) m.stats.snapChoseCompleting++;
  m.vol = cloneState(chosen);
  m.snap = cloneState(chosen);
  m.candidates = [];
  m.pool.clear();
  m.failed = false;
}

const sameKeys = (a: Map<string, unknown>, b: Map<string, unknown>): boolean => a.size === b.size && [...a.keys()].every((k) => b.has(k));

/** The reopened volume shows exactly `vol`, and its snapshots exactly the model's (VM6). */
async function verifyExact(m: VolumeModel, r: VolumeReal, what: string): Promise<void> {
  const { observed, sizeBytes } = await readAll(r.volume);
  const observedSnaps = await observeSnapshots(m, r);
  if (observedSnaps.size > 0 || m.vol.snapshots.size > 0) m.stats.snapshotStates++;
  const snapProblem = snapshotsMismatch(m, observedSnaps, m.vol.snapshots);
  if (snapProblem !== null) fail(`${what}: ${snapProblem}`);
  if (sizeBytes !== m.vol.sizeBytes) fail(`${what}: volume size ${sizeBytes / VM_BS} blocks, model ${m.vol.sizeBytes / VM_BS}`);
  const keys = new Set([...observed.keys(), ...m.vol.forks.keys()]);
  for (const k of keys) {
    const a = observed.get(k);
    const e = m.vol.forks.get(k);
    if (!a || !e || a.nblocks !== e.length) fail(`${what}: ${k} nblocks ${a?.nblocks ?? 'absent'}, model ${e?.length ?? 'absent'}`);
    for (let b = 0; b < e.length; b++) {
      m.stats.pagesVerified++;
      const page = a.pages[b];
      if (page === null || page === undefined) fail(`${what}: ${k} block ${b} fails its checksum`);
      if (fingerprint(page) !== e[b]) fail(`${what}: ${k} block ${b} differs from the model`);
    }
  }
}

/** What VM3 compares: a VOLUME_FULL must leave all of it as it was. */
function footprint(v: Volume): string {
  const info = v.info();
  return JSON.stringify({ forks: info.forks.map((f) => [f.relNumber, f.fork, f.nblocks, f.extents]), free: info.freeBlocks, pending: info.pendingFreeBlocks, size: info.volumeSizeBytes, runs: info.freeRuns });
}

// ------------------------------------------------------------------ targets

function forksWhere(m: VolumeModel, pred: (n: number) => boolean): string[] {
  return [...m.vol.forks.keys()].filter((k) => pred(m.vol.forks.get(k)!.length)).sort();
}
const nonEmpty = (n: number) => n > 0;

function pickFork(keys: string[], at: number): string | null {
  return keys.length === 0 ? null : keys[at % keys.length]!;
}

function extendTarget(m: VolumeModel, spec: { at: number; skip: number }): { key: string; blk: number } | null {
  const key = pickFork(forksWhere(m, (n) => n < VM_MAX_BLOCKS), spec.at);
  if (key === null) return null;
  const n = m.vol.forks.get(key)!.length;
  return { key, blk: Math.min(VM_MAX_BLOCKS - 1, n + spec.skip) };
}

/** The pages of a write: distinct (fork, block), in (relation, fork, block) order (W1). */
function writeTargets(m: VolumeModel, picks: readonly { at: number; pick: number }[]): { key: string; blk: number }[] {
  const keys = forksWhere(m, nonEmpty);
  if (keys.length === 0) return [];
  const seen = new Map<string, { key: string; blk: number }>();
  for (const p of picks) {
    const key = keys[p.at % keys.length]!;
    const blk = p.pick % m.vol.forks.get(key)!.length;
    seen.set(poolKey(key, blk), { key, blk });
  }
  return [...seen.values()].sort((a, b) => {
    const x = parseKey(a.key);
    const y = parseKey(b.key);
    return x.r - y.r || x.fork - y.fork || a.blk - b.blk;
  });
}

function growthAllowed(m: VolumeModel, byBlocks: number): boolean {
  const blocks = m.vol.sizeBytes / VM_BS + byBlocks;
  return blocks <= VM_SIZE_BLOCKS_MAX && (m.cfg.grow === null || blocks <= m.cfg.grow.maxBlocks);
}

/** Whether the command may run in this model state (fast-check's `check`). */
export function volApplicable(spec: VolCmdSpec, m: VolumeModel): boolean {
  if (m.failed && !(spec.kind === 'read' || spec.kind === 'crash' || (spec.kind === 'reopen' && spec.how !== 'clean'))) return false;
  switch (spec.kind) {
    case 'extend':
      return extendTarget(m, spec) !== null;
    case 'write':
    case 'read':
      return forksWhere(m, nonEmpty).length > 0;
    case 'truncate':
    case 'unlink':
      return m.vol.forks.size > 0;
    case 'grow':
      return growthAllowed(m, spec.byBlocks);
    case 'snapDrop':
      return m.vol.snapshots.size > 0;
    case 'crashDuring':
      // Commands that do I/O on the volume (create, truncate and unlink only change memory).
      return CRASH_DURING_KINDS.includes(spec.inner.kind) && volApplicable(spec.inner, m);
    case 'fault':
      switch (spec.target) {
        case 'write':
        case 'read':
          return forksWhere(m, nonEmpty).length > 0;
        case 'extend':
          return extendTarget(m, { at: spec.at, skip: 0 }) !== null;
        case 'grow':
          return growthAllowed(m, 1 + (spec.pick % 8));
        default:
          return true;
      }
    default:
      return true;
  }
}

export function volSpecString(spec: VolCmdSpec): string {
  const { kind, ...rest } = spec;
  return `${kind}(${JSON.stringify(rest)})`;
}

// ------------------------------------------------------------------ command bodies

function newPage(m: VolumeModel, key: string, blk: number): { page: Uint8Array; fp: string } {
  const { r, fork } = parseKey(key);
  const page = makePage(rel(r), fork, blk, ++m.version, VM_BS);
  const fp = fingerprint(page);
  m.images.set(fp, page);
  return { page, fp };
}

/** Run `op`; VOLUME_FULL is allowed and must change nothing (VM3): then returns false. */
async function fullAllowed(m: VolumeModel, r: VolumeReal, what: string, op: () => Promise<unknown>): Promise<boolean> {
  const before = footprint(r.volume);
  try {
    await op();
    return true;
  } catch (err) {
    if (codeOf(err) !== 'VOLUME_FULL') throw err;
    m.stats.volumeFull++;
    const after = footprint(r.volume);
    if (after !== before) fail(`${what}: VOLUME_FULL changed the volume:\n  before ${before}\n  after  ${after}`);
    return false;
  }
}

async function doCreate(spec: { rel: number; fork: ForkNumber }, m: VolumeModel, r: VolumeReal): Promise<void> {
  const key = keyOf(spec.rel, spec.fork);
  const ok = await fullAllowed(m, r, `create ${key}`, () => r.volume.create(rel(spec.rel), spec.fork, STUB_HOST));
  if (ok && !m.vol.forks.has(key)) m.vol.forks.set(key, []);
}

/** One extension; false when it ended VOLUME_FULL. */
async function doExtend(t: { key: string; blk: number }, m: VolumeModel, r: VolumeReal): Promise<boolean> {
  const { r: relNumber, fork } = parseKey(t.key);
  const { page, fp } = newPage(m, t.key, t.blk);
  const ok = await fullAllowed(m, r, `extend ${t.key} at ${t.blk}`, () => r.volume.extend(rel(relNumber), fork, t.blk, page, STUB_HOST));
  if (!ok) return false;
  const pages = m.vol.forks.get(t.key)!;
  while (pages.length < t.blk) pages.push(ZERO_FP);
  pages.push(fp);
  return true;
}

function pageWrites(items: readonly { key: string; blk: number; page: Uint8Array }[]): PageWrite[] {
  return items.map((it) => {
    const { r: relNumber, fork } = parseKey(it.key);
    return { rel: rel(relNumber), fork, blockNum: it.blk, page: it.page };
  });
}

/** An eviction write of `items` (W1-W4), straight to the volume. */
async function doEvictionWrite(items: PoolPage[], m: VolumeModel, r: VolumeReal): Promise<void> {
  const ok = await fullAllowed(m, r, `write ${items.map((i) => `${i.key}#${i.blk}`).join(',')}`, () => r.volume.writeBuffers(pageWrites(items), STUB_HOST, 'eviction'));
  if (!ok) return;
  for (const it of items) {
    m.vol.forks.get(it.key)![it.blk] = it.fp;
    m.pool.delete(poolKey(it.key, it.blk)); // a newer image than the pool's
  }
}

async function doWrite(spec: Extract<VolCmdSpec, { kind: 'write' }>, m: VolumeModel, r: VolumeReal): Promise<PoolPage[]> {
  const items: PoolPage[] = writeTargets(m, spec.picks).map((t) => ({ ...t, ...newPage(m, t.key, t.blk) }));
  const direct: PoolPage[] = [];
  for (const it of items) {
    const pk = poolKey(it.key, it.blk);
    if (spec.pooled && (m.pool.has(pk) || m.pool.size < m.cfg.poolPages)) m.pool.set(pk, it);
    else direct.push(it);
  }
  if (direct.length > 0) await doEvictionWrite(direct, m, r);
  return direct;
}

async function doRead(spec: { at: number; pick: number }, m: VolumeModel, r: VolumeReal): Promise<void> {
  const key = pickFork(forksWhere(m, nonEmpty), spec.at)!;
  const { r: relNumber, fork } = parseKey(key);
  const pages = m.vol.forks.get(key)!;
  const n = r.volume.nblocks(rel(relNumber), fork);
  if (n !== pages.length) fail(`read ${key}: nblocks ${n}, model ${pages.length}`);
  const blk = spec.pick % pages.length;
  const buf = new Uint8Array(VM_BS);
  await r.volume.read(rel(relNumber), fork, blk, buf);
  m.stats.pagesVerified++;
  if (fingerprint(buf) !== pages[blk]) fail(`read ${key} block ${blk}: differs from the model`);
}

function dropPool(m: VolumeModel, key: string, from: number): void {
  for (const [pk, p] of m.pool) if (p.key === key && p.blk >= from) m.pool.delete(pk);
}

async function doTruncate(spec: { at: number; pick: number }, m: VolumeModel, r: VolumeReal): Promise<void> {
  const key = pickFork(forksWhere(m, () => true), spec.at)!;
  const { r: relNumber, fork } = parseKey(key);
  const pages = m.vol.forks.get(key)!;
  const n = spec.pick % (pages.length + 1);
  await r.volume.truncate(rel(relNumber), fork, n, STUB_HOST);
  pages.length = n;
  dropPool(m, key, n);
}

async function doUnlink(spec: { at: number; all: boolean }, m: VolumeModel, r: VolumeReal): Promise<void> {
  const key = pickFork(forksWhere(m, () => true), spec.at)!;
  const { r: relNumber, fork } = parseKey(key);
  await r.volume.unlink(rel(relNumber), spec.all ? undefined : fork, STUB_HOST);
  for (const f of spec.all ? VM_FORKS : [fork]) {
    const k = keyOf(relNumber, f);
    m.vol.forks.delete(k);
    dropPool(m, k, 0);
  }
}

/**
 * A checkpoint as the engine runs one on the volume: checkpointBegin, the pool's pages through
 * writeBuffers(.., 'checkpoint') (BufferSync), the volume sync (the sync phase: the first tag
 * starts it), checkpointEnd. Completed: `vol` is the new `snap`, with the size recorded.
 * `onCapture` gets the state the sync captures, before the sync starts (crash and fault
 * judgements need it).
 *
 * VM3: the checkpoint's own page writes never fail with VOLUME_FULL (V5). This test found the
 * case where they did (a capture that grew the catalog on a nearly full volume, now bounded by
 * catalog.ts T4); test/campaign-volume-model-regressions.test.ts keeps it.
 */
async function doCheckpoint(m: VolumeModel, r: VolumeReal, onCapture?: (s: State) => void): Promise<void> {
  const v = r.volume;
  v.checkpointBegin();
  let completed = false;
  try {
    const items = [...m.pool.values()].sort((a, b) => {
      const x = parseKey(a.key);
      const y = parseKey(b.key);
      return x.r - y.r || x.fork - y.fork || a.blk - b.blk;
    });
    if (items.length > 0) {
      const before = footprint(v);
      try {
        await v.writeBuffers(pageWrites(items), STUB_HOST, 'checkpoint');
      } catch (err) {
        if (codeOf(err) !== 'VOLUME_FULL') throw err;
        fail(`VM3: a checkpoint's ${items.length} pool page write(s) failed with VOLUME_FULL (${footprint(v) === before ? 'nothing changed' : 'the volume changed'}): ${(err as Error).message}`);
      }
      m.stats.checkpointWrites += items.length;
      for (const it of items) m.vol.forks.get(it.key)![it.blk] = it.fp;
      m.pool.clear();
    }
    onCapture?.(cloneState({ ...m.vol, sizeBytes: v.volumeSizeBytes }));
    await v.syncNow();
    completed = true;
  } finally {
    await v.checkpointEnd(completed);
  }
  m.vol.sizeBytes = v.volumeSizeBytes;
  m.snap = cloneState(m.vol);
  m.candidates = [];
}

/** A volume sync outside a checkpoint (no pass, no pool writes). */
async function doSync(m: VolumeModel, r: VolumeReal, onCapture?: (s: State) => void): Promise<void> {
  onCapture?.(cloneState({ ...m.vol, sizeBytes: r.volume.volumeSizeBytes }));
  await r.volume.syncNow();
  m.vol.sizeBytes = r.volume.volumeSizeBytes;
  m.snap = cloneState(m.vol);
  m.candidates = [];
}

/**
 * How crashDuring follows a snapshot operation: its captures, its start, the state it made
 * durable. From `started` a crash image may hold that state too; this is a little wider than
 * the truth (a create's own volume sync comes before its switch), since the switch cannot be
 * seen from outside.
 */
interface SnapHooks {
  captured(s: State): void;
  started(): void;
  done(s: State): void;
}

/** What a refused snapshot operation must leave as it was: the forks' maps and the snapshots. */
function snapFootprint(v: Volume): string {
  const info = v.info();
  return JSON.stringify({ forks: info.forks.map((f) => [f.relNumber, f.fork, f.nblocks, f.extents]), snapshots: (info.snapshots ?? []).map((x) => [x.name, x.generation]), held: info.snapshotHeldRuns, table: info.snapshotTableBlocks });
}

/**
 * An online snapshot as the engine takes one: createSnapshot with the harness's checkpoint as
 * its `checkpoint` option, so the snapshot names `vol` after that checkpoint (the pool written,
 * then the volume's own sync, then one superblock switch, S4). A taken name is BAD_ARGUMENT and
 * changes nothing, not even a checkpoint (the refusals come before anything is written). VOLUME_FULL
 * (V5/V7: the shared blocks raise the reserve) records no snapshot and changes no fork; the
 * checkpoint before it did complete.
 */
async function doSnapCreate(spec: { slot: number }, m: VolumeModel, r: VolumeReal, hooks?: SnapHooks): Promise<void> {
  const name = VM_SNAPSHOT_NAMES[spec.slot % VM_SNAPSHOT_NAMES.length]!;
  const taken = m.vol.snapshots.has(name);
  const before = footprint(r.volume) + snapFootprint(r.volume);
  let afterCheckpoint: string | null = null;
  let info: Awaited<ReturnType<Volume['createSnapshot']>>;
  try {
    info = await r.volume.createSnapshot(name, {
      checkpoint: async () => {
        await doCheckpoint(m, r, hooks?.captured);
        afterCheckpoint = snapFootprint(r.volume);
        hooks?.started();
      },
    });
  } catch (err) {
    if (taken && codeOf(err) === 'BAD_ARGUMENT') {
      m.stats.snapNameTaken++;
      if (afterCheckpoint !== null) fail(`snapCreate ${name}: the name is taken, yet the checkpoint ran before the refusal`);
      if (footprint(r.volume) + snapFootprint(r.volume) !== before) fail(`snapCreate ${name}: refused for a taken name, yet the volume changed`);
      return;
    }
    if (!taken && codeOf(err) === 'VOLUME_FULL' && afterCheckpoint !== null) {
      m.stats.snapFull++;
      const after = snapFootprint(r.volume);
      if (after !== afterCheckpoint) fail(`snapCreate ${name}: VOLUME_FULL changed the volume:\n  before ${afterCheckpoint}\n  after  ${after}`);
      return;
    }
    throw err;
  }
  if (taken) fail(`snapCreate ${name}: created over a snapshot of that name`);
  if (info.name !== name || info.forkCount !== m.vol.forks.size) fail(`snapCreate ${name}: returned ${info.name} with ${info.forkCount} forks, model ${m.vol.forks.size}`);
  m.stats.snapCreated++;
  // The switch recorded the snapshot with the durable catalog (the checkpoint's) and the size now.
  m.vol.snapshots.set(name, cloneForks(m.vol.forks));
  m.vol.sizeBytes = r.volume.volumeSizeBytes;
  m.snap = cloneState(m.vol);
  m.candidates = [];
  hooks?.done(cloneState(m.snap));
}

/** dropSnapshot: one switch naming the durable catalog (`snap`'s forks) and the size now, without the name. */
async function doSnapDrop(spec: { at: number }, m: VolumeModel, r: VolumeReal, hooks?: SnapHooks): Promise<void> {
  const names = [...m.vol.snapshots.keys()].sort();
  const name = names[spec.at % names.length]!;
  hooks?.started();
  await r.volume.dropSnapshot(name);
  m.stats.snapDropped++;
  m.vol.snapshots.delete(name);
  m.snap.snapshots.delete(name);
  m.snap.sizeBytes = r.volume.volumeSizeBytes;
  hooks?.done(cloneState(m.snap));
}

/**
 * The size an offline grow by `byBlocks` goes to: from the size the file records (the last
 * sync's), at most grow.max (a reopen refuses a volume past it) and VM_SIZE_BLOCKS_MAX; null when
 * that is no growth (the checkpoint before it may have grown the volume online to the limit).
 */
function growTargetBytes(m: VolumeModel, byBlocks: number): number | null {
  const limitBlocks = Math.min(VM_SIZE_BLOCKS_MAX, m.cfg.grow?.maxBlocks ?? VM_SIZE_BLOCKS_MAX);
  const target = Math.min(m.snap.sizeBytes + byBlocks * VM_BS, limitBlocks * VM_BS);
  return target > m.snap.sizeBytes ? target : null;
}

/**
 * Offline growth (VM5): optionally a checkpoint, then close (the volume's last sync is what the
 * file holds), growVolumeFile, reopen. The pool and changes since the last sync are gone, as
 * after any close without a checkpoint.
 */
async function doGrow(spec: { byBlocks: number; checkpointFirst: boolean }, m: VolumeModel, r: VolumeReal): Promise<void> {
  if (spec.checkpointFirst) await doCheckpoint(m, r);
  const newBytes = growTargetBytes(m, spec.byBlocks);
  if (newBytes === null) return;
  await r.volume.close();
  const res = await growVolumeFile(VM_PATH, { sizeBytes: newBytes, io: r.disk });
  if (res.oldSizeBytes !== m.snap.sizeBytes || res.newSizeBytes !== newBytes) fail(`grow: ${res.oldSizeBytes} -> ${res.newSizeBytes} bytes, model ${m.snap.sizeBytes} -> ${newBytes}`);
  m.stats.growsOffline++;
  m.snap.sizeBytes = newBytes;
  m.vol = cloneState(m.snap);
  m.pool.clear();
  await reopenOn(r, m, r.disk, !spec.checkpointFirst);
  await verifyExact(m, r, 'reopen after growVolumeFile');
}

async function doReopen(how: 'clean' | 'close' | 'kill', m: VolumeModel, r: VolumeReal): Promise<void> {
  if (how === 'clean') {
    await doCheckpoint(m, r);
    await r.volume.close();
    if (r.disk.openHandleCount !== 0) fail(`close left ${r.disk.openHandleCount} handles open`);
    await reopenOn(r, m, r.disk, false);
    await verifyExact(m, r, 'clean reopen');
    return;
  }
  if (how !== 'kill') {
    // A close without a checkpoint.
    await r.volume.close();
    if (r.disk.openHandleCount !== 0) fail(`close left ${r.disk.openHandleCount} handles open`);
  } else r.disk.processCrash();
  await reopenOn(r, m, r.disk, true);
  // VM2: the page cache is kept; the last completed sync is what the file says, exactly.
  await judgeAndAdopt(m, r, [m.snap], `reopen after ${how === 'kill' ? 'a kill' : 'a close without a checkpoint'}${m.failed ? ' in the failed state' : ''}`);
}

/** VM1 after a power loss: check the image, reopen it, judge it against `allowed`. */
async function crashTo(image: SimDisk, allowed: State[], m: VolumeModel, r: VolumeReal, what: string): Promise<void> {
  m.stats.crashes++;
  const findings = await checkVolume(VM_PATH, { io: image, checkPages: true });
  await reopenOn(r, m, image, true);
  // A power loss while the inactive slot was being rewritten leaves it damaged: check reports
  // it (it cannot tell that from media damage) and the next switch rewrites it.
  const errors = findings.filter((f) => {
    if (f.severity !== 'error') return false;
    if (f.part === `superblock slot ${1 - r.volume.info().activeSlot}`) {
      m.stats.interruptedSwitch++;
      return false;
    }
    return true;
  });
  if (errors.length > 0) {
    m.stats.checkErrors += errors.length;
    fail(`${what}: check finds ${errors.map((f) => `${f.part}: ${f.message}`).join('; ')}`);
  }
  await judgeAndAdopt(m, r, allowed, what);
}

/**
 * A power loss before I/O call `call` of the inner command (or after it, if it made fewer): the
 * command runs on to its end on the old disk, which is then abandoned for the image. What the
 * image may hold is fixed when it is taken: the last completed sync, and from the moment a sync
 * captured its state that capture too; during an offline grow the old size or the new one.
 */
async function doCrashDuring(spec: Extract<VolCmdSpec, { kind: 'crashDuring' }>, m: VolumeModel, r: VolumeReal): Promise<void> {
  m.stats.crashesDuring++;
  const disk = r.disk;
  let allowedNow: State[] = [cloneState(m.snap), ...m.candidates.map(cloneState)];
  let image: { disk: SimDisk; allowed: State[]; afterSnapOp: boolean } | null = null;
  let calls = 0;
  // A snapshot operation's own switch: from its start, the state it makes durable is allowed
  // too (known only once it returns: the switch records the size of that moment).
  let snapOpStarted = false;
  let snapOpDone: State | null = null;
  disk.beforeCall = () => {
    if (image === null && ++calls === spec.call) image = { disk: disk.crash(spec.mode, spec.seed), allowed: [...allowedNow], afterSnapOp: snapOpStarted };
  };
  const captured = (s: State) => {
    allowedNow = [...allowedNow, s];
  };
  const hooks: SnapHooks = { captured, started: () => (snapOpStarted = true), done: (s) => (snapOpDone = s) };
  const inner = spec.inner;
  try {
    if (inner.kind === 'checkpoint') await doCheckpoint(m, r, captured);
    else if (inner.kind === 'sync') await doSync(m, r, captured);
    else if (inner.kind === 'grow') {
      if (inner.checkpointFirst) await doCheckpoint(m, r, captured);
      const newBytes = growTargetBytes(m, inner.byBlocks);
      if (newBytes !== null) {
        // The checkpoint (if any) completed: from here the old size or the new one (VM5).
        const base = cloneState(m.snap);
        allowedNow = [base, { ...cloneState(base), sizeBytes: newBytes }];
        await doGrowNoReopen(newBytes, m, r);
      }
    } else if (inner.kind === 'snapCreate') await doSnapCreate(inner, m, r, hooks);
    else if (inner.kind === 'snapDrop') await doSnapDrop(inner, m, r, hooks);
    else await runVolSpec(inner, m, r);
  } finally {
    disk.beforeCall = undefined;
  }
  const what = `crash(${spec.mode}, ${spec.seed}) before call ${spec.call} of ${volSpecString(inner)}`;
  const taken = image as { disk: SimDisk; allowed: State[]; afterSnapOp: boolean } | null;
  if (taken === null) {
    // The command finished before call `call`: a power loss now, after it.
    await crashTo(disk.crash(spec.mode, spec.seed), [m.snap, ...m.candidates], m, r, `${what} (after its ${calls} calls)`);
    return;
  }
  m.stats.crashesInside++;
  const done = snapOpDone as State | null;
  await crashTo(taken.disk, taken.afterSnapOp && done !== null ? [...taken.allowed, done] : taken.allowed, m, r, what);
}

/** growVolumeFile on the closed volume, without the reopen (crashDuring reopens on its image). */
async function doGrowNoReopen(newBytes: number, m: VolumeModel, r: VolumeReal): Promise<void> {
  await r.volume.close();
  await growVolumeFile(VM_PATH, { sizeBytes: newBytes, io: r.disk });
  m.stats.growsOffline++;
  m.snap.sizeBytes = newBytes;
  m.vol = cloneState(m.snap);
  m.pool.clear();
}

// ------------------------------------------------------------------ faults

const SYNC_KINDS: readonly IoKind[] = ['fsync', 'fdatasync', 'fsyncDir'];

async function runFault(spec: Extract<VolCmdSpec, { kind: 'fault' }>, m: VolumeModel, r: VolumeReal): Promise<void> {
  m.stats.faultsInjected++;
  const v = r.volume;
  const fdatasyncsBefore = v.stats.fdatasyncs;
  const switchesBefore = v.stats.metadataSwitches;
  const volBefore = cloneState(m.vol);
  const poolBefore = new Map(m.pool);
  let capture: State | null = null;
  let written: PoolPage[] = [];
  const { fired, error } = await withOneFault(r.disk, { kind: spec.io, nth: spec.nth, code: spec.code, fsyncgate: spec.fsyncgate && spec.io === 'fdatasync' }, async () => {
    switch (spec.target) {
      case 'checkpoint':
        written = [...m.pool.values()];
        await doCheckpoint(m, r, (s) => (capture = s));
        break;
      case 'sync':
        await doSync(m, r, (s) => (capture = s));
        break;
      case 'write':
        // Two pages, often in two runs: a failure of one call leaves the other landed (W3).
        written = writeTargets(m, [{ at: spec.at, pick: spec.pick }, { at: spec.at + 1, pick: spec.pick + 3 }]).map((t) => ({ ...t, ...newPage(m, t.key, t.blk) }));
        await doEvictionWrite(written, m, r);
        break;
      case 'extend':
        await doExtend(extendTarget(m, { at: spec.at, skip: 0 })!, m, r);
        break;
      case 'read':
        await doRead(spec, m, r);
        break;
      case 'grow':
        await doGrow({ byBlocks: 1 + (spec.pick % 8), checkpointFirst: false }, m, r);
        break;
    }
  });
  if (fired) m.stats.faultsFired++;
  if (error === undefined) {
    // A fault the command never reached, or one it got round (an eviction write that ended
    // VOLUME_FULL before its pwrite).
    return;
  }
  if (!isLamstoreError(error)) throw new Error(`fault ${spec.io} during ${spec.target}: not a LamstoreError: ${String(error)}`, { cause: error });
  if (spec.target === 'grow') {
    // G4: the old size or the new one, the last checkpoint's contents; the volume is closed.
    const grown = { ...cloneState(m.snap), sizeBytes: growTargetBytes(m, 1 + (spec.pick % 8)) ?? m.snap.sizeBytes };
    const base = cloneState(m.snap);
    await reopenOn(r, m, r.disk, true);
    await judgeAndAdopt(m, r, [base, grown], `reopen after a failed growVolumeFile (${spec.io} ${spec.code})`);
    return;
  }
  if (v.failure !== null) {
    // VM4: the failed state. A capture whose first fdatasync returned may have its superblock
    // on the disk (a power loss may keep it); a reopen without one must not see it (VM2).
    if (SYNC_KINDS.includes(spec.io) || spec.target === 'checkpoint' || spec.target === 'sync') {
      // m.vol is what reads show: a failed sync's pool pages were written before it began.
      m.failed = true;
      m.stats.failedStates++;
      if (capture !== null && v.stats.fdatasyncs > fdatasyncsBefore && v.stats.metadataSwitches === switchesBefore) m.candidates.push(capture);
      await expectFailed(m, r);
      return;
    }
    fail(`a failed ${spec.io} during ${spec.target} failed the volume`);
  }
  if (SYNC_KINDS.includes(spec.io)) fail(`a failed ${spec.io} during ${spec.target} did not fail the volume (VM4)`);
  switch (spec.target) {
    case 'write':
    case 'checkpoint': {
      // W3: every page of the batch reads back old or new; the pool keeps its pages dirty.
      m.vol = volBefore;
      m.pool = poolBefore;
      for (const it of written) {
        const { r: relNumber, fork } = parseKey(it.key);
        const buf = new Uint8Array(VM_BS);
        await v.read(rel(relNumber), fork, it.blk, buf);
        const fp = fingerprint(buf);
        const old = volBefore.forks.get(it.key)![it.blk];
        if (fp !== old && fp !== it.fp) fail(`failed write: ${it.key} block ${it.blk} reads neither its old nor its new page (W3)`);
        m.vol.forks.get(it.key)![it.blk] = fp;
      }
      return;
    }
    case 'extend': {
      const t = extendTarget(m, { at: spec.at, skip: 0 })!;
      const { r: relNumber, fork } = parseKey(t.key);
      const n = v.nblocks(rel(relNumber), fork);
      if (n !== m.vol.forks.get(t.key)!.length) fail(`failed extend of ${t.key} changed nblocks to ${n} (model ${m.vol.forks.get(t.key)!.length})`);
      return;
    }
    case 'read':
      await doRead(spec, m, r); // nothing wrong was cached
      return;
    default:
      fail(`a failed ${spec.io} during ${spec.target} left the volume working`);
  }
}

/** VM4: changes and syncs are refused with ENGINE_FAILED; reads go on. */
async function expectFailed(m: VolumeModel, r: VolumeReal): Promise<void> {
  const refused = async (what: string, p: () => Promise<unknown>) => {
    try {
      await p();
    } catch (err) {
      if (codeOf(err) === 'ENGINE_FAILED') return;
      throw new Error(`${what} in the failed state: expected ENGINE_FAILED, got ${codeOf(err)}: ${(err as Error).message}`, { cause: err });
    }
    fail(`${what} in the failed state succeeded`);
  };
  await refused('syncNow', () => r.volume.syncNow());
  await refused('create', () => r.volume.create(rel(99), 0, STUB_HOST));
  // Refused before the name is looked at: the failed volume's snapshot table is not trusted either.
  await refused('createSnapshot', () => r.volume.createSnapshot(VM_SNAPSHOT_NAMES[0]));
  await refused('dropSnapshot', () => r.volume.dropSnapshot(VM_SNAPSHOT_NAMES[0]));
}

// ------------------------------------------------------------------ dispatch

async function runVolSpec(spec: VolCmdSpec, m: VolumeModel, r: VolumeReal): Promise<void> {
  switch (spec.kind) {
    case 'create':
      return doCreate(spec, m, r);
    case 'extend': {
      // `count` extensions of one fork, a page each (the first after `skip` zero pages).
      const t = extendTarget(m, spec)!;
      for (let i = 0, blk = t.blk; i < spec.count && blk < VM_MAX_BLOCKS; i++, blk++) if (!(await doExtend({ key: t.key, blk }, m, r))) return;
      return;
    }
    case 'write':
      await doWrite(spec, m, r);
      return;
    case 'read':
      return doRead(spec, m, r);
    case 'truncate':
      return doTruncate(spec, m, r);
    case 'unlink':
      return doUnlink(spec, m, r);
    case 'checkpoint':
      await doCheckpoint(m, r);
      return;
    case 'sync':
      return doSync(m, r);
    case 'crash':
      return crashTo(r.disk.crash(spec.mode, spec.seed), [m.snap, ...m.candidates], m, r, `crash(${spec.mode}, ${spec.seed})${m.failed ? ' in the failed state' : ''}`);
    case 'crashDuring':
      return doCrashDuring(spec, m, r);
    case 'reopen':
      return doReopen(spec.how, m, r);
    case 'grow':
      return doGrow(spec, m, r);
    case 'fault':
      return runFault(spec, m, r);
    case 'snapCreate':
      return doSnapCreate(spec, m, r);
    case 'snapDrop':
      return doSnapDrop(spec, m, r);
  }
}

export class VolumeModelCommand {
  constructor(readonly spec: VolCmdSpec) {}
  check(m: Readonly<VolumeModel>): boolean {
    return volApplicable(this.spec, m as VolumeModel);
  }
  async run(m: VolumeModel, r: VolumeReal): Promise<void> {
    m.stats.commands++;
    m.stats.kinds.add(this.spec.kind);
    const kindName = this.spec.kind === 'crashDuring' ? `crashDuring:${this.spec.inner.kind}` : this.spec.kind;
    m.stats.perKind[kindName] = (m.stats.perKind[kindName] ?? 0) + 1;
    try {
      await runVolSpec(this.spec, m, r);
      r.volume.checkInvariants();
      if (r.volume.stats.grows > r.grewSeen) {
        m.stats.growsOnline += r.volume.stats.grows - r.grewSeen;
        r.grewSeen = r.volume.stats.grows;
      }
      if (r.volume.stats.forksDefragmented > r.defragSeen) {
        m.stats.forksDefragmented += r.volume.stats.forksDefragmented - r.defragSeen;
        r.defragSeen = r.volume.stats.forksDefragmented;
      }
      // The size in memory grows online (V6); the model follows it, the next capture records it.
      if (!m.failed) m.vol.sizeBytes = r.volume.volumeSizeBytes;
    } catch (err) {
      throw new Error(`${volSpecString(this.spec)} failed: ${(err as Error).message}`, { cause: err });
    }
  }
  toString(): string {
    return volSpecString(this.spec);
  }
}

/** Run an explicit command list (a regression case) without fast-check; skips inapplicable ones as fast-check would. */
export async function runVolumeSequence(cfg: VolumeRunConfig, specs: readonly VolCmdSpec[], stats = newVolumeModelStats()): Promise<VolumeModelStats> {
  const { model, real } = await setupVolumeModel(cfg, stats);
  for (const s of specs) {
    const c = new VolumeModelCommand(s);
    if (c.check(model)) await c.run(model, real);
  }
  return stats;
}
