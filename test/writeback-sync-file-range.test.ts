/**
 * Goal: on Linux the writeback hints a checkpoint gives (checkpointFlushAfter) reach the kernel
 * as sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE), counted in
 * CheckpointStats.writebacksIssued; a failing call is a Node-style error (code, negative errno,
 * syscall, path) that fails the checkpoint and puts the engine in the failed state, as every
 * failed hint does; ENOSYS turns the hints off without an error (PostgreSQL's pg_flush_data);
 * elsewhere RealIO has no writeback and says why.
 * Method: real files in a temp dir. The provider RealIO uses is the real one (koffi) or, to see
 * the calls, a recording wrapper around it: each call's descriptor is checked through
 * /proc/self/fd to be the segment file's, and each result is 0. The failure comes from the
 * kernel itself: a wrapper passes descriptor -1 to the real call (EBADF), or, on the sync thread
 * (RealIO's default, sync-thread.ts S6), a descriptor closed behind RealIO's back. Counts, never
 * timings.
 */
import { closeSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, ForkNumber, RealIO, type RelFileLocator, type SyncFileRangeFn } from '../engine/index.js';
import { SYNC_FILE_RANGE_WRITE, loadSyncFileRange, probeSyncFileRange } from '../engine/testing.js';
import { hintsOnThread, syncThreadMessages, syncThreadMessagesByKind } from '../engine/io/sync-thread.js';
import { tempDir } from './helpers/index.js';
import { withEngine, BS, pageOf, locator } from './helpers/engine.js';

const LOC: RelFileLocator = locator(100);
const linux = process.platform === 'linux';

interface Call {
  file: string;
  offsetBytes: number;
  nbytes: number;
  result: number;
}

/** The real sync_file_range, recording what each call was given and returned. */
function recording(calls: Call[]): SyncFileRangeFn {
  const real = loadSyncFileRange().fn;
  if (!real) throw new Error('no sync_file_range in this process');
  return (fd, offsetBytes, nbytes) => {
    const result = real(fd, offsetBytes, nbytes);
    calls.push({ file: readlinkSync(`/proc/self/fd/${fd}`), offsetBytes, nbytes, result });
    return result;
  };
}

/** `nblocks` blocks written and checkpointed, then `dirty` of them rewritten with 2s. */
async function prepare(engine: Engine, nblocks: number, dirty: readonly number[]): Promise<void> {
  const rel = engine.relation(LOC);
  await rel.create(ForkNumber.MAIN);
  for (let b = 0; b < nblocks; b++) await rel.extend(ForkNumber.MAIN, pageOf(1));
  await engine.checkpoint();
  for (const b of dirty) await rel.write(ForkNumber.MAIN, b, pageOf(2));
}

