/**
 * The volume as the engine sees it: a StorageManager named "volume" and a sync handler named
 * "volume". Both are thin adapters over Volume (volume.ts), which holds the state.
 *
 * Set-up order (volume/index.ts, at preload), each part made once, whole: the Volume is opened
 * (it knows nothing of the engine); the sync handler is registered over it, which gives its id;
 * the storage manager's factory then gets the engine's SmgrContext, and with that id makes the
 * VolumeHost that every call changing the volume receives. So no part is wired after it is made,
 * and there is no order to assert.
 *
 * Contract kept (engine/smgr/smgr.ts):
 *  S1 Every write, extend, create, truncate and unlink registers a SYNC request for the fork's
 *     FileTag (handler = the volume's id, segno 0): metadata-only changes must reach disk at the
 *     next checkpoint too, and the sync handler is where the catalog is written. Exception: the
 *     forks of an unlogged relation other than INIT register none; the shutdown checkpoint
 *     syncs them (Volume.syncUnlogged).
 *  S2 writeBuffers (the one write contract) is copy-on-write: the batch, in BufferSync's (fork,
 *     block) order, goes to the next free blocks of one stream, one pwritev per run of at most
 *     IOV_MAX pages; `origin` says whether it may draw on the checkpoint's reserve (V5).
 *  S3 The sync handler never cancels on FILTER (no fileTagMatches): a dropped database's forks
 *     still need their drop made durable. It receives no UNLINK requests: freed space returns to
 *     the allocator once the superblock switch that stopped referencing it is durable (A3), not
 *     through post-checkpoint unlinks.
 */
import { SyncRequestType } from '../engine/index.js';
import type { FileTag, PageWrite, SmgrContext, StorageManager, SyncOps } from '../engine/index.js';
import type { Volume, VolumeHost } from './volume.js';
import { describeForkKey } from './format.js';

export const VOLUME_SMGR_NAME = 'volume';
export const VOLUME_SYNC_HANDLER_NAME = 'volume';

/**
 * The storage manager over `volume`, for the engine whose context is `ctx`; `handlerId` is the
 * id the engine gave the volume's sync handler (S1: every request names it, segno 0).
 */
export function volumeStorageManager(volume: Volume, ctx: SmgrContext, handlerId: number): StorageManager {
  const host: VolumeHost = {
    requestSync: (rel, fork, origin) => {
      const tag: FileTag = { handler: handlerId, forkNum: fork, rlocator: { spcOid: rel.spcOid, dbOid: rel.dbOid, relNumber: rel.relNumber }, segno: 0 };
      return ctx.trySyncRequest(tag, SyncRequestType.SYNC, origin);
    },
    countBackendSync: () => ctx.countBackendFsync(),
    reportSyncFailure: (err) => ctx.reportSyncFailure(err),
    exemptFromLedger: (offsetBytes, lengthBytes) => ctx.exemptFromLedger?.(volume.path, offsetBytes, lengthBytes),
  };
  return {
    name: VOLUME_SMGR_NAME,
    open: (rel, persistence) => volume.open(rel, persistence),
    create: (rel, fork) => volume.create(rel, fork, host),
    exists: async (rel, fork) => volume.exists(rel, fork),
    extend: (rel, fork, blockNum, page) => volume.extend(rel, fork, blockNum, page, host),
    read: (rel, fork, blockNum, into) => volume.read(rel, fork, blockNum, into),
    writeBuffers: (pages: readonly PageWrite[], origin) => volume.writeBuffers(pages, host, origin),
    nblocks: async (rel, fork) => volume.nblocks(rel, fork),
    truncate: (rel, fork, nblocks) => volume.truncate(rel, fork, nblocks, host),
    unlink: (rel, fork) => volume.unlink(rel, fork, host),
    immediateSync: () => volume.immediateSync(host),
    registerSync: (rel, fork) => volume.registerSync(rel, fork, host),
    syncUnlogged: () => volume.syncUnlogged(host),
    resetUnlogged: () => volume.resetUnlogged(host),
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
