/**
 * Goal: the copy-on-write volume's strict crash contract (DESIGN.md section 8, D1-D2 for format
 * 2) with writers running during the checkpoint, and after an injected fdatasync failure: a
 * power loss at every I/O call leaves the volume exactly as one checkpoint captured it, the last
 * completed one or the one completing, every fork's nblocks and every page, never torn, never a
 * mix (reliability-anchors 8(a), with the writers of the README's "Writers during a checkpoint").
 *
 * Method: one Engine (4 KiB blocks, sharedBuffers 16 (the least the engine takes) so evictions reach the volume while the
 * checkpoint runs, a ManualClock so no timed checkpoint runs) on SimDisk through CaptureIO, with a
 * 1 MiB volume of 4 forks (512 KiB ran out of room at soak seeds: forks near their 20 blocks, the
 * blocks a failed checkpoint left pending and the V5 reserve; VOLUME_FULL is no failure of the
 * volume but this workload does not expect it). Each checkpoint runs while a writer task, paced by the I/O calls
 * (one operation per call it waits for), writes random blocks, extends forks and now and then
 * truncates one, recording every change in the model (helpers/campaign-crash-model.ts) before
 * its engine call. With writers running, the state a checkpoint makes durable is the volume's
 * capture (volume.ts, checkpoint order step 3), an instant inside its sync that the model cannot
 * know beforehand: CaptureIO sees the capture's first catalog write, which the volume issues
 * synchronously after the capture, and records every fork's nblocks and pages (read from the
 * disk at the blocks the capture maps) as that checkpoint's candidate state. The capture itself is
 * checked against the model: the forks of the checkpoint's start, each page its image at the
 * start or one written since, a page not written since exactly its image at the start; and after
 * each checkpoint the running engine reads every page as the model has it (no write lost to a
 * race with the checkpoint).
 * Before every FileIO call (SimDisk.beforeCall) crash images in the 5 modes x LAMSTORE_CRASH_SEEDS
 * seeds are reopened and judged (judgeVolume): the whole volume must equal the last completed
 * checkpoint's capture or, once taken, the capture of the one running.
 * Variants: no fault; the checkpoint's first volume fdatasync fails (EIO); the superblock's
 * fdatasync fails in fsyncgate mode. After a failure the images are judged again (the failed
 * checkpoint's capture is a candidate only when its superblock was written), the failed engine is
 * closed, a reopen without a power loss must read exactly the last completed checkpoint, and two
 * more checkpoints with writers run on it under the same crash images.
 * Sizes: LAMSTORE_WRITER_RUNS workload runs per variant, each with its own writer seed (CI 1, soak
 * 6: about 5 of the 30 minutes of `npm run soak`), LAMSTORE_CRASH_SEEDS crash seeds per mode (CI 2,
 * soak 4).
 * Prints one crash-matrix-writers line per variant; the volume's torn and mixed counts must be 0.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.js';
import { CRASH_MODES, ForwardingIO, ManualClock, SimDisk, prng } from '../engine/testing.js';
import type { FileIOMethod } from '../engine/testing.js';
import type { FileHandle, ForkNumber } from '../engine/index.js';
import { checkVolume, volumeExtension } from '../volume/index.js';
import type { Volume, VolumeExtension } from '../volume/index.js';
import { makePage, rel } from './helpers/volume.js';
import { CrashModel, forkKey, judgeVolume, readVolume, sha256 } from './helpers/campaign-crash-model.js';
import type { VolumeCandidate } from './helpers/campaign-crash-model.js';
import { SMALL_BS } from './helpers/engine.js';

const VOL = '/vol/lam.vol';
const DATA = '/data';
const SOAK = process.env.LAMSTORE_SOAK === '1';
/** Crash seeds per mode (the crash matrix's variable), and workload runs per variant, each with its own writer seed. */
const SEEDS = Number(process.env.LAMSTORE_CRASH_SEEDS ?? (SOAK ? 4 : 2));
const RUNS = Number(process.env.LAMSTORE_WRITER_RUNS ?? (SOAK ? 6 : 1));
/** Forks of the workload: [relNumber, fork]. */
const FORKS: readonly [number, ForkNumber][] = [
  [31, 0],
  [31, 1],
  [32, 0],
  [33, 0],
];
const MAX_BLOCKS = 20;
/** Writer steps per checkpoint at most (the writer stops earlier when the checkpoint ends). */
const WRITER_OPS = 40;
/** Writer operations per I/O call the checkpoint makes. */
const OPS_PER_CALL = 2;
/** Checkpoints with the writer before (and, after a failure, after) the reopen. */
const CHECKPOINTS = 4;

