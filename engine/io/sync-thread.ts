/**
 * The sync thread: one worker thread that makes synchronous fsync calls for RealIO.fsyncEach
 * (FileIO C8), PostgreSQL 18's io_method=worker in miniature, and the writeback hints
 * (sync_file_range, FileIO C7) RealIO gives.
 *
 * Why: the sync phase of an md checkpoint fsyncs one file after another (PostgreSQL's loop).
 * Each fsync through libuv's pool is a round trip, main thread to a pool thread and back, and on
 * this machine that round trip costs about 70 µs against an fsync of about 140 µs once the
 * writeback hints have run: 1000 files took 197-253 ms awaited one by one, 124-144 ms as a
 * synchronous loop and 135-165 ms handed to a worker thread 10 at a time (BENCHMARKS.md, "The
 * md sync loop"). A synchronous loop on the main thread would stall the event loop for the whole
 * phase; the worker keeps the loop's speed and the main thread free.
 *
 * Invariants:
 *  S1 One thread, one batch at a time, fsyncs in the order given; it stops at the first failure
 *     (C8), so no fsync starts after one failed, and the answer says which succeeded.
 *  S2 The descriptors stay open and unchanged until the batch is answered: the caller keeps the
 *     handles open (md pins them in its fd cache), so a descriptor number cannot be reused for
 *     another file while the thread works on it.
 *  S3 The thread never keeps the process alive (unref'd while idle) and is started on first use.
 *     If it dies, every batch waiting on it fails with the reason, and the next batch starts a
 *     new thread.
 *  S4 The thread's code is a string evaluated as CommonJS, not a module file: it is the same under
 *     the build (dist/) and when tests run the TypeScript sources.
 *  S5 One thread per process, not per engine: engines in one process queue their batches behind
 *     each other (a batch is at most FSYNCS_PER_ABSORB fsyncs, so none waits long), and a test
 *     run that opens hundreds of engines does not leave hundreds of idle threads behind.
 *  S6 Hints: a batch of (fd, offset, nbytes) is given to sync_file_range(SYNC_FILE_RANGE_WRITE)
 *     one after another, every one of them (a hint that fails does not stop the next: each
 *     answers for itself), and the answer is each call's errno (0: queued). Why here and not in
 *     line on the event loop: sync_file_range waits whenever the device's queue is full, and on
 *     the event loop such a wait blocks the embedding program; off it, md's write phase at
 *     R=1000 P=16 also got 25-30 % shorter (BENCHMARKS.md, "Hints on the sync thread"). S2
 *     holds for hints too (md pins the segment until answered).
 *     The thread loads koffi from the path the main thread resolved (a worker evaluated from a
 *     string resolves modules from the current directory, not from lamstore's); where it cannot,
 *     the answer says why and RealIO makes its hints in line again.
 *  S7 Writes (FileIO C9): a batch of pwrite/pwritev calls whose pages sit in shared memory (the
 *     buffer pool's SharedArrayBuffer, posted with the batch and never copied), made one after
 *     another; it stops at the first failure and answers how many were written whole. Why:
 *     md's batch of 32 one-page writes to 32 files cost a libuv thread wakeup each, about 33 µs
 *     of the main thread per write at R=1000 P=1, where one round trip here costs one
 *     (BENCHMARKS.md, "md's writes on the sync thread"). The pages do not change until the
 *     answer (buffer-pool.ts B3) and S2 holds for the descriptors (md pins the segments).
 *     Hints and writes share the thread's queue, so a hint asked for after a write follows it.
 *  S8 A batch of writes carries the hints asked for since the last message (RealIO takes them
 *     from its turn's queue): the thread makes the hints first, then the writes, and answers
 *     both in one reply. Why: md's write phase at R=1000 P=16 sent a batch of writes and a batch
 *     of hints for every 32 buffers, 1000 messages, and postMessage itself took 13 ms of the
 *     phase's 35 ms of main-thread work (`checkpoint-profile --cpu-prof`; BENCHMARKS.md,
 *     2026-12-03). Then 500 messages, and the write phase 10 % shorter; since BufferSync's
 *     batches for md are cut by write calls (buffer-pool.ts `hintedBatches`), 63, each
 *     carrying the previous batch's 8 issues of hints. The hints carried are for writes
 *     already answered (BufferSync asks for them after), so S6's order holds.
 */
import { Worker } from 'node:worker_threads';
import { EINTR, SYNC_FILE_RANGE_DECLARATION, SYNC_FILE_RANGE_WRITE } from './sync-file-range.js';

/** One fsync's failure as the thread saw it (a Node error's fields, not the object). */
export interface SyncThreadError {
  code?: string;
  errno?: number;
  message: string;
}

/** The answer for a batch: each success's µs, and the failure of the next fd, if any. */
export interface SyncThreadReply {
  us: number[];
  error?: SyncThreadError;
}

/**
 * The answer for a batch of writes (S7): how many were written whole, the next one's failure;
 * and, when the batch carried hints (S8), their answer (`hints`).
 */
export interface WriteThreadReply {
  done: number;
  error?: SyncThreadError;
  hints?: HintReply;
}

/** The answer for a batch of hints (S6): each call's errno (0: queued), or why none was made. */
export type HintReply = { errnos: number[] } | { unavailable: string };

