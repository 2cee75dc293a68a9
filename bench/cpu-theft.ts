/**
 * What the machine takes from a thread while a checkpoint's I/O runs. A worker thread does
 * nothing but read the clock; every gap over GAP_MS between two readings is time it did not run.
 * Beside each gap it reads its own schedstat (/proc/thread-self/schedstat): if the kernel
 * counted the gap as the thread's own run time, with no run-queue wait, nothing else was
 * scheduled in its place: the time went to interrupt and softirq work charged to the thread
 * that happened to be on the CPU (or to the host, which a guest cannot see). That is what the
 * bench's "busy stretch" (matrix.ts M8) cannot tell from lamstore's own work, so this measures
 * it with no lamstore code on the thread at all.
 *
 * The loads run on the main thread, one after another, the raw segments row's calls (matrix.ts
 * M6) over `--files` files of `--pages` pages, round after round for `--seconds` each:
 *   idle     nothing (the machine at rest)
 *   fsync    pwritev of every file (IN_FLIGHT_DEFAULT in flight), then their fsyncs on the sync
 *            thread (RealIO.fsyncEach)
 *   hints    the same with a writeback hint per file between the two (sync_file_range on the
 *            sync thread, as md's checkpoint gives them); left out where RealIO has no writeback
 * and for each, the spinner's gaps, the block softirqs per CPU (/proc/softirqs BLOCK) and the
 * rounds made. Stand-alone (BENCHMARKS.md, "What the machine takes"); `lamstore bench` does
 * not run it:
 *
 *   node dist/bench/cpu-theft.js [--seconds 10] [--files 1000] [--pages 16] [--dir DIR]
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { UsageError, parsePositiveInt } from '../cmdline/args.js';
import { onStopSignals, signalExitCode } from '../cmdline/signals.js';
import { IN_FLIGHT_DEFAULT, RealIO, forEachInFlight, type FileHandle } from '../engine/index.js';
import { makeTempDir, removeTree, removeTreeSync } from '../engine/testing.js';

/** Gaps shorter than this are the clock's and the loop's own jitter. */
const GAP_MS = 2;

