/**
 * Goal: the control file (engine/control-file.ts CF1-CF6, DESIGN.md section 8 D4: "the control
 * file describes the last completed checkpoint"): its record encodes and decodes as itself; a
 * damaged one is refused naming the file and nothing is written; clean or unclean comes from its
 * state; each completed checkpoint advances its number and time; an xid truncated away is refused
 * after a restart exactly as before it (it used to read as IN_PROGRESS again once its segments
 * were gone); multixact's positions come back; a power loss at every call of a control file
 * update leaves the old record or the new one, and the data directory opens; a failed write of
 * it is the failed state.
 * Method: SimDisk (processCrash for kill -9, crash(mode, seed) for power loss, images taken at
 * every call through beforeCall), a ManualClock for exact times, records crafted with the codec.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ClogStatus, ControlState, Engine, ErrorCode, ForkNumber, crc32c, isLamstoreError, readControlFile } from '../engine/index.js';
import type { ControlRecord } from '../engine/index.js';
import { CRASH_MODES, ManualClock, SimDisk } from '../engine/testing.js';
import { CONTROL_FILE_BYTES, CONTROL_RECORD_BYTES, decodeControlFile, decodeControlSlot, encodeControlRecord } from '../engine/control-file.js';
import { REL, onDisk, openOn, pageOf, withEngine } from './helpers/engine.js';

const PATH = '/data/lam_control';
/** 8 KiB pages: 32768 xids per clog page, 32 pages per segment. */
const XIDS_PER_SEGMENT = 32768 * 32;

const control = async (disk: SimDisk): Promise<ControlRecord> => (await readControlFile('/data', { io: disk })).record;

function sampleRecord(generation: number): ControlRecord {
  return {
    formatVersion: 1,
    blockSize: 8192,
    state: ControlState.IN_PRODUCTION,
    generation,
    checkpointNumber: 41,
    checkpointTimeMs: 1_790_000_000_123,
    writtenTimeMs: 1_790_000_000_456,
    clogOldestPage: 64,
    commitTsOldestPage: 96,
    multixactNextMxid: 0xffff_fff0,
    multixactOldestMxid: 7,
    multixactNextOffset: 2 ** 40 + 3,
    multixactOldestOffset: 12,
  };
}

/** A record with a valid CRC whose bytes `edit` changed (a file some other program wrote). */
function reCrc(bytes: Uint8Array, edit: (v: DataView) => void): Uint8Array {
  const out = bytes.slice();
  const v = new DataView(out.buffer);
  edit(v);
  v.setUint32(CONTROL_RECORD_BYTES - 4, crc32c(out.subarray(0, CONTROL_RECORD_BYTES - 4)), true);
  return out;
}

/** The file with `slot`'s 512 bytes replaced. */
function withSlot(file: Uint8Array, slot: number, bytes: Uint8Array): Uint8Array {
  const out = file.slice();
  out.set(bytes, slot * CONTROL_RECORD_BYTES);
  return out;
}

async function refusal(disk: SimDisk, options = {}): Promise<{ code: string | undefined; message: string }> {
  const before = disk.readFileNow(PATH);
  const err = await openOn(disk, options).then(
    async (e) => {
      await e.close();
      return null;
    },
    (e: unknown) => e,
  );
  expect(err, 'the open was refused').not.toBeNull();
  expect(isLamstoreError(err), String(err)).toBe(true);
  expect(disk.readFileNow(PATH), 'a refused control file is left as it was').toEqual(before);
  expect(disk.openHandleCount).toBe(0);
  return { code: (err as { code?: string }).code, message: (err as Error).message };
}

