/**
 * Goal: the writeback hints a checkpoint gives after its writes (behaviour 40; reference
 * sections 7 `mdwriteback` and 9 "Writeback coalescing"): with limit 32 one batch goes out after
 * every 32 written buffers and the rest at the end of BufferSync (batches of a few long runs go
 * out several at once, each hint still after the writes it covers, the hints scheduled in
 * BufferSync order whichever batch returns first); consecutive blocks of one
 * file/fork merge into one range; duplicates collapse; md splits a range at segment boundaries and
 * hints only segments it has open; nothing is hinted with fsync off or with checkpointFlushAfter 0;
 * the option is validated; a failed hint is a failed sync; a batch's writes and the hints still
 * held never open more segment files than maxOpenFiles.
 * Method: Engine on a SimDisk subclass that records every writeback hint (path, offset, length),
 * with `onCall` giving the order of writes and hints; CountingIO (engine.ioCounts()) counts them,
 * issued (`writeback`) and carried out (`writebacksIssued`, CheckpointStats.writebacksIssued).
 * Real sync_file_range calls: writeback-sync-file-range.test.ts.
 * The WritebackContext alone against a fake storage manager for the sort/merge rules, and with
 * hints held open for W5 (issues in flight while BufferSync writes on). Counts only, never timings.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, ForkNumber, RealIO, type FileHandle, type FileIO, type IoKind, type RelFileLocator, type StorageManager } from '../engine/index.js';
import { CountingIO, SimDisk } from '../engine/testing.js';
import { HINTED_BUFFERS_IN_FLIGHT, ISSUES_IN_FLIGHT, WritebackContext, issuesInFlight, type WritebackTag } from '../engine/buffer/writeback.js';
import { HINTED_BATCH_RUNS, hintedBatches, hintedBatchesInFlight } from '../engine/buffer/buffer-pool.js';
import { SyncLedgerIO } from '../engine/io/sync-ledger.js';
import { MdStorageManager } from '../engine/md/md.js';
import { tempDir } from './helpers/index.js';
import { withEngine, BS, pageOf, locator } from './helpers/engine.js';


interface Hint {
  path: string;
  offsetBlocks: number;
  lengthBlocks: number;
}

/** SimDisk that records its writeback hints in blocks (BS) and the order of writes and hints. */
class HintDisk extends SimDisk {
  readonly hints: Hint[] = [];
  readonly events: { kind: IoKind; path: string }[] = [];
  constructor() {
    super();
    this.onCall = (_i, kind, path) => {
      if (kind === 'pwrite' || kind === 'writeback') this.events.push({ kind, path });
    };
  }
  override async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    await super.writeback(h, offsetBytes, lengthBytes);
    this.hints.push({ path: h.path.replace('/data/', ''), offsetBlocks: offsetBytes / BS, lengthBlocks: lengthBytes / BS });
  }
  reset(): void {
    this.hints.length = 0;
    this.events.length = 0;
  }
}

const LOC: RelFileLocator = locator(100);

/** Create `nblocks` blocks of `fork`, checkpoint so they are clean, then dirty `dirty`. */
async function prepare(engine: Engine, loc: RelFileLocator, fork: ForkNumber, nblocks: number, dirty: readonly number[]): Promise<void> {
  const rel = engine.relation(loc);
  if (!(await rel.exists(fork))) await rel.create(fork);
  for (let b = 0; b < nblocks; b++) await rel.extend(fork, pageOf(1));
  await engine.checkpoint();
  for (const b of dirty) await rel.write(fork, b, pageOf(2));
}

