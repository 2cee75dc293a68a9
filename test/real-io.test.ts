/**
 * Goal: RealIO keeps the FileIO contract (file-io.ts C1-C6) on a real file system, and
 * CountingIO counts what passes through it.
 * Method: a temporary directory per test; round trips through the FileIO calls and comparison
 * with what node:fs sees (tests may use node:fs; engine code may not).
 */
import { closeSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RealIO } from '../engine/io/real-io.js';
import { CountingIO, ForwardingIO, SimDisk, type FileIOMethod } from '../engine/testing.js';
import { fsyncEach, pwriteEach, type FileHandle, type FileIO } from '../engine/index.js';
import { SyncLedgerIO } from '../engine/io/sync-ledger.js';
import { syncThreadMessages } from '../engine/io/sync-thread.js';
import { tempDir } from './helpers/index.js';

function bytes(length: number, seed: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('RealIO', () => {
  it('pwrite, pwritev and pread round-trip at offsets', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'f');
    const h = await io.open(path, { create: true });
    const a = bytes(1000, 1);
    await io.pwrite(h, a, 0);
    const parts = [bytes(100, 2), bytes(1, 3), bytes(4096, 4), new Uint8Array(0)];
    await io.pwritev(h, parts, 1000);
    expect(await io.size(h)).toBe(1000 + 100 + 1 + 4096);

    const back = new Uint8Array(5197);
    expect(await io.pread(h, back, 0)).toBe(5197);
    expect(back.subarray(0, 1000)).toEqual(a);
    expect(back.subarray(1000, 1100)).toEqual(parts[0]);
    expect(back.subarray(1100, 1101)).toEqual(parts[1]);
    expect(back.subarray(1101)).toEqual(parts[2]);
    // What node:fs sees is the same.
    expect(new Uint8Array(await readFile(path))).toEqual(back);

    // Overwrite in the middle.
    await io.pwrite(h, bytes(10, 9), 500);
    const mid = new Uint8Array(10);
    expect(await io.pread(h, mid, 500)).toBe(10);
    expect(mid).toEqual(bytes(10, 9));
    await io.fsync(h);
    await io.fdatasync(h);
    await io.close(h);
  });

  it('pwritev of many buffers (more than one writev can take) writes them all', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'many');
    const h = await io.open(path, { create: true });
    const parts = Array.from({ length: 2000 }, (_, i) => bytes(8, i)); // IOV_MAX is 1024 on Linux
    await io.pwritev(h, parts, 0);
    const back = new Uint8Array(16000);
    expect(await io.pread(h, back, 0)).toBe(16000);
    for (let i = 0; i < 2000; i++) expect(back.subarray(i * 8, i * 8 + 8)).toEqual(parts[i]);
    await io.close(h);
  });

  it('pwritev of views side by side in one ArrayBuffer (pool pages) writes the same bytes as separate buffers, in order, out-of-order views included', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'f');
    const h = await io.open(path, { create: true });
    const arena = bytes(8 * 512, 7);
    const page = (i: number) => arena.subarray(i * 512, (i + 1) * 512);
    // 0,1,2 adjacent; then 5 (a gap), 3 (backwards), 4 (adjacent to 3), a separate buffer, 6, 7.
    const order = [page(0), page(1), page(2), page(5), page(3), page(4), bytes(100, 9), page(6), page(7)];
    await io.pwritev(h, order, 0);
    const expected = new Uint8Array(order.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of order) {
      expected.set(b, at);
      at += b.length;
    }
    expect(new Uint8Array(await readFile(path))).toEqual(expected);
    expect(order.map((b) => b.byteOffset)).toEqual([0, 512, 1024, 2560, 1536, 2048, 0, 3072, 3584]); // the caller's views untouched
    await io.close(h);
  });

  it('a zero-length write past the end does not change the size (SimDisk does the same)', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'f');
    const h = await io.open(path, { create: true });
    await io.pwrite(h, bytes(100, 1), 0);
    await io.pwrite(h, new Uint8Array(0), 4096);
    await io.pwritev(h, [], 8192);
    expect(await io.size(h)).toBe(100);
    await io.close(h);
  });

  it('pread is short at end of file and 0 past it', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'f');
    await writeFile(path, bytes(100, 1));
    const h = await io.open(path, { readOnly: true });
    expect(await io.pread(h, new Uint8Array(64), 64)).toBe(36);
    expect(await io.pread(h, new Uint8Array(64), 100)).toBe(0);
    expect(await io.pread(h, new Uint8Array(64), 1 << 20)).toBe(0);
    await io.close(h);
  });

  it('open: ENOENT for a missing file, EISDIR for a directory, EEXIST with exclusive', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    await expect(io.open(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open' });
    await expect(io.open(dir)).rejects.toMatchObject({ code: 'EISDIR' });
    await expect(io.open(dir, { readOnly: true })).rejects.toMatchObject({ code: 'EISDIR' });
    const h = await io.open(join(dir, 'x'), { create: true, exclusive: true });
    await expect(io.open(join(dir, 'x'), { create: true, exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    await io.close(h);
  });

  it('a read-only handle refuses writes; a closed handle is EBADF', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'f');
    await writeFile(path, bytes(10, 1));
    const ro = await io.open(path, { readOnly: true });
    await expect(io.pwrite(ro, bytes(1, 1), 0)).rejects.toMatchObject({ code: 'EBADF' });
    await io.close(ro);
    await expect(io.pread(ro, new Uint8Array(1), 0)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(io.close(ro)).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('stat is null for a missing path and names files and directories', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    expect(await io.stat(join(dir, 'nothing'))).toBeNull();
    await writeFile(join(dir, 'f'), bytes(123, 1));
    expect(await io.stat(join(dir, 'f'))).toEqual({ kind: 'file', sizeBytes: 123 });
    expect(await io.stat(dir)).toMatchObject({ kind: 'directory' });
  });

  it('ftruncate, unlink, rename, mkdir (with parents), readdir and fsyncDir', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    await io.mkdir(join(dir, 'a', 'b', 'c'));
    await io.mkdir(join(dir, 'a', 'b', 'c')); // already there: fine
    expect(await io.stat(join(dir, 'a', 'b', 'c'))).toMatchObject({ kind: 'directory' });
    const h = await io.open(join(dir, 'a', 'f'), { create: true });
    await io.pwrite(h, bytes(8192, 1), 0);
    await io.ftruncate(h, 100);
    expect(await io.size(h)).toBe(100);
    await io.close(h);
    await io.rename(join(dir, 'a', 'f'), join(dir, 'a', 'g'));
    expect(await io.readdir(join(dir, 'a'))).toEqual(['b', 'g']);
    await io.fsyncDir(join(dir, 'a'));
    await io.fsyncDir(dir);
    await io.unlink(join(dir, 'a', 'g'));
    await expect(io.unlink(join(dir, 'a', 'g'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(io.fsyncDir(join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await io.readdir(join(dir, 'a'))).toEqual(['b']);
  });

  it('flock: two handles of one file conflict with EAGAIN; shared locks coexist; unlock and close release', async () => {
    const io = new RealIO();
    const path = join(await tempDir(), 'lock');
    const a = await io.open(path, { create: true });
    const b = await io.open(path);
    await io.flock(a, 'exclusive');
    await expect(io.flock(b, 'exclusive')).rejects.toMatchObject({ code: 'EAGAIN' });
    await expect(io.flock(b, 'shared')).rejects.toMatchObject({ code: 'EAGAIN' });
    await io.flock(a, 'unlock');
    await io.flock(a, 'shared');
    await io.flock(b, 'shared');
    await expect(io.flock(b, 'exclusive')).rejects.toMatchObject({ code: 'EAGAIN' });
    await io.close(a); // closing releases a's lock
    await io.flock(b, 'exclusive');
    await io.close(b);
  });
});

describe('fsyncEach (C8)', () => {
  it('RealIO fsyncs every handle on its sync thread, in order, with a time for each', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    const hs: FileHandle[] = [];
    for (let i = 0; i < 3; i++) {
      const h = await io.open(join(dir, `f${i}`), { create: true });
      await io.pwrite(h, bytes(8192, i), 0);
      hs.push(h);
    }
    const r = await io.fsyncEach(hs);
    expect(r.error).toBeUndefined();
    expect(r.done).toBe(3);
    expect(r.us).toHaveLength(3);
    for (const us of r.us) expect(Number.isInteger(us) && us >= 0).toBe(true);
    expect(await io.fsyncEach([])).toEqual({ done: 0, us: [] });
    for (const h of hs) await io.close(h);
  });

  it('RealIO stops at the first failure: an fsync the kernel refuses (EBADF) and a closed handle each fail in place, after the ones before them', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    const hs: FileHandle[] = [];
    for (let i = 0; i < 3; i++) hs.push(await io.open(join(dir, `f${i}`), { create: true }));
    // The descriptor closed behind RealIO's back: the sync thread's fsync answers EBADF.
    closeSync((hs[1] as unknown as { fd: number }).fd);
    const r = await io.fsyncEach(hs);
    expect(r.done).toBe(1);
    expect(r.us).toHaveLength(1);
    expect(r.error).toMatchObject({ code: 'EBADF', syscall: 'fsync', path: join(dir, 'f1') });
    expect((r.error as Error).message).toBe(`EBADF: bad file descriptor, fsync '${join(dir, 'f1')}'`);
    // A handle RealIO knows is closed is refused before the thread is asked.
    await io.close(hs[2]!);
    const r2 = await io.fsyncEach([hs[0]!, hs[2]!]);
    expect(r2).toMatchObject({ done: 1, error: { code: 'EBADF', syscall: 'fsync', path: join(dir, 'f2') } });
    await io.close(hs[0]!);
  });

  it('the fsyncEach function loops fsync where a FileIO has no fsyncEach, and CountingIO counts every fsync attempted either way', async () => {
    const disk = new SimDisk();
    const hs = [await disk.open('/a', { create: true }), await disk.open('/b', { create: true })];
    await disk.close(hs[1]!);
    const looped = await fsyncEach(disk, hs);
    expect(looped).toMatchObject({ done: 1, error: { code: 'EBADF' } });
    const counting = new CountingIO(new RealIO());
    const dir = await tempDir();
    const rh = [await counting.open(join(dir, 'x'), { create: true }), await counting.open(join(dir, 'y'), { create: true })];
    expect(await counting.fsyncEach(rh)).toMatchObject({ done: 2 });
    expect(counting.counts().fsync).toBe(2);
    const overSim = new CountingIO(new SimDisk());
    const sh = [await overSim.open('/c', { create: true })];
    expect(await overSim.fsyncEach(sh)).toMatchObject({ done: 1 });
    expect(overSim.counts().fsync).toBe(1);
    for (const h of rh) await counting.close(h);
  });
});

describe('pwriteEach (C9)', () => {
  /** `n` pages of `size` bytes side by side in one SharedArrayBuffer, as the buffer pool holds them. */
  function sharedPages(n: number, size: number, seed: number): Uint8Array[] {
    const mem = new Uint8Array(new SharedArrayBuffer(n * size));
    const pages: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const p = mem.subarray(i * size, (i + 1) * size);
      p.set(bytes(size, seed + i));
      pages.push(p);
    }
    return pages;
  }

  it('RealIO writes pages of shared memory on its sync thread, one message for the lot, each write whole where it belongs', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    const hs = [await io.open(join(dir, 'a'), { create: true }), await io.open(join(dir, 'b'), { create: true })];
    const pages = sharedPages(4, 8192, 1);
    const before = syncThreadMessages;
    // A pwrite, a pwritev of two non-adjacent pages, and a pwritev of two adjacent ones (one iovec).
    const r = await io.pwriteEach([
      { handle: hs[0]!, buffers: [pages[0]!], offsetBytes: 8192 },
      { handle: hs[1]!, buffers: [pages[3]!, pages[1]!], offsetBytes: 0 },
      { handle: hs[0]!, buffers: [pages[2]!, pages[3]!], offsetBytes: 16384 },
    ]);
    expect(r).toEqual({ done: 3 });
    expect(syncThreadMessages - before).toBe(1);
    const a = new Uint8Array(await readFile(join(dir, 'a')));
    expect(a.length).toBe(4 * 8192);
    expect(a.subarray(8192, 16384)).toEqual(pages[0]);
    expect(a.subarray(16384, 24576)).toEqual(pages[2]);
    expect(a.subarray(24576)).toEqual(pages[3]);
    const b = new Uint8Array(await readFile(join(dir, 'b')));
    expect(b.subarray(0, 8192)).toEqual(pages[3]);
    expect(b.subarray(8192)).toEqual(pages[1]);
    expect(await io.pwriteEach([])).toEqual({ done: 0 });
    // A lone one-page write (an eviction) saves no wakeup: it goes through libuv, no message.
    const lone = syncThreadMessages;
    expect(await io.pwriteEach([{ handle: hs[1]!, buffers: [pages[2]!], offsetBytes: 16384 }])).toEqual({ done: 1 });
    expect(syncThreadMessages - lone).toBe(0);
    expect(new Uint8Array(await readFile(join(dir, 'b'))).subarray(16384)).toEqual(pages[2]);
    for (const h of hs) await io.close(h);
  });

  it('RealIO writes pages of ordinary memory through libuv instead (no message), with the same result', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    const h = await io.open(join(dir, 'a'), { create: true });
    const before = syncThreadMessages;
    const r = await io.pwriteEach([
      { handle: h, buffers: [bytes(100, 1)], offsetBytes: 0 },
      { handle: h, buffers: [bytes(50, 2), bytes(50, 3)], offsetBytes: 100 },
    ]);
    expect(r).toEqual({ done: 2 });
    expect(syncThreadMessages - before).toBe(0);
    expect(new Uint8Array(await readFile(join(dir, 'a')))).toEqual(new Uint8Array([...bytes(100, 1), ...bytes(50, 2), ...bytes(50, 3)]));
    await io.close(h);
  });

  it('RealIO stops at the first failure: a write the kernel refuses (EBADF, a read-only handle) fails in place, and no write after it is made', async () => {
    const io = new RealIO();
    const dir = await tempDir();
    await writeFile(join(dir, 'ro'), new Uint8Array(0));
    const ok = await io.open(join(dir, 'ok'), { create: true });
    const ro = await io.open(join(dir, 'ro'), { readOnly: true });
    const pages = sharedPages(3, 4096, 7);
    const r = await io.pwriteEach([
      { handle: ok, buffers: [pages[0]!], offsetBytes: 0 },
      { handle: ro, buffers: [pages[1]!, pages[2]!], offsetBytes: 0 },
      { handle: ok, buffers: [pages[2]!], offsetBytes: 4096 },
    ]);
    expect(r.done).toBe(1);
    expect(r.error).toMatchObject({ code: 'EBADF', syscall: 'writev', path: join(dir, 'ro') });
    expect(new Uint8Array(await readFile(join(dir, 'ok')))).toEqual(pages[0]); // the third never made
    // A handle RealIO knows is closed is refused before the thread is asked.
    await io.close(ro);
    const before = syncThreadMessages;
    const r2 = await io.pwriteEach([{ handle: ro, buffers: [pages[0]!], offsetBytes: 0 }]);
    expect(r2).toMatchObject({ done: 0, error: { code: 'EBADF', syscall: 'write', path: join(dir, 'ro') } });
    expect(syncThreadMessages - before).toBe(0);
    await io.close(ok);
  });

  it('the pwriteEach function answers a FileIO pwriteEach that rejects (no answer: the sync thread died) as a failure with nothing written', async () => {
    const disk = new SimDisk();
    const h = await disk.open('/a', { create: true });
    const died = new Error('the sync thread exited (code 1)');
    const io: FileIO = Object.assign(Object.create(disk) as FileIO, { pwriteEach: () => Promise.reject(died) });
    expect(await pwriteEach(io, [{ handle: h, buffers: [new Uint8Array(8)], offsetBytes: 0 }], 4)).toEqual({ done: 0, error: died });
  });

  it('the pwriteEach function writes in flight where a FileIO has none and answers the first failure in order and the writes made after it; CountingIO and SyncLedgerIO count and record each write either way', async () => {
    const disk = new SimDisk();
    const hs = [await disk.open('/a', { create: true }), await disk.open('/b', { create: true }), await disk.open('/c', { create: true })];
    await disk.close(hs[1]!);
    const looped = await pwriteEach(disk, hs.map((h) => ({ handle: h, buffers: [new Uint8Array(8)], offsetBytes: 0 })), 4);
    // All three in flight together: the third was written although the second failed.
    expect(looped).toMatchObject({ done: 1, error: { code: 'EBADF', path: '/b' }, later: [2] });
    // Over RealIO (which has C9): counted per write attempted, bytes of those written.
    const dir = await tempDir();
    const counting = new CountingIO(new RealIO());
    const h = await counting.open(join(dir, 'x'), { create: true });
    const pages = sharedPages(3, 4096, 3);
    expect(await counting.pwriteEach!([{ handle: h, buffers: [pages[0]!], offsetBytes: 0 }, { handle: h, buffers: [pages[1]!, pages[2]!], offsetBytes: 4096 }])).toEqual({ done: 2 });
    expect(counting.counts()).toMatchObject({ pwrite: 2, bytesWritten: 3 * 4096 });
    await counting.close(h);
    // Over SimDisk (no C9): CountingIO leaves it out, and the function's writes are counted one by one.
    const overSim = new CountingIO(new SimDisk());
    expect(overSim.pwriteEach).toBeUndefined();
    const sh = await overSim.open('/c', { create: true });
    expect(await pwriteEach(overSim, [{ handle: sh, buffers: [new Uint8Array(8)], offsetBytes: 0 }, { handle: sh, buffers: [new Uint8Array(8), new Uint8Array(8)], offsetBytes: 8 }], 4)).toEqual({ done: 2 });
    expect(overSim.counts()).toMatchObject({ pwrite: 2, bytesWritten: 24 });
    // The sync ledger records the writes done through RealIO's C9, and a sync covers them.
    const ledger = new SyncLedgerIO(new RealIO());
    const lh = await ledger.open(join(dir, 'y'), { create: true });
    const epoch = ledger.beginEpoch();
    expect(await ledger.pwriteEach!([{ handle: lh, buffers: [pages[0]!], offsetBytes: 0 }])).toEqual({ done: 1 });
    ledger.beginEpoch();
    expect(() => ledger.verify(epoch + 1)).toThrow(/still not synced/);
    await ledger.fsync(lh);
    ledger.verify(epoch + 1);
    await ledger.close(lh);
  });
});

