/**
 * Where a checkpoint's time goes: one storage (md or volume), R relations x P dirty pages, a few
 * rounds, and for each checkpoint its write and sync phase broken down into
 *  - wall time, main-thread busy and idle time (event-loop utilisation: idle = blocked in the
 *    poll phase waiting for a libuv completion),
 *  - FileIO calls by kind with their count and summed await time (call to resolution: pool
 *    queueing + the syscall + the hop back to the main thread), the libuv requests they are
 *    (RealIO.open is an open plus an fstat), the mean number in flight, and the serial round
 *    trips (calls issued while nothing else was in flight: each one is a full pool round trip
 *    the main thread sat out),
 *  - for the whole checkpoint, CPU and run-queue wait of the main thread and of the libuv pool
 *    threads (/proc/self/task/<tid>/schedstat, nanoseconds).
 * Stand-alone, for profiling work (BENCHMARKS.md "Where the time goes"); `lamstore bench` does
 * not run it. Run from the build (`npm run build`):
 *
 *   node dist/bench/checkpoint-profile.js [--storage md|volume] [--relations 1000] [--pages 1]
 *        [--rounds 5] [--dir DIR] [--json]
 *   node dist/bench/checkpoint-profile.js --strace ...   same run under `strace -f -ttt -T`:
 *        syscall counts and time per phase, per thread group (main, libuv pool)
 *   node dist/bench/checkpoint-profile.js --cpu-prof ... same run under `node --cpu-prof`:
 *        main-thread samples per phase by category (idle, lamstore JS, node internals, GC...);
 *        with --top N, the N functions with the most self time per phase instead
 *
 * Phase boundaries come from the engine's own clock (an injected Clock that records every
 * now()): CheckpointStats.writeMs and syncMs are differences of two of those readings, so the
 * readings with exactly those differences are the phase boundaries. Both wrappers (Clock and
 * FileIO) cost about a microsecond per call; with --strace each clock reading also makes one
 * marker syscall (access("/.lamstore-mark/...")), which strace timing absorbs anyway.
 *
 * Reads /proc and, with --strace, writes marker syscalls through node:fs directly: these are
 * not data files and must not be counted by FileIO (bench/README.md lists the exceptions).
 */
import { spawnSync } from 'node:child_process';
import { access, accessSync, readFileSync, readdirSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Engine, ForkNumber, RealIO, systemClock, type Clock, type FileIO, type FileWrite, type Relation, type WriteEachResult } from '../engine/index.js';
import { ForwardingIO, makeTempDir, removeTree, type FileIOMethod } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { matrixVolumeSizeBytes } from './matrix.js';
import { patternPage } from './page-path-measure.js';
import { schedstat, type ThreadTimes } from './schedstat.js';
import { median } from './stats.js';

type Storage = 'md' | 'volume';
type Phase = 'write' | 'sync' | 'other';
const PHASES: Phase[] = ['write', 'sync', 'other'];

interface Options {
  storage: Storage;
  relations: number;
  pages: number;
  rounds: number;
  dir: string;
  json: boolean;
  marks: boolean;
}

// ---------------------------------------------------------------- instrumentation

interface CallRecord {
  kind: string;
  t0: number;
  t1: number;
  /** Calls in flight when this one was issued (0: a serial round trip). */
  inFlightAtStart: number;
}

/**
 * libuv requests per FileIO call of RealIO (engine/io/real-io.ts): open also fstats; a
 * pwriteEach of pool pages is one message to the sync thread, no libuv request.
 */
const UV_REQUESTS: Record<string, number> = { open: 2, pwriteEach: 0 };

/**
 * A FileIO that records every call's kind, start and end while `recording`. It has pwriteEach
 * (FileIO C9) where the inner FileIO has it, so the engine's writes take the path they take in
 * the bench (RealIO: the sync thread), recorded as one call each.
 */
class TracingIO extends ForwardingIO {
  recording = false;
  calls: CallRecord[] = [];
  #inFlight = 0;
  declare pwriteEach?: (writes: readonly FileWrite[]) => Promise<WriteEachResult>;