describe.runIf(linux)('writeback hints reach the kernel (Linux, real files)', () => {
  it('RealIO has writeback on Linux, through koffi, and says it is supported', () => {
    const probe = loadSyncFileRange();
    expect(probe).toMatchObject({ via: 'koffi' });
    const io = new RealIO();
    expect(io.writebackSupported).toBe(true);
    expect(io.writebackUnsupportedReason).toBeNull();
    expect(typeof io.writeback).toBe('function');
    expect(SYNC_FILE_RANGE_WRITE).toBe(2);
  });

  it('a checkpoint with checkpointFlushAfter 32 over 40 dirty blocks makes 2 sync_file_range calls on the segment file, both returning 0, counted in writebacksIssued', async () => {
    const dir = await tempDir();
    const calls: Call[] = [];
    await withEngine({ dataDir: dir, io: new RealIO({ syncFileRange: recording(calls) }), sharedBuffers: 256 }, async (engine) => {
      await prepare(engine, 40, Array.from({ length: 40 }, (_, i) => i));
      calls.length = 0;
      const before = engine.ioCounts();
      const stats = await engine.checkpoint();
      // 40 consecutive buffers: a batch of 32 at the limit, then 8 at the end of BufferSync.
      const file = join(realpathSync(dir), 'base/5/100'); // as /proc/self/fd names it
      expect(calls).toEqual([
        { file, offsetBytes: 0, nbytes: 32 * BS, result: 0 },
        { file, offsetBytes: 32 * BS, nbytes: 8 * BS, result: 0 },
      ]);
      expect(stats.writebacksIssued).toBe(2);
      expect(engine.ioCounts().writeback - before.writeback).toBe(2);
      expect(engine.io.writebackSupported).toBe(true);
      for (let b = 0; b < 40; b++) expect((await engine.relation(LOC).read(ForkNumber.MAIN, b))[100]).toBe(2);
    });
  });

  it('the default RealIO (no double) counts the same hints as reaching the kernel, one sync-thread message per batch of writes and at most one per issue of hints', async () => {
    const dir = await tempDir();
    await withEngine({ dataDir: dir, sharedBuffers: 256 }, async (engine) => {
      await prepare(engine, 70, Array.from({ length: 35 }, (_, i) => 2 * i)); // no two adjacent
      const messages = syncThreadMessages;
      const kinds = { ...syncThreadMessagesByKind };
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(35);
      expect(stats.writebacksIssued).toBe(35); // one range per buffer, 32 + 3
      // Two batches of writes (32, then 3: the pool's pages are shared memory, S7), one message
      // each; two issues of hints (32 ranges, then 3), one message each, or one for both when
      // both are asked for before the thread's next turn (S6: the hints of one turn go
      // together; which happens depends on when the second batch's answer arrives), or carried
      // by a batch of writes sent after them (S8), which is no message of its own; then the
      // sync phase's one fsync batch.
      const hints = syncThreadMessagesByKind.hints - kinds.hints;
      const carried = syncThreadMessagesByKind.hintsCarried - kinds.hintsCarried;
      expect(syncThreadMessagesByKind.writes - kinds.writes).toBe(2);
      expect(hints + carried === 1 || hints + carried === 2).toBe(true);
      expect(syncThreadMessagesByKind.fsyncs - kinds.fsyncs).toBe(1);
      expect(syncThreadMessages - messages).toBe(3 + hints);
    });
  });

  it('S8: hints asked for before a batch of writes go with it, no message of their own, and every one reaches the kernel', async () => {
    const dir = await tempDir();
    await withEngine({ dataDir: dir, sharedBuffers: 2048 }, async (engine) => {
      // 100 relations of 16 pages: BufferSync's batches of 256 buffers are 16 files each (the
      // last 4), two batches in flight; each batch's hints (8 issues) are asked for when its
      // writes return, as the batch after the next is sent.
      const rels = Array.from({ length: 100 }, (_, i) => engine.relation({ ...LOC, relNumber: LOC.relNumber + 1 + i }));
      for (const rel of rels) {
        await rel.create(ForkNumber.MAIN);
        for (let b = 0; b < 16; b++) await rel.extend(ForkNumber.MAIN, pageOf(1));
      }
      await engine.checkpoint();
      for (const rel of rels) for (let b = 0; b < 16; b++) await rel.write(ForkNumber.MAIN, b, pageOf(2));
      const messages = syncThreadMessages;
      const kinds = { ...syncThreadMessagesByKind };
      const stats = await engine.checkpoint();
      expect(stats.buffersWritten).toBe(1600);
      expect(stats.writebacksIssued).toBe(100); // one range per file, each reached the kernel
      const writes = syncThreadMessagesByKind.writes - kinds.writes;
      const hints = syncThreadMessagesByKind.hints - kinds.hints;
      const carried = syncThreadMessagesByKind.hintsCarried - kinds.hintsCarried;
      expect(writes).toBe(7);
      expect(carried).toBeGreaterThan(0);
      expect(hints + carried).toBeLessThanOrEqual(writes + 1); // a batch's 8 issues go in one message
      expect(syncThreadMessages - messages).toBe(writes + hints + (syncThreadMessagesByKind.fsyncs - kinds.fsyncs));
      for (const rel of rels) expect((await rel.read(ForkNumber.MAIN, 15))[100]).toBe(2);
    });
  });

  it('RealIO.writeback: a written range is accepted; a bad range is EINVAL and a closed handle EBADF before any call', async () => {
    const dir = await tempDir();
    const calls: Call[] = [];
    const io = new RealIO({ syncFileRange: recording(calls) });
    const h = await io.open(join(dir, 'f'), { create: true });
    await io.pwrite(h, pageOf(3), 0);
    await io.writeback!(h, 0, BS);
    await io.writeback!(h, BS, 4 * BS); // past the end of the file: nothing to do, not an error
    expect(calls.map((c) => c.result)).toEqual([0, 0]);
    await expect(io.writeback!(h, -1, BS)).rejects.toMatchObject({ code: 'EINVAL', syscall: 'sync_file_range' });
    await io.close(h);
    await expect(io.writeback!(h, 0, BS)).rejects.toMatchObject({ code: 'EBADF', syscall: 'sync_file_range' });
    expect(calls.length).toBe(2);
  });

  it('S6: without a provider given, the hints asked for in one turn go to the sync thread in one message, each answered on its own (EBADF for a descriptor closed behind RealIO)', async () => {
    const dir = await tempDir();
    const io = new RealIO();
    const hs = [];
    for (let i = 0; i < 4; i++) {
      const h = await io.open(join(dir, `f${i}`), { create: true });
      await io.pwrite(h, pageOf(i), 0);
      hs.push(h);
    }
    // Closed behind RealIO's back: only the kernel can say EBADF, on the thread.
    closeSync((hs[2] as unknown as { fd: number }).fd);
    const before = syncThreadMessages;
    const results = await Promise.allSettled(hs.map((h) => io.writeback!(h, 0, BS)));
    expect(syncThreadMessages - before).toBe(1);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'sync_file_range', path: join(dir, 'f2') });
    // The next turn's hints are the next message.
    await io.writeback!(hs[0]!, 0, BS);
    expect(syncThreadMessages - before).toBe(2);
    for (const i of [0, 1, 3]) await io.close(hs[i]!);
  });

  it('S6: a thread that cannot load koffi from the path it is given answers why and makes no call', async () => {
    const reply = await hintsOnThread([0, 0, BS], join(await tempDir(), 'no-koffi-here.js'));
    expect(reply).toMatchObject({ unavailable: expect.stringContaining('no-koffi-here.js') });
    expect('errnos' in reply).toBe(false);
  });

  it("a failing sync_file_range is a Node-style error with the kernel's errno (EBADF on a bad descriptor)", async () => {
    const dir = await tempDir();
    const real = loadSyncFileRange().fn!;
    const io = new RealIO({ syncFileRange: (_fd, offsetBytes, nbytes) => real(-1, offsetBytes, nbytes) });
    const h = await io.open(join(dir, 'f'), { create: true });
    try {
      const err = await io.writeback!(h, 0, BS).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect(err).toMatchObject({ code: 'EBADF', errno: -9, syscall: 'sync_file_range', path: join(dir, 'f') });
      expect((err as Error).message).toMatch(/^EBADF: bad file descriptor, sync_file_range '/);
      expect(io.writebackSupported).toBe(true); // an error is not a missing call
    } finally {
      await io.close(h);
    }
  });

  it('a failing sync_file_range fails the checkpoint and puts the engine in the failed state (data_sync_elevel)', async () => {
    const dir = await tempDir();
    const real = loadSyncFileRange().fn!;
    let fail = false;
    const io = new RealIO({ syncFileRange: (fd, offsetBytes, nbytes) => real(fail ? -1 : fd, offsetBytes, nbytes) });
    await withEngine({ dataDir: dir, io, sharedBuffers: 256 }, async (engine) => {
      await prepare(engine, 4, [0, 1]);
      fail = true;
      await expect(engine.checkpoint()).rejects.toMatchObject({
        code: ErrorCode.ENGINE_FAILED,
        cause: { code: ErrorCode.IO_ERROR, errno: 'EBADF', syscall: 'sync_file_range', path: join(dir, 'base/5/100') },
      });
      await expect(engine.relation(LOC).write(ForkNumber.MAIN, 0, pageOf(6))).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
      await expect(engine.checkpoint()).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
    }, { closeRejects: ErrorCode.ENGINE_FAILED });
  });

  it('ENOSYS from the kernel turns the hints off without an error (pg_flush_data), and says why', async () => {
    const dir = await tempDir();
    let calls = 0;
    const io = new RealIO({
      syncFileRange: () => {
        calls++;
        return 38; // ENOSYS
      },
    });
    await withEngine({ dataDir: dir, io, sharedBuffers: 256 }, async (engine) => {
      await prepare(engine, 40, Array.from({ length: 40 }, (_, i) => i));
      const stats = await engine.checkpoint();
      expect(calls).toBe(1); // the second hint was not tried
      expect(stats.writebacksIssued).toBe(0);
      expect(io.writebackSupported).toBe(false);
      expect(engine.io.writebackSupported).toBe(false);
      expect(io.writebackUnsupportedReason).toMatch(/ENOSYS/);
    });
  });
});

describe('without sync_file_range', () => {
  it('off Linux there is nothing to load, and the reason says so', () => {
    for (const platform of ['darwin', 'freebsd', 'win32']) {
      const probe = probeSyncFileRange(platform);
      expect(probe.fn).toBeNull();
      expect(probe).toMatchObject({ reason: expect.stringContaining('Linux only') });
    }
  });

  it('RealIO without a provider leaves writeback out and gives the reason once, on the instance', () => {
    const io = new RealIO({ syncFileRange: null });
    expect(io.writeback).toBeUndefined();
    expect('writeback' in io).toBe(false);
    expect(io.writebackSupported).toBe(false);
    expect(io.writebackUnsupportedReason).toMatch(/syncFileRange: null/);
  });
});
