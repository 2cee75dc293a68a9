/**
 * Engine: opens a data directory, runs the preload phase, owns the checkpointer.
 *
 * Lifecycle:
 *   open  -> lock the data directory -> built-in sync handlers 0..4 -> preload (each extension's
 *            init(ctx) may register sync handlers and storage managers) -> registration closed
 *   run   -> relations, SLRUs, sync requests, checkpoints
 *   close -> shutdown checkpoint -> storage managers closed -> lock released
 *
 * The failed state (PostgreSQL PANICs for the same reasons; SQLite's pager ERROR state):
 *   F1 a sync (fsync/fdatasync) of any file fails, in the sync phase or in a storage manager's
 *      own fallback sync, or an SLRU's (queue-full fallback, directory, multixact control file);
 *   F2 a storage manager reports a failed metadata switch (through reportSyncFailure).
 * After either, every write, extend, truncate, drop and checkpoint throws ENGINE_FAILED until
 * the engine is closed and opened again: the kernel may have dropped the dirty pages a later
 * sync would then falsely report durable. Reads keep working.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { join, resolve } from 'node:path';
import { ErrorCode, LamstoreError, errnoOf, ioError } from './errors.js';
import type { FileHandle, FileIO } from './io/file-io.js';
import { CountingIO, type IoCounts } from './io/counting-io.js';
import { RealIO } from './io/real-io.js';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import type { FileTag } from './sync/file-tag.js';
import { checkFileTag, fileTagKey } from './sync/file-tag.js';
import type { SyncHandlerInfo, SyncOps } from './sync/registry.js';
import { SyncHandlerId, SyncHandlerRegistry, SyncRequestType } from './sync/registry.js';
import { PendingOps } from './sync/pending-ops.js';
import { mdSyncOps } from './md/sync-ops.js';
import { SLRU_DIRS, slruSyncOps } from './slru/names.js';
import type { SmgrContext, StorageManager, StorageManagerFactory } from './smgr/smgr.js';
import type { SlruContext } from './slru/slru.js';
import { SLRU_BUFFER_COUNT_DEFAULT } from './slru/slru.js';
import { Clog } from './slru/clog.js';
import { CommitTs } from './slru/commit-ts.js';
import { MultiXact } from './slru/multixact.js';
import { Checkpointer, CheckpointFlags, type CheckpointStats } from '../checkpointer/checkpointer.js';
import { defaultSyncQueueSize } from '../checkpointer/request-queue.js';

export interface EngineOptions {
  /** Created when missing. */
  dataDir: string;
  /** Page size in bytes: a power of two in 4096..32768. @default 8192 */
  blockSize?: number;
  /** Buffer pool size in pages. @default 16384 */
  sharedBuffers?: number;
  /** md segment size in blocks. @default 131072 */
  relSegBlocks?: number;
  /** Open md segment files kept at most. @default 256 */
  maxOpenFiles?: number;
  /** PostgreSQL's `fsync`: false makes checkpoints skip every sync callback. @default true */
  fsync?: boolean;
  /** PostgreSQL's `data_sync_retry`: a failed sync fails the checkpoint only. @default false */
  dataSyncRetry?: boolean;
  /** Request queue capacity. @default sharedBuffers (PostgreSQL: one slot per buffer) */
  syncQueueSize?: number;
  checkpointTimeoutMs?: number;
  maxDirtyBytes?: number;
  completionTarget?: number;
  preload?: readonly Extension[];
  /** Page buffers of each SLRU (clog, commit_ts, multixact offsets, multixact members). @default 32 */
  slruBuffers?: number;
  io?: FileIO;
  clock?: Clock;
  /** Receives log lines (checkpoint complete, warnings). Silent by default. */
  onLog?: (line: string) => void;
}