  constructor(inner: FileIO) {
    super(inner);
    if (inner.pwriteEach) this.pwriteEach = (writes) => this.#record('pwriteEach', () => inner.pwriteEach!(writes));
  }

  protected override around<T>(method: FileIOMethod, call: () => Promise<T>): Promise<T> {
    return this.#record(method, call);
  }

  async #record<T>(kind: string, call: () => Promise<T>): Promise<T> {
    if (!this.recording) return call();
    const rec: CallRecord = { kind, t0: performance.now(), t1: 0, inFlightAtStart: this.#inFlight };
    this.#inFlight++;
    try {
      return await call();
    } finally {
      this.#inFlight--;
      rec.t1 = performance.now();
      this.calls.push(rec);
    }
  }

  /** Writeback hints end here: the profile measures the checkpoint without them, as it always has. */
  override async writeback(): Promise<void> {}
  override get writebackSupported(): boolean {
    return false;
  }
}

interface ClockReading {
  t: number;
  /** Event-loop idle and active time (ms since start) at this reading. */
  idle: number;
  active: number;
  /** CPU and run-queue time of the main thread and the pool threads, for the first few readings only. */
  threads?: { main: ThreadTimes; pool: ThreadTimes };
}

/** Readings that also take thread times: the phase boundaries writeStart and syncStart are among them. */
const THREAD_READINGS = 4;

/** The engine's clock, recording every reading (with the loop's idle/active time) while `recording`. */
class RecordingClock implements Clock {
  recording = false;
  readings: ClockReading[] = [];
  constructor(
    private readonly marks: boolean,
    private readonly pool: ReadonlySet<number>,
  ) {}
  now(): number {
    const t = performance.now();
    if (this.recording) {
      const e = performance.eventLoopUtilization();
      // Reading /proc costs about 40 us per thread: only at the first readings, where the write
      // phase begins and ends (the sync phase makes two readings per file).
      // Under strace (marks) /proc is not read: its syscalls would mix with the engine's.
      const threads = !this.marks && this.readings.length < THREAD_READINGS ? mainAndPool(this.pool) : undefined;
      this.readings.push({ t, idle: e.idle, active: e.active, threads });
      if (this.marks) mark(`clock-${this.readings.length - 1}`);
    }
    return t;
  }
  sleep(ms: number, o?: { background?: boolean }): Promise<void> {
    return systemClock.sleep(ms, o);
  }
}

/** A syscall strace shows with this label (the path does not exist; ENOENT is the point). */
function mark(label: string): void {
  try {
    accessSync(`/.lamstore-mark/${label}`);
  } catch {
    // ENOENT by design: only the syscall matters.
  }
}

function threadTimes(): Map<number, ThreadTimes> {
  const out = new Map<number, ThreadTimes>();
  for (const name of readdirSync('/proc/self/task')) out.set(Number(name), schedstat(Number(name)));
  return out;
}

function mainAndPool(pool: ReadonlySet<number>): { main: ThreadTimes; pool: ThreadTimes } {
  const sum: ThreadTimes = { cpu: 0, wait: 0, slices: 0 };
  for (const tid of pool) {
    const t = schedstat(tid);
    sum.cpu += t.cpu;
    sum.wait += t.wait;
    sum.slices += t.slices;
  }
  return { main: schedstat(process.pid), pool: sum };
}

/**
 * The libuv pool's threads. All of Node's threads are named "node" and the pool already runs
 * before this module does (the ESM loader reads files through it), so they are found by what
 * they do: requests issued one at a time (access(2) of a missing path) each wake a pool thread
 * from its condition variable, so every pool thread is scheduled dozens of times and the other
 * threads hardly at all. (A burst issued all at once would not do: a thread that finds the
 * queue non-empty never sleeps, and is scheduled once.)
 */
async function poolThreads(): Promise<Set<number>> {
  const before = threadTimes();
  const N = 400;
  for (let i = 0; i < N; i++) await new Promise<void>((resolve) => access('/.lamstore-pool-probe', () => resolve()));
  const after = threadTimes();
  const size = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const out = new Set<number>();
  for (const [tid, t] of after) {
    if (tid === process.pid) continue;
    const grew = t.slices - (before.get(tid)?.slices ?? 0);
    if (grew >= N / size / 4) out.add(tid);
  }
  if (out.size === 0) throw new Error('no libuv pool thread found');
  return out;
}

