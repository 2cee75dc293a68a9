/**
 * Goal: engine.multixact stores members in PostgreSQL's member-group layout (4 flag bytes + 4
 * xids, 409 groups per 8 KiB page) with 8-byte offsets, keeps next/oldest across restarts and
 * crashes without ever handing out an mxid that a completed checkpoint made durable (M3),
 * truncates whole segments, refuses to wrap around, and rejects bad input.
 * Method: an Engine on a SimDisk (data dir /data); raw bytes are read from and planted on the
 * disk; crashes use SimDisk crash('drop'). Counted, never timed.
 */
import { describe, expect, it } from 'vitest';
import { ClogStatus, Engine, ErrorCode, MULTIXACT_ID_MAX, MultiXactStatus, isLamstoreError } from '../engine/index.js';
import { CRASH_MODES, SimDisk, type CrashMode } from '../engine/testing.js';
import type { MultiXactMember } from '../engine/index.js';
import { onDisk, openOn, withEngine } from './helpers/engine.js';

const MEMBERS_PER_PAGE = 1636;
const OFFSETS_PER_PAGE = 1024;

function membersOf(mxid: number): MultiXactMember[] {
  const n = 1 + (mxid % 5);
  return Array.from({ length: n }, (_, k) => ({ xid: (mxid * 7 + k) >>> 0, status: ((mxid + k) % 6) as MultiXactMember['status'] }));
}


