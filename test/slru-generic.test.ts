/**
 * Goal: the generic SLRU (engine/slru/slru.ts) keeps its contract S1-S7: fixed page buffers
 * with LRU replacement, one page per physical write with one SYNC request per write, the
 * queue-full fallback fsync, the directory fsync for new segments, FORGET before unlink, zeros
 * for pages not on disk, DATA_CORRUPT for a malformed segment, and no sync traffic at all with
 * handler NONE (behaviour 8).
 * Method: an Slru on a SimDisk behind CountingIO, with a fake engine context that records every
 * sync request in one event log shared with the unlinks, so order is visible. Calls are
 * counted, never timed.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, SyncHandlerId, SyncRequestType, isLamstoreError } from '../engine/index.js';
import { CountingIO, SimDisk } from '../engine/testing.js';
import { SLRU_PAGES_PER_SEGMENT } from '../engine/slru/names.js';
import { Slru } from '../engine/slru/slru.js';
import type { FileTag } from '../engine/index.js';
import type { SlruContext } from '../engine/slru/slru.js';
import { BS } from './helpers/engine.js';


class LoggingIO extends CountingIO {
  constructor(
    inner: SimDisk,
    readonly log: string[],
  ) {
    super(inner);
  }
  override async unlink(path: string): Promise<void> {
    this.log.push(`unlink ${path.slice(path.lastIndexOf('/') + 1)}`);
    await super.unlink(path);
  }
}

interface Fake {
  ctx: SlruContext;
  io: LoggingIO;
  disk: SimDisk;
  log: string[];
  requests: { tag: FileTag; type: number; retryOnError: boolean }[];
  backendFsyncs: number;
  failures: unknown[];
  /** Make registerSyncRequest refuse SYNC requests (a full queue). */
  queueFull: boolean;
}

async function fake(): Promise<Fake> {
  const disk = new SimDisk();
  await disk.mkdir('/data');
  await disk.fsyncDir('/');
  const log: string[] = [];
  const io = new LoggingIO(disk, log);
  const f: Fake = {
    io,
    disk,
    log,
    requests: [],
    backendFsyncs: 0,
    failures: [],
    queueFull: false,
    ctx: undefined as unknown as SlruContext,
  };
  f.ctx = {
    io,
    dataDir: '/data',
    blockSize: BS,
    async registerSyncRequest(tag, type, retryOnError) {
      const names = ['SYNC', 'UNLINK', 'FORGET', 'FILTER'];
      log.push(`${names[type]} ${tag.segno}`);
      f.requests.push({ tag, type, retryOnError });
      return !(f.queueFull && type === SyncRequestType.SYNC);
    },
    countBackendFsync() {
      f.backendFsyncs++;
    },
    reportSyncFailure(err) {
      f.failures.push(err);
      throw new Error('engine failed');
    },
  };
  return f;
}

function fill(page: Uint8Array, value: number): void {
  page.fill(value);
}