/** What an extension's init receives during preload. */
export interface PreloadContext {
  readonly io: FileIO;
  readonly dataDir: string;
  readonly blockSize: number;
  readonly clock: Clock;
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
export const MAX_OPEN_FILES_DEFAULT = 256;
/** RegisterSyncRequest's retry interval for requests that must not be lost. */
export const SYNC_REQUEST_RETRY_MS = 10;

const LOCK_FILE = 'lamstore.lock';

function intOption(name: string, value: unknown, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option ${name} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

export function checkBlockSize(value: unknown, what = 'blockSize'): number {
  const v = intOption(what, value, BLOCK_SIZE_DEFAULT, 4096, 32768);
  if ((v & (v - 1)) !== 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `option ${what} must be a power of two in 4096..32768, got ${v}`);
  return v;
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
  readonly #options: EngineOptions;
  readonly #registry: SyncHandlerRegistry;
  readonly #pending: PendingOps;
  readonly #checkpointer: Checkpointer<QueuedRequest>;
  readonly #smgrFactories = new Map<string, StorageManagerFactory>();
  readonly #smgrs = new Map<string, StorageManager>();
  /** Set while the checkpointer itself runs: its requests go straight to pendingOps. */
  readonly #inCheckpointer = new AsyncLocalStorage<boolean>();
  #lockHandle: FileHandle | null = null;
  #clog: Clog | null = null;
  #commitTs: CommitTs | null = null;
  #multixact: MultiXact | null = null;
  #failure: LamstoreError | null = null;
  #closed = false;

  private constructor(options: EngineOptions, io: CountingIO, registry: SyncHandlerRegistry) {
    this.#options = options;
    this.dataDir = resolve(options.dataDir);
    this.blockSize = checkBlockSize(options.blockSize);
    this.sharedBuffers = intOption('sharedBuffers', options.sharedBuffers, SHARED_BUFFERS_DEFAULT, 16, 1 << 24);
    this.relSegBlocks = intOption('relSegBlocks', options.relSegBlocks, REL_SEG_BLOCKS_DEFAULT, 1, 0x7fff_ffff);
    this.maxOpenFiles = intOption('maxOpenFiles', options.maxOpenFiles, MAX_OPEN_FILES_DEFAULT, 4, 1 << 20);
    this.io = io;
    this.clock = options.clock ?? systemClock;
    this.#registry = registry;
    this.#pending = new PendingOps(registry);
    const queueSize = intOption('syncQueueSize', options.syncQueueSize, defaultSyncQueueSize(this.sharedBuffers), 1, 10_000_000);
    this.#checkpointer = new Checkpointer<QueuedRequest>({
      sync: {
        remember: (r) => this.#pending.remember(r.tag, r.type),
        preCheckpoint: (absorb) => this.#pending.preCheckpoint(absorb),
        processSyncRequests: (o) => this.#pending.processSyncRequests(o),
        postCheckpoint: (o) => this.#pending.postCheckpoint(o),
      },
      participants: {
        ioCounts: () => this.io.counts(),
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
      },
      clock: this.clock,
      queueSize,
      keyOf: (r) => `${r.type}:${fileTagKey(r.tag)}`,
      enableFsync: options.fsync !== false,
      onLog: options.onLog,
    });
  }

