/**
 * Goal: the pending-operations layer (engine/sync/pending-ops.ts, sync.c's half in the
 * checkpointer) keeps every acceptance behaviour of shared/reference/postgres-sync-semantics.md
 * section 11 that concerns it alone: 9-28, 30 and 45 (31-34 are in request-queue.test.ts).
 * Method: two levels.
 *  - PendingOps directly, with a registry of recording handlers and a hand-driven request queue
 *    whose absorb() is counted: this shows exactly when requests become visible.
 *  - The Engine on a temporary directory with countingHandler() extensions and, for timings, a
 *    ManualClock that the handlers advance inside their sync callbacks (no wall-clock asserts).
 * PendingOps.checkInvariants() runs after every phase.
 */
import { syncThreadMessages } from '../engine/io/sync-thread.js';
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, SyncRequestType, isLamstoreError } from '../engine/index.js';
import { ManualClock, SimDisk } from '../engine/testing.js';
import type { EngineOptions, FileTag, SyncOps } from '../engine/index.js';
import { BUILTIN_HANDLER_NAMES, SyncHandlerId, SyncHandlerRegistry } from '../engine/sync/registry.js';
import { FSYNCS_PER_ABSORB, PendingOps, UNLINKS_PER_ABSORB } from '../engine/sync/pending-ops.js';
import type { SyncPhaseStats } from '../engine/sync/pending-ops.js';
import { describeTag } from '../engine/sync/file-tag.js';
import { mdSyncOps } from '../engine/md/sync-ops.js';
import { MdStorageManager } from '../engine/md/md.js';
import { countingHandler, tempDir, testTag } from './helpers/index.js';
import type { CountingHandler } from './helpers/index.js';
import { withEngine, type WithEngineExpectations } from './helpers/engine.js';

const { SYNC, UNLINK, FORGET, FILTER } = SyncRequestType;

// ---------------------------------------------------------------------------------------------
// PendingOps harness

type Hook = (tag: FileTag) => void | Promise<void>;

/**
 * PendingOps over a registry of recording handlers: the five built-ins (md keeps its real
 * fileTagMatches) plus dynamic handlers "a" (5) and "b" (6) whose matcher compares dbOid.
 * `queue` stands for the checkpointer's request queue; nothing in it is visible to PendingOps
 * until absorb() runs, and absorb() calls are counted.
 */
class Harness {
  readonly pending: PendingOps;
  readonly registry: SyncHandlerRegistry;
  readonly queue: { tag: FileTag; type: SyncRequestType }[] = [];
  readonly clock = new ManualClock();
  absorbs = 0;
  /** Successful syncs and unlinks, as describeTag() strings, in call order. */
  readonly syncs: string[] = [];
  readonly unlinks: string[] = [];
  /** Every sync callback call, including failing ones. */
  readonly attempts: string[] = [];
  readonly warnings: string[] = [];
  readonly lines: string[] = [];
  onSync: Hook | undefined;
  onUnlink: Hook | undefined;
  readonly a = SyncHandlerId.FIRST_DYNAMIC;
  readonly b = SyncHandlerId.FIRST_DYNAMIC + 1;

  constructor() {
    const recorder = (name: string): SyncOps => ({
      name,
      syncFileTag: async (tag) => {
        this.attempts.push(describeTag(tag));
        await this.onSync?.(tag);
        this.syncs.push(describeTag(tag));
      },
      unlinkFileTag: async (tag) => {
        await this.onUnlink?.(tag);
        this.unlinks.push(describeTag(tag));
      },
      fileTagMatches: (filter, candidate) => filter.rlocator.dbOid === candidate.rlocator.dbOid,
      describeTag: (tag) => `${name}:${tag.segno}`,
    });
    const md = mdSyncOps({ io: new SimDisk(), dataDir: '/data' });
    const builtins = BUILTIN_HANDLER_NAMES.map((name) => {
      const ops = recorder(name);
      // md keeps its own predicate; the SLRU handlers have none, as in PostgreSQL.
      if (name === 'md') ops.fileTagMatches = md.fileTagMatches!;
      else delete ops.fileTagMatches;
      return ops;
    });
    this.registry = new SyncHandlerRegistry(builtins);
    expect(this.registry.register(recorder('a'))).toBe(this.a);
    expect(this.registry.register(recorder('b'))).toBe(this.b);
    this.registry.close();
    this.pending = new PendingOps(this.registry);
  }

  /** A request as the checkpointer absorbs it right now (or as its own writes register). */
  remember(tag: FileTag, type: SyncRequestType = SYNC): void {
    this.pending.remember(tag, type);
  }

  /** A request forwarded to the queue: visible only after the next absorb(). */
  forward(tag: FileTag, type: SyncRequestType = SYNC): void {
    this.queue.push({ tag, type });
  }

  absorb = (): void => {
    this.absorbs++;
    while (this.queue.length > 0) {
      const r = this.queue.shift()!;
      this.pending.remember(r.tag, r.type);
    }
  };

  async sync(enableFsync = true): Promise<SyncPhaseStats> {
    const s = await this.pending.processSyncRequests({ absorb: this.absorb, enableFsync, clock: this.clock, onSyncFile: (l) => this.lines.push(l) });
    this.pending.checkInvariants();
    return s;
  }

  async post(): Promise<number> {
    const n = await this.pending.postCheckpoint({ absorb: this.absorb, onWarning: (w) => this.warnings.push(w) });
    this.pending.checkInvariants();
    return n;
  }

  /** A whole checkpoint's worth of sync work: pre-checkpoint, sync phase, post-checkpoint. */
  async checkpoint(enableFsync = true): Promise<SyncPhaseStats & { unlinked: number }> {
    this.pending.preCheckpoint(this.absorb);
    const s = await this.sync(enableFsync);
    return { ...s, unlinked: await this.post() };
  }

  /** Take and clear the recorded syncs. */
  takeSyncs(): string[] {
    return this.syncs.splice(0).sort();
  }

  takeUnlinks(): string[] {
    return this.unlinks.splice(0).sort();
  }
}

const names = (...tags: FileTag[]): string[] => tags.map(describeTag).sort();

function enoent(tag: FileTag): Error {
  return Object.assign(new Error(`ENOENT: no such file, open 'seg${tag.segno}'`), { code: 'ENOENT' });
}
function eio(tag: FileTag): Error {
  return Object.assign(new Error(`EIO: i/o error, fsync 'seg${tag.segno}'`), { code: 'EIO' });
}