const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { fsyncSync, writevSync } = require('node:fs');
const { performance } = require('node:perf_hooks');
const loaded = new Map(); // koffi's path -> sync_file_range through it
function hintAnswer(koffiPath, ranges) {
  let hint = loaded.get(koffiPath);
  if (hint === undefined) {
    try {
      const koffi = require(koffiPath);
      const call = koffi.load(null).func('${SYNC_FILE_RANGE_DECLARATION}');
      hint = (fd, offset, nbytes) => {
        for (;;) {
          const errno = call(fd, offset, nbytes, ${SYNC_FILE_RANGE_WRITE}) === 0 ? 0 : koffi.errno() || -1;
          if (errno !== ${EINTR}) return errno; // interrupted: again, as pg_flush_data does
        }
      };
      loaded.set(koffiPath, hint);
    } catch (e) {
      return { unavailable: String(e && e.message) };
    }
  }
  const errnos = [];
  for (let i = 0; i < ranges.length; i += 3) errnos.push(hint(ranges[i], ranges[i + 1], ranges[i + 2]));
  return { errnos };
}
function writes(id, sabs, ops, hints) {
  let done = 0;
  try {
    for (let i = 0; i < ops.length; ) {
      const fd = ops[i];
      let position = ops[i + 1];
      const n = ops[i + 2];
      i += 3;
      let views = [];
      for (let k = 0; k < n; k++, i += 3) views.push(new Uint8Array(sabs[ops[i]], ops[i + 1], ops[i + 2]));
      while (views.length > 0) {
        const w = writevSync(fd, views, position);
        if (w <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
        position += w;
        let left = w;
        const rest = [];
        for (const v of views) {
          if (left >= v.length) left -= v.length;
          else {
            rest.push(left > 0 ? v.subarray(left) : v);
            left = 0;
          }
        }
        views = rest;
      }
      done++;
    }
  } catch (e) {
    parentPort.postMessage({ id, done, hints, error: { code: e.code, errno: e.errno, message: String(e.message) } });
    return;
  }
  parentPort.postMessage({ id, done, hints });
}
parentPort.on('message', ({ id, fds, koffiPath, ranges, sabs, ops }) => {
  if (ops) return writes(id, sabs, ops, ranges ? hintAnswer(koffiPath, ranges) : undefined);
  if (ranges) return parentPort.postMessage({ id, ...hintAnswer(koffiPath, ranges) });
  const us = [];
  for (const fd of fds) {
    const t = performance.now();
    try {
      fsyncSync(fd);
    } catch (e) {
      parentPort.postMessage({ id, us, error: { code: e.code, errno: e.errno, message: String(e.message) } });
      return;
    }
    us.push(Math.round((performance.now() - t) * 1000));
  }
  parentPort.postMessage({ id, us });
});
`;

let thread: Worker | null = null;
let nextId = 1;
// Each waiting batch's answer, as the thread sent it (fsyncs: SyncThreadReply; hints: HintReply).
const waiting = new Map<number, { resolve: (r: never) => void; reject: (e: unknown) => void }>();

function start(): Worker {
  const w = new Worker(THREAD_SOURCE, { eval: true });
  w.on('message', ({ id, ...reply }: { id: number }) => {
    const p = waiting.get(id);
    if (!p) return;
    waiting.delete(id);
    if (waiting.size === 0) w.unref();
    p.resolve(reply as never);
  });
  const fail = (reason: unknown) => {
    if (thread === w) thread = null;
    for (const p of waiting.values()) p.reject(reason);
    waiting.clear();
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`the sync thread exited (code ${code})`)));
  w.unref();
  return w;
}

/** Messages sent to the thread so far, fsync batches and hint batches alike (tests count them). */
export let syncThreadMessages = 0;
/**
 * The same, by what they ask for; `hintsCarried` counts the batches of writes that also carried
 * hints (S8), which are no messages of their own.
 */
export const syncThreadMessagesByKind = { fsyncs: 0, hints: 0, writes: 0, hintsCarried: 0 };

function ask<T>(kind: 'fsyncs' | 'hints' | 'writes', message: object): Promise<T> {
  syncThreadMessages++;
  syncThreadMessagesByKind[kind]++;
  thread ??= start();
  const w = thread;
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    waiting.set(id, { resolve: resolve as (r: never) => void, reject });
    w.ref(); // a batch in flight keeps the process alive until it is answered
    w.postMessage({ id, ...message }); // structured clone: the thread gets its own copy
  });
}

/** fsync `fds` one after another on the sync thread (S1). */
export function fsyncOnThread(fds: readonly number[]): Promise<SyncThreadReply> {
  return ask<SyncThreadReply>('fsyncs', { fds });
}

/**
 * Writeback hints on the sync thread (S6): `ranges` is (fd, offsetBytes, nbytes) three numbers
 * per hint; `koffiPath` is where the main thread found koffi.
 */
export function hintsOnThread(ranges: readonly number[], koffiPath: string): Promise<HintReply> {
  return ask<HintReply>('hints', { ranges, koffiPath });
}

/**
 * Writes on the sync thread (S7): `ops` is, per write, (fd, position, views) and then each view
 * as (index into `sabs`, byteOffset, byteLength). The shared buffers are posted, not copied.
 * `hints` (S8): hints asked for before these writes, made first, answered in the reply's `hints`.
 */
export function writesOnThread(sabs: readonly SharedArrayBuffer[], ops: readonly number[], hints?: { ranges: readonly number[]; koffiPath: string }): Promise<WriteThreadReply> {
  if (!hints) return ask<WriteThreadReply>('writes', { sabs, ops });
  syncThreadMessagesByKind.hintsCarried++;
  return ask<WriteThreadReply>('writes', { sabs, ops, ranges: hints.ranges, koffiPath: hints.koffiPath });
}
