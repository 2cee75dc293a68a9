/**
 * Goal: the volume file is locked with flock: exclusive for read-write, shared
 * for read-only. A second read-write open from another process fails with VOLUME_LOCKED naming
 * the file; read-only opens share the lock with each other but not with a writer.
 * Method: a real volume in a temp dir held open by this process; a second, real Node process
 * (`node -e`, importing the built dist/ — run `npx tsc -p tsconfig.build.json` first) tries to
 * open it and prints the error code and message as JSON. The same on a worker thread: a child
 * process opens an engine on a worker thread, and its main thread tries the volume meanwhile.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { RealIO } from '../engine/index.js';
import { Volume, openVolumeReadOnly } from '../volume/index.js';
import { openVolumeEngine } from './helpers/volume.js';
import { tempDir } from './helpers/index.js';

const run = promisify(execFile);
const DIST_ENGINE = resolve('dist/engine/index.js');
const DIST_VOLUME = resolve('dist/volume/index.js');

/** In a second process: open the volume (read-write through an Engine, or read-only) and report. */
async function openInChild(path: string, dataDir: string, mode: 'rw' | 'ro'): Promise<{ ok: boolean; code?: string; message?: string }> {
  const script = `
    const { Engine } = await import(${JSON.stringify(DIST_ENGINE)});
    const { volumeExtension, openVolumeReadOnly } = await import(${JSON.stringify(DIST_VOLUME)});
    try {
      if (${JSON.stringify(mode)} === 'rw') {
        const e = await Engine.open({ dataDir: ${JSON.stringify(dataDir)}, blockSize: 4096, preload: [volumeExtension({ path: ${JSON.stringify(path)} })] });
        await e.close();
      } else {
        await openVolumeReadOnly(${JSON.stringify(path)});
      }
      console.log(JSON.stringify({ ok: true }));
    } catch (err) {
      console.log(JSON.stringify({ ok: false, code: err.code, message: err.message }));
    }`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 });
  return JSON.parse(stdout.trim()) as { ok: boolean; code?: string; message?: string };
}

describe('volume locking', () => {
  it('needs the built package (npx tsc -p tsconfig.build.json)', () => {
    expect(existsSync(DIST_VOLUME), `${DIST_VOLUME} missing: build first`).toBe(true);
  });

  it('a second read-write open from another process fails with VOLUME_LOCKED naming the file', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    const held = await openVolumeEngine({ dataDir: join(dir, 'data'), path, create: { sizeBytes: 1024 * 1024 } });
    try {
      const rw = await openInChild(path, join(dir, 'data2'), 'rw');
      expect(rw).toMatchObject({ ok: false, code: 'VOLUME_LOCKED' });
      expect(rw.message).toContain(path);
      // A read-only inspection is refused too while a writer holds the exclusive lock.
      expect(await openInChild(path, join(dir, 'data3'), 'ro')).toMatchObject({ ok: false, code: 'VOLUME_LOCKED' });
    } finally {
      await held.engine.close();
    }
    // Released at close: the other process now opens it.
    expect(await openInChild(path, join(dir, 'data2'), 'rw')).toEqual({ ok: true });
  });

  it('read-only opens share the lock; a writer cannot join them', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    const made = await openVolumeEngine({ dataDir: join(dir, 'data'), path, create: { sizeBytes: 1024 * 1024 } });
    await made.engine.close();
    const reader = await Volume.open({ io: new RealIO(), path, readOnly: true });
    try {
      expect(await openInChild(path, join(dir, 'd2'), 'ro')).toEqual({ ok: true });
      expect((await openVolumeReadOnly(path)).volumeSizeBytes).toBe(1024 * 1024);
      const rw = await openInChild(path, join(dir, 'd3'), 'rw');
      expect(rw).toMatchObject({ ok: false, code: 'VOLUME_LOCKED' });
      // And in this process, a second descriptor is refused the same way.
      await expect(Volume.open({ io: new RealIO(), path })).rejects.toMatchObject({ code: 'VOLUME_LOCKED' });
    } finally {
      await reader.close();
    }
  });

  it('an engine on a worker thread takes and releases the lock (fs-ext\'s asynchronous flock aborted the whole process there)', async () => {
    const dir = await tempDir();
    const path = join(dir, 'lam.vol');
    // In a child process: a worker thread opens an engine on a new volume and writes a page; the
    // child's main thread is refused the volume meanwhile, then opens it once the worker closed
    // and reads the page back. Before RealIO took flock synchronously, V8 aborted the child
    // ("Cannot create a handle without a HandleScope") at the worker's first lock.
    const script = `
      import { Worker } from 'node:worker_threads';
      const { Engine, ForkNumber, setPageChecksum } = await import(${JSON.stringify(DIST_ENGINE)});
      const { volumeExtension } = await import(${JSON.stringify(DIST_VOLUME)});
      const rel = { spcOid: 1663, dbOid: 5, relNumber: 16384 };
      const data = { engine: ${JSON.stringify(DIST_ENGINE)}, volume: ${JSON.stringify(DIST_VOLUME)}, dataDir: ${JSON.stringify(join(dir, 'data'))}, path: ${JSON.stringify(path)}, rel };
      const w = new Worker(\`
        const { parentPort, workerData: d } = await import('node:worker_threads');
        (async () => {
          const { Engine, ForkNumber, setPageChecksum } = await import(d.engine);
          const { volumeExtension } = await import(d.volume);
          const e = await Engine.open({ dataDir: d.dataDir, blockSize: 4096, sharedBuffers: 16, preload: [volumeExtension({ path: d.path, create: { sizeBytes: 1 << 20 } })] });
          const r = e.relation(d.rel, { storage: 'volume' });
          await r.create(ForkNumber.MAIN);
          const page = new Uint8Array(4096).fill(7);
          setPageChecksum(page, 0);
          await r.extend(ForkNumber.MAIN, page);
          await e.checkpoint();
          parentPort.postMessage('held');
          parentPort.once('message', () => e.close().then(() => parentPort.postMessage('closed')));
        })().catch((err) => parentPort.postMessage('failed: ' + (err && err.stack || err)));
      \`, { eval: true, workerData: data });
      const next = () => new Promise((resolve) => w.once('message', resolve));
      const out = { worker: await next() };
      try {
        await Engine.open({ dataDir: ${JSON.stringify(join(dir, 'data2'))}, blockSize: 4096, preload: [volumeExtension({ path: ${JSON.stringify(path)} })] });
        out.whileHeld = 'opened';
      } catch (err) {
        out.whileHeld = err.code;
      }
      w.postMessage('close');
      out.worker2 = await next();
      const e = await Engine.open({ dataDir: ${JSON.stringify(join(dir, 'data3'))}, blockSize: 4096, preload: [volumeExtension({ path: ${JSON.stringify(path)} })] });
      out.byte = (await e.relation(rel, { storage: 'volume' }).read(ForkNumber.MAIN, 0))[100];
      await e.close();
      await w.terminate();
      console.log(JSON.stringify(out));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
    expect(JSON.parse(stdout.trim())).toEqual({ worker: 'held', whileHeld: 'VOLUME_LOCKED', worker2: 'closed', byte: 7 });
  });
});