// ---------------------------------------------------------------------------------------------
// Engine helpers

interface Opened {
  engine: Engine;
  h: CountingHandler;
  logs: string[];
}

type OpsOf = (o: () => Opened) => Partial<SyncOps>;
type Run<T> = (o: Opened) => Promise<T>;

type Setup = Partial<EngineOptions> & WithEngineExpectations;

/**
 * withEngine on an engine with one counting handler, in a new temporary directory: `setup`
 * adds to the engine's options (and says what its close must do, `closeRejects`), `ops` override
 * the handler's callbacks (they may use the engine).
 */
async function withCountingEngine<T>(run: Run<T>): Promise<T>;
async function withCountingEngine<T>(setup: Setup, run: Run<T>): Promise<T>;
async function withCountingEngine<T>(setup: Setup, ops: OpsOf, run: Run<T>): Promise<T>;
async function withCountingEngine<T>(...args: [Run<T>] | [Setup, Run<T>] | [Setup, OpsOf, Run<T>]): Promise<T> {
  const run = args[args.length - 1] as Run<T>;
  const { closeRejects, ...options } = args.length > 1 ? (args[0] as Setup) : {};
  const ops = args.length > 2 ? (args[1] as OpsOf) : () => ({});
  let opened: Opened | undefined;
  const h = countingHandler('test_sync_handler', ops(() => opened!));
  const logs: string[] = [];
  const engineOptions = { dataDir: await tempDir(), preload: [h.extension], onLog: (l: string) => logs.push(l), ...options };
  return withEngine(engineOptions, (engine) => run((opened = { engine, h, logs })), { closeRejects });
}

const segs = (tags: FileTag[]): number[] => tags.map((t) => t.segno).sort((x, y) => x - y);

// ---------------------------------------------------------------------------------------------

describe('pending ops: requests arriving during the sync phase', () => {
  it('behaviour 9: a SYNC absorbed mid-run for a new or a canceled tag waits for the next checkpoint', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    const X = testTag(t.a, 2);
    const C = testTag(t.a, 3);
    t.remember(A);
    t.remember(X);
    t.remember(X, FORGET);
    t.onSync = (tag) => {
      if (tag.segno !== 1) return;
      t.remember(C); // no entry yet
      t.remember(X); // canceled entry: revived with the new cycle
    };
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(A));
    expect(t.pending.pendingCount).toBe(2);
    t.onSync = undefined;
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(X, C));
    expect(t.pending.pendingCount).toBe(0);
  });

  it('behaviour 9 (Engine): a request registered from inside a sync callback is synced by the next checkpoint', async () => {
    await withCountingEngine({}, (o) => ({
      async syncFileTag(tag) {
        o().h.syncCalls.push(tag);
        if (tag.segno === 1) await o().engine.registerSyncRequest(testTag(o().h.id, 2), SYNC);
      },
    }), async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      expect((await engine.checkpoint()).syncFiles).toBe(1);
      expect(segs(h.syncCalls)).toEqual([1]);
      expect((await engine.checkpoint()).syncFiles).toBe(1);
      expect(segs(h.syncCalls)).toEqual([1, 2]);
    });
  });

  it('behaviour 10: a SYNC absorbed mid-run for an entry still waiting in the run merges into its one sync', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    const B = testTag(t.a, 2);
    t.remember(A);
    t.remember(B);
    t.onSync = (tag) => {
      if (tag.segno === 1) for (let i = 0; i < 5; i++) t.remember(B);
    };
    const s = await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(A, B));
    expect(s.syncFiles).toBe(2);
    expect(t.pending.pendingCount).toBe(0);
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual([]);
  });

  it('behaviour 11: re-requesting an un-canceled entry never resets its cycle (the oldest request wins)', async () => {
    const t = new Harness();
    const Z = testTag(t.a, 1);
    const A = testTag(t.a, 2);
    const N = testTag(t.a, 3);
    t.remember(Z);
    t.remember(A);
    const cycleBefore = t.pending.syncCycle;
    expect(t.pending.snapshot().find((e) => e.tag.segno === 2)!.cycle).toBe(cycleBefore);
    let seen: ReturnType<PendingOps['snapshot']> = [];
    t.onSync = (tag) => {
      if (tag.segno !== 1) return;
      for (let i = 0; i < 10; i++) t.remember(A);
      t.remember(N);
      seen = t.pending.snapshot();
    };
    await t.checkpoint();
    const cycleDuring = t.pending.syncCycle;
    expect(cycleDuring).toBe(cycleBefore + 1);
    expect(seen.find((e) => e.tag.segno === 2)!.cycle).toBe(cycleBefore); // A kept its old cycle
    expect(seen.find((e) => e.tag.segno === 3)!.cycle).toBe(cycleDuring); // N is new
    expect(t.takeSyncs()).toEqual(names(Z, A)); // so A was synced in that run
    expect(t.pending.snapshot().map((e) => e.tag.segno)).toEqual([3]);
  });
});

