/**
 * What the `lamstore` CLI needs from the volume beyond `checkVolume` and `openVolumeReadOnly`:
 *  - `volumeGeometryProblem`: the creation limits as a sentence, so `lamstore create` refuses a
 *    bad --size / --block-size as bad usage before it touches the file system;
 *  - `checkVolumeWithProgress`: `checkVolume` whose page pass reports progress (for the
 *    `check --pages` progress bar).
 * Kept in its own file so the volume's own files stay as their author shapes them. If
 * `CheckVolumeOptions` gains an `onProgress`, the second function can go.
 *
 * Invariants:
 *  S1 Reads only: the file is opened read-only under a shared flock, as checkVolume does.
 *  S2 Same findings as `checkVolume` for the same options (the page pass below is the same walk
 *     in the same order); `onProgress` is told every batch, ending with done === total.
 */
import { RealIO, ioError, verifyPageChecksum } from '../engine/index.js';
import type { FileIO } from '../engine/index.js';
import { resolve } from 'node:path';
import type { Finding } from './format.js';
import { checkVolumeGeometry, describeForkKey } from './format.js';
import { examineVolume, openHandleShared } from './volume.js';

/** Why a volume of this size and block size cannot be created, or null when it can. */
export function volumeGeometryProblem(volumeSizeBytes: number, blockSizeBytes: number): string | null {
  return checkVolumeGeometry(volumeSizeBytes, blockSizeBytes);
}

export interface PageCheckProgress {
  doneBlocks: number;
  totalBlocks: number;
}

export interface CheckWithProgressOptions {
  /** @default RealIO */
  io?: FileIO;
  checkPages?: boolean;
  /** @default 100 */
  pageFindingsMax?: number;
  /** Called once before the page pass (done 0) and after every batch of pages. */
  onProgress?: (progress: PageCheckProgress) => void;
}

/** Blocks read per pread in the page pass (as check.ts). */
const CHECK_READ_BLOCKS = 64;

export async function checkVolumeWithProgress(rawPath: string, options: CheckWithProgressOptions = {}): Promise<Finding[]> {
  const io = options.io ?? new RealIO();
  const path = resolve(rawPath);
  const handle = await openHandleShared(io, path);
  try {
    const ex = await examineVolume(io, handle, path);
    const findings = [...ex.findings];
    if (ex.fatal !== undefined || !options.checkPages || !ex.catalog || !ex.active) return findings;
    const bs = ex.active.blockSizeBytes;
    const max = options.pageFindingsMax ?? 100;
    let totalBlocks = 0;
    for (const f of ex.catalog.forks) totalBlocks += f.nblocks;
    let doneBlocks = 0;
    options.onProgress?.({ doneBlocks, totalBlocks });
    let bad = 0;
    const buf = new Uint8Array(CHECK_READ_BLOCKS * bs);
    for (const f of ex.catalog.forks) {
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
  } finally {
    await io.close(handle).catch(() => {});
  }
}
