/**
 * The volume as the engine sees it: a StorageManager named "volume" and a sync handler named
 * "volume". Both are thin adapters over Volume (volume.ts), which holds the state.
 *
 * Contract kept (engine/smgr/smgr.ts):
 *  S1 Every write, extend, create, truncate and unlink registers a SYNC request for the fork's
 *     FileTag (handler = the volume's id, segno 0): metadata-only changes must reach disk at the
 *     next checkpoint too, and the sync handler is where the catalog is written. Exception: the
 *     forks of an unlogged relation other than INIT register none; the shutdown checkpoint
 *     syncs them (Volume.syncUnlogged).
 *  S2 writeBuffers (the one write contract) locates each page once, writes in volume-offset
 *     order, and coalesces adjacent pages of different forks into one pwritev.
 *  S3 The sync handler never cancels on FILTER (no fileTagMatches): a dropped database's forks
 *     still need their drop made durable. It receives no UNLINK requests: freed space returns to
 *     the allocator at checkpointEnd, not through post-checkpoint unlinks.
 */
import type { FileTag, PageWrite, SmgrContext, StorageManager, SyncOps } from '../engine/index.js';
import type { Volume } from './volume.js';
import { describeForkKey } from './format.js';

export const VOLUME_SMGR_NAME = 'volume';
export const VOLUME_SYNC_HANDLER_NAME = 'volume';

export function volumeStorageManager(volume: Volume, ctx: SmgrContext): StorageManager {
  volume.attach(ctx);
  return {
    name: VOLUME_SMGR_NAME,
    open: (rel, persistence) => volume.open(rel, persistence),
    create: (rel, fork) => volume.create(rel, fork),
    exists: async (rel, fork) => volume.exists(rel, fork),
    extend: (rel, fork, blockNum, page) => volume.extend(rel, fork, blockNum, page),
    read: (rel, fork, blockNum, into) => volume.read(rel, fork, blockNum, into),
    writeBuffers: (pages: readonly PageWrite[]) => volume.writeBuffers(pages),
    nblocks: async (rel, fork) => volume.nblocks(rel, fork),
    truncate: (rel, fork, nblocks) => volume.truncate(rel, fork, nblocks),
    unlink: (rel, fork) => volume.unlink(rel, fork),
    immediateSync: () => volume.immediateSync(),
    registerSync: (rel, fork) => volume.registerSync(rel, fork),
    syncUnlogged: () => volume.syncUnlogged(),
    resetUnlogged: () => volume.resetUnlogged(),
    checkpointBegin: () => volume.checkpointBegin(),
    checkpointEnd: (completed) => volume.checkpointEnd(completed),
    close: () => volume.close(),
  };
}

export function volumeSyncOps(volume: Volume): SyncOps {
  return {
    name: VOLUME_SYNC_HANDLER_NAME,
    syncFileTag: (tag: FileTag) => volume.syncTag(tag),
    describeTag: (tag: FileTag) => `${volume.path} (${describeForkKey({ ...tag.rlocator, fork: tag.forkNum })})`,
  };
}
