/**
 * The storage manager interface (PostgreSQL's f_smgr) and what a storage manager gets from the
 * engine. `md` is built in; extensions add theirs by name through the preload context.
 *
 * Contract for implementations:
 *  - Pages are `blockSize` bytes. A storage manager moves bytes; it does not compute or verify
 *    page checksums (the buffer pool does, on every write and every read from disk).
 *  - Every write or extend that dirties a file registers a SYNC request for it (through
 *    `ctx.trySyncRequest` or `ctx.registerSyncRequest`), unless the relation is unlogged. If the queue refuses the
 *    request, the storage manager syncs the file itself at once and counts it with
 *    `ctx.countBackendFsync()`; a failure of that sync goes to `ctx.reportSyncFailure`.
 *  - Errors are LamstoreErrors: RELATION_NOT_FOUND for a fork never created, BLOCK_OUT_OF_RANGE
 *    for a block past the end, IO_ERROR (errno kept) for a failed file operation.
 *  - `unlink` runs after the fact (a drop is already decided): it should not fail on a missing
 *    file, and what it removes later (after a checkpoint) it removes through UNLINK requests.
 *  - `checkpointBegin`/`checkpointEnd` (optional) bracket each checkpoint, so a storage manager
 *    can group its work per checkpoint (the volume's sync epoch) and release space the durable
 *    state no longer references.
 *
 * The write contract (`writeBuffers`), the one way pages of existing blocks reach storage:
 *  W1 BufferSync hands each storage manager its dirty buffers as batches in BufferSync order
 *     (sorted by buffer tag: tablespace, relNumber, dbOid, fork, block; tablespaces interleaved
 *     range by range); an eviction hands over a batch of one. Every page already carries its
 *     checksum and every block is below nblocks.
 *  W2 The storage manager decides how to issue them: which pages become one vectored write,
 *     and how many writes are in flight at once (md: consecutive blocks of one segment per
 *     pwritev, a batch's writes to many files as one FileIO pwriteEach, which RealIO makes on
 *     its sync thread; the volume: adjacent volume blocks per pwritev, across forks).
 *  W3 It resolves once every write it issued has finished. If any failed it rejects with the
 *     first error, and only after the others in flight have finished: a caller never retries a
 *     page while an older copy of it may still land.
 *  W4 Every write that succeeded has registered its sync request (as extend does) by the time
 *     it resolves or rejects, so a page written is never left out of the next checkpoint.
 */
import type { FileIO } from '../io/file-io.js';
import type { Clock } from '../clock.js';
import type { FileTag } from '../sync/file-tag.js';
import type { SyncRequestType } from '../sync/registry.js';
import type { RelFileLocator } from '../relfile.js';
import { ForkNumber } from '../relfile.js';

export type Persistence = 'permanent' | 'unlogged';

/**
 * Whether a fork is unlogged, the one rule md, the volume and the buffer pool follow: every fork
 * of an unlogged relation is, except INIT. Unlogged forks register no sync requests and ordinary
 * checkpoints neither write nor sync them (only the shutdown checkpoint does); the INIT fork is
 * permanent because the reset after an unclean stop copies it over MAIN, so it must be durable.
 */
export function isUnloggedFork(persistence: Persistence, fork: number): boolean {
  return persistence === 'unlogged' && fork !== ForkNumber.INIT;
}

/**
 * Who hands the pages over: BufferSync during a checkpoint, or the buffer pool evicting a dirty
 * page (or a caller writing through). A copy-on-write storage manager keeps free space for the
 * checkpoint's writes and may refuse other writes that would eat into it (the volume's V5).
 */
export type WriteOrigin = 'checkpoint' | 'eviction';

/** What one writeBuffers call did. */
export interface WriteResult {
  /** Write calls issued (pwrite/pwritev). */
  writes: number;
  /** Contiguous stretches written (a stretch longer than IOV_MAX pages takes several calls). */
  runs: number;
  /** Pages written to a block other than the one they had (copy-on-write; 0 for md). */
  relocated: number;
}

/** One page of a BufferSync batch (or an eviction write): block `blockNum` of the fork. */
export interface PageWrite {
  rel: RelFileLocator;
  fork: ForkNumber;
  blockNum: number;
  page: Uint8Array;
}