const SPINNER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { performance } = require('node:perf_hooks');
const stat = () => readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
// The CPU the thread last ran on: field 39 of /proc/thread-self/stat, the 37th after the name.
const cpu = () => Number(readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1].split(' ')[36]);
const gaps = [];
const end = performance.now() + workerData.ms;
let s0 = stat();
let read = performance.now();
let last = read;
for (;;) {
  const t = performance.now();
  if (t > end) break;
  if (t - last > ${GAP_MS}) {
    const s1 = stat();
    const t1 = performance.now();
    gaps.push({ ms: t - last, windowMs: t1 - read, runMs: (s1[0] - s0[0]) / 1e6, waitMs: (s1[1] - s0[1]) / 1e6, cpu: cpu() });
    s0 = s1;
    read = last = t1;
  } else if (t - read > 1) {
    // A fresh baseline every millisecond, so a gap's window is the gap and little else.
    s0 = stat();
    read = last = performance.now();
  } else last = t;
}
parentPort.postMessage(gaps);
`;

interface Gap {
  ms: number;
  windowMs: number;
  runMs: number;
  waitMs: number;
  /** The CPU the spinner was on right after the gap. */
  cpu: number;
}

interface Options {
  seconds: number;
  files: number;
  pages: number;
  dir: string;
}

const FLAGS = ['--seconds', '--files', '--pages', '--dir'];

function parseArgs(argv: string[]): Options {
  for (let i = 0; i < argv.length; i += 2) if (!FLAGS.includes(argv[i]!)) throw new UsageError(`unknown flag '${argv[i]}' (flags: ${FLAGS.join(', ')})`);
  const val = (name: string, dflt: string): string => {
    const i = argv.indexOf(name);
    if (i < 0) return dflt;
    const v = argv[i + 1];
    if (v === undefined) throw new UsageError(`${name} needs a value`);
    return v;
  };
  return {
    seconds: parsePositiveInt(val('--seconds', '10'), '--seconds'),
    files: parsePositiveInt(val('--files', '1000'), '--files'),
    pages: parsePositiveInt(val('--pages', '16'), '--pages'),
    dir: val('--dir', tmpdir()),
  };
}

/** BLOCK softirqs handled so far, per CPU; empty where /proc/softirqs cannot be read. */
function blockSoftirqs(): number[] {
  try {
    const line = readFileSync('/proc/softirqs', 'utf8').split('\n').find((l) => l.trim().startsWith('BLOCK:'));
    return line ? line.trim().split(/\s+/).slice(1).map(Number) : [];
  } catch {
    return [];
  }
}

function spin(ms: number): Promise<Gap[]> {
  const w = new Worker(SPINNER, { eval: true, workerData: { ms } });
  return new Promise<Gap[]>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (process.platform !== 'linux') throw new Error('cpu-theft reads /proc/thread-self/schedstat: Linux only');
  const io = new RealIO();
  const root = await makeTempDir(o.dir, 'lamstore-cpu-theft-');
  // A stop signal ends the run at once: the files go, the spinner with the process.
  const restoreSignals = onStopSignals((signal) => {
    removeTreeSync(root);
    process.stderr.write(`cpu-theft: interrupted (${signal}); temporary files removed\n`);
    process.exit(signalExitCode(signal));
  });
  const handles: FileHandle[] = [];
  try {
    const pages = Array.from({ length: o.pages }, (_, i) => new Uint8Array(8192).fill(i + 1));
    for (let f = 0; f < o.files; f++) handles.push(await io.open(join(root, `f${f}`), { create: true }));
    const loads: [string, (() => Promise<void>) | null][] = [
      ['idle', null],
      ['fsync', async () => {
        await forEachInFlight(handles, IN_FLIGHT_DEFAULT, (h) => io.pwritev(h, pages, 0));
        await io.fsyncEach(handles);
      }],
    ];
    const writeback = io.writeback?.bind(io);
    if (writeback) {
      loads.push(['hints', async () => {
        await forEachInFlight(handles, IN_FLIGHT_DEFAULT, (h) => io.pwritev(h, pages, 0));
        await forEachInFlight(handles, handles.length, (h) => writeback(h, 0, o.pages * 8192));
        await io.fsyncEach(handles);
      }]);
    } else process.stdout.write(`hints: left out (${io.writebackUnsupportedReason ?? 'no writeback'})\n`);
    process.stdout.write(`cpu-theft: a spinning thread's gaps over ${GAP_MS} ms, ${o.seconds} s per load, ${o.files} files of ${o.pages} pages\n`);
    for (const [name, load] of loads) {
      const irq0 = blockSoftirqs();
      const spinning = spin(o.seconds * 1000);
      let rounds = 0;
      let stop = false;
      // A failed call ends the load at once; it is thrown once the spinner is done.
      let failure: { error: unknown } | null = null;
      const loop = (async () => {
        if (!load) return;
        while (!stop) {
          await load();
          rounds++;
        }
      })().catch((error: unknown) => {
        failure = { error };
      });
      const gaps = await spinning;
      stop = true;
      await loop;
      if (failure !== null) throw (failure as { error: unknown }).error;
      const irq1 = blockSoftirqs();
      // Counted as the spinner's own run time (90 % of the window or more) and not waiting:
      // nothing was scheduled in its place.
      const charged = gaps.filter((g) => g.runMs >= 0.9 * g.windowMs && g.waitMs < 0.5);
      const others = gaps.filter((g) => !charged.includes(g));
      const sum = (gs: Gap[]) => gs.reduce((a, g) => a + g.ms, 0);
      const max = (gs: Gap[]) => gs.reduce((a, g) => Math.max(a, g.ms), 0);
      const irqs = irq1.map((n, cpu) => `cpu${cpu} ${n - (irq0[cpu] ?? 0)}`).join(', ');
      const cpus = [...new Set(charged.map((g) => g.cpu))].sort((a, b) => a - b);
      const byCpu = cpus.map((c) => {
        const on = charged.filter((g) => g.cpu === c);
        return `cpu${c} ${on.length} (${sum(on).toFixed(1)} ms, longest ${max(on).toFixed(1)})`;
      });
      process.stdout.write(
        `${name.padEnd(6)} rounds ${String(rounds).padStart(4)}; gaps charged to the spinner: ${byCpu.join(', ') || 'none'}; ` +
          `others ${others.length} (${sum(others).toFixed(1)} ms, longest ${max(others).toFixed(1)}); block softirqs: ${irqs || 'unknown'}\n`,
      );
    }
  } finally {
    try {
      for (const h of handles) await io.close(h);
    } finally {
      await removeTree(root);
      restoreSignals();
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`cpu-theft: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});