describe('writeback hints through the engine (md on SimDisk)', () => {
  it('behaviour 40: with the default limit 32, one batch is issued after every 32 written buffers, the rest at the end', async () => {
    const disk = new HintDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256 }, async (engine) => {
      // Every other block: no two dirty blocks adjacent, so each buffer is its own write and its own range.
      const dirty = Array.from({ length: 70 }, (_, i) => 2 * i);
      await prepare(engine, LOC, ForkNumber.MAIN, 140, dirty);
      disk.reset();
      const before = engine.ioCounts();
      const issuesBefore = engine.bufferPool.stats.writebackIssues;
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(70);
      // The relation file's writes and hints, in issue order: 32 writes, 32 hints, 32, 32, 6, 6.
      const seq = disk.events.filter((e) => e.path === '/data/base/5/100').map((e) => e.kind);
      const runs: string[] = [];
      for (const k of seq) {
        const last = runs[runs.length - 1];
        if (last?.startsWith(k)) runs[runs.length - 1] = `${k}x${Number(last.split('x')[1]) + 1}`;
        else runs.push(`${k}x1`);
      }
      expect(runs).toEqual(['pwritex32', 'writebackx32', 'pwritex32', 'writebackx32', 'pwritex6', 'writebackx6']);
      expect(disk.hints.map((h) => h.offsetBlocks)).toEqual(dirty);
      expect(disk.hints.every((h) => h.lengthBlocks === 1)).toBe(true);
      expect(engine.ioCounts().writeback - before.writeback).toBe(70);
      expect(stats.writebacksIssued).toBe(70); // SimDisk carries every hint out
      expect(engine.bufferPool.stats.writebackIssues - issuesBefore).toBe(3);
    });
  });

  it('behaviour 40 with long runs: batches of few long runs go out two at a time, and every hint still follows the write it covers', async () => {
    const disk = new HintDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 1024 }, async (engine) => {
      // 40 relations of 16 dirty consecutive blocks: 3 batches (256 buffers of 16 runs, 256, then
      // 128 of 8 runs), two in flight (hintedBatchesInFlight(40, 3)).
      const locs = Array.from({ length: 40 }, (_, i) => locator(100 + i));
      for (const loc of locs) await prepare(engine, loc, ForkNumber.MAIN, 16, []);
      for (const loc of locs) for (let b = 0; b < 16; b++) await engine.relation(loc).write(ForkNumber.MAIN, b, pageOf(5));
      disk.reset();
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(640);
      const seq = disk.events.filter((e) => e.path.startsWith('/data/base/5/1')).map((e) => `${e.kind === 'writeback' ? 'hint' : 'write'} ${e.path.slice(-3)}`);
      expect(seq.filter((e) => e.startsWith('write'))).toEqual(locs.map((l) => `write ${l.relNumber}`));
      // The second batch's writes are asked for before the first batch's hints...
      expect(seq.indexOf('write 116')).toBeLessThan(seq.indexOf('hint 100'));
      // ...the third's only once the first has returned...
      expect(seq.indexOf('write 132')).toBeGreaterThan(seq.indexOf('hint 100'));
      // ...and each hint comes after the write it covers.
      for (const l of locs) expect(seq.indexOf(`hint ${l.relNumber}`)).toBeGreaterThan(seq.indexOf(`write ${l.relNumber}`));
      expect(disk.hints).toEqual(locs.map((l) => ({ path: `base/5/${l.relNumber}`, offsetBlocks: 0, lengthBlocks: 16 })));
      expect(engine.bufferPool.stats.writebackIssues).toBe(20); // 640 buffers, 32 to an issue
    });
  });

  it('behaviour 40: the hints are cut in BufferSync order even when a later batch\'s write returns first', async () => {
    // 300 dirty consecutive blocks: batches of 256 and 44, both in flight. The first batch's
    // write answers late, so the second returns first. Scheduled as they returned, the first
    // issue would hold 256..287, the second 288..299 and 0..19.
    class LateFirstWrite extends HintDisk {
      override async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
        if (h.path.endsWith('/100') && offsetBytes === 0 && buffers.length === 256) await new Promise((r) => setTimeout(r, 20));
        return super.pwritev(h, buffers, offsetBytes);
      }
    }
    const disk = new LateFirstWrite();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 512 }, async (engine) => {
      await prepare(engine, LOC, ForkNumber.MAIN, 300, Array.from({ length: 300 }, (_, i) => i));
      disk.reset();
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(300);
      const seq = disk.events.filter((e) => e.path === '/data/base/5/100').map((e) => e.kind);
      expect(seq).toEqual(['pwrite', 'pwrite', ...Array<string>(10).fill('writeback')]); // both batches in flight, then their hints
      expect(disk.hints).toEqual([
        ...Array.from({ length: 9 }, (_, i) => ({ path: 'base/5/100', offsetBlocks: 32 * i, lengthBlocks: 32 })),
        { path: 'base/5/100', offsetBlocks: 288, lengthBlocks: 12 },
      ]);
    });
  });

  it(`hintedBatches: cut after 256 buffers or before the run that would be a batch's ${HINTED_BATCH_RUNS + 1}st`, () => {
    const rel = (n: number) => ({ spcOid: 1663, dbOid: 5, relNumber: n });
    // 40 one-page runs, then one run of 600 pages, then 3 runs of 2.
    const tags = [
      ...Array.from({ length: 40 }, (_, i) => ({ rel: rel(100 + i), fork: ForkNumber.MAIN, block: 0 })),
      ...Array.from({ length: 600 }, (_, b) => ({ rel: rel(200), fork: ForkNumber.MAIN, block: b })),
      ...[300, 301, 302].flatMap((n) => [0, 1].map((b) => ({ rel: rel(n), fork: ForkNumber.MAIN, block: b }))),
    ];
    const order = tags.map((_, i) => i);
    const cut = hintedBatches(order, tags as never, 256);
    // 32 one-page runs; 8 more and the long run's first 248 (9 runs, 256 buffers); 256 of it;
    // its last 96 and the 3 short runs.
    expect(cut.batches.map((batch) => batch.length)).toEqual([32, 256, 256, 102]);
    expect(cut.batches.flat()).toEqual(order);
    expect(cut.runs).toBe(44); // a run cut across batches counts once
    expect(hintedBatches(order, tags as never, 32).batches.every((batch) => batch.length <= 32)).toBe(true); // a bounded BufferSync
    expect(hintedBatches([], [], 256)).toEqual({ batches: [], runs: 0 });
  });

  it(`hintedBatchesInFlight: as many batches as keep their runs to about ${HINTED_BATCH_RUNS}, 1 to BATCHES_IN_FLIGHT`, () => {
    expect(hintedBatchesInFlight(1000, 32)).toBe(1); // R=1000 P=1: 32 one-page runs a batch
    expect(hintedBatchesInFlight(70, 3)).toBe(1);
    expect(hintedBatchesInFlight(1000, 63)).toBe(2); // R=1000 P=16: 16 runs of 16 pages a batch
    expect(hintedBatchesInFlight(40, 3)).toBe(2);
    expect(hintedBatchesInFlight(1, 2)).toBe(4); // one long run: never more than BATCHES_IN_FLIGHT
    expect(hintedBatchesInFlight(0, 0)).toBe(1);
  });

  it('behaviour 40: consecutive blocks of one file and fork merge into one range; other files, forks and gaps start new ones', async () => {
    const disk = new HintDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256 }, async (engine) => {
      const other: RelFileLocator = { ...LOC, relNumber: 101 };
      await prepare(engine, LOC, ForkNumber.MAIN, 40, Array.from({ length: 32 }, (_, i) => i));
      await engine.checkpoint();
      disk.reset();
      // Exactly 32 consecutive buffers: one write, one batch, one range.
      for (let b = 0; b < 32; b++) await engine.relation(LOC).write(ForkNumber.MAIN, b, pageOf(3));
      await engine.checkpoint();
      expect(disk.hints).toEqual([{ path: 'base/5/100', offsetBlocks: 0, lengthBlocks: 32 }]);

      await prepare(engine, LOC, ForkNumber.FSM, 8, []);
      await prepare(engine, other, ForkNumber.MAIN, 12, []);
      disk.reset();
      const dirty: [RelFileLocator, ForkNumber, number][] = [
        ...[0, 1, 2, 3, 4, 6, 7, 8, 9].map((b): [RelFileLocator, ForkNumber, number] => [LOC, ForkNumber.MAIN, b]),
        ...[0, 1, 2, 3, 4].map((b): [RelFileLocator, ForkNumber, number] => [LOC, ForkNumber.FSM, b]),
        ...[2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((b): [RelFileLocator, ForkNumber, number] => [other, ForkNumber.MAIN, b]),
      ];
      for (const [loc, fork, b] of dirty.reverse()) await engine.relation(loc).write(fork, b, pageOf(4));
      await engine.checkpoint();
      // 24 buffers (below the limit): one batch at the end of BufferSync, sorted by relNumber, fork, block.
      expect(disk.hints).toEqual([
        { path: 'base/5/100', offsetBlocks: 0, lengthBlocks: 5 },
        { path: 'base/5/100', offsetBlocks: 6, lengthBlocks: 4 },
        { path: 'base/5/100_fsm', offsetBlocks: 0, lengthBlocks: 5 },
        { path: 'base/5/101', offsetBlocks: 2, lengthBlocks: 10 },
      ]);
    });
  });

  it('behaviour 40: md splits a range at segment boundaries (relSegBlocks 8)', async () => {
    const disk = new HintDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256, relSegBlocks: 8 }, async (engine) => {
      const dirty = Array.from({ length: 20 }, (_, i) => 2 + i); // blocks 2..21
      await prepare(engine, LOC, ForkNumber.MAIN, 24, dirty);
      disk.reset();
      const rangesBefore = engine.bufferPool.stats.writebackRanges;
      await engine.checkpoint();
      // One range for the storage manager ...
      expect(engine.bufferPool.stats.writebackRanges - rangesBefore).toBe(1);
      // ... three hints for the files, one per segment piece.
      expect(disk.hints).toEqual([
        { path: 'base/5/100', offsetBlocks: 2, lengthBlocks: 6 },
        { path: 'base/5/100.1', offsetBlocks: 0, lengthBlocks: 8 },
        { path: 'base/5/100.2', offsetBlocks: 0, lengthBlocks: 6 },
      ]);
    });
  });

  it('behaviour 40: md hints only open segments and stops at the first one not open, opening nothing', async () => {
    const disk = new HintDisk();
    // 6 segments written by one BufferSync with 4 fds at most: when the single batch of hints
    // (limit 48) goes out, some segments are closed again. Which ones depends on the order the
    // writes in flight took their fds, so the test tracks what is open when the hints start.
    const options = { dataDir: '/data', io: disk, sharedBuffers: 256, relSegBlocks: 8, maxOpenFiles: 4, checkpointFlushAfter: 48 };
    const first = await Engine.open(options);
    await prepare(first, LOC, ForkNumber.MAIN, 48, []);
    await first.close();
    // A fresh engine: no segment is open when the checkpoint starts (writes to cached pages open nothing).
    await withEngine(options, async (engine) => {
      for (let b = 0; b < 48; b++) await engine.relation(LOC).write(ForkNumber.MAIN, b, pageOf(2));
      disk.reset();
      const before = engine.ioCounts();
      const rangesBefore = engine.bufferPool.stats.writebackRanges;
      const openNow = new Map<string, number>();
      let openAtFirstHint: Set<string> | null = null;
      let phase: 'write' | 'hint' | 'sync' = 'write';
      let opensDuringHint = 0;
      const onCall = disk.onCall!;
      disk.onCall = (i, kind, path) => {
        onCall(i, kind, path);
        const rel = path.replace('/data/', '');
        // The hints go out at the end of the write phase; with none at all, the sync phase's
        // first fsync comes next, with no open or close in between.
        if ((kind === 'writeback' || kind === 'fsync') && phase === 'write') openAtFirstHint = new Set([...openNow].filter(([, n]) => n > 0).map(([p]) => p));
        if (kind === 'writeback' && phase === 'write') phase = 'hint';
        if (kind === 'fsync') phase = 'sync';
        if (kind === 'open') {
          if (phase === 'hint') opensDuringHint++;
          openNow.set(rel, (openNow.get(rel) ?? 0) + 1);
        }
        if (kind === 'close') openNow.set(rel, (openNow.get(rel) ?? 1) - 1);
      };
      for (const p of ['base/5/100', ...[1, 2, 3, 4, 5].map((n) => `base/5/100.${n}`)]) openNow.set(p, 0);
      // The sync phase opens its batch's segments before their first fsync (md.syncSegments):
      // with no hint at all, the write phase ends where md is asked to sync.
      const md = engine.storageManager('md') as MdStorageManager;
      const syncSegments = md.syncSegments.bind(md);
      md.syncSegments = (tags) => {
        if (phase === 'write') openAtFirstHint = new Set([...openNow].filter(([, n]) => n > 0).map(([p]) => p));
        phase = 'sync';
        return syncSegments(tags);
      };
      await engine.checkpoint();
      expect(engine.bufferPool.stats.writebackRanges - rangesBefore).toBe(1); // md got its range ...
      // ... and hinted segments from the first on while they were open, stopping at the first
      // one that was not (at least one was closed: 6 segments, 4 fds).
      const segs = ['base/5/100', ...[1, 2, 3, 4, 5].map((n) => `base/5/100.${n}`)];
      const open = openAtFirstHint ?? new Set<string>();
      let k = 0;
      while (k < segs.length && open.has(segs[k]!)) k++;
      expect(k).toBeLessThan(segs.length);
      expect(disk.hints.map((h) => h.path)).toEqual(segs.slice(0, k));
      expect(engine.ioCounts().writeback - before.writeback).toBe(k);
      expect(engine.ioCounts().writebacksIssued - before.writebacksIssued).toBe(k);
      expect(opensDuringHint).toBe(0);
    });
  });

  it('M8: at most hintsHeldMax hints hold a segment while the FileIO answers (a slow sync thread); the rest wait their turn, and every hint is made', async () => {
    // Hints answered a few turns late, as the sync thread answers them; counted while held.
    class SlowHints extends HintDisk {
      held = 0;
      heldMax = 0;
      override async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
        this.held++;
        this.heldMax = Math.max(this.heldMax, this.held);
        for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
        this.held--;
        await super.writeback(h, offsetBytes, lengthBytes);
      }
    }
    const disk = new SlowHints();
    // 16 dirty one-block segments, no two adjacent: 16 ranges in one issue, all asked for at
    // once (W4); maxOpenFiles 16 gives 2 turns.
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256, relSegBlocks: 1, maxOpenFiles: 16 }, async (engine) => {
      await prepare(engine, LOC, ForkNumber.MAIN, 32, Array.from({ length: 16 }, (_, i) => 2 * i));
      disk.reset();
      const md = engine.storageManager('md') as MdStorageManager;
      expect(md.hintsHeldMax).toBe(2);
      await engine.checkpoint();
      expect(disk.hints).toHaveLength(16);
      expect(disk.heldMax).toBe(2);
      expect(disk.held).toBe(0);
      md.checkInvariants();
    });
  });

  it('M7 with M8: a batch\'s writes and the hints still held never pin more segments than maxOpenFiles, so the fd cache never opens past its bound', async () => {
    // Hints held for many turns, so the next batch's writes run while they are held; writes
    // held for a few, so a batch's writes are all in flight together.
    const turns = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
    };
    class SlowHints extends HintDisk {
      override async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
        await turns(40);
        await super.writeback(h, offsetBytes, lengthBytes);
      }
      override async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
        await turns(5);
        await super.pwritev(h, buffers, offsetBytes);
      }
    }
    const disk = new SlowHints();
    // 48 dirty one-block segments, no two adjacent: batches of 16 one-page writes to 16 files.
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256, relSegBlocks: 1, maxOpenFiles: 16, checkpointFlushAfter: 16 }, async (engine) => {
      await prepare(engine, LOC, ForkNumber.MAIN, 96, Array.from({ length: 48 }, (_, i) => 2 * i));
      const md = engine.storageManager('md') as MdStorageManager;
      expect(md.hintsHeldMax).toBe(2);
      expect(md.writesInFlightMax).toBe(14);
      const before = engine.ioCounts();
      await engine.checkpoint();
      // Hints reach only segments still open when they are made (M8): some, not all 48.
      expect(disk.hints.length).toBeGreaterThan(0);
      // The segments, plus the engine's own two (the lock file and the control file).
      expect(engine.ioCounts().openHandlesMax).toBeLessThanOrEqual(16 + 2);
      expect(engine.ioCounts().open - before.open).toBeGreaterThan(0); // the cache was too small for the 48
      md.checkInvariants();
    });
  });

  it('behaviour 40: nothing is hinted when fsync is off', async () => {
    const disk = new HintDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256, fsync: false }, async (engine) => {
      await prepare(engine, LOC, ForkNumber.MAIN, 80, Array.from({ length: 80 }, (_, i) => i));
      await engine.checkpoint();
      expect(disk.hints).toEqual([]);
      expect(engine.ioCounts().writeback).toBe(0);
      expect(engine.bufferPool.stats.writebackIssues).toBe(0);
    });
  });

  it('behaviour 40: checkpointFlushAfter 0 disables the hints; 1 hints after every buffer', async () => {
    for (const [limit, issues] of [
      [0, 0],
      [1, 10],
    ] as const) {
      const disk = new HintDisk();
      await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256, checkpointFlushAfter: limit }, async (engine) => {
        await prepare(engine, LOC, ForkNumber.MAIN, 10, []);
        disk.reset();
        const issuesBefore = engine.bufferPool.stats.writebackIssues;
        for (let b = 0; b < 10; b++) await engine.relation(LOC).write(ForkNumber.MAIN, b, pageOf(5));
        await engine.checkpoint();
        expect(engine.bufferPool.stats.writebackIssues - issuesBefore).toBe(issues);
        expect(disk.hints.length).toBe(issues);
      });
    }
  });

  it('behaviour 40: checkpointFlushAfter must be an integer in 0..256 (message names the option)', async () => {
    for (const bad of [-1, 257, 1.5, Number.NaN, '32']) {
      const p = Engine.open({ dataDir: '/data', io: new SimDisk(), checkpointFlushAfter: bad as number });
      await expect(p).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('checkpointFlushAfter') });
    }
    const engine = await Engine.open({ dataDir: '/data', io: new SimDisk(), checkpointFlushAfter: 256 });
    await engine.close();
  });

  it('behaviour 40: a failed hint is a failed sync: the checkpoint fails and the engine enters the failed state', async () => {
    const disk = new HintDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 256 }, async (engine) => {
      await prepare(engine, LOC, ForkNumber.MAIN, 4, [0, 1]);
      disk.injectFault({ kind: 'writeback', code: 'EIO' });
      await expect(engine.checkpoint()).rejects.toMatchObject({
        code: ErrorCode.ENGINE_FAILED,
        cause: { code: ErrorCode.IO_ERROR, errno: 'EIO', syscall: 'sync_file_range', path: '/data/base/5/100' },
      });
      await expect(engine.relation(LOC).write(ForkNumber.MAIN, 0, pageOf(6))).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
    }, { closeRejects: ErrorCode.ENGINE_FAILED });
  });

  it('behaviour 40: on real files without sync_file_range (RealIO syncFileRange: null, as off Linux) the hint is counted as issued, reaches nothing, and is harmless', async () => {
    const dir = await tempDir();
    const io = new RealIO({ syncFileRange: null });
    expect(io.writeback).toBeUndefined(); // left out, not faked (FileIO C7)
    expect(io.writebackSupported).toBe(false);
    await withEngine({ dataDir: dir, io, sharedBuffers: 256 }, async (engine) => {
      expect(engine.io.writebackSupported).toBe(false);
      await prepare(engine, LOC, ForkNumber.MAIN, 40, Array.from({ length: 40 }, (_, i) => i));
      const before = engine.ioCounts();
      const stats = await engine.checkpoint();
      // 40 consecutive buffers: a batch of 32 at the limit, then 8 at the end.
      expect(engine.ioCounts().writeback - before.writeback).toBe(2);
      expect(stats.writebacksIssued).toBe(0);
      for (let b = 0; b < 40; b++) expect((await engine.relation(LOC).read(ForkNumber.MAIN, b))[100]).toBe(2);
    });
  });
});

