/**
 * Every error lamstore raises on purpose is a `LamstoreError` with a stable `code`.
 *
 * Callers (the CLI above all) switch on `error.code`, never on `instanceof`: two copies of the
 * package in one process would make `instanceof` lie. The message names the file (or relation)
 * and the problem in one line; the underlying error, when there is one, is kept as `cause`.
 * The table of codes is in engine/README.md; keep the two in step.
 */

export const ErrorCode = {
  /** An argument is malformed: wrong type, out of range, empty name, bad size. */
  BAD_ARGUMENT: 'BAD_ARGUMENT',
  /** A sync handler or storage manager was registered after the preload phase. */
  REGISTRATION_CLOSED: 'REGISTRATION_CLOSED',
  /** A sync or metadata write failed earlier; the engine refuses writes until reopened. */
  ENGINE_FAILED: 'ENGINE_FAILED',
  /** The engine (or a handle of it) was used after close(). */
  ENGINE_CLOSED: 'ENGINE_CLOSED',
  /** Another engine (this process or another) holds the data directory lock. */
  DATADIR_LOCKED: 'DATADIR_LOCKED',
  /** Another writer holds the volume's lock. */
  VOLUME_LOCKED: 'VOLUME_LOCKED',
  /** The volume's superblocks or catalog cannot be trusted. */
  VOLUME_CORRUPT: 'VOLUME_CORRUPT',
  /** No free extent is large enough for the requested growth. */
  VOLUME_FULL: 'VOLUME_FULL',
  /** A page read from disk failed its checksum. */
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  /** A block number at or past the fork's end. */
  BLOCK_OUT_OF_RANGE: 'BLOCK_OUT_OF_RANGE',
  /** A relation fork that was never created (or was dropped). */
  RELATION_NOT_FOUND: 'RELATION_NOT_FOUND',
  /** A storage manager name that nothing registered. */
  UNKNOWN_STORAGE: 'UNKNOWN_STORAGE',
  /** A sync handler id that nothing registered (a file tag's `handler`). */
  UNKNOWN_SYNC_HANDLER: 'UNKNOWN_SYNC_HANDLER',
  /**
   * Every buffer of the pool is pinned by an operation in flight and none is doing I/O that
   * would free one: fewer operations at once, or a larger `sharedBuffers`.
   */
  BUFFERS_EXHAUSTED: 'BUFFERS_EXHAUSTED',
  /** A write, extend, create, truncate, unlink or sync on a volume opened `readOnly`. */
  VOLUME_READ_ONLY: 'VOLUME_READ_ONLY',
  /** A file operation failed; `cause` holds the Node error (its code is in `errno`). */
  IO_ERROR: 'IO_ERROR',
  /** The sync ledger found a write that a completed checkpoint should have covered. */
  SYNC_LEDGER: 'SYNC_LEDGER',
  /** A bounded operation (shutdown checkpoint) ran out of time. */
  TIMEOUT: 'TIMEOUT',
  /** An id space (multixact ids, multixact member offsets) is used up; lamstore refuses to wrap around. */
  ID_SPACE_EXHAUSTED: 'ID_SPACE_EXHAUSTED',
  /** An SLRU or data-directory file does not have the shape it must have. */
  DATA_CORRUPT: 'DATA_CORRUPT',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface LamstoreErrorOptions {
  cause?: unknown;
  /** The file the error is about, when there is one. */
  path?: string;
  /** For IO_ERROR: the Node error code (EIO, ENOSPC, ...) and the syscall. */
  errno?: string;
  syscall?: string;
}

export class LamstoreError extends Error {
  override readonly name = 'LamstoreError';
  readonly code: ErrorCode;
  readonly path: string | undefined;
  readonly errno: string | undefined;
  readonly syscall: string | undefined;
  /**
   * Errors of clean-up steps that failed after this error (closing a handle, cutting a file
   * back, blanking a slot): never the error to report first, never dropped (`cleanUp`).
   */
  readonly suppressed: Error[] = [];

  constructor(code: ErrorCode, message: string, options: LamstoreErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options.path;
    this.errno = options.errno;
    this.syscall = options.syscall;
  }
}

/** True for a LamstoreError of the given code (works across package copies). */
export function isLamstoreError(err: unknown, code?: ErrorCode): err is LamstoreError {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: unknown; code?: unknown };
  if (e.name !== 'LamstoreError') return false;
  return code === undefined || e.code === code;
}

/** The Node error code of an fs error (`ENOENT`, `EIO`, ...), or undefined. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; errno?: unknown; name?: unknown };
  if (e.name === 'LamstoreError') return typeof e.errno === 'string' ? e.errno : undefined;
  return typeof e.code === 'string' ? e.code : undefined;
}

/**
 * Wrap a failed file operation: `IO_ERROR` naming the syscall, the file and the errno. A
 * LamstoreError passes through unchanged so that wrapping twice never hides the first code.
 */
export function ioError(syscall: string, path: string, cause: unknown): LamstoreError {
  if (isLamstoreError(cause)) return cause;
  const errno = errnoOf(cause) ?? 'EUNKNOWN';
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new LamstoreError(ErrorCode.IO_ERROR, `${path}: ${syscall} failed: ${errno} (${detail})`, {
    cause,
    path,
    errno,
    syscall,
  });
}

/**
 * Keep `err`, the failure of a clean-up step `what` run because of `primary`, on primary's
 * `suppressed` list (as Java's addSuppressed): the first error stays the one reported, the
 * second is not lost. A primary that is not an object (a thrown string) cannot carry it: then
 * the clean-up error is thrown, rather than dropped.
 */
export function suppress(primary: unknown, what: string, err: unknown): void {
  const cause = err instanceof Error ? err : new Error(String(err));
  const second = isLamstoreError(err) ? err : new LamstoreError(ErrorCode.IO_ERROR, `${what} failed: ${errnoOf(err) ?? 'EUNKNOWN'} (${cause.message})`, { cause: err, errno: errnoOf(err) });
  if (isLamstoreError(primary)) primary.suppressed.push(second);
  else if (typeof primary === 'object' && primary !== null) {
    const p = primary as { suppressed?: Error[] };
    (p.suppressed ??= []).push(second);
  } else throw second;
}

/**
 * Run a clean-up step on an error path, `primary` being the error on its way out. The step's
 * own failure is kept with suppress(); resolves to whether the step succeeded.
 */
export async function cleanUp(primary: unknown, what: string, step: () => Promise<unknown>): Promise<boolean> {
  try {
    await step();
    return true;
  } catch (err) {
    suppress(primary, what, err);
    return false;
  }
}

/**
 * The messages of the clean-up errors suppressed on an error or on any error of its `cause`
 * chain (a layer that wraps an error keeps what rode on it). Empty for most errors.
 */
export function suppressedOf(err: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  for (let e = err; typeof e === 'object' && e !== null && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const list = (e as { suppressed?: unknown }).suppressed;
    if (Array.isArray(list)) for (const x of list) out.push(x instanceof Error ? x.message : String(x));
  }
  return out;
}

/** Programmer errors: a broken invariant, never bad input. Kept on in production. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`lamstore assertion failed: ${message}`);
}
