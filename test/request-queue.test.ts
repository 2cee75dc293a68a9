/**
 * Goal: the checkpointer's bounded request queue behaves as checkpointer.c's ring
 * (behaviours 31-34): compaction keeps the last of each identical request in order, a full
 * queue without duplicates refuses, the half-full wake-up, FIFO absorption in batches of at most
 * 10000 until empty.
 * Method: SyncRequestQueue on its own with string requests (the key is the string itself), then
 * the same rules through the Engine with a tiny `syncQueueSize`. checkInvariants() after each step.
 */
import { describe, expect, it } from 'vitest';
import { ABSORB_BATCH_SIZE, SyncRequestQueue, defaultSyncQueueSize, SYNC_QUEUE_SIZE_MAX } from '../checkpointer/request-queue.js';
import { SyncRequestType } from '../engine/index.js';
import { ManualClock } from '../engine/testing.js';
import { countingHandler, tempDir, testTag } from './helpers/index.js';
import { withEngine } from './helpers/engine.js';

function queue(capacity: number): SyncRequestQueue<string> {
  return new SyncRequestQueue<string>(capacity, (r) => r);
}

function drainAll(q: SyncRequestQueue<string>): string[] {
  const out: string[] = [];
  q.drain((r) => out.push(r));
  q.checkInvariants();
  return out;
}

describe('request queue', () => {
  it('rejects a capacity outside 1..10,000,000, naming the option', () => {
    for (const bad of [0, -1, 1.5, SYNC_QUEUE_SIZE_MAX + 1, Number.NaN]) expect(() => queue(bad)).toThrow(/syncQueueSize/);
    expect(defaultSyncQueueSize(16384)).toBe(16384);
    expect(defaultSyncQueueSize(0)).toBe(1);
    expect(defaultSyncQueueSize(SYNC_QUEUE_SIZE_MAX * 2)).toBe(SYNC_QUEUE_SIZE_MAX);
  });

  it('behaviour 34: requests leave in FIFO order, across the ring wrapping around', () => {
    const q = queue(4);
    expect(q.forward('a')).toBe(true);
    expect(q.forward('b')).toBe(true);
    expect(q.forward('c')).toBe(true);
    expect(q.take(2)).toEqual(['a', 'b']);
    q.checkInvariants();
    for (const r of ['d', 'e', 'f']) expect(q.forward(r)).toBe(true); // wraps past the end
    q.checkInvariants();
    expect(q.length).toBe(4);
    expect(drainAll(q)).toEqual(['c', 'd', 'e', 'f']);
    expect(q.length).toBe(0);
  });

  it('behaviour 34: absorption takes batches of at most 10000 and loops until the queue is empty', () => {
    const total = 25_000;
    const q = queue(30_000);
    for (let i = 0; i < total; i++) q.forward(`r${i}`);
    // The length seen while applying a request tells which batch it came in: a batch is taken
    // off the queue before any of it is applied.
    const lengthSeen: number[] = [];
    let applied = 0;
    q.drain(() => {
      if (applied % ABSORB_BATCH_SIZE === 0) lengthSeen.push(q.length);
      applied++;
    });
    expect(ABSORB_BATCH_SIZE).toBe(10_000);
    expect(applied).toBe(total);
    expect(lengthSeen).toEqual([15_000, 5_000, 0]);
    q.checkInvariants();
  });

  it('behaviour 34: requests queued while a batch is applied are absorbed in the same drain, in order', () => {
    const q = queue(100);
    q.forward('a');
    q.forward('b');
    const out: string[] = [];
    const n = q.drain((r) => {
      out.push(r);
      if (r === 'a') q.forward('c'); // arrives during absorption
    }, 1);
    expect(out).toEqual(['a', 'b', 'c']);
    expect(n).toBe(3);
    expect(q.length).toBe(0);
  });

  it('behaviour 31: a full queue with duplicates compacts, keeping the last of each, order kept', () => {
    const q = queue(6);
    for (const r of ['A', 'B', 'A', 'C', 'B', 'D']) expect(q.forward(r)).toBe(true);
    expect(q.forward('E')).toBe(true); // full: compaction makes room
    q.checkInvariants();
    expect(q.stats.compactions).toBe(1);
    expect(q.stats.compactedAway).toBe(2);
    // Survivors: A (3rd), C, B (5th), D, in that order, then the new E.
    expect(drainAll(q)).toEqual(['A', 'C', 'B', 'D', 'E']);
  });

  it('behaviour 31: compaction keeps the last occurrence so a FORGET between SYNCs keeps its meaning', () => {
    const q = queue(4);
    q.forward('x'); // pushes the head off 0 so that compaction works on a wrapped ring
    q.take(1);
    for (const r of ['SYNC a', 'SYNC b', 'FORGET a', 'SYNC a']) expect(q.forward(r)).toBe(true);
    expect(q.forward('SYNC c')).toBe(true);
    // Keeping the first "SYNC a" would leave the FORGET last and lose the sync of a.
    expect(drainAll(q)).toEqual(['SYNC b', 'FORGET a', 'SYNC a', 'SYNC c']);
  });

  it('behaviour 32: a full queue without duplicates refuses and changes nothing', () => {
    const q = queue(3);
    for (const r of ['a', 'b', 'c']) expect(q.forward(r)).toBe(true);
    expect(q.forward('d')).toBe(false);
    expect(q.forward('d')).toBe(false);
    expect(q.stats).toMatchObject({ forwarded: 3, refused: 2, compactions: 0 });
    expect(q.compact()).toBe(false);
    q.checkInvariants();
    expect(drainAll(q)).toEqual(['a', 'b', 'c']);
    expect(q.forward('d')).toBe(true);
  });

  it('behaviour 33: the request that makes the queue at least half full wakes the checkpointer, once', () => {
    for (const [capacity, wakeAt] of [
      [10, 5],
      [5, 3],
      [1, 1],
    ] as const) {
      const q = queue(capacity);
      const wakes: number[] = [];
      q.onHalfFull = () => wakes.push(q.length);
      for (let i = 0; i < capacity; i++) q.forward(`r${i}`);
      expect(wakes, `capacity ${capacity}`).toEqual([wakeAt]);
      // Drained and refilled: it wakes again.
      q.take(capacity);
      for (let i = 0; i < capacity; i++) q.forward(`s${i}`);
      expect(wakes, `capacity ${capacity}`).toEqual([wakeAt, wakeAt]);
    }
  });
});