// ---------------------------------------------------------------- one checkpoint

interface PhaseBreakdown {
  wallMs: number;
  /** Event loop not idle: main-thread CPU plus time it was runnable but not running. */
  busyMs: number;
  idleMs: number;
  /** From schedstat; for the sync phase this includes the short tail after it (stats, unlinks). */
  mainCpuMs?: number;
  mainRunQueueMs?: number;
  poolCpuMs?: number;
  calls: Record<string, { count: number; awaitMs: number; medianMs: number }>;
  fileIoCalls: number;
  uvRequests: number;
  serialRoundTrips: number;
  meanInFlight: number;
}

interface CheckpointProfile {
  round: number;
  totalMs: number;
  writeMs: number;
  syncMs: number;
  buffersWritten: number;
  fsyncCalls: number;
  fdatasyncCalls: number;
  phases: Record<Phase, PhaseBreakdown>;
  /** Whole checkpoint, from schedstat. */
  mainCpuMs: number;
  mainRunQueueMs: number;
  poolCpuMs: number;
  poolRunQueueMs: number;
  otherCpuMs: number;
  /** Phase boundaries as hrtime microseconds (for --cpu-prof) and clock-reading indices (for --strace). */
  boundsUs: { start: number; writeStart: number; syncStart: number; syncEnd: number; end: number };
  boundsMarks: { writeStart: number; syncStart: number; syncEnd: number };
}

/** Indices i < j with readings[j] - readings[i] === d exactly (the checkpointer subtracts the same two numbers). */
function findPair(r: readonly ClockReading[], d: number, from: number): [number, number] {
  for (let i = from; i < r.length; i++) for (let j = i + 1; j < r.length; j++) if (r[j]!.t - r[i]!.t === d) return [i, j];
  throw new Error(`no two clock readings ${d} ms apart: the checkpointer no longer times its phases with the engine clock`);
}

function breakdown(calls: readonly CallRecord[], from: number, to: number, a: ClockReading, b: ClockReading): PhaseBreakdown {
  const mine = calls.filter((c) => c.t0 >= from && c.t0 < to);
  const byKind: PhaseBreakdown['calls'] = {};
  const lat = new Map<string, number[]>();
  let awaitSum = 0;
  for (const c of mine) {
    const d = c.t1 - c.t0;
    awaitSum += d;
    (lat.get(c.kind) ?? lat.set(c.kind, []).get(c.kind)!).push(d);
  }
  for (const [k, v] of lat) byKind[k] = { count: v.length, awaitMs: v.reduce((s, x) => s + x, 0), medianMs: median(v) };
  const wall = to - from;
  return {
    wallMs: wall,
    busyMs: b.active - a.active,
    idleMs: b.idle - a.idle,
    calls: byKind,
    fileIoCalls: mine.length,
    uvRequests: mine.reduce((s, c) => s + (UV_REQUESTS[c.kind] ?? 1), 0),
    serialRoundTrips: mine.filter((c) => c.inFlightAtStart === 0).length,
    meanInFlight: wall > 0 ? awaitSum / wall : 0,
  };
}

// ---------------------------------------------------------------- the run

function locator(r: number) {
  return { spcOid: 1663, dbOid: 5, relNumber: 20000 + r };
}

function stamp(page: Uint8Array, gen: number, r: number, b: number): void {
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  v.setUint32(16, gen, true);
  v.setUint32(20, r, true);
  v.setUint32(24, b, true);
}