describe('multixact', () => {
  it('members are stored in groups of 4 flag bytes + 4 xids, offsets as 8-byte entries', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      const mx = engine.multixact;
      expect(mx.membersPerPage).toBe(MEMBERS_PER_PAGE);
      expect(mx.offsetsPerPage).toBe(OFFSETS_PER_PAGE);
      const m1 = await mx.create([{ xid: 100, status: MultiXactStatus.FOR_SHARE }, { xid: 101, status: MultiXactStatus.UPDATE }]);
      const m2 = await mx.create([
        { xid: 200, status: MultiXactStatus.FOR_KEY_SHARE },
        { xid: 201, status: MultiXactStatus.FOR_UPDATE },
        { xid: 0xffff_ffff, status: MultiXactStatus.NO_KEY_UPDATE },
      ]);
      expect([m1, m2]).toEqual([1, 2]);
      await engine.checkpoint();
      const off = disk.readFileDurable('/data/pg_multixact/offsets/0000')!;
      const ov = new DataView(off.buffer, off.byteOffset);
      // Offsets start at 1 (0 means unset); offsets[m + 1] is written ahead (M1).
      expect([1, 2, 3].map((m) => Number(ov.getBigUint64(m * 8, true)))).toEqual([1, 3, 6]);
      const mem = disk.readFileDurable('/data/pg_multixact/members/0000')!;
      const mv = new DataView(mem.buffer, mem.byteOffset);
      // Members 1..5: group 0 holds offsets 0-3, group 1 holds 4-7.
      expect([...mem.subarray(0, 4)]).toEqual([0, MultiXactStatus.FOR_SHARE, MultiXactStatus.UPDATE, MultiXactStatus.FOR_KEY_SHARE]);
      expect([1, 2, 3].map((k) => mv.getUint32(4 + k * 4, true))).toEqual([100, 101, 200]);
      expect([...mem.subarray(20, 22)]).toEqual([MultiXactStatus.FOR_UPDATE, MultiXactStatus.NO_KEY_UPDATE]);
      expect([mv.getUint32(24, true), mv.getUint32(28, true)]).toEqual([201, 0xffff_ffff]);
      expect(await mx.getMembers(m2)).toEqual([
        { xid: 200, status: 0 },
        { xid: 201, status: 3 },
        { xid: 0xffff_ffff, status: 4 },
      ]);
      mx.checkInvariants();
    });
  });

  it('member lists that cross member pages and offsets that cross offsets pages read back', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      const mx = engine.multixact;
      const ids: number[] = [];
      for (let i = 1; i <= 2100; i++) ids.push(await mx.create(membersOf(i)));
      expect(ids[ids.length - 1]).toBe(2100);
      const big = Array.from({ length: 2 * MEMBERS_PER_PAGE + 5 }, (_, k) => ({ xid: k, status: (k % 6) as MultiXactMember['status'] }));
      const bigId = await mx.create(big);
      for (const i of [1, 1023, 1024, 1025, 2047, 2048, 2100]) expect(await mx.getMembers(i)).toEqual(membersOf(i));
      expect(await mx.getMembers(bigId)).toEqual(big);
      mx.checkInvariants();
    });
  });

  it('next mxid and offset survive a clean restart and a crash after a checkpoint; no durable mxid is handed out again', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk);
    for (let i = 1; i <= 3000; i++) await engine.multixact.create(membersOf(i));
    await engine.checkpoint();
    const nextAtCheckpoint = engine.multixact.nextMxid;
    const offsetAtCheckpoint = engine.multixact.nextOffset;
    // Made after the checkpoint: may be lost.
    for (let i = 3001; i <= 3100; i++) await engine.multixact.create(membersOf(i));
    const crashed = disk.crash('drop', 7);
    await withEngine(onDisk(crashed), async (after) => {
      const mx = after.multixact;
      expect(mx.nextMxid).toBe(nextAtCheckpoint);
      expect(mx.nextOffset).toBe(offsetAtCheckpoint);
      for (const i of [1, 2, 1500, 2999, 3000]) expect(await mx.getMembers(i)).toEqual(membersOf(i));
      await expect(mx.getMembers(3001)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('never created') });
      const fresh = await mx.create([{ xid: 42, status: 5 }]);
      expect(fresh).toBe(3001);
      expect(await mx.getMembers(3000)).toEqual(membersOf(3000)); // not overwritten
      expect(await mx.getMembers(fresh)).toEqual([{ xid: 42, status: 5 }]);
      mx.checkInvariants();
    });
    // A clean close writes everything; the reopened engine carries on after 3100.
    await withEngine(onDisk(crashed), async (e3) => {
      expect(e3.multixact.nextMxid).toBe(3002);
    });
  });

  it('a checkpointed control file keeps next even when truncation removed the segments that held it', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk);
    // 33 offsets pages = 2 offsets segments; 1 member each.
    const count = 33 * OFFSETS_PER_PAGE;
    for (let i = 1; i <= count; i++) await engine.multixact.create([{ xid: i, status: 0 }]);
    await engine.checkpoint();
    for (let i = 0; i < 40; i++) await engine.multixact.create([{ xid: i, status: 1 }]);
    const next = engine.multixact.nextMxid;
    expect(await engine.multixact.truncate(next)).toBeGreaterThanOrEqual(1);
    await expect(engine.multixact.getMembers(5)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('truncated') });
    // Crash before the next checkpoint: the removed segment 0 must not reset next to 1.
    const crashed = disk.crash('drop', 3);
    await withEngine(onDisk(crashed), async (after) => {
      expect(after.multixact.nextMxid).toBeGreaterThanOrEqual(count + 1);
      expect(after.multixact.oldestMxid).toBe(next);
      const m = await after.multixact.create([{ xid: 9, status: 2 }]);
      expect(m).toBeGreaterThanOrEqual(next);
      await expect(after.multixact.getMembers(5)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
    });
  });

  it('truncate(oldestMxid) removes whole offsets and members segments before it, FORGET first', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), async (engine) => {
      const mx = engine.multixact;
      // 40 members each: 32768 mxids would be a lot; 2000 mxids x 40 = 80000 members = 49
      // member pages (2 segments).
      for (let i = 1; i <= 2000; i++) await mx.create(Array.from({ length: 40 }, (_, k) => ({ xid: i + k, status: 0 })));
      await mx.members.writeAll(); // SYNC requests for both member segments wait in the queue
      const cut = 1500; // its members start at 1 + 1499 * 40 = 59961: member page 36, segment 1
      expect(await mx.truncate(cut)).toBe(1); // members segment 0; offsets segment 0 holds mxid 1500
      expect(disk.readFileNow('/data/pg_multixact/members/0000')).toBeNull();
      expect(mx.members.stats.forgetRequests).toBe(1);
      const stats = await engine.checkpoint();
      expect(stats.tagsDispatched).toEqual({ multixact_member: 1, multixact_offset: 1 });
      expect(await mx.getMembers(cut)).toHaveLength(40);
      await expect(mx.getMembers(cut - 1)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      expect(await mx.truncate(10)).toBe(0); // older than the current cutoff: nothing to do
      await expect(mx.truncate(2002)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('past the next') });
      mx.checkInvariants();
    });
  });

  it('bad input: empty or malformed member lists, unknown statuses, mxids never created are BAD_ARGUMENT', async () => {
    await withEngine(onDisk(new SimDisk()), async (engine) => {
      const mx = engine.multixact;
      await expect(mx.create([])).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('non-empty') });
      await expect(mx.create(null as unknown as MultiXactMember[])).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      await expect(mx.create([{ xid: -1, status: 0 }])).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('xid') });
      await expect(mx.create([{ xid: 2 ** 32, status: 0 }])).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      await expect(mx.create([{ xid: 1, status: 6 as MultiXactMember['status'] }])).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('status') });
      await expect(mx.getMembers(1)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('never created') });
      await expect(mx.getMembers(0)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT, message: expect.stringContaining('Invalid') });
      await expect(mx.getMembers(2 ** 32)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      await expect(mx.truncate(0)).rejects.toMatchObject({ code: ErrorCode.BAD_ARGUMENT });
      expect(mx.nextMxid).toBe(1); // nothing was half-created
    });
  });

  it('wraparound is refused: the last mxid and the end of the member space are ID_SPACE_EXHAUSTED', async () => {
    // Plant an offsets segment whose last entry says next = MULTIXACT_ID_MAX (the open scan finds it).
    const disk = new SimDisk();
    await disk.mkdir('/data/pg_multixact/offsets');
    const page = Math.floor(MULTIXACT_ID_MAX / OFFSETS_PER_PAGE);
    const segno = Math.floor(page / 32);
    const seg = new Uint8Array(((page % 32) + 1) * 8192);
    new DataView(seg.buffer).setBigUint64((page % 32) * 8192 + (MULTIXACT_ID_MAX % OFFSETS_PER_PAGE) * 8, 500n, true);
    disk.putFile(`/data/pg_multixact/offsets/${segno.toString(16).toUpperCase().padStart(4, '0')}`, seg);
    await withEngine(onDisk(disk), async (engine) => {
      const mx = engine.multixact;
      expect(mx.nextMxid).toBe(MULTIXACT_ID_MAX);
      expect(mx.nextOffset).toBe(500);
      expect(await mx.create([{ xid: 1, status: 0 }])).toBe(MULTIXACT_ID_MAX);
      expect(await mx.getMembers(MULTIXACT_ID_MAX)).toEqual([{ xid: 1, status: 0 }]);
      const err = await mx.create([{ xid: 2, status: 0 }]).catch((e: unknown) => e);
      expect(isLamstoreError(err, ErrorCode.ID_SPACE_EXHAUSTED)).toBe(true);
      expect((err as Error).message).toContain('wraparound is not supported');
    });

    // The member space: plant next offset two short of the limit.
    const d2 = new SimDisk();
    await d2.mkdir('/data/pg_multixact/offsets');
    const limit = MEMBERS_PER_PAGE * 32 * 2 ** 32;
    const s2 = new Uint8Array(8192);
    new DataView(s2.buffer).setBigUint64(1 * 8, BigInt(limit - 2), true);
    d2.putFile('/data/pg_multixact/offsets/0000', s2);
    await withEngine(onDisk(d2), async (e2) => {
      expect(e2.multixact.memberOffsetLimit).toBe(limit);
      const err = await e2.multixact.create([{ xid: 1, status: 0 }, { xid: 2, status: 0 }, { xid: 3, status: 0 }]).catch((e: unknown) => e);
      expect(isLamstoreError(err, ErrorCode.ID_SPACE_EXHAUSTED)).toBe(true);
      expect((err as Error).message).toContain('members');
      // Two members still fit exactly, in member segment 0xFFFFFFFF.
      const m = await e2.multixact.create([{ xid: 1, status: 0 }, { xid: 2, status: 3 }]);
      expect(await e2.multixact.getMembers(m)).toEqual([{ xid: 1, status: 0 }, { xid: 2, status: 3 }]);
      await e2.checkpoint();
      expect(d2.readFileNow('/data/pg_multixact/members/FFFFFFFF')).not.toBeNull();
    });
  });

  it('every crash mode after a checkpoint: checkpointed mxids and statuses read back and no mxid is reissued', async () => {
    // Images opened and checked, and images refused (each must be DATA_CORRUPT), per crash mode.
    const verified = new Map<CrashMode, number>(CRASH_MODES.map((m) => [m, 0]));
    const refused: string[] = [];
    for (const mode of CRASH_MODES) {
      for (let seed = 1; seed <= 3; seed++) {
        const disk = new SimDisk();
        const engine = await openOn(disk, { slruBuffers: 4 });
        for (let i = 1; i <= 1200; i++) await engine.multixact.create(membersOf(i));
        for (let x = 0; x < 1500; x += 3) await engine.clog.setStatus(x * 40, ClogStatus.COMMITTED);
        await engine.checkpoint();
        // Work after the checkpoint, including evictions (written, not synced) and a truncation.
        for (let i = 1201; i <= 1500; i++) await engine.multixact.create(membersOf(i));
        for (let x = 1; x < 1500; x += 3) await engine.clog.setStatus(x * 40, ClogStatus.ABORTED);
        await engine.multixact.truncate(1100);
        const crashed = disk.crash(mode, seed);
        let after: Engine;
        try {
          after = await openOn(crashed);
        } catch (err) {
          // Allowed only as a clear DATA_CORRUPT naming a file (a torn write past the end).
          expect(isLamstoreError(err, ErrorCode.DATA_CORRUPT), `${mode}/${seed}: ${String(err)}`).toBe(true);
          refused.push(`${mode}/${seed}`);
          continue;
        }
        try {
          const mx = after.multixact;
          expect(mx.nextMxid, `${mode}/${seed}`).toBeGreaterThanOrEqual(1201);
          for (const i of [1100, 1150, 1200]) expect(await mx.getMembers(i), `${mode}/${seed} mxid ${i}`).toEqual(membersOf(i));
          const wrong: number[] = [];
          for (let x = 0; x < 1500; x += 3) if ((await after.clog.getStatus(x * 40)) !== ClogStatus.COMMITTED) wrong.push(x * 40);
          expect(wrong, `${mode}/${seed}: xids whose checkpointed status was lost`).toEqual([]);
          const fresh = await mx.create([{ xid: 1, status: 0 }]);
          expect(fresh).toBeGreaterThanOrEqual(1201);
          expect(await mx.getMembers(1200)).toEqual(membersOf(1200));
          mx.checkInvariants();
        } finally {
          await after.close();
        }
        verified.set(mode, verified.get(mode)! + 1);
      }
    }
    // A test whose every reopen was refused would check nothing. drop, prefix and subset keep
    // whole writes only, so none of theirs may be refused; torn and garbage may leave a torn
    // write a reopen refuses, but they must still leave images to check.
    expect(refused.filter((r) => !r.startsWith('torn/') && !r.startsWith('garbage/'))).toEqual([]);
    for (const mode of CRASH_MODES) expect(verified.get(mode), `${mode}: images checked`).toBeGreaterThan(0);
    expect([...verified.values()].reduce((a, b) => a + b, 0) + refused.length).toBe(CRASH_MODES.length * 3);
  });

  it('the positions live in the data directory control file: a damaged one is DATA_CORRUPT naming it', async () => {
    const disk = new SimDisk();
    const engine = await openOn(disk);
    await engine.multixact.create([{ xid: 1, status: 0 }]);
    await engine.close();
    expect(disk.readFileNow('/data/pg_multixact/control')).toBeNull();
    const bytes = disk.readFileNow('/data/lam_control')!;
    expect(bytes.length).toBe(1024);
    // Both slots (a single damaged one is a torn write the other slot covers).
    bytes[57] = (bytes[57]! ^ 0xff) & 0xff;
    bytes[512 + 57] = (bytes[512 + 57]! ^ 0xff) & 0xff;
    disk.putFile('/data/lam_control', bytes);
    const err = await openOn(disk).catch((e: unknown) => e);
    expect(isLamstoreError(err, ErrorCode.DATA_CORRUPT)).toBe(true);
    expect((err as Error).message).toContain('/data/lam_control');
  });
});