describe('WritebackContext alone', () => {
  interface Call {
    rel: number;
    fork: number;
    block: number;
    nblocks: number;
  }
  function fakeSmgr(calls: Call[], withWriteback = true): (name: string) => StorageManager {
    const smgr = {
      name: 'fake',
      writeback: withWriteback
        ? async (rel: RelFileLocator, fork: ForkNumber, block: number, nblocks: number) => {
            calls.push({ rel: rel.relNumber, fork, block, nblocks });
          }
        : undefined,
    } as unknown as StorageManager;
    return () => smgr;
  }
  const tag = (relNumber: number, fork: ForkNumber, block: number, dbOid = 5): WritebackTag => ({
    storage: 'fake',
    rel: { spcOid: 1663, dbOid, relNumber },
    fork,
    block,
  });

  it('behaviour 40: duplicates collapse and consecutive blocks merge, whatever the scheduling order', async () => {
    const calls: Call[] = [];
    const wb = new WritebackContext(32, fakeSmgr(calls));
    for (const b of [5, 3, 4, 4, 5, 3, 6, 6, 9]) await wb.schedule(tag(7, ForkNumber.MAIN, b));
    expect(calls).toEqual([]);
    wb.checkInvariants();
    await wb.issue();
    expect(calls).toEqual([
      { rel: 7, fork: 0, block: 3, nblocks: 4 },
      { rel: 7, fork: 0, block: 9, nblocks: 1 },
    ]);
    expect(wb.pendingCount).toBe(0);
    expect(wb.stats).toEqual({ issues: 1, ranges: 2 });
  });

  it('behaviour 40: issued exactly when the limit is reached; sorted by (relNumber, dbOid, spcOid, fork, block)', async () => {
    const calls: Call[] = [];
    const wb = new WritebackContext(4, fakeSmgr(calls));
    await wb.schedule(tag(9, ForkNumber.MAIN, 0));
    await wb.schedule(tag(8, ForkNumber.FSM, 1));
    await wb.schedule(tag(8, ForkNumber.MAIN, 2));
    expect(calls).toEqual([]);
    await wb.schedule(tag(8, ForkNumber.MAIN, 1, 4)); // same relNumber, lower dbOid: a different file, first
    expect(calls).toEqual([
      { rel: 8, fork: 0, block: 1, nblocks: 1 },
      { rel: 8, fork: 0, block: 2, nblocks: 1 },
      { rel: 8, fork: 1, block: 1, nblocks: 1 },
      { rel: 9, fork: 0, block: 0, nblocks: 1 },
    ]);
    wb.checkInvariants();
    await wb.issue(); // nothing pending: no call, no issue counted
    expect(wb.stats).toEqual({ issues: 1, ranges: 4 });
  });

  it('behaviour 40: limit 0 keeps nothing; a storage manager without writeback gets no hint', async () => {
    const calls: Call[] = [];
    const off = new WritebackContext(0, fakeSmgr(calls));
    await off.schedule(tag(1, ForkNumber.MAIN, 0));
    await off.issue();
    expect(off.pendingCount).toBe(0);
    const none = new WritebackContext(2, fakeSmgr(calls, false));
    await none.schedule(tag(1, ForkNumber.MAIN, 0));
    await none.schedule(tag(1, ForkNumber.MAIN, 1));
    expect(calls).toEqual([]);
    expect(none.stats).toEqual({ issues: 1, ranges: 0 });
    expect(() => new WritebackContext(257, fakeSmgr(calls))).toThrow();
  });

  /** A storage manager whose hints stay running until the test lets each one finish (or fail). */
  function heldSmgr(): { smgr: (name: string) => StorageManager; started: number[]; finish: (i: number, err?: Error) => void } {
    const started: number[] = [];
    const settle: ((err?: Error) => void)[] = [];
    const smgr = {
      name: 'fake',
      writeback: (_rel: RelFileLocator, _fork: ForkNumber, block: number) =>
        new Promise<void>((resolve, reject) => {
          started.push(block);
          settle.push((err) => (err ? reject(err) : resolve()));
        }),
    } as unknown as StorageManager;
    return { smgr: () => smgr, started, finish: (i, err) => settle[i]!(err) };
  }
  const turns = async (n = 5) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  };

  it(`W5: the bound is HINTED_BUFFERS_IN_FLIGHT buffers' worth of issues, at least ${ISSUES_IN_FLIGHT}`, () => {
    const held = heldSmgr();
    expect(HINTED_BUFFERS_IN_FLIGHT).toBe(1024);
    expect(new WritebackContext(32, held.smgr).issuesInFlight).toBe(32); // 4 batches of 256 buffers, 8 issues each
    expect(new WritebackContext(256, held.smgr).issuesInFlight).toBe(ISSUES_IN_FLIGHT);
    expect(new WritebackContext(100, held.smgr).issuesInFlight).toBe(11);
    expect(new WritebackContext(1, held.smgr).issuesInFlight).toBe(1024);
    expect(issuesInFlight(0)).toBe(1024);
  });

  it('W5: up to issuesInFlight issues run while scheduling goes on; the next waits for the oldest; issue() waits for all', async () => {
    const held = heldSmgr();
    const wb = new WritebackContext(1, held.smgr);
    const n = wb.issuesInFlight;
    for (let b = 0; b < n; b++) expect(wb.schedule(tag(7, ForkNumber.MAIN, 10 * b))).toBeUndefined();
    expect(held.started).toEqual(Array.from({ length: n }, (_, b) => 10 * b)); // every hint asked for at once, none awaited
    wb.checkInvariants();
    let nextDone = false;
    const next = wb.schedule(tag(7, ForkNumber.MAIN, 10 * n))!.then(() => (nextDone = true));
    expect(held.started.length).toBe(n + 1); // the next one is asked for before waiting
    expect(held.started[n]).toBe(10 * n);
    await turns();
    expect(nextDone).toBe(false); // ... and waits for the oldest
    held.finish(1);
    await turns();
    expect(nextDone).toBe(false); // not for any other
    held.finish(0);
    await next;
    let allDone = false;
    const all = wb.issue().then(() => (allDone = true));
    for (let i = 2; i < n; i++) held.finish(i);
    await turns();
    expect(allDone).toBe(false); // the newest is still running
    held.finish(n);
    await all;
    expect(wb.stats).toEqual({ issues: n + 1, ranges: n + 1 });
  });

  it('W5: a failed hint fails the schedule that waits for its issue, or issue(); drain() waits for the rest and throws nothing', async () => {
    const held = heldSmgr();
    const wb = new WritebackContext(1, held.smgr);
    const n = wb.issuesInFlight;
    for (let b = 0; b < n; b++) wb.schedule(tag(7, ForkNumber.MAIN, b * 10));
    const next = wb.schedule(tag(7, ForkNumber.MAIN, 10 * n))!;
    held.finish(0, new Error('hint 0 failed'));
    await expect(next).rejects.toThrow('hint 0 failed');
    let drained = false;
    const d = wb.drain().then(() => (drained = true));
    held.finish(1, new Error('hint 1 failed'));
    for (let i = 2; i < n; i++) held.finish(i);
    await turns();
    expect(drained).toBe(false); // the last issue is still running
    held.finish(n);
    await d;
    // Nothing left: issue() has nothing to wait for.
    await expect(wb.issue()).resolves.toBeUndefined();
    // issue() throws the first failure among the issues it waits for, after all of them.
    wb.schedule(tag(8, ForkNumber.MAIN, 0));
    wb.schedule(tag(8, ForkNumber.MAIN, 5));
    const last = wb.issue();
    held.finish(n + 1);
    held.finish(n + 2, new Error('hint 6 failed'));
    await expect(last).rejects.toThrow('hint 6 failed');
  });
});

