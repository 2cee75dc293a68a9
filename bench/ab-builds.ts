/**
 * Two builds of lamstore, side by side in one process: this build and another one's `dist/`
 * (`--base`), one engine of each, checkpointed alternately. On this machine timings drift up to
 * 2x between runs minutes apart, so two builds measured in separate runs differ by the minutes
 * they ran in; alternating their checkpoints in one process lets both see the same minutes.
 * Each round rewrites every page of each engine, then checkpoints the two engines one after the
 * other (the order swapped every round), and records per checkpoint the write phase, the sync
 * phase, the total and the main thread's CPU time over it (`/proc/thread-self/schedstat`; NaN
 * off Linux). Medians and quartiles after the warm-up rounds. Stand-alone, for performance work
 * (BENCHMARKS.md, "The volume's write phase, thread by thread"); `lamstore bench` does not run it:
 *
 *   git worktree add /tmp/base <commit> && (cd /tmp/base && npm ci && npx tsc -p .)
 *   node dist/bench/ab-builds.js --base /tmp/base/dist [--storage volume|md] [--relations 1000]
 *        [--pages 1] [--rounds 40] [--warmup 5] [--sync-concurrency 1] [--dir DIR]
 *
 * The base build is loaded from its own files (its engine and volume entry points), so each
 * build runs its own code; they share the process, libuv's pool and the disk.
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parsePositiveInt } from '../cmdline/args.js';
import * as self from '../engine/index.js';
import { makeTempDir, removeTree } from '../engine/testing.js';
import * as selfVolume from '../volume/index.js';
import { matrixVolumeSizeBytes } from './matrix.js';
import { patternPage } from './page-path-measure.js';
import { threadSchedstat } from './schedstat.js';

interface Options {
  base: string;
  storage: 'md' | 'volume';
  relations: number;
  pages: number;
  rounds: number;
  warmup: number;
  /** EngineOptions.syncConcurrency of both engines (the bench's md (sync×4) row is 4). */
  syncConcurrency: number;
  dir: string;
}

function parseArgs(argv: string[]): Options {
  const val = (name: string, dflt?: string): string => {
    const i = argv.indexOf(name);
    if (i < 0) {
      if (dflt === undefined) throw new Error(`${name} is required`);
      return dflt;
    }
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${name} needs a value`);
    return v;
  };
  const count = (name: string, dflt: number): number => parsePositiveInt(val(name, String(dflt)), name);
  const storage = val('--storage', 'volume');
  if (storage !== 'md' && storage !== 'volume') throw new Error(`--storage must be md or volume, not '${storage}'`);
  const warmup = val('--warmup', '5');
  return {
    base: resolve(val('--base')),
    storage,
    relations: count('--relations', 1000),
    pages: count('--pages', 1),
    rounds: count('--rounds', 40),
    warmup: warmup === '0' ? 0 : parsePositiveInt(warmup, '--warmup'),
    syncConcurrency: count('--sync-concurrency', 1),
    dir: val('--dir', tmpdir()),
  };
}

type EngineModule = typeof self;
type VolumeModule = typeof selfVolume;

interface Side {
  name: string;
  engine: self.Engine;
  rels: self.Relation[];
  write: number[];
  sync: number[];
  total: number[];
  cpu: number[];
}

const cpuMs = (): number => {
  const t = threadSchedstat();
  return t ? t.cpu / 1e6 : NaN;
};

async function open(name: string, E: EngineModule, V: VolumeModule, o: Options, root: string): Promise<Side> {
  const dir = join(root, name);
  const blockSize = 8192;
  // As bench/matrix.ts M5: a pool that holds every page, no timed checkpoints, no ledger.
  const engine = await E.Engine.open({
    dataDir: dir,
    blockSize,
    sharedBuffers: o.relations * o.pages + 1024,
    checkpointTimeoutMs: 86_400_000,
    verifySync: false,
    syncConcurrency: o.syncConcurrency,
    preload: o.storage === 'volume' ? [V.volumeExtension({ path: join(dir, 'ab.lamvol'), create: { sizeBytes: matrixVolumeSizeBytes(o.relations, o.pages, blockSize) } })] : [],
  });
  const rels: self.Relation[] = [];
  const page = patternPage(blockSize, 0);
  for (let r = 0; r < o.relations; r++) {
    const rel = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 16384 + r }, { storage: o.storage });
    await rel.create(self.ForkNumber.MAIN);
    for (let b = 0; b < o.pages; b++) await rel.extend(self.ForkNumber.MAIN, page);
    rels.push(rel);
  }
  await engine.checkpoint();
  return { name, engine, rels, write: [], sync: [], total: [], cpu: [] };
}

function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(s.length * q))]!;
}

const fmt = (v: readonly number[]): string => `${quantile(v, 0.5).toFixed(2)} (${quantile(v, 0.25).toFixed(2)}-${quantile(v, 0.75).toFixed(2)})`;

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const baseEngine = (await import(pathToFileURL(join(o.base, 'engine', 'index.js')).href)) as EngineModule;
  const baseVolume = (await import(pathToFileURL(join(o.base, 'volume', 'index.js')).href)) as VolumeModule;
  const root = await makeTempDir(o.dir, 'lamstore-ab-');
  const sides: Side[] = [];
  try {
    sides.push(await open('base', baseEngine, baseVolume, o, root));
    sides.push(await open('this', self, selfVolume, o, root));
    const page = patternPage(8192, 1);
    for (let round = 0; round < o.warmup + o.rounds; round++) {
      for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
        page[100] = round & 0xff;
        for (const rel of side.rels) for (let b = 0; b < o.pages; b++) await rel.write(self.ForkNumber.MAIN, b, page);
        const t0 = performance.now();
        const c0 = cpuMs();
        const st = await side.engine.checkpoint();
        const c1 = cpuMs();
        if (round < o.warmup) continue;
        side.write.push(st.writeMs);
        side.sync.push(st.syncMs);
        side.total.push(performance.now() - t0);
        side.cpu.push(c1 - c0);
      }
    }
    const lines = [`${o.storage} R=${o.relations} P=${o.pages}, ${o.rounds} checkpoints each after ${o.warmup} warm-up, ms: median (quartiles)`];
    for (const s of sides) lines.push(`  ${s.name.padEnd(4)}  write ${fmt(s.write)}  sync ${fmt(s.sync)}  total ${fmt(s.total)}  main-thread CPU ${fmt(s.cpu)}`);
    lines.push(`  base: ${o.base}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    for (const s of sides) await s.engine.close();
    await removeTree(root);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ab-builds: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
