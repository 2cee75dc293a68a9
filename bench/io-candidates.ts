/**
 * The I/O candidates, side by side: how to issue a checkpoint's writes and syncs from Node
 * (the I/O path issue, part 3). A stand-alone script on raw calls, not on the engine:
 *
 *   node dist/bench/io-candidates.js [--dir DIR] [--json] [--runs N] [--pages N]
 *
 * Shapes (N = --pages, default 1000; plan: io-candidates-plan.ts):
 *  A  md-like checkpoint: N files of 64 KiB, descriptors kept open (md's fd cache), one 8 KiB
 *     page rewritten in each, then every file fsynced. Write phase, sync phase, total.
 *  B  volume-like scattered: one preallocated 64 MiB file, N pages every 64 KiB, one fdatasync.
 *  C  volume-like contiguous: N pages in pwritevs of at most IOV_MAX buffers, one fdatasync.
 *  C1 the same N contiguous pages as N pwrites (what vectoring saves), one fdatasync.
 *
 * Candidates (plan: `candidates()`): (1) node:fs calls awaited one by one; (2) K = 4, 8, 16, 64
 * in flight (the engine's forEachInFlight); (3) the same in a child process started with
 * UV_THREADPOOL_SIZE=16; (4) fs.*Sync on the main thread, also yielding every 5 ms; (5) 2, 4 and
 * 16 worker threads making synchronous calls; (6) koffi's libc calls on the main thread and in 2
 * and 4 worker threads; (7) K in flight in a child started with UV_USE_IO_URING=1 (libuv's
 * io_uring, off by default in Node 20; the child counts its io_uring descriptors to show it is
 * on). Every (candidate, shape) is measured once per run, runs rotate the candidate order (each
 * child's candidates count as one unit), one warm-up run is discarded; reported: medians, ratios
 * to (1), and the main thread's longest event-loop stall (perf_hooks.monitorEventLoopDelay at
 * 1 ms resolution, so about 1 ms when nothing stalls; for (3) and (7), the child's main thread).
 *
 * Files go in a fresh subdirectory of --dir (default: the OS temp directory), removed at the
 * end, on failure, and on SIGINT, SIGTERM or SIGHUP (a first signal stops at the next step, a
 * second removes the files at once); exit 0, 1 (failure), 2 (usage) or 128 + the signal.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UsageError } from '../cmdline/args.js';
import { onStopSignals, signalExitCode, type StopSignal } from '../cmdline/signals.js';
import { forEachInFlight } from '../engine/index.js';
import { loadLibc, type Libc } from './io-candidates-libc.js';
import {
  FILE_SIZE_A,
  PAGE_SIZE,
  SHAPES,
  SHAPE_LABELS,
  USAGE,
  candidates,
  parseIoCandidatesArgs,
  planShape,
  rotate,
  volumeBytes,
  CHILD_ENV,
  type Candidate,
  type ChildRuntime,
  type IoCandidatesOptions,
  type Item,
  type ShapeFiles,
  type ShapeId,
  type ShapePlan,
  type SyncOp,
} from './io-candidates-plan.js';
import type { WorkerBatch, WorkerReply, WorkerShared } from './io-candidates-worker.js';
import { fdatasyncLatency, fileSystemType } from './machine.js';
import { median, ratio, roundMs, summarize, type Summary } from './stats.js';

const TOOL = 'io-candidates';

interface Sample {
  writeMs: number;
  syncMs: number;
  totalMs: number;
  stallMs: number;
}

type RoundSamples = Record<string, Partial<Record<ShapeId, Sample>>>;

class Failure extends Error {
  constructor(
    readonly code: 'USAGE' | 'INTERRUPTED' | 'FAILED',
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Files and pages

interface Files extends ShapeFiles {
  all: number[];
}

function pathsOf(workDir: string, pages: number): { a: string[]; b: string; c: string } {
  return {
    a: Array.from({ length: pages }, (_, i) => join(workDir, 'a', `f${String(i).padStart(5, '0')}`)),
    b: join(workDir, 'volume.dat'),
    c: join(workDir, 'contiguous.dat'),
  };
}

/** Create every shape's files, fully written and fsynced (so no run pays for allocation), descriptors kept open. */
async function createFiles(workDir: string, pages: number, stop: () => void): Promise<Files> {
  const p = pathsOf(workDir, pages);
  fs.mkdirSync(join(workDir, 'a'));
  const all: number[] = [];
  const openNew = (path: string): number => {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    all.push(fd);
    return fd;
  };
  const zeros = Buffer.alloc(1024 * 1024);
  const fill = (fd: number, bytes: number): void => {
    for (let off = 0; off < bytes; off += zeros.length) fs.writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - off), off);
    fs.fsyncSync(fd);
  };
  const fdsA: number[] = [];
  for (let i = 0; i < pages; i++) {
    const fd = openNew(p.a[i]!);
    fill(fd, FILE_SIZE_A);
    fdsA.push(fd);
    if (i % 50 === 49) {
      await turn(); // let a stop signal in
      stop();
    }
  }
  const fdB = openNew(p.b);
  const bBytes = volumeBytes(pages);
  for (let off = 0; off < bBytes; off += zeros.length) {
    fs.writeSync(fdB, zeros, 0, Math.min(zeros.length, bBytes - off), off);
    if (off % (16 * zeros.length) === 0) {
      await turn();
      stop();
    }
  }
  fs.fsyncSync(fdB);
  const fdC = openNew(p.c);
  fill(fdC, pages * PAGE_SIZE);
  const dir = fs.openSync(workDir, 'r');
  fs.fsyncSync(dir);
  fs.closeSync(dir);
  return { fdsA, fdB, fdC, all };
}

