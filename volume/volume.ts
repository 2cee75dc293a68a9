/**
 * Volume: one preallocated file holding relation forks as extents; its in-memory catalog, the
 * allocator, the page I/O, and the volume sync that makes a checkpoint durable with at most two
 * fdatasync calls (DESIGN.md section 5; format in format.ts and README.md).
 *
 * Invariants (checkInvariants() verifies V1-V4; tests call it after every step):
 *  V1 Every block of the volume is exactly one of: superblock slot (0-1), the durable catalog,
 *     the catalog being written (during a volume sync), an extent of a fork, pending free
 *     (A3 in extent-allocator.ts), or free.
 *  V2 A fork's extents hold capacity >= nblocks blocks; `firstBlock[i]` is the fork block number
 *     of extent i's first block (prefix sums), so block -> volume offset is a binary search.
 *  V3 The durable state (the newest valid superblock and the catalog it points at) is never
 *     overwritten: new catalogs go to free space, superblock generation g goes to slot g % 2
 *     (F1, F5), and space the durable catalog references is never free (A3).
 *  V4 `#syncedSeq <= #writeSeq` and `#durableMeta <= #metaVersion`. A write is covered by a
 *     volume sync iff its sequence number is <= `#syncedSeq`; a metadata change iff its version
 *     is <= `#durableMeta`.
 *
 * Checkpoint order (the volume sync, `#syncOnce`), and why:
 *  1. Dirty pages were written in place by BufferSync before the sync phase (volume-offset
 *     order, through writeBuffers). The file was zero-filled at creation, so these overwrites never
 *     change the file size: fdatasync covers them without a metadata journal commit.
 *  2. If metadata changed: the new catalog is written to free space (never over the durable one).
 *  3. fdatasync: pages and the new catalog are durable. A crash before this returns leaves the
 *     old superblock pointing at the old, intact catalog.
 *  4. If metadata changed: the older superblock slot is overwritten with generation + 1, then a
 *     second fdatasync. The switch is one 128-byte write inside one sector; a torn or lost write
 *     leaves the previous slot as the newest valid one (D1: old or new metadata, never a mix).
 * Sync epoch: a sync captures (write sequence, metadata version) at its start. Inside a
 * checkpoint (checkpointBegin..checkpointEnd) the first tag the sync phase visits starts one sync
 * and every tag of the phase waits for that same sync: each was registered before the phase
 * began, after its change, so the capture covers it; a write racing the checkpoint registered a
 * request of its own for the next cycle. So a checkpoint costs at most 2 fdatasyncs with writers
 * running. Outside a checkpoint a tag syncs until its fork is covered (V4).
 *
 * fsync off (the engine's `fsync`, VolumeOpenOptions.enableFsync false): no sync handler is
 * called, so checkpointEnd runs the volume sync itself without its fdatasyncs: the catalog and
 * superblock are still written (a clean close keeps every change), but nothing is crash-safe,
 * as with PostgreSQL's fsync = off.
 *
 * The failed state: a failed fdatasync, a failed catalog or superblock write, or any error inside
 * the volume sync sets `#failure`. From then on every write, extend, create, truncate, unlink and
 * sync throws ENGINE_FAILED naming the volume; reads keep working. The sync handler rethrows, so
 * the engine enters its own failed state too (F1 of engine.ts).
 *
 * dataSyncRetry (PostgreSQL's data_sync_retry, for kernels that keep failed pages dirty):
 *  R1 A failed volume sync fails only its checkpoint. Nothing it covered is marked durable; a
 *     catalog that no superblock names yet goes back to free space at once.
 *  R2 A failure from the superblock write on leaves the switch in doubt: the slot may hold the
 *     old or the new generation. The next sync writes the same superblock again and syncs it
 *     before writing anything else, so generation g + 2 never overwrites the slot of g while g + 1
 *     may not be durable (that would leave no valid superblock after a torn write).
 */
import { dirname, resolve } from 'node:path';
import {
  ErrorCode,
  FORKS,
  FORK_NAMES,
  ForkNumber,
  LamstoreError,
  RealIO,
  assert,
  checkBlock,
  checkFork,
  checkLocator,
  checkOptionKeys,
  crc32c,
  forEachInFlight,
  IN_FLIGHT_DEFAULT,
  errnoOf,
  forkKey,
  fsError,
  ioError,
  isUnloggedFork,
  openFile,
  locatorKey,
  optionKeys,
} from '../engine/index.js';
import type { FileHandle, FileIO, FileTag, PageWrite, Persistence, RelFileLocator } from '../engine/index.js';
import {
  EXTENT_BLOCKS_FIRST,
  METADATA_BLOCKS,
  SLOT_COUNT,
  SLOT_NEVER_WRITTEN,
  SUPERBLOCK_BYTES,
  catalogBytes,
  catalogFindings,
  checkVolumeGeometry,
  compareForkKeys,
  decodeCatalog,
  decodeSuperblock,
  describeForkKey,
  encodeCatalog,
  encodeSuperblock,
  extentBlocksMax,
  BLOCK_SIZE_BYTES_MIN,
  BLOCK_SIZE_BYTES_MAX,
} from './format.js';
import type { Catalog, CatalogFork, Extent, Finding, SlotResult, Superblock } from './format.js';
import { FreeSpace, growthBlocks } from './extent-allocator.js';

export interface CreateProgress {
  doneBytes: number;
  totalBytes: number;
}

export interface VolumeCreateOptions {
  /** Whole size of the volume file: 64 KiB..1 TiB, a multiple of blockSize. */
  sizeBytes: number;
  /** Page size; must equal the engine's. @default the engine's blockSize (8192) */
  blockSize?: number;
  /** Called after every zero-filled chunk (the CLI draws a progress bar from it). */
  onProgress?: (progress: CreateProgress) => void;
}

export interface VolumeOpenOptions {
  io: FileIO;
  path: string;
  /** Create the file when it does not exist (ignored when it exists). */
  create?: VolumeCreateOptions;
  /** Shared lock, no writes. @default false */
  readOnly?: boolean;
  /** The engine's page size: the volume's must equal it. */
  blockSize?: number;
  /**
   * The last engine using this volume stopped uncleanly (PreloadContext.uncleanStart): one
   * fdatasync at open. Only `false` skips it. @default undefined (sync)
   */
  uncleanStart?: boolean;
  /**
   * The engine's `fsync` (PreloadContext.enableFsync): false makes every volume sync skip its
   * fdatasyncs, never its catalog and superblock writes. @default true
   */
  enableFsync?: boolean;
  /** The engine's `dataSyncRetry` (R1, R2). @default false */
  dataSyncRetry?: boolean;
}

/**
 * What a volume needs from the engine that runs it, given to every call that changes the volume
 * (volume/smgr.ts makes one, whole, from the engine's SmgrContext and the sync handler id). The
 * volume holds no engine state of its own: it knows neither its handler id nor the engine.
 */
export interface VolumeHost {
  /** RegisterSyncRequest: a SYNC request for one fork of this volume; false when the queue is full. */
  requestSync(rel: RelFileLocator, fork: ForkNumber): Promise<boolean>;
  /** Count a volume sync made at once because the queue was full (a backend fsync). */
  countBackendSync(): void;
  /** A volume sync made outside a checkpoint failed: the engine enters its failed state (throws). */
  reportSyncFailure(err: unknown): never;
  /** The sync ledger must not hold this write against a checkpoint (sync-ledger.ts L3). */
  exemptFromLedger(offsetBytes: number, lengthBytes: number): void;
}

export interface SlotInfo {
  slot: number;
  valid: boolean;
  generation?: number;
  /** Why the slot is not valid. */
  reason?: string;
}