describe('generic SLRU', () => {
  it('behaviour 8: an SLRU with SyncHandlerId.NONE issues no sync requests at all', async () => {
    const f = await fake();
    const slru = await Slru.open(f.ctx, { name: 'subtrans', dirRelative: 'pg_subtrans', handler: SyncHandlerId.NONE, bufferCount: 4 });
    // New segments, evictions, a checkpoint, a truncation: every path that could ask.
    for (let p = 0; p < 3 * SLRU_PAGES_PER_SEGMENT; p += 5) await slru.modifyPage(p, (pg) => fill(pg, p & 0xff));
    await slru.writeAll();
    await slru.truncateBefore(2 * SLRU_PAGES_PER_SEGMENT);
    slru.checkInvariants();
    expect(f.requests).toEqual([]);
    expect(f.io.counts().fsync).toBe(0);
    expect(f.io.counts().fsyncDir).toBe(0);
    expect(slru.stats.pagesWritten).toBeGreaterThan(0);
    expect(slru.stats.segmentsRemoved).toBe(2);
  });

  it('a physical write opens (creating) the segment, writes one page and queues one SYNC for it', async () => {
    const f = await fake();
    const slru = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG, bufferCount: 4 });
    const page = 0x1f * SLRU_PAGES_PER_SEGMENT + 3; // segment 0x1F, 4th page
    await slru.modifyPage(page, (pg) => fill(pg, 0xab));
    const before = f.io.counts();
    await slru.writeAll();
    const after = f.io.counts();
    expect(after.pwrite - before.pwrite).toBe(1);
    expect(after.bytesWritten - before.bytesWritten).toBe(BS);
    expect(f.requests).toEqual([{ tag: { handler: 1, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno: 0x1f }, type: SyncRequestType.SYNC, retryOnError: false }]);
    const bytes = f.disk.readFileNow('/data/pg_xact/001F')!;
    expect(bytes.length).toBe(4 * BS); // pages 0-2 are a hole
    expect(bytes[3 * BS]).toBe(0xab);
    expect(bytes[3 * BS - 1]).toBe(0);
    // A new segment makes the directory fsync part of the SLRU checkpoint; the file's own
    // fsync is left to the sync phase.
    expect(after.fsyncDir - before.fsyncDir).toBe(1);
    expect(after.fsync - before.fsync).toBe(0);
    // Rewriting an existing segment needs no directory fsync.
    await slru.modifyPage(page, (pg) => fill(pg, 0xcd));
    const b2 = f.io.counts();
    await slru.writeAll();
    expect(f.io.counts().fsyncDir - b2.fsyncDir).toBe(0);
    // Segment names: uppercase hex, at least 4 digits, more when needed.
    expect(slru.segmentPath(0x12345)).toBe('/data/pg_xact/12345');
    expect(slru.segmentPath(0)).toBe('/data/pg_xact/0000');
  });

  it('buffers are fixed and replaced least recently used first; a dirty victim is written first', async () => {
    const f = await fake();
    const slru = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG, bufferCount: 4 });
    for (let p = 0; p < 4; p++) await slru.modifyPage(p, (pg) => fill(pg, p + 1));
    await slru.readPage(0, () => undefined); // page 1 is now the least recently used
    expect(slru.stats.pagesWritten).toBe(0);
    await slru.modifyPage(4, (pg) => fill(pg, 5));
    expect(slru.stats.pagesWritten).toBe(1);
    expect(f.disk.readFileNow('/data/pg_xact/0000')![BS]).toBe(2); // page 1 went out
    expect(f.requests.map((r) => r.type)).toEqual([SyncRequestType.SYNC]);
    const reads = slru.stats.pagesRead;
    expect(await slru.readPage(0, (pg) => pg[0])).toBe(1); // still buffered
    expect(slru.stats.pagesRead).toBe(reads);
    expect(await slru.readPage(1, (pg) => pg[100])).toBe(2); // read back from disk
    expect(slru.stats.pagesRead).toBe(reads + 1);
    expect(slru.dirtyPageCount()).toBeLessThanOrEqual(4);
    slru.checkInvariants();
  });

  it('a refused SYNC request (full queue) is paid for by an inline fsync, counted as a backend fsync', async () => {
    const f = await fake();
    const slru = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG, bufferCount: 4 });
    f.queueFull = true;
    await slru.modifyPage(0, (pg) => fill(pg, 7));
    const before = f.io.counts().fsync;
    await slru.writeAll();
    expect(f.io.counts().fsync - before).toBe(1);
    expect(f.backendFsyncs).toBe(1);
    expect(slru.stats.backendFsyncs).toBe(1);
    expect(f.disk.readFileDurable('/data/pg_xact/0000')?.[0]).toBe(7);

    // A failing inline fsync goes to reportSyncFailure (the engine's failed state).
    f.disk.injectFault({ kind: 'fsync', code: 'EIO' });
    await slru.modifyPage(1, (pg) => fill(pg, 8));
    await expect(slru.writeAll()).rejects.toThrow('engine failed');
    expect(f.failures.length).toBe(1);
    expect(isLamstoreError(f.failures[0], ErrorCode.IO_ERROR)).toBe(true);
    expect(String((f.failures[0] as Error).message)).toContain('/data/pg_xact/0000');
    expect(f.io.counts().openHandles).toBe(0);
  });

  it('behaviour 44: truncation sends FORGET for a segment before unlinking it', async () => {
    const f = await fake();
    const slru = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG, bufferCount: 8 });
    for (const seg of [0, 1, 2]) await slru.modifyPage(seg * SLRU_PAGES_PER_SEGMENT, (pg) => fill(pg, seg + 1));
    await slru.writeAll();
    await slru.modifyPage(SLRU_PAGES_PER_SEGMENT + 1, (pg) => fill(pg, 9)); // dirty, buffered, doomed
    f.log.length = 0;
    const removed = await slru.truncateBefore(2 * SLRU_PAGES_PER_SEGMENT + 5);
    expect(removed).toBe(2);
    expect(f.log).toEqual(['FORGET 0', 'unlink 0000', 'FORGET 1', 'unlink 0001']);
    const forgets = f.requests.filter((r) => r.type === SyncRequestType.FORGET);
    expect(forgets.every((r) => r.retryOnError)).toBe(true);
    expect(slru.segments()).toEqual([2]);
    expect(slru.dirtyPageCount()).toBe(0); // the doomed dirty page was discarded, not written
    expect(f.disk.readFileNow('/data/pg_xact/0001')).toBeNull();
    // Truncated pages are refused; kept ones still read.
    await expect(slru.readPage(SLRU_PAGES_PER_SEGMENT, () => 0)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
    expect(await slru.readPage(2 * SLRU_PAGES_PER_SEGMENT, (pg) => pg[0])).toBe(3);
    // The removal is made durable by the next SLRU checkpoint's directory fsync.
    const before = f.io.counts().fsyncDir;
    await slru.writeAll();
    expect(f.io.counts().fsyncDir - before).toBe(1);
    slru.checkInvariants();
  });

  it('pages not on disk read as zeros (missing segment, or past the end of one)', async () => {
    const f = await fake();
    const slru = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG, bufferCount: 4 });
    await slru.modifyPage(2, (pg) => fill(pg, 1));
    await slru.writeAll();
    const reopened = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG, bufferCount: 4 });
    expect(await reopened.readPage(2, (pg) => pg[BS - 1])).toBe(1);
    expect(await reopened.readPage(7, (pg) => pg.every((b) => b === 0))).toBe(true); // past the end
    expect(await reopened.readPage(5 * SLRU_PAGES_PER_SEGMENT, (pg) => pg.every((b) => b === 0))).toBe(true); // no file
    expect(reopened.stats.pagesRead).toBe(1); // zero pages cost no I/O
  });

  it('a segment file longer than 32 pages found at open is DATA_CORRUPT naming the file; a partial last page (torn extension) reads as zeros', async () => {
    {
      // S7: what a power loss during an unsynced extending write can leave (crash matrix finding).
      const f = await fake();
      await f.disk.mkdir('/data/pg_commit_ts');
      const bytes = new Uint8Array(BS + 100).fill(7);
      f.disk.putFile('/data/pg_commit_ts/0003', bytes);
      const slru = await Slru.open(f.ctx, { name: 'commit_ts', dirRelative: 'pg_commit_ts', handler: SyncHandlerId.COMMIT_TS });
      const base = 3 * SLRU_PAGES_PER_SEGMENT;
      expect(await slru.readPage(base, (pg) => pg.every((b) => b === 7))).toBe(true);
      expect(await slru.readPage(base + 1, (pg) => pg.every((b) => b === 0))).toBe(true);
      slru.checkInvariants();
    }
    for (const sizeBytes of [33 * BS, 33 * BS + 100]) {
      const f = await fake();
      await f.disk.mkdir('/data/pg_commit_ts');
      f.disk.putFile('/data/pg_commit_ts/0003', new Uint8Array(sizeBytes));
      const err = await Slru.open(f.ctx, { name: 'commit_ts', dirRelative: 'pg_commit_ts', handler: SyncHandlerId.COMMIT_TS }).catch((e: unknown) => e);
      expect(isLamstoreError(err, ErrorCode.DATA_CORRUPT)).toBe(true);
      expect((err as Error).message).toContain('/data/pg_commit_ts/0003');
    }
    // Names that are not canonical segment names are ignored, as SlruScanDirectory does.
    const f = await fake();
    await f.disk.mkdir('/data/pg_xact');
    f.disk.putFile('/data/pg_xact/README', new Uint8Array(3));
    f.disk.putFile('/data/pg_xact/00001', new Uint8Array(5));
    const slru = await Slru.open(f.ctx, { name: 'clog', dirRelative: 'pg_xact', handler: SyncHandlerId.CLOG });
    expect(slru.segments()).toEqual([]);
  });

  it('bad options are BAD_ARGUMENT naming the option', async () => {
    const f = await fake();
    await expect(Slru.open(f.ctx, { name: 'x', dirRelative: 'x', handler: SyncHandlerId.CLOG, bufferCount: 1 })).rejects.toThrow(/bufferCount/);
    await expect(Slru.open(f.ctx, { name: 'x', dirRelative: 'x', handler: -2 })).rejects.toThrow(/handler/);
    await expect(Slru.open(f.ctx, { name: '', dirRelative: 'x', handler: 1 })).rejects.toThrow(/name/);
  });
});