describe('CountingIO', () => {
  it('counts calls and bytes per kind, over SimDisk', async () => {
    const io = new CountingIO(new SimDisk());
    await io.mkdir('/d');
    const h = await io.open('/d/f', { create: true });
    await io.pwrite(h, new Uint8Array(100), 0);
    await io.pwritev(h, [new Uint8Array(10), new Uint8Array(20)], 100);
    const n = await io.pread(h, new Uint8Array(500), 0);
    expect(n).toBe(130);
    await io.fsync(h);
    await io.fdatasync(h);
    await io.fdatasync(h);
    await io.fsyncDir('/d');
    await io.ftruncate(h, 0);
    await io.size(h);
    await io.stat('/d/f');
    await io.readdir('/d');
    await io.flock(h, 'exclusive');
    await io.close(h);
    await io.rename('/d/f', '/d/g');
    await io.unlink('/d/g');
    const c = io.counts();
    expect(c).toMatchObject({
      mkdir: 1,
      open: 1,
      close: 1,
      pwrite: 2, // pwritev counts as one pwrite
      pread: 1,
      fsync: 1,
      fdatasync: 2,
      fsyncDir: 1,
      ftruncate: 1,
      size: 1,
      stat: 1,
      readdir: 1,
      flock: 1,
      rename: 1,
      unlink: 1,
      bytesWritten: 130,
      bytesRead: 130,
      openHandles: 0,
      openHandlesMax: 1,
    });
    io.reset();
    expect(io.counts()).toMatchObject({ pwrite: 0, fsync: 0, bytesWritten: 0, openHandles: 0, openHandlesMax: 0 });
  });

  it('openHandlesMax is the most handles open at once; failed opens and writes count no handle or bytes', async () => {
    const disk = new SimDisk();
    const io = new CountingIO(disk);
    const hs = [];
    for (let i = 0; i < 5; i++) hs.push(await io.open(`/f${i}`, { create: true }));
    await io.close(hs.pop()!);
    await io.close(hs.pop()!);
    hs.push(await io.open('/f9', { create: true }));
    await expect(io.open('/missing')).rejects.toMatchObject({ code: 'ENOENT' });
    let c = io.counts();
    expect(c.open).toBe(7); // the failed open is still a call
    expect(c.openHandles).toBe(4);
    expect(c.openHandlesMax).toBe(5);
    io.reset();
    expect(io.counts().openHandlesMax).toBe(4); // restarts from what is open now
    disk.injectFault({ kind: 'pwrite', code: 'ENOSPC' });
    await expect(io.pwrite(hs[0]!, new Uint8Array(64), 0)).rejects.toMatchObject({ code: 'ENOSPC' });
    c = io.counts();
    expect(c.pwrite).toBe(1);
    expect(c.bytesWritten).toBe(0);
    for (const h of hs) await io.close(h);
    expect(io.counts().openHandles).toBe(0);
    expect(disk.openHandleCount).toBe(0);
  });

  it('closing a handle twice does not count it closed twice', async () => {
    const io = new CountingIO(new SimDisk());
    const h = await io.open('/f', { create: true });
    await io.close(h);
    await expect(io.close(h)).rejects.toMatchObject({ code: 'EBADF' });
    expect(io.counts()).toMatchObject({ close: 2, openHandles: 0, openHandlesMax: 1 });
  });

  it('counts over RealIO too', async () => {
    const io = new CountingIO(new RealIO());
    const path = join(await tempDir(), 'f');
    const h = await io.open(path, { create: true });
    await io.pwrite(h, new Uint8Array(4096), 0);
    await io.fdatasync(h);
    await io.close(h);
    expect(io.counts()).toMatchObject({ open: 1, pwrite: 1, fdatasync: 1, close: 1, bytesWritten: 4096, openHandles: 0, openHandlesMax: 1 });
  });
});

