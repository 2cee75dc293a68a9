/**
 * `lamstore snapshot create|list|drop <volume> [name]`, `lamstore rollback <volume> <name>`,
 * `lamstore clone <volume> <name> <new-volume> [--size]`: snapshots of a volume no engine holds
 * (volume/clone.ts, volume/snapshots.ts S1-S6).
 *
 * Invariants:
 *  N1 Refusals are bad usage, exit 2, one line, the volume byte for byte as it was: a bad name
 *     (1..63 of A-Z a-z 0-9 . _ -, not starting with '.' or '-'), a name taken (create) or missing
 *     (drop, rollback, clone), a clone target that exists, a bad --size. A volume an engine holds
 *     is VOLUME_LOCKED, exit 1 (cli/README.md); missing or corrupt, exit 1.
 *  N2 Output: one summary line each, `list` a table (or "no snapshots"); `--json` one document:
 *     list `{ volume, snapshots: [{ name, generation, checkpointTimeMs, createdMs, volumeSizeBytes,
 *     forkCount, blocks, exclusiveBlocks }] }`, the others a summary of what was done.
 *  N3 clone: a stop signal (SIGINT, SIGTERM, SIGHUP) stops it within one chunk and removes the
 *     new file (as `create` does, C3); a signal after the copy is complete removes it too, since
 *     the user asked to stop. Exit 128 + the signal's number, code INTERRUPTED.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RealIO, errnoOf, ioError, suppressedOf } from '../engine/index.js';
import { cloneSnapshot, createSnapshot, dropSnapshot, listSnapshots, rollbackVolume } from '../volume/index.js';
import type { CloneSnapshotResult } from '../volume/index.js';
import { formatBytes, parseSize } from '../cmdline/args.js';
import { CliCode, CliFailure, EXIT_USAGE, usageFailure, withFile } from '../cmdline/failure.js';
import { onStopSignals, signalExitCode, type StopSignal } from '../cmdline/signals.js';

/** `1 block`, `2 blocks`. */
function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
import { formatSnapshotTable } from './inspect.js';

interface JsonOption {
  json?: boolean;
}

function print(json: boolean | undefined, doc: object, line: string): void {
  process.stdout.write(json ? `${JSON.stringify(doc, null, 2)}\n` : `${line}\n`);
}

export async function runSnapshotCreate(file: string, name: string, options: JsonOption): Promise<void> {
  const s = await createSnapshot(file, name);
  print(options.json, { volume: file, created: s }, `created snapshot ${s.name} of ${file}: generation ${s.generation}, ${plural(s.blocks, 'block')} (shared with the live state)`);
}