export interface ForkInfo {
  spcOid: number;
  dbOid: number;
  relNumber: number;
  fork: number;
  forkName: string;
  nblocks: number;
  extents: Extent[];
}

/** What `lamstore inspect` and `lamstore map` show. */
export interface VolumeInfo {
  path: string;
  blockSizeBytes: number;
  volumeSizeBytes: number;
  volumeBlocks: number;
  fileSizeBytes: number;
  slots: SlotInfo[];
  activeSlot: number;
  generation: number;
  catalog: { offsetBlocks: number; lengthBytes: number; blocks: number };
  /** Superblocks + catalog. */
  metadataBlocks: number;
  /** Blocks in forks' extents. */
  usedBlocks: number;
  freeBlocks: number;
  /** Freed by truncate/drop, reusable after the next completed checkpoint. */
  pendingFreeBlocks: number;
  largestFreeRunBlocks: number;
  freeRuns: Extent[];
  forks: ForkInfo[];
}

/** Zero-fill chunk at creation: large enough to stream, small enough to report progress. */
export const ZERO_CHUNK_BYTES = 4 * 1024 * 1024;

interface ForkState {
  key: string;
  rel: RelFileLocator;
  fork: ForkNumber;
  nblocks: number;
  extents: Extent[];
  /** V2: fork block number of each extent's first block. */
  firstBlock: number[];
  capacity: number;
}

/** A new catalog written and waiting for its superblock (the second half of a volume sync). */
interface PendingSwitch {
  generation: number;
  superblock: Uint8Array;
  area: Extent;
  catalogLengthBytes: number;
  /** The metadata version the catalog describes. */
  meta: number;
}

interface SyncNeed {
  /** Last write of the fork (sequence number) and last metadata change (version). */
  seq: number;
  meta: number;
}

function volumeFailedError(path: string, cause: unknown): LamstoreError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const errno = errnoOf(cause);
  return new LamstoreError(ErrorCode.ENGINE_FAILED, `${path}: volume failed (${detail}); close and reopen it`, {
    cause,
    path,
    errno: errno === 'ENOENT' ? undefined : errno,
  });
}

function badArg(message: string): LamstoreError {
  return new LamstoreError(ErrorCode.BAD_ARGUMENT, message);
}

// ---------------------------------------------------------------- reading the metadata

export interface VolumeExamination {
  fileSizeBytes: number;
  slots: SlotInfo[];
  /** The newest valid superblock. */
  active?: Superblock;
  catalog?: Catalog;
  catalogArea?: Extent;
  findings: Finding[];
  /** Set when the volume cannot be opened: the problem, in one line. */
  fatal?: string;
}

async function readAt(io: FileIO, handle: FileHandle, path: string, length: number, offset: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let n: number;
  try {
    n = await io.pread(handle, buf, offset);
  } catch (err) {
    throw ioError('read', path, err);
  }
  return n === length ? buf : buf.subarray(0, n);
}

/**
 * Read and judge both superblocks and the active catalog. Never writes; never throws for bad
 * content (only for I/O errors): open() turns `fatal` into VOLUME_CORRUPT, checkVolume lists
 * `findings`.
 */
export async function examineVolume(io: FileIO, handle: FileHandle, path: string): Promise<VolumeExamination> {
  let fileSizeBytes: number;
  try {
    fileSizeBytes = await io.size(handle);
  } catch (err) {
    throw ioError('fstat', path, err);
  }
  const ex: VolumeExamination = { fileSizeBytes, slots: [], findings: [] };
  if (fileSizeBytes < SUPERBLOCK_BYTES) {
    // 0 bytes is also what a creation killed before it sized the file leaves: holding nothing,
    // it may go.
    ex.fatal = fileSizeBytes === 0 ? 'file is empty (0 bytes), not a volume (an interrupted volume creation leaves this); it holds nothing and may be removed' : `file is ${fileSizeBytes} bytes, shorter than a ${SUPERBLOCK_BYTES}-byte superblock`;
    ex.findings.push({ severity: 'error', part: 'file', message: ex.fatal });
    return ex;
  }
  const results: SlotResult[] = [];
  results[0] = decodeSuperblock(await readAt(io, handle, path, SUPERBLOCK_BYTES, 0), 0);
  // Slot 1 sits at one block size; the block size is in the superblock. Take slot 0's when it
  // is valid, else try every legal block size.
  const r0 = results[0];
  const candidates = r0.ok ? [r0.sb.blockSizeBytes] : [8192, 4096, 16384, 32768];
  let r1: SlotResult | undefined;
  // Every place slot 1 may be is all zero (r1 reports only the first place tried).
  let slot1Zero = true;
  for (const bs of candidates) {
    if (fileSizeBytes < bs + SUPERBLOCK_BYTES) continue;
    const r = decodeSuperblock(await readAt(io, handle, path, SUPERBLOCK_BYTES, bs), 1);
    if (r.ok || r.reason !== SLOT_NEVER_WRITTEN) slot1Zero = false;
    if (r.ok && r.sb.blockSizeBytes !== bs) {
      r1 ??= { ok: false, reason: `found at offset ${bs} but records block size ${r.sb.blockSizeBytes}` };
      continue;
    }
    if (r.ok || r1 === undefined) r1 = r;
    if (r.ok) break;
  }
  results[1] = r1 ?? { ok: false, reason: `file is too short (${fileSizeBytes} bytes) to hold slot 1` };
  for (let slot = 0; slot < SLOT_COUNT; slot++) {
    const r = results[slot]!;
    ex.slots.push(r.ok ? { slot, valid: true, generation: r.sb.generation } : { slot, valid: false, reason: r.reason });
    if (!r.ok) ex.findings.push({ severity: 'error', part: `superblock slot ${slot}`, message: r.reason });
  }
  const valid = results.filter((r): r is { ok: true; sb: Superblock } => r.ok).map((r) => r.sb);
  if (valid.length === 0) {
    if (ex.slots.every((s) => s.reason === SLOT_NEVER_WRITTEN) && slot1Zero) {
      // createVolumeFile writes the superblocks last and removes its file on any error, so two
      // zero slots mean a process killed while creating (a signal, a crash, an Engine.open
      // stopped mid-creation). Say so: "corrupt" alone sends people looking for lost data.
      ex.fatal = 'the file was never completed as a volume (both superblock slots are all zero: its creation was interrupted); it may be removed and the volume created again';
      ex.findings.push({ severity: 'error', part: 'file', message: ex.fatal });
      return ex;
    }
    ex.fatal = `no valid superblock (slot 0: ${ex.slots[0]!.reason}; slot 1: ${ex.slots[1]!.reason})`;
    return ex;
  }
  valid.sort((a, b) => b.generation - a.generation);
  const sb = valid[0]!;
  ex.active = sb;
  if (valid.length === 2) {
    const other = valid[1]!;
    if (sb.generation !== other.generation + 1) {
      ex.findings.push({ severity: 'warning', part: `superblock slot ${other.slot}`, message: `generation ${other.generation} is not one below the active slot's ${sb.generation}` });
    }
    if (other.blockSizeBytes !== sb.blockSizeBytes || other.volumeSizeBytes !== sb.volumeSizeBytes) {
      ex.findings.push({ severity: 'error', part: `superblock slot ${other.slot}`, message: 'block size or volume size differs from the active slot' });
    }
  }
  if (sb.volumeSizeBytes > fileSizeBytes) {
    ex.fatal = `superblock slot ${sb.slot} says the volume is ${sb.volumeSizeBytes} bytes but the file has only ${fileSizeBytes}`;
    ex.findings.push({ severity: 'error', part: 'file', message: ex.fatal });
    return ex;
  }
  const volumeBlocks = sb.volumeSizeBytes / sb.blockSizeBytes;
  // decodeSuperblock bounded the catalog length (<= CATALOG_BYTES_MAX) and placed it inside the
  // volume, which the file holds: this allocation is sized by checked values only.
  const bytes = await readAt(io, handle, path, sb.catalogLengthBytes, sb.catalogOffsetBlocks * sb.blockSizeBytes);
  const area: Extent = { startBlock: sb.catalogOffsetBlocks, lengthBlocks: Math.ceil(sb.catalogLengthBytes / sb.blockSizeBytes) };
  ex.catalogArea = area;
  const crc = crc32c(bytes);
  if (bytes.length !== sb.catalogLengthBytes || crc !== sb.catalogCrc) {
    ex.fatal = `catalog CRC mismatch (superblock slot ${sb.slot}, generation ${sb.generation}, catalog at block ${sb.catalogOffsetBlocks})`;
    ex.findings.push({ severity: 'error', part: 'catalog', message: ex.fatal });
    return ex;
  }
  try {
    ex.catalog = decodeCatalog(bytes, path, sb.generation);
  } catch (err) {
    ex.fatal = (err as Error).message.replace(`${path}: volume is corrupt: `, '');
    ex.findings.push({ severity: 'error', part: 'catalog', message: ex.fatal });
    return ex;
  }
  const placement = catalogFindings(ex.catalog, volumeBlocks, area);
  ex.findings.push(...placement);
  const firstError = placement.find((f) => f.severity === 'error');
  if (firstError) ex.fatal = `${firstError.part} ${firstError.message}`;
  return ex;
}

