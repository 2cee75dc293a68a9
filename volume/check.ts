/**
 * checkVolume: the `lamstore check` of a volume file. Reads only (shared lock), never repairs.
 *
 * What it verifies, each problem a finding naming the part that is wrong:
 *  K1 both superblock slots: magic, version, CRC, slot/generation parity, geometry; the two
 *     valid slots agree on the block size, the older one records no larger a volume than the
 *     active one (smaller is what a grow leaves, examine.ts E4), and their generations differ by
 *     one; a file longer than the volume (an unfinished grow) is no finding;
 *  K2 the active catalog: every index and leaf page against the CRC its parent records, its
 *     structure (counts, order, no duplicates, fork numbers, pages no newer than the superblock)
 *     and the forks its items make (F3, F4);
 *  K3 placement: extents and catalog pages inside the volume, non-empty, overlapping neither
 *     each other nor the superblocks (F6);
 *  K4 optionally (`checkPages`), every page below nblocks of every fork carries a valid page
 *     checksum for its block number (an all-zero page is valid).
 *  K5 snapshots (examine.ts E5, snapshots.ts S1-S6): the snapshot table and every snapshot's
 *     catalog as strictly as the live one (part `snapshot NAME` or `snapshot table`), and the
 *     blocks catalogs share: within one catalog none twice (K3), across catalogs only a catalog
 *     page in both or the same fork's same block; the table's pages shared with none. Pages of
 *     a snapshot's forks are not read by `checkPages` (they were checked when they were live).
 * The older slot's catalog is not checked: copy-on-write may already have reused its space (F5).
 */
import { RealIO, cleanUp, closeOrThrow, ioError, verifyPageChecksum } from '../engine/index.js';
import type { FileIO } from '../engine/index.js';
import { resolve } from 'node:path';
import type { Finding } from './format.js';
import { describeForkKey } from './format.js';
import { openHandleShared } from './volume.js';
import { examineVolume } from './examine.js';

export interface CheckVolumeOptions {
  /** @default RealIO */
  io?: FileIO;
  /** Verify every allocated page's checksum too (reads the whole used part). @default false */
  checkPages?: boolean;
  /** Stop listing page findings after this many (a summary finding follows). @default 100 */
  pageFindingsMax?: number;
  /** Page pass progress: once before it (done 0) and after every batch of pages read. */
  onProgress?: (progress: { doneBlocks: number; totalBlocks: number }) => void;
}

/** Blocks read per pread in the page pass. */
const CHECK_READ_BLOCKS = 64;

export async function checkVolume(rawPath: string, options: CheckVolumeOptions = {}): Promise<Finding[]> {
  const io = options.io ?? new RealIO();
  const path = resolve(rawPath);
  const handle = await openHandleShared(io, path);
  let closed = false;
  try {
    const ex = await examineVolume(io, handle, path);
    const findings = [...ex.findings];
    if (ex.fatal !== undefined || !options.checkPages || !ex.forks || !ex.active) return findings;
    const bs = ex.active.blockSizeBytes;
    const max = options.pageFindingsMax ?? 100;
    let totalBlocks = 0;
    for (const f of ex.forks) totalBlocks += f.nblocks;
    let doneBlocks = 0;
    options.onProgress?.({ doneBlocks, totalBlocks });
    let bad = 0;
    const buf = new Uint8Array(CHECK_READ_BLOCKS * bs);
    for (const f of ex.forks) {
      let blk = 0;
      for (const e of f.extents) {
        for (let i = 0; i < e.lengthBlocks && blk < f.nblocks; ) {
          const n = Math.min(CHECK_READ_BLOCKS, e.lengthBlocks - i, f.nblocks - blk);
          let got: number;
          try {
            got = await io.pread(handle, buf.subarray(0, n * bs), (e.startBlock + i) * bs);
          } catch (err) {
            throw ioError('read', path, err);
          }
          for (let k = 0; k < n; k++) {
            const page = buf.subarray(k * bs, (k + 1) * bs);
            if (k * bs + bs > got || !verifyPageChecksum(page, blk + k)) {
              bad++;
              if (bad <= max) {
                findings.push({ severity: 'error', part: `${describeForkKey(f)} block ${blk + k}`, message: `page checksum mismatch (volume block ${e.startBlock + i + k})` });
              }
            }
          }
          i += n;
          blk += n;
          doneBlocks += n;
          options.onProgress?.({ doneBlocks, totalBlocks });
        }
      }
    }
    if (bad > max) findings.push({ severity: 'error', part: 'pages', message: `${bad} pages fail their checksum (${max} listed)` });
    return findings;
  } catch (err) {
    closed = true;
    await cleanUp(err, `${path}: close`, () => io.close(handle));
    throw err;
  } finally {
    if (!closed) await closeOrThrow(io, handle, path);
  }
}
