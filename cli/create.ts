/**
 * `lamstore create <volume> --size <size> [--block-size 8192] [--force]`
 *
 * Invariants:
 *  C1 Arguments are checked before the file system is touched: a bad --size or --block-size
 *     (including a size the volume format cannot hold) is exit 2 and creates nothing.
 *  C2 An existing path is refused (exit 1) unless --force; --force never replaces a directory,
 *     nor a file another process holds locked (that would pull a live volume from under it).
 *  C3 No partial file survives: createVolumeFile removes its file on any error, and a stop
 *     signal (SIGINT, SIGTERM, SIGHUP: cmdline/signals.ts) makes the next progress callback throw
 *     (so the same cleanup runs, within one 4 MiB chunk); a signal that arrives after the last
 *     chunk (during the final fdatasync) removes the finished file too, since the user asked
 *     to stop. Interrupted is exit 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM,
 *     129 for SIGHUP), code INTERRUPTED.
 *  C4 Output: a progress bar with bytes/s when stdout is a terminal, else one summary line.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RealIO, ErrorCode, LamstoreError, errnoOf, ioError, isLamstoreError } from '../engine/index.js';
import { checkVolumeGeometry, createVolumeFile } from '../volume/index.js';
import { formatBytes, parseSize } from '../cmdline/args.js';
import { CliCode, CliFailure, EXIT_VOLUME, toFailure, usageFailure, withFile } from '../cmdline/failure.js';
import { onStopSignals, signalExitCode, type StopSignal } from '../cmdline/signals.js';
import { onOpenFile } from '../cmdline/files.js';
import { startProgress } from './progress.js';
import type { Progress } from './progress.js';

export interface CreateOptions {
  size?: string;
  blockSize: string;
  force?: boolean;
}

const BLOCK_SIZE_DEFAULT = '8192';

class Interrupted extends Error {}

/** Refuse or clear the way for the new file (C2). */
async function clearPath(io: RealIO, path: string, file: string, force: boolean): Promise<void> {
  let st;
  try {
    st = await io.stat(path);
  } catch (err) {
    throw ioError('stat', path, err);
  }
  if (!st) return;
  if (st.kind === 'directory') throw new CliFailure(EXIT_VOLUME, CliCode.EXISTS, file, 'is a directory; give the path of a new volume file');
  if (st.kind !== 'file') throw new CliFailure(EXIT_VOLUME, CliCode.EXISTS, file, 'exists and is not a regular file; refusing to replace it');
  if (!force) throw new CliFailure(EXIT_VOLUME, CliCode.EXISTS, file, 'already exists (use --force to replace it)');
  await onOpenFile(io, path, { readOnly: true }, 'unlink', async (handle) => {
    try {
      await io.flock(handle, 'exclusive');
    } catch (err) {
      if (errnoOf(err) === 'EAGAIN') {
        throw new LamstoreError(ErrorCode.VOLUME_LOCKED, `${path}: volume is locked by another process; not replacing it`, { path, cause: err, errno: 'EAGAIN' });
      }
      throw ioError('flock', path, err);
    }
    // Unlinked while the lock is held: no other process can be using the file it removes.
    await io.unlink(path);
  });
}

export async function runCreate(file: string, options: CreateOptions): Promise<void> {
  if (options.size === undefined) throw usageFailure("option '--size <size>' is required, e.g. --size 1GiB", file);
  const sizeBytes = parseSize(options.size, '--size');
  const blockSize = parseSize(options.blockSize, '--block-size');
  const geometry = checkVolumeGeometry(sizeBytes, blockSize);
  if (geometry) throw usageFailure(`--size ${options.size} --block-size ${options.blockSize}: ${geometry}`, file);

  const io = new RealIO();
  const path = resolve(file);
  // The first stop signal names the exit code; later ones change nothing (the stop is under way).
  let interrupted: StopSignal | null = null;
  const stopListening = onStopSignals((signal) => {
    interrupted ??= signal;
  });
  // Started at the first chunk, so a refusal (C2) draws no bar first.
  let progress: Progress | undefined;
  const startMs = performance.now();
  try {
    await clearPath(io, path, file, options.force === true);
    await createVolumeFile(io, path, {
      sizeBytes,
      blockSize,
      onProgress: ({ doneBytes }) => {
        if (interrupted) throw new Interrupted('interrupted');
        progress ??= startProgress({ stream: process.stdout, label: 'zero-filling', unit: 'bytes', total: sizeBytes, enabled: true });
        progress.update(doneBytes);
      },
    });
    if (interrupted !== null) {
      // C3: finished during the final sync, but the user asked to stop.
      try {
        await io.unlink(path);
      } catch (err) {
        throw new CliFailure(signalExitCode(interrupted), CliCode.INTERRUPTED, file, `interrupted (${interrupted}) after the volume was complete; could not remove it: ${errnoOf(err) ?? String(err)}`, { cause: err });
      }
      throw new Interrupted('interrupted');
    }
  } catch (err) {
    progress?.stop();
    if (err instanceof CliFailure) throw err;
    // Only our own stop is reported as the interruption; a real error that came first (ENOSPC
    // in a pwrite) is reported as itself.
    if (interrupted !== null && (err instanceof Interrupted || (err instanceof Error && err.cause instanceof Interrupted))) {
      // createVolumeFile removed the file, or appended to its message why it could not.
      const notRemoved = /could not remove the partial file: (\S+)/.exec(isLamstoreError(err) ? err.message : '');
      const outcome = notRemoved ? `could not remove the partial file: ${notRemoved[1]}` : 'the partial file was removed';
      throw new CliFailure(signalExitCode(interrupted), CliCode.INTERRUPTED, file, `interrupted (${interrupted}); ${outcome}`, { cause: err });
    }
    throw toFailure(err, file, 'create');
  } finally {
    stopListening();
  }
  progress?.stop();
  const seconds = Math.max((performance.now() - startMs) / 1000, 1e-3);
  process.stdout.write(
    `created ${file}: ${formatBytes(sizeBytes)} (${sizeBytes} bytes, ${sizeBytes / blockSize} blocks of ${blockSize}) in ${seconds.toFixed(2)} s, ${formatBytes(Math.round(sizeBytes / seconds))}/s\n`,
  );
}

export function addCreateCommand(program: Command): Command {
  return program
    .command('create')
    .description('create a volume file: zero-fill it to its full size, then write empty metadata')
    .argument('<volume>', 'path of the new volume file')
    .option('-s, --size <size>', 'whole size of the volume: bytes, or with a unit KiB/MiB/GiB/TiB (k/M/G/T), e.g. 1GiB')
    .option('-b, --block-size <bytes>', 'page size: a power of two in 4096..32768', BLOCK_SIZE_DEFAULT)
    .option('-f, --force', 'replace an existing file (not one another process holds open)')
    .addHelpText(
      'after',
      `
Example:
  $ lamstore create data.lam --size 1GiB
  $ lamstore create small.lam --size 64MiB --block-size 4096 --force

Exit status: 0 created; 1 the path exists, is locked, or creation failed (nothing is left
behind); 2 bad usage; 128 + the signal when stopped by SIGINT (Ctrl-C: 130), SIGTERM (143) or
SIGHUP (129), partial file removed.`,
    )
    .action(async (file: string, options: CreateOptions) => {
      await withFile(file, 'create', () => runCreate(file, options));
    });
}
