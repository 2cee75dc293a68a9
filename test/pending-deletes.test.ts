/**
 * Goal: pending deletes survive a crash (engine/md/pending-unlinks.ts PU1-PU6, md.ts M4a,
 * DESIGN.md section 8 D4: "an md relation dropped before the crash is gone after the next
 * open"). A dropped md relation keeps a zero-length placeholder of its main fork until the next
 * checkpoint unlinks it; a crash before that used to leave the placeholder for good. Now the drop
 * is recorded durably before the placeholder exists and the next open removes what is left, but
 * never a file created again since, and never a relation whose drop did not begin.
 * Method: SimDisk; processCrash for kill -9 (page cache kept), crash(mode, seed) for power loss,
 * images taken before every call of a drop in every crash mode; the log's own codec and
 * compaction through the PendingUnlinkLog class on a SimDisk.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, SyncHandlerId, SyncRequestType } from '../engine/index.js';
import type { RelFileLocator } from '../engine/index.js';
import { CRASH_MODES, SimDisk } from '../engine/testing.js';
import { LOG_ENTRIES_MAX, LOG_ENTRY_BYTES, LogEntryKind, PENDING_UNLINKS_FILE, PendingUnlinkLog, decodeLogEntry, encodeLogEntry, pendingOf } from '../engine/md/pending-unlinks.js';
import { locator, onDisk, openOn, pageOf, withEngine } from './helpers/engine.js';

const SEG = 2;
const LOG = `/data/${PENDING_UNLINKS_FILE}`;
const X = locator(700);
const OTHER = locator(701);

/** Files of relation 700 in base/5, sorted. */
function filesOf(disk: SimDisk, relNumber = 700): string[] {
  return disk.listFiles().filter((f) => new RegExp(`^/data/base/5/${relNumber}(_[a-z]+)?(\\.\\d+)?$`).test(f));
}

/** X with a main fork of 5 blocks (3 segments) and an FSM fork of 1; OTHER with 2 blocks. Checkpointed. */
async function setUp(engine: Engine): Promise<void> {
  const x = engine.relation(X);
  await x.create(ForkNumber.MAIN);
  await x.create(ForkNumber.FSM);
  for (let b = 0; b < 5; b++) await x.extend(ForkNumber.MAIN, pageOf(b + 1));
  await x.extend(ForkNumber.FSM, pageOf(9));
  const o = engine.relation(OTHER);
  await o.create(ForkNumber.MAIN);
  for (let b = 0; b < 2; b++) await o.extend(ForkNumber.MAIN, pageOf(20 + b));
  await engine.checkpoint();
}

const options = (disk: SimDisk) => onDisk(disk, { relSegBlocks: SEG, sharedBuffers: 16 });

async function expectOtherIntact(engine: Engine): Promise<void> {
  const o = engine.relation(OTHER);
  expect(await o.nblocks(ForkNumber.MAIN)).toBe(2);
  expect((await o.read(ForkNumber.MAIN, 1))[100]).toBe(21);
}

