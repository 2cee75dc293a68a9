/**
 * Creating a volume file (`lamstore create`, `volumeExtension({ create })`).
 *
 * Invariants:
 *  C1 The options are checked before the file exists: a bad size or block size creates nothing.
 *  C2 The file is created exclusively (never over an existing file) and locked before any write.
 *  C3 Order: zero-fill the whole size (progress after each chunk), fdatasync, then two empty
 *     catalogs (generations 0 and 1, one index page each) and both superblocks, fdatasync,
 *     fsync the directory so the name is durable. Data writes later never change the file size,
 *     so fdatasync alone makes them durable.
 *  C4 On any error the partial file is removed; had a crash or a kill kept it, its superblocks
 *     are still zero, so it is refused (examine.ts), never opened as an empty volume.
 */
import { dirname, resolve } from 'node:path';
import { ErrorCode, LamstoreError, checkOptionKeys, crc32c, errnoOf, ioError, optionKeys, suppress } from '../engine/index.js';
import type { FileHandle, FileIO } from '../engine/index.js';
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN, METADATA_BLOCKS, SLOT_COUNT, checkVolumeGeometry, encodeIndexPage, encodeSuperblock } from './format.js';

export interface CreateProgress {
  doneBytes: number;
  totalBytes: number;
}

export interface VolumeCreateOptions {
  /** Whole size of the volume file: 64 KiB..1 TiB, a multiple of blockSize. */
  sizeBytes: number;
  /** Page size; must equal the engine's. @default the engine's blockSize (8192) */
  blockSize?: number;
  /** Called after every zero-filled chunk (the CLI draws a progress bar from it). */
  onProgress?: (progress: CreateProgress) => void;
}

/** Zero-fill chunk at creation: large enough to stream, small enough to report progress. */
export const ZERO_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Write zeros over bytes [fromBytes, toBytes) of a file, ZERO_CHUNK_BYTES at a time, calling
 * `onProgress` after each chunk with the bytes of this range done so far (creation fills the
 * whole file, a grow only its new tail). Written, not merely sized: a later page write into
 * these blocks then allocates nothing, so fdatasync alone makes it durable, and a full disk
 * shows up here instead of in the middle of a checkpoint. A throwing `onProgress` stops the
 * fill (a stop signal in the CLI).
 */
export async function zeroFill(io: FileIO, handle: FileHandle, fromBytes: number, toBytes: number, onProgress?: (progress: CreateProgress) => void): Promise<void> {
  const totalBytes = toBytes - fromBytes;
  const chunk = new Uint8Array(Math.max(0, Math.min(ZERO_CHUNK_BYTES, totalBytes)));
  for (let done = 0; done < totalBytes; ) {
    const n = Math.min(chunk.length, totalBytes - done);
    await io.pwrite(handle, n === chunk.length ? chunk : chunk.subarray(0, n), fromBytes + done);
    done += n;
    onProgress?.({ doneBytes: done, totalBytes });
  }
}

function badArg(message: string): LamstoreError {
  return new LamstoreError(ErrorCode.BAD_ARGUMENT, message);
}

const CREATE_OPTION_KEYS = optionKeys<VolumeCreateOptions>({ sizeBytes: true, blockSize: true, onProgress: true });

/** Refuse a key VolumeCreateOptions does not have (a misspelt `blocksize` would silently mean the engine's block size). */
export function checkCreateOptionKeys(create: object, what: string): void {
  checkOptionKeys(create, CREATE_OPTION_KEYS, what);
}

