/**
 * Goal: the fault loop (reliability-anchors.md 8(c), SQLite's I/O-error loop).
 * Method: a scripted workload on SimDisk (Engine with the volume extension and md; relations with
 * two forks, growth across a volume extent and an md segment boundary, a truncate, a drop, clog
 * in two SLRU segments, multixacts whose positions go into the control file; three checkpoints
 * and a clean close) runs once untouched to count its calls; then, for every kind of call
 * (pwrite, pread, fsync, fdatasync, open, rename, fsyncDir) and every n from 1 until the
 * workload runs untouched, it runs again with the n-th call of that kind failing, once and
 * persistently (and, for fsync and fdatasync, in fsyncgate mode: the failure drops the file's
 * pending writes and the next sync would succeed). The errno cycles through EIO, ENOSPC, EDQUOT
 * and EROFS with n (every errno for every n with LAMSTORE_SOAK=1 or LAMSTORE_FAULT_FULL=1).
 *
 * Asserted at every point:
 *  - the failing operation rejects with a LamstoreError whose message chain names the errno,
 *    never a TypeError, and nothing swallows an injected error (the operation during which it
 *    fired never resolves);
 *  - a sync failure (fsync, fdatasync, directory fsync) puts the engine in the failed state at
 *    once; after it, writes, extends, SLRU changes and checkpoints are refused with
 *    ENGINE_FAILED (success-after-sync-fault counts any that resolves);
 *  - a failed page write fails that checkpoint and leaves the page dirty; a retry with the fault
 *    gone succeeds, and what it wrote is verified below;
 *  - a failed read leaves nothing wrong cached: the same read retried returns the right page;
 *  - close() releases every handle, failed state included: SimDisk.openHandleCount is 0;
 *  - after a sync failure, a reopen without a power loss (the page cache, and fsyncgate's
 *    forgotten writes in it, survive) shows a volume the model allows, and the power loss below
 *    leaves exactly that volume;
 *  - after a power loss (crash 'drop') a fresh Engine opens the disk and every acknowledged
 *    page, fork size, clog status and multixact is there (helpers/durability-model.ts rules: the
 *    volume strictly, exactly the acknowledged checkpoint or one in flight, whole; silent-loss
 *    counts violations, volume torn pages included).
 * Prints the fault-loop line. Replay one point with LAMSTORE_FAULT_POINT=kind:nth:code:mode (as a
 * failure message names it): it traces where the fault fires and what each step did.
 */
import { describe, expect, it } from 'vitest';
import { ClogStatus, Engine, isLamstoreError } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import type { ForkNumber, IoKind, MultiXactMember } from '../engine/index.js';
import type { FaultCode } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { makePage } from './helpers/volume.js';
import { DB_OID, DurabilityModel, SPC_OID, forkKey, newTally, pageDigest, parseForkKey } from './helpers/durability-model.js';
import type { RecoveredFork, StorageName, VerifyTally } from './helpers/durability-model.js';
import { SMALL_BS } from './helpers/engine.js';

const SOAK = process.env.LAMSTORE_SOAK === '1' || process.env.LAMSTORE_FAULT_FULL === '1';
const VOL = '/vol/lam.vol';
const DATA = '/data';
const KINDS: IoKind[] = ['pwrite', 'pread', 'fsync', 'fdatasync', 'open', 'rename', 'fsyncDir'];
const SYNC_KINDS = new Set<IoKind>(['fsync', 'fdatasync', 'fsyncDir']);
const CODES: FaultCode[] = ['EIO', 'ENOSPC', 'EDQUOT', 'EROFS'];
type Mode = 'once' | 'persistent' | 'fsyncgate';
/** xids in clog segment 0 and segment 1 (32 pages of 16384 xids at 4 KiB). */
const XIDS = [3, 4, 5, 600_001, 600_002];

interface Fault {
  kind: IoKind;
  nth: number;
  code: FaultCode;
  mode: Mode;
}