// ---------------------------------------------------------------- creation

const CREATE_OPTION_KEYS = optionKeys<VolumeCreateOptions>({ sizeBytes: true, blockSize: true, onProgress: true });

/** Refuse a key VolumeCreateOptions does not have (a misspelt `blocksize` would silently mean the engine's block size). */
export function checkCreateOptionKeys(create: object, what: string): void {
  checkOptionKeys(create, CREATE_OPTION_KEYS, what);
}

function checkCreateOptions(create: VolumeCreateOptions, engineBlockSize: number | undefined): { sizeBytes: number; blockSize: number } {
  if (typeof create !== 'object' || create === null) throw badArg('option create must be an object { sizeBytes, blockSize? }');
  checkCreateOptionKeys(create, 'volume create options');
  const blockSize = create.blockSize ?? engineBlockSize ?? 8192;
  if (typeof blockSize !== 'number' || !Number.isInteger(blockSize) || blockSize < BLOCK_SIZE_BYTES_MIN || blockSize > BLOCK_SIZE_BYTES_MAX || (blockSize & (blockSize - 1)) !== 0) {
    throw badArg(`option create.blockSize must be a power of two in ${BLOCK_SIZE_BYTES_MIN}..${BLOCK_SIZE_BYTES_MAX}, got ${String(blockSize)}`);
  }
  if (engineBlockSize !== undefined && blockSize !== engineBlockSize) {
    throw badArg(`option create.blockSize ${blockSize} differs from the engine's blockSize ${engineBlockSize}`);
  }
  const sizeBytes = create.sizeBytes;
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes)) throw badArg(`option create.sizeBytes must be an integer number of bytes, got ${String(sizeBytes)}`);
  const geometry = checkVolumeGeometry(sizeBytes, blockSize);
  if (geometry) throw badArg(`option create.sizeBytes: ${geometry}`);
  if (create.onProgress !== undefined && typeof create.onProgress !== 'function') throw badArg('option create.onProgress must be a function');
  return { sizeBytes, blockSize };
}

/**
 * Create a volume file: zero-fill the whole size (reporting progress), fdatasync, then two
 * empty catalogs (generations 0 and 1) and both superblocks, fdatasync, and fsync the directory
 * so the name is durable. On any error the partial file is removed: a half-made file never
 * opens as a volume (and had it survived a crash, its superblocks would still be zero).
 */
export async function createVolumeFile(io: FileIO, rawPath: string, create: VolumeCreateOptions, engineBlockSize?: number): Promise<void> {
  const { sizeBytes, blockSize } = checkCreateOptions(create, engineBlockSize);
  const path = resolve(rawPath);
  let handle: FileHandle;
  try {
    handle = await io.open(path, { create: true, exclusive: true });
  } catch (err) {
    throw ioError('create', path, err);
  }
  let step = 'flock';
  try {
    await io.flock(handle, 'exclusive');
    // Set the size first so the zero-fill below overwrites in place instead of appending
    // (cheaper for SimDisk's in-memory image; the same blocks end up written on a real disk).
    step = 'ftruncate';
    await io.ftruncate(handle, sizeBytes);
    step = 'write';
    const chunk = new Uint8Array(Math.min(ZERO_CHUNK_BYTES, sizeBytes));
    for (let done = 0; done < sizeBytes; ) {
      const n = Math.min(chunk.length, sizeBytes - done);
      await io.pwrite(handle, n === chunk.length ? chunk : chunk.subarray(0, n), done);
      done += n;
      create.onProgress?.({ doneBytes: done, totalBytes: sizeBytes });
    }
    step = 'fdatasync';
    await io.fdatasync(handle);
    step = 'write';
    for (let generation = 0; generation < SLOT_COUNT; generation++) {
      const catalog = encodeCatalog({ generation, forks: [] });
      const at = METADATA_BLOCKS + generation;
      await io.pwrite(handle, catalog, at * blockSize);
      const sb = encodeSuperblock({
        slot: generation % SLOT_COUNT,
        blockSizeBytes: blockSize,
        volumeSizeBytes: sizeBytes,
        generation,
        catalogOffsetBlocks: at,
        catalogLengthBytes: catalog.length,
        catalogCrc: crc32c(catalog),
      });
      await io.pwrite(handle, sb, (generation % SLOT_COUNT) * blockSize);
    }
    step = 'fdatasync';
    await io.fdatasync(handle);
    step = 'close';
    const h = handle;
    handle = undefined as unknown as FileHandle;
    await io.close(h);
    step = 'fsync directory';
    await io.fsyncDir(dirname(path));
  } catch (err) {
    if (handle !== undefined) await io.close(handle).catch(() => {});
    let removal = '';
    try {
      await io.unlink(path);
    } catch (unlinkErr) {
      removal = `; could not remove the partial file: ${errnoOf(unlinkErr) ?? String(unlinkErr)}`;
    }
    const e = ioError(step, path, err);
    if (removal && e.code === ErrorCode.IO_ERROR) {
      throw new LamstoreError(e.code, `${e.message}${removal}`, { cause: err, path, errno: e.errno, syscall: e.syscall });
    }
    throw e;
  }
}

// ---------------------------------------------------------------- the volume

export interface VolumeStats {
  /** Volume syncs that did work (fdatasync issued). */
  volumeSyncs: number;
  /** Of those, syncs that switched the superblock (metadata changed). */
  metadataSwitches: number;
  fdatasyncs: number;
  /** checkpointBegin calls: the sync epochs. */
  epoch: number;
}

