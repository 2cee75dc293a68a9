/**
 * The md sync handler (id 0): mdsyncfiletag, mdunlinkfiletag, mdfiletagmatches.
 *
 * `syncFileTag` opens the segment by name, fsyncs and closes it. A missing file reaches the sync
 * phase as ENOENT, which is how a dropped relation's stale request is recognised (behaviour 18).
 * When the md storage manager has the segment open already, `openSegment` lends its handle.
 * `syncSegment`, when given, replaces both (and `syncSegments`, several tags in one batch, becomes
 * `syncFileTags`: pending-ops.ts P6): the md storage manager syncs the tag itself through
 * its fd cache (pinning the handle so eviction cannot close it mid-fsync) and makes a new file's
 * directory entry durable in the same step (md.ts M6). Its errors stay raw so ENOENT is seen.
 */
import type { FileIO, FileHandle } from '../io/file-io.js';
import type { FileTag } from '../sync/file-tag.js';
import type { SyncOps, SyncTagsResult } from '../sync/registry.js';
import { relPath } from './paths.js';

export interface MdSyncOptions {
  io: FileIO;
  dataDir: string;
  /** A handle the storage manager already holds for this segment, if any (not to be closed). */
  openSegment?: (tag: FileTag) => FileHandle | undefined;
  /** The md storage manager's own sync of one tag (fd cache + directory durability). */
  syncSegment?: (tag: FileTag) => Promise<void>;
  /** The same for several tags in one batch (SyncOps.syncFileTags). */
  syncSegments?: (tags: readonly FileTag[]) => Promise<SyncTagsResult>;
  /** The md storage manager's own removal of a tombstone (fd cache + durable removal, md.ts M9). */
  unlinkSegment?: (tag: FileTag) => Promise<void>;
}

export function mdSyncOps(options: MdSyncOptions): SyncOps {
  const { io, dataDir } = options;
  const pathOf = (tag: FileTag) => relPath(dataDir, tag.rlocator, tag.forkNum, tag.segno);
  return {
    name: 'md',
    async syncFileTag(tag) {
      if (options.syncSegment) return options.syncSegment(tag);
      const held = options.openSegment?.(tag);
      if (held) return io.fsync(held);
      const h = await io.open(pathOf(tag));
      try {
        await io.fsync(h);
      } finally {
        await io.close(h);
      }
    },
    ...(options.syncSegments ? { syncFileTags: options.syncSegments } : {}),
    async unlinkFileTag(tag) {
      // Only tombstones (main fork, segment 0) are ever unlinked after a checkpoint.
      if (options.unlinkSegment) return options.unlinkSegment(tag);
      await io.unlink(relPath(dataDir, tag.rlocator, 0, 0));
    },
    fileTagMatches(filter, candidate) {
      // Only DROP DATABASE filters: every file of that database, in any tablespace.
      return filter.rlocator.dbOid === candidate.rlocator.dbOid;
    },
    describeTag: pathOf,
  };
}
