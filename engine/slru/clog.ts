/**
 * clog (pg_xact): the commit status of every transaction id, two bits each (PostgreSQL clog.c).
 *
 * On-disk contract (behaviour 43), with P = blockSize:
 *  - 4 xids per byte, 4P xids per page (32768 at 8 KiB), 32 pages per segment in `pg_xact/`.
 *  - xid x lives in page `x / 4P`, byte `(x % 4P) / 4`, bits `(x % 4) * 2` and the one above:
 *    status = (byte >> ((x % 4) * 2)) & 3.
 *  - 0 IN_PROGRESS, 1 COMMITTED, 2 ABORTED, 3 SUB_COMMITTED. A page never written reads as all
 *    IN_PROGRESS (slru.ts S6): a commit lost in a crash is reported as not committed.
 *  - Sync handler CLOG (1).
 *
 * Invariants:
 *  C1 Only the two bits of the xid change on setStatus; neighbours keep theirs.
 *  C2 xids below the truncation point (`truncate(oldestXid)` removes whole segments before the
 *     one holding oldestXid) are refused with BAD_ARGUMENT rather than read as IN_PROGRESS.
 *     The cutoff is made durable in the control file before any segment goes (slru.ts
 *     truncateBefore, control-file.ts CF5 d) and given back at open (ClogOptions.oldestPage), so
 *     an xid refused before a restart is refused after it, crash or not.
 * No wraparound logic: lamstore treats xids as plain uint32 page indices (there is no xid
 * horizon to compare against), which is PostgreSQL's layout without its modulo-2^32 ordering.
 */
import { XidSlru, checkXid } from './xid-slru.js';
import { ErrorCode, LamstoreError, assert } from '../errors.js';
import { SyncHandlerId } from '../sync/registry.js';
import { SLRU_DIRS } from './names.js';
import { Slru } from './slru.js';
import type { SlruContext } from './slru.js';

export const ClogStatus = { IN_PROGRESS: 0, COMMITTED: 1, ABORTED: 2, SUB_COMMITTED: 3 } as const;
export type ClogStatus = (typeof ClogStatus)[keyof typeof ClogStatus];

export const CLOG_BITS_PER_XACT = 2;
export const CLOG_XACTS_PER_BYTE = 4;
assert(CLOG_BITS_PER_XACT * CLOG_XACTS_PER_BYTE === 8, 'clog statuses fill whole bytes');

export { checkXid };

export interface ClogOptions {
  bufferCount?: number;
  /** Tests only: another handler (SyncHandlerId.NONE for behaviour 8). @default CLOG */
  handler?: number;
  /** The truncation cutoff the control file recorded (SlruOptions.oldestPage). */
  oldestPage?: number;
}

export class Clog extends XidSlru {
  /** 4 * blockSize. */
  readonly xidsPerPage: number;

  private constructor(slru: Slru) {
    super(slru);
    this.xidsPerPage = slru.blockSize * CLOG_XACTS_PER_BYTE;
  }

  static async open(ctx: SlruContext, options: ClogOptions = {}): Promise<Clog> {
    const slru = await Slru.open(ctx, {
      name: 'clog',
      dirRelative: SLRU_DIRS[SyncHandlerId.CLOG]!,
      handler: options.handler ?? SyncHandlerId.CLOG,
      ...(options.bufferCount === undefined ? {} : { bufferCount: options.bufferCount }),
      ...(options.oldestPage === undefined ? {} : { oldestPage: options.oldestPage }),
    });
    return new Clog(slru);
  }

  /** Where xid's two bits live (behaviour 43). */
  locate(xid: number): { pageNo: number; byteOffset: number; shift: number } {
    return {
      pageNo: Math.floor(xid / this.xidsPerPage),
      byteOffset: Math.floor((xid % this.xidsPerPage) / CLOG_XACTS_PER_BYTE),
      shift: (xid % CLOG_XACTS_PER_BYTE) * CLOG_BITS_PER_XACT,
    };
  }

  async setStatus(xid: number, status: ClogStatus): Promise<void> {
    checkXid(xid);
    if (status !== 0 && status !== 1 && status !== 2 && status !== 3) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `clog status must be one of ClogStatus (0 IN_PROGRESS, 1 COMMITTED, 2 ABORTED, 3 SUB_COMMITTED), got ${String(status)}`);
    }
    const at = this.#locateKept(xid);
    await this.slru.modifyPage(at.pageNo, (page) => {
      const old = page[at.byteOffset]!;
      page[at.byteOffset] = (old & ~(0b11 << at.shift)) | (status << at.shift); // C1
    });
  }

  async getStatus(xid: number): Promise<ClogStatus> {
    checkXid(xid);
    const at = this.#locateKept(xid);
    return this.slru.readPage(at.pageNo, (page) => ((page[at.byteOffset]! >> at.shift) & 0b11) as ClogStatus);
  }

  #locateKept(xid: number): { pageNo: number; byteOffset: number; shift: number } {
    const at = this.locate(xid);
    if (at.pageNo < this.slru.oldestPage) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `clog: xid ${xid} was truncated away (the oldest xid kept is ${this.slru.oldestPage * this.xidsPerPage})`, { path: this.slru.dirPath });
    }
    return at;
  }
}