export function checkCreateOptions(create: VolumeCreateOptions, engineBlockSize: number | undefined): { sizeBytes: number; blockSize: number } {
  if (typeof create !== 'object' || create === null) throw badArg('option create must be an object { sizeBytes, blockSize? }');
  checkCreateOptionKeys(create, 'volume create options');
  const blockSize = create.blockSize ?? engineBlockSize ?? 8192;
  if (typeof blockSize !== 'number' || !Number.isInteger(blockSize) || blockSize < BLOCK_SIZE_BYTES_MIN || blockSize > BLOCK_SIZE_BYTES_MAX || (blockSize & (blockSize - 1)) !== 0) {
    throw badArg(`option create.blockSize must be a power of two in ${BLOCK_SIZE_BYTES_MIN}..${BLOCK_SIZE_BYTES_MAX}, got ${String(blockSize)}`);
  }
  if (engineBlockSize !== undefined && blockSize !== engineBlockSize) {
    throw badArg(`option create.blockSize ${blockSize} differs from the engine's blockSize ${engineBlockSize}`);
  }
  const sizeBytes = create.sizeBytes;
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes)) throw badArg(`option create.sizeBytes must be an integer number of bytes, got ${String(sizeBytes)}`);
  const geometry = checkVolumeGeometry(sizeBytes, blockSize);
  if (geometry) throw badArg(`option create.sizeBytes: ${geometry}`);
  if (create.onProgress !== undefined && typeof create.onProgress !== 'function') throw badArg('option create.onProgress must be a function');
  return { sizeBytes, blockSize };
}

/**
 * Create a volume file: zero-fill the whole size (reporting progress), fdatasync, then two
 * empty catalogs (generations 0 and 1) and both superblocks, fdatasync, and fsync the directory
 * so the name is durable. On any error the partial file is removed: a half-made file never
 * opens as a volume (and had it survived a crash, its superblocks would still be zero).
 */
export async function createVolumeFile(io: FileIO, rawPath: string, create: VolumeCreateOptions, engineBlockSize?: number): Promise<void> {
  const { sizeBytes, blockSize } = checkCreateOptions(create, engineBlockSize);
  const path = resolve(rawPath);
  let handle: FileHandle;
  try {
    handle = await io.open(path, { create: true, exclusive: true });
  } catch (err) {
    throw ioError('create', path, err);
  }
  let step = 'flock';
  try {
    await io.flock(handle, 'exclusive');
    // Set the size first so the zero-fill below overwrites in place instead of appending
    // (cheaper for SimDisk's in-memory image; the same blocks end up written on a real disk).
    step = 'ftruncate';
    await io.ftruncate(handle, sizeBytes);
    step = 'write';
    await zeroFill(io, handle, 0, sizeBytes, create.onProgress);
    step = 'fdatasync';
    await io.fdatasync(handle);
    step = 'write';
    const timeMs = Date.now();
    for (let generation = 0; generation < SLOT_COUNT; generation++) {
      // An empty catalog: one index page with no entries, no leaves.
      const index = encodeIndexPage({ generation, entries: [], next: null }, blockSize);
      const at = METADATA_BLOCKS + generation;
      await io.pwrite(handle, index, at * blockSize);
      const sb = encodeSuperblock({
        slot: generation % SLOT_COUNT,
        blockSizeBytes: blockSize,
        volumeSizeBytes: sizeBytes,
        generation,
        indexBlock: at,
        indexCrc: crc32c(index),
        indexPages: 1,
        leafPages: 0,
        forkCount: 0,
        timeMs,
      });
      await io.pwrite(handle, sb, (generation % SLOT_COUNT) * blockSize);
    }
    step = 'fdatasync';
    await io.fdatasync(handle);
    step = 'close';
    const h = handle;
    handle = undefined as unknown as FileHandle;
    await io.close(h);
    step = 'fsync directory';
    await io.fsyncDir(dirname(path));
  } catch (err) {
    const closeFailures: unknown[] = [];
    if (handle !== undefined) await io.close(handle).catch((closeErr: unknown) => closeFailures.push(closeErr));
    let removal = '';
    try {
      await io.unlink(path);
    } catch (unlinkErr) {
      removal = `; could not remove the partial file: ${errnoOf(unlinkErr) ?? String(unlinkErr)}`;
    }
    const e = ioError(step, path, err);
    const reported = removal && e.code === ErrorCode.IO_ERROR ? new LamstoreError(e.code, `${e.message}${removal}`, { cause: err, path, errno: e.errno, syscall: e.syscall }) : e;
    for (const closeErr of closeFailures) suppress(reported, `${path}: close`, closeErr);
    throw reported;
  }
}
