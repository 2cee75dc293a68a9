/**
 * `lamstore/volume`: the volume extension. Preload it and relations created with
 * `{ storage: 'volume' }` live as extents in one preallocated file:
 *
 *   const engine = await Engine.open({ dataDir, preload: [volumeExtension({ path, create: { sizeBytes } })] });
 *
 * At preload the extension opens the volume (creating it when `create` is given and the file
 * does not exist), then registers sync handler "volume" and storage manager "volume" through
 * the preload context only: this folder imports nothing but the engine's public API.
 */
import { ErrorCode, LamstoreError, checkOptionKeys, optionKeys } from '../engine/index.js';
import { checkGrowOptions } from './format.js';
import { checkSnapshotName } from './snapshots.js';
import type { VolumeGrowOptions } from './format.js';
import type { Extension, PreloadContext } from '../engine/index.js';
import { Volume } from './volume.js';
import { checkCreateOptionKeys } from './create.js';
import type { VolumeCreateOptions } from './create.js';
import { volumeStorageManager, volumeSyncOps, VOLUME_SMGR_NAME } from './smgr.js';

export { Volume, openVolumeReadOnly, openVolumeReadOnly as inspectVolume, IOV_MAX, DEFRAG_EXTENTS_MIN, DEFRAG_BLOCKS_PER_EXTENT } from './volume.js';
export { createVolumeFile } from './create.js';
export { growVolumeFile } from './grow.js';
export type { GrowVolumeOptions, GrowVolumeResult } from './grow.js';
export { examineVolume } from './examine.js';
/** The forks' names (ForkInfo.forkName): the engine's list, here for callers of `inspectVolume`. */
export { FORK_NAMES } from '../engine/index.js';
export type { VolumeInfo, ForkInfo, VolumeOpenOptions, VolumeStats, VolumeHost, SnapshotInfo } from './volume.js';
export { cloneSnapshot, createSnapshot, dropSnapshot, listSnapshots, rollbackVolume } from './clone.js';
export type { CloneSnapshotOptions, CloneSnapshotResult, SnapshotFileOptions } from './clone.js';
export { checkSnapshotName, SNAPSHOT_NAME_BYTES_MAX } from './snapshots.js';
export type { CreateProgress, VolumeCreateOptions } from './create.js';
export type { SlotInfo, VolumeExamination, ExaminedSnapshot } from './examine.js';
export { checkVolume } from './check.js';
export type { CheckVolumeOptions } from './check.js';
export type { Finding, Extent, VolumeGrowOptions } from './format.js';
export {
  FORMAT_VERSION,
  checkVolumeGeometry,
  EXTENT_BLOCKS_FIRST,
  EXTENT_BYTES_MAX,
  VOLUME_SIZE_BYTES_MIN,
  VOLUME_SIZE_BYTES_MAX,
  METADATA_BLOCKS,
  extentBlocksMax,
} from './format.js';
export { VOLUME_SMGR_NAME, VOLUME_SYNC_HANDLER_NAME } from './smgr.js';

export interface VolumeExtensionOptions {
  /** The volume file. */
  path: string;
  /** Create the volume when the file does not exist (only a default when it does). */
  create?: VolumeCreateOptions;
  /** Open with a shared lock; writes are refused. @default false */
  readOnly?: boolean;
  /**
   * Let the running engine grow the file by `step` bytes (up to `max`) when an allocation would
   * otherwise fail with VOLUME_FULL (volume.ts V6). Both are multiples of the block size; `max`
   * is at least the volume's size. @default never grows
   */
  grow?: VolumeGrowOptions;
  /**
   * Open this snapshot of the volume instead of its live state: read-only (shared lock), every
   * write, extend, create, truncate and unlink refused with VOLUME_READ_ONLY, nothing ever written
   * to the file (volume.ts V7). Not with `create`, nor with `readOnly: false`. @default the live state
   */
  snapshot?: string;
}

export interface VolumeExtension extends Extension {
  /** The open volume, once preload ran (for inspection and tests). */
  readonly volume: Volume | undefined;
}

/** Exactly the fields of VolumeExtensionOptions (the compiler asks for a new one here). */
const VOLUME_EXTENSION_OPTION_KEYS = optionKeys<VolumeExtensionOptions>({ path: true, create: true, readOnly: true, grow: true, snapshot: true });

/** The volume extension for `Engine.open({ preload: [...] })`. */
export function volumeExtension(options: VolumeExtensionOptions): VolumeExtension {
  if (typeof options !== 'object' || options === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'volumeExtension needs an options object { path, create?, readOnly?, grow?, snapshot? }');
  checkOptionKeys(options, VOLUME_EXTENSION_OPTION_KEYS, 'volumeExtension()');
  // The rest of create is checked at preload (its block size must match the engine's); a
  // misspelt key is refused here, where the caller wrote it.
  if (typeof options.create === 'object' && options.create !== null) checkCreateOptionKeys(options.create, 'volumeExtension({ create })');
  if (typeof options.path !== 'string' || options.path.length === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'option path must be a non-empty file path');
  if (options.readOnly !== undefined && typeof options.readOnly !== 'boolean') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'option readOnly must be a boolean');
  // The multiples of the block size and max >= the volume's size are checked at preload, once
  // the volume is known; a misspelt key or a bad number is refused here.
  if (options.grow !== undefined) checkGrowOptions(options.grow, 'volumeExtension({ grow })');
  if (options.snapshot !== undefined) {
    checkSnapshotName(options.snapshot);
    if (options.create !== undefined) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'options snapshot and create exclude each other: a snapshot is opened in an existing volume');
    if (options.readOnly === false) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'option snapshot opens a snapshot read-only: readOnly cannot be false');
  }
  let volume: Volume | undefined;
  return {
    name: 'volume',
    get volume() {
      return volume;
    },
    async init(ctx: PreloadContext) {
      const vol = await Volume.open({
        io: ctx.io,
        path: options.path,
        create: options.create,
        readOnly: options.readOnly,
        blockSize: ctx.blockSize,
        uncleanStart: ctx.uncleanStart,
        enableFsync: ctx.enableFsync,
        dataSyncRetry: ctx.dataSyncRetry,
        poolPages: ctx.sharedBuffers,
        grow: options.grow,
        snapshot: options.snapshot,
      });
      try {
        // The order of volume/smgr.ts: the handler's id first, then the storage manager that
        // names it in every request.
        const handlerId = ctx.registerSyncHandler(volumeSyncOps(vol));
        ctx.registerStorageManager(VOLUME_SMGR_NAME, (sctx) => volumeStorageManager(vol, sctx, handlerId));
      } catch (err) {
        await vol.close();
        throw err;
      }
      volume = vol;
    },
  };
}
