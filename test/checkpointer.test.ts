/**
 * Goal: the checkpointer's scheduling and phase order as PostgreSQL's checkpointer.c and
 * CreateCheckPoint: merged requests (42), FAST never sleeps and spread sleeps while ahead (41),
 * the idle skip (29), timed and dirty-bytes triggers, statistics and the log line, failures.
 * Method: the Checkpointer class with fake participants and a ManualClock (no real sleeps), and
 * the Engine with a ManualClock where the whole path matters. Counts, never wall-clock times.
 */
import { describe, expect, it } from 'vitest';
import { Checkpointer, CheckpointFlags, SPREAD_NAP_MS, formatCheckpointLine, msRoundedUp, type CheckpointParticipants, type SyncPhases } from '../checkpointer/checkpointer.js';
import { ManualClock } from '../engine/testing.js';
import { Engine, SyncRequestType } from '../engine/index.js';
import { countingHandler, tempDir, testTag } from './helpers/index.js';
import { withEngine } from './helpers/engine.js';

interface Harness {
  cp: Checkpointer<string>;
  clock: ManualClock;
  phases: string[];
  remembered: string[];
  failures: unknown[];
  dirty: { n: number };
  writeRanges: number;
}

function harness(options: { timeoutMs?: number; maxDirtyBytes?: number; syncFails?: boolean; writeRanges?: number; msPerRange?: number; onLog?: (l: string) => void } = {}): Harness {
  const clock = new ManualClock(0);
  const phases: string[] = [];
  const remembered: string[] = [];
  const failures: unknown[] = [];
  const dirty = { n: 0 };
  const h = {} as Harness;
  const sync: SyncPhases<string> = {
    remember: (r) => void remembered.push(r),
    preCheckpoint: (absorb) => {
      absorb();
      phases.push('pre');
    },
    processSyncRequests: async () => {
      phases.push('sync');
      if (options.syncFails) throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
      return { syncFiles: 2, longestSyncUs: 1500.2, totalSyncUs: 2001, tagsDispatched: { md: 2 } };
    },
    postCheckpoint: async () => {
      phases.push('post');
      return 1;
    },
  };
  const participants: CheckpointParticipants = {
    bufferSync: async (pace) => {
      phases.push('buffers');
      const ranges = options.writeRanges ?? 1;
      for (let i = 1; i <= ranges; i++) {
        if (options.msPerRange) await clock.advance(options.msPerRange);
        dirty.n = Math.max(0, dirty.n - 1);
        await pace(i / ranges);
      }
      dirty.n = 0;
      return { buffersWritten: ranges, bytesWritten: ranges * 8192, rangesWritten: ranges, runsWritten: ranges, pagesRelocated: 0 };
    },
    bufferCount: () => 100,
    dirtyPageCount: () => dirty.n,
    checkpointSlrus: async () => void phases.push('slru'),
    storageBegin: async () => void phases.push('begin'),
    storageEnd: async (completed) => void phases.push(completed ? 'end' : 'end-failed'),
    ioCounts: () => ({ fsync: 0, fdatasync: 0, fsyncDir: 0, bytesWritten: 0 }),
    onSyncFailure: (err) => void failures.push(err),
    runAsCheckpointer: (fn) => fn(),
  };
  h.cp = new Checkpointer<string>({
    sync,
    participants,
    clock,
    queueSize: 8,
    keyOf: (r) => r,
    enableFsync: true,
    checkpointTimeoutMs: options.timeoutMs ?? 10_000,
    maxDirtyBytes: options.maxDirtyBytes,
    onLog: options.onLog,
  });
  Object.assign(h, { clock, phases, remembered, failures, dirty });
  return h;
}

