/**
 * How the `lamstore` command fails, whichever command ran (cli/'s and bench's alike): every
 * error becomes one `CliFailure` with an exit code, a stable code and a one-line problem,
 * printed as `lamstore: <file>: <problem>` on stderr (and, for `--json`, as
 * `{ "error": { "code", "message" } }` on stdout).
 *
 * Invariants:
 *  E1 One line: the printed problem never contains a newline, and never a stack trace unless
 *     LAMSTORE_DEBUG=1 (then the trace follows the line, on stderr).
 *  E2 The file is named as the user typed it (not the resolved absolute path), once.
 *  E3 Exit codes (the table in cli/README.md): 2 bad usage; 1 a bad volume file (missing, not a
 *     regular file, locked, corrupt, unreadable); `check` alone answers 2 for "could not check"
 *     (missing, not a file, locked, I/O) so that its 1 means "checked, and found damage", as
 *     diff and cmp keep 1 for "different" and 2 for trouble; 128 + the signal's number when
 *     stopped by SIGINT, SIGTERM or SIGHUP (signals.ts: 130 for Ctrl-C).
 */
import { ErrorCode, isLamstoreError, suppressedOf } from '../engine/index.js';
import { UsageError } from './args.js';

export const EXIT_OK = 0;
export const EXIT_VOLUME = 1;
export const EXIT_USAGE = 2;

/** Codes of failures that are not LamstoreErrors. */
export const CliCode = {
  USAGE: 'USAGE',
  EXISTS: 'EXISTS',
  INTERRUPTED: 'INTERRUPTED',
  INTERNAL: 'INTERNAL',
} as const;

export class CliFailure extends Error {
  override readonly name = 'CliFailure';
  constructor(
    readonly exitCode: number,
    readonly code: string,
    /** The file as typed, or undefined when the failure is about no file. */
    readonly file: string | undefined,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(oneLine(problem), options);
  }
}

/** `check` found damage: its report is already printed (a JSON document with --json). */
export class FindingsFailure extends CliFailure {}

export function usageFailure(problem: string, file?: string): CliFailure {
  return new CliFailure(EXIT_USAGE, CliCode.USAGE, file, problem);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory, not a volume file',
  ENOTDIR: 'a component of the path is not a directory',
  EEXIST: 'file exists',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many symbolic links',
};

/** The problem part of a LamstoreError's message, without the path it starts with (E2). */
function problemOf(err: { message: string; path?: string | undefined; code?: string; errno?: string | undefined; syscall?: string | undefined }): string {
  if (err.code === ErrorCode.IO_ERROR && err.errno && ERRNO_TEXT[err.errno]) {
    const syscall = err.syscall ?? 'open';
    // "open failed: no such file or directory (ENOENT)" reads better than Node's own text,
    // which repeats the absolute path.
    return err.errno === 'ENOENT' && (syscall === 'open' || syscall === 'stat')
      ? `no such file or directory (ENOENT)`
      : `${syscall} failed: ${ERRNO_TEXT[err.errno]} (${err.errno})`;
  }
  let message = err.message;
  if (err.path && message.startsWith(`${err.path}: `)) message = message.slice(err.path.length + 2);
  return message;
}

export type CommandKind = 'create' | 'grow' | 'inspect' | 'check' | 'map' | 'snapshot' | 'rollback' | 'clone';

/** Classify any error thrown while a command worked on `file` (E3). */
export function toFailure(err: unknown, file: string | undefined, command?: CommandKind): CliFailure {
  if (err instanceof CliFailure) return err;
  if (err instanceof UsageError) return new CliFailure(EXIT_USAGE, CliCode.USAGE, file, err.message, { cause: err });
  if (isLamstoreError(err)) {
    const problem = problemOf(err);
    // BAD_ARGUMENT without a path is an option the user gave; with a path it is the file
    // (a directory or a FIFO where a volume was expected).
    if (err.code === ErrorCode.BAD_ARGUMENT && err.path === undefined) return new CliFailure(EXIT_USAGE, err.code, file, problem, { cause: err });
    const couldNotRead = err.code === ErrorCode.IO_ERROR || err.code === ErrorCode.VOLUME_LOCKED || err.code === ErrorCode.BAD_ARGUMENT;
    const exit = command === 'check' && couldNotRead ? EXIT_USAGE : EXIT_VOLUME;
    return new CliFailure(exit, err.code, file, problem, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CliFailure(EXIT_VOLUME, CliCode.INTERNAL, file, message, { cause: err });
}

/** Run a command's work on `file`, turning whatever it throws into a CliFailure naming it. */
export async function withFile(file: string, command: CommandKind, work: () => Promise<void>): Promise<void> {
  if (file === '') throw usageFailure('the volume path is empty');
  try {
    await work();
  } catch (err) {
    throw toFailure(err, file, command);
  }
}

export interface FailureOutput {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** Print a failure (E1): one stderr line, the JSON object on stdout when asked for. */
export function printFailure(f: CliFailure, json: boolean, out: FailureOutput = process): void {
  out.stderr.write(`lamstore: ${f.file !== undefined ? `${f.file}: ` : ''}${f.message}\n`);
  // Clean-up steps that failed after the error (errors.ts suppress): one line each, under it.
  const also = suppressedOf(f.cause);
  for (const line of also) out.stderr.write(`lamstore: also: ${oneLine(line)}\n`);
  if (process.env.LAMSTORE_DEBUG === '1') {
    const inner = f.cause instanceof Error ? f.cause : f;
    out.stderr.write(`${inner.stack ?? String(inner)}\n`);
  }
  if (json) {
    const message = f.file !== undefined ? `${f.file}: ${f.message}` : f.message;
    out.stdout.write(`${JSON.stringify({ error: also.length > 0 ? { code: f.code, message, suppressed: also } : { code: f.code, message } }, null, 2)}\n`);
  }
}