describe('pending ops: FORGET and FILTER', () => {
  it('behaviour 12: FORGET before the checkpoint: no sync, the entry is gone after it, and stays gone', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    const B = testTag(t.a, 2);
    t.forward(A);
    t.forward(B);
    t.forward(A, FORGET);
    const s = await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(B));
    expect(s.syncFiles).toBe(1);
    expect(s.tagsDispatched).toEqual({ a: 1 }); // the canceled entry was never dispatched
    expect(t.pending.pendingCount).toBe(0);
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual([]);
  });

  it('behaviour 12 (Engine): a forgotten tag is never synced', async () => {
    await withCountingEngine(async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 2), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 1), FORGET);
      expect((await engine.checkpoint()).syncFiles).toBe(1);
      expect((await engine.checkpoint()).syncFiles).toBe(0);
      expect(segs(h.syncCalls)).toEqual([2]);
    });
  });

  it('behaviour 13: FORGET then SYNC revives the entry with the current cycle; it syncs once', async () => {
    const t = new Harness();
    await t.checkpoint(); // move the cycle off 0 so "current" means something
    const A = testTag(t.a, 1);
    t.remember(A);
    t.remember(A, FORGET);
    expect(t.pending.snapshot()).toEqual([{ tag: A, cycle: t.pending.syncCycle, canceled: true }]);
    t.remember(A);
    expect(t.pending.snapshot()).toEqual([{ tag: A, cycle: t.pending.syncCycle, canceled: false }]);
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(A));
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual([]);
  });

  it('behaviour 13 (Engine): SYNC, FORGET, SYNC gives one sync', async () => {
    await withCountingEngine(async ({ engine, h }) => {
      const A = testTag(h.id, 7);
      await engine.registerSyncRequest(A, SYNC);
      await engine.registerSyncRequest(A, FORGET);
      await engine.registerSyncRequest(A, SYNC);
      await engine.checkpoint();
      await engine.checkpoint();
      expect(segs(h.syncCalls)).toEqual([7]);
    });
  });

  it('behaviour 14: FORGET for an unknown tag is a no-op and creates no entry (and never touches unlinks)', async () => {
    const t = new Harness();
    const U = testTag(t.a, 9);
    t.remember(testTag(t.a, 1), FORGET);
    expect(t.pending.pendingCount).toBe(0);
    expect(t.pending.snapshot()).toEqual([]);
    t.remember(U, UNLINK);
    t.remember(U, FORGET);
    expect(t.pending.pendingCount).toBe(0);
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual([]);
    expect(t.takeUnlinks()).toEqual(names(U));
  });

  it('behaviour 15: an md FILTER for database D cancels its syncs and tombstone unlinks in any tablespace and fork, nothing else', async () => {
    const t = new Harness();
    const md = (db: number, spc: number, rel: number, fork: number, segno: number): FileTag => ({ handler: SyncHandlerId.MD, forkNum: fork, rlocator: { spcOid: spc, dbOid: db, relNumber: rel }, segno });
    const D = 5;
    const inD = [md(D, 1663, 100, 0, 0), md(D, 1700, 101, 1, 1), md(D, 1663, 102, 2, 2), md(D, 1664, 103, 3, 3)];
    const otherDb = md(6, 1663, 100, 0, 4);
    const clogInD: FileTag = { handler: SyncHandlerId.CLOG, forkNum: 0, rlocator: { spcOid: 0, dbOid: D, relNumber: 0 }, segno: 5 };
    const extInD = testTag(t.a, 6, D);
    for (const tag of [...inD, otherDb, clogInD, extInD]) t.remember(tag);
    const tombInD = [md(D, 1663, 200, 0, 0), md(D, 1700, 201, 0, 0)];
    const tombOther = md(6, 1663, 202, 0, 0);
    const extUnlinkInD = testTag(t.a, 7, D);
    for (const tag of [...tombInD, tombOther, extUnlinkInD]) t.remember(tag, UNLINK);

    // ForgetDatabaseSyncRequests' tag: spcOid 0, relNumber 0, InvalidForkNumber, InvalidBlockNumber.
    t.forward({ handler: SyncHandlerId.MD, forkNum: -1, rlocator: { spcOid: 0, dbOid: D, relNumber: 0 }, segno: 0xffff_ffff }, FILTER);
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(otherDb, clogInD, extInD));
    expect(t.unlinks.sort()).toEqual(names(tombOther, extUnlinkInD));
    expect(t.pending.pendingCount).toBe(0);
    expect(t.pending.pendingUnlinkCount).toBe(0);
  });

  it('behaviour 16: FILTER cancels only entries of its own handler, and asks the matcher only about those', async () => {
    const yes = (calls: FileTag[][]) => ({
      fileTagMatches(filter: FileTag, candidate: FileTag) {
        calls.push([filter, candidate]);
        return true; // would match anything
      },
    });
    const aCalls: FileTag[][] = [];
    const bCalls: FileTag[][] = [];
    const a = countingHandler('a', yes(aCalls));
    const b = countingHandler('b', yes(bCalls));
    await withEngine({ dataDir: await tempDir(), preload: [a.extension, b.extension] }, async (engine) => {
      for (let seg = 1; seg <= 3; seg++) {
        await engine.registerSyncRequest(testTag(a.id, seg), SYNC);
        await engine.registerSyncRequest(testTag(b.id, seg), SYNC);
      }
      await engine.registerSyncRequest(testTag(a.id, 10), UNLINK);
      await engine.registerSyncRequest(testTag(b.id, 10), UNLINK);
      await engine.registerSyncRequest(testTag(a.id, 0, 12345), FILTER);
      const s = await engine.checkpoint();
      expect(a.syncCalls).toEqual([]);
      expect(a.unlinkCalls).toEqual([]);
      expect(segs(b.syncCalls)).toEqual([1, 2, 3]);
      expect(segs(b.unlinkCalls)).toEqual([10]);
      expect(s.tagsDispatched).toEqual({ b: 3 });
      expect(aCalls.length).toBe(4); // three syncs and one unlink of handler a
      expect(aCalls.every(([f, c]) => f!.handler === a.id && c!.handler === a.id)).toBe(true);
      expect(bCalls).toEqual([]);
    });
  });

  it('a FILTER for a handler without fileTagMatches cancels nothing', async () => {
    const t = new Harness();
    const clog = (segno: number): FileTag => ({ handler: SyncHandlerId.CLOG, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno });
    t.remember(clog(1));
    t.remember(clog(1), FILTER);
    await t.checkpoint();
    expect(t.takeSyncs()).toEqual(names(clog(1)));
  });
});

describe('pending ops: fsync off', () => {
  it('behaviour 17: with fsync off a checkpoint calls no sync callback, reports 0 files, and empties the table', async () => {
    const t = new Harness();
    for (let seg = 1; seg <= 25; seg++) t.forward(testTag(t.a, seg));
    const absorbsBefore = t.absorbs;
    t.pending.preCheckpoint(t.absorb);
    const s = await t.sync(false);
    expect(t.absorbs - absorbsBefore).toBe(2); // pre-checkpoint and the sync phase's start; none per 10 entries
    expect(t.attempts).toEqual([]);
    expect(s).toEqual({ syncFiles: 0, longestSyncUs: 0, totalSyncUs: 0, tagsDispatched: {} });
    expect(t.pending.pendingCount).toBe(0);
    // Turning fsync back on does not bring them back.
    await t.checkpoint(true);
    expect(t.attempts).toEqual([]);
  });

  it('behaviour 17 (Engine option fsync: false): no sync callback, syncFiles 0, entries consumed; unlinks still run', async () => {
    await withCountingEngine({ fsync: false }, async ({ engine, h }) => {
      for (let seg = 1; seg <= 5; seg++) await engine.registerSyncRequest(testTag(h.id, seg), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 9), UNLINK);
      const s = await engine.checkpoint();
      expect(h.syncCalls).toEqual([]);
      expect(s.syncFiles).toBe(0);
      expect(s.tagsDispatched).toEqual({});
      expect(s.averageSyncMs).toBe(0);
      expect(segs(h.unlinkCalls)).toEqual([9]);
      const s2 = await engine.checkpoint();
      expect(s2.syncFiles).toBe(0);
      expect(h.syncCalls).toEqual([]);
    });
  });
});