describe('the control record', () => {
  it('encodes into 512 bytes and decodes as itself, in the slot of its generation parity', () => {
    for (const generation of [1, 2, 2 ** 40 + 1]) {
      const r = sampleRecord(generation);
      const bytes = encodeControlRecord(r);
      expect(bytes.length).toBe(CONTROL_RECORD_BYTES);
      expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('LCTL');
      expect(decodeControlSlot(bytes, generation % 2)).toEqual({ record: r, problem: null });
      // In the other slot it is a record copied to the wrong place: ignored, not trusted.
      expect(decodeControlSlot(bytes, (generation + 1) % 2).record).toBeNull();
    }
    expect(decodeControlSlot(new Uint8Array(CONTROL_RECORD_BYTES), 0)).toEqual({ record: null, problem: 'empty' });
  });

  it('the file is two slots; the valid one with the highest generation is used, a torn or garbled one ignored', () => {
    const older = encodeControlRecord(sampleRecord(6));
    const newer = encodeControlRecord({ ...sampleRecord(7), checkpointNumber: 42 });
    const file = withSlot(withSlot(new Uint8Array(CONTROL_FILE_BYTES), 0, older), 1, newer);
    expect(decodeControlFile(file, PATH).record.checkpointNumber).toBe(42);
    const torn = file.slice();
    torn[CONTROL_RECORD_BYTES + 30] = torn[CONTROL_RECORD_BYTES + 30]! ^ 0x40;
    const r = decodeControlFile(torn, PATH);
    expect(r.record.generation).toBe(6);
    expect(r.slots.map((s) => s.problem)).toEqual([null, 'fails its CRC-32C']);
  });
});

describe('a damaged control file is refused, naming it, and nothing is written', () => {
  async function cleanDisk(): Promise<SimDisk> {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (e) => {
      await e.checkpoint();
    });
    return disk;
  }

  it('both slots failing their CRC: DATA_CORRUPT naming the file and both problems', async () => {
    const disk = await cleanDisk();
    const bytes = disk.readFileNow(PATH)!;
    bytes[20] = bytes[20]! ^ 1;
    bytes[CONTROL_RECORD_BYTES + 20] = bytes[CONTROL_RECORD_BYTES + 20]! ^ 1;
    disk.putFile(PATH, bytes);
    const r = await refusal(disk);
    expect(r.code).toBe(ErrorCode.DATA_CORRUPT);
    expect(r.message).toBe(`${PATH}: control file is damaged: slot 0 fails its CRC-32C, slot 1 fails its CRC-32C`);
  });

  it('a CRC-valid record with a bad magic number, another format version, an unknown state or a non-zero reserved byte: DATA_CORRUPT', async () => {
    const cases: [string, (v: DataView) => void, RegExp][] = [
      ['magic', (v) => v.setUint32(0, 0x12345678, true), /bad magic number: not a lamstore control file/],
      ['version', (v) => v.setUint32(4, 2, true), /format version 2; this lamstore reads version 1/],
      ['state', (v) => v.setUint32(12, 9, true), /state 9/],
      ['reserved', (v) => v.setUint8(300, 1), /non-zero reserved byte at offset 300/],
      ['multixact', (v) => v.setUint32(60, 0, true), /impossible multixact positions/],
    ];
    for (const [what, edit, message] of cases) {
      const disk = await cleanDisk();
      const file = disk.readFileNow(PATH)!;
      const gen = (await control(disk)).generation;
      const slot = gen % 2;
      disk.putFile(PATH, withSlot(file, slot, reCrc(file.subarray(slot * CONTROL_RECORD_BYTES, (slot + 1) * CONTROL_RECORD_BYTES), edit)));
      const r = await refusal(disk);
      expect(r.code, what).toBe(ErrorCode.DATA_CORRUPT);
      expect(r.message, what).toContain(PATH);
      expect(r.message, what).toMatch(message);
    }
  });

  it('a file of the wrong length, or a directory in its place: DATA_CORRUPT naming it', async () => {
    const disk = await cleanDisk();
    disk.putFile(PATH, disk.readFileNow(PATH)!.subarray(0, 600));
    const r = await refusal(disk);
    expect(r).toEqual({ code: ErrorCode.DATA_CORRUPT, message: `${PATH}: control file is 600 bytes, not 1024` });
    const dir = new SimDisk();
    await dir.mkdir(PATH);
    const err = await openOn(dir).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.DATA_CORRUPT, message: `${PATH}: control file is not a regular file` });
  });

  it("another block size than the engine's option: BAD_ARGUMENT naming the file", async () => {
    const disk = await cleanDisk();
    const r = await refusal(disk, { blockSize: 16384 });
    expect(r).toEqual({ code: ErrorCode.BAD_ARGUMENT, message: `${PATH}: the data directory has block size 8192; option blockSize is 16384` });
  });

  it('one damaged slot is a torn write: the other is used and the next write replaces the damaged one', async () => {
    const disk = await cleanDisk();
    const before = await control(disk);
    const bytes = disk.readFileNow(PATH)!;
    bytes[(before.generation % 2) * CONTROL_RECORD_BYTES + 100] = bytes[(before.generation % 2) * CONTROL_RECORD_BYTES + 100]! ^ 0xff;
    disk.putFile(PATH, bytes);
    expect((await control(disk)).generation).toBe(before.generation - 1);
    await withEngine(onDisk(disk), async (e) => {
      // The previous record was "in production" (the checkpoint before close): taken as unclean.
      expect(e.openStats.uncleanStop).toBe(true);
    });
    const r = await readControlFile('/data', { io: disk });
    expect(r.slots.every((s) => s.record !== null)).toBe(true);
  });
});