export interface StorageManager {
  readonly name: string;
  /**
   * smgropen: a relation handle is made with this persistence. It is fixed from here on (an
   * unlogged relation stays unlogged while the engine runs), so no other call repeats it. A
   * relation never opened is permanent. Synchronous and without I/O.
   */
  open(rel: RelFileLocator, persistence: Persistence): void;
  create(rel: RelFileLocator, fork: ForkNumber): Promise<void>;
  exists(rel: RelFileLocator, fork: ForkNumber): Promise<boolean>;
  /** Add block `blockNum` (= current nblocks) with the given bytes. */
  extend(rel: RelFileLocator, fork: ForkNumber, blockNum: number, page: Uint8Array): Promise<void>;
  /** Read one block into `into` (blockSize bytes). */
  read(rel: RelFileLocator, fork: ForkNumber, blockNum: number, into: Uint8Array): Promise<void>;
  /**
   * The one write contract (W1-W4 above): write existing blocks of any forks of this storage.
   */
  writeBuffers(pages: readonly PageWrite[], origin: WriteOrigin): Promise<WriteResult>;
  nblocks(rel: RelFileLocator, fork: ForkNumber): Promise<number>;
  truncate(rel: RelFileLocator, fork: ForkNumber, nblocks: number): Promise<void>;
  /** Drop the fork (or every fork when `fork` is undefined). */
  unlink(rel: RelFileLocator, fork?: ForkNumber): Promise<void>;
  /** Make the fork durable now, without waiting for a checkpoint. */
  immediateSync(rel: RelFileLocator, fork: ForkNumber): Promise<void>;
  /** Register sync requests for everything of the fork (after writes made with skipFsync). */
  registerSync(rel: RelFileLocator, fork: ForkNumber): Promise<void>;
  /**
   * Optional writeback hint (smgrwriteback): blocks `blockNum`..`blockNum + nblocks - 1`, all
   * written already, may be pushed towards the device now; do not wait for them. Makes nothing
   * durable and must not open files or register sync requests. BufferSync calls it with merged
   * runs of the buffers it wrote (engine/buffer/writeback.ts); a storage manager without it gets
   * no hints.
   */
  writeback?(rel: RelFileLocator, fork: ForkNumber, blockNum: number, nblocks: number): Promise<void>;
  checkpointBegin?(): Promise<void> | void;
  checkpointEnd?(completed: boolean): Promise<void> | void;
  /** Shutdown checkpoint: make unlogged forks written since the last one durable. */
  syncUnlogged?(): Promise<number>;
  /** After an unclean stop: reset every unlogged relation's main fork from its INIT fork. */
  resetUnlogged?(): Promise<number>;
  /** Release files and locks at engine close. */
  close?(): Promise<void>;
}

/** What the engine hands a storage manager factory. */
export interface SmgrContext {
  readonly io: FileIO;
  readonly dataDir: string;
  readonly blockSize: number;
  readonly clock: Clock;
  /** Engine option `relSegBlocks` (md's segment size in blocks). */
  readonly relSegBlocks: number;
  /** Engine option `sharedBuffers`: at most this many pages are dirty at once. */
  readonly sharedBuffers: number;
  /** Engine option `maxOpenFiles`. */
  readonly maxOpenFiles: number;
  /**
   * Engine option `fsync` (PostgreSQL's enableFsync). When false, checkpoints call no sync
   * handler, so a storage manager that publishes metadata at its sync (the volume) must do so
   * at `checkpointEnd` instead: `fsync: false` skips flushes, never a metadata write.
   */
  readonly enableFsync: boolean;
  /**
   * Engine option `dataSyncRetry`: a failed sync fails the checkpoint only, and the next
   * checkpoint syncs again. A storage manager keeps what it needs to retry.
   */
  readonly dataSyncRetry: boolean;
  /**
   * RegisterSyncRequest: queue a request for the checkpointer. For SYNC with
   * `retryOnError` false it may return false (queue full): sync the file yourself. Other types
   * retry every 10 ms until accepted.
   */
  registerSyncRequest(tag: FileTag, type: SyncRequestType, retryOnError: boolean): Promise<boolean>;
  /**
   * The same without waiting (`retryOnError` false): true when the request was taken, false when
   * the queue is full (sync the file yourself). What a write path registering every file it
   * wrote calls: a thousand files cost no promise each.
   *
   * `origin`: the write's, as writeBuffers got it. 'checkpoint' (a checkpoint's own batch) goes
   * straight into the checkpointer's table and is always taken, as every request the
   * checkpointer makes itself (behaviour 30): BufferSync runs outside the async context that
   * marks the checkpointer's other work (engine.ts, `inCheckpointer`), so this is how its
   * writes say whose they are. Left out, such a request is queued like a backend's; the queue
   * is absorbed before the sync phase's cycle bump, so the same checkpoint still syncs it.
   */
  trySyncRequest(tag: FileTag, type: SyncRequestType, origin?: WriteOrigin): boolean;
  /** Count a file the storage manager synced itself because the queue was full. */
  countBackendFsync(): void;
  /**
   * The sync ledger must not hold this write against a checkpoint (an unlogged fork's page in a
   * shared file, which only the shutdown checkpoint owes durability). Call it before the write.
   */
  exemptFromLedger?(path: string, offsetBytes: number, lengthBytes: number): void;
  /** A sync this storage manager made itself failed: the engine enters the failed state. */

  reportSyncFailure(err: unknown): never;
}

export type StorageManagerFactory = (ctx: SmgrContext) => StorageManager | Promise<StorageManager>;