describe('pending ops: sync failures', () => {
  it('behaviour 18: ENOENT with a FORGET in the queue: one absorb, entry canceled, no error, removed, not counted', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    const B = testTag(t.a, 2);
    t.remember(A);
    t.remember(B);
    t.onSync = (tag) => {
      if (tag.segno !== 1) return;
      t.forward(A, FORGET); // the file was dropped and its FORGET queued, not yet absorbed
      throw enoent(tag);
    };
    const before = t.absorbs;
    const s = await t.sync();
    expect(t.absorbs - before).toBe(2); // the phase's start, and one after the ENOENT
    expect(t.attempts).toEqual(names(A, B));
    expect(t.takeSyncs()).toEqual(names(B));
    expect(s.syncFiles).toBe(1);
    expect(t.pending.pendingCount).toBe(0);
    expect(t.lines.length).toBe(1); // no "checkpoint sync:" line for the canceled one
  });

  it('behaviour 18: a FORGET then SYNC in the queue ends the failed entry and keeps the new one for the next run', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    t.remember(A);
    t.onSync = (tag) => {
      t.onSync = undefined;
      t.forward(A, FORGET);
      t.forward(A, SYNC); // dropped and recreated
      throw enoent(tag);
    };
    await t.sync();
    expect(t.attempts).toEqual(names(A));
    expect(t.pending.snapshot()).toEqual([{ tag: A, cycle: t.pending.syncCycle, canceled: false }]);
    await t.sync();
    expect(t.takeSyncs()).toEqual(names(A));
  });

  it('behaviour 18 (Engine): a sync callback that FORGETs its own tag and fails with ENOENT does not fail the checkpoint', async () => {
    await withCountingEngine({}, (o) => ({
      async syncFileTag(tag) {
        if (tag.segno === 1) {
          await o().engine.registerSyncRequest(tag, FORGET);
          throw enoent(tag);
        }
        o().h.syncCalls.push(tag);
      },
    }), async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 2), SYNC);
      const s = await engine.checkpoint();
      expect(s.syncFiles).toBe(1);
      expect(engine.failed).toBe(false);
      expect((await engine.checkpoint()).syncFiles).toBe(0);
    });
  });

  it('behaviour 19: ENOENT twice for an un-canceled entry is a sync failure after exactly two attempts', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    t.remember(A);
    t.onSync = (tag) => {
      throw enoent(tag);
    };
    const before = t.absorbs;
    const err = await t.sync().catch((e: unknown) => e);
    expect(isLamstoreError(err, 'IO_ERROR')).toBe(true);
    expect(err).toMatchObject({ errno: 'ENOENT' });
    expect((err as Error).message).toContain('a:1');
    expect((err as Error).cause).toBeInstanceOf(Error);
    expect(t.attempts).toEqual(names(A, A));
    expect(t.absorbs - before).toBe(2);
    expect(t.pending.pendingCount).toBe(1); // left for the next run
  });

  it('behaviour 19 (Engine): ENOENT twice fails the engine; with dataSyncRetry only the checkpoint fails', async () => {
    // No shutdown checkpoint in the failed state, and close says so.
    await withCountingEngine({ closeRejects: ErrorCode.ENGINE_FAILED }, async ({ engine, h, logs }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      h.failNext.push('ENOENT', 'ENOENT');
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'ENOENT' });
      expect(h.failNext).toEqual([]); // exactly two attempts
      expect(engine.failed).toBe(true);
      expect(engine.failure).toMatchObject({ code: 'ENGINE_FAILED' });
      expect(logs.some((l) => l.startsWith('PANIC:'))).toBe(true);
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    });
    await withCountingEngine({ dataSyncRetry: true }, async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      h.failNext.push('ENOENT', 'ENOENT');
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'ENOENT' });
      expect(engine.failed).toBe(false);
      const s = await engine.checkpoint(); // the entry is still there and now succeeds
      expect(s.syncFiles).toBe(1);
      expect(segs(h.syncCalls)).toEqual([1]);
    });
  });

  it('behaviour 20: any other error fails on the first attempt, without retry or absorb', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    t.remember(A);
    t.onSync = (tag) => {
      throw eio(tag);
    };
    const before = t.absorbs;
    await expect(t.sync()).rejects.toMatchObject({ code: 'IO_ERROR', errno: 'EIO' });
    expect(t.attempts).toEqual(names(A));
    expect(t.absorbs - before).toBe(1);
  });

  it('behaviour 20 (Engine): EIO puts the engine in the failed state: failed is true and checkpoint() rejects with ENGINE_FAILED', async () => {
    const dataDir = await withCountingEngine({ closeRejects: ErrorCode.ENGINE_FAILED }, async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      h.failNext.push('EIO');
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'IO_ERROR', errno: 'EIO' });
      expect(h.failNext).toEqual([]);
      expect(engine.failed).toBe(true);
      expect(engine.failure?.cause).toMatchObject({ code: 'IO_ERROR' });
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
      return engine.dataDir;
    });
    // Reopening starts afresh.
    await withEngine({ dataDir }, async (again) => {
      expect(again.failed).toBe(false);
      await again.checkpoint();
    });
  });

  it('behaviour 21: after a failed sync phase, the next one syncs every leftover entry, including ones created during the failed run', async () => {
    const t = new Harness();
    const tags = [1, 2, 3, 4, 5].map((s) => testTag(t.a, s));
    const F = testTag(t.a, 6);
    for (const tag of tags) t.remember(tag);
    t.onSync = (tag) => {
      if (tag.segno === 2) t.remember(F); // created during the run: carries the new cycle
      if (tag.segno === 3) throw eio(tag);
    };
    await expect(t.sync()).rejects.toMatchObject({ errno: 'EIO' });
    expect(t.takeSyncs()).toEqual(names(tags[0]!, tags[1]!));
    expect(t.pending.pendingCount).toBe(4);
    t.onSync = undefined;
    await t.sync();
    expect(t.takeSyncs()).toEqual(names(tags[2]!, tags[3]!, tags[4]!, F));
    expect(t.pending.pendingCount).toBe(0);
  });

  it('behaviour 21: more consecutive failed runs than the uint16 cycle counter holds still skip nothing', async () => {
    const t = new Harness();
    const A = testTag(t.a, 1);
    t.remember(A);
    t.onSync = (tag) => {
      throw eio(tag);
    };
    const runs = 0x1_0000 + 3;
    let failures = 0;
    for (let i = 0; i < runs; i++) {
      if (i === runs - 2) t.remember(testTag(t.a, 2)); // new during the failures
      await t.pending.processSyncRequests({ absorb: () => {}, enableFsync: true, clock: t.clock }).catch(() => failures++);
    }
    expect(failures).toBe(runs);
    expect(t.pending.syncCycle).toBe(3); // wrapped
    t.onSync = undefined;
    await t.sync();
    expect(t.takeSyncs()).toEqual(names(A, testTag(t.a, 2)));
  });

  it('behaviour 21 (Engine option dataSyncRetry: true): the failed checkpoint leaves entries for the next one', async () => {
    await withCountingEngine({ dataSyncRetry: true }, (o) => ({
      async syncFileTag(tag) {
        if (tag.segno === 2) await o().engine.registerSyncRequest(testTag(o().h.id, 6), SYNC);
        if (tag.segno === 3 && o().h.failNext.shift()) throw eio(tag);
        o().h.syncCalls.push(tag);
      },
    }), async ({ engine, h }) => {
      for (let seg = 1; seg <= 5; seg++) await engine.registerSyncRequest(testTag(h.id, seg), SYNC);
      h.failNext.push('EIO');
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'EIO' });
      expect(engine.failed).toBe(false);
      expect(segs(h.syncCalls)).toEqual([1, 2]);
      const s = await engine.checkpoint();
      expect(s.syncFiles).toBe(4);
      expect(segs(h.syncCalls)).toEqual([1, 2, 3, 4, 5, 6]);
    });
  });
});