/** The child's view of the parent's files: opened again by name. */
function openFiles(workDir: string, pages: number): Files {
  const p = pathsOf(workDir, pages);
  const all: number[] = [];
  const open = (path: string): number => {
    const n = fs.openSync(path, fs.constants.O_RDWR);
    all.push(n);
    return n;
  };
  return { fdsA: p.a.map(open), fdB: open(p.b), fdC: open(p.c), all };
}

function closeFiles(files: Files | null): void {
  for (const n of files?.all ?? []) {
    try {
      fs.closeSync(n);
    } catch {
      // already closed or the process is leaving: nothing to keep
    }
  }
}

class Pages {
  readonly sab: SharedArrayBuffer;
  readonly views: Buffer[];
  readonly #words: Uint32Array;
  constructor(readonly count: number) {
    this.sab = new SharedArrayBuffer(count * PAGE_SIZE);
    this.views = Array.from({ length: count }, (_, i) => Buffer.from(this.sab, i * PAGE_SIZE, PAGE_SIZE).fill(i & 0xff));
    this.#words = new Uint32Array(this.sab);
  }
  /** New content for a run: a stamp and the page number at the start of every page. */
  stamp(stamp: number): void {
    const perPage = PAGE_SIZE / 4;
    for (let i = 0; i < this.count; i++) {
      this.#words[i * perPage] = stamp >>> 0;
      this.#words[i * perPage + 1] = i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Executors: one per candidate, each making the calls of a phase its own way

interface Executor {
  write(items: readonly Item[]): Promise<void>;
  sync(op: SyncOp, items: readonly Item[]): Promise<void>;
}

function shortWrite(syscall: string, n: number, want: number): Error {
  return new Error(`${syscall} wrote ${n} of ${want} bytes`);
}

function asyncWrite(pages: Pages, item: Item): Promise<void> {
  return new Promise((resolve, reject) => {
    if (item.pageCount === 1) {
      fs.write(item.fd, pages.views[item.firstPage]!, 0, PAGE_SIZE, item.offset, (err, n) =>
        err ? reject(err) : n !== PAGE_SIZE ? reject(shortWrite('pwrite', n, PAGE_SIZE)) : resolve(),
      );
    } else {
      const want = item.pageCount * PAGE_SIZE;
      fs.writev(item.fd, pages.views.slice(item.firstPage, item.firstPage + item.pageCount), item.offset, (err, n) =>
        err ? reject(err) : n !== want ? reject(shortWrite('pwritev', n, want)) : resolve(),
      );
    }
  });
}

function asyncSync(op: SyncOp, item: Item): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err: NodeJS.ErrnoException | null): void => (err ? reject(err) : resolve());
    if (op === 'fsync') fs.fsync(item.fd, cb);
    else fs.fdatasync(item.fd, cb);
  });
}