describe('clean or unclean comes from the state', () => {
  it('open says "in production", close "shutting down" then "shut down"; a kill or a power loss leaves it unclean', async () => {
    const disk = new SimDisk();
    const states: number[] = [];
    let engine = await openOn(disk);
    expect(engine.openStats.uncleanStop).toBe(false); // a new directory
    expect((await control(disk)).state).toBe(ControlState.IN_PRODUCTION);
    const write = disk.pwrite.bind(disk);
    disk.pwrite = async (h, buf, off) => {
      if (h.path === PATH) states.push(new DataView(buf.buffer, buf.byteOffset).getUint32(12, true));
      return write(h, buf, off);
    };
    await engine.close();
    expect(states).toEqual([ControlState.SHUTTING_DOWN, ControlState.SHUT_DOWN]);
    disk.pwrite = write;

    engine = await openOn(disk);
    expect(engine.openStats.uncleanStop).toBe(false);
    disk.processCrash(); // kill -9 while open
    engine = await openOn(disk);
    expect(engine.openStats.uncleanStop).toBe(true);
    const image = disk.crash('drop', 1); // power loss while open
    const after = await openOn(image);
    expect(after.openStats.uncleanStop).toBe(true);
    await after.close();
    await engine.close();
  });

  it('a directory with files but no control file is taken as an unclean stop; an empty one, or one with only the lock file, is new', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/data/base/5');
    disk.putFile('/data/base/5/16384', new Uint8Array(8192));
    await withEngine(onDisk(disk), async (e) => {
      expect(e.openStats.uncleanStop).toBe(true);
      expect(e.openStats.startupSyncFiles).toBe(1);
    });
    const empty = new SimDisk();
    await empty.mkdir('/data');
    disk.putFile('/data/lamstore.lock', new Uint8Array(0));
    await withEngine(onDisk(empty), async (e) => expect(e.openStats.uncleanStop).toBe(false));
  });

  it('a failed open of a new data directory inside an existing empty one removes the control file it created', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/data');
    const bad = { name: 'bad', init: () => Promise.reject(new Error('no')) };
    await expect(openOn(disk, { preload: [bad] })).rejects.toThrow('no');
    expect(disk.readFileNow(PATH)).toBeNull();
    await withEngine(onDisk(disk), async (e) => expect(e.openStats.uncleanStop).toBe(false));
  });
});

