/**
 * Growing a volume file that no engine holds (`lamstore grow`, `growVolumeFile`). A running
 * engine grows its own volume instead (volume.ts V6, `volumeExtension({ grow })`).
 *
 * Invariants:
 *  G1 Nothing is written before the request is known good: the new size must be a legal volume
 *     size for the volume's block size (checkVolumeGeometry) and larger than the size the active
 *     superblock records; the file must open under an exclusive flock (no engine holds it:
 *     VOLUME_LOCKED otherwise) and examine without a fatal problem (VOLUME_CORRUPT otherwise). A
 *     refusal leaves the file byte for byte as it was.
 *  G2 Order: (1) extend the file to the new size (ftruncate, when it is shorter), (2) zero-fill
 *     the new tail [old size, new size), (3) fdatasync, (4) write generation g + 1 into slot
 *     (g + 1) % 2 (the older slot, F1): the same catalog, the new volume size, (5) fdatasync.
 *     Until (4) is durable the active superblock is generation g: it records the old size and
 *     its catalog names only blocks below it, whatever the file's length, and a file longer than
 *     its volume opens (examine.ts E4). Once (4) is durable the new size is recorded and its tail
 *     has been durable zeros since (3). The superblock is 128 bytes inside one 512-byte sector,
 *     so a crash leaves it whole or not at all; a lost or torn write leaves slot g the newest
 *     valid one. So every crash leaves the old size or the new one, never a refused volume.
 *  G3 Durability assumptions, stated where the syncs are: (3) must cover the size change of (1).
 *     Linux fdatasync(2) flushes the metadata "needed in order to allow a subsequent data
 *     retrieval to be correctly handled", which includes st_size after ftruncate, so no fsync of
 *     the file is needed; the file keeps its name, so no directory fsync either.
 *  G4 A failure or a stop before (4) leaves the old size: the file is cut back to the length it
 *     had (not synced; if that fails, the failure rides on the reported error's `suppressed`
 *     list, and either way, or if a crash comes first, the longer file is still a valid volume
 *     of the old size, E4, and the next grow zero-fills that tail again). A
 *     failure at (4) or (5) leaves the old or the new size, both valid (reported as an error:
 *     `lamstore inspect` says which). The slot of (4) is then overwritten with zeros, not synced
 *     (a failure to is kept on the reported error's `suppressed` list), as volume.ts #undoSwitch does after a failed switch: after a failed
 *     fdatasync the kernel may serve the new superblock from its cache without ever writing it
 *     (fsyncgate), so a reopen without a power loss would see the new size, build on it, and its
 *     next checkpoint would overwrite slot g, the only durable superblock, while g + 1 is not
 *     durable. With the slot zeroed the reopen reads generation g (the old size), and its unclean
 *     open's fdatasync makes the zeros durable before anything is written; a power loss before
 *     that leaves g, or g + 1 if it did reach the disk: the same catalog, either size.
 *  G5 The new superblock keeps the catalog pointers, the fork count and the checkpoint time of
 *     generation g: a grow publishes no new checkpoint, only a larger volume around the same one.
 */
import { resolve } from 'node:path';
import { ErrorCode, LamstoreError, RealIO, cleanUp, closeAfter, ioError } from '../engine/index.js';
import type { FileHandle, FileIO } from '../engine/index.js';
import { SLOT_COUNT, SUPERBLOCK_BYTES, checkVolumeGeometry, encodeSuperblock } from './format.js';
import { examineVolume } from './examine.js';
import { openHandleExclusive } from './volume.js';
import { zeroFill } from './create.js';
import type { CreateProgress } from './create.js';

export interface GrowVolumeOptions {
  /** The new whole size of the volume, in bytes: larger than now, a multiple of the block size, at most 1 TiB. */
  sizeBytes: number;
  /** @default RealIO */
  io?: FileIO;
  /** Called after every zero-filled chunk of the new tail; throwing stops the grow (G4). */
  onProgress?: (progress: CreateProgress) => void;
}

export interface GrowVolumeResult {
  /** The volume file, resolved. */
  path: string;
  blockSizeBytes: number;
  oldSizeBytes: number;
  newSizeBytes: number;
  /** The generation of the superblock that records the new size. */
  generation: number;
}