describe('request queue through the Engine', () => {
  it('behaviour 32: with syncQueueSize 2, registerSyncRequest still resolves true for many distinct requests', async () => {
    const h = countingHandler();
    const clock = new ManualClock();
    await withEngine({ dataDir: await tempDir(), preload: [h.extension], syncQueueSize: 2, clock }, async (engine) => {
      for (let seg = 1; seg <= 9; seg++) expect(await engine.registerSyncRequest(testTag(h.id, seg), SyncRequestType.SYNC)).toBe(true);
      expect(clock.sleeping).toBe(1); // accepted without waiting: only the checkpoint timer sleeps
      const s = await engine.checkpoint();
      expect(h.syncCalls.map((t) => t.segno).sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(s.queueCompactions).toBe(0);
    });
  });

  it('behaviour 31: through the Engine, a compacted queue keeps FORGET-then-SYNC meaning', async () => {
    const h = countingHandler();
    await withEngine({ dataDir: await tempDir(), preload: [h.extension], syncQueueSize: 4 }, async (engine) => {
      const a = testTag(h.id, 1);
      const b = testTag(h.id, 2);
      await engine.registerSyncRequest(a, SyncRequestType.SYNC);
      await engine.registerSyncRequest(b, SyncRequestType.SYNC);
      await engine.registerSyncRequest(a, SyncRequestType.FORGET);
      await engine.registerSyncRequest(a, SyncRequestType.SYNC);
      await engine.registerSyncRequest(testTag(h.id, 3), SyncRequestType.SYNC); // full: compacts
      const s = await engine.checkpoint();
      expect(s.queueCompactions).toBe(1);
      expect(h.syncCalls.map((t) => t.segno).sort()).toEqual([1, 2, 3]);
    });
  });
});
