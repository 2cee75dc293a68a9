/**
 * Goal: close() releases everything an engine holds (found by the fault loop).
 * Before checkpointer K6 the timer loop slept through the clock for checkpointTimeoutMs (5 min
 * by default) after close, and that pending timer kept the whole closed engine reachable, buffer
 * pool included: a process opening and closing engines (the fault loop, a CLI run, a server
 * reopening after a failure) held every one of them for minutes. Method: open and close engines
 * on SimDisk, drop our references, force a garbage collection (V8's gc through node:vm), and
 * check with WeakRefs that none survives; also that handles are all closed.
 * Second finding: every engine made its own AsyncLocalStorage (the "am I the checkpointer" flag).
 * Node keeps each one that ever ran in a process-wide list until disable() and walks the list for
 * every promise the process creates, so after a few hundred engines every await in the process
 * was over 100 times slower. Method: spy on AsyncLocalStorage.prototype.run and count the
 * instances engines run their checkpoints in: one, whatever the number of engines.
 * Third (the I/O path issue, parts 6 and 8): even one enabled AsyncLocalStorage keeps Node's
 * promise hook on, a JavaScript call for every promise the process makes, so after the first
 * checkpoint every engine call and every await was slower for good. The instance is disabled
 * whenever no checkpoint runs. Method: hold one engine's checkpoint at a pwrite (GatedIO) while
 * another engine checkpoints, and read the instance's `enabled` flag (Node's own field) at each
 * step.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it, vi } from 'vitest';
import { Engine, ForkNumber } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { GatedIO } from './helpers/gated-io.js';

v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc') as () => void;

async function openAndClose(refs: WeakRef<object>[], disks: SimDisk[]): Promise<void> {
  const disk = new SimDisk();
  disks.push(disk);
  const engine = await Engine.open({ dataDir: '/data', io: disk, sharedBuffers: 64 });
  refs.push(new WeakRef(engine));
  await engine.close();
}

describe('close releases the engine', () => {
  it('checkpointer K6: a closed engine is not kept reachable by the checkpoint timer, and no handle stays open', async () => {
    const refs: WeakRef<object>[] = [];
    const disks: SimDisk[] = [];
    for (let i = 0; i < 4; i++) await openAndClose(refs, disks);
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      gc();
    }
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true, true, true]);
    expect(disks.map((d) => d.openHandleCount)).toEqual([0, 0, 0, 0]);
  });

  it('all engines share one AsyncLocalStorage for the checkpointer flag (none is left in Node\'s list per engine)', async () => {
    const instances = new Set<unknown>();
    const original = AsyncLocalStorage.prototype.run;
    const spy = vi.spyOn(AsyncLocalStorage.prototype, 'run').mockImplementation(function (this: AsyncLocalStorage<unknown>, store: unknown, fn: (...args: unknown[]) => unknown, ...args: unknown[]) {
      if (store instanceof Engine) instances.add(this);
      return original.call(this, store, fn, ...args);
    });
    try {
      for (let i = 0; i < 3; i++) {
        const engine = await Engine.open({ dataDir: '/data', io: new SimDisk(), sharedBuffers: 16 });
        await engine.checkpoint();
        await engine.close();
      }
    } finally {
      spy.mockRestore();
    }
    expect(instances.size).toBe(1);
  });

  it('the checkpointer flag is disabled whenever no checkpointer step runs (BufferSync included), and stays on while any engine still runs one', async () => {
    let instance: (AsyncLocalStorage<unknown> & { enabled?: boolean }) | null = null;
    const original = AsyncLocalStorage.prototype.run;
    const spy = vi.spyOn(AsyncLocalStorage.prototype, 'run').mockImplementation(function (this: AsyncLocalStorage<unknown>, store: unknown, fn: (...args: unknown[]) => unknown, ...args: unknown[]) {
      if (store instanceof Engine) instance = this;
      return original.call(this, store, fn, ...args);
    });
    const io = new GatedIO(new SimDisk());
    const a = await Engine.open({ dataDir: '/a', io, sharedBuffers: 16 });
    const b = await Engine.open({ dataDir: '/b', io: new SimDisk(), sharedBuffers: 16 });
    try {
      for (const e of [a, b]) {
        const rel = e.relation({ spcOid: 1663, dbOid: 5, relNumber: 42 });
        await rel.create(ForkNumber.MAIN);
        await rel.extend(ForkNumber.MAIN);
        await rel.write(ForkNumber.MAIN, 0, new Uint8Array(8192).fill(3));
      }
      await b.checkpoint();
      expect(instance).not.toBeNull();
      expect(instance!.enabled).toBe(false);
      // BufferSync runs outside it (its writes say whose they are): no promise hook while a
      // checkpoint writes its pages.
      const write = io.hold('pwrite', (p) => p.endsWith('/base/5/42'));
      const gate = io.hold('fsync', (p) => p.endsWith('/base/5/42'));
      const held = a.checkpoint();
      await write.reached;
      expect(instance!.enabled).toBe(false);
      write.release();
      // The sync phase runs in it.
      await gate.reached;
      expect(instance!.enabled).toBe(true);
      await b.relation({ spcOid: 1663, dbOid: 5, relNumber: 42 }).write(ForkNumber.MAIN, 0, new Uint8Array(8192).fill(4));
      await b.checkpoint(); // finishes while a's still runs: the flag must stay on for a
      expect(instance!.enabled).toBe(true);
      gate.release();
      const st = await held;
      expect(st.buffersWritten).toBe(1);
      expect(instance!.enabled).toBe(false);
    } finally {
      spy.mockRestore();
      await a.close();
      await b.close();
    }
  });
});