async function openHandle(io: FileIO, path: string, readOnly: boolean): Promise<FileHandle> {
  let st;
  try {
    st = await io.stat(path);
  } catch (err) {
    throw ioError('stat', path, err);
  }
  if (!st) throw ioError('open', path, fsError('ENOENT', 'open', path, 'no such file or directory'));
  if (st.kind === 'directory') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${path}: is a directory, not a volume file`, { path, errno: 'EISDIR' });
  if (st.kind !== 'file') throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${path}: is not a regular file, not a volume file`, { path });
  const handle = await openFile(io, path, { readOnly });
  try {
    await io.flock(handle, readOnly ? 'shared' : 'exclusive');
  } catch (err) {
    await io.close(handle).catch(() => {});
    if (errnoOf(err) === 'EAGAIN') {
      throw new LamstoreError(ErrorCode.VOLUME_LOCKED, `${path}: volume is locked by another process or handle (${readOnly ? 'shared' : 'exclusive'} flock refused)`, { path, cause: err, errno: 'EAGAIN' });
    }
    throw ioError('flock', path, err);
  }
  return handle;
}

/** Open a volume file read-only with a shared lock (checkVolume). */
export function openHandleShared(io: FileIO, path: string): Promise<FileHandle> {
  return openHandle(io, path, true);
}

/** Open a volume file with a shared lock and return what `inspect` shows; writes nothing. */
export async function openVolumeReadOnly(path: string, options: { io?: FileIO } = {}): Promise<VolumeInfo> {
  const vol = await Volume.open({ io: options.io ?? new RealIO(), path, readOnly: true });
  try {
    return vol.info();
  } finally {
    await vol.close();
  }
}

export class Volume {
  readonly path: string;
  readonly readOnly: boolean;
  readonly blockSize: number;
  readonly volumeSizeBytes: number;
  readonly volumeBlocks: number;
  readonly stats: VolumeStats = { volumeSyncs: 0, metadataSwitches: 0, fdatasyncs: 0, epoch: 0 };
  readonly #io: FileIO;
  /** VolumeOpenOptions.enableFsync and dataSyncRetry, fixed at open. */
  readonly #enableFsync: boolean;
  readonly #dataSyncRetry: boolean;
  #handle: FileHandle | null;
  readonly #forks = new Map<string, ForkState>();
  readonly #free: FreeSpace;
  readonly #extentMaxBlocks: number;
  #extentCount = 0;
  #slots: SlotInfo[];
  #fileSizeBytes: number;
  #generation: number;
  #catalogArea: Extent;
  #catalogLengthBytes: number;
  #inflightArea: Extent | null = null;
  #metaVersion = 0;
  #durableMeta = 0;
  #writeSeq = 0;
  #syncedSeq = 0;
  readonly #needs = new Map<string, SyncNeed>();
  #failure: LamstoreError | null = null;
  #syncChain: Promise<void> = Promise.resolve();
  /** Between checkpointBegin and checkpointEnd: the sync phase's tags share one volume sync. */
  #inCheckpoint = false;
  /** That checkpoint's volume sync, started by the first tag it visits (see syncTag). */
  #epochSync: Promise<void> | null = null;
  /**
   * A superblock switch whose write or fdatasync failed under dataSyncRetry (R2): the slot may
   * hold either generation, so the next sync writes the same superblock again before anything
   * else. Its catalog area stays reserved until then.
   */
  #switchInDoubt: PendingSwitch | null = null;

  private constructor(io: FileIO, handle: FileHandle, path: string, options: VolumeOpenOptions, ex: VolumeExamination) {
    const sb = ex.active!;
    this.#io = io;
    const readOnly = options.readOnly === true;
    this.#enableFsync = options.enableFsync !== false;
    this.#dataSyncRetry = options.dataSyncRetry === true;
    this.#handle = handle;
    this.path = path;
    this.readOnly = readOnly;
    this.blockSize = sb.blockSizeBytes;
    this.volumeSizeBytes = sb.volumeSizeBytes;
    this.volumeBlocks = sb.volumeSizeBytes / sb.blockSizeBytes;
    this.#extentMaxBlocks = extentBlocksMax(this.blockSize);
    this.#slots = ex.slots;
    this.#fileSizeBytes = ex.fileSizeBytes;
    this.#generation = sb.generation;
    this.#catalogArea = ex.catalogArea!;
    this.#catalogLengthBytes = sb.catalogLengthBytes;
    const used: Extent[] = [this.#catalogArea];
    for (const f of ex.catalog!.forks) {
      const rel = { spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber };
      const st = this.#newFork(rel, f.fork as ForkNumber);
      st.nblocks = f.nblocks;
      for (const e of f.extents) this.#appendExtent(st, { ...e });
      used.push(...f.extents);
    }
    this.#free = new FreeSpace(this.volumeBlocks, used);
  }

  /** Open (or, with `create`, create) a volume file: lock, read, validate. Writes nothing to an existing file. */
  static async open(options: VolumeOpenOptions): Promise<Volume> {
    if (typeof options !== 'object' || options === null) throw badArg('volume options must be an object { path, create?, readOnly? }');
    if (typeof options.path !== 'string' || options.path.length === 0) throw badArg('option path must be a non-empty file path');
    const path = resolve(options.path);
    const readOnly = options.readOnly === true;
    if (options.create !== undefined && !readOnly) {
      const create = options.create;
      checkCreateOptions(create, options.blockSize);
      let st;
      try {
        st = await options.io.stat(path);
      } catch (err) {
        throw ioError('stat', path, err);
      }
      if (!st) await createVolumeFile(options.io, path, create, options.blockSize);
    }
    const handle = await openHandle(options.io, path, readOnly);
    try {
      const ex = await examineVolume(options.io, handle, path);
      if (ex.fatal !== undefined) throw new LamstoreError(ErrorCode.VOLUME_CORRUPT, `${path}: volume is corrupt: ${ex.fatal}`, { path });
      const vol = new Volume(options.io, handle, path, options, ex);
      if (options.blockSize !== undefined && vol.blockSize !== options.blockSize) {
        throw badArg(`${path}: volume block size is ${vol.blockSize} but the engine's blockSize is ${options.blockSize}`);
      }
      if (!readOnly && options.uncleanStart !== false) {
        // A process that died with this volume open may have left writes in the page cache
        // only. Make them durable before anything is built on what reads now return. The
        // engine's data directory records whether the last stop was clean (its running
        // marker); when it says clean, there is nothing left to make durable.
        try {
          await options.io.fdatasync(handle);
        } catch (err) {
          throw ioError('fdatasync', path, err);
        }
      }
      return vol;
    } catch (err) {
      await options.io.close(handle).catch(() => {});
      throw err;
    }
  }

  // ------------------------------------------------------------ fork state

  #newFork(rel: RelFileLocator, fork: ForkNumber): ForkState {
    const key = forkKey(rel, fork);
    assert(!this.#forks.has(key), `fork ${key} is new`);
    const st: ForkState = { key, rel: { ...rel }, fork, nblocks: 0, extents: [], firstBlock: [], capacity: 0 };
    this.#forks.set(key, st);
    return st;
  }

  #appendExtent(st: ForkState, e: Extent): void {
    st.firstBlock.push(st.capacity);
    st.extents.push(e);
    st.capacity += e.lengthBlocks;
    this.#extentCount++;
  }