/** A small model of statuses (clog) or member lists (multixact) with the same ack rules. */
class ValueModel<V> {
  cur = new Map<number, V>();
  acked = new Map<number, V>();
  since = new Map<number, V[]>();
  set(id: number, v: V): void {
    this.cur.set(id, v);
    const list = this.since.get(id) ?? [];
    list.push(v);
    this.since.set(id, list);
  }
  ack(): void {
    this.acked = new Map(this.cur);
    this.since.clear();
  }
}

interface Outcome {
  fired: boolean;
  error: unknown;
  step: string;
  /** The fault fired during the step that failed (false: an earlier one swallowed it). */
  firedInStep: boolean;
}

interface Totals {
  points: number;
  successAfterSyncFault: number;
  silentLoss: number;
  leakedFds: number;
  untyped: number;
  swallowed: number;
  failedState: number;
  failedStateOf: number;
  recoveredClean: number;
  recoveredOf: number;
  dirtyKept: number;
  dirtyOf: number;
  retried: number;
  readRetried: number;
  untouched: number;
  pagesVerified: number;
  /** The strict volume rule: states judged, torn pages, mixed states (both 0), reopens without a power loss after a sync fault. */
  volumeStates: number;
  volumeTornDetected: number;
  volumeMetaMixed: number;
  reopenedWithoutPowerLoss: number;
  failures: string[];
}

const rel = (relNumber: number) => ({ spcOid: SPC_OID, dbOid: DB_OID, relNumber });