  static async open(options: EngineOptions): Promise<Engine> {
    if (typeof options !== 'object' || options === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'Engine.open needs an options object');
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'option dataDir must be a non-empty path');
    }
    const io = new CountingIO(options.io ?? new RealIO());
    const dataDir = resolve(options.dataDir);
    // The five built-ins first, so they hold ids 0..4 whatever the extensions do (R1).
    const registry = new SyncHandlerRegistry([
      mdSyncOps({ io, dataDir }),
      slruSyncOps('clog', io, dataDir, SLRU_DIRS[SyncHandlerId.CLOG]!),
      slruSyncOps('commit_ts', io, dataDir, SLRU_DIRS[SyncHandlerId.COMMIT_TS]!),
      slruSyncOps('multixact_offset', io, dataDir, SLRU_DIRS[SyncHandlerId.MULTIXACT_OFFSET]!),
      slruSyncOps('multixact_member', io, dataDir, SLRU_DIRS[SyncHandlerId.MULTIXACT_MEMBER]!),
    ]);
    const engine = new Engine(options, io, registry);
    await engine.#lockDataDir();
    try {
      await engine.#preload(options.preload ?? []);
      await engine.#openSlrus();
    } catch (err) {
      await engine.#releaseAll();
      throw err;
    }
    return engine;
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

  async #preload(extensions: readonly Extension[]): Promise<void> {
    let open = true;
    const ctx: PreloadContext = {
      io: this.io,
      dataDir: this.dataDir,
      blockSize: this.blockSize,
      clock: this.clock,
      registerSyncHandler: (ops) => this.#registry.register(ops),
      registerStorageManager: (name, factory) => {
        if (!open) throw new LamstoreError(ErrorCode.REGISTRATION_CLOSED, `cannot register storage manager "${name}": registration is only allowed during preload`);
        if (typeof name !== 'string' || name.length === 0) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'storage manager name must be a non-empty string');
        if (typeof factory !== 'function') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `storage manager "${name}" needs a factory function`);
        if (this.#smgrFactories.has(name)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `a storage manager named "${name}" is already registered`);
        this.#smgrFactories.set(name, factory);
      },
    };
    try {
      for (const ext of extensions) {
        if (typeof ext !== 'object' || ext === null || typeof ext.init !== 'function') {
          throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'every preload entry must be an extension { name, init(ctx) }');
        }
        await ext.init(ctx);
      }
    } finally {
      open = false;
      this.#registry.close();
    }
    for (const [name, factory] of this.#smgrFactories) this.#smgrs.set(name, await factory(this.#smgrContext()));
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
    };
    this.#clog = await Clog.open(ctx, { bufferCount });
    this.#commitTs = await CommitTs.open(ctx, { bufferCount });
    this.#multixact = await MultiXact.open(ctx, { bufferCount });
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
      registerSyncRequest: (tag, type, retryOnError) => this.#register(tag, type, retryOnError),
      countBackendFsync: () => this.#checkpointer.countBackendFsync(),
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
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `no sync handler with id ${t.handler}`);
    }
    if (type !== SyncRequestType.SYNC && type !== SyncRequestType.UNLINK && type !== SyncRequestType.FORGET && type !== SyncRequestType.FILTER) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `unknown sync request type ${String(type)}`);
    }
    return this.#register(t, type, true);
  }

  async #register(tag: FileTag, type: SyncRequestType, retryOnError: boolean): Promise<boolean> {
    // The checkpointer's own writes go straight into its table (behaviour 30).
    if (this.#inCheckpointer.getStore()) {
      this.#pending.remember(tag, type);
      return true;
    }
    for (;;) {
      if (this.#checkpointer.queue.forward({ type, tag })) return true;
      if (!retryOnError) return false;
      // Give the checkpointer a chance to absorb; there is no fallback for this request.
      this.#checkpointer.absorb();
      if (this.#checkpointer.queue.forward({ type, tag })) return true;
      await this.clock.sleep(SYNC_REQUEST_RETRY_MS);
    }
  }

  // ------------------------------------------------------------------ checkpoints

  /** Run a checkpoint now (PostgreSQL's CHECKPOINT: fast and forced unless `fast: false`). */
  async checkpoint(options: { fast?: boolean } = {}): Promise<CheckpointStats> {
    this.#checkOpen();
    this.#checkNotFailed();
    const flags = CheckpointFlags.FORCE | (options.fast === false ? 0 : CheckpointFlags.FAST);
    return this.#inCheckpointer.run(true, () => this.#checkpointer.request(flags));
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

  ioCounts(): IoCounts {
    return this.io.counts();
  }

  /** Shutdown checkpoint (unless failed), then release files and locks. */
  async close(): Promise<void> {
    if (this.#closed) return;
    let error: unknown;
    try {
      if (!this.#failure) {
        await this.#inCheckpointer.run(true, () => this.#checkpointer.request(CheckpointFlags.SHUTDOWN | CheckpointFlags.FAST | CheckpointFlags.FORCE));
      }
    } catch (err) {
      error = err;
    }
    await this.#checkpointer.idle();
    this.#closed = true;
    await this.#releaseAll();
    if (error) throw error;
  }

  async #releaseAll(): Promise<void> {
    this.#clog?.close();
    this.#commitTs?.close();
    this.#multixact?.close();
    for (const s of this.#smgrs.values()) await s.close?.();
    if (this.#lockHandle) {
      const h = this.#lockHandle;
      this.#lockHandle = null;
      await this.io.close(h);
    }
  }
}