function asyncExecutor(pages: Pages, inFlight: number): Executor {
  return {
    write: (items) => forEachInFlight(items, inFlight, (item) => asyncWrite(pages, item)),
    sync: (op, items) => forEachInFlight(items, inFlight, (item) => asyncSync(op, item)),
  };
}

interface SyncCalls {
  pwrite(fd: number, buf: Uint8Array, offset: number): void;
  pwritev(fd: number, bufs: readonly Uint8Array[], offset: number): void;
  fsync(fd: number): void;
  fdatasync(fd: number): void;
}

const fsSyncCalls: SyncCalls = {
  pwrite: (n, buf, offset) => {
    const w = fs.writeSync(n, buf, 0, buf.length, offset);
    if (w !== buf.length) throw shortWrite('pwrite', w, buf.length);
  },
  pwritev: (n, bufs, offset) => {
    const want = bufs.reduce((s, b) => s + b.length, 0);
    const w = fs.writevSync(n, bufs as Uint8Array[], offset);
    if (w !== want) throw shortWrite('pwritev', w, want);
  },
  fsync: (n) => fs.fsyncSync(n),
  fdatasync: (n) => fs.fdatasyncSync(n),
};

/** Synchronous calls on the main thread; with `yieldMs`, a turn of the event loop whenever that long has passed. */
function syncExecutor(pages: Pages, calls: SyncCalls, yieldMs: number | null): Executor {
  const each = async (items: readonly Item[], call: (item: Item) => void): Promise<void> => {
    let slice = performance.now();
    for (const item of items) {
      call(item);
      if (yieldMs !== null && performance.now() - slice >= yieldMs) {
        await turn();
        slice = performance.now();
      }
    }
  };
  return {
    write: (items) =>
      each(items, (item) =>
        item.pageCount === 1
          ? calls.pwrite(item.fd, pages.views[item.firstPage]!, item.offset)
          : calls.pwritev(item.fd, pages.views.slice(item.firstPage, item.firstPage + item.pageCount), item.offset),
      ),
    sync: (op, items) => each(items, (item) => (op === 'fsync' ? calls.fsync(item.fd) : calls.fdatasync(item.fd))),
  };
}

/** Worker threads making synchronous calls; see io-candidates-worker.ts for the protocol. */
class WorkerPool {
  readonly #workers: Worker[] = [];
  readonly #control: Int32Array;
  readonly #items: Float64Array;
  #seq = 0;
  #pending: { seq: number; remaining: number; error: string | null; resolve: () => void; reject: (e: Error) => void } | null = null;

  constructor(size: number, pages: Pages, maxItems: number) {
    const shared: WorkerShared = {
      control: new SharedArrayBuffer(4),
      items: new SharedArrayBuffer(maxItems * 4 * 8),
      pages: pages.sab,
    };
    this.#control = new Int32Array(shared.control);
    this.#items = new Float64Array(shared.items);
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./io-candidates-worker.js', import.meta.url), { workerData: shared });
      w.on('message', (m: WorkerReply) => this.#reply(m));
      w.on('error', (err) => this.#fail(`worker ${i}: ${err.message}`));
      w.on('exit', (code) => this.#fail(`worker ${i} exited (${code})`));
      this.#workers.push(w);
    }
  }

  #reply(m: WorkerReply): void {
    const p = this.#pending;
    if (!p || p.seq !== m.seq) return;
    if ('error' in m) p.error ??= m.error;
    if (--p.remaining > 0) return;
    this.#pending = null;
    if (p.error !== null) p.reject(new Error(p.error));
    else p.resolve();
  }

  #fail(message: string): void {
    const p = this.#pending;
    this.#pending = null;
    p?.reject(new Error(message));
  }