/** Let queued microtasks and immediates run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('checkpointer', () => {
  it('runs the phases in PostgreSQL order: pre, begin, buffers, SLRU, sync, end, post-checkpoint', async () => {
    const h = harness();
    const stats = await h.cp.request(CheckpointFlags.FORCE | CheckpointFlags.FAST);
    expect(h.phases).toEqual(['pre', 'begin', 'buffers', 'slru', 'sync', 'end', 'post']);
    expect(stats.syncFiles).toBe(2);
    expect(stats.unlinks).toBe(1);
    expect(stats.skipped).toBe(false);
  });

  it('behaviour 23: longest and average are rounded up to whole ms from µs; the log line has PostgreSQL\'s shape', async () => {
    const h = harness();
    const stats = await h.cp.request(CheckpointFlags.FORCE | CheckpointFlags.FAST);
    expect(stats.longestSyncMs).toBe(2); // 1500.2 µs -> 2 ms
    expect(stats.averageSyncMs).toBe(1); // 2001/2 = 1000.5 µs, cut to 1000 µs as PostgreSQL's integer division, -> 1 ms
    expect([0, 1, 999, 1000, 1001, 1999, 2000, 2000.4].map(msRoundedUp)).toEqual([0, 1, 1, 1, 2, 2, 2, 3]);
    expect(formatCheckpointLine(stats, 100)).toMatch(
      /^checkpoint complete: wrote 1 buffers \(1\.0%\); write=\d+\.\d{3} s, sync=\d+\.\d{3} s, total=\d+\.\d{3} s; sync files=2, longest=0\.002 s, average=0\.001 s$/,
    );
  });

  it('behaviour 42: requests made before a checkpoint starts merge into one, flags OR-ed; a request during a run gets the next', async () => {
    const h = harness({ writeRanges: 1 });
    // Hold the first checkpoint inside its sync phase.
    const first = h.cp.request(CheckpointFlags.FORCE | CheckpointFlags.FAST);
    const a = h.cp.request(CheckpointFlags.FAST);
    const b = h.cp.request(CheckpointFlags.FORCE);
    const [s1, sa, sb] = await Promise.all([first, a, b]);
    expect(sa).toBe(sb); // one checkpoint served both waiters
    expect(sa).not.toBe(s1); // and it was not the one already running
    expect(sa.flags).toBe(CheckpointFlags.FAST | CheckpointFlags.FORCE);
    expect(h.cp.completed).toBe(2);
  });

  it('behaviour 42: every waiter of a failed checkpoint gets its error; the failure is reported before anything else runs', async () => {
    const h = harness({ syncFails: true });
    h.cp.request(CheckpointFlags.FORCE).catch(() => {});
    const w1 = h.cp.request(CheckpointFlags.FAST);
    const w2 = h.cp.request(CheckpointFlags.FORCE);
    await expect(w1).rejects.toMatchObject({ code: 'EIO' });
    await expect(w2).rejects.toMatchObject({ code: 'EIO' });
    expect(h.failures.length).toBe(2);
    // No storage "completed", no unlinks after a failed sync phase (behaviour 26).
    expect(h.phases).not.toContain('post');
    expect(h.phases).not.toContain('end');
    expect(h.cp.failed).toBe(2);
  });

  it('behaviour 41: a FAST checkpoint never sleeps in the write phase', async () => {
    const h = harness({ writeRanges: 50 });
    const stats = await h.cp.request(CheckpointFlags.FAST | CheckpointFlags.FORCE);
    expect(stats.sleptMs).toBe(0);
    expect(h.clock.sleeping).toBe(0);
  });

  it('behaviour 41: a spread checkpoint sleeps 100 ms whenever progress x completionTarget is ahead of the time fraction', async () => {
    // timeout 10 s, target 0.9, 10 ranges: after range i progress*0.9 = 0.09 i, so it should
    // sleep until elapsed >= 0.9 i s.
    const h = harness({ writeRanges: 10, timeoutMs: 10_000 });
    let done = false;
    const p = h.cp.request(CheckpointFlags.FORCE).then((s) => {
      done = true;
      return s;
    });
    await settle();
    let steps = 0;
    while (!done && steps < 1000) {
      expect(h.clock.sleeping).toBeLessThanOrEqual(1);
      await h.clock.advance(SPREAD_NAP_MS);
      await settle();
      steps++;
    }
    const stats = await p;
    // Finishing the last range at 0.9 of the 10 s interval takes 90 naps of 100 ms.
    expect(stats.sleptMs).toBe(9000);
    expect(steps).toBe(90);
  });

  it('a FAST request arriving behind a spread checkpoint stops its sleeping', async () => {
    const h = harness({ writeRanges: 10, timeoutMs: 10_000 });
    const spread = h.cp.request(CheckpointFlags.FORCE);
    await settle();
    await h.clock.advance(SPREAD_NAP_MS);
    await settle();
    const fast = h.cp.request(CheckpointFlags.FAST | CheckpointFlags.FORCE);
    // One more nap to wake the sleeper; after that it never sleeps again.
    await h.clock.advance(SPREAD_NAP_MS);
    const [s1, s2] = await Promise.all([spread, fast]);
    expect(s1.sleptMs).toBe(2 * SPREAD_NAP_MS);
    expect(s2.sleptMs).toBe(0);
  });

  it('behaviour 29: a timed checkpoint with nothing written since the last one does only the pre-checkpoint step', async () => {
    const h = harness({ writeRanges: 0 }); // no pacing: this test is about skipping
    await h.cp.request(CheckpointFlags.FORCE | CheckpointFlags.FAST);
    h.phases.length = 0;
    const idle = await h.cp.request(CheckpointFlags.CAUSE_TIME);
    expect(idle.skipped).toBe(true);
    expect(h.phases).toEqual(['pre']);
    // Something written: the next timed one runs.
    h.cp.noteActivity();
    h.phases.length = 0;
    const busy = await h.cp.request(CheckpointFlags.CAUSE_TIME);
    expect(busy.skipped).toBe(false);
    expect(h.phases).toContain('sync');
    // Dirty pages alone are activity too.
    h.dirty.n = 3;
    h.phases.length = 0;
    expect((await h.cp.request(CheckpointFlags.CAUSE_TIME)).skipped).toBe(false);
    // A forced checkpoint with nothing pending runs all phases and succeeds.
    h.phases.length = 0;
    expect((await h.cp.request(CheckpointFlags.FORCE)).skipped).toBe(false);
    expect(h.phases).toContain('sync');
  });

  it('checkpointTimeoutMs: the timer requests a checkpoint every interval, spaced from the last start', async () => {
    const h = harness({ timeoutMs: 1000, writeRanges: 0 });
    h.cp.noteActivity();
    h.cp.startTimer();
    await settle();
    expect(h.cp.completed).toBe(0);
    await h.clock.advance(999);
    await settle();
    expect(h.cp.completed).toBe(0);
    await h.clock.advance(1);
    await settle();
    expect(h.cp.completed).toBe(1);
    expect(h.phases).toContain('sync');
    // Nothing written since: the next timed one is skipped but still counted as done.
    await h.clock.advance(1000);
    await settle();
    expect(h.cp.completed).toBe(2);
    expect(h.phases.filter((p) => p === 'sync').length).toBe(1);
    h.cp.stop();
  });

  it('maxDirtyBytes: dirty bytes above the limit request a checkpoint, once', async () => {
    const h = harness({ maxDirtyBytes: 8192 * 4, writeRanges: 0 });
    h.cp.noteDirtyBytes(8192 * 4);
    await settle();
    expect(h.cp.completed).toBe(0);
    h.dirty.n = 5;
    h.cp.noteDirtyBytes(8192 * 5);
    h.cp.noteDirtyBytes(8192 * 6); // merges with the one already coming
    await settle();
    await settle();
    expect(h.cp.completed).toBe(1);
    expect(h.phases.filter((p) => p === 'buffers').length).toBe(1);
  });

  it('behaviour 33: the request that makes the queue half full wakes the checkpointer, which absorbs', async () => {
    const h = harness(); // queue of 8
    for (let i = 0; i < 3; i++) expect(h.cp.queue.forward(`r${i}`)).toBe(true);
    expect(h.cp.wakeups).toBe(0);
    expect(h.cp.queue.forward('r3')).toBe(true); // 4 of 8: half full
    expect(h.cp.wakeups).toBe(1);
    await settle();
    expect(h.remembered).toEqual(['r0', 'r1', 'r2', 'r3']);
    expect(h.cp.queue.length).toBe(0);
  });
});

describe('checkpointer through the engine', () => {
  it('a timed checkpoint through the engine syncs what was requested; an idle one dispatches nothing', async () => {
    const clock = new ManualClock(0);
    const h = countingHandler();
    await withEngine({ dataDir: await tempDir(), preload: [h.extension], clock, checkpointTimeoutMs: 60_000 }, async (engine) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SyncRequestType.SYNC);
      await clock.advance(60_000);
      await settle();
      expect(h.syncCalls.length).toBe(1);
      await clock.advance(60_000);
      await settle();
      expect(h.syncCalls.length).toBe(1);
    });
  });

  it('behaviour 29: a request the checkpointer itself made during a sync phase waits; a timed idle checkpoint leaves it pending, a forced one syncs it', async () => {
    const clock = new ManualClock(0);
    let engine!: Engine;
    let added = false;
    const h = countingHandler('t', {
      async syncFileTag(tag) {
        h.syncCalls.push(tag);
        if (!added) {
          added = true;
          await engine.registerSyncRequest(testTag(h.id, 99), SyncRequestType.SYNC);
        }
      },
    });
    engine = await Engine.open({ dataDir: await tempDir(), preload: [h.extension], clock, checkpointTimeoutMs: 60_000 });
    try {
      await engine.registerSyncRequest(testTag(h.id, 1), SyncRequestType.SYNC);
      await engine.checkpoint();
      expect(h.syncCalls.map((t) => t.segno)).toEqual([1]); // seg 99 is of the new cycle
      await clock.advance(60_000);
      await settle();
      expect(h.syncCalls.map((t) => t.segno)).toEqual([1]); // idle: skipped, 99 still pending
      await engine.checkpoint();
      expect(h.syncCalls.map((t) => t.segno)).toEqual([1, 99]);
    } finally {
      await engine.close();
    }
  });

  it('onLog receives the checkpoint complete line and the per-file sync lines (behaviour 45)', async () => {
    const lines: string[] = [];
    const h = countingHandler();
    await withEngine({ dataDir: await tempDir(), preload: [h.extension], onLog: (l) => lines.push(l) }, async (engine) => {
      await engine.registerSyncRequest(testTag(h.id, 7), SyncRequestType.SYNC);
      await engine.checkpoint();
      expect(lines.some((l) => /^checkpoint sync: number=1 file=test_sync_handler:seg7 time=\d+\.\d{3} ms$/.test(l))).toBe(true);
      expect(lines.some((l) => l.startsWith('checkpoint complete: wrote 0 buffers'))).toBe(true);
    });
  });

  it('a sync failure enters the failed state: later checkpoints are refused with ENGINE_FAILED until reopen', async () => {
    const dir = await tempDir();
    const h = countingHandler();
    h.failNext.push('EIO');
    const engine = await Engine.open({ dataDir: dir, preload: [h.extension] });
    await engine.registerSyncRequest(testTag(h.id, 1), SyncRequestType.SYNC);
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'IO_ERROR', errno: 'EIO' });
    expect(engine.failed).toBe(true);
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    // No shutdown checkpoint in the failed state; close releases the lock and says it failed.
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    const h2 = countingHandler();
    const again = await Engine.open({ dataDir: dir, preload: [h2.extension] });
    expect(again.failed).toBe(false);
    await again.checkpoint();
    await again.close();
  });

  it('bounded shutdown: past the deadline the write phase stops with TIMEOUT, reporting progress on the way', async () => {
    const lines: string[] = [];
    // 100 ranges of 100 ms each would take 10 s; the bound is 2.5 s.
    const h = harness({ writeRanges: 100, msPerRange: 100, onLog: (l) => lines.push(l) });
    h.dirty.n = 100;
    h.cp.setDeadline(2500);
    const err = await h.cp.request(CheckpointFlags.SHUTDOWN | CheckpointFlags.FAST | CheckpointFlags.FORCE).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TIMEOUT' });
    expect((err as Error).message).toMatch(/within 2500 ms .* pages left unwritten/);
    expect(h.phases).not.toContain('sync'); // stopped writing; nothing claimed durable
    expect(h.clock.now()).toBeLessThanOrEqual(2600);
    expect(lines.filter((l) => /^shutdown checkpoint: \d+ pages left, \d+% written, [\d.]+ MiB\/s$/.test(l)).length).toBeGreaterThanOrEqual(2);
  });
});
