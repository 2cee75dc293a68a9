/**
 * Goal: the I/O path keeps several calls in flight without giving up PostgreSQL's semantics:
 * md's checkpoint writes to many files overlap (IN_FLIGHT_DEFAULT at most), the sync phase runs
 * `syncConcurrency` callbacks at once (1, PostgreSQL's loop, by default), and a failure of one
 * call among several in flight fails the checkpoint only after the others finished, keeps their
 * results (synced entries done, written pages registered) and starts nothing new.
 * Method: forEachInFlight alone; the engine with a sync handler whose calls the test holds open
 * (promises it resolves), and md on SimDisk behind a FileIO double that counts writes in flight.
 * Counts, never timings.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, IN_FLIGHT_DEFAULT, SyncRequestType, forEachInFlight } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import type { FileHandle, FileTag } from '../engine/index.js';
import { countingHandler, tempDir, testTag } from './helpers/index.js';
import { PassThroughIO } from './helpers/io-doubles.js';
import { withEngine, BS, locator } from './helpers/engine.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('forEachInFlight (in-flight.ts I1-I3)', () => {
  it('starts calls in order, never more than the limit, and waits for every started call before throwing the first error', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    let inFlight = 0;
    let most = 0;
    const gates = new Map<number, () => void>();
    const run = forEachInFlight([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3, async (i) => {
      started.push(i);
      most = Math.max(most, ++inFlight);
      await new Promise<void>((r) => gates.set(i, r));
      inFlight--;
      finished.push(i);
      if (i === 4) throw new Error('call 4 failed');
    });
    let settled = false;
    const outcome = run.then(
      () => null,
      (e: unknown) => e,
    );
    void outcome.then(() => (settled = true));
    for (const i of [0, 1, 2, 3]) {
      await tick();
      gates.get(i)!();
    }
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
    gates.get(4)!(); // fails while 5 and 6 are in flight
    await tick();
    expect(settled).toBe(false); // I2: 5 and 6 still run
    gates.get(5)!();
    gates.get(6)!();
    expect(((await outcome) as Error).message).toBe('call 4 failed');
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]); // nothing started after the failure
    expect(finished.sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(most).toBe(3);
  });
});

describe('the sync phase with syncConcurrency (pending-ops P5)', () => {
  async function engineWithHeldSyncs(syncConcurrency?: number) {
    const held: { tag: FileTag; release: (err?: Error) => void }[] = [];
    let inFlight = 0;
    let most = 0;
    const h = countingHandler('held', {
      syncFileTag(tag) {
        most = Math.max(most, ++inFlight);
        return new Promise<void>((resolve, reject) => {
          held.push({
            tag,
            release: (err) => {
              inFlight--;
              if (err) reject(err);
              else resolve();
            },
          });
        });
      },
    });
    const engine = await Engine.open({ dataDir: await tempDir(), preload: [h.extension], ...(syncConcurrency === undefined ? {} : { syncConcurrency }) });
    for (let seg = 1; seg <= 12; seg++) await engine.registerSyncRequest(testTag(h.id, seg), SyncRequestType.SYNC);
    return { engine, held, most: () => most };
  }

  /** Release held calls as they arrive until the checkpoint settles. */
  async function drive(held: { tag: FileTag; release: (err?: Error) => void }[], done: () => boolean) {
    let released = 0;
    while (!done()) {
      await tick();
      while (released < held.length) held[released++]!.release();
    }
  }

  /** Segments 1..4 in flight; 2 fails first, then 1, 3 and 4 succeed. */
  async function failSecondOfFour(held: { tag: FileTag; release: (err?: Error) => void }[]) {
    for (let i = 0; i < 5; i++) await tick();
    expect(held.map((c) => c.tag.segno)).toEqual([1, 2, 3, 4]);
    held[1]!.release(Object.assign(new Error('EIO: injected'), { code: 'EIO' }));
    await tick();
    for (const i of [0, 2, 3]) held[i]!.release();
  }

  it('by default one sync at a time, as PostgreSQL; with syncConcurrency 4, four at once', async () => {
    for (const [conc, expected] of [
      [undefined, 1],
      [4, 4],
    ] as const) {
      const { engine, held, most } = await engineWithHeldSyncs(conc);
      let done = false;
      const cp = engine.checkpoint().finally(() => (done = true));
      // Hold the first calls until as many as allowed have started.
      for (let i = 0; i < 5; i++) await tick();
      expect(held.length).toBe(expected);
      await drive(held, () => done);
      const stats = await cp;
      expect(stats.syncFiles).toBe(12);
      expect(most()).toBe(expected);
      await engine.close();
    }
  });

  it('one failure among calls in flight: the others finish and count, nothing new starts, the rest stay for the next checkpoint', async () => {
    const { engine, held } = await engineWithHeldSyncs(4);
    const outcome = engine.checkpoint().then(
      () => null,
      (e: unknown) => e,
    );
    await failSecondOfFour(held);
    expect(await outcome).toMatchObject({ code: 'IO_ERROR', errno: 'EIO' });
    // Segments 1..4 started together; 2 failed; 1, 3 and 4 finished. Nothing after 4 started.
    expect(held.map((c) => c.tag.segno)).toEqual([1, 2, 3, 4]);
    expect(engine.failed).toBe(true);
    await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
  });

  it('with dataSyncRetry the next checkpoint syncs exactly the entries not synced before: the failed one and those never started', async () => {
    const held: { tag: FileTag; release: (err?: Error) => void }[] = [];
    const h = countingHandler('held', {
      syncFileTag(tag) {
        return new Promise<void>((resolve, reject) => held.push({ tag, release: (err) => (err ? reject(err) : resolve()) }));
      },
    });
    await withEngine({ dataDir: await tempDir(), preload: [h.extension], syncConcurrency: 4, dataSyncRetry: true }, async (engine) => {
      for (let seg = 1; seg <= 12; seg++) await engine.registerSyncRequest(testTag(h.id, seg), SyncRequestType.SYNC);
      const first = engine.checkpoint().then(
        () => null,
        (e: unknown) => e,
      );
      await failSecondOfFour(held);
      expect(await first).toMatchObject({ errno: 'EIO' });
      expect(engine.failed).toBe(false);
      held.length = 0;
      let done = false;
      const second = engine.checkpoint().finally(() => (done = true));
      await drive(held, () => done);
      const stats = await second;
      expect(held.map((c) => c.tag.segno).sort((a, b) => a - b)).toEqual([2, 5, 6, 7, 8, 9, 10, 11, 12]);
      expect(stats.syncFiles).toBe(9);
    });
  });
});