async function profile(o: Options, pool: ReadonlySet<number>): Promise<CheckpointProfile[]> {
  const root = await makeTempDir(o.dir, 'lamstore-profile-');
  const io = new TracingIO(new RealIO());
  const clock = new RecordingClock(o.marks, pool);
  const R = o.relations;
  const P = o.pages;
  const blockSize = 8192;
  let engine: Engine | null = null;
  try {
    // As bench/matrix.ts M5: defaults, a pool that holds every page, no timed checkpoints, no ledger.
    engine = await Engine.open({
      dataDir: join(root, 'data'),
      blockSize,
      sharedBuffers: Math.max(16, R * P + 1024),
      checkpointTimeoutMs: 86_400_000,
      verifySync: false,
      io,
      clock,
      preload: o.storage === 'volume' ? [volumeExtension({ path: join(root, 'data', 'profile.lamvol'), create: { sizeBytes: matrixVolumeSizeBytes(R, P, blockSize) } })] : [],
    });
    const rels: Relation[] = [];
    const page = patternPage(blockSize, 0);
    for (let r = 0; r < R; r++) {
      const rel = engine.relation(locator(r), { storage: o.storage });
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < P; b++) await rel.extend(ForkNumber.MAIN, page);
      rels.push(rel);
    }
    await engine.checkpoint();

    const out: CheckpointProfile[] = [];
    // Round 0 warms up (JIT, fd cache state as in the bench's later rounds) and is not reported.
    for (let round = 0; round <= o.rounds; round++) {
      for (let r = 0; r < R; r++) {
        for (let b = 0; b < P; b++) {
          stamp(page, round + 1, r, b);
          await rels[r]!.write(ForkNumber.MAIN, b, page);
        }
      }
      io.calls = [];
      clock.readings = [];
      const thr0 = o.marks ? new Map<number, ThreadTimes>() : threadTimes();
      const hr0 = process.hrtime.bigint();
      const pn0 = performance.now();
      const elu0 = performance.eventLoopUtilization();
      if (o.marks) mark(`start-${round}`);
      io.recording = clock.recording = true;
      const st = await engine.checkpoint();
      io.recording = clock.recording = false;
      if (o.marks) mark(`end-${round}`);
      const pn1 = performance.now();
      const elu1 = performance.eventLoopUtilization();
      const thr1 = o.marks ? new Map<number, ThreadTimes>() : threadTimes();
      if (round === 0) continue;

      const rd = clock.readings;
      const [iw, is] = findPair(rd, st.writeMs, 0);
      const [, ie] = findPair(rd, st.syncMs, is);
      const first: ClockReading = { t: pn0, idle: elu0.idle, active: elu0.active };
      const last: ClockReading = { t: pn1, idle: elu1.idle, active: elu1.active };
      const w0 = rd[iw]!;
      const s0 = rd[is]!;
      const s1 = rd[ie]!;
      // "other": before the write phase (absorb, cycle bump) and after the sync phase (unlinks, stats).
      const phases: Record<Phase, PhaseBreakdown> = {
        write: breakdown(io.calls, w0.t, s0.t, w0, s0),
        sync: breakdown(io.calls, s0.t, s1.t, s0, s1),
        other: mergeOther(breakdown(io.calls, pn0, w0.t, first, w0), breakdown(io.calls, s1.t, pn1 + 1e-6, s1, last)),
      };
      const endThreads = o.marks ? undefined : mainAndPool(pool);
      const threadSplit = (a: ClockReading['threads'], b: ClockReading['threads'], into: PhaseBreakdown) => {
        if (!a || !b) return;
        into.mainCpuMs = (b.main.cpu - a.main.cpu) / 1e6;
        into.mainRunQueueMs = (b.main.wait - a.main.wait) / 1e6;
        into.poolCpuMs = (b.pool.cpu - a.pool.cpu) / 1e6;
      };
      threadSplit(w0.threads, s0.threads, phases.write);
      threadSplit(s0.threads, endThreads, phases.sync);
      let poolCpu = 0;
      let poolWait = 0;
      let otherCpu = 0;
      for (const [tid, t1] of thr1) {
        const t0 = thr0.get(tid) ?? { cpu: 0, wait: 0 };
        if (tid === process.pid) continue;
        if (!pool.has(tid)) otherCpu += t1.cpu - t0.cpu;
        else {
          poolCpu += t1.cpu - t0.cpu;
          poolWait += t1.wait - t0.wait;
        }
      }
      const none: ThreadTimes = { cpu: NaN, wait: NaN, slices: NaN };
      const m0 = thr0.get(process.pid) ?? none;
      const m1 = thr1.get(process.pid) ?? none;
      const toUs = (t: number) => Number(hr0 / 1000n) + (t - pn0) * 1000;
      out.push({
        round,
        totalMs: st.totalMs,
        writeMs: st.writeMs,
        syncMs: st.syncMs,
        buffersWritten: st.buffersWritten,
        fsyncCalls: st.fsyncCalls,
        fdatasyncCalls: st.fdatasyncCalls,
        phases,
        mainCpuMs: (m1.cpu - m0.cpu) / 1e6,
        mainRunQueueMs: (m1.wait - m0.wait) / 1e6,
        poolCpuMs: poolCpu / 1e6,
        poolRunQueueMs: poolWait / 1e6,
        otherCpuMs: otherCpu / 1e6,
        boundsUs: { start: toUs(pn0), writeStart: toUs(w0.t), syncStart: toUs(s0.t), syncEnd: toUs(s1.t), end: toUs(pn1) },
        boundsMarks: { writeStart: iw, syncStart: is, syncEnd: ie },
      });
    }
    return out;
  } finally {
    await engine?.close();
    await removeTree(root);
  }
}