function badArg(message: string): LamstoreError {
  return new LamstoreError(ErrorCode.BAD_ARGUMENT, message);
}

/**
 * Grow a volume file that no engine holds to `sizeBytes` (G1-G5). Rejects with BAD_ARGUMENT
 * (no path: the size is what is wrong) for a size that is not larger or not legal,
 * VOLUME_LOCKED, VOLUME_CORRUPT, or IO_ERROR naming the step that failed.
 */
export async function growVolumeFile(rawPath: string, options: GrowVolumeOptions): Promise<GrowVolumeResult> {
  if (typeof options !== 'object' || options === null) throw badArg('growVolumeFile needs an options object { sizeBytes, io?, onProgress? }');
  const { sizeBytes } = options;
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw badArg(`new size must be a positive whole number of bytes, got ${String(sizeBytes)}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw badArg('option onProgress must be a function');
  const io = options.io ?? new RealIO();
  const path = resolve(rawPath);
  const handle = await openHandleExclusive(io, path);
  return closeAfter(io, handle, path, () => growOpen(io, handle, path, sizeBytes, options.onProgress));
}

async function growOpen(io: FileIO, handle: FileHandle, path: string, newSizeBytes: number, onProgress: GrowVolumeOptions['onProgress']): Promise<GrowVolumeResult> {
  // G1: everything is checked before the first write.
  const ex = await examineVolume(io, handle, path);
  if (ex.fatal !== undefined) throw new LamstoreError(ErrorCode.VOLUME_CORRUPT, `${path}: volume is corrupt: ${ex.fatal}`, { path });
  const sb = ex.active!;
  const oldSizeBytes = sb.volumeSizeBytes;
  const bs = sb.blockSizeBytes;
  const geometry = checkVolumeGeometry(newSizeBytes, bs);
  if (geometry) throw badArg(geometry); // names the size: "volume size N is ..."
  if (newSizeBytes < oldSizeBytes) throw badArg(`new size ${newSizeBytes} bytes is smaller than the volume's ${oldSizeBytes}: a volume cannot shrink`);
  if (newSizeBytes === oldSizeBytes) throw badArg(`new size ${newSizeBytes} bytes is the volume's size already: nothing to grow`);
  const fileSizeBytes = ex.fileSizeBytes;
  const generation = sb.generation + 1;
  const superblock = encodeSuperblock({ ...sb, slot: generation % SLOT_COUNT, generation, volumeSizeBytes: newSizeBytes });

  // G2 (1)-(3): the tail, durable before any superblock names it.
  let step = 'ftruncate';
  try {
    if (fileSizeBytes < newSizeBytes) await io.ftruncate(handle, newSizeBytes);
    step = 'write';
    await zeroFill(io, handle, oldSizeBytes, newSizeBytes, onProgress);
    step = 'fdatasync';
    await io.fdatasync(handle); // G3: covers the size change too
  } catch (err) {
    // G4: nothing names the tail; give the space back if we can (a failure to is kept on the error).
    const e = ioError(step, path, err);
    if (fileSizeBytes < newSizeBytes) await cleanUp(e, `${path}: cut back to ${fileSizeBytes} bytes`, () => io.ftruncate(handle, fileSizeBytes));
    throw e;
  }

  // G2 (4)-(5): the switch. From the write on, the old or the new size may be durable (G4).
  step = 'write superblock';
  try {
    await io.pwrite(handle, superblock, (generation % SLOT_COUNT) * bs);
    step = 'fdatasync superblock';
    await io.fdatasync(handle);
  } catch (err) {
    const cause = ioError(step, path, err);
    const e = new LamstoreError(cause.code, `${cause.message}; the volume now has its old size (${oldSizeBytes} bytes) or its new one (${newSizeBytes}), either valid: lamstore inspect shows which`, {
      cause: err,
      path,
      errno: cause.errno,
      syscall: cause.syscall,
    });
    // G4: never leave a superblock in the cache that may not be on the disk.
    await cleanUp(e, `${path}: blank superblock slot ${generation % SLOT_COUNT}`, () => io.pwrite(handle, new Uint8Array(SUPERBLOCK_BYTES), (generation % SLOT_COUNT) * bs));
    throw e;
  }
  return { path, blockSizeBytes: bs, oldSizeBytes, newSizeBytes, generation };
}