/** Run the workload with `fault` injected (or none); check everything; add to `t`. */
async function runPoint(fault: Fault | null, t: Totals, trace = false): Promise<{ untouched: boolean; calls: Map<IoKind, number> }> {
  const where = fault ? `${fault.kind} #${fault.nth} ${fault.code} ${fault.mode}` : 'no fault';
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  await disk.fsyncDir('/');
  const calls = new Map<IoKind, number>();
  let firedPath = '';
  disk.onCall = (_i, kind, path) => {
    const n = (calls.get(kind) ?? 0) + 1;
    calls.set(kind, n);
    if (fault && kind === fault.kind && n === fault.nth) {
      firedPath = path;
      if (trace) console.log(`fault fires: ${kind} #${n} ${path}\n${new Error().stack}`);
    }
  };
  if (fault) disk.injectFault({ kind: fault.kind, nth: fault.nth, code: fault.code, persistent: fault.mode === 'persistent', fsyncgate: fault.mode === 'fsyncgate' });
  const firedCount = () => (fault ? (calls.get(fault.kind) ?? 0) : 0);
  const hasFired = () => fault !== null && firedCount() >= fault.nth;

  const pages = new DurabilityModel();
  const clog = new ValueModel<number>();
  const mx = new ValueModel<MultiXactMember[]>();
  let engine: Engine | null = null;
  let closed = false;
  let uncertain = false; // a failed change: the model no longer knows exactly what is on disk
  let version = 0;
  let lastRead: { key: string; block: number } | null = null;

  const relOf = (key: string) => {
    const { storage, rel: r } = parseForkKey(key);
    return engine!.relation(r, { storage });
  };
  const create = async (storage: StorageName, relNumber: number, fork: ForkNumber) => {
    const k = forkKey(storage, relNumber, fork);
    pages.create(k);
    await relOf(k).create(fork);
  };
  const extendTo = async (storage: StorageName, relNumber: number, fork: ForkNumber, n: number) => {
    const k = forkKey(storage, relNumber, fork);
    for (let b = pages.cur.get(k)!.length; b < n; b++) {
      const page = makePage(rel(relNumber), fork, b, ++version);
      pages.write(k, b, pageDigest(page));
      await relOf(k).extend(fork, page);
    }
  };
  const write = async (storage: StorageName, relNumber: number, fork: ForkNumber, b: number) => {
    const k = forkKey(storage, relNumber, fork);
    const page = makePage(rel(relNumber), fork, b, ++version);
    pages.write(k, b, pageDigest(page));
    await relOf(k).write(fork, b, page);
  };
  const truncate = async (storage: StorageName, relNumber: number, fork: ForkNumber, n: number) => {
    const k = forkKey(storage, relNumber, fork);
    pages.truncate(k, n);
    await relOf(k).truncate(fork, n);
  };
  const drop = async (storage: StorageName, relNumber: number) => {
    for (const k of [...pages.cur.keys()]) if (k.startsWith(`${storage}:${relNumber}:`)) pages.drop(k);
    await engine!.relation(rel(relNumber), { storage }).drop();
  };
  const setStatus = async (xid: number, status: number) => {
    clog.set(xid, status);
    await engine!.clog.setStatus(xid, status as 0 | 1 | 2 | 3);
  };
  const newMulti = async (xids: number[]) => {
    const members = xids.map((xid, i) => ({ xid, status: (i % 6) as MultiXactMember['status'] }));
    const id = await engine!.multixact.create(members);
    mx.set(id, members);
  };
  const checkpoint = async () => {
    pages.begin();
    await engine!.checkpoint();
    if (!uncertain) {
      pages.ack();
      clog.ack();
      mx.ack();
    }
  };
  const readAll = async () => {
    for (const [k, ds] of pages.cur) {
      const { fork } = parseForkKey(k);
      for (let b = 0; b < ds.length; b++) {
        lastRead = { key: k, block: b };
        const got = pageDigest(await relOf(k).read(fork, b));
        if (got !== ds[b]) t.failures.push(`${where}: ${k} block ${b} reads ${got} during the workload, expected ${ds[b]}`);
      }
    }
    lastRead = null;
    for (const [xid, st] of clog.cur) if ((await engine!.clog.getStatus(xid)) !== st) t.failures.push(`${where}: clog ${xid} reads a wrong status`);
  };

  const steps: [string, () => Promise<void>][] = [
    [
      'open',
      async () => {
        engine = await Engine.open({ dataDir: DATA, blockSize: SMALL_BS, sharedBuffers: 16, relSegBlocks: 4, slruBuffers: 4, io: disk, preload: [volumeExtension({ path: VOL, create: { sizeBytes: 256 * 1024 } })] });
      },
    ],
    [
      'create',
      async () => {
        await create('volume', 1, 0);
        await create('volume', 1, 1);
        await create('volume', 2, 0);
        await create('md', 101, 0);
        await create('md', 101, 1);
        await create('md', 102, 0);
      },
    ],
    [
      'extend',
      async () => {
        await extendTo('volume', 1, 0, 10); // past the first extent (8 blocks)
        await extendTo('volume', 1, 1, 2);
        await extendTo('volume', 2, 0, 3);
        await extendTo('md', 101, 0, 6); // past the first segment (4 blocks)
        await extendTo('md', 101, 1, 1);
        await extendTo('md', 102, 0, 3);
      },
    ],
    [
      'slru',
      async () => {
        for (const xid of XIDS) await setStatus(xid, ClogStatus.COMMITTED);
        await newMulti([3, 4]);
      },
    ],
    ['checkpoint 1', checkpoint],
    [
      'write',
      async () => {
        await write('volume', 1, 0, 2);
        await write('volume', 2, 0, 0);
        await write('md', 101, 0, 1);
        await write('md', 101, 0, 5);
        await extendTo('volume', 1, 0, 12);
        await truncate('md', 101, 0, 3);
        await setStatus(XIDS[1]!, ClogStatus.ABORTED);
        await setStatus(XIDS[4]!, ClogStatus.ABORTED);
        await newMulti([5, 600_001, 600_002]);
      },
    ],
    ['read', readAll],
    ['checkpoint 2', checkpoint],
    [
      'drop and regrow',
      async () => {
        await drop('md', 102);
        await extendTo('md', 101, 0, 7);
        await write('volume', 1, 1, 0);
        await truncate('volume', 2, 0, 1);
      },
    ],
    ['checkpoint 3', checkpoint],
    ['read again', readAll],
    [
      'close',
      async () => {
        pages.begin();
        closed = true; // close releases everything whether it resolves or not
        await engine!.close();
        if (!uncertain) {
          pages.ack();
          clog.ack();
          mx.ack();
        }
      },
    ],
  ];

  let outcome: Outcome | null = null;
  for (const [name, fn] of steps) {
    const before = firedCount();
    const t0 = performance.now();
    try {
      await fn();
      if (trace) console.log(`step "${name}" took ${(performance.now() - t0).toFixed(1)} ms`);
    } catch (error) {
      outcome = { fired: hasFired(), error, step: name, firedInStep: fault !== null && before < fault.nth && hasFired() };
      if (trace) console.log(`step "${name}" failed: ${(error as Error).message}; engine failed: ${String((engine as Engine | null)?.failed)}`);
      break;
    }
    if (fault && before < fault.nth && hasFired()) {
      // The injected error vanished: the step resolved although one of its calls failed.
      if (SYNC_KINDS.has(fault.kind)) t.successAfterSyncFault++;
      else t.swallowed++;
      t.failures.push(`${where}: step "${name}" resolved although its ${fault.kind} failed (${firedPath})`);
    }
  }

  const untouched = outcome === null && !hasFired();
  if (fault && !untouched) t.points++;
  if (outcome) {
    const err = outcome.error;
    if (!isLamstoreError(err)) {
      t.untyped++;
      t.failures.push(`${where}: step "${outcome.step}" threw an untyped error: ${String((err as Error)?.stack ?? err)}`);
    } else if (fault && outcome.fired) {
      let chain = '';
      for (let e: unknown = err; e instanceof Error; e = e.cause) chain += ` ${e.message}`;
      if (!chain.includes(fault.code)) t.failures.push(`${where}: the error of step "${outcome.step}" does not name ${fault.code}: ${chain}`);
    }
    if (!fault || !outcome.fired) t.failures.push(`${where}: step "${outcome.step}" failed without an injected fault: ${(err as Error)?.message}`);
    if (outcome.step !== 'checkpoint 1' && outcome.step !== 'checkpoint 2' && outcome.step !== 'checkpoint 3' && !outcome.step.startsWith('read')) {
      uncertain = true;
      pages.lastChangeFailed();
    }
  }

  const eng = engine as Engine | null;
  if (uncertain && eng && !closed) {
    // What the failed change really did to fork sizes (the next checkpoint may switch to it).
    for (const k of [...pages.cur.keys()]) {
      const { storage, rel: r, fork } = parseForkKey(k);
      const h = eng.relation(r, { storage });
      pages.settle(k, (await h.exists(fork)) ? await h.nblocks(fork) : null);
    }
  }
  if (outcome && fault && eng && !closed) {
    const syncFault = SYNC_KINDS.has(fault.kind) && outcome.firedInStep;
    if (syncFault) {
      t.failedStateOf++;
      if (eng.failed) t.failedState++;
      else t.failures.push(`${where}: step "${outcome.step}" saw a failed ${fault.kind} of ${firedPath} but the engine is not in the failed state`);
    }
    if (eng.failed) {
      // Nothing may report success from now on.
      const probes: [string, () => Promise<unknown>][] = [
        ['checkpoint', () => eng.checkpoint()],
        ['write', () => eng.relation(rel(1), { storage: 'volume' }).write(0, 0, makePage(rel(1), 0, 0, 999_999))],
        ['extend', () => eng.relation(rel(101), { storage: 'md' }).extend(0, makePage(rel(101), 0, 0, 999_998))],
        ['clog', () => eng.clog.setStatus(XIDS[0]!, ClogStatus.ABORTED)],
      ];
      for (const [name, probe] of probes) {
        try {
          await probe();
          t.successAfterSyncFault++;
          t.failures.push(`${where}: ${name} resolved in the failed state`);
        } catch (e) {
          if (!isLamstoreError(e, 'ENGINE_FAILED')) t.failures.push(`${where}: ${name} in the failed state threw ${(e as Error).message}, not ENGINE_FAILED`);
        }
      }
    } else if (outcome.step.startsWith('checkpoint') && fault.kind === 'pwrite') {
      // A failed page write: that page stays dirty, and a retry (fault gone) writes it.
      const dataFile = firedPath === VOL || firedPath.startsWith(`${DATA}/base`);
      const slruFile = firedPath.startsWith(`${DATA}/pg_`) && !firedPath.endsWith('.tmp');
      if (dataFile || slruFile) {
        t.dirtyOf++;
        const dirty = dataFile
          ? eng.bufferPool.dirtyCount()
          : eng.clog.slru.dirtyPageCount() + eng.multixact.offsets.dirtyPageCount() + eng.multixact.members.dirtyPageCount();
        if (dirty > 0) t.dirtyKept++;
        else t.failures.push(`${where}: the checkpoint failed writing ${firedPath} but no page is dirty any more`);
      }
      if (fault.mode === 'once') {
        try {
          await checkpoint();
          t.retried++;
        } catch (e) {
          t.failures.push(`${where}: a retried checkpoint after a transient write failure failed: ${(e as Error).message}`);
        }
      }
    } else if (outcome.step.startsWith('read') && fault.kind === 'pread' && fault.mode === 'once' && lastRead) {
      // Nothing wrong was cached: the same read now returns the page.
      const { key, block } = lastRead as { key: string; block: number };
      const got = pageDigest(await relOf(key).read(parseForkKey(key).fork, block));
      if (got === pages.cur.get(key)![block]) t.readRetried++;
      else t.failures.push(`${where}: ${key} block ${block} reads wrong data after a failed read`);
    }
  }
  if (eng && !closed) {
    pages.begin();
    // In the failed state close runs no shutdown checkpoint: its success acknowledges nothing.
    const wasFailed = eng.failed;
    try {
      await eng.close();
      if (!uncertain && !wasFailed) {
        pages.ack();
        clog.ack();
        mx.ack();
      }
    } catch {
      // A close after a failure may report it again; what matters is what it released.
    }
  }
  if (disk.openHandleCount !== 0) {
    t.leakedFds += disk.openHandleCount;
    t.failures.push(`${where}: ${disk.openHandleCount} handles left open after close (failed at step "${outcome?.step ?? '-'}")`);
  }

  /** Every fork of the model as `engine` shows it: md ones verified one by one, the volume's together; the volume's digests. */
  const verifyAll = async (engine: Engine, tally: VerifyTally, at: string): Promise<Map<string, string[]>> => {
    const volumeForks = new Map<string, RecoveredFork>();
    for (const k of pages.keys()) {
      const { storage, rel: r, fork } = parseForkKey(k);
      const h = engine.relation(r, { storage });
      const exists = await h.exists(fork);
      const rec: RecoveredFork = {
        exists,
        nblocks: exists ? await h.nblocks(fork) : 0,
        read: async (b) => {
          try {
            return pageDigest(await h.read(fork, b));
          } catch (err) {
            if (isLamstoreError(err, 'CHECKSUM_MISMATCH')) return 'torn';
            throw err;
          }
        },
      };
      if (storage === 'volume') volumeForks.set(k, rec);
      else await pages.verify(k, rec, tally, at);
    }
    return pages.verifyVolume(volumeForks, tally, at);
  };
  const tally: VerifyTally = newTally();
  disk.clearFaults();
  disk.onCall = undefined;

  // After a sync failure, a reopen without a power loss (the page cache survives, and with it
  // the writes fsyncgate made the kernel forget): the volume it shows must be a state the model
  // allows, and exactly what the power loss below leaves, since the unclean open's sync made it
  // durable (md keeps its known limit: its forgotten writes may revert).
  let reopenedVolume: Map<string, string[]> | null = null;
  if (fault && SYNC_KINDS.has(fault.kind) && outcome?.firedInStep) {
    try {
      const e1 = await Engine.open({ dataDir: DATA, blockSize: SMALL_BS, sharedBuffers: 16, relSegBlocks: 4, slruBuffers: 4, io: disk, preload: [volumeExtension({ path: VOL, create: { sizeBytes: 256 * 1024 } })] });
      try {
        reopenedVolume = await verifyAll(e1, tally, `${where} (reopen without a power loss)`);
      } finally {
        await e1.close();
      }
      t.reopenedWithoutPowerLoss++;
    } catch (err) {
      // Only a volume whose creation never completed may be refused.
      if (pages.acks === 0 && isLamstoreError(err, 'VOLUME_CORRUPT')) t.reopenedWithoutPowerLoss++;
      else {
        tally.lost++;
        tally.failures.push(`${where}: the reopen without a power loss failed: ${(err as Error).message}`);
      }
    }
    if (disk.openHandleCount !== 0) t.failures.push(`${where}: ${disk.openHandleCount} handles left open by the reopen without a power loss`);
  }

  // Power loss, then a fresh engine on what is durable.
  const img = disk.crash('drop', fault ? fault.nth : 1);
  let e2: Engine | null = null;
  try {
    e2 = await Engine.open({ dataDir: DATA, blockSize: SMALL_BS, sharedBuffers: 16, relSegBlocks: 4, slruBuffers: 4, io: img, preload: [volumeExtension({ path: VOL, create: { sizeBytes: 256 * 1024 } })] });
  } catch (err) {
    // Only a volume whose creation never completed may be refused.
    if (!(pages.acks === 0 && isLamstoreError(err, 'VOLUME_CORRUPT'))) t.failures.push(`${where}: reopen after power loss failed: ${(err as Error).message}`);
  }
  if (e2) {
    try {
      const volumeAfter = await verifyAll(e2, tally, where);
      if (reopenedVolume) {
        const show = (m: Map<string, string[]>) => [...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, ds]) => `${k}=${ds.join(',')}`).join(' ');
        if (show(volumeAfter) !== show(reopenedVolume)) {
          tally.lost++;
          tally.failures.push(`${where}: the volume a reopen without a power loss showed did not survive the power loss: ${show(reopenedVolume)} became ${show(volumeAfter)}`);
        }
      }
      for (const [xid, st] of clog.acked) {
        const got = await e2.clog.getStatus(xid);
        if (got !== st && !clog.since.get(xid)?.includes(got)) {
          tally.lost++;
          tally.failures.push(`${where}: clog xid ${xid} is ${got} after reopen, acknowledged ${st}`);
        }
      }
      for (const [id, members] of mx.acked) {
        const got = await e2.multixact.getMembers(id).catch((err: unknown) => (err as Error).message);
        if (JSON.stringify(got) !== JSON.stringify(members)) {
          tally.lost++;
          tally.failures.push(`${where}: multixact ${id} has members ${JSON.stringify(got)} after reopen, acknowledged ${JSON.stringify(members)}`);
        }
      }
    } catch (err) {
      tally.lost++;
      tally.failures.push(`${where}: verifying after reopen threw ${(err as Error).message}`);
    } finally {
      await e2.close();
    }
  }
  if (img.openHandleCount !== 0) t.failures.push(`${where}: ${img.openHandleCount} handles left open by the verifying engine`);
  t.silentLoss += tally.lost + tally.metaMixed + tally.volumeTornDetected;
  t.volumeStates += tally.volumeStates;
  t.volumeTornDetected += tally.volumeTornDetected;
  t.volumeMetaMixed += tally.metaMixed;
  t.pagesVerified += tally.pagesVerified;
  t.failures.push(...tally.failures);
  if (fault && SYNC_KINDS.has(fault.kind) && outcome?.firedInStep) {
    t.recoveredOf++;
    if (tally.failures.length === 0) t.recoveredClean++;
  }
  if (!fault && pages.acks !== 4) t.failures.push(`no fault: expected 4 acknowledged checkpoints (3 and the shutdown one), got ${pages.acks}`);
  return { untouched, calls };
}