type Fault = { nth: 1 | 2; fsyncgate: boolean } | null;

/**
 * A FileIO over SimDisk that tells the test about every call (the writer's pace) and about every
 * write to the volume before it is made (the capture's first catalog write).
 */
class CaptureIO extends ForwardingIO {
  onCall: (() => void) | undefined;
  onVolumeWrite: ((offsetBytes: number) => void) | undefined;

  protected override around<T>(method: FileIOMethod, call: () => Promise<T>): Promise<T> {
    void method;
    this.onCall?.();
    return call();
  }

  override pwrite(h: FileHandle, buf: Uint8Array, offsetBytes: number): Promise<void> {
    if (h.path === VOL) this.onVolumeWrite?.(offsetBytes);
    return super.pwrite(h, buf, offsetBytes);
  }

  override pwritev(h: FileHandle, bufs: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    if (h.path === VOL) this.onVolumeWrite?.(offsetBytes);
    return super.pwritev(h, bufs, offsetBytes);
  }
}

function newTally() {
  return { ioCalls: 0, checkpoints: 0, captures: 0, writerOps: 0, racedOps: 0, racedIntoCapture: 0, defragmented: 0, liveChecked: 0, states: 0, pagesVerified: 0, tornDetected: 0, tornReturned: 0, metaMixed: 0, lost: 0, reopenFailed: 0, checkErrors: 0, choseCompleting: 0, crashImages: 0 };
}
type Tally = ReturnType<typeof newTally>;

const engineOptions = (io: CaptureIO | SimDisk, ext: VolumeExtension) => ({ dataDir: DATA, blockSize: SMALL_BS, sharedBuffers: 16, clock: new ManualClock(), io, preload: [ext] });