describe('checkpoints', () => {
  it('each completed checkpoint advances the number and records its start time; a reopen carries on from them', async () => {
    const disk = new SimDisk();
    const clock = new ManualClock(1_800_000_000_000);
    const engine = await openOn(disk, { clock });
    expect(await control(disk)).toMatchObject({ checkpointNumber: 0, checkpointTimeMs: 0, writtenTimeMs: 1_800_000_000_000 });
    const rel = engine.relation(REL);
    await rel.create(ForkNumber.MAIN);
    await rel.extend(ForkNumber.MAIN, pageOf(1));
    await engine.checkpoint();
    expect(await control(disk)).toMatchObject({ checkpointNumber: 1, checkpointTimeMs: 1_800_000_000_000, state: ControlState.IN_PRODUCTION });
    await clock.advance(5000);
    await engine.checkpoint(); // forced, nothing dirty: still a checkpoint, still recorded
    expect(await control(disk)).toMatchObject({ checkpointNumber: 2, checkpointTimeMs: 1_800_000_005_000 });
    await clock.advance(1000);
    await engine.close(); // the shutdown checkpoint is number 3
    expect(await control(disk)).toMatchObject({ checkpointNumber: 3, checkpointTimeMs: 1_800_000_006_000, state: ControlState.SHUT_DOWN });
    await withEngine(onDisk(disk, { clock }), async (again) => {
      await again.checkpoint();
      expect((await control(disk)).checkpointNumber).toBe(4);
    });
  });

  it('the record is what the last completed checkpoint left: a checkpoint that fails before its end does not count', async () => {
    const disk = new SimDisk();
    await withEngine(
      onDisk(disk, { dataSyncRetry: true }),
      async (engine) => {
        const rel = engine.relation(REL);
        await rel.create(ForkNumber.MAIN);
        await rel.extend(ForkNumber.MAIN, pageOf(1));
        await engine.checkpoint();
        await rel.write(ForkNumber.MAIN, 0, pageOf(2));
        disk.injectFault({ kind: 'fsync', code: 'EIO', pathIncludes: 'base/' });
        await expect(engine.checkpoint()).rejects.toMatchObject({ errno: 'EIO' });
        expect(engine.failed).toBe(false); // dataSyncRetry: only the checkpoint failed
        expect((await control(disk)).checkpointNumber).toBe(1);
      },
    );
  });

  it('a failed fsync of the control file is the failed state, with dataSyncRetry too; the reopen finds the record before it', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk, { dataSyncRetry: true });
    await engine.checkpoint();
    disk.injectFault({ kind: 'fsync', code: 'EIO', pathIncludes: 'lam_control' });
    await expect(engine.checkpoint()).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
    expect(engine.failed).toBe(true);
    expect(engine.failure!.message).toContain(PATH);
    await expect(engine.close()).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
    // No crash: the page cache would still serve the record that never became durable, had the
    // slot not been blanked (CF4).
    expect(await control(disk)).toMatchObject({ checkpointNumber: 1, state: ControlState.IN_PRODUCTION });
    await withEngine(onDisk(disk), async (again) => expect(again.openStats.uncleanStop).toBe(true));
  });
});

