/**
 * SLRU directories and segment names (PostgreSQL slru.c SlruFileName): a segment is 32 pages,
 * named by its number in uppercase hex with at least 4 digits, inside the SLRU's directory.
 */
import { join } from 'node:path';
import type { FileIO } from '../io/file-io.js';
import type { SyncOps } from '../sync/registry.js';
import { SyncHandlerId } from '../sync/registry.js';

export const SLRU_PAGES_PER_SEGMENT = 32;

export const SLRU_DIRS: Readonly<Record<number, string>> = {
  [SyncHandlerId.CLOG]: 'pg_xact',
  [SyncHandlerId.COMMIT_TS]: 'pg_commit_ts',
  [SyncHandlerId.MULTIXACT_OFFSET]: join('pg_multixact', 'offsets'),
  [SyncHandlerId.MULTIXACT_MEMBER]: join('pg_multixact', 'members'),
};

export function slruSegmentName(segno: number): string {
  return segno.toString(16).toUpperCase().padStart(4, '0');
}

/**
 * SlruSyncFileTag: fsync segment `tag.segno` of the SLRU in `dirRelative`. Only segno and the
 * handler (which chose this ops object) matter.
 */
export function slruSyncOps(name: string, io: FileIO, dataDir: string, dirRelative: string): SyncOps {
  const pathOf = (segno: number) => join(dataDir, dirRelative, slruSegmentName(segno));
  return {
    name,
    async syncFileTag(tag) {
      const h = await io.open(pathOf(tag.segno));
      try {
        await io.fsync(h);
      } finally {
        await io.close(h);
      }
    },
    describeTag: (tag) => pathOf(tag.segno),
  };
}