describe('fault injection loop', () => {
  it('every failed call of every kind is reported, a sync failure fails the engine at once, nothing leaks and every acknowledged page survives', { timeout: SOAK ? 900_000 : 120_000 }, async () => {
    const t: Totals = {
      points: 0,
      successAfterSyncFault: 0,
      silentLoss: 0,
      leakedFds: 0,
      untyped: 0,
      swallowed: 0,
      failedState: 0,
      failedStateOf: 0,
      recoveredClean: 0,
      recoveredOf: 0,
      dirtyKept: 0,
      dirtyOf: 0,
      retried: 0,
      readRetried: 0,
      untouched: 0,
      pagesVerified: 0,
      volumeStates: 0,
      volumeTornDetected: 0,
      volumeMetaMixed: 0,
      reopenedWithoutPowerLoss: 0,
      failures: [],
    };
    const base = await runPoint(null, t);
    expect(t.failures).toEqual([]);
    // Replay one point: LAMSTORE_FAULT_POINT=kind:nth:code:mode (as a failure names it).
    const only = process.env.LAMSTORE_FAULT_POINT;
    if (only) {
      const [kind, nth, code, mode] = only.split(':');
      await runPoint({ kind: kind as IoKind, nth: Number(nth), code: code as FaultCode, mode: mode as Mode }, t, true);
      console.log(t.failures.join('\n'));
      return;
    }
    const perKind: Record<string, number> = {};
    for (const kind of KINDS) {
      const modes: Mode[] = SYNC_KINDS.has(kind) && kind !== 'fsyncDir' ? ['once', 'persistent', 'fsyncgate'] : ['once', 'persistent'];
      for (const mode of modes) {
        for (let nth = 1; ; nth++) {
          const codes = SOAK ? CODES : [CODES[(nth - 1) % CODES.length]!];
          let untouched = false;
          for (const code of codes) {
            const before = t.points;
            untouched = (await runPoint({ kind, nth, code, mode }, t)).untouched;
            perKind[kind] = (perKind[kind] ?? 0) + (t.points - before);
          }
          if (untouched) {
            t.untouched++;
            break;
          }
          if (t.failures.length > 20) break;
        }
      }
    }
    const line =
      `fault-loop: points=${t.points} (calls x errnos x once/persistent/fsyncgate) success-after-sync-fault=${t.successAfterSyncFault} silent-loss=${t.silentLoss} ` +
      `failed-state=${t.failedState}/${t.failedStateOf} sync faults recovered-clean=${t.recoveredClean}/${t.recoveredOf} leaked-fds=${t.leakedFds}`;
    console.log(line);
    console.log(
      `fault-loop detail: workload calls ${JSON.stringify(Object.fromEntries([...base.calls].filter(([k]) => KINDS.includes(k))))} points per kind ${JSON.stringify(perKind)} ` +
        `untyped-errors=${t.untyped} swallowed=${t.swallowed} dirty-kept=${t.dirtyKept}/${t.dirtyOf} write-retries-ok=${t.retried} read-retries-ok=${t.readRetried} pages-verified=${t.pagesVerified}`,
    );
    console.log(
      `fault-loop volume (strict): states=${t.volumeStates} torn-detected=${t.volumeTornDetected} meta-mixed=${t.volumeMetaMixed} reopened-without-power-loss=${t.reopenedWithoutPowerLoss}`,
    );
    expect(t.failures.slice(0, 10)).toEqual([]);
    expect(t.successAfterSyncFault + t.silentLoss + t.leakedFds + t.untyped + t.swallowed).toBe(0);
    expect(t.volumeTornDetected + t.volumeMetaMixed).toBe(0);
    expect(t.reopenedWithoutPowerLoss).toBe(t.recoveredOf);
    expect(t.failedState).toBe(t.failedStateOf);
    expect(t.recoveredClean).toBe(t.recoveredOf);
    expect(t.dirtyKept).toBe(t.dirtyOf);
    expect(t.untouched).toBe(KINDS.length * 2 + 2);
  });
});
