/**
 * MultiXact: a multixact id (mxid) names a set of transactions locking one row, each with a
 * lock status (PostgreSQL multixact.c). Two SLRUs; its positions live in the control file.
 *
 * On-disk contract, with P = blockSize, all integers little-endian:
 *  - `pg_multixact/offsets/` (sync handler MULTIXACT_OFFSET 3): one 8-byte member offset per
 *    mxid (PostgreSQL 19's 64-bit MultiXactOffset), P / 8 per page (1024 at 8 KiB); mxid m at
 *    page `m / 1024`, byte `(m % 1024) * 8`. Offset 0 means "unset".
 *  - `pg_multixact/members/` (sync handler MULTIXACT_MEMBER 4): members in groups of 4; a group
 *    is 4 flag bytes (member k's status in byte k) followed by 4 xids (uint32 each), 20 bytes;
 *    floor(P / 20) groups per page (409 at 8 KiB, the last P % 20 bytes unused), so 1636
 *    members per page. Member offset o: page `o / 1636`; with r = o % 1636, group `r / 4`,
 *    k = r % 4, flag byte `group * 20 + k`, xid at `group * 20 + 4 + k * 4`.
 *    Segment names are the short (>= 4 hex digits) form for both SLRUs, as names.ts gives
 *    the built-in sync handlers; PostgreSQL 19 uses 15-digit names for members.
 *  - Its positions (next and oldest mxid, next and oldest member offset) live in the data
 *    directory's control file (engine/control-file.ts), as PostgreSQL keeps them in pg_control's
 *    checkpoint record: the engine writes them at the end of every checkpoint and whenever
 *    truncation asks (`saveControl`), and hands them back at open (MultiXactOptions.positions).
 *
 * Invariants:
 *  M1 create(members) of mxid m writes the members at [start, end), then offsets[m] = start and
 *     offsets[m + 1] = end (the next mxid's start, written ahead as PostgreSQL 19 does), so the
 *     member count of m is offsets[m + 1] - offsets[m] without consulting nextMxid.
 *  M2 mxids are handed out from 1 (0 is InvalidMultiXactId) up to 0xFFFFFFFE (the entry ahead
 *     must fit a uint32 index); member offsets from 1 up to the member space limit
 *     (membersPerPage * 32 * 2^32, where the segment number stops fitting a FileTag). Reaching
 *     either is refused with ID_SPACE_EXHAUSTED: lamstore does not wrap around.
 *  M3 No mxid durable at a completed checkpoint is ever handed out again after a crash. Where
 *     next{Mxid,Offset} come from at open: the maximum of (a) the control file, written at the
 *     end of every completed checkpoint (after the sync phase made the pages durable) and
 *     before truncation unlinks anything; and (b) a scan of the offsets SLRU for its highest
 *     non-zero entry, which is offsets[next] (M1) and also catches mxids made durable after the
 *     checkpoint by a backend fsync. Taking the maximum can only skip ids, never reuse one.
 *  M4 getMembers(m) answers only for oldestMxid <= m < nextMxid; an mxid never created (or 0)
 *     or truncated away is BAD_ARGUMENT; an mxid in range whose offsets were lost in a crash
 *     (not covered by a completed checkpoint) is DATA_CORRUPT naming the offsets file.
 *  M5 Truncation (truncate(oldestMxid)) removes members segments wholly before
 *     offsets[oldestMxid], then offsets segments wholly before oldestMxid's page; the control
 *     file recording the new oldest and the current next is made durable first (saveControl).
 */
import { Mutex } from '../mutex.js';
import { ErrorCode, LamstoreError, assert } from '../errors.js';
import { isUint32 } from '../relfile.js';
import { SyncHandlerId } from '../sync/registry.js';
import { SLRU_DIRS, SLRU_PAGES_PER_SEGMENT } from './names.js';
import { Slru } from './slru.js';
import type { SlruContext } from './slru.js';

