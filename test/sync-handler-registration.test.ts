/**
 * Goal: the dynamic sync handler registry behaves as the register_sync_handler() patch and its
 * test module (behaviours 1-7). Method: a real Engine on a temporary directory with counting
 * test extensions; sync calls are counted, never timed.
 */
import { describe, expect, it } from 'vitest';
import { Engine, SyncHandlerId, SyncRequestType, LamstoreError } from '../engine/index.js';
import { countingHandler, tempDir, testTag } from './helpers/index.js';
import { encodeFileTag, rawTagKey, fileTagKey, decodeFileTag } from '../engine/sync/file-tag.js';
import { withEngine } from './helpers/engine.js';

describe('sync handler registration', () => {
  it('behaviour 1: the first extension gets id 5, the second 6', async () => {
    const a = countingHandler('a');
    const b = countingHandler('b');
    await withEngine({ dataDir: await tempDir(), preload: [a.extension, b.extension] }, async (engine) => {
      expect(a.id).toBe(SyncHandlerId.FIRST_DYNAMIC);
      expect(b.id).toBe(6);
      expect(engine.syncHandlers()).toEqual([
        { id: 0, name: 'md', builtin: true },
        { id: 1, name: 'clog', builtin: true },
        { id: 2, name: 'commit_ts', builtin: true },
        { id: 3, name: 'multixact_offset', builtin: true },
        { id: 4, name: 'multixact_member', builtin: true },
        { id: 5, name: 'a', builtin: false },
        { id: 6, name: 'b', builtin: false },
      ]);
    });
  });

  it('behaviours 2-4: five distinct tags sync five times, ten identical once, then nothing', async () => {
    const h = countingHandler();
    await withEngine({ dataDir: await tempDir(), preload: [h.extension] }, async (engine) => {
      for (let seg = 1; seg <= 5; seg++) await engine.registerSyncRequest(testTag(h.id, seg), SyncRequestType.SYNC);
      const s1 = await engine.checkpoint();
      expect(h.syncCalls.map((t) => t.segno).sort()).toEqual([1, 2, 3, 4, 5]);
      expect(s1.syncFiles).toBe(5);
      expect(s1.tagsDispatched).toEqual({ test_sync_handler: 5 });

      for (let i = 0; i < 10; i++) await engine.registerSyncRequest(testTag(h.id, 42), SyncRequestType.SYNC);
      await engine.checkpoint();
      expect(h.syncCalls.length).toBe(6);

      const s3 = await engine.checkpoint();
      expect(h.syncCalls.length).toBe(6);
      expect(s3.syncFiles).toBe(0);
    });
  });

  it('behaviour 5: tags coalesce by their canonical zero-padded encoding, not raw bytes', () => {
    const tag = testTag(5, 42);
    const a = Buffer.from(encodeFileTag(tag));
    const b = Buffer.from(encodeFileTag(tag));
    b.fill(0xab, 20, 24); // garbage in the padding, as an unzeroed C struct would have
    expect(rawTagKey(a)).not.toBe(rawTagKey(b)); // raw bytes (HASH_BLOBS) would not coalesce
    expect(fileTagKey(decodeFileTag(a))).toBe(fileTagKey(decodeFileTag(b)));
    // A tag object carrying extra properties still encodes to the same key.
    expect(fileTagKey({ ...tag, junk: 1 } as typeof tag)).toBe(fileTagKey(tag));
    expect(a.length).toBe(24);
  });

  it('a tag key is its canonical 24 bytes, one latin1 char each, at the edges of every field; a field out of range is refused as before', () => {
    const edges = [
      { handler: -1, forkNum: 0, rlocator: { spcOid: 0, dbOid: 0, relNumber: 0 }, segno: 0 },
      { handler: 32767, forkNum: -32768, rlocator: { spcOid: 4294967295, dbOid: 2147483648, relNumber: 16384 }, segno: 4294967295 },
      { handler: 5, forkNum: 3, rlocator: { spcOid: 1663, dbOid: 5, relNumber: 0x01020304 }, segno: 0x80000001 },
    ];
    for (const tag of edges) {
      const key = fileTagKey(tag);
      expect(key.length).toBe(24);
      expect(key).toBe(Buffer.from(encodeFileTag(tag)).toString('latin1'));
      expect(decodeFileTag(Buffer.from(key, 'latin1'))).toEqual(tag);
    }
    const base = edges[2]!;
    for (const bad of [{ ...base, handler: 70000 }, { ...base, segno: -1 }, { ...base, rlocator: { ...base.rlocator, relNumber: 2 ** 32 } }]) {
      expect(() => fileTagKey(bad)).toThrow(RangeError);
    }
    // A fraction goes the Buffer's way too, which truncates it, as it always did.
    const fraction = { ...base, forkNum: 1.5 };
    expect(fileTagKey(fraction)).toBe(Buffer.from(encodeFileTag(fraction)).toString('latin1'));
  });

  it('behaviour 6: registration after preload throws REGISTRATION_CLOSED and changes nothing', async () => {
    let late: ((name: string) => number) | undefined;
    const ext = {
      name: 'late',
      init(ctx: { registerSyncHandler: (ops: { name: string; syncFileTag: () => void }) => number }) {
        late = (name) => ctx.registerSyncHandler({ name, syncFileTag() {} });
      },
    };
    await withEngine({ dataDir: await tempDir(), preload: [ext] }, async (engine) => {
      const before = engine.syncHandlers();
      expect(before.length).toBe(5); // the built-ins, exactly once
      let caught: unknown;
      try {
        late!('too_late');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(LamstoreError);
      expect((caught as LamstoreError).code).toBe('REGISTRATION_CLOSED');
      expect(engine.syncHandlers()).toEqual(before);
    });
  });

  it('behaviour 7: an empty name or a missing syncFileTag is BAD_ARGUMENT', async () => {
    for (const ops of [{ name: '', syncFileTag() {} }, { name: 'nosync' }]) {
      const ext = { name: 'bad', init: (ctx: { registerSyncHandler: (o: unknown) => number }) => void ctx.registerSyncHandler(ops) };
      await expect(Engine.open({ dataDir: await tempDir(), preload: [ext as never] })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    }
  });

  it('a second engine on the same data directory is refused with DATADIR_LOCKED', async () => {
    const dir = await tempDir();
    await withEngine({ dataDir: dir }, async (engine) => {
      await expect(Engine.open({ dataDir: dir })).rejects.toMatchObject({ code: 'DATADIR_LOCKED' });
    });
    const again = await Engine.open({ dataDir: dir });
    await again.close();
  });
});