  #fork(rel: RelFileLocator, fork: ForkNumber): ForkState {
    const st = this.#forks.get(forkKey(rel, fork));
    if (!st) {
      throw new LamstoreError(ErrorCode.RELATION_NOT_FOUND, `${this.path}: ${describeForkKey({ ...rel, fork })} does not exist in the volume`, { path: this.path });
    }
    return st;
  }

  /** V2: volume block of fork block `blk` (< capacity), by binary search over the extents. */
  #locate(st: ForkState, blk: number): { index: number; volumeBlock: number } {
    assert(blk < st.capacity, 'block lies inside the fork extents');
    let lo = 0;
    let hi = st.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (st.firstBlock[mid]! <= blk) lo = mid;
      else hi = mid - 1;
    }
    return { index: lo, volumeBlock: st.extents[lo]!.startBlock + (blk - st.firstBlock[lo]!) };
  }

  /** The catalog if written now (F4: sorted, extents trimmed to those holding blocks). */
  #catalogSnapshot(generation: number): Catalog {
    const forks: CatalogFork[] = [];
    for (const st of this.#forks.values()) {
      const extents: Extent[] = [];
      if (st.nblocks > 0) {
        const last = this.#locate(st, st.nblocks - 1).index;
        for (let i = 0; i <= last; i++) extents.push({ ...st.extents[i]! });
      }
      forks.push({ ...st.rel, fork: st.fork, nblocks: st.nblocks, extents });
    }
    forks.sort(compareForkKeys);
    return { generation, forks };
  }

  #catalogBlocks(extraForks: number, extraExtents: number): number {
    return Math.ceil(catalogBytes(this.#forks.size + extraForks, this.#extentCount + extraExtents) / this.blockSize);
  }

  // ------------------------------------------------------------ allocation

  /** Largest length <= maxLen taken from `start` that keeps the catalog reserve (A4); 0 if none. */
  #fitLength(start: number, maxLen: number, reserve: number): number {
    if (maxLen < 1) return 0;
    if (this.#free.reserveHoldsAfter(start, maxLen, reserve)) return maxLen;
    let lo = 0;
    let hi = maxLen - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#free.reserveHoldsAfter(start, mid, reserve)) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Grow the fork's extents to hold `target` blocks: in place after the last extent when that
   * space is free, else best fit, else as much of the largest free run as the catalog reserve
   * allows. All or nothing: on VOLUME_FULL every step taken is undone.
   */
  #ensureCapacity(st: ForkState, target: number): void {
    if (st.capacity >= target) return;
    const undo: (() => void)[] = [];
    try {
      while (st.capacity < target) {
        const want = Math.max(growthBlocks(st.capacity, EXTENT_BLOCKS_FIRST, this.#extentMaxBlocks), target - st.capacity);
        const reserve = this.#catalogBlocks(0, 1);
        const last = st.extents[st.extents.length - 1];
        if (last) {
          const end = last.startBlock + last.lengthBlocks;
          const run = this.#free.runContaining(end);
          if (run && run.start === end) {
            const len = this.#fitLength(end, Math.min(want, run.length), reserve);
            if (len >= 1) {
              this.#free.take(end, len);
              last.lengthBlocks += len;
              st.capacity += len;
              undo.push(() => {
                last.lengthBlocks -= len;
                st.capacity -= len;
                this.#free.give(end, len);
              });
              continue;
            }
          }
        }
        let start = -1;
        let len = 0;
        const best = this.#free.bestFit(want);
        if (best && this.#free.reserveHoldsAfter(best.start, want, reserve)) {
          start = best.start;
          len = want;
        } else {
          const runs = this.#free.runs();
          let largest: Extent | undefined;
          for (const r of runs) if (!largest || r.lengthBlocks > largest.lengthBlocks) largest = r;
          if (largest) {
            start = largest.startBlock;
            len = this.#fitLength(start, Math.min(want, largest.lengthBlocks), reserve);
          }
        }
        if (len < 1) {
          throw new LamstoreError(
            ErrorCode.VOLUME_FULL,
            `${this.path}: volume is full: no free space to grow ${describeForkKey({ ...st.rel, fork: st.fork })} (${this.#free.freeBlocks} blocks free, ${this.#free.pendingBlocks} waiting for a checkpoint, ${reserve} kept twice for the catalog)`,
            { path: this.path },
          );
        }
        this.#free.take(start, len);
        this.#appendExtent(st, { startBlock: start, lengthBlocks: len });
        undo.push(() => {
          st.extents.pop();
          st.firstBlock.pop();
          st.capacity -= len;
          this.#extentCount--;
          this.#free.give(start, len);
        });
      }
    } catch (err) {
      for (const u of undo.reverse()) u();
      throw err;
    }
    this.#metaVersion++;
  }

  /** Give up every extent from index `from` on (A3: reusable after the next checkpoint). */
  #dropExtents(st: ForkState, from: number): void {
    for (let i = from; i < st.extents.length; i++) this.#free.deferFree(st.extents[i]!, this.#metaVersion);
    this.#extentCount -= st.extents.length - from;
    st.extents.length = from;
    st.firstBlock.length = from;
    st.capacity = from === 0 ? 0 : st.firstBlock[from - 1]! + st.extents[from - 1]!.lengthBlocks;
  }

  // ------------------------------------------------------------ state checks

  #checkWritable(): void {
    if (this.#failure) throw this.#failure;
    if (this.#handle === null) throw new LamstoreError(ErrorCode.ENGINE_CLOSED, `${this.path}: volume is closed`, { path: this.path });
    if (this.readOnly) throw new LamstoreError(ErrorCode.VOLUME_READ_ONLY, `${this.path}: volume is open read-only`, { path: this.path });
  }

  #checkOpen(): FileHandle {
    if (this.#handle === null) throw new LamstoreError(ErrorCode.ENGINE_CLOSED, `${this.path}: volume is closed`, { path: this.path });
    return this.#handle;
  }

  get failure(): LamstoreError | null {
    return this.#failure;
  }

  #fail(err: unknown): LamstoreError {
    this.#failure ??= volumeFailedError(this.path, err);
    return this.#failure;
  }

  // ------------------------------------------------------------ sync requests

  #noteWrite(key: string): void {
    const n = this.#needs.get(key);
    if (n) n.seq = this.#writeSeq;
    else this.#needs.set(key, { seq: this.#writeSeq, meta: 0 });
  }

  #noteMeta(key: string): void {
    const n = this.#needs.get(key);
    if (n) n.meta = this.#metaVersion;
    else this.#needs.set(key, { seq: 0, meta: this.#metaVersion });
  }

  /**
   * Register a SYNC request for a fork (every write and every metadata change does), except for
   * an unlogged relation's non-INIT forks: those register nothing and only mark the volume for
   * the shutdown checkpoint's syncUnlogged (U1). A full queue makes us sync the volume ourselves,
   * as md does for a segment.
   */
  async #registerSync(rel: RelFileLocator, fork: ForkNumber, host: VolumeHost): Promise<void> {
    if (this.#isUnlogged(rel, fork)) {
      this.#unloggedDirty = true; // synced at shutdown only (U1)
      return;
    }
    if (await host.requestSync(rel, fork)) return;
    try {
      await this.syncNow();
    } catch (err) {
      host.reportSyncFailure(err);
    }
    host.countBackendSync();
  }

  // ------------------------------------------------------------ storage manager operations

  async create(relIn: RelFileLocator, forkIn: ForkNumber, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    this.#checkWritable();
    if (this.#forks.has(forkKey(rel, fork))) return;
    // A4 for the catalog entry the new fork adds.
    if (!this.#free.reserveHoldsAfter(0, 0, this.#catalogBlocks(1, 0))) {
      throw new LamstoreError(ErrorCode.VOLUME_FULL, `${this.path}: volume is full: no room left in the catalog for ${describeForkKey({ ...rel, fork })}`, { path: this.path });
    }
    const st = this.#newFork(rel, fork);
    this.#metaVersion++;
    this.#noteMeta(st.key);
    await this.#registerSync(rel, fork, host);
  }

  exists(relIn: RelFileLocator, forkIn: ForkNumber): boolean {
    return this.#forks.has(forkKey(checkLocator(relIn), checkFork(forkIn)));
  }

  nblocks(relIn: RelFileLocator, forkIn: ForkNumber): number {
    this.#checkOpen();
    return this.#fork(checkLocator(relIn), checkFork(forkIn)).nblocks;
  }

  #checkPage(page: Uint8Array, what: string): void {
    if (!(page instanceof Uint8Array) || page.length !== this.blockSize) {
      throw badArg(`${what} must be a Uint8Array of ${this.blockSize} bytes, got ${page instanceof Uint8Array ? `${page.length} bytes` : typeof page}`);
    }
  }

  #outOfRange(st: ForkState, blk: number, what: string): LamstoreError {
    return new LamstoreError(ErrorCode.BLOCK_OUT_OF_RANGE, `${this.path}: cannot ${what} block ${blk} of ${describeForkKey({ ...st.rel, fork: st.fork })}: it has ${st.nblocks} blocks`, { path: this.path });
  }

  /**
   * Write pages for consecutive fork blocks [blk, blk + pages.length): one pwritev per
   * physically contiguous run (extents that happen to be adjacent merge into one run).
   */
  async #writeRun(st: ForkState, blk: number, pages: readonly Uint8Array[], host: VolumeHost): Promise<number> {
    const handle = this.#checkOpen();
    let ranges = 0;
    let i = 0;
    while (i < pages.length) {
      const startVol = this.#locate(st, blk + i).volumeBlock;
      let j = i + 1;
      while (j < pages.length && this.#locate(st, blk + j).volumeBlock === startVol + (j - i)) j++;
      // An unlogged fork's pages are not owed durability before shutdown (U1): tell the sync
      // ledger not to hold this write against a checkpoint.
      if (this.#isUnlogged(st.rel, st.fork)) {
        host.exemptFromLedger(startVol * this.blockSize, (j - i) * this.blockSize);
      }
      try {
        await this.#io.pwritev(handle, pages.slice(i, j), startVol * this.blockSize);
      } catch (err) {
        throw ioError('write', this.path, err);
      }
      ranges++;
      i = j;
    }
    return ranges;
  }

  /** Relations opened unlogged (smgropen), and whether an unlogged page was written since the last sync. */
  readonly #unloggedRels = new Set<string>();
  #unloggedDirty = false;

  /** isUnloggedFork (the engine's rule) for a relation the volume was opened on. */
  #isUnlogged(rel: RelFileLocator, fork: number): boolean {
    return isUnloggedFork(this.#unloggedRels.has(locatorKey(rel)) ? 'unlogged' : 'permanent', fork);
  }

  /** smgropen (smgr.ts): the persistence of a relation is fixed when a handle on it is made. */
  open(rel: RelFileLocator, persistence: Persistence): void {
    if (persistence === 'unlogged') this.#unloggedRels.add(locatorKey(checkLocator(rel)));
  }

  /**
   * Shutdown checkpoint (U1): unlogged forks register no sync requests, so if any was written
   * or changed since the volume was opened (ordinary volume syncs do not reset this), make the
   * volume durable now. Returns 1 when it synced.
   */
  async syncUnlogged(host: VolumeHost): Promise<number> {
    if (!this.#unloggedDirty || this.readOnly) return 0;
    this.#unloggedDirty = false;
    await this.immediateSync(host);
    return 1;
  }

  /**
   * After an unclean stop (U2): every relation with an INIT fork is unlogged; drop its other
   * forks and make MAIN a copy of INIT, durable before the engine is used.
   */
  async resetUnlogged(host: VolumeHost): Promise<number> {
    if (this.readOnly) return 0;
    const inits = [...this.#forks.values()].filter((st) => st.fork === ForkNumber.INIT).map((st) => st.rel);
    for (const rel of inits) {
      for (const f of [ForkNumber.FSM, ForkNumber.VISIBILITY_MAP]) if (this.#forks.has(forkKey(rel, f))) await this.unlink(rel, f, host);
      // MAIN keeps its own extents and is rewritten in place. Its contents are void after an
      // unclean stop, so overwriting blocks the durable catalog still names loses nothing (a
      // crash during the reset leaves the stop unclean, and the next open resets again). Dropping
      // it and extending anew would need free space that only the next checkpoint returns: a
      // nearly full volume then failed every open with VOLUME_FULL.
      if (!this.#forks.has(forkKey(rel, ForkNumber.MAIN))) await this.create(rel, ForkNumber.MAIN, host);
      const main = this.#fork(rel, ForkNumber.MAIN);
      if (main.nblocks > 0) {
        main.nblocks = 0;
        this.#metaVersion++;
        this.#noteMeta(main.key);
      }
      const init = this.#fork(rel, ForkNumber.INIT);
      const page = new Uint8Array(this.blockSize);
      for (let b = 0; b < init.nblocks; b++) {
        await this.read(rel, ForkNumber.INIT, b, page);
        await this.extend(rel, ForkNumber.MAIN, b, page, host);
      }
    }
    if (inits.length > 0) await this.immediateSync(host);
    return inits.length;
  }

  async extend(relIn: RelFileLocator, forkIn: ForkNumber, blockNum: number, page: Uint8Array, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    const blk = checkBlock(blockNum);
    this.#checkPage(page, 'page');
    this.#checkWritable();
    const st = this.#fork(rel, fork);
    if (blk < st.nblocks) throw badArg(`${this.path}: cannot extend ${describeForkKey({ ...rel, fork })} at block ${blk}: it already has ${st.nblocks} blocks`);
    this.#ensureCapacity(st, blk + 1);
    // Blocks skipped by the extension get zero pages: reused space holds old data, and an old
    // page of another fork must never be read as this fork's block.
    const pages: Uint8Array[] = [];
    if (blk > st.nblocks) {
      const zero = new Uint8Array(this.blockSize);
      for (let b = st.nblocks; b < blk; b++) pages.push(zero);
    }
    pages.push(page);
    const from = st.nblocks;
    await this.#writeRun(st, from, pages, host);
    this.#writeSeq++;
    if (this.#forks.get(st.key) === st && st.nblocks < blk + 1) {
      st.nblocks = blk + 1;
      this.#metaVersion++;
    }
    this.#noteWrite(st.key);
    this.#noteMeta(st.key);
    await this.#registerSync(rel, fork, host);
  }

  async read(relIn: RelFileLocator, forkIn: ForkNumber, blockNum: number, into: Uint8Array): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    const blk = checkBlock(blockNum);
    this.#checkPage(into, 'read buffer');
    const handle = this.#checkOpen();
    const st = this.#fork(rel, fork);
    if (blk >= st.nblocks) throw this.#outOfRange(st, blk, 'read');
    const at = this.#locate(st, blk).volumeBlock * this.blockSize;
    let n: number;
    try {
      n = await this.#io.pread(handle, into, at);
    } catch (err) {
      throw ioError('read', this.path, err);
    }
    if (n !== this.blockSize) {
      throw new LamstoreError(ErrorCode.VOLUME_CORRUPT, `${this.path}: short read of ${describeForkKey({ ...rel, fork })} block ${blk} at offset ${at}: ${n} of ${this.blockSize} bytes (file truncated?)`, { path: this.path });
    }
  }

  /** Volume block of a fork block (inspection, tests). */
  physicalBlock(relIn: RelFileLocator, forkIn: ForkNumber, blockNum: number): number {
    const st = this.#fork(checkLocator(relIn), checkFork(forkIn));
    const blk = checkBlock(blockNum);
    if (blk >= st.capacity) throw this.#outOfRange(st, blk, 'locate');
    return this.#locate(st, blk).volumeBlock;
  }

  /**
   * The write contract (smgr.ts W1-W4) for the volume: each page is located once, the batch is
   * put in volume order, and volume-adjacent pages become one pwritev whatever fork they belong
   * to. Scattered runs (one dirty page per relation) are independent, so IN_FLIGHT_DEFAULT of
   * them are in flight at once instead of paying one round trip each. A run counts as written
   * (write sequence, V4) only once its pwritev has returned; on failure the runs still in flight
   * are waited for before the first error is thrown (W3).
   */
  async writeBuffers(items: readonly PageWrite[], host: VolumeHost): Promise<number> {
    this.#checkWritable();
    const handle = this.#checkOpen();
    // W1 puts a fork's pages together: look the fork up once per stretch, not once per page
    // (at 16,000 pages a checkpoint the per-page lookups were a stall of their own).
    let prev: PageWrite | null = null;
    let st: ForkState | null = null;
    const located = items.map((it) => {
      if (st === null || prev!.fork !== it.fork || prev!.rel.relNumber !== it.rel.relNumber || prev!.rel.dbOid !== it.rel.dbOid || prev!.rel.spcOid !== it.rel.spcOid) {
        st = this.#fork(checkLocator(it.rel), checkFork(it.fork));
      }
      prev = it;
      const blk = checkBlock(it.blockNum);
      this.#checkPage(it.page, 'page');
      if (blk >= st.nblocks) throw this.#outOfRange(st, blk, 'write');
      return { st, volumeBlock: this.#locate(st, blk).volumeBlock, page: it.page };
    });
    located.sort((a, b) => a.volumeBlock - b.volumeBlock);
    const runs: { from: number; to: number }[] = [];
    for (let i = 0; i < located.length; ) {
      let j = i + 1;
      while (j < located.length && located[j]!.volumeBlock === located[j - 1]!.volumeBlock + 1) j++;
      runs.push({ from: i, to: j });
      i = j;
    }
    const landed = new Map<string, ForkState>();
    try {
      await forEachInFlight(runs, IN_FLIGHT_DEFAULT, async ({ from, to }) => {
        const at = located[from]!.volumeBlock * this.blockSize;
        // An unlogged fork's pages are not owed durability before shutdown (U1): tell the sync
        // ledger not to hold them against a checkpoint.
        for (let x = from; x < to; x++) {
          const { st, volumeBlock } = located[x]!;
          if (this.#isUnlogged(st.rel, st.fork)) host.exemptFromLedger(volumeBlock * this.blockSize, this.blockSize);
        }
        const pages = located.slice(from, to).map((x) => x.page);
        await (pages.length === 1 ? this.#io.pwrite(handle, pages[0]!, at) : this.#io.pwritev(handle, pages, at));
        this.#writeSeq++;
        for (let x = from; x < to; x++) {
          const { st } = located[x]!;
          this.#noteWrite(st.key);
          landed.set(st.key, st);
        }
      });
    } catch (err) {
      throw ioError('write', this.path, err);
    } finally {
      // W4: every fork with a write that landed is registered, failure or not.
      for (const st of landed.values()) await this.#registerSync(st.rel, st.fork, host);
    }
    return runs.length;
  }

  async truncate(relIn: RelFileLocator, forkIn: ForkNumber, nblocks: number, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    if (!Number.isInteger(nblocks) || nblocks < 0) throw badArg(`nblocks must be a non-negative integer, got ${String(nblocks)}`);
    this.#checkWritable();
    const st = this.#fork(rel, fork);
    if (nblocks > st.nblocks) throw badArg(`${this.path}: cannot truncate ${describeForkKey({ ...rel, fork })} to ${nblocks} blocks: it has only ${st.nblocks}`);
    if (nblocks === st.nblocks) return;
    this.#metaVersion++;
    // Give up the extents after the one holding the new last block, and that extent's tail:
    // once a checkpoint releases the tail, regrowth can take it back in place.
    this.#dropExtents(st, nblocks === 0 ? 0 : this.#locate(st, nblocks - 1).index + 1);
    const last = st.extents[st.extents.length - 1];
    const excess = st.capacity - nblocks;
    if (last && excess > 0) {
      this.#free.deferFree({ startBlock: last.startBlock + last.lengthBlocks - excess, lengthBlocks: excess }, this.#metaVersion);
      last.lengthBlocks -= excess;
      st.capacity -= excess;
    }
    st.nblocks = nblocks;
    this.#noteMeta(st.key);
    await this.#registerSync(rel, fork, host);
  }

  /** Drop one fork, or all four. Missing forks are ignored (unlink runs after the fact). */
  async unlink(relIn: RelFileLocator, forkIn: ForkNumber | undefined, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const forks = forkIn === undefined ? FORKS : [checkFork(forkIn)];
    this.#checkWritable();
    for (const fork of forks) {
      const st = this.#forks.get(forkKey(rel, fork));
      if (!st) continue;
      this.#metaVersion++;
      this.#dropExtents(st, 0);
      this.#forks.delete(st.key);
      this.#noteMeta(st.key);
      await this.#registerSync(rel, fork, host);
    }
  }

  async registerSync(relIn: RelFileLocator, forkIn: ForkNumber, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    this.#checkWritable();
    await this.#registerSync(rel, fork, host);
  }

  async immediateSync(host: VolumeHost): Promise<void> {
    this.#checkWritable();
    try {
      await this.syncNow();
    } catch (err) {
      host.reportSyncFailure(err);
    }
  }

  // ------------------------------------------------------------ the volume sync

  /** Run a volume sync (serialized: one at a time). */
  syncNow(): Promise<void> {
    const run = this.#syncChain.then(() => this.#syncOnce());
    this.#syncChain = run.catch(() => {});
    return run;
  }

  /** True when every write and metadata change of the fork is durable (V4). */
  #covered(key: string): boolean {
    const n = this.#needs.get(key);
    return n === undefined || (n.seq <= this.#syncedSeq && n.meta <= this.#durableMeta);
  }

  /** The sync handler callback: the first tag of a checkpoint pays, the rest return at once. */
  async syncTag(tag: FileTag): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#inCheckpoint) {
      // Every tag the sync phase visits was registered before the phase began (P1 of
      // pending-ops.ts), and a fork registers only after its write or metadata change is done.
      // The first visit starts this sync, so its capture covers every tag of the phase: one
      // sync (at most 2 fdatasyncs) per checkpoint. A write racing the checkpoint registered a
      // request of its own, which the next checkpoint serves (PostgreSQL skips entries added
      // during the cycle). Do not go back to "sync until this fork is covered": with a writer
      // running, that made a checkpoint pay one sync per raced fork.
      this.#epochSync ??= this.syncNow();
      await this.#epochSync;
      return;
    }
    // Outside a checkpoint (a handler called directly): sync until this fork is covered.
    const key = forkKey(tag.rlocator, tag.forkNum);
    // One sync covers everything captured at its start. A write to this fork that raced it
    // (issued after the capture) needs one more; give up after that: such a write re-registered
    // its own request, which the next checkpoint serves.
    for (let attempt = 0; attempt < 2 && !this.#covered(key); attempt++) await this.syncNow();
    if (this.#covered(key)) this.#needs.delete(key);
  }

  async #syncOnce(): Promise<void> {
    if (this.#failure) throw this.#failure;
    const handle = this.#checkOpen();
    if (this.readOnly) return;
    // fsync off (PostgreSQL's enableFsync): every write below still happens, no flush does.
    const flush = this.#enableFsync;
    let unpublished: Extent | null = null;
    try {
      if (this.#switchInDoubt) await this.#switchSuperblock(handle, this.#switchInDoubt, flush);
      // The epoch: what this sync makes durable, captured before its first await (V4).
      const seq = this.#writeSeq;
      const meta = this.#metaVersion;
      const metaChanged = meta !== this.#durableMeta;
      if (!metaChanged && seq === this.#syncedSeq) return;
      let next: PendingSwitch | null = null;
      if (metaChanged) {
        const generation = this.#generation + 1;
        const catalog = encodeCatalog(this.#catalogSnapshot(generation));
        const blocks = Math.ceil(catalog.length / this.blockSize);
        const run = this.#free.bestFit(blocks);
        // A4 guarantees this space; its absence is a bug, not a full volume.
        assert(run !== undefined, `catalog reserve of ${blocks} blocks is free`);
        this.#free.take(run.start, blocks);
        const area = { startBlock: run.start, lengthBlocks: blocks };
        unpublished = area;
        this.#inflightArea = area;
        await this.#io.pwrite(handle, catalog, area.startBlock * this.blockSize);
        next = {
          generation,
          area,
          catalogLengthBytes: catalog.length,
          meta,
          superblock: encodeSuperblock({
            slot: generation % SLOT_COUNT,
            blockSizeBytes: this.blockSize,
            volumeSizeBytes: this.volumeSizeBytes,
            generation,
            catalogOffsetBlocks: area.startBlock,
            catalogLengthBytes: catalog.length,
            catalogCrc: crc32c(catalog),
          }),
        };
      }
      if (flush) {
        await this.#io.fdatasync(handle);
        this.stats.fdatasyncs++;
      }
      this.stats.volumeSyncs++;
      this.#syncedSeq = Math.max(this.#syncedSeq, seq);
      if (next) {
        unpublished = null; // from here the superblock may point at it
        await this.#switchSuperblock(handle, next, flush);
      }
    } catch (err) {
      throw this.#syncFailed(err, unpublished);
    }
  }

  /**
   * Step 4: write the superblock of `sw` into its slot and make it durable; then the catalog it
   * names is the durable one and the one it replaces becomes reusable at the next completed
   * checkpoint (A3). Until the fdatasync returns the slot may hold either generation, so a
   * failure leaves the switch in doubt (R2).
   */
  async #switchSuperblock(handle: FileHandle, sw: PendingSwitch, flush: boolean): Promise<void> {
    this.#switchInDoubt = sw;
    const slot = sw.generation % SLOT_COUNT;
    await this.#io.pwrite(handle, sw.superblock, slot * this.blockSize);
    if (flush) {
      await this.#io.fdatasync(handle);
      this.stats.fdatasyncs++;
    }
    this.#switchInDoubt = null;
    this.stats.metadataSwitches++;
    this.#free.deferFree(this.#catalogArea, sw.meta);
    this.#catalogArea = sw.area;
    this.#catalogLengthBytes = sw.catalogLengthBytes;
    this.#inflightArea = null;
    this.#generation = sw.generation;
    this.#durableMeta = sw.meta;
    this.#slots[slot] = { slot, valid: true, generation: sw.generation };
  }

  /**
   * A volume sync failed. Without dataSyncRetry the volume enters its failed state (the kernel
   * may have dropped the pages a later fdatasync would then report durable). With it (R1-R2),
   * only this checkpoint fails: nothing is marked durable, a catalog no superblock names goes
   * back to free space at once, and a switch in doubt is redone by the next sync before it
   * writes anything else, so a later generation never overwrites the slot of the only
   * superblock that may be durable.
   */
  #syncFailed(err: unknown, unpublished: Extent | null): LamstoreError {
    if (!this.#dataSyncRetry) return this.#fail(err);
    if (unpublished) {
      this.#free.give(unpublished.startBlock, unpublished.lengthBlocks);
      this.#inflightArea = null;
    }
    return ioError('sync', this.path, err);
  }

  checkpointBegin(): void {
    this.stats.epoch++;
    this.#inCheckpoint = true;
    this.#epochSync = null;
  }

  /** A completed checkpoint: space the durable catalog no longer references becomes free (A3). */
  async checkpointEnd(completed: boolean): Promise<void> {
    this.#inCheckpoint = false;
    this.#epochSync = null;
    if (!completed || this.#failure) return;
    // fsync off: the sync phase called no handler, yet the catalog and superblock must still be
    // written, or a clean close would lose every change of the volume's metadata. syncNow writes
    // them without a flush (no crash safety is promised with fsync off, as in PostgreSQL).
    if (!this.#enableFsync) await this.syncNow();
    this.#free.releaseUpTo(this.#durableMeta);
    for (const key of [...this.#needs.keys()]) if (this.#covered(key)) this.#needs.delete(key);
  }

  async close(): Promise<void> {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    try {
      await this.#io.close(h); // closing the descriptor releases the flock
    } catch (err) {
      throw ioError('close', this.path, err);
    }
  }

  // ------------------------------------------------------------ inspection

  info(): VolumeInfo {
    let usedBlocks = 0;
    const forks: ForkInfo[] = [];
    const sorted = [...this.#forks.values()].sort((a, b) => compareForkKeys({ ...a.rel, fork: a.fork }, { ...b.rel, fork: b.fork }));
    for (const st of sorted) {
      for (const e of st.extents) usedBlocks += e.lengthBlocks;
      forks.push({ ...st.rel, fork: st.fork, forkName: FORK_NAMES[st.fork], nblocks: st.nblocks, extents: st.extents.map((e) => ({ ...e })) });
    }
    return {
      path: this.path,
      blockSizeBytes: this.blockSize,
      volumeSizeBytes: this.volumeSizeBytes,
      volumeBlocks: this.volumeBlocks,
      fileSizeBytes: this.#fileSizeBytes,
      slots: this.#slots.map((s) => ({ ...s })),
      activeSlot: this.#generation % SLOT_COUNT,
      generation: this.#generation,
      catalog: { offsetBlocks: this.#catalogArea.startBlock, lengthBytes: this.#catalogLengthBytes, blocks: this.#catalogArea.lengthBlocks },
      metadataBlocks: METADATA_BLOCKS + this.#catalogArea.lengthBlocks + (this.#inflightArea?.lengthBlocks ?? 0),
      usedBlocks,
      freeBlocks: this.#free.freeBlocks,
      pendingFreeBlocks: this.#free.pendingBlocks,
      largestFreeRunBlocks: this.#free.largestRunBlocks(),
      freeRuns: this.#free.runs(),
      forks,
    };
  }

  /** V1-V4 and the allocator's A1-A3. */
  checkInvariants(): void {
    this.#free.checkInvariants();
    assert(this.#syncedSeq <= this.#writeSeq && this.#durableMeta <= this.#metaVersion, 'V4: sync marks never run ahead');
    const spans: Extent[] = [{ startBlock: 0, lengthBlocks: METADATA_BLOCKS }, this.#catalogArea];
    if (this.#inflightArea) spans.push(this.#inflightArea);
    spans.push(...this.#free.runs(), ...this.#free.pendingList());
    let extents = 0;
    for (const st of this.#forks.values()) {
      let cap = 0;
      st.extents.forEach((e, i) => {
        assert(st.firstBlock[i] === cap, `V2: firstBlock of ${st.key} extent ${i}`);
        assert(e.lengthBlocks >= 1, 'V2: extents are not empty');
        cap += e.lengthBlocks;
        spans.push(e);
      });
      assert(cap === st.capacity && st.nblocks <= cap, `V2: capacity of ${st.key}`);
      extents += st.extents.length;
    }
    assert(extents === this.#extentCount, 'extent count');
    spans.sort((a, b) => a.startBlock - b.startBlock);
    let at = 0;
    for (const s of spans) {
      assert(s.startBlock === at, `V1: block ${at} belongs to exactly one owner (next span starts at ${s.startBlock})`);
      at += s.lengthBlocks;
    }
    assert(at === this.volumeBlocks, 'V1: the spans cover the volume');
  }
}