export const MultiXactStatus = {
  FOR_KEY_SHARE: 0,
  FOR_SHARE: 1,
  FOR_NO_KEY_UPDATE: 2,
  FOR_UPDATE: 3,
  NO_KEY_UPDATE: 4,
  UPDATE: 5,
} as const;
export type MultiXactStatus = (typeof MultiXactStatus)[keyof typeof MultiXactStatus];
const STATUS_MAX = MultiXactStatus.UPDATE;

export interface MultiXactMember {
  xid: number;
  status: MultiXactStatus;
}

export const MULTIXACT_OFFSET_BYTES = 8;
export const MULTIXACT_MEMBERS_PER_GROUP = 4;
export const MULTIXACT_FLAG_BYTES_PER_GROUP = 4;
export const MULTIXACT_GROUP_BYTES = MULTIXACT_FLAG_BYTES_PER_GROUP + MULTIXACT_MEMBERS_PER_GROUP * 4;
assert(MULTIXACT_GROUP_BYTES === 20, 'a member group is 4 flag bytes and 4 xids');
export const FIRST_MULTIXACT_ID = 1;
/** The last mxid handed out: offsets[mxid + 1] must have a uint32 index (M2). */
export const MULTIXACT_ID_MAX = 0xffff_fffe;
/** One mxid's member list is bounded (a multixact has one member per concurrent locker). */
export const MULTIXACT_MEMBERS_MAX = 65536;

export interface MultiXactOptions {
  bufferCount?: number;
  /** The positions the control file recorded; none for a new data directory (M3). */
  positions?: MultiXactPositions;
}

/** What the control file keeps of multixact (control-file.ts). */
export interface MultiXactPositions {
  nextMxid: number;
  oldestMxid: number;
  nextOffset: number;
  oldestOffset: number;
}

export class MultiXact {
  readonly offsets: Slru;
  readonly members: Slru;
  /** blockSize / 8: 1024 at 8 KiB. */
  readonly offsetsPerPage: number;
  /** floor(blockSize / 20) * 4: 1636 at 8 KiB. */
  readonly membersPerPage: number;
  /** Member offsets stay below this (M2). */
  readonly memberOffsetLimit: number;
  readonly #ctx: SlruContext;
  #state: MultiXactPositions;
  readonly #mutex = new Mutex();

  private constructor(ctx: SlruContext, offsets: Slru, members: Slru, control: MultiXactPositions | null) {
    this.#ctx = ctx;
    this.offsets = offsets;
    this.members = members;
    this.offsetsPerPage = ctx.blockSize / MULTIXACT_OFFSET_BYTES;
    this.membersPerPage = Math.floor(ctx.blockSize / MULTIXACT_GROUP_BYTES) * MULTIXACT_MEMBERS_PER_GROUP;
    this.memberOffsetLimit = Math.min(this.membersPerPage * SLRU_PAGES_PER_SEGMENT * 2 ** 32, Number.MAX_SAFE_INTEGER);
    this.#state = control
      ? { ...control }
      : { nextMxid: FIRST_MULTIXACT_ID, oldestMxid: FIRST_MULTIXACT_ID, nextOffset: 1, oldestOffset: 1 };
  }

