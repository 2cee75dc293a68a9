/**
 * Engine: opens a data directory, runs the preload phase, owns the checkpointer.
 *
 * Lifecycle:
 *   open  -> lock the data directory -> read the control file (control-file.ts): its state says
 *            whether the last engine stopped cleanly -> after an unclean stop, the startup sync
 *            -> control file "in production" -> built-in sync handlers 0..4 -> preload (each
 *            extension's init(ctx) may register sync handlers and storage managers) ->
 *            registration closed -> SLRUs (their positions from the control file)
 *   run   -> relations, SLRUs, sync requests, checkpoints (each completed one rewrites the
 *            control file)
 *   close -> control file "shutting down" -> shutdown checkpoint (which writes "shut down") ->
 *            storage managers closed -> lock released
 *
 * The failed state (PostgreSQL PANICs for the same reasons; SQLite's pager ERROR state):
 *   F1 a sync (fsync/fdatasync) of any file fails, in the sync phase or in a storage manager's
 *      own fallback sync, or an SLRU's (queue-full fallback, directory);
 *   F2 a storage manager reports a failed metadata switch (through reportSyncFailure);
 *   F3 a write or fsync of the control file fails (control-file.ts CF4), `dataSyncRetry` or not:
 *      like a volume's superblock, it is the switch that says what is durable.
 * After either, every write, extend, truncate, drop and checkpoint throws ENGINE_FAILED until
 * the engine is closed and opened again: the kernel may have dropped the dirty pages a later
 * sync would then falsely report durable. Reads keep working.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { join, resolve } from 'node:path';
import { ErrorCode, LamstoreError, assert, errnoOf, ioError } from './errors.js';
import { checkOptionKeys, optionKeys } from './options.js';
import type { FileHandle, FileIO } from './io/file-io.js';
import { CountingIO, type IoCounts } from './io/counting-io.js';
import { RealIO, openFilesLimit } from './io/real-io.js';
import { SyncLedgerIO } from './io/sync-ledger.js';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import type { FileTag } from './sync/file-tag.js';
import { checkFileTag, fileTagKey } from './sync/file-tag.js';
import type { SyncHandlerInfo, SyncOps } from './sync/registry.js';
import { SyncHandlerId, SyncHandlerRegistry, SyncRequestType } from './sync/registry.js';
import { PendingOps } from './sync/pending-ops.js';
import { mdSyncOps } from './md/sync-ops.js';
import { SLRU_DIRS, slruSyncOps } from './slru/names.js';
import type { SmgrContext, StorageManager, StorageManagerFactory, WriteOrigin } from './smgr/smgr.js';
import { MAX_OPEN_FILES_DEFAULT, MAX_OPEN_FILES_MIN, MD_NAME, MdStorageManager, defaultMaxOpenFiles } from './md/md.js';
import { PENDING_UNLINKS_FILE } from './md/pending-unlinks.js';
import { BufferPool } from './buffer/buffer-pool.js';
import { CHECKPOINT_FLUSH_AFTER_DEFAULT, WRITEBACK_MAX_PENDING_FLUSHES } from './buffer/writeback.js';
import { Relation, type RelationHost, type RelationOptions } from './relation.js';
import { KeyedMutex } from './mutex.js';
import { checkLocator } from './relfile.js';
import type { RelFileLocator } from './relfile.js';
import { Checkpointer, CheckpointFlags, CHECKPOINT_TIMEOUT_MS_DEFAULT, COMPLETION_TARGET_DEFAULT, type CheckpointStats } from '../checkpointer/checkpointer.js';
import type { SlruContext } from './slru/slru.js';
import { SLRU_BUFFER_COUNT_DEFAULT } from './slru/slru.js';
import { Clog } from './slru/clog.js';
import { CommitTs } from './slru/commit-ts.js';
import { MultiXact } from './slru/multixact.js';
import { defaultSyncQueueSize } from '../checkpointer/request-queue.js';
import { CONTROL_FILE_NAME, ControlFile, ControlState, INITIAL_SLRU_POSITIONS } from './control-file.js';
import type { ControlRecord, SlruPositions } from './control-file.js';
import { Mutex } from './mutex.js';

/**
 * The checkpointer declares its statistics; they are part of the engine's API (what
 * `checkpoint()` resolves to), so they leave through here: only this file imports checkpointer/.
 */
export type { CheckpointStats };

export interface EngineOptions {
  /** Created when missing. */
  dataDir: string;
  /** Page size in bytes: a power of two in 4096..32768. @default 8192 */
  blockSize?: number;
  /** Buffer pool size in pages. @default 16384 */
  sharedBuffers?: number;
  /** md segment size in blocks. @default 131072 */
  relSegBlocks?: number;
  /**
   * Open md segment files kept at most. @default min(1000, half the process's open-file limit):
   * PostgreSQL's max_files_per_process, so a checkpoint over up to a thousand one-segment
   * relations opens and closes nothing (md.ts M7a says why)
   */
  maxOpenFiles?: number;
  /**
   * PostgreSQL's `fsync`: false makes checkpoints skip every flush (no sync callback runs), never
   * a write: storage managers still write their metadata (SmgrContext.enableFsync). @default true
   */
  fsync?: boolean;
  /** PostgreSQL's `data_sync_retry`: a failed sync fails the checkpoint only. @default false */
  dataSyncRetry?: boolean;
  /**
   * Sync calls the checkpoint's sync phase keeps in flight. 1 is PostgreSQL's loop (one fsync
   * after another); more lets the thread pool overlap them, a deliberate step past PostgreSQL
   * (pending-ops.ts P5) that the bench shows beside it. At most 1024. @default 1
   */
  syncConcurrency?: number;
  /** Request queue capacity. @default sharedBuffers (PostgreSQL: one slot per buffer) */
  syncQueueSize?: number;
  checkpointTimeoutMs?: number;
  maxDirtyBytes?: number;
  completionTarget?: number;
  /**
   * PostgreSQL's `checkpoint_flush_after`, in blocks: after this many buffers written by a
   * checkpoint, ask the storage managers to start writing them back (a hint; md's reaches
   * FileIO.writeback). 0 disables; at most 256. No hints when `fsync` is false. @default 32
   */
  checkpointFlushAfter?: number;
  preload?: readonly Extension[];
  /** Page buffers of each SLRU (clog, commit_ts, multixact offsets, multixact members). @default 32 */
  slruBuffers?: number;
  io?: FileIO;
  clock?: Clock;
  /** Receives log lines (checkpoint complete, warnings). Silent by default. */
  onLog?: (line: string) => void;
  /**
   * The sync ledger: fail a checkpoint (SYNC_LEDGER) that leaves a write from before its start
   * unsynced. @default true when the environment sets LAMSTORE_VERIFY_SYNC=1 (the test suite does)
   */
  verifySync?: boolean;
}