describe('pending ops: absorbing during long phases', () => {
  it('behaviour 22: the sync phase absorbs at every 10th eligible entry, so a FORGET queued meanwhile cancels an entry not yet visited', async () => {
    expect(FSYNCS_PER_ABSORB).toBe(10);
    const t = new Harness();
    const tags = Array.from({ length: 25 }, (_, i) => testTag(t.a, i + 1)); // visited in this order
    for (const tag of tags) t.remember(tag);
    const absorbedAt: number[] = [];
    const absorb = t.absorb;
    t.onSync = (tag) => {
      if (tag.segno !== 3) return;
      // From inside the 3rd sync: forget entries 9, 10, 12 and 22.
      for (const seg of [9, 10, 12, 22]) t.forward(testTag(t.a, seg), FORGET);
    };
    const s = await t.pending.processSyncRequests({
      absorb: () => {
        absorbedAt.push(t.attempts.length);
        absorb();
      },
      enableFsync: true,
      clock: t.clock,
    });
    // Absorbed at the start, then before the 10th and the 20th entry's sync: entry 9 was synced
    // before the FORGET became visible; 10, 12 and 22 were not.
    // Attempts made before each absorb: none; entries 1-9; then 11 and 13-19 (10 and 12 were
    // canceled but still count as eligible entries towards the next absorb, as in sync.c).
    expect(absorbedAt).toEqual([0, 9, 17]);
    const synced = t.syncs.map((n) => Number(/seg=(\d+)/.exec(n)![1])).sort((x, y) => x - y);
    expect(synced).toEqual(Array.from({ length: 25 }, (_, i) => i + 1).filter((n) => ![10, 12, 22].includes(n)));
    expect(s.syncFiles).toBe(22);
    expect(t.pending.pendingCount).toBe(0);
  });

  it('behaviour 22: post-checkpoint absorbs after every 10th unlink, so a FILTER queued meanwhile cancels a later unlink', async () => {
    expect(UNLINKS_PER_ABSORB).toBe(10);
    const t = new Harness();
    // Unlink i belongs to database 100 + i, so a FILTER can single it out.
    for (let i = 1; i <= 25; i++) t.remember(testTag(t.a, i, 100 + i), UNLINK);
    let unlinkCalls = 0;
    t.onUnlink = () => {
      unlinkCalls++;
      if (unlinkCalls === 3) for (const i of [10, 11, 15]) t.forward(testTag(t.a, 0, 100 + i), FILTER);
    };
    t.pending.preCheckpoint(t.absorb);
    await t.sync();
    const before = t.absorbs;
    const unlinked = await t.post();
    expect(t.absorbs - before).toBe(2); // after the 10th and the 20th unlink
    const done = t.unlinks.map((n) => Number(/seg=(\d+)/.exec(n)![1])).sort((x, y) => x - y);
    expect(done).toEqual(Array.from({ length: 25 }, (_, i) => i + 1).filter((n) => n !== 11 && n !== 15));
    expect(unlinked).toBe(23);
    expect(t.pending.pendingUnlinkCount).toBe(0);
  });

  it('behaviour 22: an UNLINK absorbed during the unlink walk carries the current cycle and ends the walk there', async () => {
    const t = new Harness();
    for (let i = 1; i <= 12; i++) t.remember(testTag(t.a, i), UNLINK);
    const Z = testTag(t.a, 99);
    t.onUnlink = (tag) => {
      if (tag.segno === 1) t.forward(Z, UNLINK);
    };
    await t.checkpoint();
    expect(t.takeUnlinks().length).toBe(12);
    expect(t.pending.pendingUnlinkCount).toBe(1);
    t.onUnlink = undefined;
    await t.checkpoint();
    expect(t.takeUnlinks()).toEqual(names(Z));
    expect(t.pending.pendingUnlinkCount).toBe(0);
  });
});