  static async open(ctx: SlruContext, options: MultiXactOptions = {}): Promise<MultiXact> {
    const buffers = options.bufferCount === undefined ? {} : { bufferCount: options.bufferCount };
    const offsets = await Slru.open(ctx, {
      name: 'multixact_offset',
      dirRelative: SLRU_DIRS[SyncHandlerId.MULTIXACT_OFFSET]!,
      handler: SyncHandlerId.MULTIXACT_OFFSET,
      ...buffers,
    });
    const members = await Slru.open(ctx, {
      name: 'multixact_member',
      dirRelative: SLRU_DIRS[SyncHandlerId.MULTIXACT_MEMBER]!,
      handler: SyncHandlerId.MULTIXACT_MEMBER,
      ...buffers,
    });
    const control = options.positions ?? null;
    if (control) {
      const c = control;
      if (!isUint32(c.nextMxid) || !isUint32(c.oldestMxid) || c.oldestMxid < FIRST_MULTIXACT_ID || c.oldestMxid > c.nextMxid || !Number.isSafeInteger(c.nextOffset) || !Number.isSafeInteger(c.oldestOffset) || c.oldestOffset < 1 || c.oldestOffset > c.nextOffset) {
        throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: impossible positions (next ${c.nextMxid}/${c.nextOffset}, oldest ${c.oldestMxid}/${c.oldestOffset})`);
      }
    }
    const mx = new MultiXact(ctx, offsets, members, control ? { ...control } : null);
    await mx.#recoverNext();
    return mx;
  }

  /** M3 (b): the highest non-zero offsets entry is offsets[nextMxid]. */
  async #recoverNext(): Promise<void> {
    const s = this.#state;
    for (const pageNo of this.offsets.pagesOnDiskDescending()) {
      const found = await this.offsets.readPage(pageNo, (page) => {
        const view = new DataView(page.buffer, page.byteOffset, page.length);
        for (let i = this.offsetsPerPage - 1; i >= 0; i--) {
          const value = view.getBigUint64(i * MULTIXACT_OFFSET_BYTES, true);
          if (value !== 0n) return { mxid: pageNo * this.offsetsPerPage + i, offset: value };
        }
        return null;
      });
      if (!found) continue;
      if (found.offset > BigInt(this.memberOffsetLimit) || found.mxid > MULTIXACT_ID_MAX + 1 || found.mxid < FIRST_MULTIXACT_ID) {
        const path = this.offsets.segmentPath(Math.floor(pageNo / SLRU_PAGES_PER_SEGMENT));
        throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: multixact offset entry of mxid ${found.mxid} is ${found.offset}, outside the id or member space`, { path });
      }
      s.nextMxid = Math.max(s.nextMxid, found.mxid);
      s.nextOffset = Math.max(s.nextOffset, Number(found.offset));
      break;
    }
    // Segments removed by a truncation whose control file did not survive: what is left on
    // disk bounds the oldest from below.
    s.oldestMxid = Math.min(s.nextMxid, Math.max(s.oldestMxid, this.offsets.oldestPage * this.offsetsPerPage, FIRST_MULTIXACT_ID));
    s.oldestOffset = Math.min(s.nextOffset, Math.max(s.oldestOffset, this.members.oldestPage * this.membersPerPage, 1));
  }

  get nextMxid(): number {
    return this.#state.nextMxid;
  }

  get nextOffset(): number {
    return this.#state.nextOffset;
  }

  get oldestMxid(): number {
    return this.#state.oldestMxid;
  }

  /** The positions now, for the control file (a copy). */
  positions(): MultiXactPositions {
    return { ...this.#state };
  }

  /** Create a multixact of `members`; resolves to its mxid (M1, M2). */
  async create(members: readonly MultiXactMember[]): Promise<number> {
    if (!Array.isArray(members) || members.length === 0) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'multixact: create needs a non-empty array of members { xid, status }');
    }
    if (members.length > MULTIXACT_MEMBERS_MAX) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: at most ${MULTIXACT_MEMBERS_MAX} members per multixact, got ${members.length}`);
    }
    const list = members.map((m, i) => {
      if (typeof m !== 'object' || m === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: member ${i} must be an object { xid, status }`);
      if (!isUint32(m.xid)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: member ${i} xid must be an unsigned 32-bit integer, got ${String(m.xid)}`);
      if (!Number.isInteger(m.status) || m.status < 0 || m.status > STATUS_MAX) {
        throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: member ${i} status must be a MultiXactStatus (0..${STATUS_MAX}), got ${String(m.status)}`);
      }
      return { xid: m.xid, status: m.status };
    });
    this.#ctx.checkWritable?.();
    return this.#locked(async () => {
      const s = this.#state;
      const mxid = s.nextMxid;
      const start = s.nextOffset;
      const end = start + list.length;
      if (mxid > MULTIXACT_ID_MAX) {
        throw new LamstoreError(ErrorCode.ID_SPACE_EXHAUSTED, `${this.offsets.dirPath}: multixact ids are used up (next would be ${mxid}, the last is ${MULTIXACT_ID_MAX}); wraparound is not supported`, { path: this.offsets.dirPath });
      }
      if (end > this.memberOffsetLimit) {
        throw new LamstoreError(ErrorCode.ID_SPACE_EXHAUSTED, `${this.members.dirPath}: multixact member space is used up (${list.length} members at offset ${start} would pass ${this.memberOffsetLimit}); wraparound is not supported`, { path: this.members.dirPath });
      }
      // Members first, then the offsets that make them reachable (M1).
      let i = 0;
      while (i < list.length) {
        const pageNo = Math.floor((start + i) / this.membersPerPage);
        i = await this.members.modifyPage(pageNo, (page) => {
          const view = new DataView(page.buffer, page.byteOffset, page.length);
          let j = i;
          for (; j < list.length && Math.floor((start + j) / this.membersPerPage) === pageNo; j++) {
            const at = this.#memberPosition(start + j);
            page[at.flagByte] = list[j]!.status;
            view.setUint32(at.xidByte, list[j]!.xid, true);
          }
          return j;
        });
      }
      await this.#setOffset(mxid, start);
      await this.#setOffset(mxid + 1, end);
      s.nextMxid = mxid + 1;
      s.nextOffset = end;
      return mxid;
    });
  }

  /** The members of `mxid`, in the order given to create (M4). */
  async getMembers(mxid: number): Promise<MultiXactMember[]> {
    if (!isUint32(mxid)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: mxid must be an unsigned 32-bit integer, got ${String(mxid)}`);
    this.#ctx.checkReadable?.();
    return this.#locked(async () => {
      const s = this.#state;
      if (mxid === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'multixact: mxid 0 is InvalidMultiXactId');
      if (mxid >= s.nextMxid) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: mxid ${mxid} was never created (the next mxid is ${s.nextMxid})`);
      if (mxid < s.oldestMxid) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: mxid ${mxid} was truncated away (the oldest mxid kept is ${s.oldestMxid})`);
      const start = await this.#getOffset(mxid);
      const end = await this.#getOffset(mxid + 1);
      const n = end - start;
      if (start === 0 || end === 0 || n <= 0 || n > MULTIXACT_MEMBERS_MAX || start < s.oldestOffset || end > s.nextOffset) {
        const path = this.offsets.segmentPath(Math.floor(Math.floor(mxid / this.offsetsPerPage) / SLRU_PAGES_PER_SEGMENT));
        throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: offsets of mxid ${mxid} are [${start}, ${end}), not a member range (lost in a crash after the last checkpoint?)`, { path });
      }
      const out: MultiXactMember[] = [];
      while (out.length < n) {
        const pageNo = Math.floor((start + out.length) / this.membersPerPage);
        await this.members.readPage(pageNo, (page) => {
          const view = new DataView(page.buffer, page.byteOffset, page.length);
          while (out.length < n && Math.floor((start + out.length) / this.membersPerPage) === pageNo) {
            const at = this.#memberPosition(start + out.length);
            const status = page[at.flagByte]!;
            if (status > STATUS_MAX) {
              const path = this.members.segmentPath(Math.floor(pageNo / SLRU_PAGES_PER_SEGMENT));
              throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: member ${start + out.length} of mxid ${mxid} has status byte ${status}, not a MultiXactStatus`, { path });
            }
            out.push({ xid: view.getUint32(at.xidByte, true), status: status as MultiXactStatus });
          }
        });
      }
      return out;
    });
  }

  /** Remove what lies wholly before `oldestMxid` (M5). Returns segment files removed. */
  async truncate(oldestMxid: number): Promise<number> {
    if (!isUint32(oldestMxid) || oldestMxid === 0) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: oldestMxid must be an mxid in 1..${MULTIXACT_ID_MAX + 1}, got ${String(oldestMxid)}`);
    }
    this.#ctx.checkWritable?.();
    return this.#locked(async () => {
      const s = this.#state;
      if (oldestMxid > s.nextMxid) {
        throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `multixact: cannot truncate to mxid ${oldestMxid}: it is past the next mxid ${s.nextMxid}`);
      }
      if (oldestMxid <= s.oldestMxid) return 0;
      let oldestOffset = oldestMxid === s.nextMxid ? s.nextOffset : await this.#getOffset(oldestMxid);
      // An entry lost in a crash: keep the members rather than guess where they start.
      if (oldestOffset === 0 || oldestOffset > s.nextOffset) oldestOffset = s.oldestOffset;
      s.oldestMxid = oldestMxid;
      s.oldestOffset = Math.max(s.oldestOffset, oldestOffset);
      await this.#ctx.saveControl?.();
      const removed = await this.members.truncateBefore(Math.floor(s.oldestOffset / this.membersPerPage));
      return removed + (await this.offsets.truncateBefore(Math.floor(oldestMxid / this.offsetsPerPage)));
    });
  }

  /**
   * The SLRU checkpoint: members, then offsets. The positions go into the control file at the
   * end of the checkpoint, once the sync phase made these pages durable (M3).
   */
  async checkpoint(): Promise<void> {
    await this.#locked(async () => {
      await this.members.writeAll();
      await this.offsets.writeAll();
    });
  }

  close(): void {
    this.offsets.close();
    this.members.close();
  }

  checkInvariants(): void {
    const s = this.#state;
    assert(s.nextMxid >= FIRST_MULTIXACT_ID && s.nextMxid <= MULTIXACT_ID_MAX + 1, `nextMxid ${s.nextMxid} in range`);
    assert(s.oldestMxid >= FIRST_MULTIXACT_ID && s.oldestMxid <= s.nextMxid, `oldestMxid ${s.oldestMxid} <= nextMxid ${s.nextMxid}`);
    assert(s.nextOffset >= 1 && s.nextOffset <= this.memberOffsetLimit, `nextOffset ${s.nextOffset} in range`);
    assert(s.oldestOffset >= 1 && s.oldestOffset <= s.nextOffset, `oldestOffset ${s.oldestOffset} <= nextOffset ${s.nextOffset}`);
    this.offsets.checkInvariants();
    this.members.checkInvariants();
  }

  // ------------------------------------------------------------------ internals

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.#mutex.run(fn);
  }

  #memberPosition(offset: number): { flagByte: number; xidByte: number } {
    const inPage = offset % this.membersPerPage;
    const group = Math.floor(inPage / MULTIXACT_MEMBERS_PER_GROUP);
    const k = inPage % MULTIXACT_MEMBERS_PER_GROUP;
    const base = group * MULTIXACT_GROUP_BYTES;
    return { flagByte: base + k, xidByte: base + MULTIXACT_FLAG_BYTES_PER_GROUP + k * 4 };
  }

  #setOffset(mxid: number, offset: number): Promise<void> {
    const pageNo = Math.floor(mxid / this.offsetsPerPage);
    const byte = (mxid % this.offsetsPerPage) * MULTIXACT_OFFSET_BYTES;
    return this.offsets.modifyPage(pageNo, (page) => {
      new DataView(page.buffer, page.byteOffset, page.length).setBigUint64(byte, BigInt(offset), true);
    });
  }

  #getOffset(mxid: number): Promise<number> {
    const pageNo = Math.floor(mxid / this.offsetsPerPage);
    const byte = (mxid % this.offsetsPerPage) * MULTIXACT_OFFSET_BYTES;
    return this.offsets.readPage(pageNo, (page) => Number(new DataView(page.buffer, page.byteOffset, page.length).getBigUint64(byte, true)));
  }
}
