/**
 * The sync thread: one worker thread that makes synchronous fsync calls for RealIO.fsyncEach
 * (FileIO C8), PostgreSQL 18's io_method=worker in miniature.
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
 */
import { Worker } from 'node:worker_threads';

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

const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { fsyncSync } = require('node:fs');
const { performance } = require('node:perf_hooks');
parentPort.on('message', ({ id, fds }) => {
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
const waiting = new Map<number, { resolve: (r: SyncThreadReply) => void; reject: (e: unknown) => void }>();

function start(): Worker {
  const w = new Worker(THREAD_SOURCE, { eval: true });
  w.on('message', (m: SyncThreadReply & { id: number }) => {
    const p = waiting.get(m.id);
    if (!p) return;
    waiting.delete(m.id);
    if (waiting.size === 0) w.unref();
    p.resolve({ us: m.us, error: m.error });
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

/** fsync `fds` one after another on the sync thread (S1). */
export function fsyncOnThread(fds: readonly number[]): Promise<SyncThreadReply> {
  thread ??= start();
  const w = thread;
  const id = nextId++;
  return new Promise<SyncThreadReply>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    w.ref(); // a batch in flight keeps the process alive until it is answered
    w.postMessage({ id, fds }); // structured clone: the thread gets its own copy
  });
}
