/**
 * Goal: a clean-up step that fails after an error (blanking a superblock or control slot,
 * cutting a grown file back, closing a handle) is never dropped: the first error stays the one
 * reported, and the clean-up's error rides on it (`suppressed`, engine/errors.ts cleanUp), which
 * the CLI prints under the message. Method: a FileIO double over SimDisk that fails the calls
 * a clean-up makes once the first failure has happened; assert the reported error's code and
 * its suppressed list, and the CLI's output for a failed close.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, LamstoreError, cleanUp, fsError, suppressedOf } from '../engine/index.js';
import type { FileHandle, FileIO } from '../engine/index.js';
import { ForwardingIO, ManualClock, SimDisk } from '../engine/testing.js';
import { cloneSnapshot, createSnapshot, growVolumeFile, volumeExtension } from '../volume/index.js';
import { printFailure, toFailure } from '../cmdline/failure.js';
import { makePage, rel } from './helpers/volume.js';
import { SMALL_BS } from './helpers/engine.js';

/** Fails the `nth` fdatasync (or ftruncate-grow step) of a path, then every pwrite/ftruncate/close after it. */
class FailThenCleanupFails extends ForwardingIO {
  #count = 0;
  armed = false;
  broken = false;
  constructor(
    inner: FileIO,
    readonly kind: 'fdatasync' | 'pwrite',
    readonly nth: number,
    readonly path: string,
  ) {
    super(inner);
  }
  #paths = new Map<FileHandle, string>();
  override async open(path: string, options?: Parameters<FileIO['open']>[1]): Promise<FileHandle> {
    const h = await this.inner.open(path, options);
    this.#paths.set(h, path);
    return h;
  }
  #trip(h: FileHandle, kind: string): void {
    const path = this.#paths.get(h) ?? '';
    if (!this.armed || !path.includes(this.path)) return;
    if (this.broken) throw fsError('EIO', kind, path, 'clean-up fault');
    if (kind === this.kind && ++this.#count === this.nth) {
      this.broken = true;
      throw fsError('EIO', kind, path, 'first fault');
    }
  }
  override async fdatasync(h: FileHandle): Promise<void> {
    this.#trip(h, 'fdatasync');
    return this.inner.fdatasync(h);
  }
  override async pwrite(h: FileHandle, data: Uint8Array, offset: number): Promise<void> {
    this.#trip(h, 'pwrite');
    return this.inner.pwrite(h, data, offset);
  }
  override async ftruncate(h: FileHandle, len: number): Promise<void> {
    this.#trip(h, 'ftruncate');
    return this.inner.ftruncate(h, len);
  }
  override async unlink(path: string): Promise<void> {
    if (this.armed && this.broken && path.includes(this.path)) throw fsError('EIO', 'unlink', path, 'clean-up fault');
    return this.inner.unlink(path);
  }
}

describe('clean-up errors ride on the error reported', () => {
  it('cleanUp keeps the step error on a LamstoreError and on a plain Error; a thrown string cannot carry it, so the step error is thrown', async () => {
    const first = new LamstoreError(ErrorCode.IO_ERROR, '/v: fdatasync failed: EIO');
    expect(await cleanUp(first, '/v: close', () => Promise.reject(fsError('EIO', 'close', '/v')))).toBe(false);
    expect(first.suppressed.map((e) => e.message)).toEqual([expect.stringContaining('/v: close failed: EIO')]);
    const plain = new Error('boom');
    await cleanUp(plain, '/v: close', () => Promise.reject(fsError('EBADF', 'close', '/v')));
    expect(suppressedOf(plain)).toEqual([expect.stringContaining('EBADF')]);
    await expect(cleanUp('a string', '/v: close', () => Promise.reject(fsError('EIO', 'close', '/v')))).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(await cleanUp(first, '/v: close', () => Promise.resolve())).toBe(true);
  });

  it('volume: a superblock fdatasync fails and so does blanking its slot: the engine fails with the sync error, the blank\'s failure on its suppressed list (read through the cause chain)', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const io = new FailThenCleanupFails(disk, 'fdatasync', 2, '/vol/v');
    const engine = await Engine.open({ dataDir: '/data', io, clock: new ManualClock(), blockSize: SMALL_BS, preload: [volumeExtension({ path: '/vol/v', create: { sizeBytes: 64 * SMALL_BS, blockSize: SMALL_BS } })] });
    const r = engine.relation(rel(1), { storage: 'volume' });
    await r.create(0);
    await r.extend(0, makePage(rel(1), 0, 0, 1));
    io.armed = true; // the checkpoint's 2nd fdatasync is the superblock's
    const err = await engine.checkpoint().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'IO_ERROR' });
    expect(suppressedOf(err)).toEqual([expect.stringMatching(/blank superblock slot \d after the failed switch failed: EIO/)]);
    expect(engine.failed).toBe(true);
    io.armed = false;
    await engine.close().catch(() => undefined); // failed engine: close reports the failure again
  });

  it('growVolumeFile: the zero-fill fails and cutting the file back fails too: the reported error carries both', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const engine = await Engine.open({ dataDir: '/data', io: disk, clock: new ManualClock(), blockSize: SMALL_BS, preload: [volumeExtension({ path: '/vol/v', create: { sizeBytes: 16 * SMALL_BS, blockSize: SMALL_BS } })] });
    await engine.close();
    const io = new FailThenCleanupFails(disk, 'pwrite', 1, '/vol/v');
    io.armed = true;
    const err = await growVolumeFile('/vol/v', { sizeBytes: 32 * SMALL_BS, io }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'IO_ERROR', syscall: 'write' });
    expect(suppressedOf(err)).toEqual([expect.stringMatching(/cut back to \d+ bytes failed: EIO/)]);
  });

  it('cloneSnapshot: a write of the clone fails and removing the partial clone fails too: the error says so, and the file is still there', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const engine = await Engine.open({ dataDir: '/data', io: disk, clock: new ManualClock(), blockSize: SMALL_BS, preload: [volumeExtension({ path: '/vol/v', create: { sizeBytes: 64 * SMALL_BS, blockSize: SMALL_BS } })] });
    const r = engine.relation(rel(1), { storage: 'volume' });
    await r.create(0);
    await r.extend(0, makePage(rel(1), 0, 0, 1));
    await engine.close();
    await createSnapshot('/vol/v', 'base', { io: disk });
    const io = new FailThenCleanupFails(disk, 'pwrite', 1, '/vol/c');
    io.armed = true;
    const err = await cloneSnapshot('/vol/v', 'base', '/vol/c', { io }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'IO_ERROR' });
    expect(suppressedOf(err)).toEqual(expect.arrayContaining([expect.stringMatching(/remove the partial clone failed: EIO/)]));
    expect(await disk.stat('/vol/c')).not.toBeNull(); // left behind, and the error says so
  });

  it('the CLI prints each suppressed error on a line of its own under the message, and in the --json document', () => {
    const first = new LamstoreError(ErrorCode.IO_ERROR, '/v: fdatasync failed: EIO (x)', { path: '/v' });
    first.suppressed.push(new LamstoreError(ErrorCode.IO_ERROR, '/v: close failed: EIO (y)'));
    let stderr = '';
    let stdout = '';
    printFailure(toFailure(first, 'v'), true, { stderr: { write: (t: string) => (stderr += t) }, stdout: { write: (t: string) => (stdout += t) } });
    expect(stderr.trim().split('\n')).toEqual([expect.stringContaining('lamstore: v: '), 'lamstore: also: /v: close failed: EIO (y)']);
    expect(JSON.parse(stdout).error.suppressed).toEqual(['/v: close failed: EIO (y)']);
  });
});