function mergeOther(a: PhaseBreakdown, b: PhaseBreakdown): PhaseBreakdown {
  const calls: PhaseBreakdown['calls'] = { ...a.calls };
  for (const [k, v] of Object.entries(b.calls)) {
    const c = calls[k];
    calls[k] = c ? { count: c.count + v.count, awaitMs: c.awaitMs + v.awaitMs, medianMs: NaN } : v;
  }
  const wall = a.wallMs + b.wallMs;
  return {
    wallMs: wall,
    busyMs: a.busyMs + b.busyMs,
    idleMs: a.idleMs + b.idleMs,
    calls,
    fileIoCalls: a.fileIoCalls + b.fileIoCalls,
    uvRequests: a.uvRequests + b.uvRequests,
    serialRoundTrips: a.serialRoundTrips + b.serialRoundTrips,
    meanInFlight: wall > 0 ? (a.meanInFlight * a.wallMs + b.meanInFlight * b.wallMs) / wall : 0,
  };
}

// ---------------------------------------------------------------- summaries

function med(values: number[]): number {
  return median(values);
}

function summaryText(o: Options, ps: readonly CheckpointProfile[]): string {
  const R = o.relations;
  const pagesTotal = R * o.pages;
  const f = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const us = (ms: number, n: number) => f((ms * 1000) / n, 0);
  const lines: string[] = [];
  lines.push(`checkpoint profile: ${o.storage}, R=${R} P=${o.pages}, medians of ${ps.length} checkpoints`);
  lines.push(
    `total ${f(med(ps.map((p) => p.totalMs)))} ms (write ${f(med(ps.map((p) => p.writeMs)))}, sync ${f(med(ps.map((p) => p.syncMs)))}); ` +
      `buffers ${med(ps.map((p) => p.buffersWritten))}, fsync ${med(ps.map((p) => p.fsyncCalls))}, fdatasync ${med(ps.map((p) => p.fdatasyncCalls))}`,
  );
  lines.push(
    `threads (whole checkpoint): main CPU ${f(med(ps.map((p) => p.mainCpuMs)))} ms, main run-queue wait ${f(med(ps.map((p) => p.mainRunQueueMs)))} ms, ` +
      `libuv pool CPU ${f(med(ps.map((p) => p.poolCpuMs)))} ms, pool run-queue wait ${f(med(ps.map((p) => p.poolRunQueueMs)))} ms, other threads CPU ${f(med(ps.map((p) => p.otherCpuMs)))} ms`,
  );
  for (const ph of PHASES) {
    const x = ps.map((p) => p.phases[ph]);
    const wall = med(x.map((b) => b.wallMs));
    const busy = med(x.map((b) => b.busyMs));
    const idle = med(x.map((b) => b.idleMs));
    const per = ph === 'write' ? pagesTotal : R;
    const unit = ph === 'write' ? 'page' : 'file';
    lines.push(
      `${ph.padEnd(5)}: wall ${f(wall)} ms, main busy ${f(busy)} ms, idle ${f(idle)} ms` +
        (x[0]?.mainCpuMs !== undefined ? ` (main CPU ${f(med(x.map((b) => b.mainCpuMs!)))} ms, main run-queue wait ${f(med(x.map((b) => b.mainRunQueueMs!)))} ms, pool CPU ${f(med(x.map((b) => b.poolCpuMs!)))} ms)` : '') +
        '; ' +
        (ph === 'other' ? '' : `per ${unit}: wall ${us(wall, per)} us, busy ${us(busy, per)} us, idle ${us(idle, per)} us; `) +
        `FileIO calls ${med(x.map((b) => b.fileIoCalls))} (libuv requests ${med(x.map((b) => b.uvRequests))}), serial round trips ${med(x.map((b) => b.serialRoundTrips))}, mean in flight ${f(med(x.map((b) => b.meanInFlight)), 2)}`,
    );
    const kinds = [...new Set(x.flatMap((b) => Object.keys(b.calls)))].sort();
    for (const k of kinds) {
      const c = x.map((b) => b.calls[k] ?? { count: 0, awaitMs: 0, medianMs: NaN });
      lines.push(`         ${k.padEnd(9)} ${String(med(c.map((v) => v.count))).padStart(6)} calls, awaited ${f(med(c.map((v) => v.awaitMs)))} ms in all, median ${f(med(c.map((v) => v.medianMs)), 3)} ms each`);
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- --strace and --cpu-prof

interface StraceCall {
  pid: number;
  name: string;
  start: number;
  durUs: number;
  path?: string;
}

/** Parse `strace -f -ttt -T` output (with "<unfinished ...>"/"<... resumed>" pairs). */
function parseStrace(text: string): StraceCall[] {
  const out: StraceCall[] = [];
  const open = new Map<string, StraceCall>();
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const ts = Number(m[2]);
    const rest = m[3]!;
    const resumed = /^<\.\.\. (\w+) resumed>.*<(\d+\.\d+)>$/.exec(rest);
    if (resumed) {
      const c = open.get(`${pid}:${resumed[1]}`);
      if (c) {
        c.durUs = Number(resumed[2]) * 1e6;
        open.delete(`${pid}:${resumed[1]}`);
      }
      continue;
    }
    const call = /^(\w+)\((.*)$/.exec(rest);
    if (!call) continue;
    const c: StraceCall = { pid, name: call[1]!, start: ts, durUs: 0 };
    const path = /^[^"]*"([^"]*)"/.exec(call[2]!);
    if (path) c.path = path[1];
    if (rest.endsWith('<unfinished ...>')) open.set(`${pid}:${c.name}`, c);
    else {
      const d = /<(\d+\.\d+)>$/.exec(rest);
      if (d) c.durUs = Number(d[1]) * 1e6;
    }
    out.push(c);
  }
  return out.sort((a, b) => a.start - b.start);
}

function selfArgs(extra: string[]): string[] {
  const args = process.argv.slice(2).filter((a) => a !== '--strace' && a !== '--cpu-prof' && a !== '--json');
  return [fileURLToPath(import.meta.url), ...args, '--json', ...extra];
}

function runStrace(o: Options): string {
  const tmp = mkdtempSync(join(tmpdir(), 'lamstore-strace-'));
  try {
    const trace = join(tmp, 'trace.txt');
    const r = spawnSync('strace', ['-f', '-ttt', '-T', '-o', trace, process.execPath, ...selfArgs(['--marks'])], { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.error) throw new Error(`cannot run strace (${r.error.message}); install it (apt-get install strace)`);
    if (r.status !== 0) throw new Error(`strace run failed (${r.status}): ${r.stderr.trim().split('\n').pop()}`);
    const result = JSON.parse(r.stdout) as { pid: number; profiles: CheckpointProfile[] };
    const calls = parseStrace(readFileSync(trace, 'utf8'));
    const markAt = (label: string) => calls.find((c) => c.pid === result.pid && c.path === `/.lamstore-mark/${label}`)?.start;
    const lines: string[] = [`syscalls per checkpoint under strace -f (median of ${result.profiles.length}; times inflated by strace itself; main = thread ${result.pid}, pool = the others)`];
    const perPhase = new Map<string, Map<string, { n: number[]; us: number[] }>>();
    for (const p of result.profiles) {
      const s = markAt(`start-${p.round}`);
      const e = markAt(`end-${p.round}`);
      if (s === undefined || e === undefined) throw new Error(`marks of round ${p.round} not in the trace`);
      // Clock marks of this round, in order; the k-th is clock reading k.
      const clocks = calls.filter((c) => c.pid === result.pid && c.start > s && c.start < e && c.path?.startsWith('/.lamstore-mark/clock-'));
      const bound = (i: number) => clocks[i]!.start;
      const cuts: [Phase, number, number][] = [
        ['write', bound(p.boundsMarks.writeStart), bound(p.boundsMarks.syncStart)],
        ['sync', bound(p.boundsMarks.syncStart), bound(p.boundsMarks.syncEnd)],
      ];
      const counts = new Map<string, { n: number; us: number }>();
      for (const c of calls) {
        if (c.start <= s || c.start >= e || c.path?.startsWith('/.lamstore-mark/')) continue;
        const phase = cuts.find(([, a, b]) => c.start >= a && c.start < b)?.[0] ?? 'other';
        const who = c.pid === result.pid ? 'main' : 'pool';
        const key = `${phase}|${who}|${c.name}`;
        const v = counts.get(key) ?? { n: 0, us: 0 };
        v.n++;
        v.us += c.durUs;
        counts.set(key, v);
      }
      for (const [key, v] of counts) {
        const [phase, who, name] = key.split('|') as [string, string, string];
        const m = perPhase.get(`${phase}|${who}`) ?? new Map();
        const e2 = m.get(name) ?? { n: [], us: [] };
        e2.n.push(v.n);
        e2.us.push(v.us);
        m.set(name, e2);
        perPhase.set(`${phase}|${who}`, m);
      }
    }
    const rounds = result.profiles.length;
    for (const key of [...perPhase.keys()].sort()) {
      const m = perPhase.get(key)!;
      const items = [...m.entries()]
        .map(([name, v]) => {
          // Rounds where the call did not occur count as zero.
          while (v.n.length < rounds) {
            v.n.push(0);
            v.us.push(0);
          }
          return { name, n: median(v.n), ms: median(v.us) / 1000 };
        })
        .sort((a, b) => b.n - a.n);
      lines.push(`  ${key.replace('|', ' / ')}: ${items.map((i) => `${i.name} ${i.n} (${i.ms.toFixed(1)} ms)`).join(', ')}`);
    }
    return lines.join('\n');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

function category(fn: string, url: string): string {
  if (fn === '(idle)') return 'idle (waiting for libuv)';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'native (program)';
  if (/\/(engine|checkpointer|volume)\//.test(url)) return 'lamstore JS';
  if (/\/bench\//.test(url)) return 'bench script';
  if (/node_modules/.test(url)) return 'dependencies';
  if (/async_hooks|promise_hooks/.test(url)) return 'async context (AsyncLocalStorage)';
  if (url.startsWith('node:')) return 'node internals (fs wrappers, promises, timers)';
  if (url === '') return `native bindings (${fn || 'anonymous'})`;
  return 'other';
}

/** A frame as `function (file)`, for --top: which functions, not which kind of work. */
function frameName(fn: string, url: string): string {
  const file = url.split('/').slice(-2).join('/');
  return `${fn || '(anonymous)'}${file ? ` (${file})` : ''}`;
}

/** `top` > 0: the `top` functions by self time per phase instead of the categories. */
function runCpuProf(o: Options, top: number): string {
  const tmp = mkdtempSync(join(tmpdir(), 'lamstore-cpuprof-'));
  try {
    const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', tmp, '--cpu-prof-interval', '100', ...selfArgs([])], { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`--cpu-prof run failed (${r.status}): ${r.stderr.trim().split('\n').pop()}`);
    const result = JSON.parse(r.stdout) as { profiles: CheckpointProfile[] };
    const file = readdirSync(tmp).find((n) => n.endsWith('.cpuprofile'));
    if (!file) throw new Error('no .cpuprofile written');
    const prof = JSON.parse(readFileSync(join(tmp, file), 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    // Sample k covers the interval up to its timestamp (startTime + sum of deltas 0..k).
    const per = new Map<string, Map<string, number[]>>();
    for (const p of result.profiles) {
      const b = p.boundsUs;
      const acc = new Map<string, Map<string, number>>();
      let t = prof.startTime;
      for (let k = 0; k < prof.samples.length; k++) {
        const dt = prof.timeDeltas[k] ?? 0;
        t += dt;
        if (t < b.start || t > b.end) continue;
        const phase = t >= b.writeStart && t < b.syncStart ? 'write' : t >= b.syncStart && t < b.syncEnd ? 'sync' : 'other';
        const node = byId.get(prof.samples[k]!)!;
        const cat = top > 0 ? frameName(node.callFrame.functionName, node.callFrame.url) : category(node.callFrame.functionName, node.callFrame.url);
        const m = acc.get(phase) ?? new Map<string, number>();
        m.set(cat, (m.get(cat) ?? 0) + dt / 1000);
        acc.set(phase, m);
      }
      for (const [phase, m] of acc) {
        const pm = per.get(phase) ?? new Map<string, number[]>();
        for (const [cat, ms] of m) (pm.get(cat) ?? pm.set(cat, []).get(cat)!).push(ms);
        per.set(phase, pm);
      }
    }
    const n = result.profiles.length;
    const lines = [`main-thread CPU profile samples (100 us interval), ms per checkpoint, ${top > 0 ? `mean of ${n}, top ${top} functions by self time` : `median of ${n}`}`];
    for (const phase of PHASES) {
      const pm = per.get(phase);
      if (!pm) continue;
      const items = [...pm.entries()]
        .map(([cat, v]) => {
          while (v.length < n) v.push(0);
          // --top ranks functions: the mean keeps the ones sampled in only some checkpoints.
          return { cat, ms: top > 0 ? v.reduce((s, x) => s + x, 0) / n : median(v) };
        })
        .sort((a, b) => b.ms - a.ms);
      const total = items.reduce((s, i) => s + i.ms, 0);
      if (total === 0) continue;
      if (top > 0) {
        lines.push(`  ${phase} (${total.toFixed(1)} ms sampled):`);
        for (const i of items.slice(0, top)) lines.push(`    ${i.ms.toFixed(2).padStart(6)} ms  ${i.cat}`);
        continue;
      }
      lines.push(`  ${phase}: ${items.map((i) => `${i.cat} ${i.ms.toFixed(1)} (${((i.ms * 100) / total).toFixed(0)}%)`).join('; ')}`);
    }
    return lines.join('\n');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

function parseArgs(argv: string[]): Options & { strace: boolean; cpuProf: boolean; top: number } {
  const val = (name: string, dflt: string) => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
  };
  const int = (name: string, dflt: number) => {
    const v = Number(val(name, String(dflt)));
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive whole number`);
    return v;
  };
  const storage = val('--storage', 'md');
  if (storage !== 'md' && storage !== 'volume') throw new Error(`--storage must be md or volume, not '${storage}'`);
  return {
    storage,
    relations: int('--relations', 1000),
    pages: int('--pages', 1),
    rounds: int('--rounds', 5),
    dir: val('--dir', tmpdir()),
    json: argv.includes('--json'),
    marks: argv.includes('--marks'),
    strace: argv.includes('--strace'),
    cpuProf: argv.includes('--cpu-prof'),
    top: argv.includes('--top') ? int('--top', 15) : 0,
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.strace) {
    process.stdout.write(`${runStrace(o)}\n`);
    return;
  }
  if (o.cpuProf) {
    process.stdout.write(`${runCpuProf(o, o.top)}\n`);
    return;
  }
  const pool = await poolThreads();
  const profiles = await profile(o, pool);
  if (o.json) process.stdout.write(`${JSON.stringify({ options: o, pid: process.pid, poolThreads: pool.size, profiles })}\n`);
  else process.stdout.write(`${summaryText(o, profiles)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`checkpoint-profile: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