describe('a relation dropped before a crash is gone after the next open', () => {
  it('drop, crash before the checkpoint (kill -9, and a power loss that also loses the unsynced truncation), reopen: every file of it gone, the log emptied', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { relSegBlocks: SEG, sharedBuffers: 16 });
    await setUp(engine);
    await engine.relation(X).drop();
    expect(filesOf(disk)).toEqual(['/data/base/5/700']); // the placeholder, until the next checkpoint
    expect(disk.readFileNow('/data/base/5/700')!.length).toBe(0);
    const powerLoss = disk.crash('drop', 1);
    // The placeholder's truncation was never synced: the power loss gives the old main fork back.
    expect(powerLoss.readFileNow('/data/base/5/700')!.length).toBe(2 * 8192);
    disk.processCrash();
    for (const [what, d] of [
      ['kill -9', disk],
      ['power loss', powerLoss],
    ] as const) {
      await withEngine(options(d), async (again) => {
        expect(again.openStats.uncleanStop, what).toBe(true);
        expect(again.openStats.pendingUnlinksFinished, what).toBe(1);
        expect(filesOf(d), what).toEqual([]);
        expect(await again.relation(X).exists(ForkNumber.MAIN), what).toBe(false);
        await expectOtherIntact(again);
      });
      expect(d.readFileNow(LOG)!.length, `${what}: the log is emptied`).toBe(0);
    }
  });

  it('drop, checkpoint, crash: the checkpoint unlinked it; the reopen finds nothing to do', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { relSegBlocks: SEG, sharedBuffers: 16 });
    await setUp(engine);
    await engine.relation(X).drop();
    expect((await engine.checkpoint()).unlinks).toBe(1);
    expect(filesOf(disk)).toEqual([]);
    const image = disk.crash('drop', 1);
    await withEngine(options(image), async (again) => {
      expect(again.openStats.pendingUnlinksFinished).toBe(0);
      expect(filesOf(image)).toEqual([]);
      await expectOtherIntact(again);
    });
  });

  it('a power loss at every call of the drop and of the checkpoint after it, in every mode: the relation is whole or gone, never a placeholder', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { relSegBlocks: SEG, sharedBuffers: 16 });
    await setUp(engine);
    const images: { disk: SimDisk; where: string }[] = [];
    disk.beforeCall = (i, kind, path) => {
      for (const mode of CRASH_MODES) images.push({ disk: disk.crash(mode, i), where: `before call ${i} (${kind} ${path}) ${mode}` });
    };
    await engine.relation(X).drop();
    await engine.checkpoint();
    disk.beforeCall = undefined;
    await engine.close();
    let whole = 0;
    let gone = 0;
    for (const { disk: d, where } of images) {
      await withEngine(options(d), async (again) => {
        const x = again.relation(X);
        if (await x.exists(ForkNumber.MAIN)) {
          // The drop had not begun: all of it is there (its data was checkpointed).
          expect(await x.nblocks(ForkNumber.MAIN), where).toBe(5);
          expect((await x.read(ForkNumber.MAIN, 4))[100], where).toBe(5);
          whole++;
        } else {
          expect(filesOf(d), where).toEqual([]);
          gone++;
        }
        await expectOtherIntact(again);
      });
    }
    expect(whole).toBeGreaterThan(0);
    expect(gone).toBeGreaterThan(0);
  });

  it('a drop recorded but cut before it truncated anything is finished by the next open (the call had not returned: either outcome is allowed)', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { relSegBlocks: SEG, sharedBuffers: 16 });
    await setUp(engine);
    let image: SimDisk | null = null;
    disk.beforeCall = (_i, kind, path) => {
      if (!image && kind === 'ftruncate' && path === '/data/base/5/700') image = disk.crash('drop', 1);
    };
    await engine.relation(X).drop();
    disk.beforeCall = undefined;
    await engine.close();
    expect(pendingOf(image!.readFileNow(LOG)!)).toEqual([X]);
    expect(filesOf(image!)).toEqual(['/data/base/5/700', '/data/base/5/700.1', '/data/base/5/700.2', '/data/base/5/700_fsm']);
    await withEngine(options(image!), async (again) => {
      expect(again.openStats.pendingUnlinksFinished).toBe(1);
      expect(filesOf(image!)).toEqual([]);
      await expectOtherIntact(again);
    });
  });
});

describe('never a file created again since the drop', () => {
  it('drop, checkpoint, the same relation number created again (empty), kill -9: it is still there after the reopen', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { relSegBlocks: SEG, sharedBuffers: 16 });
    await setUp(engine);
    await engine.relation(X).drop();
    await engine.checkpoint();
    await engine.relation(X).create(ForkNumber.MAIN); // a zero-length main fork, like a placeholder
    const entries = pendingOf(disk.readFileNow(LOG)!);
    expect(entries).toEqual([]); // "created again" follows "dropped"
    disk.processCrash();
    await withEngine(options(disk), async (again) => {
      expect(again.openStats.pendingUnlinksFinished).toBe(0);
      expect(await again.relation(X).exists(ForkNumber.MAIN)).toBe(true);
      expect(await again.relation(X).nblocks(ForkNumber.MAIN)).toBe(0);
    });
  });

  it('another fork created while the placeholder waits is kept too (the placeholder then stays, as before)', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { relSegBlocks: SEG, sharedBuffers: 16 });
    await setUp(engine);
    await engine.relation(X).drop();
    await engine.relation(X).create(ForkNumber.FSM);
    disk.processCrash();
    await withEngine(options(disk), async (again) => {
      expect(again.openStats.pendingUnlinksFinished).toBe(0);
      expect(await again.relation(X).exists(ForkNumber.FSM)).toBe(true);
    });
  });
});

