/**
 * Behaviour 30 for BufferSync's writes: the sync requests of a checkpoint's own batches go
 * straight into the checkpointer's table, never through the request queue, although BufferSync
 * runs outside the async context that marks the rest of the checkpointer's work (the batches
 * say so with WriteOrigin 'checkpoint'; checkpointer.ts, runAsCheckpointer). With a queue of
 * two slots, twenty relations' requests through the queue would compact it and fall back to
 * backend fsyncs; the checkpointer's own are always taken.
 */
import { describe, expect, it } from 'vitest';
import { ForkNumber } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { SMALL_BS, locator, pageOf, withEngine } from './helpers/engine.js';

const RELATIONS = 20;

describe('the checkpointer: BufferSync registers its own writes (behaviour 30)', () => {
  for (const storage of ['md', 'volume'] as const) {
    it(`${storage}: a checkpoint writing ${RELATIONS} relations through a 2-slot queue makes no backend fsync and no compaction, and syncs them all`, async () => {
      const disk = new SimDisk();
      await disk.mkdir('/vol');
      const preload = storage === 'volume' ? [volumeExtension({ path: '/vol/lam.vol', create: { sizeBytes: 16 * 1024 * 1024 } })] : [];
      await withEngine({ dataDir: '/data', io: disk, blockSize: SMALL_BS, sharedBuffers: 64, syncQueueSize: 2, preload }, async (engine) => {
        const rels = Array.from({ length: RELATIONS }, (_, i) => engine.relation(locator(16384 + i), { storage }));
        for (const rel of rels) {
          await rel.create(ForkNumber.MAIN);
          await rel.extend(ForkNumber.MAIN, pageOf(1, SMALL_BS));
        }
        await engine.checkpoint(); // the set-up's own requests overflowed the queue: not measured
        // Dirty one page of each in the pool: no storage call, so no request, until BufferSync.
        for (const rel of rels) await rel.write(ForkNumber.MAIN, 0, pageOf(2, SMALL_BS));
        const s = await engine.checkpoint();
        expect(s.buffersWritten).toBe(RELATIONS);
        expect(s.backendFsyncs).toBe(0);
        expect(s.queueCompactions).toBe(0);
        expect(s.tagsDispatched[storage]).toBe(RELATIONS);
      });
      // What the checkpoint made durable survives a crash that drops everything unsynced.
      const after = disk.crash('drop');
      const reopen = storage === 'volume' ? [volumeExtension({ path: '/vol/lam.vol' })] : [];
      await withEngine({ dataDir: '/data', io: after, blockSize: SMALL_BS, sharedBuffers: 64, preload: reopen }, async (engine) => {
        for (let i = 0; i < RELATIONS; i++) {
          const page = await engine.relation(locator(16384 + i), { storage }).read(ForkNumber.MAIN, 0);
          expect(page[100]).toBe(2);
        }
      });
    });
  }
});