describe('SLRU positions survive a restart', () => {
  async function truncatedClog(disk: SimDisk): Promise<{ before: unknown; cutoff: number }> {
    const engine = await openOn(disk);
    for (const seg of [0, 1, 3]) await engine.clog.setStatus(seg * XIDS_PER_SEGMENT + 5, ClogStatus.COMMITTED);
    for (const seg of [0, 1]) await engine.commitTs.set(seg * 819 * 32 + 5, 99n);
    await engine.checkpoint();
    // Everything below segment 2, which never existed: the lowest segment left is 3.
    const cutoff = 2 * XIDS_PER_SEGMENT + 17;
    expect(await engine.clog.truncate(cutoff)).toBe(2);
    expect(await engine.commitTs.truncate(2 * 819 * 32)).toBe(2);
    const before = {
      clog: await engine.clog.getStatus(5).catch((e: Error) => ({ code: (e as { code?: string }).code, message: e.message })),
      clogInHole: await engine.clog.getStatus(2 * XIDS_PER_SEGMENT + 1),
      commitTs: await engine.commitTs.get(5).catch((e: Error) => ({ code: (e as { code?: string }).code, message: e.message })),
    };
    expect(before.clog).toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: `clog: xid 5 was truncated away (the oldest xid kept is ${2 * XIDS_PER_SEGMENT})` });
    expect(before.commitTs).toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
    expect(before.clogInHole).toBe(ClogStatus.IN_PROGRESS);
    disk.processCrash();
    return { before, cutoff };
  }

  async function readBack(engine: Engine) {
    return {
      clog: await engine.clog.getStatus(5).catch((e: Error) => ({ code: (e as { code?: string }).code, message: e.message })),
      clogInHole: await engine.clog.getStatus(2 * XIDS_PER_SEGMENT + 1),
      commitTs: await engine.commitTs.get(5).catch((e: Error) => ({ code: (e as { code?: string }).code, message: e.message })),
    };
  }

  it('an xid below the clog and commit_ts cutoffs is refused after a restart exactly as before, crash or power loss, no checkpoint since', async () => {
    const disk = new SimDisk();
    const { before } = await truncatedClog(disk);
    // A power loss right after the truncation: the cutoff was durable before the segments went.
    await withEngine(onDisk(disk.crash('drop', 1)), async (e) => expect(await readBack(e)).toEqual(before));
    await withEngine(onDisk(disk), async (e) => expect(await readBack(e)).toEqual(before));
    // And after a clean close and reopen.
    await withEngine(onDisk(disk), async (e) => expect(await readBack(e)).toEqual(before));
    expect((await control(disk)).clogOldestPage).toBe(64);
  });

  it('when truncation removed every segment, the xids stay refused (they used to read IN_PROGRESS again)', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      await engine.clog.setStatus(5, ClogStatus.COMMITTED);
      await engine.checkpoint();
      await engine.clog.truncate(XIDS_PER_SEGMENT);
    });
    expect(disk.listFiles().filter((f) => f.startsWith('/data/pg_xact/'))).toEqual([]);
    await withEngine(onDisk(disk), async (engine) => {
      await expect(engine.clog.getStatus(5)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: `clog: xid 5 was truncated away (the oldest xid kept is ${XIDS_PER_SEGMENT})` });
      expect(await engine.clog.getStatus(XIDS_PER_SEGMENT)).toBe(ClogStatus.IN_PROGRESS);
    });
  });

  it("multixact's oldest and next ids and offsets come back from the control file", async () => {
    const disk = new SimDisk();
    let positions: unknown;
    await withEngine(onDisk(disk), async (engine) => {
      for (let i = 1; i <= 50; i++) await engine.multixact.create([{ xid: i, status: 0 }, { xid: i + 1, status: 1 }]);
      await engine.multixact.truncate(20);
      positions = engine.multixact.positions();
      expect(positions).toEqual({ nextMxid: 51, oldestMxid: 20, nextOffset: 101, oldestOffset: 39 });
    });
    expect(await control(disk)).toMatchObject({ multixactNextMxid: 51, multixactOldestMxid: 20, multixactNextOffset: 101, multixactOldestOffset: 39 });
    await withEngine(onDisk(disk), async (engine) => {
      expect(engine.multixact.positions()).toEqual(positions);
      await expect(engine.multixact.getMembers(19)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: 'multixact: mxid 19 was truncated away (the oldest mxid kept is 20)' });
      expect(await engine.multixact.getMembers(20)).toEqual([{ xid: 20, status: 0 }, { xid: 21, status: 1 }]);
    });
  });
});

