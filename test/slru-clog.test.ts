/**
 * Goal: engine.clog and engine.commitTs keep PostgreSQL's on-disk layout (behaviour 43), survive
 * a crash after a checkpoint (100,000 statuses), cost exactly one sync per dirty segment per
 * checkpoint, honour FORGET-before-unlink at the engine level (behaviour 44), and refuse bad
 * input with clear LamstoreErrors.
 * Method: an Engine on a SimDisk (data dir /data); raw segment bytes are read from the disk;
 * crashes use SimDisk crash('drop') and a fresh Engine on the crashed image; sync calls are
 * counted through CheckpointStats.tagsDispatched and engine.ioCounts(), never timed.
 */
import { describe, expect, it } from 'vitest';
import { ClogStatus, ErrorCode, isLamstoreError } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { onDisk, openOn, withEngine } from './helpers/engine.js';

const XIDS_PER_PAGE = 32768; // 8 KiB pages, 4 xids per byte
const XIDS_PER_SEGMENT = XIDS_PER_PAGE * 32;


/** A deterministic status per xid, covering all four values. */
function statusOf(xid: number): ClogStatus {
  return (Math.imul(xid, 0x9e3779b1) >>> 30) as ClogStatus;
}

describe('clog', () => {
  it('behaviour 43: page p of clog is pg_xact/<hex p/32>, one sync request for it, xid bits at (x % 4) * 2 of byte (x % 32768) / 4', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      const pageNo = 33 * 32 + 7; // segment 0x21, page 7 inside it
      const xid = pageNo * XIDS_PER_PAGE + 4 * 1000 + 2; // byte 1000, shift 4
      await engine.clog.setStatus(xid, ClogStatus.ABORTED);
      await engine.clog.setStatus(xid + 1, ClogStatus.SUB_COMMITTED); // the same byte, shift 6
      await engine.clog.setStatus(xid - 1, ClogStatus.COMMITTED); // shift 2
      const stats = await engine.checkpoint();
      expect(stats.tagsDispatched).toEqual({ clog: 1 });
      const bytes = disk.readFileDurable('/data/pg_xact/0021')!;
      expect(bytes).not.toBeNull();
      expect(bytes.length).toBe(8 * 8192);
      const b = bytes[7 * 8192 + 1000]!;
      expect((b >> 2) & 3).toBe(ClogStatus.COMMITTED);
      expect((b >> 4) & 3).toBe(ClogStatus.ABORTED);
      expect((b >> 6) & 3).toBe(ClogStatus.SUB_COMMITTED);
      expect(b & 3).toBe(ClogStatus.IN_PROGRESS);
      expect(await engine.clog.getStatus(xid)).toBe(ClogStatus.ABORTED);
      expect(await engine.clog.getStatus(xid + 2)).toBe(ClogStatus.IN_PROGRESS); // never set
      // Four-digit names at least, more digits when needed.
      await engine.clog.setStatus(0xffff_ffff, ClogStatus.COMMITTED);
      await engine.checkpoint();
      expect(disk.readFileDurable(`/data/pg_xact/${Math.floor(0xffff_ffff / XIDS_PER_SEGMENT).toString(16).toUpperCase().padStart(4, '0')}`)).not.toBeNull();
      expect(disk.listFiles().filter((p) => p.startsWith('/data/pg_xact/'))).toEqual(['/data/pg_xact/0021', '/data/pg_xact/0FFF']);
      engine.clog.checkInvariants();
    });
  });

  it('100,000 statuses survive a checkpoint and a crash (drop) and read back exactly', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk);
    const N = 100_000;
    const base = XIDS_PER_SEGMENT - 30_000; // straddles segments 0 and 1
    for (let i = 0; i < N; i++) await engine.clog.setStatus(base + i, statusOf(base + i));
    for (let i = 0; i < N; i += 7) await engine.commitTs.set(base + i, BigInt(base + i) * 1000n + 1n, i & 0xffff);
    const stats = await engine.checkpoint();
    expect(stats.tagsDispatched.clog).toBe(2);
    // Written after the checkpoint: may be lost, must not disturb what the checkpoint synced.
    await engine.clog.setStatus(base, ClogStatus.ABORTED);
    const crashed = disk.crash('drop', 1);
    await withEngine(onDisk(crashed), async (reopened) => {
      for (let i = 0; i < N; i++) {
        const xid = base + i;
        const got = await reopened.clog.getStatus(xid);
        if (got !== statusOf(xid)) expect({ xid, got }).toEqual({ xid, got: statusOf(xid) });
      }
      for (let i = 0; i < N; i += 7) {
        expect(await reopened.commitTs.get(base + i)).toEqual({ timestampUs: BigInt(base + i) * 1000n + 1n, originId: i & 0xffff });
      }
      expect(await reopened.commitTs.get(base + 1)).toBeNull();
      reopened.clog.checkInvariants();
    });
  });

  it('sync calls per checkpoint equal the dirty segments of each SLRU', async () => {
    const disk = new SimDisk();
    // slruBuffers 8 is small: evictions before the checkpoint too.
    await withEngine(onDisk(disk, { slruBuffers: 8 }), async (engine) => {
      // clog: three segments; commit_ts: 819 xids per page, 26208 per segment.
      for (const seg of [0, 2, 5]) {
        for (let k = 0; k < 10; k++) await engine.clog.setStatus(seg * XIDS_PER_SEGMENT + k * XIDS_PER_PAGE, ClogStatus.COMMITTED);
      }
      for (let xid = 0; xid < 4 * 26208; xid += 500) await engine.commitTs.set(xid, 1n + BigInt(xid));
      // multixact: 2000 mxids of 3 members fill 6000 members = 4 member pages (one segment) and
      // 2 offsets pages (one segment).
      for (let i = 0; i < 2000; i++) await engine.multixact.create([{ xid: i, status: 0 }, { xid: i + 1, status: 1 }, { xid: i + 2, status: 5 }]);
      const before = engine.ioCounts();
      const stats = await engine.checkpoint();
      const after = engine.ioCounts();
      expect(stats.tagsDispatched).toEqual({ clog: 3, commit_ts: 4, multixact_offset: 1, multixact_member: 1 });
      expect(stats.syncFiles).toBe(9);
      // Every fsync of the checkpoint: one per segment, one per SLRU directory that gained
      // files, and the control file's (written in place: no directory).
      const dirSyncs = 4;
      expect(after.fsync - before.fsync).toBe(9 + 1);
      expect(after.fsyncDir - before.fsyncDir).toBe(dirSyncs);
      expect(stats.fsyncCalls).toBe(9 + 1 + dirSyncs);

      // Only what was dirtied since is synced by the next checkpoint.
      await engine.clog.setStatus(5 * XIDS_PER_SEGMENT + 3, ClogStatus.ABORTED);
      await engine.commitTs.set(3 * 26208 + 1, 77n);
      const s2 = await engine.checkpoint();
      expect(s2.tagsDispatched).toEqual({ clog: 1, commit_ts: 1 });
      expect(s2.fsyncCalls).toBe(2 + 1); // no new segment; the control file
      const s3 = await engine.checkpoint();
      expect(s3.tagsDispatched).toEqual({});
      expect(s3.fsyncCalls).toBe(1); // a forced checkpoint still records itself in the control file
    });
  });

  it('behaviour 44: truncation forgets pending syncs of removed segments, which are then not synced', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      for (const seg of [0, 1, 2]) await engine.clog.setStatus(seg * XIDS_PER_SEGMENT + 9, ClogStatus.COMMITTED);
      // Write the pages outside a checkpoint: three SYNC requests wait in the queue.
      await engine.clog.slru.writeAll();
      expect(engine.clog.slru.stats.syncRequests).toBe(3);
      expect(await engine.clog.truncate(2 * XIDS_PER_SEGMENT + 100)).toBe(2);
      expect(disk.readFileNow('/data/pg_xact/0000')).toBeNull();
      expect(disk.readFileNow('/data/pg_xact/0001')).toBeNull();
      const stats = await engine.checkpoint();
      expect(stats.tagsDispatched).toEqual({ clog: 1 }); // segment 2 only; no ENOENT, no failure
      expect(engine.failed).toBe(false);
      await expect(engine.clog.getStatus(9)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('truncated') });
      expect(await engine.clog.getStatus(2 * XIDS_PER_SEGMENT + 9)).toBe(ClogStatus.COMMITTED);
      // commit_ts truncates the same way.
      await engine.commitTs.set(5, 5n);
      await engine.commitTs.set(26208 * 3, 6n);
      await engine.checkpoint();
      expect(await engine.commitTs.truncate(26208 * 3)).toBe(1);
      await expect(engine.commitTs.get(5)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      expect(await engine.commitTs.get(26208 * 3)).toEqual({ timestampUs: 6n, originId: 0 });
    });
    // After a restart the cutoff is the lowest segment left on disk.
    await withEngine(onDisk(disk), async (reopened) => {
      await expect(reopened.clog.getStatus(XIDS_PER_SEGMENT)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      expect(await reopened.clog.getStatus(2 * XIDS_PER_SEGMENT + 9)).toBe(ClogStatus.COMMITTED);
    });
  });

  it('bad input: xids outside uint32, unknown statuses, bad timestamps and origins are BAD_ARGUMENT', async () => {
    await withEngine(onDisk(new SimDisk()), async (engine) => {
      for (const xid of [-1, 2 ** 32, 1.5, Number.NaN, '7' as unknown as number]) {
        await expect(engine.clog.setStatus(xid, ClogStatus.COMMITTED)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('xid') });
        await expect(engine.clog.getStatus(xid)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
        await expect(engine.commitTs.get(xid)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      }
      for (const status of [4, -1, 1.5, null]) {
        await expect(engine.clog.setStatus(1, status as unknown as ClogStatus)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('status') });
      }
      await expect(engine.commitTs.set(1, 5 as unknown as bigint)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('timestampUs') });
      await expect(engine.commitTs.set(1, 1n << 63n)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      await expect(engine.commitTs.set(1, 1n, 65536)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('originId') });
      await engine.commitTs.set(1, -5n, 65535);
      expect(await engine.commitTs.get(1)).toEqual({ timestampUs: -5n, originId: 65535 });
      // commit_ts layout: 10-byte entries, 819 per page, little-endian.
      await engine.commitTs.set(819 + 2, 0x0102030405060708n, 0x0a0b);
      await engine.checkpoint();
    });
  });

  it('commit_ts entries sit at (x % 819) * 10 of page x / 819, timestamp then origin', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      await engine.commitTs.set(819 + 2, 0x0102030405060708n, 0x0a0b);
      await engine.checkpoint();
      const bytes = disk.readFileDurable('/data/pg_commit_ts/0000')!;
      const at = 8192 + 2 * 10;
      expect([...bytes.subarray(at, at + 10)]).toEqual([8, 7, 6, 5, 4, 3, 2, 1, 0x0b, 0x0a]);
      expect(engine.commitTs.xidsPerPage).toBe(819);
    });
  });

  it('a full request queue makes the SLRU fsync its segment itself, counted in backendFsyncs', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, syncQueueSize: 1, slruBuffers: 4 }, async (engine) => {
      // Eight pages in eight segments through four buffers: four evictions, each a different
      // segment, so the one-slot queue cannot compact and refuses all but the first.
      for (let seg = 0; seg < 8; seg++) await engine.clog.setStatus(seg * XIDS_PER_SEGMENT, ClogStatus.COMMITTED);
      expect(engine.clog.slru.stats.pagesWritten).toBe(4);
      expect(engine.clog.slru.stats.backendFsyncs).toBe(3);
      expect(disk.readFileNow('/data/pg_xact/0001')).not.toBeNull();
      const stats = await engine.checkpoint();
      expect(stats.backendFsyncs).toBe(3);
      // The queued one and the four still buffered are synced by the checkpoint.
      expect(stats.tagsDispatched).toEqual({ clog: 5 });
    });
  });

  it('concurrent calls and a checkpoint interleave safely through few buffers', async () => {
    const disk = new SimDisk();
    const xids = Array.from({ length: 2000 }, (_, i) => (i % 10) * XIDS_PER_PAGE * 3 + i);
    await withEngine(onDisk(disk, { slruBuffers: 4 }), async (engine) => {
      const work: Promise<unknown>[] = xids.map((x) => engine.clog.setStatus(x, statusOf(x)));
      work.push(engine.checkpoint());
      await Promise.all(work);
      const got = await Promise.all(xids.map((x) => engine.clog.getStatus(x)));
      expect(got).toEqual(xids.map(statusOf));
      engine.clog.checkInvariants();
    });
    await withEngine(onDisk(disk), async (reopened) => {
      for (const x of xids) {
        const got = await reopened.clog.getStatus(x);
        if (got !== statusOf(x)) expect({ x, got }).toEqual({ x, got: statusOf(x) });
      }
    });
  });

  it('an idle checkpoint of a fresh data directory makes no SLRU I/O: its control file record is all it writes', async () => {
    await withEngine(onDisk(new SimDisk()), async (engine) => {
      const before = engine.ioCounts();
      const stats = await engine.checkpoint();
      const after = engine.ioCounts();
      expect(stats.fsyncCalls).toBe(1);
      expect(stats.bytesWritten).toBe(512);
      expect(after.open - before.open).toBe(0);
    });
  });

  it('after close every SLRU call is ENGINE_CLOSED; in the failed state changes are ENGINE_FAILED', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk);
    const clog = engine.clog;
    await engine.close();
    await expect(clog.setStatus(1, ClogStatus.COMMITTED)).rejects.toMatchObject({ code: ErrorCode.ENGINE_CLOSED });
    expect(() => engine.clog).toThrow(expect.objectContaining({ code: ErrorCode.ENGINE_CLOSED }));

    await withEngine(onDisk(disk), async (e2) => {
      await e2.clog.setStatus(1, ClogStatus.COMMITTED);
      disk.injectFault({ kind: 'fsync', code: 'EIO', pathIncludes: 'pg_xact' });
      const err = await e2.checkpoint().catch((x: unknown) => x);
      expect(isLamstoreError(err)).toBe(true);
      expect(e2.failed).toBe(true);
      await expect(e2.clog.setStatus(2, ClogStatus.COMMITTED)).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
      expect(await e2.clog.getStatus(1)).toBe(ClogStatus.COMMITTED); // reads keep working
    }, { closeRejects: ErrorCode.ENGINE_FAILED });
  });
});