describe('the log', () => {
  it('entries round trip; a torn or foreign entry is skipped; the last entry of a relation decides', () => {
    const a = locator(1);
    const b = locator(2, 6);
    const bytes = new Uint8Array(5 * LOG_ENTRY_BYTES);
    bytes.set(encodeLogEntry({ kind: LogEntryKind.DROPPED, rel: a }), 0);
    bytes.set(encodeLogEntry({ kind: LogEntryKind.DROPPED, rel: b }), LOG_ENTRY_BYTES);
    bytes.set(encodeLogEntry({ kind: LogEntryKind.CREATED_AGAIN, rel: a }), 2 * LOG_ENTRY_BYTES);
    bytes.set(encodeLogEntry({ kind: LogEntryKind.DROPPED, rel: a }), 3 * LOG_ENTRY_BYTES);
    expect(decodeLogEntry(bytes.subarray(0, LOG_ENTRY_BYTES))).toEqual({ kind: LogEntryKind.DROPPED, rel: a });
    expect(pendingOf(bytes.subarray(0, 3 * LOG_ENTRY_BYTES))).toEqual([b]);
    expect(pendingOf(bytes.subarray(0, 4 * LOG_ENTRY_BYTES))).toEqual([b, a]);
    const torn = bytes.slice(0, 4 * LOG_ENTRY_BYTES + 7); // a partial fifth entry
    torn[3 * LOG_ENTRY_BYTES + 9] = torn[3 * LOG_ENTRY_BYTES + 9]! ^ 1; // the fourth fails its CRC
    expect(pendingOf(torn)).toEqual([b]);
  });

  it('one entry per drop, one fsync; the first drop after every placeholder was unlinked starts the log again; a clean close empties it', async () => {
    const disk = new SimDisk();
    await withEngine(options(disk), async (engine) => {
      await setUp(engine);
      const before = engine.ioCounts();
      await engine.relation(X).drop();
      const d = engine.ioCounts();
      expect(d.fsync - before.fsync).toBe(1);
      expect(d.fsyncDir - before.fsyncDir).toBe(1); // the log is new: its name too
      expect(disk.readFileNow(LOG)!.length).toBe(LOG_ENTRY_BYTES);
      await engine.relation(OTHER).drop();
      expect(disk.readFileNow(LOG)!.length).toBe(2 * LOG_ENTRY_BYTES);
      await engine.checkpoint(); // unlinks both placeholders
      await engine.relation(locator(702)).create(ForkNumber.MAIN);
      const b2 = engine.ioCounts();
      await engine.relation(locator(702)).drop();
      expect(engine.ioCounts().fsync - b2.fsync).toBe(1);
      expect(disk.readFileNow(LOG)!.length).toBe(LOG_ENTRY_BYTES);
      expect(pendingOf(disk.readFileNow(LOG)!)).toEqual([locator(702)]);
    });
    expect(disk.readFileNow(LOG)!.length).toBe(0);
    // So a clean reopen reads nothing and writes nothing for it.
    await withEngine(options(disk), async (engine) => {
      expect(engine.openStats.pendingUnlinksFinished).toBe(0);
      expect(engine.ioCounts().fsync).toBe(1); // the control file's "in production"
    });
  });

  it('a placeholder whose unlink a FILTER cancelled is removed by the next open', async () => {
    const disk = new SimDisk();
    // verifySync off: the cancelled unlink leaves a truncation no sync covers, which the sync
    // ledger reports (PostgreSQL's DROP DATABASE removes the directory right after its FILTER).
    await withEngine({ ...options(disk), verifySync: false }, async (engine) => {
      await setUp(engine);
      await engine.relation(locator(900, 9)).create(ForkNumber.MAIN);
      await engine.relation(locator(900, 9)).drop();
      // Database 9's pending requests cancelled (behaviour 15): its placeholder is never unlinked.
      await engine.registerSyncRequest({ handler: SyncHandlerId.MD, forkNum: 0, rlocator: { spcOid: 1663, dbOid: 9, relNumber: 0 }, segno: 0 }, SyncRequestType.FILTER);
      expect((await engine.checkpoint()).unlinks).toBe(0);
      expect(disk.readFileNow('/data/base/9/900')).not.toBeNull();
    });
    await withEngine(options(disk), async (engine) => {
      expect(engine.openStats.uncleanStop).toBe(false);
      expect(engine.openStats.pendingUnlinksFinished).toBe(1);
      expect(disk.readFileNow('/data/base/9/900')).toBeNull();
    });
  });

  it(`past ${LOG_ENTRIES_MAX} entries with a relation still waiting, an append rewrites the log with just the waiting ones`, async () => {
    const disk = new SimDisk();
    await disk.mkdir('/data');
    await disk.fsyncDir('/');
    const log = new PendingUnlinkLog({ io: disk, dataDir: '/data', enableFsync: true, reportSyncFailure: (err) => { throw err; } });
    const waiting: RelFileLocator = locator(1);
    await log.dropped(waiting);
    for (let i = 1; i < LOG_ENTRIES_MAX; i++) {
      const r = locator(10 + i);
      await log.dropped(r);
      log.unlinked(r);
    }
    expect(disk.readFileNow(LOG)!.length).toBe(LOG_ENTRIES_MAX * LOG_ENTRY_BYTES);
    await log.dropped(locator(5));
    expect(pendingOf(disk.readFileNow(LOG)!)).toEqual([waiting, locator(5)]);
    expect(disk.readFileNow(LOG)!.length).toBe(2 * LOG_ENTRY_BYTES);
    expect(disk.crash('drop', 1).readFileNow(LOG)!.length).toBe(2 * LOG_ENTRY_BYTES); // durable
    await log.close();
  });
});
