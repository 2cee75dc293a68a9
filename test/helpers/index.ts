/**
 * Shared test fixtures: temporary directories that clean up after themselves and a counting
 * test extension (the test_sync_handler module of the register_sync_handler patch). SimDisk and
 * the other test doubles come from `lamstore/testing` (engine/testing.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Extension, FileTag, SyncOps } from '../../engine/index.js';

const made: string[] = [];

/** A fresh temporary directory, removed after the test. */
export async function tempDir(prefix = 'lamstore-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

afterEach(async () => {
  while (made.length > 0) await rm(made.pop()!, { recursive: true, force: true });
});

export interface CountingHandler {
  /** Id the registry returned (set during preload). */
  id: number;
  syncCalls: FileTag[];
  unlinkCalls: FileTag[];
  matchCalls: { filter: FileTag; candidate: FileTag }[];
  /** Make the next sync calls fail: an errno per call (consumed in order). */
  failNext: string[];
  extension: Extension;
}

/** An extension registering one sync handler that records every call. */
export function countingHandler(name = 'test_sync_handler', overrides: Partial<SyncOps> = {}): CountingHandler {
  const h: CountingHandler = {
    id: -1,
    syncCalls: [],
    unlinkCalls: [],
    matchCalls: [],
    failNext: [],
    extension: undefined as unknown as Extension,
  };
  const ops: SyncOps = {
    name,
    syncFileTag(tag) {
      const code = h.failNext.shift();
      if (code) throw Object.assign(new Error(`${code}: injected, fsync 'seg${tag.segno}'`), { code });
      h.syncCalls.push(tag);
    },
    unlinkFileTag(tag) {
      h.unlinkCalls.push(tag);
    },
    fileTagMatches(filter, candidate) {
      h.matchCalls.push({ filter, candidate });
      return filter.rlocator.dbOid === candidate.rlocator.dbOid;
    },
    describeTag: (tag) => `${name}:seg${tag.segno}`,
    ...overrides,
  };
  h.extension = {
    name,
    init(ctx) {
      h.id = ctx.registerSyncHandler(ops);
    },
  };
  return h;
}

/** A tag of the given handler, as the patch's test module builds them. */
export function testTag(handler: number, segno: number, dbOid = 5, relNumber = 1): FileTag {
  return { handler, forkNum: 0, rlocator: { spcOid: 1, dbOid, relNumber }, segno };
}
