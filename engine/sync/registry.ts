/**
 * The sync handler registry: PostgreSQL's syncsw[] made dynamic as in the proposed
 * register_sync_handler() patch.
 *
 * Invariants:
 *  R1 The five built-ins hold ids 0..4 in the order of SyncHandlerId (MD, CLOG, COMMIT_TS,
 *     MULTIXACT_OFFSET, MULTIXACT_MEMBER); the table index of a handler equals its id.
 *  R2 Extensions get FIRST_DYNAMIC (5), 6, ... in registration order, and only while the
 *     registry is open (during preload). Afterwards registration throws REGISTRATION_CLOSED and
 *     changes nothing.
 *  R3 NONE (-1) is never a valid dispatch index: an SLRU configured with it issues no requests.
 *
 * The SyncOps contract (what a handler may do):
 *  - `syncFileTag(tag)` makes the file durable, or throws. A thrown error whose code is ENOENT
 *    means "file possibly deleted": the sync phase absorbs once and retries once, and accepts the
 *    miss only if a FORGET/FILTER cancelled the entry meanwhile (behaviours 18, 19). Any other
 *    error puts the engine in the failed state.
 *  - `unlinkFileTag(tag)` removes the file after a checkpoint. It runs after the fact, so it must
 *    not be relied on to fail the checkpoint: ENOENT is silent, anything else is a warning.
 *    A handler without it must never be the target of UNLINK requests.
 *  - `fileTagMatches(filter, candidate)` decides FILTER requests; it is only ever asked about
 *    candidates of its own handler (behaviour 16). A handler without it ignores FILTERs.
 *  - `describeTag(tag)` (optional) names the file in log lines and errors.
 *  - `syncFileTags(tags)` (optional) is `syncFileTag` of each tag, one after another in order, as
 *    one call (md hands the fsyncs to its sync thread as one batch, io/sync-thread.ts). It stops at
 *    the first failure and says which tags succeeded (the first `done`), the failure of the next
 *    one (raw, so ENOENT is seen), and each success's time. The sync phase uses it for the tags
 *    between two of its absorb points (pending-ops.ts P6), never across one.
 */
import { ErrorCode, LamstoreError, assert } from '../errors.js';
import type { FileTag } from './file-tag.js';
import type { FsyncEachResult } from '../io/file-io.js';

export const SyncHandlerId = {
  NONE: -1,
  MD: 0,
  CLOG: 1,
  COMMIT_TS: 2,
  MULTIXACT_OFFSET: 3,
  MULTIXACT_MEMBER: 4,
  FIRST_DYNAMIC: 5,
} as const;

export const SyncRequestType = { SYNC: 0, UNLINK: 1, FORGET: 2, FILTER: 3 } as const;
export type SyncRequestType = (typeof SyncRequestType)[keyof typeof SyncRequestType];

/** PostgreSQL caps the table at INT16_MAX entries. */
export const SYNC_HANDLER_COUNT_MAX = 0x7fff;

export interface SyncOps {
  name: string;
  syncFileTag(tag: FileTag): void | Promise<void>;
  unlinkFileTag?(tag: FileTag): void | Promise<void>;
  fileTagMatches?(filterTag: FileTag, candidateTag: FileTag): boolean;
  describeTag?(tag: FileTag): string;
  syncFileTags?(tags: readonly FileTag[]): Promise<SyncTagsResult>;
}

/** What `syncFileTags` answers: FileIO's fsyncEach answer, read per tag (`done` tags synced). */
export type SyncTagsResult = FsyncEachResult;

export interface SyncHandlerInfo {
  id: number;
  name: string;
  builtin: boolean;
}

export const BUILTIN_HANDLER_NAMES = ['md', 'clog', 'commit_ts', 'multixact_offset', 'multixact_member'] as const;

assert(BUILTIN_HANDLER_NAMES.length === SyncHandlerId.FIRST_DYNAMIC, 'built-ins fill ids 0..FIRST_DYNAMIC-1');
assert(SyncHandlerId.MULTIXACT_MEMBER + 1 === SyncHandlerId.FIRST_DYNAMIC, 'FIRST_DYNAMIC follows the last built-in');
assert(SyncHandlerId.NONE < 0, 'NONE is never a table index');

function checkOps(ops: unknown): SyncOps {
  const o = ops as Partial<SyncOps> | null;
  if (typeof o !== 'object' || o === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'sync handler ops must be an object');
  if (typeof o.name !== 'string' || o.name.length === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'sync handler name must be a non-empty string');
  if (typeof o.syncFileTag !== 'function') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `sync handler "${o.name}" has no syncFileTag callback`);
  for (const k of ['unlinkFileTag', 'fileTagMatches', 'describeTag', 'syncFileTags'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'function') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `sync handler "${o.name}": ${k} must be a function`);
  }
  return o as SyncOps;
}

export class SyncHandlerRegistry {
  readonly #ops: SyncOps[] = [];
  #open = true;

  /** Creates the table with the five built-ins at ids 0..4 (R1). */
  constructor(builtins: readonly SyncOps[]) {
    assert(builtins.length === SyncHandlerId.FIRST_DYNAMIC, 'exactly five built-in sync handlers');
    builtins.forEach((ops, i) => {
      const checked = checkOps(ops);
      assert(checked.name === BUILTIN_HANDLER_NAMES[i], `built-in handler ${i} is ${BUILTIN_HANDLER_NAMES[i]}`);
      this.#ops.push({ ...checked });
    });
  }

  /** Register an extension's handler (R2). Returns its id. */
  register(ops: SyncOps): number {
    if (!this.#open) {
      throw new LamstoreError(ErrorCode.REGISTRATION_CLOSED, `cannot register sync handler "${String((ops as Partial<SyncOps> | null)?.name)}": registration is only allowed during preload`);
    }
    const checked = checkOps(ops);
    if (this.#ops.some((o) => o.name === checked.name)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `a sync handler named "${checked.name}" is already registered`);
    if (this.#ops.length >= SYNC_HANDLER_COUNT_MAX) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `too many sync handlers (at most ${SYNC_HANDLER_COUNT_MAX})`);
    // Copied by value, as the patch copies the ops struct: later changes to the caller's
    // object cannot change dispatch.
    this.#ops.push({ ...checked });
    return this.#ops.length - 1;
  }

  /** End of preload: from now on register() refuses. */
  close(): void {
    this.#open = false;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get count(): number {
    return this.#ops.length;
  }

  /** The ops of a valid handler id; dispatching an unknown id is a programmer error. */
  ops(id: number): SyncOps {
    const ops = this.#ops[id];
    if (ops === undefined) {
      throw new LamstoreError(ErrorCode.UNKNOWN_SYNC_HANDLER, `no sync handler with id ${id} (valid: 0..${this.#ops.length - 1})`);
    }
    return ops;
  }

  has(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.#ops.length;
  }

  idOf(name: string): number | undefined {
    const i = this.#ops.findIndex((o) => o.name === name);
    return i < 0 ? undefined : i;
  }

  list(): SyncHandlerInfo[] {
    return this.#ops.map((o, id) => ({ id, name: o.name, builtin: id < SyncHandlerId.FIRST_DYNAMIC }));
  }
}