/** Counts pwrite/pwritev calls in flight at once. */
class InFlightIO extends PassThroughIO {
  inFlight = 0;
  most = 0;
  failPath: string | null = null;
  async #count<T>(fn: () => Promise<T>): Promise<T> {
    this.most = Math.max(this.most, ++this.inFlight);
    try {
      await new Promise<void>((r) => setImmediate(r)); // let the others start
      return await fn();
    } finally {
      this.inFlight--;
    }
  }
  override pwrite(h: FileHandle, b: Uint8Array, o: number): Promise<void> {
    return this.#count(() => {
      if (this.failPath && h.path.endsWith(this.failPath)) return Promise.reject(Object.assign(new Error(`EIO: injected, pwrite '${h.path}'`), { code: 'EIO' }));
      return super.pwrite(h, b, o);
    });
  }
  override pwritev(h: FileHandle, b: readonly Uint8Array[], o: number): Promise<void> {
    return this.#count(() => super.pwritev(h, b, o));
  }
}

describe('md writes in flight (smgr.ts W1-W4)', () => {
  async function setUp(relations: number) {
    const io = new InFlightIO(new SimDisk());
    const engine = await Engine.open({ dataDir: '/data', io, sharedBuffers: 256, checkpointFlushAfter: 0 });
    const rels = [];
    for (let r = 0; r < relations; r++) {
      const rel = engine.relation(locator(100 + r));
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, new Uint8Array(BS).fill(1, 16));
      rels.push(rel);
    }
    await engine.checkpoint();
    for (const rel of rels) await rel.write(ForkNumber.MAIN, 0, new Uint8Array(BS).fill(2, 16));
    io.most = 0;
    return { io, engine, rels };
  }

  it('a checkpoint over 100 relations keeps IN_FLIGHT_DEFAULT writes in flight, one per file, and syncs every file', async () => {
    const { io, engine } = await setUp(100);
    const stats = await engine.checkpoint();
    expect(io.most).toBe(Math.min(IN_FLIGHT_DEFAULT, 100));
    expect(stats.buffersWritten).toBe(100);
    expect(stats.rangesWritten).toBe(100);
    expect(stats.syncFiles).toBe(100);
    await engine.close();
  });

  it('a failed write among writes in flight fails the checkpoint after the others land; the pages stay dirty and the next checkpoint writes and syncs them', async () => {
    const { io, engine, rels } = await setUp(20);
    io.failPath = 'base/5/105';
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(io.inFlight).toBe(0); // W3: nothing still running when the checkpoint failed
    expect(engine.failed).toBe(false); // a write failure is not a sync failure
    io.failPath = null;
    const stats = await engine.checkpoint();
    expect(stats.buffersWritten).toBeGreaterThan(0);
    expect(stats.syncFiles).toBe(20); // the landed writes' SYNCs were kept (W4), the rest re-registered
    for (const rel of rels) expect((await rel.read(ForkNumber.MAIN, 0))[100]).toBe(2);
    await engine.close();
  });
});