describe('ForwardingIO (the base of CountingIO and the test doubles)', () => {
  /** Every method of FileIO with arguments it accepts on a fresh SimDisk file '/f'. */
  async function everyCall(io: FileIO): Promise<void> {
    const h = await io.open('/f', { create: true });
    await io.pwrite(h, new Uint8Array(8), 0);
    await io.pwritev(h, [new Uint8Array(8)], 8);
    await io.pread(h, new Uint8Array(8), 0);
    await io.fsync(h);
    await io.fdatasync(h);
    await io.ftruncate(h, 8);
    await io.size(h);
    await io.flock(h, 'exclusive');
    await io.writeback!(h, 0, 8);
    await io.close(h);
    await io.mkdir('/d');
    await io.rename('/f', '/d/g');
    await io.fsyncDir('/d');
    await io.stat('/d/g');
    await io.readdir('/d');
    await io.unlink('/d/g');
    await io.rmdir!('/d');
  }

  it('passes every call to the inner FileIO through its hook, by name', async () => {
    const seen: string[] = [];
    class Recording extends ForwardingIO {
      protected override around<T>(method: FileIOMethod, call: () => Promise<T>): Promise<T> {
        seen.push(method);
        return call();
      }
    }
    const disk = new SimDisk();
    await everyCall(new Recording(disk));
    expect(seen).toEqual(['open', 'pwrite', 'pwritev', 'pread', 'fsync', 'fdatasync', 'ftruncate', 'size', 'flock', 'writeback', 'close', 'mkdir', 'rename', 'fsyncDir', 'stat', 'readdir', 'unlink', 'rmdir']);
    expect(disk.listFiles()).toEqual([]);
    expect(disk.openHandleCount).toBe(0);
  });

  it('W1: an inner that throws at once still gives a rejection; W2: rmdir without one is ENOSYS, writeback without one ends there', async () => {
    const throwsAtOnce = {
      fsync: () => {
        throw new Error('thrown, not rejected');
      },
    } as unknown as FileIO;
    const io = new ForwardingIO(throwsAtOnce);
    const fsync = io.fsync({ path: '/f' } as FileHandle);
    expect(fsync).toBeInstanceOf(Promise);
    await expect(fsync).rejects.toThrow('thrown, not rejected');
    await expect(io.rmdir('/d')).rejects.toMatchObject({ code: 'ENOSYS', syscall: 'rmdir' });
    await expect(io.writeback({ path: '/f' } as FileHandle, 0, 8)).resolves.toBeUndefined();
    expect(io.writebackSupported).toBe(false);
    expect(new ForwardingIO(new SimDisk()).writebackSupported).toBe(true);
  });
});