describe('pending ops: handlers that sync several tags in one call (P6)', () => {
  /** Handler "a" with syncFileTags: each call's segnos are recorded; `fail` may fail tag segno. */
  function batched(t: Harness, fail?: (tag: FileTag) => Error | undefined): number[][] {
    const calls: number[][] = [];
    const ops = t.registry.ops(t.a);
    ops.syncFileTags = async (tags) => {
      calls.push(tags.map((tag) => tag.segno));
      const us: number[] = [];
      for (const tag of tags) {
        t.attempts.push(describeTag(tag));
        await t.onSync?.(tag);
        const error = fail?.(tag);
        if (error) return { done: us.length, error, us };
        t.syncs.push(describeTag(tag));
        us.push(1000);
      }
      return { done: us.length, us };
    };
    return calls;
  }
  const syncedSegs = (t: Harness): number[] => t.syncs.map((n) => Number(/seg=(\d+)/.exec(n)![1])).sort((x, y) => x - y);

  it('behaviour 22 holds: one call per stretch between absorb points, and a FORGET queued meanwhile cancels an entry not yet visited', async () => {
    const t = new Harness();
    const calls = batched(t);
    for (let i = 1; i <= 25; i++) t.remember(testTag(t.a, i));
    t.onSync = (tag) => {
      if (tag.segno === 3) for (const seg of [9, 10, 12, 22]) t.forward(testTag(t.a, seg), FORGET);
    };
    const s = await t.sync();
    // As the one-call-per-entry loop: 9 was synced before the FORGET became visible; 10, 12, 22 never.
    expect(calls).toEqual([[1, 2, 3, 4, 5, 6, 7, 8, 9], [11, 13, 14, 15, 16, 17, 18, 19], [20, 21, 23, 24, 25]]);
    expect(t.absorbs).toBe(3);
    expect(syncedSegs(t)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1).filter((n) => ![10, 12, 22].includes(n)));
    expect(s).toMatchObject({ syncFiles: 22, tagsDispatched: { a: 22 }, totalSyncUs: 22_000, longestSyncUs: 1000 });
    expect(t.pending.pendingCount).toBe(0);
  });

  it('an ENOENT in a call is absorbed and retried alone; the entries after it are looked at again (a FORGET then cancels them)', async () => {
    const t = new Harness();
    let enoents = 0;
    const calls = batched(t, (tag) => {
      if (tag.segno !== 4 || enoents > 0) return undefined;
      enoents++;
      t.forward(testTag(t.a, 4), FORGET);
      t.forward(testTag(t.a, 6), FORGET);
      return enoent(tag);
    });
    for (let i = 1; i <= 8; i++) t.remember(testTag(t.a, i));
    const s = await t.sync();
    // 4 failed, its FORGET absorbed, so not retried; 6 was never started and is canceled too.
    expect(calls).toEqual([[1, 2, 3, 4, 5, 6, 7, 8], [5, 7, 8]]);
    expect(syncedSegs(t)).toEqual([1, 2, 3, 5, 7, 8]);
    expect(s.syncFiles).toBe(6);
    expect(t.pending.pendingCount).toBe(0);
  });

  it('an ENOENT of an entry still wanted is retried with syncFileTag, once', async () => {
    const t = new Harness();
    const calls = batched(t, (tag) => (tag.segno === 2 && !t.attempts.slice(0, -1).includes(describeTag(tag)) ? enoent(tag) : undefined));
    for (let i = 1; i <= 3; i++) t.remember(testTag(t.a, i));
    const s = await t.sync();
    expect(calls).toEqual([[1, 2, 3], [3]]);
    expect(syncedSegs(t)).toEqual([1, 2, 3]); // 2 by the retry (syncFileTag), 3 by the second call
    expect(s.syncFiles).toBe(3);
  });

  it('any other failure: no call after it, the successes before it are counted and removed, the rest stay for the next phase', async () => {
    const t = new Harness();
    const calls = batched(t, (tag) => (tag.segno === 5 ? eio(tag) : undefined));
    for (let i = 1; i <= 25; i++) t.remember(testTag(t.a, i));
    const err = await t.sync().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.IO_ERROR });
    expect(calls).toEqual([[1, 2, 3, 4, 5, 6, 7, 8, 9]]);
    expect(syncedSegs(t)).toEqual([1, 2, 3, 4]);
    expect(t.pending.pendingCount).toBe(21);
  });

  it('a call that rejects outright leaves every entry of it unsynced', async () => {
    const t = new Harness();
    t.registry.ops(t.a).syncFileTags = () => Promise.reject(Object.assign(new Error('EIO: thread died'), { code: 'EIO' }));
    for (let i = 1; i <= 3; i++) t.remember(testTag(t.a, i));
    await expect(t.sync()).rejects.toMatchObject({ code: ErrorCode.IO_ERROR });
    expect(t.pending.pendingCount).toBe(3);
  });

  it('(Engine, real files) md gets its tags 10 at a time, one fsync each, and a FORGET queued meanwhile still cancels a later tag', async () => {
    // No sync ledger: the FORGET below cancels a written file's sync without dropping it, which
    // the ledger rightly reports; here it only marks where the absorb points fall.
    await withEngine({ dataDir: await tempDir(), relSegBlocks: 8, verifySync: false }, async (engine) => {
      const md = engine.storageManager('md') as MdStorageManager;
      const calls: number[][] = [];
      const syncSegments = md.syncSegments.bind(md);
      // Dropping relation 16400's tag from inside the first call: its FORGET sits in the queue
      // until the next absorb point, so it cancels the tag before the second call (behaviour 22).
      md.syncSegments = async (tags) => {
        calls.push(tags.map((t) => t.rlocator.relNumber));
        if (calls.length === 1) await engine.registerSyncRequest({ handler: SyncHandlerId.MD, forkNum: 0, rlocator: { spcOid: 1663, dbOid: 5, relNumber: 16400 }, segno: 0 }, FORGET);
        return syncSegments(tags);
      };
      for (let r = 0; r < 25; r++) {
        const rel = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 16384 + r });
        await rel.create(0);
        await rel.extend(0, new Uint8Array(engine.blockSize).fill(r + 1));
      }
      const before = engine.ioCounts().fsync;
      const st = await engine.checkpoint();
      // At most one absorb interval a call (the SLRUs' own entries share the table, so where the
      // intervals fall among md's tags varies); far fewer calls than tags.
      expect(calls.length).toBeLessThanOrEqual(4);
      for (const c of calls) expect(c.length).toBeLessThanOrEqual(FSYNCS_PER_ABSORB);
      expect(calls.flat()).toHaveLength(24);
      expect(calls.flat()).not.toContain(16400);
      expect(st.syncFiles).toBe(24);
      // 24 segments and the control file: the batches make exactly the fsyncs the loop made.
      expect(engine.ioCounts().fsync - before).toBe(24 + 1);
    });
  });

  it('(Engine, real files) with syncConcurrency 4 md fsyncs through the libuv pool, not the one sync thread: the fsyncs run side by side', async () => {
    // No hints (checkpointFlushAfter 0): the sync thread would carry those too.
    await withEngine({ dataDir: await tempDir(), verifySync: false, syncConcurrency: 4, checkpointFlushAfter: 0 }, async (engine) => {
      for (let r = 0; r < 12; r++) {
        const rel = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 16384 + r });
        await rel.create(0);
        await rel.extend(0, new Uint8Array(engine.blockSize).fill(r + 1));
      }
      const messages = syncThreadMessages;
      const before = engine.ioCounts().fsync;
      const st = await engine.checkpoint();
      expect(st.syncFiles).toBe(12);
      expect(engine.ioCounts().fsync - before).toBe(12 + 1); // and the control file
      expect(syncThreadMessages - messages).toBe(0);
    });
  });

  it('with concurrency > 1 each entry has its own syncFileTag call, as before', async () => {
    const t = new Harness();
    const calls = batched(t);
    for (let i = 1; i <= 5; i++) t.remember(testTag(t.a, i));
    const s = await t.pending.processSyncRequests({ absorb: t.absorb, enableFsync: true, clock: t.clock, concurrency: 4 });
    expect(calls).toEqual([]);
    expect(s.syncFiles).toBe(5);
  });
});

