/**
 * `lamstore bench`: the commander subcommand over bench/run.ts.
 *
 * Rules it keeps (the CLI's error rules, cli/README.md):
 *  C1 Bad flags are refused before anything is written: one line `lamstore: bench: <problem>` on
 *     stderr, exit 2, no stack trace, no help dump; with --json also `{"error": ...}` on stdout.
 *     Every failure leaves here as a CliFailure whose problem starts with "bench: "; cli/main.ts
 *     prints it (cmdline/failure.ts E1) and exits with its code.
 *  C2 stdout holds the report only (the table, or with --json one JSON document, also on failure:
 *     `{"error": {"code", "message"}}`); progress and --verbose log lines go to stderr.
 *  C3 Progress: a bar on a TTY (stderr), otherwise one line per finished cell; --verbose prints
 *     the engines' checkpoint log lines instead of the bar.
 *  C4 The temporary directory is removed on success, on error and on a stop signal (SIGINT,
 *     SIGTERM, SIGHUP: cmdline/signals.ts): the first one stops the run at the next step (between
 *     relations at setup, every 4 MiB of the volume's zero-fill, between rows of a round) and
 *     cleans up (exit 128 + its number, code INTERRUPTED); a second one, of any kind, removes
 *     the directory at once and exits (128 + its number) without waiting for the step.
 *  C5 Output paths (--svg) are checked before anything is measured: a directory that does not
 *     exist is exit 2 at once, not a raw ENOENT after the whole run.
 *  C6 --postgres / --no-postgres: default on when the server binaries are found; --postgres
 *     without them is refused up front like any bad flag (C1). A stop signal also stops the
 *     postgres server (the first at the next step, a second at once).
 */
import { dirname, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import cliProgress from 'cli-progress';
import { CommanderError, type Command } from 'commander';
import { RealIO, errnoOf } from '../engine/index.js';
import { removeTreeSync } from '../engine/testing.js';
import { UsageError, parseIntList, parsePositiveInt } from '../cmdline/args.js';
import { CliCode, CliFailure, EXIT_USAGE, printFailure, toFailure } from '../cmdline/failure.js';
import { onStopSignals, signalExitCode, type StopSignal } from '../cmdline/signals.js';
import { BENCH_DEFAULTS, BENCH_QUICK, runBench, type BenchOptions, type BenchResult } from './run.js';
import { findPostgres, searchedWhere, stopAllServersSync } from './postgres.js';
import { cellLine, formatReport } from './report.js';
import { renderSvg } from './svg.js';

/** Largest R*P cell: each engine's pool holds it (2 GiB of 8 KiB pages). */
const CELL_PAGES_MAX = 262_144;
const RELATIONS_MAX = 100_000;
const PAGES_MAX = 4096;
const ROUNDS_MAX = 1000;

interface RawFlags {
  relations?: string;
  pages?: string;
  rounds?: string;
  warmup?: string;
  dir?: string;
  json?: boolean;
  svg?: string;
  quick?: boolean;
  verbose?: boolean;
  oneThread?: boolean;
  /** true for --postgres, false for --no-postgres, undefined for neither. */
  postgres?: boolean;
}

/** 128 + SIGTERM's number, as shells report it. */
const EXIT_TERMINATED = 143;

class BenchInterrupted extends Error {
  override readonly name = 'BenchInterrupted';
  constructor(readonly signal: StopSignal) {
    super(`interrupted (${signal}); temporary files removed`);
  }
}

/** The BenchInterrupted that `err` is or wraps (createVolumeFile wraps its progress callback's throw as an IO_ERROR cause). */
function interruption(err: unknown): BenchInterrupted | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof BenchInterrupted) return e;
  }
  return undefined;
}

/** Any error of the bench as the CLI's one-line failure, "bench: <problem>" (C1). */
function benchFailure(err: unknown): CliFailure {
  if (err instanceof BenchInterrupted) return new CliFailure(signalExitCode(err.signal), CliCode.INTERRUPTED, undefined, `bench: ${err.message}`, { cause: err });
  if (err instanceof CommanderError) {
    const problem = err.message.replace(/^error:\s*/, '');
    return new CliFailure(EXIT_USAGE, CliCode.USAGE, undefined, `bench: ${problem} (run lamstore bench --help)`, { cause: err });
  }
  const f = toFailure(err, undefined);
  return new CliFailure(f.exitCode, f.code, undefined, `bench: ${f.message}`, { cause: err });
}

