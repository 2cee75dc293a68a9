/**
 * Goal: md's segment files behave as PostgreSQL's md.c (reference section 7, behaviours 35-38)
 * and register exactly the sync requests it should.
 * Method: an MdStorageManager on a SimDisk with a recording SmgrContext, so every sync request
 * and every file operation lands in one ordered log; plus Engine-level checks of the same
 * behaviours through the relation API and checkpoints. relSegBlocks is 4 so segments are small.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, ForkNumber, SyncRequestType, isLamstoreError, type FileTag, type RelFileLocator } from '../engine/index.js';
import { SimDisk, CountingIO } from '../engine/testing.js';
import { MdStorageManager } from '../engine/md/md.js';
import type { SmgrContext } from '../engine/smgr/smgr.js';
import { systemClock } from '../engine/clock.js';
import { tempDir } from './helpers/index.js';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { withEngine, BS, pageOf, locator } from './helpers/engine.js';

const SEG = 4;
const REL: RelFileLocator = locator(700);
const TYPE_NAMES = ['SYNC', 'UNLINK', 'FORGET', 'FILTER'];

interface Harness {
  disk: SimDisk;
  md: MdStorageManager;
  log: string[];
  /** Answer of registerSyncRequest for SYNC with retryOnError false. */
  accept: { value: boolean };
  backendFsyncs: { n: number };
  failures: unknown[];
}

function harness(): Harness {
  const disk = new SimDisk();
  const log: string[] = [];
  const accept = { value: true };
  const backendFsyncs = { n: 0 };
  const failures: unknown[] = [];
  disk.onCall = (_i, kind, path) => {
    if (kind === 'unlink' || kind === 'ftruncate' || kind === 'fsync' || kind === 'fsyncDir') log.push(`${kind} ${path.replace('/data/', '')}`);
  };
  const ctx: SmgrContext = {
    io: disk,
    dataDir: '/data',
    blockSize: BS,
    clock: systemClock,
    relSegBlocks: SEG,
    maxOpenFiles: 8,
    sharedBuffers: 16,
    enableFsync: true,
    dataSyncRetry: false,
    async registerSyncRequest(tag: FileTag, type, retryOnError) {
      log.push(`${TYPE_NAMES[type]} fork=${tag.forkNum} seg=${tag.segno} retry=${retryOnError}`);
      return type === SyncRequestType.SYNC && !retryOnError ? accept.value : true;
    },
    trySyncRequest(tag: FileTag, type) {
      log.push(`${TYPE_NAMES[type]} fork=${tag.forkNum} seg=${tag.segno} retry=false`);
      return type === SyncRequestType.SYNC ? accept.value : true;
    },
    countBackendFsync: () => backendFsyncs.n++,
    reportSyncFailure(err): never {
      failures.push(err);
      throw err;
    },
  };
  return { disk, md: new MdStorageManager(ctx), log, accept, backendFsyncs, failures };
}

const sizeOf = (disk: SimDisk, rel: string) => disk.readFileNow(`/data/${rel}`)?.length ?? null;

async function fill(md: MdStorageManager, fork: ForkNumber, n: number): Promise<void> {
  for (let b = 0; b < n; b++) await md.extend(REL, fork, b, pageOf(b + 1));
}