describe('pending ops: statistics and log lines', () => {
  it('behaviour 23: syncFiles counts successful syncs; longest and average are rounded up to whole ms; average 0 with no files', async () => {
    // Start the clock off a whole number so that ms differences carry floating-point noise.
    const clock = new ManualClock(1.03); // (1.03 + 1) - 1.03 is 1.0000000000000002
    const durationsMs: Record<number, number> = { 1: 1, 2: 2.5, 3: 0.25, 4: 0 };
    await withCountingEngine({ clock }, (o) => ({
      syncFileTag(tag) {
        void clock.advance(durationsMs[tag.segno] ?? 0);
        if (tag.segno === 5) throw eio(tag); // never reached below: only with failNext
        o().h.syncCalls.push(tag);
      },
    }), async ({ engine, h }) => {
      const empty = await engine.checkpoint();
      expect(empty).toMatchObject({ syncFiles: 0, longestSyncMs: 0, averageSyncMs: 0 });

      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      const one = await engine.checkpoint();
      expect(one).toMatchObject({ syncFiles: 1, longestSyncMs: 1, averageSyncMs: 1 }); // exactly 1000 µs, not 1001

      for (const seg of [1, 2, 3, 4]) await engine.registerSyncRequest(testTag(h.id, seg), SYNC);
      const four = await engine.checkpoint();
      // 1000 + 2500 + 250 + 0 µs: longest 2500 -> 3 ms; average 937.5 -> 1 ms.
      expect(four).toMatchObject({ syncFiles: 4, longestSyncMs: 3, averageSyncMs: 1 });

      // A canceled entry is not a synced file.
      await engine.registerSyncRequest(testTag(h.id, 2), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 2), FORGET);
      expect(await engine.checkpoint()).toMatchObject({ syncFiles: 0, longestSyncMs: 0, averageSyncMs: 0 });
    });
  });

  it('behaviour 45: onLog gets one "checkpoint sync:" line per successful sync, numbered, naming the file and its time', async () => {
    const clock = new ManualClock();
    // The last sync fails the engine (dataSyncRetry is off), so its close rejects.
    await withCountingEngine({ clock, closeRejects: ErrorCode.ENGINE_FAILED }, (o) => ({
      syncFileTag(tag) {
        void clock.advance(tag.segno);
        if (o().h.failNext.shift()) throw enoent(tag);
        o().h.syncCalls.push(tag);
      },
    }), async ({ engine, h, logs }) => {
      for (const seg of [1, 2, 3]) await engine.registerSyncRequest(testTag(h.id, seg), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 4), SYNC);
      await engine.registerSyncRequest(testTag(h.id, 4), FORGET);
      logs.length = 0;
      await engine.checkpoint();
      const lines = logs.filter((l) => l.startsWith('checkpoint sync:'));
      expect(lines).toEqual([
        'checkpoint sync: number=1 file=test_sync_handler:seg1 time=1.000 ms',
        'checkpoint sync: number=2 file=test_sync_handler:seg2 time=2.000 ms',
        'checkpoint sync: number=3 file=test_sync_handler:seg3 time=3.000 ms',
      ]);
      // A failed sync logs no such line (dataSyncRetry is off: the engine fails).
      logs.length = 0;
      await engine.registerSyncRequest(testTag(h.id, 5), SYNC);
      h.failNext.push('ENOENT', 'ENOENT');
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'ENOENT' });
      expect(logs.filter((l) => l.startsWith('checkpoint sync:'))).toEqual([]);
    });
  });

  it('behaviour 45: the PendingOps line counts only successful syncs', async () => {
    const t = new Harness();
    t.remember(testTag(t.a, 1));
    t.remember(testTag(t.a, 2));
    t.remember(testTag(t.b, 3));
    t.remember(testTag(t.a, 2), FORGET);
    t.onSync = () => void t.clock.advance(0.0015);
    await t.sync();
    expect(t.lines).toEqual(['checkpoint sync: number=1 file=a:1 time=0.002 ms', 'checkpoint sync: number=2 file=b:3 time=0.002 ms']);
  });
});

