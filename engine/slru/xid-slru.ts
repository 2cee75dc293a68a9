/**
 * What clog and commit_ts share: one SLRU indexed by transaction id, truncated by whole
 * segments below the oldest xid still needed, written out at the SLRU checkpoint.
 */
import { ErrorCode, LamstoreError } from '../errors.js';
import { isUint32 } from '../relfile.js';
import type { Slru } from './slru.js';

export function checkXid(xid: unknown, what = 'xid'): number {
  if (!isUint32(xid)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${what} must be an unsigned 32-bit integer, got ${String(xid)}`);
  return xid;
}

export abstract class XidSlru {
  readonly slru: Slru;

  protected constructor(slru: Slru) {
    this.slru = slru;
  }

  /** The page holding `xid`'s entry (and where in it, per subclass). */
  abstract locate(xid: number): { pageNo: number };

  /** Remove whole segments before the one holding `oldestXid`. Returns files removed. */
  async truncate(oldestXid: number): Promise<number> {
    checkXid(oldestXid, 'oldestXid');
    return this.slru.truncateBefore(this.locate(oldestXid).pageNo);
  }

  /** The SLRU checkpoint: write every dirty page (the sync phase fsyncs them). */
  async checkpoint(): Promise<void> {
    await this.slru.writeAll();
  }

  close(): void {
    this.slru.close();
  }

  checkInvariants(): void {
    this.slru.checkInvariants();
  }
}