  run(op: WorkerBatch['op'], items: readonly Item[], workers: number, via: 'fs' | 'koffi'): Promise<void> {
    if (this.#pending) return Promise.reject(new Error('a worker batch is already running'));
    items.forEach((item, i) => {
      this.#items[i * 4] = item.fd;
      this.#items[i * 4 + 1] = item.offset;
      this.#items[i * 4 + 2] = item.firstPage;
      this.#items[i * 4 + 3] = item.pageCount;
    });
    Atomics.store(this.#control, 0, 0);
    const seq = ++this.#seq;
    const n = Math.min(workers, this.#workers.length, items.length);
    if (n === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#pending = { seq, remaining: n, error: null, resolve, reject };
      const batch: WorkerBatch = { seq, op, n: items.length, via };
      for (let i = 0; i < n; i++) this.#workers[i]!.postMessage(batch);
    });
  }

  async close(): Promise<void> {
    const ws = this.#workers.splice(0);
    for (const w of ws) w.removeAllListeners('exit');
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

function workerExecutor(pool: WorkerPool, workers: number, via: 'fs' | 'koffi'): Executor {
  return {
    write: (items) => pool.run('write', items, workers, via),
    sync: (op, items) => pool.run(op, items, workers, via),
  };
}

// ---------------------------------------------------------------------------------------------
// Measuring

async function measure(exec: Executor, plan: ShapePlan): Promise<Sample> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // The histogram records the gap between two ticks of its 1 ms timer, from the second tick
  // on: wait for a few, or a stall right at the start would go unrecorded.
  await sleep(4);
  const t0 = performance.now();
  await exec.write(plan.write);
  const t1 = performance.now();
  await exec.sync(plan.syncOp, plan.sync);
  const t2 = performance.now();
  // Let the histogram's timer fire once more: a stall at the very end is recorded only then.
  await sleep(5);
  h.disable();
  return { writeMs: t1 - t0, syncMs: t2 - t1, totalMs: t2 - t0, stallMs: h.max / 1e6 };
}

interface Context {
  pages: number;
  iovMax: number;
  files: Files;
  pageData: Pages;
  stampBase: number;
  check: () => void;
}

async function measureCandidate(ctx: Context, exec: Executor, round: number, salt: number): Promise<Partial<Record<ShapeId, Sample>>> {
  const out: Partial<Record<ShapeId, Sample>> = {};
  for (const shape of SHAPES) {
    ctx.check();
    ctx.pageData.stamp(ctx.stampBase + round * 1000 + salt);
    out[shape] = await measure(exec, planShape(shape, ctx.files, ctx.pages, ctx.iovMax, round + salt));
  }
  return out;
}

function findIovMax(libc: Libc | null): { value: number; source: string } {
  const viaSysconf = libc?.iovMax();
  if (viaSysconf) return { value: viaSysconf, source: 'sysconf(_SC_IOV_MAX) through koffi' };
  try {
    const v = Number(execFileSync('getconf', ['IOV_MAX'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim());
    if (Number.isSafeInteger(v) && v > 0) return { value: v, source: 'getconf IOV_MAX' };
  } catch {
    // fall through
  }
  return { value: 1024, source: 'assumed (Linux UIO_MAXIOV; neither sysconf nor getconf answered)' };
}

// ---------------------------------------------------------------------------------------------
// The children: the async candidates under other libuv settings (CHILD_ENV)

interface ChildRequest {
  round: number;
}
interface ChildEnv {
  uvThreadpoolSize: string | null;
  uvUseIoUring: string | null;
  /** io_uring instances open in the child after the round (anon_inode:[io_uring] descriptors): > 0 when libuv uses one. */
  ioUringRings: number | null;
}
type ChildMessage = { ready: true } | { round: number; samples: RoundSamples; env: ChildEnv } | { error: string };

/** Descriptors of this process that are io_uring instances (Linux /proc), null where /proc says nothing. */
function ioUringRings(): number | null {
  try {
    let n = 0;
    for (const name of fs.readdirSync('/proc/self/fd')) {
      try {
        if (fs.readlinkSync(`/proc/self/fd/${name}`).includes('io_uring')) n++;
      } catch {
        // closed meanwhile
      }
    }
    return n;
  } catch {
    return null;
  }
}

function childEnv(): ChildEnv {
  return { uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? null, uvUseIoUring: process.env.UV_USE_IO_URING ?? null, ioUringRings: ioUringRings() };
}

async function runChild(opts: IoCandidatesOptions, runtime: ChildRuntime): Promise<void> {
  // The parent owns the files and removes them; a stop signal here only ends this process.
  onStopSignals((signal) => process.exit(signalExitCode(signal)));
  const send = (m: ChildMessage): void => void process.send!(m);
  if (!opts.dir) throw new UsageError('--child needs --dir (the parent passes its work directory)');
  const files = openFiles(opts.dir, opts.pages);
  const pageData = new Pages(opts.pages);
  const iovMax = findIovMax(loadLibc().libc).value;
  const mine = candidates().filter((c): c is Extract<Candidate, { kind: 'async' }> => c.kind === 'async' && c.runtime === runtime);
  const ctx: Context = { pages: opts.pages, iovMax, files, pageData, stampBase: runtime === 'uv16' ? 0x40000000 : 0x60000000, check: () => undefined };
  process.on('disconnect', () => {
    closeFiles(files);
    process.exit(0);
  });
  process.on('message', (req: ChildRequest) => {
    void (async () => {
      try {
        const samples: RoundSamples = {};
        for (const c of rotate(mine, req.round)) samples[c.id] = await measureCandidate(ctx, asyncExecutor(pageData, c.inFlight), req.round, c.inFlight);
        send({ round: req.round, samples, env: childEnv() });
      } catch (err) {
        send({ error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });
  send({ ready: true });
}

class Child {
  readonly #child: ChildProcess;
  readonly #name: string;
  #waiting: { resolve: (m: ChildMessage) => void; reject: (e: Error) => void } | null = null;
  #exited: string | null = null;
  /** What the child reported of its environment after its last round. */
  env: ChildEnv | null = null;

  constructor(
    readonly runtime: ChildRuntime,
    workDir: string,
    pages: number,
  ) {
    this.#name = `the ${Object.entries(CHILD_ENV[runtime]).map(([k, v]) => `${k}=${v}`).join(' ')} child`;
    this.#child = fork(fileURLToPath(import.meta.url), ['--child', runtime, '--dir', workDir, '--pages', String(pages)], {
      env: { ...process.env, ...CHILD_ENV[runtime] },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (m: ChildMessage) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.resolve(m);
    });
    this.#child.on('exit', (code, signal) => {
      this.#exited = `${this.#name} exited (${signal ?? code})`;
      const w = this.#waiting;
      this.#waiting = null;
      w?.reject(new Error(this.#exited));
    });
  }

  #next(): Promise<ChildMessage> {
    if (this.#exited) return Promise.reject(new Error(this.#exited));
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  async ready(): Promise<void> {
    const m = await this.#next();
    if ('error' in m) throw new Error(`${this.#name}: ${m.error}`);
  }

  async round(round: number): Promise<RoundSamples> {
    const reply = this.#next();
    this.#child.send({ round } satisfies ChildRequest);
    const m = await reply;
    if ('error' in m) throw new Error(`${this.#name}: ${m.error}`);
    if (!('samples' in m) || m.round !== round) throw new Error(`${this.#name}: unexpected reply`);
    const want = CHILD_ENV[this.runtime];
    if (m.env.uvThreadpoolSize !== want.UV_THREADPOOL_SIZE || m.env.uvUseIoUring !== want.UV_USE_IO_URING) {
      throw new Error(`${this.#name} did not start with its settings (${JSON.stringify(m.env)})`);
    }
    this.env = m.env;
    return m.samples;
  }

  kill(): void {
    if (this.#exited === null) this.#child.kill('SIGTERM');
  }

  async close(): Promise<void> {
    if (this.#exited !== null) return;
    const gone = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    if (this.#child.connected) this.#child.disconnect();
    else this.#child.kill('SIGTERM');
    await gone;
  }
}

// ---------------------------------------------------------------------------------------------
// The parent: set up, run the rounds, report

interface Result {
  candidate: string;
  group: number;
  label: string;
  shape: ShapeId;
  samples: Sample[];
  writeMs: Summary;
  syncMs: Summary;
  totalMs: Summary;
  stallMs: Summary;
  ratioToAwaitedOneByOne: { write: number; sync: number; total: number };
}

function roundSummary(s: Summary): Summary {
  return { median: roundMs(s.median), min: roundMs(s.min), max: roundMs(s.max) };
}

function results(list: readonly Candidate[], samples: Map<string, Map<ShapeId, Sample[]>>): Result[] {
  const out: Result[] = [];
  for (const shape of SHAPES) {
    const base = samples.get('async-1')?.get(shape) ?? [];
    const baseWrite = median(base.map((s) => s.writeMs));
    const baseSync = median(base.map((s) => s.syncMs));
    const baseTotal = median(base.map((s) => s.totalMs));
    for (const c of list) {
      const ss = samples.get(c.id)?.get(shape) ?? [];
      if (ss.length === 0) continue;
      const w = summarize(ss.map((s) => s.writeMs));
      const y = summarize(ss.map((s) => s.syncMs));
      const t = summarize(ss.map((s) => s.totalMs));
      out.push({
        candidate: c.id,
        group: c.group,
        label: c.label,
        shape,
        samples: ss.map((s) => ({ writeMs: roundMs(s.writeMs), syncMs: roundMs(s.syncMs), totalMs: roundMs(s.totalMs), stallMs: roundMs(s.stallMs) })),
        writeMs: roundSummary(w),
        syncMs: roundSummary(y),
        totalMs: roundSummary(t),
        stallMs: roundSummary(summarize(ss.map((s) => s.stallMs))),
        ratioToAwaitedOneByOne: {
          write: Math.round(ratio(w.median, baseWrite) * 1000) / 1000,
          sync: Math.round(ratio(y.median, baseSync) * 1000) / 1000,
          total: Math.round(ratio(t.median, baseTotal) * 1000) / 1000,
        },
      });
    }
  }
  return out;
}

function ms(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function x(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}x` : '-';
}

function markdown(rs: readonly Result[]): string {
  const lines: string[] = [];
  for (const shape of SHAPES) {
    const rows = rs.filter((r) => r.shape === shape);
    if (rows.length === 0) continue;
    lines.push('', `${SHAPE_LABELS[shape]} (medians, ms; ratio to (1))`, '');
    lines.push('| (n) candidate | write | sync | total | longest stall (median / max) |', '|---|---:|---:|---:|---:|');
    for (const r of rows) {
      const q = r.ratioToAwaitedOneByOne;
      lines.push(
        `| (${r.group}) ${r.label} | ${ms(r.writeMs.median)} (${x(q.write)}) | ${ms(r.syncMs.median)} (${x(q.sync)}) | ${ms(r.totalMs.median)} (${x(q.total)}) | ${ms(r.stallMs.median)} / ${ms(r.stallMs.max)} |`,
      );
    }
  }
  // The compact view: totals per shape and the worst stall anywhere.
  lines.push('', 'Summary: total ms per shape (median), longest main-thread stall over all shapes and runs', '');
  lines.push('| (n) candidate | A write | A sync | A total | B total | C total | C1 total | stall max |', '|---|---:|---:|---:|---:|---:|---:|---:|');
  const ids = [...new Set(rs.map((r) => r.candidate))];
  for (const id of ids) {
    const of = (s: ShapeId) => rs.find((r) => r.candidate === id && r.shape === s);
    const first = rs.find((r) => r.candidate === id)!;
    const stall = Math.max(...rs.filter((r) => r.candidate === id).map((r) => r.stallMs.max));
    lines.push(
      `| (${first.group}) ${first.label} | ${ms(of('A')?.writeMs.median ?? NaN)} | ${ms(of('A')?.syncMs.median ?? NaN)} | ${ms(of('A')?.totalMs.median ?? NaN)} | ${ms(of('B')?.totalMs.median ?? NaN)} | ${ms(of('C')?.totalMs.median ?? NaN)} | ${ms(of('C1')?.totalMs.median ?? NaN)} | ${ms(stall)} |`,
    );
  }
  return lines.join('\n');
}

async function runParent(opts: IoCandidatesOptions): Promise<void> {
  const baseDir = opts.dir ?? tmpdir();
  let st: fs.Stats;
  try {
    st = fs.statSync(baseDir);
  } catch (err) {
    throw new UsageError(`--dir '${baseDir}': ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!st.isDirectory()) throw new UsageError(`--dir '${baseDir}' is not a directory`);

  const startedAt = new Date();
  const progress = (text: string): void => void process.stderr.write(`${TOOL}: ${text}\n`);
  let workDir: string | null = null;
  let interrupted: StopSignal | null = null;
  const children: Child[] = [];
  const removeWorkDir = (): void => {
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  };
  const stopListening = onStopSignals((signal) => {
    if (interrupted !== null) {
      // Second signal: no waiting for the current step.
      let problem = `interrupted again (${signal}); temporary files removed without finishing the current step`;
      try {
        removeWorkDir();
      } catch (err) {
        problem = `interrupted again (${signal}); could not remove ${workDir}: ${err instanceof Error ? err.message : String(err)}`;
      }
      for (const c of children) c.kill();
      report(new Failure('INTERRUPTED', signalExitCode(signal), problem), opts.json);
      process.exit(signalExitCode(signal));
    }
    interrupted = signal;
    for (const c of children) c.kill();
  });
  const check = (): void => {
    if (interrupted !== null) throw new Failure('INTERRUPTED', signalExitCode(interrupted), `interrupted (${interrupted}); temporary files removed`);
  };

  let files: Files | null = null;
  let pool: WorkerPool | null = null;
  try {
    workDir = fs.mkdtempSync(join(baseDir, 'lamstore-io-candidates-'));
    const probe = loadLibc();
    const libc = probe.libc;
    const iov = findIovMax(libc);
    const list = candidates().filter((c) => libc !== null || !(c.kind === 'koffi' || (c.kind === 'workers' && c.via === 'koffi')));
    const fsType = fileSystemType(workDir);
    progress(`preparing ${opts.pages} files of 64 KiB, a ${volumeBytes(opts.pages) / 2 ** 20} MiB file and a ${(opts.pages * PAGE_SIZE) / 2 ** 20} MiB file in ${workDir}`);
    files = await createFiles(workDir, opts.pages, check);
    const latency = await fdatasyncLatency(workDir, 50);
    check();
    const pageData = new Pages(opts.pages);
    const ctx: Context = { pages: opts.pages, iovMax: iov.value, files, pageData, stampBase: 0, check };
    pool = new WorkerPool(Math.max(...list.map((c) => (c.kind === 'workers' ? c.workers : 0))), pageData, opts.pages);
    for (const runtime of ['uv16', 'uring'] as const) {
      if (!list.some((c) => c.kind === 'async' && c.runtime === runtime)) continue;
      const c = new Child(runtime, workDir, opts.pages);
      children.push(c);
      await c.ready();
      check();
    }

    const executors = new Map<string, Executor>();
    for (const c of list) {
      if (c.kind === 'async' && c.runtime === 'main') executors.set(c.id, asyncExecutor(pageData, c.inFlight));
      else if (c.kind === 'sync') executors.set(c.id, syncExecutor(pageData, fsSyncCalls, c.yieldMs));
      else if (c.kind === 'koffi') executors.set(c.id, syncExecutor(pageData, libc!, null));
      else if (c.kind === 'workers') executors.set(c.id, workerExecutor(pool, c.workers, c.via));
    }
    // One unit per candidate of this process, one per child (its four); the order rotates by round.
    const units: (string | Child)[] = [];
    for (const c of list) {
      if (c.kind === 'async' && c.runtime !== 'main') {
        const ch = children.find((x) => x.runtime === c.runtime)!;
        if (!units.includes(ch)) units.push(ch);
      } else units.push(c.id);
    }
    const samples = new Map<string, Map<ShapeId, Sample[]>>();
    const keep = (id: string, byShape: Partial<Record<ShapeId, Sample>>): void => {
      let m = samples.get(id);
      if (!m) samples.set(id, (m = new Map()));
      for (const shape of SHAPES) {
        const s = byShape[shape];
        if (s) m.set(shape, [...(m.get(shape) ?? []), s]);
      }
    };
    const load: number[] = [loadavg()[0]!];
    for (let round = 0; round <= opts.runs; round++) {
      const t0 = performance.now();
      for (const [salt, unit] of rotate(units, round).entries()) {
        check();
        if (unit instanceof Child) {
          const got = await unit.round(round).catch(async (err: unknown) => {
            await sleep(50); // a signal to the whole process group reaches the child first at times
            check();
            throw err;
          });
          if (round > 0) for (const [id, byShape] of Object.entries(got)) keep(id, byShape);
        } else {
          const byShape = await measureCandidate(ctx, executors.get(unit)!, round, salt);
          if (round > 0) keep(unit, byShape);
        }
      }
      load.push(loadavg()[0]!);
      progress(`${round === 0 ? 'warm-up run' : `run ${round}/${opts.runs}`} done in ${((performance.now() - t0) / 1000).toFixed(1)} s (load average ${loadavg()[0]!.toFixed(2)})`);
    }
    check();
    const rs = results(list, samples);
    const c0 = cpus();
    const machine = {
      cpus: c0.length,
      cpuModel: c0[0]?.model.trim() ?? 'unknown',
      memoryBytes: totalmem(),
      platform: platform(),
      kernel: release(),
      node: process.version,
      fsType,
      libuv: process.versions.uv,
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
      uvUseIoUring: process.env.UV_USE_IO_URING ?? 'unset (off in Node 20)',
      loadAverage1m: { atStart: load[0], median: median(load), max: Math.max(...load) },
      fdatasync8KiBMs: latency,
    };
    const finishedAt = new Date();
    if (opts.json) {
      const doc = {
        tool: `lamstore ${TOOL}`,
        formatVersion: 1,
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        options: { dir: baseDir, runs: opts.runs, pages: opts.pages, warmUpRuns: 1 },
        machine,
        iovMax: iov,
        koffi: libc ? { available: true } : { available: false, reason: (probe as { reason: string }).reason },
        children: children.map((c) => ({ runtime: c.runtime, env: c.env })),
        shapes: SHAPE_LABELS,
        candidates: list,
        results: rs,
      };
      process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    } else {
      const out = [
        `I/O candidates: medians of ${opts.runs} runs (after 1 warm-up run), N = ${opts.pages} pages of 8 KiB, ${startedAt.toISOString()}, ${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s`,
        `Machine: ${machine.cpus} x ${machine.cpuModel}, ${(machine.memoryBytes / 2 ** 30).toFixed(0)} GiB, ${machine.platform} ${machine.kernel}, Node ${machine.node}; ${fsType} under ${baseDir}`,
        `Load average (1 min) at start ${load[0]!.toFixed(2)}, median over runs ${median(load).toFixed(2)}, max ${Math.max(...load).toFixed(2)}; fdatasync of an 8 KiB overwrite: median ${latency.median} ms (min ${latency.min}, max ${latency.max})`,
        `libuv ${machine.libuv}: pool ${machine.uvThreadpoolSize} and UV_USE_IO_URING ${machine.uvUseIoUring} here; ${children
          .map((c) => `${c.runtime} child: pool ${c.env?.uvThreadpoolSize}, UV_USE_IO_URING ${c.env?.uvUseIoUring}, io_uring instances ${c.env?.ioUringRings ?? 'unknown'}`)
          .join('; ')}`,
        `IOV_MAX ${iov.value} (${iov.source}); koffi: ${libc ? 'loaded' : (probe as { reason: string }).reason}`,
        markdown(rs),
      ];
      process.stdout.write(`${out.join('\n')}\n`);
    }
  } finally {
    for (const c of children) await c.close().catch(() => undefined);
    await pool?.close().catch(() => undefined);
    closeFiles(files);
    removeWorkDir();
    stopListening();
  }
}

function report(f: Failure, json: boolean): void {
  process.stderr.write(`${TOOL}: ${f.message}\n`);
  if (json) process.stdout.write(`${JSON.stringify({ error: { code: f.code, message: f.message } }, null, 2)}\n`);
}

async function main(): Promise<void> {
  let opts: IoCandidatesOptions;
  const json = process.argv.includes('--json');
  try {
    opts = parseIoCandidatesArgs(process.argv.slice(2));
  } catch (err) {
    report(new Failure('USAGE', 2, err instanceof Error ? err.message : String(err)), json);
    process.stderr.write(`${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  try {
    if (opts.child) await runChild(opts, opts.child);
    else await runParent(opts);
  } catch (err) {
    const f =
      err instanceof Failure
        ? err
        : err instanceof UsageError
          ? new Failure('USAGE', 2, err.message)
          : new Failure('FAILED', 1, err instanceof Error ? err.message : String(err));
    report(f, opts.json);
    if (opts.child) process.exit(f.exitCode);
    process.exitCode = f.exitCode;
  }
}

await main();