describe('pending ops: unlinks after the checkpoint', () => {
  it('behaviour 24: an UNLINK absorbed before pre-checkpoint runs at the end of that checkpoint; one absorbed after waits for the next', async () => {
    await withCountingEngine({}, (o) => ({
      async syncFileTag(tag) {
        o().h.syncCalls.push(tag);
        // Absorbed during this checkpoint, after its pre-checkpoint step.
        if (tag.segno === 1) await o().engine.registerSyncRequest(testTag(o().h.id, 21), UNLINK);
      },
    }), async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 20), UNLINK);
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      const s1 = await engine.checkpoint();
      expect(segs(h.unlinkCalls)).toEqual([20]);
      expect(s1.unlinks).toBe(1);
      const s2 = await engine.checkpoint();
      expect(segs(h.unlinkCalls)).toEqual([20, 21]);
      expect(s2.unlinks).toBe(1);
    });
  });

  it('behaviour 24: at the PendingOps level, the cycle boundary is the pre-checkpoint absorb', async () => {
    const t = new Harness();
    const before = testTag(t.a, 1);
    const after = testTag(t.a, 2);
    t.forward(before, UNLINK);
    t.pending.preCheckpoint(t.absorb);
    t.forward(after, UNLINK); // absorbed at the sync phase's start, after pre-checkpoint
    await t.sync();
    await t.post();
    expect(t.takeUnlinks()).toEqual(names(before));
    await t.checkpoint();
    expect(t.takeUnlinks()).toEqual(names(after));
  });

  it('behaviour 25: unlinks forwarded just before a checkpoint are absorbed by its pre-checkpoint step and done by it', async () => {
    await withCountingEngine(async ({ engine, h }) => {
      for (const seg of [31, 32, 33]) await engine.registerSyncRequest(testTag(h.id, seg), UNLINK);
      const s = await engine.checkpoint();
      expect(segs(h.unlinkCalls)).toEqual([31, 32, 33]);
      expect(s.unlinks).toBe(3);
    });
  });

  it('behaviour 26: a failed checkpoint performs no unlinks; they run at the next completed one', async () => {
    await withCountingEngine({ dataSyncRetry: true }, async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 40), UNLINK);
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      h.failNext.push('EIO');
      await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'EIO' });
      expect(h.unlinkCalls).toEqual([]);
      const s = await engine.checkpoint();
      expect(segs(h.unlinkCalls)).toEqual([40]);
      expect(s.unlinks).toBe(1);
    });
  });

  it('behaviour 27: an unlink failing with ENOENT is silent, another error is a warning; both are consumed, never retried', async () => {
    const attempts: number[] = [];
    await withCountingEngine({}, () => ({
      unlinkFileTag(tag) {
        attempts.push(tag.segno);
        if (tag.segno === 1) throw enoent(tag);
        if (tag.segno === 2) throw eio(tag);
      },
    }), async ({ engine, h, logs }) => {
      for (const seg of [1, 2, 3]) await engine.registerSyncRequest(testTag(h.id, seg), UNLINK);
      const s = await engine.checkpoint();
      expect(attempts).toEqual([1, 2, 3]);
      expect(s.unlinks).toBe(1); // only the one that succeeded
      const warnings = logs.filter((l) => l.includes('could not remove file'));
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toContain('test_sync_handler:seg2');
      expect(warnings[0]).toContain('EIO');
      expect(engine.failed).toBe(false);
      await engine.checkpoint();
      expect(attempts).toEqual([1, 2, 3]);
    });
  });

  it('behaviour 28: identical UNLINK requests are not merged: two requests, two unlink calls (the second ENOENT, silent)', async () => {
    const gone = new Set<number>();
    const calls: number[] = [];
    await withCountingEngine({}, () => ({
      unlinkFileTag(tag) {
        calls.push(tag.segno);
        if (gone.has(tag.segno)) throw enoent(tag);
        gone.add(tag.segno);
      },
    }), async ({ engine, h, logs }) => {
      await engine.registerSyncRequest(testTag(h.id, 50), UNLINK);
      await engine.registerSyncRequest(testTag(h.id, 50), UNLINK);
      const s = await engine.checkpoint();
      expect(calls).toEqual([50, 50]);
      expect(s.unlinks).toBe(1);
      expect(logs.filter((l) => l.includes('could not remove file'))).toEqual([]);
    });
  });
});

describe('pending ops: requests of the checkpointer itself', () => {
  it('behaviour 30: requests registered by the checkpointer (inside a checkpoint) bypass the queue and resolve true at once', async () => {
    const clock = new ManualClock();
    const results: boolean[] = [];
    await withCountingEngine({ clock, syncQueueSize: 2 }, (o) => ({
      async syncFileTag(tag) {
        o().h.syncCalls.push(tag);
        if (tag.segno !== 1) return;
        // Ten identical and ten distinct: through a 2-slot queue these would force compactions.
        for (let i = 0; i < 10; i++) results.push(await o().engine.registerSyncRequest(testTag(o().h.id, 100), SYNC));
        for (let i = 0; i < 10; i++) results.push(await o().engine.registerSyncRequest(testTag(o().h.id, 200 + i), SYNC));
        expect(clock.sleeping).toBe(1); // only the checkpoint timer sleeps; no request waited
      },
    }), async ({ engine, h }) => {
      await engine.registerSyncRequest(testTag(h.id, 1), SYNC);
      const s1 = await engine.checkpoint();
      expect(results).toEqual(new Array(20).fill(true));
      expect(s1.queueCompactions).toBe(0); // the queue never saw them
      expect(s1.syncFiles).toBe(1);
      const s2 = await engine.checkpoint();
      expect(s2.syncFiles).toBe(11);

      // The contrast: the same identical requests from outside a checkpoint go through the queue.
      for (let i = 0; i < 10; i++) await engine.registerSyncRequest(testTag(h.id, 300), SYNC);
      const s3 = await engine.checkpoint();
      expect(s3.queueCompactions).toBeGreaterThan(0);
      expect(s3.syncFiles).toBe(1);
    });
  });
});

describe('pending ops: invariants', () => {
  it('checkInvariants holds through a mixed sequence, and snapshot shows cycles and cancels', async () => {
    const t = new Harness();
    for (let round = 0; round < 5; round++) {
      for (let seg = 0; seg < 30; seg++) {
        const tag = testTag(seg % 2 ? t.a : t.b, seg % 7, 5 + (seg % 3));
        const type = ([SYNC, SYNC, SYNC, FORGET, UNLINK] as const)[(seg + round) % 5]!;
        t.forward(tag, type);
        t.pending.checkInvariants();
      }
      t.forward(testTag(t.a, 0, 6), FILTER);
      await t.checkpoint();
      expect(t.pending.pendingCount).toBe(0);
    }
  });

  it('behaviour 8 (the sync part): handler NONE (-1) is never a valid dispatch index; requests for it are refused', async () => {
    await withCountingEngine(async ({ engine }) => {
      const none: FileTag = { handler: SyncHandlerId.NONE, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno: 1 };
      for (const type of [SYNC, UNLINK, FORGET, FILTER]) await expect(engine.registerSyncRequest(none, type)).rejects.toMatchObject({ code: 'UNKNOWN_SYNC_HANDLER' });
      await expect(engine.registerSyncRequest({ ...none, handler: 99 }, SYNC)).rejects.toMatchObject({ code: 'UNKNOWN_SYNC_HANDLER' });
      expect((await engine.checkpoint()).syncFiles).toBe(0);
    });
  });

  it('an UNLINK for a handler without unlinkFileTag is refused up front and cannot break later checkpoints', async () => {
    await withCountingEngine(async ({ engine }) => {
      const clog: FileTag = { handler: SyncHandlerId.CLOG, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno: 1 };
      await expect(engine.registerSyncRequest(clog, UNLINK)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
      await engine.checkpoint();
      await engine.checkpoint();
      expect(engine.failed).toBe(false);
    });
  });

  it('an unknown request type is BAD_ARGUMENT', () => {
    const t = new Harness();
    expect(() => t.remember(testTag(t.a, 1), 7 as SyncRequestType)).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
  });
});
