/**
 * Goal: an options object with a key the API does not know (a typo, or an option of a newer
 * version) is refused with
 * BAD_ARGUMENT naming the key and the known ones, before anything is touched, in Engine.open,
 * volumeExtension (and its `create` and `grow`), createVolumeFile, engine.relation(),
 * engine.checkpoint() and engine.close(). Every known key is still accepted (`grow` too, now
 * that volumes grow, and `snapshot`, now that volumes have snapshots).
 * Method: real engines in temporary directories; after each refusal, check that no file or
 * directory was made and that the engine still works.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ControlState, Engine, ErrorCode, ForkNumber, RealIO, checkOptionKeys, isLamstoreError, readControlFile } from '../engine/index.js';
import { ManualClock } from '../engine/testing.js';
import type { EngineOptions } from '../engine/index.js';
import { createVolumeFile, volumeExtension } from '../volume/index.js';
import { tempDir } from './helpers/index.js';
import { REL } from './helpers/engine.js';


/** The BAD_ARGUMENT `fn` throws (synchronously or by rejecting); fails the test otherwise. */
async function badArgument(fn: () => unknown): Promise<string> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  expect(isLamstoreError(caught, ErrorCode.BAD_ARGUMENT), `expected BAD_ARGUMENT, got ${String(caught)}`).toBe(true);
  return (caught as Error).message;
}

describe('unknown option keys are refused with BAD_ARGUMENT naming the key', () => {
  it('Engine.open: a misspelt key, an undefined-valued unknown key; the data directory is not even created', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'data');
    const typo = await badArgument(() => Engine.open({ dataDir, sharedBufers: 64 } as EngineOptions));
    expect(typo).toMatch(/^unknown option "sharedBufers" for Engine\.open\(\) \(known: dataDir, blockSize, sharedBuffers, .*verifySync\)$/);
    const undef = await badArgument(() => Engine.open({ dataDir, checkpointTimeout: undefined } as EngineOptions));
    expect(undef).toContain('unknown option "checkpointTimeout"');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('Engine.open accepts every field of EngineOptions', async () => {
    const dir = await tempDir();
    const lines: string[] = [];
    const every: Required<EngineOptions> = {
      dataDir: join(dir, 'data'),
      blockSize: 8192,
      sharedBuffers: 64,
      relSegBlocks: 128,
      maxOpenFiles: 16,
      fsync: true,
      dataSyncRetry: false,
      syncConcurrency: 4,
      syncQueueSize: 64,
      checkpointTimeoutMs: 60_000,
      maxDirtyBytes: 1 << 20,
      completionTarget: 0.5,
      checkpointFlushAfter: 32,
      preload: [],
      slruBuffers: 8,
      io: new RealIO(),
      clock: new ManualClock(),
      onLog: (line) => lines.push(line),
      verifySync: true,
    };
    const engine = await Engine.open(every);
    await engine.close();
  });

  it('volumeExtension: a typo is refused at the call, so is a misspelt grow key; grow and snapshot are accepted; nothing is created', async () => {
    const dir = await tempDir();
    const path = join(dir, 'v.lam');
    for (const extra of [{ snapshots: 'x' }, { readonly: true }]) {
      const message = await badArgument(() => volumeExtension({ path, create: { sizeBytes: 1 << 20 }, ...extra } as Parameters<typeof volumeExtension>[0]));
      expect(message).toBe(`unknown option "${Object.keys(extra)[0]}" for volumeExtension() (known: path, create, readOnly, grow, snapshot)`);
    }
    expect(volumeExtension({ path, snapshot: 'x' }).name).toBe('volume');
    const growTypo = await badArgument(() => volumeExtension({ path, grow: { step: 1 << 20, maximum: 1 << 30 } as unknown as { step: number; max: number } }));
    expect(growTypo).toBe('unknown option "maximum" for volumeExtension({ grow }) (known: step, max)');
    expect(await readdir(dir)).toEqual([]);
    const ext = volumeExtension({ path, create: { sizeBytes: 1 << 20 }, grow: { step: 1 << 20, max: 1 << 30 } });
    const engine = await Engine.open({ dataDir: join(dir, 'data'), preload: [ext] });
    expect(ext.volume!.volumeSizeBytes).toBe(1 << 20);
    await engine.close();
  });

  it('volumeExtension({ create }) and createVolumeFile: a misspelt create key is refused; no file is made', async () => {
    const dir = await tempDir();
    const path = join(dir, 'v.lam');
    const create = { sizeBytes: 1 << 20, blocksize: 4096 } as unknown as { sizeBytes: number };
    const atCall = await badArgument(() => volumeExtension({ path, create }));
    expect(atCall).toBe('unknown option "blocksize" for volumeExtension({ create }) (known: sizeBytes, blockSize, onProgress)');
    const direct = await badArgument(() => createVolumeFile(new RealIO(), path, create));
    expect(direct).toContain('unknown option "blocksize"');
    expect(await readdir(dir)).toEqual([]);
  });

  it('engine.relation(), engine.checkpoint() and engine.close(): refused, and the engine goes on working', async () => {
    const dir = await tempDir();
    const engine = await Engine.open({ dataDir: join(dir, 'data'), sharedBuffers: 64 });
    try {
      expect(await badArgument(() => engine.relation(REL, { storage: 'md', persistance: 'unlogged' } as never))).toBe(
        'unknown option "persistance" for engine.relation() (known: storage, persistence)',
      );
      expect(await badArgument(() => engine.relation(REL, { storageManager: 'volume' } as never))).toContain('"storageManager"');
      const rel = engine.relation(REL, { storage: 'md', persistence: 'permanent' });
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, new Uint8Array(8192).fill(7, 16));
      await engine.checkpoint();
      await rel.write(ForkNumber.MAIN, 0, new Uint8Array(8192).fill(8, 16));

      expect(await badArgument(() => engine.checkpoint({ fats: true } as never))).toBe('unknown option "fats" for engine.checkpoint() (known: fast)');
      expect(engine.bufferPool.dirtyCount()).toBe(1); // the refused checkpoint wrote nothing
      const stats = await engine.checkpoint({ fast: true });
      expect(stats.buffersWritten).toBe(1);

      expect(await badArgument(() => engine.close({ timeout: 10 } as never))).toBe('unknown option "timeout" for engine.close() (known: timeoutMs)');
      // Still open: a refused close did nothing.
      expect(await rel.nblocks(ForkNumber.MAIN)).toBe(1);
    } finally {
      await engine.close({ timeoutMs: 60_000 });
    }
    expect((await readControlFile(join(dir, 'data'))).record.state).toBe(ControlState.SHUT_DOWN); // closed cleanly
  });

  it('checkOptionKeys (the extension API helper) refuses a non-object and names the first unknown key', () => {
    expect(() => checkOptionKeys(null, ['a'], 'f()')).toThrow(/f\(\) options must be an object \{ a \}, got null/);
    expect(() => checkOptionKeys({ a: 1, b: 2, c: 3 }, ['a'], 'f()')).toThrow('unknown option "b" for f() (known: a)');
    expect(() => checkOptionKeys({ a: 1 }, ['a', 'b'], 'f()')).not.toThrow();
  });
});