/** What an extension's init receives during preload. */
export interface PreloadContext {
  readonly io: FileIO;
  readonly dataDir: string;
  readonly blockSize: number;
  readonly clock: Clock;
  /** The last engine stopped uncleanly: make your files durable before trusting them. */
  readonly uncleanStart: boolean;
  /** Engine option `fsync` (as SmgrContext.enableFsync), for an extension's own sync handler. */
  readonly enableFsync: boolean;
  /** Engine option `dataSyncRetry` (as SmgrContext.dataSyncRetry). */
  readonly dataSyncRetry: boolean;
  /** Engine option `sharedBuffers` (as SmgrContext.sharedBuffers). */
  readonly sharedBuffers: number;
  /** Register a sync handler; returns its id (5, 6, ... in order). Only during preload. */
  registerSyncHandler(ops: SyncOps): number;
  /** Register a storage manager by name. Only during preload. */
  registerStorageManager(name: string, factory: StorageManagerFactory): void;
}

export interface Extension {
  name: string;
  init(ctx: PreloadContext): void | Promise<void>;
}

export const BLOCK_SIZE_DEFAULT = 8192;
export const SHARED_BUFFERS_DEFAULT = 16384;
/** 1 GiB of 8 KiB blocks, PostgreSQL's RELSEG_SIZE. */
export const REL_SEG_BLOCKS_DEFAULT = 131072;
/** md's fd cache cap (md.ts M7a); the effective default also depends on the open-file limit. */
export { MAX_OPEN_FILES_DEFAULT };
/** RegisterSyncRequest's retry interval for requests that must not be lost. */
export const SYNC_REQUEST_RETRY_MS = 10;

const LOCK_FILE = 'lamstore.lock';
/** What the control file's creation leaves behind when a crash cuts it (control-file.ts CF3). */
const CONTROL_TMP_FILE = `${CONTROL_FILE_NAME}.tmp`;

export interface OpenStats {
  /** The previous engine did not close cleanly (crash, kill, failed shutdown checkpoint). */
  uncleanStop: boolean;
  /** Startup sync after an unclean stop: files fsynced, directories fsynced, time taken. */
  startupSyncFiles: number;
  startupSyncDirs: number;
  startupSyncMs: number;
  /** Unlogged relations whose main fork was reset from their INIT fork (after an unclean stop). */
  unloggedReset: number;
  /**
   * md relations dropped before the last stop whose placeholder no checkpoint had unlinked,
   * removed by this open (md/pending-unlinks.ts PU5).
   */
  pendingUnlinksFinished: number;
}

