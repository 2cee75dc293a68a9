#!/usr/bin/env node
/**
 * The `lamstore` command: create, grow, inspect, check and map volumes, snapshot, roll back and
 * clone them; show a data directory's
 * control file (controldata). Each command lives in its own
 * file `cli/<name>.ts` exporting `add<Name>Command(program)`; a new command (bench) is one more
 * import and one more call in `buildProgram`.
 *
 * Invariants (the table of exit codes is in cli/README.md):
 *  L1 Every failure is one line on stderr, `lamstore: <file>: <problem>` (no file for a failure
 *     about no file, e.g. an unknown command), with the exit code of cmdline/failure.ts (E3); commander's
 *     own error printing is silenced so it cannot add a usage dump or a second line.
 *  L2 No stack trace unless LAMSTORE_DEBUG=1.
 *  L3 When `--json` is on the command line, a failure also prints `{ "error": { "code",
 *     "message" } }` on stdout, so a consumer of --json always gets one valid JSON document.
 *  L4 Help and --version exit 0; `lamstore` with no command prints the help on stderr, exit 2.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { addCheckCommand } from './check.js';
import { addControldataCommand } from './controldata.js';
import { addCreateCommand } from './create.js';
import { addGrowCommand } from './grow.js';
import { CliFailure, CliCode, EXIT_OK, EXIT_USAGE, FindingsFailure, printFailure, toFailure } from '../cmdline/failure.js';
import { addInspectCommand } from './inspect.js';
import { addMapCommand } from './map.js';
import { addCloneCommand, addRollbackCommand, addSnapshotCommand } from './snapshot.js';
import { addBenchCommand } from '../bench/command.js';

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('lamstore')
    .description('Create, grow, inspect, check and map lamstore volumes; snapshot, roll back and clone them; show a data directory\'s control file.')
    .version(pkg.version, '-V, --version', 'print the package version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    // L1: we print the one line ourselves (printFailure); commander writes nothing on error.
    .configureOutput({ outputError: () => {} })
    .addHelpText(
      'after',
      `
Examples:
  $ lamstore create data.lam --size 1GiB
  $ lamstore grow data.lam --size 2GiB
  $ lamstore inspect data.lam --relations
  $ lamstore check data.lam --pages
  $ lamstore map data.lam --svg data-map.svg
  $ lamstore snapshot create data.lam before-upgrade
  $ lamstore rollback data.lam before-upgrade
  $ lamstore clone data.lam before-upgrade copy.lam
  $ lamstore controldata /var/lib/lamstore`,
    );
  addCreateCommand(program);
  addGrowCommand(program);
  addInspectCommand(program);
  addCheckCommand(program);
  addMapCommand(program);
  addSnapshotCommand(program);
  addRollbackCommand(program);
  addCloneCommand(program);
  addControldataCommand(program);
  addBenchCommand(program);
  return program;
}

/** The command named on the line and its first operand (the file), for commander's errors. */
function commandContext(program: Command, argv: string[]): { name?: string; file?: string } {
  const words = argv.slice(2).filter((a) => !a.startsWith('-'));
  let sub = program.commands.find((c) => c.name() === words[0]);
  if (!sub) return {};
  let name = sub.name();
  // A command with subcommands (`snapshot create`): the file is the subcommand's first operand.
  const nested = sub.commands.find((c) => c.name() === words[1]);
  if (nested) {
    sub = nested;
    name = `${name} ${nested.name()}`;
  }
  const file = sub.args.find((a) => !a.startsWith('-'));
  return { name, file };
}

function fromCommander(err: CommanderError, program: Command, argv: string[]): CliFailure {
  const { name, file } = commandContext(program, argv);
  const problem = err.message.replace(/^error:\s*/, '').replace(/\s*\n\s*/g, ' ');
  const hint = name ? `run lamstore ${name} --help` : 'run lamstore --help';
  return new CliFailure(EXIT_USAGE, CliCode.USAGE, err.code === 'commander.unknownCommand' ? undefined : file, `${problem} (${hint})`, { cause: err });
}

export async function main(argv: string[]): Promise<number> {
  const dashDash = argv.indexOf('--');
  const json = (dashDash < 0 ? argv : argv.slice(0, dashDash)).includes('--json');
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return EXIT_OK; // help, --version
      if (err.code === 'commander.help') return EXIT_USAGE; // no command: help went to stderr
      const f = fromCommander(err, program, argv);
      printFailure(f, json);
      return f.exitCode;
    }
    const f = toFailure(err, undefined);
    // check already printed its report (a JSON document with --json): only the stderr line.
    printFailure(f, json && !(f instanceof FindingsFailure));
    return f.exitCode;
  }
}

// `lamstore map | head` closes the pipe early: that is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv);
