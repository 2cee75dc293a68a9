/**
 * `lamstore grow <volume> --size <size> [--json]`: make a volume that no engine holds larger
 * (growVolumeFile, volume/grow.ts G1-G5).
 *
 * Invariants:
 *  G1 A bad --size (not a size, not a multiple of the block size, above 1 TiB), a smaller size
 *     (a volume cannot shrink) and the volume's own size are bad usage: exit 2, one line, the
 *     file unchanged byte for byte. A missing, locked or corrupt volume is exit 1 (cli/README.md),
 *     unchanged too: nothing is written before every check passed.
 *  G2 A stop signal (SIGINT, SIGTERM, SIGHUP: cmdline/signals.ts) during the zero-fill stops it
 *     within one 4 MiB chunk; the volume keeps its old size (the file is cut back to its old
 *     length when possible; a longer file left behind is still a valid volume of the old size
 *     and the next grow reuses its tail). A signal after the zero-fill (during the final
 *     fdatasync or the superblock switch) does not undo the grow: the command says the volume
 *     has its new size. Either way the exit is 128 + the signal's number, code INTERRUPTED.
 *  G3 Output: a progress bar with bytes/s while zero-filling when stdout is a terminal and not
 *     --json (create's rule, cli/README.md), then one summary line; `--json` prints one document
 *     `{ path, oldSizeBytes, newSizeBytes, generation }` (path as typed).
 */
import type { Command } from 'commander';
import { ErrorCode, isLamstoreError } from '../engine/index.js';
import { growVolumeFile } from '../volume/index.js';
import type { GrowVolumeResult } from '../volume/index.js';
import { formatBytes, parseSize } from '../cmdline/args.js';
import { CliCode, CliFailure, usageFailure, withFile } from '../cmdline/failure.js';
import { onStopSignals, signalExitCode, type StopSignal } from '../cmdline/signals.js';
import { startProgress } from './progress.js';
import type { Progress } from './progress.js';

export interface GrowOptions {
  size?: string;
  json?: boolean;
}

class Interrupted extends Error {}

export async function runGrow(file: string, options: GrowOptions): Promise<void> {
  if (options.size === undefined) throw usageFailure("option '--size <size>' is required, e.g. --size 2GiB", file);
  const sizeBytes = parseSize(options.size, '--size');
  // The first stop signal names the exit code; later ones change nothing.
  let interrupted: StopSignal | null = null;
  const stopListening = onStopSignals((signal) => {
    interrupted ??= signal;
  });
  let progress: Progress | undefined;
  const startMs = performance.now();
  let result: GrowVolumeResult;
  try {
    result = await growVolumeFile(file, {
      sizeBytes,
      onProgress: ({ doneBytes, totalBytes }) => {
        if (interrupted) throw new Interrupted('interrupted');
        progress ??= startProgress({ stream: process.stdout, label: 'zero-filling', unit: 'bytes', total: totalBytes, enabled: options.json !== true });
        progress.update(doneBytes);
      },
    });
  } catch (err) {
    progress?.stop();
    if (interrupted !== null && (err instanceof Interrupted || (err instanceof Error && err.cause instanceof Interrupted))) {
      throw new CliFailure(signalExitCode(interrupted), CliCode.INTERRUPTED, file, `interrupted (${interrupted}) while zero-filling; the volume keeps its old size`, { cause: err });
    }
    // G1: the size is what is wrong (growVolumeFile names no path for it): say which flag.
    if (isLamstoreError(err) && err.code === ErrorCode.BAD_ARGUMENT && err.path === undefined) throw usageFailure(`--size ${options.size}: ${err.message}`, file);
    throw err;
  } finally {
    stopListening();
  }
  progress?.stop();
  if (interrupted !== null) {
    // G2: the switch was made; undoing it would be another grow's worth of risk for nothing.
    throw new CliFailure(signalExitCode(interrupted), CliCode.INTERRUPTED, file, `interrupted (${interrupted}) after the grow was complete; the volume has its new size, ${result.newSizeBytes} bytes (generation ${result.generation})`);
  }
  if (options.json) {
    const doc = { path: file, oldSizeBytes: result.oldSizeBytes, newSizeBytes: result.newSizeBytes, generation: result.generation };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  const seconds = Math.max((performance.now() - startMs) / 1000, 1e-3);
  const added = result.newSizeBytes - result.oldSizeBytes;
  process.stdout.write(
    `grew ${file}: ${formatBytes(result.oldSizeBytes)} -> ${formatBytes(result.newSizeBytes)} (${result.newSizeBytes} bytes, +${added / result.blockSizeBytes} blocks of ${result.blockSizeBytes}), generation ${result.generation}, in ${seconds.toFixed(2)} s\n`,
  );
}

export function addGrowCommand(program: Command): Command {
  return program
    .command('grow')
    .description('make a volume larger while no engine holds it: zero-fill the new tail, then record the new size')
    .argument('<volume>', 'the volume file')
    .option('-s, --size <size>', 'the new whole size: bytes, or with a unit KiB/MiB/GiB/TiB (k/M/G/T), larger than now, e.g. 2GiB')
    .option('--json', 'print one JSON document { path, oldSizeBytes, newSizeBytes, generation } (errors too)')
    .addHelpText(
      'after',
      `
Example:
  $ lamstore grow data.lam --size 2GiB
  $ lamstore grow data.lam --size 4GiB --json

A crash or a stop at any point leaves the old size or the new one, both valid. A running
engine can grow its own volume instead: volumeExtension({ path, grow: { step, max } }).
Exit status: 0 grown; 1 missing, locked (an engine holds it), corrupt, or an I/O error;
2 bad usage, including a size that is not larger than now (nothing is changed); 128 + the
signal when stopped by SIGINT (Ctrl-C: 130), SIGTERM (143) or SIGHUP (129).`,
    )
    .action(async (file: string, options: GrowOptions) => {
      await withFile(file, 'grow', () => runGrow(file, options));
    });
}
