/**
 * A steady A/B harness for the checkpoint path: one storage (md or volume), R relations x P
 * dirty pages, many rounds, and per checkpoint its total, write and sync phase (CheckpointStats),
 * the longest event-loop stall during it (monitorEventLoopDelay, as the bench), the main
 * thread's GC pauses inside it (the longest and their sum, PerformanceObserver 'gc' entries),
 * and, with `--heap`, the bytes allocated inside `engine.checkpoint()` (V8's sampling heap
 * profiler through the inspector, 512-byte interval, started and stopped around each
 * checkpoint), with the functions that allocated most (the timings then include the
 * profiler's own cost: take them from a run without it). The first 3 rounds warm the JIT and are
 * not reported; medians of the rest. Stand-alone, for profiling work (BENCHMARKS.md "Fewer
 * allocations and fewer iovecs"); `lamstore bench` does not run it. From the build:
 *
 *   node dist/bench/checkpoint-alloc.js [--storage md|volume] [--relations 1000] [--pages 1]
 *        [--rounds 30] [--dir DIR] [--heap] [--top 12] [--flush-after N (checkpointFlushAfter; 0: no hints)]
 *
 * For an A/B, build the other commit into another directory and alternate runs of the two.
 */
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Engine, ForkNumber, type Relation } from '../engine/index.js';
import { makeTempDir, removeTree } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { matrixVolumeSizeBytes } from './matrix.js';
import { patternPage } from './page-path-measure.js';
import { median } from './stats.js';

const WARMUP_ROUNDS = 3;

interface Options {
  storage: 'md' | 'volume';
  relations: number;
  pages: number;
  rounds: number;
  dir: string;
  heap: boolean;
  top: number;
  /** EngineOptions.checkpointFlushAfter; undefined: the engine's default. */
  flushAfter: number | undefined;
}

interface SampledNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SampledNode[];
}

function parseArgs(argv: string[]): Options {
  const val = (flag: string, dflt: string): string => {
    const i = argv.indexOf(flag);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : dflt;
  };
  const int = (flag: string, dflt: number): number => {
    const n = Number(val(flag, String(dflt)));
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer`);
    return n;
  };
  const storage = val('--storage', 'volume');
  if (storage !== 'md' && storage !== 'volume') throw new Error(`--storage must be md or volume, not '${storage}'`);
  const rounds = int('--rounds', 30);
  if (rounds <= WARMUP_ROUNDS) throw new Error(`--rounds must be above ${WARMUP_ROUNDS} (the warm-up rounds)`);
  return { storage, relations: int('--relations', 1000), pages: int('--pages', 1), rounds, dir: val('--dir', tmpdir()), heap: argv.includes('--heap'), top: int('--top', 12), flushAfter: argv.includes('--flush-after') ? Number(val('--flush-after', '')) : undefined };
}

/** Bytes allocated per function (name, file:line) in a sampled heap profile. */
function allocationsBy(head: SampledNode, into: Map<string, number>): number {
  let total = 0;
  const walk = (n: SampledNode): void => {
    const cf = n.callFrame;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
    into.set(key, (into.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(head);
  return total;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const root = await makeTempDir(o.dir, 'lamstore-alloc-');
  const blockSize = 8192;
  const session = o.heap ? new Session() : null;
  let engine: Engine | null = null;
  let gcWindow: number[] | null = null;
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcWindow?.push(e.duration);
  });
  try {
    // As bench/matrix.ts M5: a pool that holds every page, no timed checkpoints, no ledger.
    engine = await Engine.open({
      dataDir: join(root, 'data'),
      blockSize,
      sharedBuffers: Math.max(16, o.relations * o.pages + 1024),
      checkpointTimeoutMs: 86_400_000,
      verifySync: false,
      checkpointFlushAfter: o.flushAfter,
      preload: o.storage === 'volume' ? [volumeExtension({ path: join(root, 'data', 'alloc.lamvol'), create: { sizeBytes: matrixVolumeSizeBytes(o.relations, o.pages, blockSize) } })] : [],
    });
    const rels: Relation[] = [];
    const page = patternPage(blockSize, 0);
    for (let r = 0; r < o.relations; r++) {
      const rel = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 16384 + r }, { storage: o.storage });
      await rel.create(ForkNumber.MAIN);
      for (let b = 0; b < o.pages; b++) await rel.extend(ForkNumber.MAIN, page);
      rels.push(rel);
    }
    await engine.checkpoint();
    if (session) {
      session.connect();
      await session.post('HeapProfiler.enable');
    }
    const totals: number[] = [];
    const writes: number[] = [];
    const syncs: number[] = [];
    const allocated: number[] = [];
    const stalls: number[] = [];
    // Main-thread GC pauses inside each checkpoint (as the bench's maxGcPauseMs): the longest
    // and their sum.
    const gcLongest: number[] = [];
    const gcTotal: number[] = [];
    gcs.observe({ entryTypes: ['gc'] });
    const byFunction = new Map<string, number>();
    for (let round = 0; round < o.rounds; round++) {
      for (const rel of rels) {
        page[100] = round & 0xff;
        for (let b = 0; b < o.pages; b++) await rel.write(ForkNumber.MAIN, b, page);
      }
      const measured = round >= WARMUP_ROUNDS;
      if (session && measured) await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      // The longest event-loop stall during the checkpoint, as the bench measures it (matrix.ts M8).
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      const pauses: number[] = [];
      gcWindow = pauses;
      const t0 = performance.now();
      const st = await engine.checkpoint();
      const t1 = performance.now();
      await new Promise<void>((resolve) => setTimeout(resolve, 2));
      delay.disable();
      gcWindow = null; // entries arrive on a later turn: those of the 2 ms wait count too
      if (session && measured) {
        const { profile } = await session.post('HeapProfiler.stopSampling');
        allocated.push(allocationsBy(profile.head as SampledNode, byFunction));
      }
      if (!measured) continue;
      totals.push(t1 - t0);
      stalls.push(delay.count > 0 ? delay.max / 1e6 : 0);
      gcLongest.push(Math.max(0, ...pauses));
      gcTotal.push(pauses.reduce((a, b) => a + b, 0));
      writes.push(st.writeMs);
      syncs.push(st.syncMs);
    }
    const n = totals.length;
    const lines = [`${o.storage} R=${o.relations} P=${o.pages}: total ${median(totals).toFixed(1)} ms, write ${median(writes).toFixed(1)}, sync ${median(syncs).toFixed(1)} (medians of ${n} checkpoints after ${WARMUP_ROUNDS} warm-up); longest stall median ${median(stalls).toFixed(1)} ms, max ${Math.max(...stalls).toFixed(1)}; GC pauses per checkpoint: longest median ${median(gcLongest).toFixed(1)} ms, max ${Math.max(...gcLongest).toFixed(1)}, sum median ${median(gcTotal).toFixed(1)} ms`];
    if (session) {
      lines.push(`allocated per checkpoint: ${(median(allocated) / 1024).toFixed(0)} KiB (median; sampled)`);
      for (const [k, v] of [...byFunction.entries()].sort((a, b) => b[1] - a[1]).slice(0, o.top)) lines.push(`  ${(v / 1024 / n).toFixed(1).padStart(8)} KiB  ${k}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    gcs.disconnect();
    session?.disconnect();
    await engine?.close();
    await removeTree(root);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`checkpoint-alloc: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
