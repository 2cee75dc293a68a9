/**
 * A worker thread of `bench/io-candidates.ts`'s worker candidates (PostgreSQL 18's
 * io_method=worker in miniature): synchronous calls, off the main thread.
 *
 * Protocol. workerData holds three SharedArrayBuffers: `control` (Int32Array; [0] is the next
 * item to take), `items` (Float64Array, 4 per item: fd, offset, firstPage, pageCount) and
 * `pages` (the page bytes, written by the main thread before the batch starts). The main thread
 * writes a batch's items, resets control[0] and posts `{ seq, op, n, via }` to each worker it
 * wants; each worker takes items with Atomics.add until none is left, makes each call
 * synchronously (node:fs's *Sync or libc's through koffi), and posts `{ seq, done }` (or
 * `{ seq, error }`, after which every worker stops taking items).
 */
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { loadLibc, type Libc } from './io-candidates-libc.js';
import { PAGE_SIZE } from './io-candidates-plan.js';

export interface WorkerShared {
  control: SharedArrayBuffer;
  items: SharedArrayBuffer;
  pages: SharedArrayBuffer;
}

export interface WorkerBatch {
  seq: number;
  op: 'write' | 'fsync' | 'fdatasync';
  n: number;
  via: 'fs' | 'koffi';
}

export type WorkerReply = { seq: number; done: number } | { seq: number; error: string };

const shared = workerData as WorkerShared;
const control = new Int32Array(shared.control);
const items = new Float64Array(shared.items);
const pageViews: Uint8Array[] = [];
for (let off = 0; off + PAGE_SIZE <= shared.pages.byteLength; off += PAGE_SIZE) pageViews.push(new Uint8Array(shared.pages, off, PAGE_SIZE));

let libc: Libc | null = null;

function viaKoffi(): Libc {
  if (libc) return libc;
  const p = loadLibc();
  if (!p.libc) throw new Error(p.reason);
  libc = p.libc;
  return libc;
}

function fsWrite(fd: number, offset: number, first: number, count: number): void {
  if (count === 1) {
    const n = fs.writeSync(fd, pageViews[first]!, 0, PAGE_SIZE, offset);
    if (n !== PAGE_SIZE) throw new Error(`pwrite wrote ${n} of ${PAGE_SIZE} bytes`);
  } else {
    const n = fs.writevSync(fd, pageViews.slice(first, first + count), offset);
    if (n !== count * PAGE_SIZE) throw new Error(`pwritev wrote ${n} of ${count * PAGE_SIZE} bytes`);
  }
}

function run(batch: WorkerBatch): number {
  const k = batch.via === 'koffi' ? viaKoffi() : null;
  let done = 0;
  for (;;) {
    const i = Atomics.add(control, 0, 1);
    if (i >= batch.n) return done;
    const fd = items[i * 4]!;
    if (batch.op === 'write') {
      const offset = items[i * 4 + 1]!;
      const first = items[i * 4 + 2]!;
      const count = items[i * 4 + 3]!;
      if (k) {
        if (count === 1) k.pwrite(fd, pageViews[first]!, offset);
        else k.pwritev(fd, pageViews.slice(first, first + count), offset);
      } else fsWrite(fd, offset, first, count);
    } else if (batch.op === 'fsync') {
      if (k) k.fsync(fd);
      else fs.fsyncSync(fd);
    } else if (k) k.fdatasync(fd);
    else fs.fdatasyncSync(fd);
    done++;
  }
}

parentPort!.on('message', (batch: WorkerBatch) => {
  let reply: WorkerReply;
  try {
    reply = { seq: batch.seq, done: run(batch) };
  } catch (err) {
    // Stop the others from taking more (I2's spirit: what started finishes, nothing new starts).
    Atomics.store(control, 0, 0x7fffffff);
    reply = { seq: batch.seq, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(reply);
});