async function runVariant(fault: Fault, run: number, t: Tally, failures: string[]): Promise<void> {
  const name = `${fault === null ? 'no fault' : `fdatasync #${fault.nth} EIO${fault.fsyncgate ? ' fsyncgate' : ''}`} run ${run}`;
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  await disk.fsyncDir('/');
  const rand = prng(1000 * run + (fault === null ? 7 : fault.nth * 10 + (fault.fsyncgate ? 1 : 0)));
  let model = new CrashModel();
  let version = 0;

  /** Candidates: the last completed checkpoint's capture, and the running one's once taken. */
  let committed: VolumeCandidate = { id: 0, forks: new Map() };
  let inflight: { id: number; capture: VolumeCandidate | null } | null = null;
  let io!: CaptureIO;
  let ext!: VolumeExtension;
  let engine!: Engine;
  let capturedGeneration = -1;

  const fail = (what: string) => failures.push(`${name}: ${what}`);

  /** CaptureIO.onVolumeWrite: the first write to a page of a newly built catalog is the capture. */
  const onVolumeWrite = (offsetBytes: number) => {
    const vol = ext.volume;
    if (!vol) return;
    const info = vol.info();
    if (capturedGeneration === info.generation + 1 || !info.catalog.pageBlocks.includes(offsetBytes / SMALL_BS)) return;
    capturedGeneration = info.generation + 1;
    t.captures++;
    if (inflight === null) {
      fail(`a capture (generation ${capturedGeneration}) outside a checkpoint`);
      return;
    }
    inflight.capture = capture(vol, inflight.id);
  };

  /** The volume's current maps (the capture: nothing ran since it) and the pages they name, checked against the model. */
  const capture = (vol: Volume, id: number): VolumeCandidate => {
    const bytes = disk.readFileNow(VOL)!;
    const forks = new Map<string, { nblocks: number; pages: string[] }>();
    const snap = model.snapshots[id]!;
    const since = model.since[id]!;
    for (const f of vol.info().forks) {
      const k = forkKey('volume', f.relNumber, f.fork);
      const pages: string[] = [];
      for (let b = 0; b < f.nblocks; b++) {
        const vb = vol.physicalBlock(rel(f.relNumber), f.fork as ForkNumber, b);
        const page = bytes.subarray(vb * SMALL_BS, (vb + 1) * SMALL_BS);
        const h = sha256(page);
        pages.push(h);
        const atStart = snap.forks.get(k)?.pages[b];
        const written = since.written.get(`${k}/${b}`);
        if (h !== atStart && written?.has(h)) t.racedIntoCapture++;
        if (h !== atStart && !written?.has(h)) fail(`checkpoint ${id}'s capture has ${k} block ${b} as an image never written there (start ${atStart?.slice(0, 8)}, since ${[...(written ?? [])].map((x) => x.slice(0, 8)).join('/')})`);
      }
      forks.set(k, { nblocks: f.nblocks, pages });
    }
    const want = [...snap.forks.keys()].filter((k) => k.startsWith('volume:')).sort();
    if ([...forks.keys()].sort().join() !== want.join()) fail(`checkpoint ${id}'s capture has forks ${[...forks.keys()].join(',')}, its start ${want.join(',')}`);
    return { id, forks };
  };

  const verify = async (img: SimDisk, candidates: VolumeCandidate[], where: string): Promise<void> => {
    t.states++;
    const e = volumeExtension({ path: VOL });
    let eng: Engine;
    try {
      eng = await Engine.open(engineOptions(img, e));
    } catch (err) {
      t.reopenFailed++;
      fail(`${where}: reopen failed: ${(err as Error).message}`);
      return;
    }
    let activeSlot = 0;
    try {
      e.volume!.checkInvariants();
      const info = e.volume!.info();
      activeSlot = info.activeSlot;
      const verdict = judgeVolume(await readVolume(eng, info.forks), candidates, model.images);
      t.pagesVerified += verdict.pagesVerified;
      t.tornDetected += verdict.tornDetected;
      t.tornReturned += verdict.tornReturned;
      t.lost += verdict.lost;
      if (verdict.metaMixed) t.metaMixed++;
      if (verdict.chosen === null) for (const p of verdict.problems.slice(0, 4)) fail(`${where}: ${p}`);
      else if (verdict.chosen !== candidates[0]!.id) t.choseCompleting++;
    } finally {
      await eng.close();
    }
    const findings = (await checkVolume(VOL, { io: img, checkPages: true })).filter((f) => f.severity === 'error' && f.part !== `superblock slot ${1 - activeSlot}`);
    if (findings.length > 0) {
      t.checkErrors++;
      fail(`${where}: check: ${findings.map((f) => `${f.part}: ${f.message}`).join('; ')}`);
    }
  };

  /** Crash images of `disk` now, deduplicated, each judged against the candidates of this moment. */
  const seen = new Set<string>();
  const crashAll = async (where: string): Promise<void> => {
    const candidates = [committed, ...(inflight?.capture ? [inflight.capture] : [])];
    const key = candidates.map((c) => c.id).join(',');
    const modes = disk.pendingCount === 0 ? [['drop', 1] as const] : CRASH_MODES.flatMap((m) => Array.from({ length: SEEDS }, (_, i) => [m, i + 1] as const));
    for (const [mode, seed] of modes) {
      t.crashImages++;
      const img = disk.crash(mode, seed);
      const k = `${key}/${sha256(img.readFileNow(VOL)!)}`;
      if (seen.has(k)) continue;
      seen.add(k);
      await verify(img, candidates, `${where} ${mode} seed ${seed}`);
    }
  };

  const open = async (): Promise<void> => {
    io = new CaptureIO(disk);
    io.onVolumeWrite = onVolumeWrite;
    ext = volumeExtension({ path: VOL, create: { sizeBytes: 1024 * 1024 } });
    engine = await Engine.open(engineOptions(io, ext));
  };

  const handle = (relNumber: number) => engine.relation(rel(relNumber), { storage: 'volume' });
  const extend = async (relNumber: number, fork: ForkNumber) => {
    const st = model.fork('volume', relNumber, fork);
    const page = makePage(rel(relNumber), fork, st.nblocks, ++version, SMALL_BS);
    model.noteWrite(st, st.nblocks, page);
    await handle(relNumber).extend(fork, page);
  };
  const write = async (relNumber: number, fork: ForkNumber, blk: number) => {
    const page = makePage(rel(relNumber), fork, blk, ++version, SMALL_BS);
    model.noteWrite(model.fork('volume', relNumber, fork), blk, page);
    await handle(relNumber).write(fork, blk, page);
  };
  const truncate = async (relNumber: number, fork: ForkNumber, n: number) => {
    model.noteTruncate(model.fork('volume', relNumber, fork), n);
    await handle(relNumber).truncate(fork, n);
  };

  /** One writer operation: mostly writes, some extensions, a rare truncate. */
  const writerOp = async () => {
    t.writerOps++;
    const [r, f] = FORKS[Math.floor(rand() * FORKS.length)]!;
    const n = model.fork('volume', r, f).nblocks;
    const x = rand();
    if (x < 0.6 && n > 0) await write(r, f, Math.floor(rand() * n));
    else if (x < 0.95 && n < MAX_BLOCKS) await extend(r, f);
    else if (n > 0) await truncate(r, f, Math.floor(rand() * n));
  };

  /** The running engine reads every volume fork as the model has it: no write was lost to a race with the checkpoint. */
  const checkLive = async (when: string): Promise<void> => {
    for (const [k, f] of model.state.forks) {
      const h = handle(f.relNumber);
      const n = await h.nblocks(f.fork as ForkNumber);
      if (n !== f.nblocks) fail(`${when}: ${k} has ${n} blocks, the model ${f.nblocks}`);
      for (let b = 0; b < Math.min(n, f.nblocks); b++) {
        t.liveChecked++;
        if (sha256(await h.read(f.fork as ForkNumber, b)) !== f.pages[b]) fail(`${when}: ${k} block ${b} reads back another image than the model's`);
      }
    }
  };

  /** A checkpoint with the writer running; resolves with the checkpoint's error, if any. */
  const checkpointWithWriters = async (): Promise<unknown> => {
    model.beginCheckpoint();
    inflight = { id: model.inflight!, capture: null };
    t.checkpoints++;
    let done = false;
    let tick: (() => void) | null = null;
    io.onCall = () => {
      const r = tick;
      tick = null;
      r?.();
    };
    const cp = engine.checkpoint().then(
      () => null,
      (err: unknown) => err,
    );
    void cp.then(() => {
      done = true;
      tick?.();
    });
    const writer = (async () => {
      for (let i = 0; i < WRITER_OPS && !done; i++) {
        await new Promise<void>((resolve) => (tick = resolve));
        for (let j = 0; j < OPS_PER_CALL && !done; j++) {
          t.racedOps++;
          await writerOp();
        }
      }
    })().catch((err: unknown) => err);
    const error = await cp;
    const writerError = await writer;
    io.onCall = undefined;
    if (error === null) {
      model.endCheckpoint();
      if (inflight.capture) committed = inflight.capture;
      else fail(`checkpoint ${inflight.id} with writers captured nothing`);
      inflight = null;
      if (writerError !== undefined) fail(`the writer failed: ${(writerError as Error).message}`);
      await checkLive(`after checkpoint ${model.committed}`);
    } else if (!engine.failed || (writerError !== undefined && (writerError as { code?: string }).code !== 'ENGINE_FAILED')) {
      fail(`checkpoint ${inflight.id} failed (${(error as Error).message}); engine failed ${engine.failed}; writer ${(writerError as Error | undefined)?.message}`);
    }
    return error;
  };

  let verifying: Promise<void> = Promise.resolve();
  const crashBeforeEveryCall = (where: string) => {
    disk.beforeCall = async (index) => {
      t.ioCalls++;
      const run = verifying.then(() => crashAll(`${where}crash before call ${index}`));
      verifying = run;
      await run;
    };
  };

  // Setup (the volume created first): forks with a few blocks, then checkpoint 1 without writers.
  await open();
  crashBeforeEveryCall('');
  for (const [r, f] of FORKS) {
    if (!model.state.forks.has(forkKey('volume', r, f))) model.create('volume', r, f);
    await handle(r).create(f);
  }
  for (const [r, f] of FORKS) for (let b = 0; b < 5; b++) await extend(r, f);
  model.beginCheckpoint();
  inflight = { id: model.inflight!, capture: null };
  await engine.checkpoint();
  model.endCheckpoint();
  committed = inflight.capture!;
  inflight = null;
  // Checkpoints 2.. with the writer; the last fails when a fault is injected.
  const last = CHECKPOINTS + 1;
  for (let c = 2; c <= last; c++) {
    for (let i = 0; i < 6; i++) await writerOp();
    if (c === last && fault) disk.injectFault({ kind: 'fdatasync', nth: fault.nth, code: 'EIO', fsyncgate: fault.fsyncgate, pathIncludes: VOL });
    const error = await checkpointWithWriters();
    if ((error !== null) !== (c === last && fault !== null)) fail(`checkpoint ${c}: ${error === null ? 'resolved' : `failed: ${(error as Error).message}`}`);
  }
  if (fault) {
    // The failed state: nothing more is written; a power loss now in every mode.
    disk.beforeCall = undefined;
    await verifying;
    disk.clearFaults();
    if (fault.nth === 1) inflight!.capture = null; // its superblock was never written
    await crashAll('after the failure');
    t.defragmented += ext.volume!.stats.forksDefragmented;
    await engine.close().then(
      () => fail('close of the failed engine resolved'),
      () => {},
    );
    if (disk.openHandleCount !== 0) fail(`${disk.openHandleCount} handles open after close`);
    inflight = null;
    // Reopen without a power loss: exactly the last completed checkpoint.
    disk.beforeCall = undefined;
    await open();
    const observed = await readVolume(engine, ext.volume!.info().forks);
    const verdict = judgeVolume(observed, [committed], model.images);
    if (verdict.chosen === null) for (const p of verdict.problems.slice(0, 4)) fail(`reopen without a power loss: ${p}`);
    if (!engine.openStats.uncleanStop) fail('the reopen did not see the unclean stop');
    // The model starts again from what the reopen reads (the last completed checkpoint).
    const images = model.images;
    model = new CrashModel();
    for (const [k, v] of images) model.images.set(k, v);
    for (const [k, f] of committed.forks) {
      const [relNumber, fork] = k.slice('volume:'.length).split('/').map(Number) as [number, number];
      model.state.forks.set(k, { storage: 'volume', relNumber, fork, nblocks: f.nblocks, pages: [...f.pages] });
    }
    model.beginCheckpoint();
    model.endCheckpoint();
    committed = { id: model.committed, forks: committed.forks };
    capturedGeneration = -1;
    crashBeforeEveryCall('after the reopen, ');
    for (let c = 0; c < CHECKPOINTS; c++) {
      for (let i = 0; i < 6; i++) await writerOp();
      const error = await checkpointWithWriters();
      if (error !== null) fail(`a checkpoint after the reopen failed: ${(error as Error).message}`);
    }
  }
  // The shutdown checkpoint of a clean close, under the same crash images.
  model.beginCheckpoint();
  inflight = { id: model.inflight!, capture: null };
  t.defragmented += ext.volume!.stats.forksDefragmented;
  await engine.close();
  model.endCheckpoint();
  if (inflight.capture) committed = inflight.capture;
  inflight = null;
  disk.beforeCall = undefined;
  await verifying;
  await crashAll('after the close');
}