/** Flags to options (C1): throws UsageError naming the flag. */
export async function benchOptionsFrom(flags: RawFlags): Promise<BenchOptions> {
  const base = flags.quick ? { ...BENCH_DEFAULTS, ...BENCH_QUICK } : BENCH_DEFAULTS;
  const relations = flags.relations !== undefined ? parseIntList(flags.relations, '--relations', RELATIONS_MAX) : [...base.relations];
  const pages = flags.pages !== undefined ? parseIntList(flags.pages, '--pages', PAGES_MAX) : [...base.pages];
  const rounds = flags.rounds !== undefined ? parsePositiveInt(flags.rounds, '--rounds', ROUNDS_MAX) : base.rounds;
  // 0 turns the per-cell warm-up off; anything else is a count like --rounds.
  let cellWarmupRounds: number = base.cellWarmupRounds;
  if (flags.warmup !== undefined) {
    cellWarmupRounds = /^\d+$/.test(flags.warmup) ? Number(flags.warmup) : NaN;
    if (!(cellWarmupRounds <= ROUNDS_MAX)) throw new UsageError(`--warmup '${flags.warmup}' must be a whole number in 0..${ROUNDS_MAX}`);
  }
  const cellPagesMax = Math.max(...relations) * Math.max(...pages);
  if (cellPagesMax > CELL_PAGES_MAX) {
    throw new UsageError(`--relations x --pages: the largest cell is ${cellPagesMax} dirty pages, more than ${CELL_PAGES_MAX} (each engine's buffer pool must hold one cell)`);
  }
  if (flags.svg !== undefined && flags.svg.length === 0) throw new UsageError(`--svg '' must name a file`);
  if (flags.svg !== undefined) await checkOutputFile('--svg', flags.svg);
  const dir = resolve(flags.dir ?? tmpdir());
  const st = await new RealIO().stat(dir).catch((err: unknown) => {
    throw new UsageError(`--dir '${flags.dir}': ${err instanceof Error ? err.message : String(err)}`);
  });
  if (st === null) throw new UsageError(`--dir '${flags.dir}' does not exist`);
  if (st.kind !== 'directory') throw new UsageError(`--dir '${flags.dir}' is not a directory`);
  // C5: refuse --postgres before anything is written.
  if (flags.postgres === true && (await findPostgres()) === null) {
    throw new UsageError(`--postgres: no PostgreSQL server binaries (initdb, postgres, psql) in ${searchedWhere()}`);
  }
  return {
    relations: [...new Set(relations)].sort((a, b) => a - b),
    pages: [...new Set(pages)].sort((a, b) => a - b),
    rounds,
    dir,
    blockSize: base.blockSize,
    pagePathPages: base.pagePathPages,
    pagePathOps: base.pagePathOps,
    agedReadForks: base.agedReadForks,
    agedReadRounds: base.agedReadRounds,
    crcScale: base.crcScale,
    latencySamples: base.latencySamples,
    warmupRounds: base.warmupRounds,
    cellWarmupRounds,
    postgres: flags.postgres === true ? 'on' : flags.postgres === false ? 'off' : BENCH_DEFAULTS.postgres,
    isolateEngines: flags.oneThread !== true,
  };
}

/**
 * C5: an output file named by a flag can be written once the run is over: its directory exists
 * and it is not itself a directory or a special file. Checked up front, since a run can take
 * minutes. (Permissions are left to the write itself: FileIO has no access check, and creating
 * the file now would leave an empty one behind a failed run.)
 */
async function checkOutputFile(flag: string, file: string): Promise<void> {
  const io = new RealIO();
  const path = resolve(file);
  const statOf = (p: string) =>
    io.stat(p).catch((err: unknown) => {
      throw new UsageError(`${flag} '${file}': cannot use it: ${errnoOf(err) ?? (err instanceof Error ? err.message : String(err))}`);
    });
  const parent = await statOf(dirname(path));
  if (parent === null) throw new UsageError(`${flag} '${file}': directory '${dirname(file)}' does not exist`);
  if (parent.kind !== 'directory') throw new UsageError(`${flag} '${file}': '${dirname(file)}' is not a directory`);
  const st = await statOf(path);
  if (st !== null && st.kind !== 'file') throw new UsageError(`${flag} '${file}' is ${st.kind === 'directory' ? 'a directory' : 'not a regular file'}; give the path of a file to write`);
}

/** Write `text` to `path` through FileIO (created or replaced). */
async function writeTextFile(path: string, text: string): Promise<void> {
  const io = new RealIO();
  const h = await io.open(path, { create: true });
  try {
    await io.ftruncate(h, 0);
    await io.pwrite(h, new TextEncoder().encode(text), 0);
  } finally {
    await io.close(h);
  }
}