function intOption(name: string, value: unknown, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option ${name} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

function numberOption(name: string, value: unknown, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option ${name} must be a number in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

/** Exactly the fields of EngineOptions (optionKeys makes the compiler hold the two together). */
const ENGINE_OPTION_KEYS = optionKeys<EngineOptions>({
  dataDir: true,
  blockSize: true,
  sharedBuffers: true,
  relSegBlocks: true,
  maxOpenFiles: true,
  fsync: true,
  dataSyncRetry: true,
  syncConcurrency: true,
  syncQueueSize: true,
  checkpointTimeoutMs: true,
  maxDirtyBytes: true,
  completionTarget: true,
  checkpointFlushAfter: true,
  preload: true,
  slruBuffers: true,
  io: true,
  clock: true,
  onLog: true,
  verifySync: true,
});
const RELATION_OPTION_KEYS = optionKeys<RelationOptions>({ storage: true, persistence: true });
const CHECKPOINT_OPTION_KEYS = optionKeys<{ fast?: boolean }>({ fast: true });
const CLOSE_OPTION_KEYS = optionKeys<{ timeoutMs?: number }>({ timeoutMs: true });

export function checkBlockSize(value: unknown, what = 'blockSize'): number {
  const v = intOption(what, value, BLOCK_SIZE_DEFAULT, 4096, 32768);
  if ((v & (v - 1)) !== 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option ${what} must be a power of two in 4096..32768, got ${v}`);
  return v;
}

/**
 * Set while a step of an engine's checkpoint runs (its requests go straight to pendingOps); the
 * store is that engine. Not during BufferSync: its writes carry WriteOrigin 'checkpoint' to
 * trySyncRequest instead (checkpointer.ts, runAsCheckpointer), since a checkpoint's write phase
 * makes most of its promises and each would pay the promise hook described below.
 *
 * One for the module, not one per engine: Node keeps every AsyncLocalStorage that ever ran in a
 * global list until disable(), and walks that list for every promise and async resource created
 * in the process, so one per engine made each Engine.open slow down every later async operation
 * for good (found by the fault loop).
 *
 * And disabled whenever no checkpoint step runs in the process (`checkpointsRunning` reaches 0): an
 * enabled AsyncLocalStorage keeps Node's promise hook on, which runs JavaScript for every promise
 * the process creates, so after the first checkpoint every engine call (a buffer hit's one
 * promise included) and every await of the next checkpoint paid for it: buffer-hit readInto ran
 * 15-40% slower once a checkpoint had run. run() enables it again.
 */
const inCheckpointer = new AsyncLocalStorage<Engine>();
let checkpointsRunning = 0;

async function runAsCheckpointer<T>(engine: Engine, fn: () => Promise<T>): Promise<T> {
  checkpointsRunning++;
  try {
    return await inCheckpointer.run(engine, fn);
  } finally {
    // Outside every checkpoint getStore() is undefined anyway, so nothing can tell the difference.
    if (--checkpointsRunning === 0) inCheckpointer.disable();
  }
}

/** A control file write (Engine#writeControl): what changes besides the SLRU positions. */
interface ControlChange {
  state?: ControlState | undefined;
  /** A completed checkpoint: its number and its start, wall-clock ms. */
  checkpoint?: { number: number; timeMs: number };
  /** Skip the write when state and positions are what the file already says. */
  onlyIfMoved?: boolean;
}

interface QueuedRequest {
  type: SyncRequestType;
  tag: FileTag;
}

export class Engine {
  readonly dataDir: string;
  readonly blockSize: number;
  readonly sharedBuffers: number;
  readonly relSegBlocks: number;
  readonly maxOpenFiles: number;
  readonly io: CountingIO;
  readonly clock: Clock;
  /** The sync ledger, when `verifySync` is on. */
  readonly ledger: SyncLedgerIO | null;
  readonly #options: EngineOptions;
  readonly #registry: SyncHandlerRegistry;
  readonly #pending: PendingOps;
  readonly #checkpointer: Checkpointer<QueuedRequest>;
  readonly #smgrFactories = new Map<string, StorageManagerFactory>();
  readonly #smgrs = new Map<string, StorageManager>();
  /** md, the built-in storage manager (also in #smgrs): sync handler 0 and the ledger ask it. */
  readonly #md: MdStorageManager;
  readonly #pool: BufferPool;
  readonly #relationLocks = new KeyedMutex();
  #relationHost: RelationHost | null = null;
  #lockHandle: FileHandle | null = null;
  /** What opening found and did. */
  readonly openStats: OpenStats = { uncleanStop: false, startupSyncFiles: 0, startupSyncDirs: 0, startupSyncMs: 0, unloggedReset: 0, pendingUnlinksFinished: 0 };
  #clog: Clog | null = null;
  #commitTs: CommitTs | null = null;
  #multixact: MultiXact | null = null;
  #failure: LamstoreError | null = null;
  #closed = false;
  /** The control file (control-file.ts), read and written by open, checkpoints and close. */
  #control: ControlFile | null = null;
  /** Control file writes one at a time (a checkpoint's and a truncation's may meet). */
  readonly #controlMutex = new Mutex();
  /** The state the control file says, or is about to say (CF5). */
  #controlState: ControlState = ControlState.IN_PRODUCTION;
  #checkpointNumber = 0;
  #checkpointTimeMs = 0;
  /** The SLRU positions the control file gave at open; the SLRUs' own once they are open. */
  #positions: SlruPositions = { ...INITIAL_SLRU_POSITIONS };
  /** What this open found and created, so that a failed open can undo it (#undoOpen). */
  #createdDataDir = false;
  #controlFound: ControlRecord | null = null;
  #controlWritten = false;

  /**
   * Builds every part once, whole, in dependency order, and does no I/O (open does that). The
   * closures handed to parts reach only fields assigned here, and are called only after the
   * constructor has returned: the ledger asks md about a path at the end of a checkpoint, and md
   * reaches the checkpointer through its context when it registers a request.
   */
  private constructor(options: EngineOptions) {
    this.#options = options;
    this.dataDir = resolve(options.dataDir);
    this.blockSize = checkBlockSize(options.blockSize);
    this.sharedBuffers = intOption('sharedBuffers', options.sharedBuffers, SHARED_BUFFERS_DEFAULT, 16, 1 << 24);
    this.relSegBlocks = intOption('relSegBlocks', options.relSegBlocks, REL_SEG_BLOCKS_DEFAULT, 1, 0x7fff_ffff);
    this.maxOpenFiles = intOption('maxOpenFiles', options.maxOpenFiles, defaultMaxOpenFiles(openFilesLimit()), MAX_OPEN_FILES_MIN, 1 << 20);
    const base = options.io ?? new RealIO();
    const verifySync = (options.verifySync ?? process.env.LAMSTORE_VERIFY_SYNC === '1') && options.fsync !== false;
    // L3 of sync-ledger.ts: unlogged segments are md's to name.
    const ledger = verifySync ? new SyncLedgerIO(base, { exempt: (path) => this.#md.isUnloggedFile(path) }) : null;
    this.ledger = ledger;
    this.io = new CountingIO(ledger ?? base);
    this.clock = options.clock ?? systemClock;
    // md is built in: here, before preload, so extensions see it registered.
    const md = new MdStorageManager(this.#smgrContext());
    this.#md = md;
    this.#smgrs.set(MD_NAME, md);
    // The five built-ins first, so they hold ids 0..4 whatever the extensions do (R1). md syncs
    // and unlinks its tags itself (fd cache, directory durability: md.ts M6, M9).
    this.#registry = new SyncHandlerRegistry([
      mdSyncOps({ io: this.io, dataDir: this.dataDir, syncSegment: (tag) => md.syncSegment(tag), syncSegments: (tags) => md.syncSegments(tags), unlinkSegment: (tag) => md.unlinkTombstone(tag) }),
      slruSyncOps('clog', this.io, this.dataDir, SLRU_DIRS[SyncHandlerId.CLOG]!),
      slruSyncOps('commit_ts', this.io, this.dataDir, SLRU_DIRS[SyncHandlerId.COMMIT_TS]!),
      slruSyncOps('multixact_offset', this.io, this.dataDir, SLRU_DIRS[SyncHandlerId.MULTIXACT_OFFSET]!),
      slruSyncOps('multixact_member', this.io, this.dataDir, SLRU_DIRS[SyncHandlerId.MULTIXACT_MEMBER]!),
    ]);
    this.#pending = new PendingOps(this.#registry);
    this.#pool = new BufferPool({
      nBuffers: this.sharedBuffers,
      blockSize: this.blockSize,
      smgr: (name) => this.storageManager(name),
      checkpointFlushAfter: intOption('checkpointFlushAfter', options.checkpointFlushAfter, CHECKPOINT_FLUSH_AFTER_DEFAULT, 0, WRITEBACK_MAX_PENDING_FLUSHES),
      enableFsync: options.fsync !== false,
      // A page changed in memory: not idle any more, and maybe over maxDirtyBytes (K4).
      onDirty: (dirtyBuffers) => {
        this.#checkpointer.noteActivity();
        this.#checkpointer.noteDirtyBytes(dirtyBuffers * this.blockSize);
      },
    });
    const syncConcurrency = intOption('syncConcurrency', options.syncConcurrency, 1, 1, 1024);
    const queueSize = intOption('syncQueueSize', options.syncQueueSize, defaultSyncQueueSize(this.sharedBuffers), 1, 10_000_000);
    this.#checkpointer = new Checkpointer<QueuedRequest>({
      sync: {
        remember: (r) => this.#pending.remember(r.tag, r.type),
        preCheckpoint: (absorb) => this.#pending.preCheckpoint(absorb),
        processSyncRequests: (o) => this.#pending.processSyncRequests({ ...o, concurrency: syncConcurrency }),
        postCheckpoint: (o) => this.#pending.postCheckpoint(o),
      },
      participants: {
        ioCounts: () => this.io.counts(),
        bufferSync: (pace, o) => this.#pool.bufferSync(pace, o),
        syncUnlogged: async () => {
          for (const s of this.#smgrs.values()) await s.syncUnlogged?.();
        },
        bufferCount: () => this.sharedBuffers,
        dirtyPageCount: () =>
          this.#pool.dirtyCount() +
          (this.#clog?.slru.dirtyPageCount() ?? 0) +
          (this.#commitTs?.slru.dirtyPageCount() ?? 0) +
          (this.#multixact ? this.#multixact.offsets.dirtyPageCount() + this.#multixact.members.dirtyPageCount() : 0),
        onSyncFailure: (err) => {
          if (!options.dataSyncRetry) this.#enterFailedState(err);
        },
        // The SLRU checkpoint (CheckPointCLOG, CheckPointCommitTs, CheckPointMultiXact).
        checkpointSlrus: async () => {
          await this.#clog?.checkpoint();
          await this.#commitTs?.checkpoint();
          await this.#multixact?.checkpoint();
        },
        storageBegin: async () => {
          for (const s of this.#smgrs.values()) await s.checkpointBegin?.();
        },
        storageEnd: async (completed) => {
          for (const s of this.#smgrs.values()) await s.checkpointEnd?.(completed);
        },
        runAsCheckpointer: (fn) => runAsCheckpointer(this, fn),
        // K7 / CF5 (b): the checkpoint is complete once this is durable.
        updateControlFile: async ({ shutdown, startMs }) => {
          const timeMs = Math.max(0, Math.round(this.#wallNow() - (this.clock.now() - startMs)));
          await this.#writeControlOrFail({ state: shutdown ? ControlState.SHUT_DOWN : undefined, checkpoint: { number: this.#checkpointNumber + 1, timeMs } });
        },
        beginVerifyEpoch: ledger ? () => ledger.beginEpoch() : undefined,
        verifySynced: ledger ? (epoch) => ledger.verify(epoch) : undefined,
      },
      clock: this.clock,
      queueSize,
      keyOf: (r) => `${r.type}:${fileTagKey(r.tag)}`,
      enableFsync: options.fsync !== false,
      checkpointTimeoutMs: intOption('checkpointTimeoutMs', options.checkpointTimeoutMs, CHECKPOINT_TIMEOUT_MS_DEFAULT, 1, 86_400_000),
      maxDirtyBytes: options.maxDirtyBytes === undefined ? undefined : intOption('maxDirtyBytes', options.maxDirtyBytes, 0, 0, Number.MAX_SAFE_INTEGER),
      completionTarget: numberOption('completionTarget', options.completionTarget, COMPLETION_TARGET_DEFAULT, 0, 1),
      onLog: options.onLog,
    });
  }

  static async open(options: EngineOptions): Promise<Engine> {
    if (typeof options !== 'object' || options === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'Engine.open needs an options object');
    checkOptionKeys(options, ENGINE_OPTION_KEYS, 'Engine.open()');
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'option dataDir must be a non-empty path');
    }
    const engine = new Engine(options);
    try {
      await engine.#lockDataDir();
      await engine.#startup();
      engine.openStats.pendingUnlinksFinished = await engine.#md.finishPendingUnlinks();
      await engine.#preload(options.preload ?? []);
      await engine.#openSlrus();
      if (engine.openStats.uncleanStop) {
        for (const s of engine.#smgrs.values()) engine.openStats.unloggedReset += (await s.resetUnlogged?.()) ?? 0;
      }
      engine.#checkpointer.startTimer();
    } catch (err) {
      throw await engine.#undoOpen(err);
    }
    return engine;
  }

  /**
   * A failed open leaves the data directory as it found it: closed files and locks, a control
   * file that says "shut down" if it said so before (else the next open would take the failure
   * for a crash and reset unlogged relations), no control file if there was none, and no
   * directory it created itself. Returns the error to throw: the original one, extended if the
   * cleanup failed too (never swallowed).
   */
  async #undoOpen(err: unknown): Promise<unknown> {
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (e) {
        problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    const control = this.#control;
    if (!this.#createdDataDir && control && this.#controlWritten) {
      const found = this.#controlFound;
      if (!found) await attempt('remove the control file it created', () => control.remove());
      else if (found.state === ControlState.SHUT_DOWN) await attempt('write the clean state back to the control file', () => this.#writeControl({ state: ControlState.SHUT_DOWN }));
    }
    await attempt('release', () => this.#releaseAll());
    if (this.#createdDataDir) {
      await attempt('remove the data directory it created', async () => {
        await this.#removeTree(this.dataDir);
        await this.io.fsyncDir(join(this.dataDir, '..'));
      });
    }
    if (problems.length === 0) return err;
    const detail = err instanceof Error ? err.message : String(err);
    const code = err instanceof LamstoreError ? err.code : ErrorCode.IO_ERROR;
    return new LamstoreError(code, `${detail}; and undoing the failed open failed (${problems.join('; ')})`, { cause: err, path: this.dataDir });
  }

  /** Remove a directory this open created, with whatever it put there. */
  async #removeTree(dir: string): Promise<void> {
    for (const name of await this.io.readdir(dir)) {
      const path = join(dir, name);
      if ((await this.io.stat(path))?.kind === 'directory') await this.#removeTree(path);
      else await this.io.unlink(path);
    }
    await this.io.rmdir(dir);
  }

  async #lockDataDir(): Promise<void> {
    const path = join(this.dataDir, LOCK_FILE);
    try {
      const existing = await this.io.stat(this.dataDir);
      if (existing && existing.kind !== 'directory') {
        throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${this.dataDir}: data directory is not a directory`, { path: this.dataDir });
      }
      if (!existing) {
        await this.io.mkdir(this.dataDir);
        this.#createdDataDir = true;
        await this.io.fsyncDir(join(this.dataDir, '..'));
      }
      this.#lockHandle = await this.io.open(path, { create: true });
    } catch (err) {
      throw ioError('open', path, err);
    }
    try {
      await this.io.flock(this.#lockHandle, 'exclusive');
    } catch (err) {
      await this.io.close(this.#lockHandle);
      this.#lockHandle = null;
      if (errnoOf(err) === 'EAGAIN') {
        throw new LamstoreError(ErrorCode.DATADIR_LOCKED, `${this.dataDir}: data directory is in use by another engine`, { path: this.dataDir, cause: err });
      }
      throw ioError('flock', path, err);
    }
  }

  /**
   * Read the control file and, after an unclean stop, make everything already in the data
   * directory's files durable before anything is built on it: a page that survived a process
   * crash only in the OS page cache must not vanish in a later power loss after new checkpoints
   * counted on it (PostgreSQL's SyncDataDirectory at crash-recovery start). Then the control
   * file says "in production" (CF5 a) until a clean close says "shut down".
   *
   * Clean or not comes from the control file's state. A directory without a control file is new
   * (clean: nothing in it but, perhaps, the lock file) or holds files from a lamstore before the
   * control file, or from a first open cut short by a crash: taken as an unclean stop, since the
   * startup sync costs time and never loses anything.
   */
  async #startup(): Promise<void> {
    const control = await ControlFile.open(this.io, this.dataDir, { blockSize: this.blockSize, enableFsync: this.#options.fsync !== false });
    this.#control = control;
    const found = control.record;
    this.#controlFound = found;
    if (found) {
      this.#checkpointNumber = found.checkpointNumber;
      this.#checkpointTimeMs = found.checkpointTimeMs;
      this.#positions = {
        clogOldestPage: found.clogOldestPage,
        commitTsOldestPage: found.commitTsOldestPage,
        multixactNextMxid: found.multixactNextMxid,
        multixactOldestMxid: found.multixactOldestMxid,
        multixactNextOffset: found.multixactNextOffset,
        multixactOldestOffset: found.multixactOldestOffset,
      };
    }
    try {
      const unclean = found ? found.state !== ControlState.SHUT_DOWN : (await this.io.readdir(this.dataDir)).some((n) => n !== LOCK_FILE && n !== CONTROL_TMP_FILE);
      this.openStats.uncleanStop = unclean;
      if (unclean) {
        const started = this.clock.now();
        await this.#syncTree(this.dataDir);
        this.openStats.startupSyncMs = this.clock.now() - started;
        this.#options.onLog?.(
          `startup sync after an unclean stop: ${this.openStats.startupSyncFiles} files, ${this.openStats.startupSyncDirs} directories in ${(this.openStats.startupSyncMs / 1000).toFixed(3)} s`,
        );
      }
    } catch (err) {
      throw ioError('startup sync', this.dataDir, err);
    }
    // Set first: a write that fails part-way is undone too (#undoOpen).
    this.#controlWritten = true;
    await this.#writeControl({ state: ControlState.IN_PRODUCTION });
  }

  /** Wall-clock ms for the control file (the injected clock's, when it has one). */
  #wallNow(): number {
    return this.clock.wallTimeMs?.() ?? Date.now();
  }

  /** The SLRU positions now: the SLRUs' own once open, else what the control file gave. */
  #slruPositions(): SlruPositions {
    const p = { ...this.#positions };
    if (this.#clog) p.clogOldestPage = this.#clog.slru.oldestPage;
    if (this.#commitTs) p.commitTsOldestPage = this.#commitTs.slru.oldestPage;
    if (this.#multixact) {
      const m = this.#multixact.positions();
      p.multixactNextMxid = m.nextMxid;
      p.multixactOldestMxid = m.oldestMxid;
      p.multixactNextOffset = m.nextOffset;
      p.multixactOldestOffset = m.oldestOffset;
    }
    return p;
  }

  /**
   * Write the control record (CF5): the state, the last completed checkpoint and the SLRU
   * positions now. `onlyIfMoved`: skip the write when the positions and state are what the
   * file already says. Throws the I/O error; callers past open use #writeControlOrFail.
   */
  async #writeControl(change: ControlChange): Promise<void> {
    await this.#controlMutex.run(async () => {
      const control = this.#control;
      assert(control, 'the control file is read before it is written');
      const state = change.state ?? this.#controlState;
      const positions = this.#slruPositions();
      const number = change.checkpoint?.number ?? this.#checkpointNumber;
      const timeMs = change.checkpoint?.timeMs ?? this.#checkpointTimeMs;
      const old = control.record;
      if (change.onlyIfMoved && old && old.state === state && (Object.keys(positions) as (keyof SlruPositions)[]).every((k) => old[k] === positions[k])) return;
      await control.write({ blockSize: this.blockSize, state, checkpointNumber: number, checkpointTimeMs: timeMs, ...positions }, this.#wallNow());
      this.#controlState = state;
      this.#checkpointNumber = number;
      this.#checkpointTimeMs = timeMs;
    });
  }

  /** #writeControl for a running engine: a failure puts it in the failed state (F3). */
  async #writeControlOrFail(change: ControlChange): Promise<void> {
    try {
      await this.#writeControl(change);
    } catch (err) {
      this.#enterFailedState(err);
      throw this.#failure!;
    }
  }

  async #syncTree(dir: string): Promise<void> {
    for (const name of await this.io.readdir(dir)) {
      // The lock file holds nothing; the control file is durable whenever it exists (CF3).
      // So is md's pending-unlink log (md/pending-unlinks.ts PU1).
      if (dir === this.dataDir && (name === LOCK_FILE || name === CONTROL_FILE_NAME || name === CONTROL_TMP_FILE || name.startsWith(PENDING_UNLINKS_FILE))) continue;
      const path = join(dir, name);
      const st = await this.io.stat(path);
      if (st?.kind === 'directory') await this.#syncTree(path);
      else if (st?.kind === 'file') {
        const h = await this.io.open(path, { readOnly: true });
        try {
          await this.io.fsync(h);
        } finally {
          await this.io.close(h);
        }
        this.openStats.startupSyncFiles++;
      }
    }
    await this.io.fsyncDir(dir);
    this.openStats.startupSyncDirs++;
  }

  async #preload(extensions: readonly Extension[]): Promise<void> {
    let open = true;
    const ctx: PreloadContext = {
      io: this.io,
      dataDir: this.dataDir,
      blockSize: this.blockSize,
      clock: this.clock,
      uncleanStart: this.openStats.uncleanStop,
      enableFsync: this.#options.fsync !== false,
      dataSyncRetry: this.#options.dataSyncRetry === true,
      sharedBuffers: this.sharedBuffers,
      registerSyncHandler: (ops) => this.#registry.register(ops),
      registerStorageManager: (name, factory) => {
        if (!open) throw new LamstoreError(ErrorCode.REGISTRATION_CLOSED, `cannot register storage manager "${name}": registration is only allowed during preload`);
        if (typeof name !== 'string' || name.length === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'storage manager name must be a non-empty string');
        if (typeof factory !== 'function') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `storage manager "${name}" needs a factory function`);
        if (this.#smgrFactories.has(name) || this.#smgrs.has(name)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `a storage manager named "${name}" is already registered`);
        this.#smgrFactories.set(name, factory);
      },
    };
    try {
      for (const ext of extensions) {
        if (typeof ext !== 'object' || ext === null || typeof ext.init !== 'function') {
          throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'every preload entry must be an extension { name, init(ctx) }');
        }
        await ext.init(ctx);
        // Build this extension's storage managers now, so that if a later extension fails,
        // open's cleanup closes them (and the files and locks they hold).
        for (const [name, factory] of this.#smgrFactories) {
          if (!this.#smgrs.has(name)) this.#smgrs.set(name, await factory(this.#smgrContext()));
        }
      }
    } finally {
      open = false;
      this.#registry.close();
    }
  }

  async #openSlrus(): Promise<void> {
    const bufferCount = intOption('slruBuffers', this.#options.slruBuffers, SLRU_BUFFER_COUNT_DEFAULT, 4, 1 << 16);
    const ctx: SlruContext = {
      ...this.#smgrContext(),
      checkWritable: () => {
        this.#checkOpen();
        this.#checkNotFailed();
      },
      checkReadable: () => this.#checkOpen(),
      saveControl: () => this.#writeControlOrFail({ onlyIfMoved: true }),
    };
    // The positions the control file recorded; a directory without one derives them (slru.ts S6,
    // multixact.ts M3).
    const p = this.#controlFound ? this.#positions : null;
    this.#clog = await Clog.open(ctx, { bufferCount, ...(p ? { oldestPage: p.clogOldestPage } : {}) });
    this.#commitTs = await CommitTs.open(ctx, { bufferCount, ...(p ? { oldestPage: p.commitTsOldestPage } : {}) });
    const positions = p ? { nextMxid: p.multixactNextMxid, oldestMxid: p.multixactOldestMxid, nextOffset: p.multixactNextOffset, oldestOffset: p.multixactOldestOffset } : undefined;
    this.#multixact = await MultiXact.open(ctx, { bufferCount, ...(positions ? { positions } : {}) });
  }

  /** Transaction commit statuses, in `<dataDir>/pg_xact/` (sync handler CLOG). */
  get clog(): Clog {
    this.#checkOpen();
    return this.#clog!;
  }

  /** Commit timestamps, in `<dataDir>/pg_commit_ts/` (sync handler COMMIT_TS). */
  get commitTs(): CommitTs {
    this.#checkOpen();
    return this.#commitTs!;
  }

  /** Multixacts, in `<dataDir>/pg_multixact/{offsets,members}/` (handlers 3 and 4). */
  get multixact(): MultiXact {
    this.#checkOpen();
    return this.#multixact!;
  }

  #smgrContext(): SmgrContext {
    return {
      io: this.io,
      dataDir: this.dataDir,
      blockSize: this.blockSize,
      clock: this.clock,
      relSegBlocks: this.relSegBlocks,
      maxOpenFiles: this.maxOpenFiles,
      enableFsync: this.#options.fsync !== false,
      dataSyncRetry: this.#options.dataSyncRetry === true,
      sharedBuffers: this.sharedBuffers,
      registerSyncRequest: (tag, type, retryOnError) => this.#register(tag, type, retryOnError),
      trySyncRequest: (tag, type, origin) => this.#tryRegister(tag, type, origin),
      countBackendFsync: () => this.#checkpointer.countBackendFsync(),
      exemptFromLedger: (path, offsetBytes, lengthBytes) => this.ledger?.exemptNextWrite(path, offsetBytes, lengthBytes),
      reportSyncFailure: (err) => {
        this.#enterFailedState(err);
        throw this.#failure!;
      },
    };
  }

  // ------------------------------------------------------------------ sync requests

  /** The sync handler table: `{ id, name, builtin }` in id order. */
  syncHandlers(): SyncHandlerInfo[] {
    return this.#registry.list();
  }

  /**
   * Queue a sync request for the checkpointer (RegisterSyncRequest with retryOnError: a full
   * queue is retried every 10 ms for every type, so this resolves true once accepted).
   */
  async registerSyncRequest(tag: FileTag, type: SyncRequestType): Promise<boolean> {
    this.#checkOpen();
    const t = checkFileTag(tag);
    if (!this.#registry.has(t.handler)) {
      throw new LamstoreError(ErrorCode.UNKNOWN_SYNC_HANDLER, `no sync handler with id ${t.handler} (registered: 0..${this.#registry.count - 1})`);
    }
    if (type !== SyncRequestType.SYNC && type !== SyncRequestType.UNLINK && type !== SyncRequestType.FORGET && type !== SyncRequestType.FILTER) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `unknown sync request type ${String(type)}`);
    }
    // Refused here, not at absorb time: an UNLINK nobody can execute would otherwise fail every
    // later post-checkpoint step (sync.c would call a NULL pointer).
    if (type === SyncRequestType.UNLINK && !this.#registry.ops(t.handler).unlinkFileTag) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `sync handler "${this.#registry.ops(t.handler).name}" (id ${t.handler}) has no unlinkFileTag: it cannot take UNLINK requests`);
    }
    return this.#register(t, type, true);
  }

  /** One try, never waiting: false when the queue is full. */
  #tryRegister(tag: FileTag, type: SyncRequestType, origin?: WriteOrigin): boolean {
    // The checkpointer's own writes go straight into its table (behaviour 30): BufferSync's say
    // so (origin), the rest of its work runs in inCheckpointer.
    if (origin === 'checkpoint' || inCheckpointer.getStore() === this) {
      this.#pending.remember(tag, type);
      return true;
    }
    this.#checkpointer.noteActivity();
    return this.#checkpointer.queue.forward({ type, tag });
  }

  async #register(tag: FileTag, type: SyncRequestType, retryOnError: boolean): Promise<boolean> {
    if (this.#tryRegister(tag, type)) return true;
    if (!retryOnError) return false;
    for (;;) {
      // Give the checkpointer a chance to absorb; there is no fallback for this request.
      this.#checkpointer.absorb();
      if (this.#checkpointer.queue.forward({ type, tag })) return true;
      await this.clock.sleep(SYNC_REQUEST_RETRY_MS);
      if (this.#checkpointer.queue.forward({ type, tag })) return true;
    }
  }

  // ------------------------------------------------------------------ checkpoints

  /** Run a checkpoint now (PostgreSQL's CHECKPOINT: fast and forced unless `fast: false`). */
  async checkpoint(options: { fast?: boolean } = {}): Promise<CheckpointStats> {
    checkOptionKeys(options, CHECKPOINT_OPTION_KEYS, 'engine.checkpoint()');
    this.#checkOpen();
    this.#checkNotFailed();
    const flags = CheckpointFlags.FORCE | (options.fast === false ? 0 : CheckpointFlags.FAST);
    const stats = await this.#checkpointer.request(flags);
    // A sync that failed past the checkpoint's point of no return (md's directory fsync after a
    // tombstone's unlink, md.ts M9) cannot fail the checkpoint inside the checkpointer, but
    // nothing reports success after a sync failure.
    this.#checkNotFailed();
    return stats;
  }

  // ------------------------------------------------------------------ state

  get failed(): boolean {
    return this.#failure !== null;
  }

  /** The error that put the engine in the failed state, if any. */
  get failure(): LamstoreError | null {
    return this.#failure;
  }

  #enterFailedState(err: unknown): void {
    if (this.#failure) return;
    const detail = err instanceof Error ? err.message : String(err);
    this.#failure = new LamstoreError(ErrorCode.ENGINE_FAILED, `${this.dataDir}: engine failed (a sync failed: ${detail}); close and reopen it`, { cause: err });
    this.#options.onLog?.(`PANIC: ${this.#failure.message}`);
  }

  #checkNotFailed(): void {
    if (this.#failure) throw this.#failure;
  }

  #checkOpen(): void {
    if (this.#closed) throw new LamstoreError(ErrorCode.ENGINE_CLOSED, `${this.dataDir}: engine is closed`);
  }

  /** Registered storage manager by name (UNKNOWN_STORAGE otherwise). */
  storageManager(name: string): StorageManager {
    const s = this.#smgrs.get(name);
    if (!s) throw new LamstoreError(ErrorCode.UNKNOWN_STORAGE, `no storage manager named "${name}" (registered: ${[...this.#smgrs.keys()].join(', ') || 'none'})`);
    return s;
  }

  // ------------------------------------------------------------------ relations

  /**
   * A handle on a relation's storage (no I/O): `{ storage = 'md', persistence = 'permanent' }`.
   * Unknown storage names throw UNKNOWN_STORAGE; a bad locator, BAD_ARGUMENT.
   */
  relation(locator: RelFileLocator, options: RelationOptions = {}): Relation {
    this.#checkOpen();
    const loc = checkLocator(locator);
    if (typeof options !== 'object' || options === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'relation options must be an object { storage, persistence }');
    checkOptionKeys(options, RELATION_OPTION_KEYS, 'engine.relation()');
    const storage = options.storage ?? MD_NAME;
    if (typeof storage !== 'string' || storage.length === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option storage must be a storage manager name, got ${String(storage)}`);
    const persistence = options.persistence ?? 'permanent';
    if (persistence !== 'permanent' && persistence !== 'unlogged') {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option persistence must be 'permanent' or 'unlogged', got ${String(persistence)}`);
    }
    this.#relationHost ??= {
      blockSize: this.blockSize,
      pool: this.#pool,
      smgr: (name) => this.storageManager(name),
      checkOpen: () => this.#checkOpen(),
      checkWritable: () => {
        this.#checkOpen();
        this.#checkNotFailed();
      },
      withLock: (key, fn) => this.#relationLocks.run(key, fn),
    };
    return new Relation(this.#relationHost, loc, { storage, persistence });
  }

  /** The buffer pool (tests and the bench read its statistics and invariants). */
  get bufferPool(): BufferPool {
    return this.#pool;
  }

  ioCounts(): IoCounts {
    return this.io.counts();
  }

  /**
   * Shutdown checkpoint (unless failed), then release files and locks. With `timeoutMs`, a
   * shutdown checkpoint still writing past the bound stops, the data directory is left unclean
   * (the next open runs the startup sync) and close rejects with TIMEOUT; progress goes to onLog.
   * A failed engine (see the failed state above) runs no shutdown checkpoint, releases everything
   * and rejects with ENGINE_FAILED: its last changes were not made durable.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    // Before anything: a refused close leaves the engine open and untouched, to be closed again.
    checkOptionKeys(options, CLOSE_OPTION_KEYS, 'engine.close()');
    if (this.#closed) return;
    let error: unknown;
    this.#checkpointer.stop();
    if (options.timeoutMs !== undefined) this.#checkpointer.setDeadline(intOption('timeoutMs', options.timeoutMs, 0, 0, 86_400_000));
    try {
      if (!this.#failure) {
        // CF5 (c): from here until the shutdown checkpoint completes, a crash is an unclean stop.
        await this.#writeControlOrFail({ state: ControlState.SHUTTING_DOWN });
        await this.#checkpointer.request(CheckpointFlags.SHUTDOWN | CheckpointFlags.FAST | CheckpointFlags.FORCE);
      }
    } catch (err) {
      error = errnoOf(err) === 'TIMEOUT' ? new LamstoreError(ErrorCode.TIMEOUT, `${this.dataDir}: ${(err as Error).message}`, { cause: err }) : err;
    }
    await this.#checkpointer.idle();
    if (!error && !this.#failure) {
      // The shutdown checkpoint unlinked every placeholder: the next open need not read the log.
      try {
        await this.#md.tidyPendingUnlinks();
      } catch (err) {
        error = err;
      }
    }
    this.#closed = true;
    // Clean only if the shutdown checkpoint made everything durable: its last step wrote
    // "shut down" into the control file (CF5 b); a failed or bounded-out one left "shutting down".
    await this.#releaseAll();
    // A failed engine made nothing durable since its failure: a script must learn that its
    // last changes are not on disk, whatever else went right or wrong in the close.
    if (this.#failure) throw this.#failure;
    if (error) throw error;
  }

  async #releaseAll(): Promise<void> {
    this.#clog?.close();
    this.#commitTs?.close();
    this.#multixact?.close();
    for (const s of this.#smgrs.values()) await s.close?.();
    await this.#control?.close();
    if (this.#lockHandle) {
      const h = this.#lockHandle;
      this.#lockHandle = null;
      await this.io.close(h);
    }
  }
}
