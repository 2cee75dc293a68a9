/**
 * `lamstore bench`: the commander subcommand over bench/run.ts.
 *
 * Rules it keeps (the CLI's error rules, cli/README.md):
 *  C1 Bad flags are refused before anything is written: one line `lamstore: bench: <problem>` on
 *     stderr, exit 2, no stack trace, no help dump; with --json also `{"error": ...}` on stdout.
 *     Every failure leaves here as a CliFailure whose problem starts with "bench: "; cli/main.ts
 *     prints it (cli/failure.ts E1) and exits with its code.
 *  C2 stdout holds the report only (the table, or with --json one JSON document, also on failure:
 *     `{"error": {"code", "message"}}`); progress and --verbose log lines go to stderr.
 *  C3 Progress: a bar on a TTY (stderr), otherwise one line per finished cell; --verbose prints
 *     the engines' checkpoint log lines instead of the bar.
 *  C4 The temporary directory is removed on success, on error and on SIGINT or SIGTERM: the
 *     first signal stops the run at the next step and cleans up (exit 130 for SIGINT, 143 for
 *     SIGTERM, code INTERRUPTED; an error that the interrupt itself caused, such as the
 *     terminal's Ctrl-C stopping the postgres server too, is reported as the interrupt); a
 *     second one stops the postgres server and removes the directory at once and exits.
 *  C5 --postgres / --no-postgres: default on when the server binaries are found; --postgres
 *     without them is refused up front like any bad flag (C1).
 */
import { resolve } from 'node:path';
import { tmpdir } from 'node:os';
import cliProgress from 'cli-progress';
import { CommanderError, type Command } from 'commander';
import { RealIO, removeTreeSync } from '../engine/index.js';
import { UsageError, parseIntList, parsePositiveInt } from '../cli/args.js';
import { CliCode, CliFailure, EXIT_INTERRUPTED, EXIT_USAGE, toFailure } from '../cli/failure.js';
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
  dir?: string;
  json?: boolean;
  svg?: string;
  quick?: boolean;
  verbose?: boolean;
  /** true for --postgres, false for --no-postgres, undefined for neither. */
  postgres?: boolean;
}

/** 128 + SIGTERM's number, as shells report it. */
const EXIT_TERMINATED = 143;

class BenchInterrupted extends Error {
  override readonly name = 'BenchInterrupted';
  constructor(
    message: string,
    readonly exitCode = EXIT_INTERRUPTED,
  ) {
    super(message);
  }
}

/** Any error of the bench as the CLI's one-line failure, "bench: <problem>" (C1). */
function benchFailure(err: unknown): CliFailure {
  if (err instanceof BenchInterrupted) return new CliFailure(err.exitCode, CliCode.INTERRUPTED, undefined, `bench: ${err.message}`, { cause: err });
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
  const cellPagesMax = Math.max(...relations) * Math.max(...pages);
  if (cellPagesMax > CELL_PAGES_MAX) {
    throw new UsageError(`--relations x --pages: the largest cell is ${cellPagesMax} dirty pages, more than ${CELL_PAGES_MAX} (each engine's buffer pool must hold one cell)`);
  }
  if (flags.svg !== undefined && flags.svg.length === 0) throw new UsageError(`--svg '' must name a file`);
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
    crcScale: base.crcScale,
    latencySamples: base.latencySamples,
    warmupRounds: base.warmupRounds,
    postgres: flags.postgres === true ? 'on' : flags.postgres === false ? 'off' : BENCH_DEFAULTS.postgres,
  };
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
    .option('--dir <dir>', 'directory on the file system to measure (default: the OS temp directory)')
    .option('--json', 'print every raw number as one JSON document instead of the tables')
    .option('--svg <file>', 'also write a bar chart of sync-phase time by R (log scale)')
    .option('--quick', `a smaller run, under 20 s (R ${BENCH_QUICK.relations.join(',')}, ${BENCH_QUICK.rounds} rounds); explicit flags still win`)
    .option('--verbose', "print the engines' checkpoint log lines (stderr)")
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
  let interrupted: NodeJS.Signals | null = null;
  const exitCodeOf = (signal: NodeJS.Signals) => (signal === 'SIGTERM' ? EXIT_TERMINATED : EXIT_INTERRUPTED);
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      // C4: second signal, stop now.
      stopAllServersSync();
      if (root) removeTreeSync(root);
      process.stderr.write('\nlamstore: bench: interrupted\n');
      process.exit(exitCodeOf(signal));
    }
    interrupted = signal;
  };
  const onExit = () => {
    stopAllServersSync();
    if (root) removeTreeSync(root);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
  const interruptedError = (signal: NodeJS.Signals) => new BenchInterrupted(`interrupted${signal === 'SIGTERM' ? ' (SIGTERM)' : ''}; temporary files removed`, exitCodeOf(signal));

  const tty = process.stderr.isTTY === true && !flags.verbose;
  const bar = tty ? new cliProgress.SingleBar({ stream: process.stderr, format: 'bench [{bar}] {percentage}% | {value}/{total} | {label}', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
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
        if (interrupted) throw interruptedError(interrupted);
      },
    });
    root = null; // removed by runBench (B1)
    bar?.stop();
    return result;
  } catch (err) {
    bar?.stop();
    stopAllServersSync(); // normally stopped already (postgres.ts G1)
    if (root) removeTreeSync(root); // normally gone already (B1); idempotent
    // C4: whatever broke after the signal (a server the terminal's Ctrl-C stopped too) is the interrupt.
    if (interrupted && !(err instanceof BenchInterrupted)) throw interruptedError(interrupted);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  }
}