describe('FileIO writeback', () => {
  it('SimDisk: a counted no-op that makes nothing durable; EBADF on a closed handle', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/d');
    const h = await disk.open('/d/f', { create: true });
    await disk.fsyncDir('/');
    await disk.fsyncDir('/d');
    await disk.fsync(h);
    await disk.pwrite(h, new Uint8Array(512).fill(7), 0);
    const calls = disk.callCount;
    await disk.writeback(h, 0, 512);
    expect(disk.callCount).toBe(calls + 1);
    const after = disk.crash('drop', 1);
    const h2 = await after.open('/d/f');
    expect(await after.size(h2)).toBe(0); // the hinted write was not made durable
    await disk.close(h);
    await expect(disk.writeback(h, 0, 512)).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('CountingIO: counts every hint, forwards it when the inner FileIO has writeback', async () => {
    const disk = new HintDisk();
    const io = new CountingIO(disk);
    await io.mkdir('/data');
    const h = await io.open('/data/f', { create: true });
    await io.writeback(h, 0, BS);
    expect(io.counts().writeback).toBe(1);
    expect(io.counts().writebacksIssued).toBe(1);
    expect(io.writebackSupported).toBe(true);
    expect(disk.hints).toEqual([{ path: 'f', offsetBlocks: 0, lengthBlocks: 1 }]);
    // An inner FileIO without the method (RealIO off Linux): counted as issued, then dropped
    // (nothing else is touched), and not counted as carried out.
    const withoutWriteback = new CountingIO({} as FileIO);
    await withoutWriteback.writeback(h, 0, BS);
    expect(withoutWriteback.counts().writeback).toBe(1);
    expect(withoutWriteback.counts().writebacksIssued).toBe(0);
    expect(withoutWriteback.writebackSupported).toBe(false);
    expect(disk.hints.length).toBe(1);
    // Through the sync ledger (a wrapper that always has the method): the innermost answer counts.
    const ledgerOverNothing = new CountingIO(new SyncLedgerIO({} as FileIO));
    await ledgerOverNothing.writeback(h, 0, BS);
    expect(ledgerOverNothing.counts()).toMatchObject({ writeback: 1, writebacksIssued: 0 });
    expect(new CountingIO(new SyncLedgerIO(disk)).writebackSupported).toBe(true);
    await io.close(h);
  });
});
