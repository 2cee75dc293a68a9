/**
 * commit_ts (pg_commit_ts): the commit timestamp and replication origin of every xid
 * (PostgreSQL commit_ts.c).
 *
 * On-disk contract, with P = blockSize:
 *  - One 10-byte entry per xid, packed without padding: bytes 0-7 the timestamp in microseconds
 *    (int64, little-endian; PostgreSQL's TimestampTz counts from 2000-01-01, lamstore stores
 *    whatever the caller gives), bytes 8-9 the origin id (uint16, little-endian).
 *  - floor(P / 10) entries per page (819 at 8 KiB; the last P % 10 bytes of a page are unused),
 *    so xid x lives in page `x / 819` at byte `(x % 819) * 10`; 32 pages per segment in
 *    `pg_commit_ts/`. Sync handler COMMIT_TS (2).
 *
 * Invariants:
 *  T1 An all-zero entry means "no timestamp recorded" and `get` returns null for it, as
 *     PostgreSQL treats a zero timestamp as unset. So `set(xid, 0n, 0)` is indistinguishable
 *     from never setting it; a zero timestamp with a non-zero origin is kept and returned.
 *  T2 As for clog (clog.ts C2): xids below the truncation point are refused.
 */
import { ErrorCode, LamstoreError, assert } from '../errors.js';
import { SyncHandlerId } from '../sync/registry.js';
import { XidSlru, checkXid } from './xid-slru.js';
import { SLRU_DIRS } from './names.js';
import { Slru } from './slru.js';
import type { SlruContext } from './slru.js';

export const COMMIT_TS_ENTRY_BYTES = 10;
const TIMESTAMP_BYTES = 8;
assert(TIMESTAMP_BYTES + 2 === COMMIT_TS_ENTRY_BYTES, 'an entry is a timestamp and an origin id, unpadded');

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

export interface CommitTsEntry {
  timestampUs: bigint;
  originId: number;
}

export interface CommitTsOptions {
  bufferCount?: number;
  /** The truncation cutoff the control file recorded (SlruOptions.oldestPage). */
  oldestPage?: number;
}

export class CommitTs extends XidSlru {
  /** floor(blockSize / 10): 819 at 8 KiB. */
  readonly xidsPerPage: number;

  private constructor(slru: Slru) {
    super(slru);
    this.xidsPerPage = Math.floor(slru.blockSize / COMMIT_TS_ENTRY_BYTES);
  }

  static async open(ctx: SlruContext, options: CommitTsOptions = {}): Promise<CommitTs> {
    const slru = await Slru.open(ctx, {
      name: 'commit_ts',
      dirRelative: SLRU_DIRS[SyncHandlerId.COMMIT_TS]!,
      handler: SyncHandlerId.COMMIT_TS,
      ...(options.bufferCount === undefined ? {} : { bufferCount: options.bufferCount }),
      ...(options.oldestPage === undefined ? {} : { oldestPage: options.oldestPage }),
    });
    return new CommitTs(slru);
  }

  locate(xid: number): { pageNo: number; byteOffset: number } {
    return { pageNo: Math.floor(xid / this.xidsPerPage), byteOffset: (xid % this.xidsPerPage) * COMMIT_TS_ENTRY_BYTES };
  }

  async set(xid: number, timestampUs: bigint, originId = 0): Promise<void> {
    checkXid(xid);
    if (typeof timestampUs !== 'bigint' || timestampUs < INT64_MIN || timestampUs > INT64_MAX) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `commit_ts: timestampUs must be a bigint in the int64 range, got ${String(timestampUs)}`);
    }
    if (!Number.isInteger(originId) || originId < 0 || originId > 0xffff) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `commit_ts: originId must be an integer in 0..65535, got ${String(originId)}`);
    }
    const at = this.#locateKept(xid);
    await this.slru.modifyPage(at.pageNo, (page) => {
      const view = new DataView(page.buffer, page.byteOffset + at.byteOffset, COMMIT_TS_ENTRY_BYTES);
      view.setBigInt64(0, timestampUs, true);
      view.setUint16(TIMESTAMP_BYTES, originId, true);
    });
  }

  /** The entry of `xid`, or null when none was recorded (T1). */
  async get(xid: number): Promise<CommitTsEntry | null> {
    checkXid(xid);
    const at = this.#locateKept(xid);
    return this.slru.readPage(at.pageNo, (page) => {
      const view = new DataView(page.buffer, page.byteOffset + at.byteOffset, COMMIT_TS_ENTRY_BYTES);
      const timestampUs = view.getBigInt64(0, true);
      const originId = view.getUint16(TIMESTAMP_BYTES, true);
      if (timestampUs === 0n && originId === 0) return null;
      return { timestampUs, originId };
    });
  }

  #locateKept(xid: number): { pageNo: number; byteOffset: number } {
    const at = this.locate(xid);
    if (at.pageNo < this.slru.oldestPage) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `commit_ts: xid ${xid} was truncated away (the oldest xid kept is ${this.slru.oldestPage * this.xidsPerPage})`, { path: this.slru.dirPath });
    }
    return at;
  }
}
