/**
 * Snapshots of a volume file that no engine holds (`lamstore snapshot create|list|drop`,
 * `lamstore rollback`, `lamstore clone`): each opens the volume, runs the Volume method
 * (volume.ts V7, snapshots.ts S1-S6) and closes it. Clone writes a new volume file holding one
 * snapshot's forks.
 *
 * Invariants:
 *  K1 A refusal (bad name, a name taken or missing, a clone target that exists, a size too small)
 *     comes before the first write: the volume is left byte for byte as it was. Create, drop and
 *     rollback take the exclusive flock (VOLUME_LOCKED while an engine holds the volume); list and
 *     clone the shared one, and never write the source.
 *  K2 Clone creates its file the way create.ts does (C2-C4): exclusively, never over an existing
 *     file, locked, sized, zero-filled; then every fork's blocks written contiguously in key
 *     order from block 2, then one fresh catalog (catalog.ts build) after them, fdatasync, and
 *     only then both superblocks (generations 0 and 1 naming that one catalog), fdatasync, fsync
 *     the directory. Until its superblocks are written the file is refused as "never completed"
 *     (examine.ts), and on any error or stop (a throwing onProgress) it is removed: a partial
 *     clone never opens as a volume.
 *  K3 Clone's default size: the snapshot's data blocks twice over, plus three times the largest
 *     catalog its forks can take (CatalogTree.maxBlocks, M), plus 16 blocks, rounded up to a
 *     whole MiB (at least 64 KiB): the copy opens with room to rewrite every page once, which V5
 *     keeps free anyway (M + M - catalog for the catalog). A `sizeBytes` below what the data, its
 *     catalog and that catalog reserve need is BAD_ARGUMENT (no path: the size is what is wrong).
 */
import { dirname, resolve } from 'node:path';
import { ErrorCode, LamstoreError, RealIO, cleanUp, errnoOf, ioError } from '../engine/index.js';
import type { FileHandle, FileIO, ForkNumber } from '../engine/index.js';
import { SLOT_COUNT, VOLUME_SIZE_BYTES_MAX, VOLUME_SIZE_BYTES_MIN, checkVolumeGeometry, encodeSuperblock } from './format.js';
import type { CatalogFork } from './format.js';
import { CatalogTree } from './catalog.js';
import type { ForkRef } from './catalog.js';
import { Volume } from './volume.js';
import type { SnapshotInfo } from './volume.js';
import { zeroFill } from './create.js';
import type { CreateProgress } from './create.js';
import { checkSnapshotName } from './snapshots.js';

export interface SnapshotFileOptions {
  /** @default RealIO */
  io?: FileIO;
}

async function withVolume<T>(path: string, options: SnapshotFileOptions, readOnly: boolean, work: (vol: Volume) => Promise<T>): Promise<T> {
  const vol = await Volume.open({ io: options.io ?? new RealIO(), path, readOnly });
  try {
    return await work(vol);
  } finally {
    await vol.close();
  }
}

/** Take snapshot `name` of the durable state of a volume no engine holds (K1). */
export async function createSnapshot(path: string, name: string, options: SnapshotFileOptions = {}): Promise<SnapshotInfo> {
  checkSnapshotName(name);
  return withVolume(path, options, false, (vol) => vol.createSnapshot(name));
}

/** The snapshots of a volume, with the blocks each alone holds (shared lock). */
export async function listSnapshots(path: string, options: SnapshotFileOptions = {}): Promise<SnapshotInfo[]> {
  return withVolume(path, options, true, async (vol) => vol.listSnapshots());
}

/** Drop snapshot `name`; what it alone held is free from the next open. */
export async function dropSnapshot(path: string, name: string, options: SnapshotFileOptions = {}): Promise<void> {
  checkSnapshotName(name);
  await withVolume(path, options, false, (vol) => vol.dropSnapshot(name));
}

/** Make snapshot `name` the volume's state (the snapshot stays); returns the new generation. */
export async function rollbackVolume(path: string, name: string, options: SnapshotFileOptions = {}): Promise<{ generation: number }> {
  checkSnapshotName(name);
  return withVolume(path, options, false, async (vol) => {
    const generation = vol.info().generation + 1;
    await vol.rollbackToSnapshot(name);
    return { generation };
  });
}

export interface CloneSnapshotOptions extends SnapshotFileOptions {
  /** The new volume's size in bytes. @default K3 */
  sizeBytes?: number;
  /** Called after each chunk zero-filled or copied; throwing stops the clone (its file is removed). */
  onProgress?: (progress: CreateProgress) => void;
}

export interface CloneSnapshotResult {
  path: string;
  newPath: string;
  name: string;
  blockSizeBytes: number;
  sizeBytes: number;
  forks: number;
  dataBlocks: number;
  catalogPages: number;
}

/** Blocks read and written at once while copying. */
const COPY_CHUNK_BLOCKS = 64;
const MiB = 1024 * 1024;

function badArg(message: string): LamstoreError {
  return new LamstoreError(ErrorCode.BAD_ARGUMENT, message);
}