export function addBenchCommand(program: Command): Command {
  const cmd = program
    .command('bench')
    .description(
      'measure checkpoint cost: md segment fsyncs vs volume extent fdatasyncs, against raw floors; page-path throughput; runs on temporary files it removes',
    )
    .option('--relations <list>', `dirty relation counts R, comma-separated (default ${BENCH_DEFAULTS.relations.join(',')})`)
    .option('--pages <list>', `dirty pages per relation P, comma-separated (default ${BENCH_DEFAULTS.pages.join(',')})`)
    .option('--rounds <n>', `rounds per cell, md and volume alternating (default ${BENCH_DEFAULTS.rounds})`)
    .option('--warmup <n>', `unrecorded rounds at the start of each cell, every row: the first checkpoints at a new size run while V8 re-optimises (default ${BENCH_DEFAULTS.cellWarmupRounds}; --quick ${BENCH_QUICK.cellWarmupRounds}; 0: none)`)
    .option('--dir <dir>', 'directory on the file system to measure (default: the OS temp directory)')
    .option('--json', 'print every raw number as one JSON document instead of the tables')
    .option('--svg <file>', 'also write a bar chart of sync-phase time by R (log scale)')
    .option('--quick', `a smaller run, under 20 s (R ${BENCH_QUICK.relations.join(',')}, ${BENCH_QUICK.rounds} rounds); explicit flags still win`)
    .option('--verbose', "print the engines' checkpoint log lines (stderr)")
    .option('--one-thread', 'run the three engine rows on the main thread, one heap and event loop for all (default: each on a worker thread of its own, as a program embedding one engine runs it)')
    .option('--postgres', `require the postgres row: a throwaway PostgreSQL cluster, timed by its own checkpoint log line (default: measured when the server binaries are found in ${searchedWhere()})`)
    .option('--no-postgres', 'skip the postgres row')
    .showHelpAfterError(false)
    // C1: commander's own parse errors (unknown flag, missing value) become "bench: ..." failures;
    // help and --version still leave as CommanderError (exit 0).
    .exitOverride((err) => {
      if (err.exitCode === 0 || err.code === 'commander.help' || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') throw err;
      throw benchFailure(err);
    });

  cmd.action(async (flags: RawFlags) => {
    try {
      const options = await benchOptionsFrom(flags);
      const result = await runWithSignals(options, flags);
      if (flags.svg !== undefined) await writeTextFile(resolve(flags.svg), renderSvg(result));
      print(result, flags);
    } catch (err) {
      throw benchFailure(err);
    }
  });
  return cmd;
}

function print(result: BenchResult, flags: RawFlags): void {
  process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatReport(result)}\n`);
  if (flags.svg !== undefined && !flags.json) process.stdout.write(`Chart written to ${resolve(flags.svg)}\n`);
}

async function runWithSignals(options: BenchOptions, flags: RawFlags): Promise<BenchResult> {
  let root: string | null = null;
  let interrupted: StopSignal | null = null;
  const tty = process.stderr.isTTY === true && !flags.verbose;
  const bar = tty ? new cliProgress.SingleBar({ stream: process.stderr, format: 'bench [{bar}] {percentage}% | {value}/{total} | {label}', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
  const stopListening = onStopSignals((signal) => {
    // C4: a second signal stops now. Before makeTempDir returned (root null) there is nothing
    // to remove yet, and exiting could leave the directory it is making: the first signal's
    // stop comes at the next step.
    if (interrupted !== null && root !== null) {
      bar?.stop();
      stopAllServersSync();
      let problem = `interrupted again (${signal}); temporary files removed without finishing the current step`;
      try {
        removeTreeSync(root);
      } catch (err) {
        problem = `interrupted again (${signal}); could not remove the temporary directory ${root}: ${errnoOf(err) ?? String(err)}`;
      }
      printFailure(new CliFailure(signalExitCode(signal), CliCode.INTERRUPTED, undefined, `bench: ${problem}`), flags.json === true);
      process.exit(signalExitCode(signal));
    }
    interrupted ??= signal;
  });
  const onExit = () => {
    stopAllServersSync();
    if (root) removeTreeSync(root);
  };
  process.on('exit', onExit);
  try {
    const result = await runBench(options, {
      onRoot: (r) => (root = r),
      onPlan: (steps) => bar?.start(steps, 0, { label: 'machine' }),
      onStep: (_step, label) => bar?.increment({ label }),
      onCell: (cell) => {
        if (!tty) process.stderr.write(`${cellLine(cell)}\n`);
      },
      onLog: flags.verbose
        ? (storage, line) => {
            // The checkpoint line, not the per-file sync lines (1000 per checkpoint at R=1000).
            if (!line.startsWith('checkpoint sync: ')) process.stderr.write(`[${storage}] ${line}\n`);
          }
        : undefined,
      checkAbort: () => {
        if (interrupted !== null) throw new BenchInterrupted(interrupted);
      },
    });
    root = null; // removed by runBench (B1)
    bar?.stop();
    // A signal after the last step still asked for a stop: exit as interrupted, like create.
    if (interrupted !== null) throw new BenchInterrupted(interrupted);
    return result;
  } catch (err) {
    bar?.stop();
    stopAllServersSync(); // normally stopped already (postgres.ts G1)
    if (root) removeTreeSync(root); // normally gone already (B1); idempotent
    // The stop may come back wrapped (an IO_ERROR of the volume's zero-fill whose progress
    // callback threw it): report the interruption, not an I/O failure.
    // Whatever broke after the signal (a postgres server the terminal's Ctrl-C stopped too) is
    // the interrupt as well.
    const stopped = interruption(err);
    if (stopped) throw stopped;
    if (interrupted !== null) throw new BenchInterrupted(interrupted);
    throw err;
  } finally {
    stopListening();
    process.off('exit', onExit);
  }
}