describe('md segments', () => {
  it('behaviour 37: extending past a segment boundary pads the previous segment; files <rel>, <rel>.1, <rel>.2', async () => {
    const { disk, md, log } = harness();
    await md.create(REL, ForkNumber.MAIN);
    await md.extend(REL, ForkNumber.MAIN, 0, pageOf(1));
    log.length = 0;
    // Jump to block 2*SEG+1: segment 0 is padded to SEG blocks, segment 1 created and padded.
    await md.extend(REL, ForkNumber.MAIN, 2 * SEG + 1, pageOf(9));
    expect(sizeOf(disk, 'base/5/700')).toBe(SEG * BS);
    expect(sizeOf(disk, 'base/5/700.1')).toBe(SEG * BS);
    expect(sizeOf(disk, 'base/5/700.2')).toBe(2 * BS);
    expect(sizeOf(disk, 'base/5/700.3')).toBeNull();
    expect(await md.nblocks(REL, ForkNumber.MAIN)).toBe(2 * SEG + 2);
    // One SYNC per dirtied segment, retryOnError false (register_dirty_segment).
    expect(log).toEqual(['SYNC fork=0 seg=0 retry=false', 'SYNC fork=0 seg=1 retry=false', 'SYNC fork=0 seg=2 retry=false']);
    const back = new Uint8Array(BS);
    await md.read(REL, ForkNumber.MAIN, 2 * SEG + 1, back);
    expect(back[0]).toBe(9);
    await md.read(REL, ForkNumber.MAIN, SEG + 1, back);
    expect(back.every((b) => b === 0)).toBe(true);
    md.checkInvariants();
  });

  it('behaviour 37 through the relation API: appends fill each segment to exactly relSegBlocks', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 16, relSegBlocks: SEG }, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      for (let i = 0; i < 2 * SEG + 3; i++) await rel.extend(ForkNumber.MAIN, pageOf(i + 1));
      expect(disk.listFiles().filter((f) => f.startsWith('/data/base/5/700'))).toEqual(['/data/base/5/700', '/data/base/5/700.1', '/data/base/5/700.2']);
      expect(sizeOf(disk, 'base/5/700')).toBe(SEG * BS);
      expect(sizeOf(disk, 'base/5/700.1')).toBe(SEG * BS);
      expect(sizeOf(disk, 'base/5/700.2')).toBe(3 * BS);
    });
  });

  it('behaviour 36: truncation inside segment k leaves later segments at length 0 and registers each touched segment', async () => {
    const { disk, md, log } = harness();
    await md.create(REL, ForkNumber.MAIN);
    await fill(md, ForkNumber.MAIN, 3 * SEG + 2); // segments 0..3
    log.length = 0;
    await md.truncate(REL, ForkNumber.MAIN, SEG + 1); // new end inside segment 1
    expect(sizeOf(disk, 'base/5/700')).toBe(SEG * BS);
    expect(sizeOf(disk, 'base/5/700.1')).toBe(BS);
    expect(sizeOf(disk, 'base/5/700.2')).toBe(0);
    expect(sizeOf(disk, 'base/5/700.3')).toBe(0);
    expect(log).toEqual([
      'ftruncate base/5/700.3',
      'SYNC fork=0 seg=3 retry=false',
      'ftruncate base/5/700.2',
      'SYNC fork=0 seg=2 retry=false',
      'ftruncate base/5/700.1',
      'SYNC fork=0 seg=1 retry=false',
    ]);
    expect(await md.nblocks(REL, ForkNumber.MAIN)).toBe(SEG + 1);
    // An exact multiple keeps segment K at length 0 and does not touch segment K-1.
    log.length = 0;
    await md.truncate(REL, ForkNumber.MAIN, SEG);
    expect(sizeOf(disk, 'base/5/700')).toBe(SEG * BS);
    expect(sizeOf(disk, 'base/5/700.1')).toBe(0);
    expect(log).toEqual(['ftruncate base/5/700.1', 'SYNC fork=0 seg=1 retry=false']);
    // Regrowing reuses the inactive segments.
    await md.extend(REL, ForkNumber.MAIN, SEG, pageOf(77));
    expect(sizeOf(disk, 'base/5/700.1')).toBe(BS);
    expect(await md.nblocks(REL, ForkNumber.MAIN)).toBe(SEG + 1);
    md.checkInvariants();
  });

  it('behaviour 35: drop truncates main segment 0 and tombstones it; other segments and forks go at once, each after its FORGET', async () => {
    const { disk, md, log } = harness();
    await md.create(REL, ForkNumber.MAIN);
    await md.create(REL, ForkNumber.FSM);
    await fill(md, ForkNumber.MAIN, 2 * SEG + 1); // segments 0..2
    await fill(md, ForkNumber.FSM, SEG + 1); // segments 0..1
    log.length = 0;
    await md.unlink(REL);
    expect(log).toEqual([
      // M4a: the drop is recorded durably first (the log is new: its directory too).
      'fsync lam_pending_unlinks',
      'fsyncDir /data',
      'ftruncate base/5/700',
      'UNLINK fork=0 seg=0 retry=true',
      'ftruncate base/5/700.1',
      'FORGET fork=0 seg=1 retry=true',
      'unlink base/5/700.1',
      'ftruncate base/5/700.2',
      'FORGET fork=0 seg=2 retry=true',
      'unlink base/5/700.2',
      'ftruncate base/5/700_fsm',
      'FORGET fork=1 seg=0 retry=true',
      'unlink base/5/700_fsm',
      'ftruncate base/5/700_fsm.1',
      'FORGET fork=1 seg=1 retry=true',
      'unlink base/5/700_fsm.1',
    ]);
    expect(disk.listFiles().filter((f) => f.includes('/700'))).toEqual(['/data/base/5/700']);
    expect(sizeOf(disk, 'base/5/700')).toBe(0);
    expect(await md.exists(REL, ForkNumber.MAIN)).toBe(false);
    // Creating it again while the tombstone is pending is refused (its UNLINK would remove it).
    const err = await md.create(REL, ForkNumber.MAIN).catch((e: unknown) => e);
    expect(isLamstoreError(err, ErrorCode.BAD_ARGUMENT)).toBe(true);
  });

  it('behaviour 35 in the engine: the tombstone disappears only at the end of the next checkpoint', async () => {
    const disk = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk, sharedBuffers: 16, relSegBlocks: SEG }, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN);
      await rel.create(ForkNumber.VISIBILITY_MAP);
      for (let i = 0; i < 2 * SEG + 1; i++) await rel.extend(ForkNumber.MAIN, pageOf(i + 1));
      await rel.extend(ForkNumber.VISIBILITY_MAP, pageOf(3));
      await rel.write(ForkNumber.MAIN, 5, pageOf(55)); // a dirty buffer, discarded by the drop
      await rel.drop();
      expect(disk.listFiles().filter((f) => f.includes('/700'))).toEqual(['/data/base/5/700']);
      expect(sizeOf(disk, 'base/5/700')).toBe(0);
      const stats = await engine.checkpoint();
      expect(stats.unlinks).toBe(1);
      expect(stats.buffersWritten).toBe(0); // the dropped relation's dirty buffer was discarded
      expect(disk.listFiles().filter((f) => f.includes('/700'))).toEqual([]);
      // After the checkpoint the relation may be created again.
      await rel.create(ForkNumber.MAIN);
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(0);
      engine.bufferPool.checkInvariants(true);
    });
  });

  it('behaviour 38: paths base/<db>/<rel>[_fsm|_vm|_init], global/<rel>, pg_tblspc/<spc>/PG_<major>_<catver>/<db>/<rel>', async () => {
    const dataDir = await tempDir();
    await withEngine({ dataDir, sharedBuffers: 16 }, async (engine) => {
      const rel = engine.relation(locator(16384));
      for (const f of [ForkNumber.MAIN, ForkNumber.FSM, ForkNumber.VISIBILITY_MAP, ForkNumber.INIT]) await rel.create(f);
      const glob = engine.relation({ spcOid: 1664, dbOid: 0, relNumber: 1262 });
      await glob.create(ForkNumber.MAIN);
      const ts = engine.relation({ spcOid: 16500, dbOid: 5, relNumber: 16390 });
      await ts.create(ForkNumber.FSM);
      for (const p of ['base/5/16384', 'base/5/16384_fsm', 'base/5/16384_vm', 'base/5/16384_init', 'global/1262', 'pg_tblspc/16500/PG_17_202406281/5/16390_fsm']) {
        expect((await stat(join(dataDir, p))).isFile(), p).toBe(true);
      }
    });
  });

  it('a refused SYNC request makes md fsync the segment itself and count a backend fsync', async () => {
    const { md, log, accept, backendFsyncs } = harness();
    await md.create(REL, ForkNumber.MAIN);
    accept.value = false;
    log.length = 0;
    await md.extend(REL, ForkNumber.MAIN, 0, pageOf(1));
    expect(log).toEqual(['SYNC fork=0 seg=0 retry=false', 'fsync base/5/700', 'fsyncDir base/5', 'fsyncDir base', 'fsyncDir /data']);
    expect(backendFsyncs.n).toBe(1);
  });

  it('a failed backend fsync goes to reportSyncFailure (the engine fails)', async () => {
    const { disk, md, accept, failures } = harness();
    await md.create(REL, ForkNumber.MAIN);
    accept.value = false;
    disk.injectFault({ kind: 'fsync', code: 'EIO' });
    await expect(md.extend(REL, ForkNumber.MAIN, 0, pageOf(1))).rejects.toThrow();
    expect(failures.length).toBe(1);

    const disk2 = new SimDisk();
    await withEngine({ dataDir: '/data', io: disk2, sharedBuffers: 16, syncQueueSize: 1 }, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN); // fills the one-slot queue
      disk2.injectFault({ kind: 'fsync', code: 'EIO' });
      const err = await rel.extend(ForkNumber.MAIN).catch((e: unknown) => e);
      expect(isLamstoreError(err, ErrorCode.ENGINE_FAILED)).toBe(true);
      expect(engine.failed).toBe(true);
      await expect(engine.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    });
  });

  it('a full queue makes engine writes fall back to backend fsyncs, reported in CheckpointStats', async () => {
    const disk = new SimDisk();
    const io = new CountingIO(disk);
    await withEngine({ dataDir: '/data', io, sharedBuffers: 16, syncQueueSize: 1, relSegBlocks: SEG }, async (engine) => {
      const rel = engine.relation(REL);
      await rel.create(ForkNumber.MAIN); // seg 0 SYNC fills the queue
      for (let i = 0; i < 2 * SEG; i++) await rel.extend(ForkNumber.MAIN); // seg 1 cannot be queued
      const stats = await engine.checkpoint();
      expect(stats.backendFsyncs).toBeGreaterThan(0);
    });
  });
});