/** Copy snapshot `name` of `rawPath` into a new compact volume file `rawNewPath` (K2, K3). */
export async function cloneSnapshot(rawPath: string, name: string, rawNewPath: string, options: CloneSnapshotOptions = {}): Promise<CloneSnapshotResult> {
  checkSnapshotName(name);
  if (options.sizeBytes !== undefined && (typeof options.sizeBytes !== 'number' || !Number.isSafeInteger(options.sizeBytes) || options.sizeBytes <= 0)) {
    throw badArg(`clone size must be a positive whole number of bytes, got ${String(options.sizeBytes)}`);
  }
  const io = options.io ?? new RealIO();
  const path = resolve(rawPath);
  const newPath = resolve(rawNewPath);
  if (newPath === path) throw badArg('the clone must be a new file, not the volume itself');
  const src = await Volume.open({ io, path, snapshot: name });
  try {
    const info = src.info();
    const bs = info.blockSizeBytes;
    const forks = info.forks;
    let dataBlocks = 0;
    for (const f of forks) dataBlocks += f.nblocks;
    const m = CatalogTree.maxBlocks(bs, forks.length, dataBlocks);
    // Everything written, plus V5's catalog reserve (M + M - catalog <= 2M) so the copy accepts a checkpoint.
    const neededBlocks = 2 + dataBlocks + m + 2 * m;
    const unit = Math.max(1, MiB / bs);
    const defaultBlocks = Math.ceil((2 + 2 * dataBlocks + 3 * m + 16) / unit) * unit;
    const sizeBytes = options.sizeBytes ?? Math.min(VOLUME_SIZE_BYTES_MAX, Math.max(VOLUME_SIZE_BYTES_MIN, defaultBlocks * bs));
    const geometry = checkVolumeGeometry(sizeBytes, bs);
    if (geometry) throw badArg(`clone size: ${geometry}`);
    if (sizeBytes / bs < neededBlocks) throw badArg(`clone size ${sizeBytes} bytes is too small: snapshot ${name} needs at least ${neededBlocks * bs} bytes (${dataBlocks} data blocks, its catalog and the catalog room a checkpoint keeps)`);
    let st;
    try {
      st = await io.stat(newPath);
    } catch (err) {
      throw ioError('stat', newPath, err);
    }
    if (st) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${newPath}: exists already; a clone never replaces a file`, { path: newPath, errno: 'EEXIST' });

    // The layout: forks in key order (info() sorts them), each contiguous from block 2.
    let next = 2;
    const maps: CatalogFork[] = [];
    for (const f of forks) {
      maps.push({ spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber, fork: f.fork, nblocks: f.nblocks, extents: f.nblocks === 0 ? [] : [{ startBlock: next, lengthBlocks: f.nblocks }] });
      next += f.nblocks;
    }
    const tree = new CatalogTree(bs, [], [], []);
    const refs = maps.map((f, i): ForkRef & { i: number } => ({ key: `${f.spcOid}/${f.dbOid}/${f.relNumber}/${f.fork}`, rel: { spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber }, fork: f.fork, catPages: null, i }));
    for (const r of refs) tree.addFork(r);
    const built = tree.build(0, { forkMap: (ref) => maps[(ref as ForkRef & { i: number }).i]! }, () => next++);

    let handle: FileHandle | undefined;
    try {
      handle = await io.open(newPath, { create: true, exclusive: true });
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${newPath}: exists already; a clone never replaces a file`, { path: newPath, errno: 'EEXIST' });
      throw ioError('create', newPath, err);
    }
    let step = 'flock';
    try {
      await io.flock(handle, 'exclusive');
      step = 'ftruncate';
      await io.ftruncate(handle, sizeBytes);
      step = 'write';
      const totalBytes = sizeBytes + dataBlocks * bs;
      await zeroFill(io, handle, 0, sizeBytes, (p) => options.onProgress?.({ doneBytes: p.doneBytes, totalBytes }));
      let done = sizeBytes;
      const buf = new Uint8Array(COPY_CHUNK_BLOCKS * bs);
      for (let k = 0; k < forks.length; k++) {
        const f = forks[k]!;
        const rel = { spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber };
        const at = maps[k]!.extents[0]?.startBlock ?? 0;
        for (let b = 0; b < f.nblocks; b += COPY_CHUNK_BLOCKS) {
          const n = Math.min(COPY_CHUNK_BLOCKS, f.nblocks - b);
          const pages: Uint8Array[] = [];
          for (let i = 0; i < n; i++) {
            const page = buf.subarray(i * bs, (i + 1) * bs);
            step = 'read';
            await src.read(rel, f.fork as ForkNumber, b + i, page);
            pages.push(page);
          }
          step = 'write';
          await io.pwritev(handle, pages, (at + b) * bs);
          done += n * bs;
          options.onProgress?.({ doneBytes: done, totalBytes });
        }
      }
      for (const w of built.writes) await io.pwrite(handle, w.bytes, w.block * bs);
      step = 'fdatasync';
      await io.fdatasync(handle);
      step = 'write';
      const timeMs = Date.now();
      for (let generation = 0; generation < SLOT_COUNT; generation++) {
        const sb = encodeSuperblock({ slot: generation, blockSizeBytes: bs, volumeSizeBytes: sizeBytes, generation, indexBlock: built.indexBlock, indexCrc: built.indexCrc, indexPages: built.indexPages, leafPages: built.leafPages, forkCount: built.forkCount, timeMs });
        await io.pwrite(handle, sb, generation * bs);
      }
      step = 'fdatasync';
      await io.fdatasync(handle);
      step = 'close';
      const h = handle;
      handle = undefined;
      await io.close(h);
      step = 'fsync directory';
      await io.fsyncDir(dirname(newPath));
    } catch (err) {
      const e = err instanceof LamstoreError ? err : ioError(step, newPath, err);
      // Clean-up failures ride on the error (errors.ts cleanUp): a partial clone left behind is
      // refused by every open as never completed, and the user is told it is there.
      const h = handle;
      if (h !== undefined) await cleanUp(e, `${newPath}: close`, () => io.close(h));
      await cleanUp(e, `${newPath}: remove the partial clone`, () => io.unlink(newPath));
      throw e;
    }
    return { path, newPath, name, blockSizeBytes: bs, sizeBytes, forks: forks.length, dataBlocks, catalogPages: built.writes.length };
  } finally {
    await src.close();
  }
}