describe('a power loss at every call of a control file update leaves the old record or the new one', () => {
  /**
   * Run `action` on `disk`; before every call on the control file (or its temporary name), and
   * before the call after each (the moment its fsync has returned), take an image in every crash
   * mode (3 seeds); one more after the end. Returns them with the number of control file calls.
   */
  async function imagesDuring(disk: SimDisk, action: () => Promise<void>): Promise<{ images: { disk: SimDisk; where: string }[]; calls: number }> {
    const images: { disk: SimDisk; where: string }[] = [];
    let calls = 0;
    let afterControl = false;
    const seen = new Set<string>();
    const take = (where: string) => {
      for (const mode of CRASH_MODES) {
        for (let seed = 1; seed <= 3; seed++) {
          const image = disk.crash(mode, seed);
          // Identical images are checked once (the crash matrix dedupes the same way). Not by
          // CRC-32C: a CRC over bytes that end in their own CRC is the same for every record.
          const hash = createHash('sha256');
          for (const f of image.listFiles()) hash.update(f).update(image.readFileNow(f)!);
          const key = hash.digest('hex');
          if (seen.has(key)) continue;
          seen.add(key);
          images.push({ disk: image, where: `${where} ${mode}/${seed}` });
        }
      }
    };
    disk.beforeCall = (i, kind, path) => {
      const onControl = path.startsWith(PATH);
      if (onControl && kind !== 'stat') calls++;
      if (onControl || afterControl) take(`before call ${i} (${kind} ${path})`);
      afterControl = onControl;
    };
    await action();
    disk.beforeCall = undefined;
    take('after');
    return { images, calls };
  }

  async function check(images: { disk: SimDisk; where: string }[], allowed: (ControlRecord | null)[]): Promise<Set<number | null>> {
    const seen = new Set<number | null>();
    for (const { disk, where } of images) {
      const found = disk.readFileNow(PATH) ? await control(disk) : null;
      const match = allowed.find((r) => (r === null ? found === null : found !== null && found.generation === r.generation));
      expect(match, `${where}: generation ${found?.generation ?? 'none'}`).not.toBeUndefined();
      if (found && match) expect(found, where).toEqual(match);
      seen.add(found?.generation ?? null);
      const engine = await Engine.open(onDisk(disk));
      await engine.close();
    }
    return seen;
  }

  it('a checkpoint: before its fsync returned, the previous record; after, the new one; every image opens', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk);
    const rel = engine.relation(REL);
    await rel.create(ForkNumber.MAIN);
    await rel.extend(ForkNumber.MAIN, pageOf(1));
    await engine.checkpoint();
    await rel.write(ForkNumber.MAIN, 0, pageOf(2));
    const old = await control(disk);
    const { images, calls } = await imagesDuring(disk, async () => {
      await engine.checkpoint();
    });
    const fresh = await control(disk);
    expect(fresh.generation).toBe(old.generation + 1);
    expect(calls).toBe(2); // the record's pwrite and its fsync: the checkpoint's last calls
    expect(await check(images, [old, fresh])).toEqual(new Set([old.generation, fresh.generation]));
    await engine.close();
  });

  it('close ("shutting down", then the shutdown checkpoint\'s "shut down") and the first open of a new directory (created by rename)', async () => {
    const disk = new SimDisk();
    const clock = new ManualClock(0); // every record written at the same time: comparable whole
    const created = await imagesDuring(disk, async () => {
      const engine = await openOn(disk, { clock });
      await engine.close();
    });
    const seen = await check(created.images, [null, ...(await historyOf(disk))]);
    expect(seen.has(null)).toBe(true);
    expect(seen.size).toBeGreaterThanOrEqual(3);
  });

  /** Every record the disk's control file held, rebuilt from the final one (only the last states matter). */
  async function historyOf(disk: SimDisk): Promise<ControlRecord[]> {
    const last = await control(disk);
    expect(last.state).toBe(ControlState.SHUT_DOWN);
    const { slots } = await readControlFile('/data', { io: disk });
    const shuttingDown = slots.find((s) => s.record && s.record.generation === last.generation - 1)!.record!;
    expect(shuttingDown.state).toBe(ControlState.SHUTTING_DOWN);
    // Generation 1: what the first open wrote ("in production"): same fields as "shutting down" but the state.
    const first: ControlRecord = { ...shuttingDown, generation: 1, state: ControlState.IN_PRODUCTION };
    return [first, shuttingDown, last];
  }
});