function line(name: string, t: Tally): string {
  return (
    `crash-matrix-writers (${name}): runs=${RUNS} io-calls=${t.ioCalls} checkpoints=${t.checkpoints} captures=${t.captures} writer-ops=${t.writerOps} (during checkpoints ${t.racedOps}, in a capture ${t.racedIntoCapture}) ` +
    `forks-defragmented=${t.defragmented} live-pages-checked=${t.liveChecked} modes=${CRASH_MODES.length} seeds=${SEEDS} states=${t.states} pages-verified=${t.pagesVerified} ` +
    `volume: torn-detected=${t.tornDetected} torn-returned=${t.tornReturned} meta-mixed=${t.metaMixed} lost=${t.lost} reopen-failed=${t.reopenFailed} check-errors=${t.checkErrors} chose-completing=${t.choseCompleting}`
  );
}

describe('campaign: crash matrix on the copy-on-write volume with writers during the checkpoint', () => {
  for (const fault of [null, { nth: 1, fsyncgate: false }, { nth: 2, fsyncgate: true }] as Fault[]) {
    const name = fault === null ? 'no fault' : `the checkpoint's ${fault.nth === 1 ? 'first volume fdatasync' : "superblock's fdatasync"} fails${fault.fsyncgate ? ' in fsyncgate mode' : ''}`;
    it(`${name}: a power loss at every I/O call leaves exactly the last completed checkpoint's capture or the running one's, whole`, { timeout: process.env.LAMSTORE_SOAK ? 3_600_000 : 300_000 }, async () => {
      const t = newTally();
      const failures: string[] = [];
      for (let run = 1; run <= RUNS && failures.length === 0; run++) await runVariant(fault, run, t, failures);
      console.log(line(fault === null ? 'no fault' : `fdatasync #${fault.nth} EIO${fault.fsyncgate ? ' fsyncgate' : ''}`, t));
      expect(failures.slice(0, 10)).toEqual([]);
      expect(t.tornDetected + t.tornReturned + t.metaMixed + t.lost + t.reopenFailed + t.checkErrors).toBe(0);
      expect(t.states).toBeGreaterThan(0);
      expect(t.choseCompleting).toBeGreaterThan(0);
      expect(t.racedOps).toBeGreaterThan(0);
      expect(t.racedIntoCapture).toBeGreaterThan(0);
    });
  }
});