export async function runSnapshotList(file: string, options: JsonOption): Promise<void> {
  const snapshots = await listSnapshots(file);
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ volume: file, snapshots }, null, 2)}\n`);
    return;
  }
  process.stdout.write(snapshots.length === 0 ? `no snapshots in ${file}\n` : `${formatSnapshotTable(snapshots).join('\n')}\n`);
}

export async function runSnapshotDrop(file: string, name: string, options: JsonOption): Promise<void> {
  const before = (await listSnapshots(file)).find((x) => x.name === name);
  await dropSnapshot(file, name);
  const freed = before?.exclusiveBlocks ?? 0;
  print(options.json, { volume: file, dropped: name, freedBlocks: freed }, `dropped snapshot ${name} of ${file}: ${plural(freed, 'block')} it alone held ${freed === 1 ? 'is' : 'are'} free`);
}

export async function runRollback(file: string, name: string, options: JsonOption): Promise<void> {
  const { generation } = await rollbackVolume(file, name);
  print(options.json, { volume: file, rolledBackTo: name, generation }, `rolled ${file} back to snapshot ${name}: generation ${generation}; the snapshot stays`);
}

class Interrupted extends Error {}

export interface CloneOptions extends JsonOption {
  size?: string;
}

export async function runClone(file: string, name: string, target: string, options: CloneOptions): Promise<void> {
  const sizeBytes = options.size !== undefined ? parseSize(options.size, '--size') : undefined;
  if (target === '') throw usageFailure('the new volume path is empty', file);
  // N1: a target that exists is bad usage, before the volume is even opened.
  let st;
  try {
    st = await new RealIO().stat(resolve(target));
  } catch (err) {
    throw ioError('stat', resolve(target), err);
  }
  if (st) throw new CliFailure(EXIT_USAGE, CliCode.EXISTS, target, 'exists already; clone never replaces a file (give a new path)');
  let interrupted: StopSignal | null = null;
  const stopListening = onStopSignals((signal) => {
    interrupted ??= signal;
  });
  let result: CloneSnapshotResult;
  try {
    result = await cloneSnapshot(file, name, target, {
      sizeBytes,
      onProgress: () => {
        if (interrupted) throw new Interrupted('interrupted');
      },
    });
    if (interrupted !== null) {
      // N3: the user asked to stop; the finished copy goes too.
      try {
        await new RealIO().unlink(resolve(target));
      } catch (unlinkErr) {
        throw new CliFailure(signalExitCode(interrupted), CliCode.INTERRUPTED, target, `interrupted (${interrupted}) after the clone was complete; could not remove it: ${errnoOf(unlinkErr) ?? String(unlinkErr)}`, { cause: unlinkErr });
      }
      throw new Interrupted('interrupted');
    }
  } catch (err) {
    if (interrupted !== null && (err instanceof Interrupted || (err instanceof Error && err.cause instanceof Interrupted))) {
      const kept = suppressedOf(err).some((m) => m.includes('remove the partial clone'));
      throw new CliFailure(signalExitCode(interrupted), CliCode.INTERRUPTED, target, `interrupted (${interrupted}); ${kept ? 'the partial clone could not be removed' : 'the partial clone was removed'}`, { cause: err });
    }
    if (err instanceof Error && 'code' in err && err.code === 'BAD_ARGUMENT' && (err as { path?: string }).path === undefined && options.size !== undefined && /clone size/.test(err.message)) {
      throw usageFailure(`--size ${options.size}: ${err.message}`, file);
    }
    throw err;
  } finally {
    stopListening();
  }
  print(
    options.json,
    { volume: file, snapshot: name, clone: target, sizeBytes: result.sizeBytes, forks: result.forks, dataBlocks: result.dataBlocks, catalogPages: result.catalogPages },
    `cloned snapshot ${name} of ${file} into ${target}: ${plural(result.forks, 'fork')}, ${plural(result.dataBlocks, 'data block')}, ${formatBytes(result.sizeBytes)} (${result.sizeBytes} bytes)`,
  );
}

const EXIT_HELP = `Exit status: 0 done; 1 missing, locked (an engine holds it) or corrupt volume, or an I/O error;
2 bad usage: a bad name (1..63 of A-Z a-z 0-9 . _ -, not starting with '.' or '-'), a name
taken or missing, a clone target that exists (the volume is left byte for byte as it was).`;

export function addSnapshotCommand(program: Command): Command {
  const snapshot = program
    .command('snapshot')
    .description("keep a volume's durable state under a name: create, list, drop (no engine may hold the volume)")
    .addHelpText('after', `\nExample:\n  $ lamstore snapshot create data.lam before-upgrade\n  $ lamstore snapshot list data.lam --json\n  $ lamstore snapshot drop data.lam before-upgrade\n\n${EXIT_HELP}`);
  snapshot
    .command('create')
    .description("name the volume's durable state; it costs only the blocks later checkpoints replace")
    .argument('<volume>', 'the volume file')
    .argument('<name>', 'the snapshot name')
    .option('--json', 'print one JSON document')
    .action(async (file: string, name: string, options: JsonOption) => {
      await withFile(file, 'snapshot', () => runSnapshotCreate(file, name, options));
    });
  snapshot
    .command('list')
    .description('list the snapshots: name, generation, time, blocks held alone (exclusive)')
    .argument('<volume>', 'the volume file')
    .option('--json', 'print one JSON document { volume, snapshots: [...] }')
    .action(async (file: string, options: JsonOption) => {
      await withFile(file, 'snapshot', () => runSnapshotList(file, options));
    });
  snapshot
    .command('drop')
    .description('drop a snapshot: the blocks it alone held become free')
    .argument('<volume>', 'the volume file')
    .argument('<name>', 'the snapshot name')
    .option('--json', 'print one JSON document')
    .action(async (file: string, name: string, options: JsonOption) => {
      await withFile(file, 'snapshot', () => runSnapshotDrop(file, name, options));
    });
  return snapshot;
}

export function addRollbackCommand(program: Command): Command {
  return program
    .command('rollback')
    .description('make a snapshot the current state of a volume (later changes are gone; the snapshot stays)')
    .argument('<volume>', 'the volume file')
    .argument('<name>', 'the snapshot name')
    .option('--json', 'print one JSON document')
    .addHelpText('after', `\nExample:\n  $ lamstore rollback data.lam before-upgrade\n\nA crash at any point leaves the state before or after.\n${EXIT_HELP}`)
    .action(async (file: string, name: string, options: JsonOption) => {
      await withFile(file, 'rollback', () => runRollback(file, name, options));
    });
}

export function addCloneCommand(program: Command): Command {
  return program
    .command('clone')
    .description("copy a snapshot's forks into a new, compact volume file (the source is not changed)")
    .argument('<volume>', 'the volume file')
    .argument('<name>', 'the snapshot name')
    .argument('<new-volume>', 'the new volume file (must not exist)')
    .option('-s, --size <size>', "the new volume's size (default: twice the snapshot's data plus catalog room, in whole MiB)")
    .option('--json', 'print one JSON document')
    .addHelpText(
      'after',
      `\nExample:\n  $ lamstore clone data.lam before-upgrade copy.lam\n\nThe new file is created like \`lamstore create\` creates one: never over an existing file, and
removed if the clone fails or is stopped (SIGINT, SIGTERM, SIGHUP: exit 128 + the signal).\n${EXIT_HELP}`,
    )
    .action(async (file: string, name: string, target: string, options: CloneOptions) => {
      await withFile(file, 'clone', () => runClone(file, name, target, options));
    });
}
