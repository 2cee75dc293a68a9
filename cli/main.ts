#!/usr/bin/env node
/**
 * The `lamstore` command. Errors are one line on stderr (`lamstore: <file>: <problem>`), exit
 * code 1 for a bad volume and 2 for bad usage; a stack trace only with LAMSTORE_DEBUG=1.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { addBenchCommand } from '../bench/command.js';

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('lamstore')
    .description('Create, inspect and check lamstore volumes; measure segment vs extent fsync cost.')
    .version(pkg.version, '-V, --version', 'print the package version')
    .showHelpAfterError('(run lamstore --help for usage)')
    .exitOverride();
  addBenchCommand(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; usage errors were already printed by commander
      return err.exitCode === 0 ? 0 : 2;
    }
    if (process.env.LAMSTORE_DEBUG === '1') console.error(err);
    else console.error(`lamstore: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
