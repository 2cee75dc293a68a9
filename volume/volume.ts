/**
 * Volume: one preallocated file holding relation forks, written copy-on-write. Its in-memory
 * fork maps, the page I/O, and the volume sync that publishes a checkpoint with at most two
 * fdatasync calls (DESIGN.md section 5; format in format.ts and README.md, the catalog tree in
 * catalog.ts, placement in extent-allocator.ts, reading the metadata in examine.ts, creating a
 * file in create.ts).
 *
 * Three maps of every fork exist at once: the durable one (what the newest durable superblock's
 * catalog says), the published one (a capture being made durable by a running volume sync), and
 * the current one (memory: what reads see). A capture copies the current maps into a catalog.
 *
 * Invariants (checkInvariants() verifies V1, V2, V4 and V5; the crash tests check V3):
 *  V1 Every block of the volume is exactly one of: superblock slot (0-1), a page of the newest
 *     built catalog, a block of a fork's current map (data below nblocks, or capacity reserved
 *     beyond it), a block being written (allocated, not yet mapped), pending free (A3), or free.
 *  V2 A fork's extents hold capacity >= nblocks blocks; `firstBlock[i]` is the fork block number
 *     of extent i's first block (prefix sums), so block -> volume offset is a binary search.
 *  V3 No write ever lands on a block that the durable or a published catalog references. A page
 *     write always goes to a newly allocated block (never in place); an extension goes to capacity
 *     beyond nblocks, which no catalog ever records (F4). The block a write replaces is free at
 *     once if no capture has been taken since it was written (its extent's `era` is the current
 *     one), else pending until a capture without it is durable (A3). One exception, documented
 *     at resetUnlogged: an unlogged MAIN fork is rewritten inside its own blocks after an unclean
 *     stop, because its durable contents are void by definition.
 *  V4 `#syncedSeq <= #writeSeq` and `#durableMeta <= #metaVersion`. A write is covered by a
 *     volume sync iff its sequence number is <= `#syncedSeq`; a metadata change iff its version
 *     is <= `#durableMeta`. A live fork holds its need (last write, last change) itself, the
 *     same object `#needs` maps its key to, so a landing write updates it without a lookup; only
 *     a dropped fork's need leaves `#needs`, once covered.
 *  V5 The reserve that keeps the next checkpoint possible: every allocation except a
 *     checkpoint's own page writes leaves at least `#reserveBlocks()` free: one block for every
 *     page that could be dirty in the buffer pool (min(sharedBuffers, the blocks of all forks)),
 *     which the checkpoint must relocate, plus M + (M - the catalog's blocks now), M being the
 *     most blocks any catalog of these forks and blocks can take (catalog.ts T4, maxBlocks). M
 *     depends only on the fork count and the blocks of all forks, which only reserve-checked
 *     calls raise; a checkpoint frees as many data blocks as it relocates and grows the catalog
 *     by at most the last term. So the reserve still holds after every checkpoint: a write that
 *     would make the next checkpoint impossible fails with VOLUME_FULL, nothing already written
 *     is lost, and a checkpoint never runs out of room (the volume model's VM3; a reserve
 *     counted from the leaves of the moment did not hold after a capture that added a leaf,
 *     test/campaign-volume-model-regressions.test.ts).
 *  V7 Snapshots (the methods under "snapshots", snapshots.ts S1-S6): the blocks the snapshots
 *     hold (`#held`) are never free (extent-allocator.ts A5), whatever the live state releases;
 *     a snapshot operation is one superblock switch made inside the sync chain, so it never
 *     interleaves with a volume sync; the superblock every volume sync writes names the current
 *     snapshot table. V5's reserve counts `#heldLive`, the live data blocks a snapshot also
 *     holds: each may have to be relocated by a checkpoint without its old block coming free,
 *     so with it reserved every later checkpoint still has room whatever is rewritten; and, for
 *     the same reason, the pages of the live catalog a snapshot holds (`#countHeldCatalog`): a
 *     build that replaces one gets no block back, which V5's catalog terms alone assume it does.
 *  V6 Online growth (`grow: { step, max }`, the methods under "growth"): where an allocation
 *     would fail with VOLUME_FULL, the file first grows by the fewest whole steps that make room
 *     (never past max; one growth at a time): extend it, zero-fill the new tail, fdatasync (which
 *     covers the size change, grow.ts G3), and only then add the tail to the free space and set
 *     `volumeSizeBytes`. So no block past the durable superblock's size is ever written before
 *     the file holds it durably, and the capture that first names such a block encodes the new
 *     size in the same synchronous step (#syncOnce): the catalog naming blocks past the old size
 *     and the superblock recording the new one become durable in one switch. A crash before it
 *     leaves the old size and a longer file, which opens (examine.ts E4).
 *
 * Checkpoint order (the volume sync, `#syncOnce`), and why:
 *  1. BufferSync handed the dirty pages over (writeBuffers): each batch went, in (fork, block)
 *     order, to the next blocks of one stream (A4), one pwritev per run of up to IOV_MAX pages.
 *  2. Forks whose maps have scattered past their bound are rewritten whole into one run, or a
 *     few within the bound when free space has no run that long (the defragmentation pass,
 *     D1-D2 at #defragment).
 *  3. Capture: the current maps become a new catalog (catalog.ts T3), synchronously, so it
 *     describes one instant; writes that land after it belong to the next capture and are never
 *     referenced by it. The changed leaves and the index chain go to free blocks.
 *  4. fdatasync: pages and the new catalog are durable. A crash before this returns leaves the
 *     old superblock pointing at the old, intact catalog and pages (V3).
 *  5. The older superblock slot is overwritten with generation + 1, then a second fdatasync.
 *     The switch is one 128-byte write inside one sector; a torn or lost write leaves the
 *     previous slot as the newest valid one. Once durable, the blocks the capture stopped
 *     referencing become free (A3).
 * Sync epoch: inside a checkpoint (checkpointBegin..checkpointEnd) the first tag the sync phase
 * visits starts one sync and every tag of the phase waits for that same sync: each was
 * registered before the phase began, after its change, so the capture covers it; a write racing
 * the checkpoint registered a request of its own for the next cycle. So a checkpoint costs at
 * most 2 fdatasyncs with writers running. Outside a checkpoint a tag syncs until its fork is
 * covered (V4).
 * A volume sync outside a checkpoint (immediateSync, the sync a writer makes itself when the
 * request queue is full, a handler called directly) publishes a capture exactly as a checkpoint's
 * does: for the crash contract (DESIGN.md section 8) it is a completed checkpoint of the volume,
 * and a crash after it leaves that state, whole, as PostgreSQL's backend fsync makes a segment's
 * writes durable before the next checkpoint.
 *
 * fsync off (the engine's `fsync`, VolumeOpenOptions.enableFsync false): no sync handler is
 * called, so checkpointEnd runs the volume sync itself without its fdatasyncs: the catalog and
 * superblock are still written (a clean close keeps every change), but nothing is crash-safe,
 * as with PostgreSQL's fsync = off.
 *
 * The failed state: a failed fdatasync, a failed catalog or superblock write, or any error inside
 * the volume sync sets `#failure`. From then on every write, extend, create, truncate, unlink and
 * sync throws ENGINE_FAILED naming the volume; reads keep working. The sync handler rethrows, so
 * the engine enters its own failed state too (F1 of engine.ts). Because nothing durable was ever
 * overwritten, reopening finds the last published checkpoint whole (fsyncgate: a page whose
 * fdatasync failed was never referenced by a durable superblock). A failed switch is undone in
 * the page cache (#undoSwitch), so a reopen without a power loss finds that checkpoint too.
 *
 * dataSyncRetry (PostgreSQL's data_sync_retry, for kernels that keep failed pages dirty):
 *  R1 A failed volume sync fails only its checkpoint. Nothing it covered is marked durable; the
 *     catalog pages no superblock names yet go back to free space at once (catalog.ts abandon).
 *  R2 A failure from the superblock write on leaves the switch in doubt: the slot may hold the
 *     old or the new generation. The next sync writes the same superblock again and syncs it
 *     before writing anything else, so generation g + 2 never overwrites the slot of g while g + 1
 *     may not be durable (that would leave no valid superblock after a torn write).
 */
import { resolve } from 'node:path';
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
  crc32c,
  forEachInFlight,
  pwriteEach,
  writtenOf,
  IN_FLIGHT_DEFAULT,
  cleanUp,
  errnoOf,
  forkKey,
  fsError,
  ioError,
  isUnloggedFork,
  openFile,
  locatorKey,
} from '../engine/index.js';
import type { FileHandle, FileIO, FileTag, FileWrite, PageWrite, Persistence, RelFileLocator, WriteOrigin, WriteResult } from '../engine/index.js';
import { EXTENT_BLOCKS_FIRST, METADATA_BLOCKS, SLOT_COUNT, SLOT_NEVER_WRITTEN, SUPERBLOCK_BYTES, checkGrowOptions, compareForkKeys, describeForkKey, encodeSuperblock, extentBlocksMax } from './format.js';
import type { CatalogFork, Extent, ForkKey, VolumeGrowOptions } from './format.js';
import { FreeSpace, growthBlocks } from './extent-allocator.js';
import { CatalogTree } from './catalog.js';
import type { BuiltCatalog, CatPage } from './catalog.js';
import { examineVolume, readCatalogRoot } from './examine.js';
import type { CatalogRoot, SlotInfo, VolumeExamination } from './examine.js';
import { HeldSet, catalogExtents, checkSnapshotName, encodeSnapshotTable, exclusiveBlocks } from './snapshots.js';
import type { SnapshotEntry } from './snapshots.js';
import { SNAPSHOTS_MAX, snapshotEntriesMax } from './format.js';
import type { SnapshotTableRef, Superblock } from './format.js';
import { checkCreateOptions, createVolumeFile, zeroFill } from './create.js';
import type { VolumeCreateOptions } from './create.js';

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
  /** Grow the file by `step` bytes, up to `max`, instead of failing with VOLUME_FULL (V6). Ignored read-only. */
  grow?: VolumeGrowOptions;
  /**
   * Pages the engine's buffer pool holds (its sharedBuffers): at most that many pages can be
   * dirty, and each needs a new block at the next checkpoint (V5). @default 0 (no pool: every
   * write reaches the volume at once)
   */
  poolPages?: number;
  /**
   * Open this snapshot instead of the live state: read-only (shared lock), every write refused
   * with VOLUME_READ_ONLY; the file is never written (V7).
   */
  snapshot?: string;
}

/** A snapshot as `listSnapshots` and `inspect` show it. */
export interface SnapshotInfo {
  name: string;
  /** The generation of the checkpoint it names, and when that was published (ms since 1970). */
  generation: number;
  checkpointTimeMs: number;
  /** When the snapshot was taken (ms since 1970). */
  createdMs: number;
  volumeSizeBytes: number;
  forkCount: number;
  /** Blocks its catalog references (pages and extents). */
  blocks: number;
  /** Of those, the blocks neither the live state nor another snapshot references: what dropping it frees. */
  exclusiveBlocks: number;
}

/**
 * What a volume needs from the engine that runs it, given to every call that changes the volume
 * (volume/smgr.ts makes one, whole, from the engine's SmgrContext and the sync handler id). The
 * volume holds no engine state of its own: it knows neither its handler id nor the engine.
 */
export interface VolumeHost {
  /**
   * RegisterSyncRequest, not waiting: a SYNC request for one fork of this volume; false when the
   * queue is full. `origin` 'checkpoint': for a checkpoint's own batch (SmgrContext.trySyncRequest).
   */
  requestSync(rel: RelFileLocator, fork: ForkNumber, origin?: WriteOrigin): boolean;
  /** Count a volume sync made at once because the queue was full (a backend fsync). */
  countBackendSync(): void;
  /** A volume sync made outside a checkpoint failed: the engine enters its failed state (throws). */
  reportSyncFailure(err: unknown): never;
  /** The sync ledger must not hold this write against a checkpoint (sync-ledger.ts L3). */
  exemptFromLedger(offsetBytes: number, lengthBytes: number): void;
}

export interface ForkInfo {
  spcOid: number;
  dbOid: number;
  relNumber: number;
  fork: number;
  forkName: string;
  nblocks: number;
  /** The fork's map: runs of consecutive fork blocks at consecutive volume blocks. */
  extents: Extent[];
}

/** What `lamstore inspect` and `lamstore map` show. */
export interface VolumeInfo {
  path: string;
  formatVersion: number;
  blockSizeBytes: number;
  volumeSizeBytes: number;
  volumeBlocks: number;
  fileSizeBytes: number;
  slots: SlotInfo[];
  activeSlot: number;
  generation: number;
  /** When the active superblock was published (ms since 1970). */
  checkpointTimeMs: number;
  catalog: { indexBlock: number; indexPages: number; leafPages: number; blocks: number; pageBlocks: number[] };
  /** Superblocks + catalog pages. */
  metadataBlocks: number;
  /** Blocks in forks' maps (data and reserved capacity). */
  usedBlocks: number;
  freeBlocks: number;
  /** Space a durable catalog may still reference, reusable after the next checkpoint. */
  pendingFreeBlocks: number;
  largestFreeRunBlocks: number;
  freeRuns: Extent[];
  forks: ForkInfo[];
  /** The snapshots, in name order (V7); Volume.info always sets the snapshot fields. */
  snapshots?: SnapshotInfo[];
  /** Blocks the snapshots' catalogs reference, shared with the live state or not. */
  snapshotHeldBlocks?: number;
  /** Those blocks as runs (live ones among them). */
  snapshotHeldRuns?: Extent[];
  /** The snapshot table's pages (no catalog's blocks). */
  snapshotTableBlocks?: number[];
  /** The snapshot this volume was opened on (VolumeOpenOptions.snapshot), else null. */
  openedSnapshot?: string | null;
}

/** A snapshot as the running volume keeps it: its entry and every block its catalog references. */
interface SnapState {
  entry: SnapshotEntry;
  extents: Extent[];
}

/** The catalog the newest durable superblock names (what a snapshot taken now names). */
interface DurableRoot extends CatalogRoot {
  timeMs: number;
}

/** A fork's map extent: `era` is the capture count when it was written (V3: fresh iff current). */
interface MapExtent extends Extent {
  era: number;
}

interface ForkState {
  key: string;
  rel: RelFileLocator;
  fork: ForkNumber;
  nblocks: number;
  extents: MapExtent[];
  /** V2: fork block number of each extent's first block. */
  firstBlock: number[];
  capacity: number;
  /** The defragmentation pass is copying this fork (D2). */
  copying: boolean;
  /** The catalog leaves holding this fork (catalog.ts keeps it). */
  catPages: CatPage | CatPage[] | null;
  /** Unlinked: no longer the volume's fork of that key (a write landing late gives its block back). */
  dropped: boolean;
  /** Its entry in the volume's sync needs (V4), made on its first change and kept while it lives. */
  need: SyncNeed | null;
  /** In #changed: a candidate of the next defragmentation pass (D1). */
  changed: boolean;
}

/** A new catalog written and waiting for its superblock (the second half of a volume sync). */
interface PendingSwitch {
  generation: number;
  capture: number;
  superblock: Uint8Array;
  built: BuiltCatalog;
  /** The metadata version the catalog describes. */
  meta: number;
  /** What the superblock names, for #durableRoot. */
  root: DurableRoot;
}

interface SyncNeed {
  /** Last write of the fork (sequence number) and last metadata change (version). */
  seq: number;
  meta: number;
}

export interface VolumeStats {
  /** Volume syncs that did work (fdatasync issued). */
  volumeSyncs: number;
  /** Of those, syncs that switched the superblock (metadata changed). */
  metadataSwitches: number;
  fdatasyncs: number;
  /** checkpointBegin calls: the sync epochs. */
  epoch: number;
  /** Pages written to a new block (every page write: copy-on-write). */
  pagesRelocated: number;
  /** Contiguous volume runs written by page writes. */
  runsWritten: number;
  /** Forks rewritten whole by the defragmentation pass, and the pages that cost. */
  forksDefragmented: number;
  pagesDefragmented: number;
  /** Catalog pages written (leaves + index). */
  catalogPagesWritten: number;
  /** Online growths of the file (V6), and the bytes they added. */
  grows: number;
  grownBytes: number;
}

/** Most buffers one pwritev takes (Linux's IOV_MAX). */
export const IOV_MAX = 1024;
/**
 * D1: a fork is rewritten whole at a checkpoint when its map has more extents than
 * max(DEFRAG_EXTENTS_MIN, nblocks / DEFRAG_BLOCKS_PER_EXTENT): 8 for a fork up to 2 MiB, then one
 * extent per 256 blocks (2 MiB at 8 KiB), so a sequential read of any fork does at least one
 * long read per 2 MiB on average.
 */
export const DEFRAG_EXTENTS_MIN = 8;
export const DEFRAG_BLOCKS_PER_EXTENT = 256;
/** Pages the defragmentation pass copies per read/write. */
const DEFRAG_CHUNK_BLOCKS = 256;

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
    const e =
      errnoOf(err) === 'EAGAIN'
        ? new LamstoreError(ErrorCode.VOLUME_LOCKED, `${path}: volume is locked by another process or handle (${readOnly ? 'shared' : 'exclusive'} flock refused)`, { path, cause: err, errno: 'EAGAIN' })
        : ioError('flock', path, err);
    await cleanUp(e, `${path}: close`, () => io.close(handle));
    throw e;
  }
  return handle;
}

/** Open a volume file read-only with a shared lock (checkVolume). */
export function openHandleShared(io: FileIO, path: string): Promise<FileHandle> {
  return openHandle(io, path, true);
}

/** Open a volume file read-write with an exclusive lock, as an engine would (grow.ts). */
export function openHandleExclusive(io: FileIO, path: string): Promise<FileHandle> {
  return openHandle(io, path, false);
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

/** The examination of a volume seen as one of its snapshots (VolumeOpenOptions.snapshot, V7). */
function snapshotView(ex: VolumeExamination, name: string): VolumeExamination {
  const snap = ex.snapshots?.find((x) => x.entry.name === name);
  if (!snap) {
    const names = (ex.snapshots ?? []).map((x) => x.entry.name);
    throw badArg(`no snapshot named ${name} in the volume (${names.length === 0 ? 'it has none' : `it has ${names.join(', ')}`})`);
  }
  const e = snap.entry;
  const active: Superblock = { ...ex.active!, generation: e.generation, timeMs: e.checkpointTimeMs, indexBlock: e.indexBlock, indexCrc: e.indexCrc, indexPages: e.indexPages, leafPages: e.leafPages, forkCount: e.forkCount };
  return { ...ex, active, forks: snap.forks, indexBlocks: snap.indexBlocks, leaves: snap.leaves };
}

/** The extents of `extents` that hold fork blocks [0, nblocks), physically adjacent ones merged (F4). */
function trimmedMap(extents: readonly Extent[], nblocks: number): Extent[] {
  const out: Extent[] = [];
  let left = nblocks;
  for (const e of extents) {
    if (left === 0) break;
    const len = Math.min(left, e.lengthBlocks);
    const last = out[out.length - 1];
    if (last && last.startBlock + last.lengthBlocks === e.startBlock) last.lengthBlocks += len;
    else out.push({ startBlock: e.startBlock, lengthBlocks: len });
    left -= len;
  }
  return out;
}

export class Volume {
  readonly path: string;
  readonly readOnly: boolean;
  readonly blockSize: number;
  /** The volume's size in memory: the durable superblock's, or larger after a growth (V6 changes it, nothing else). */
  volumeSizeBytes: number;
  volumeBlocks: number;
  readonly stats: VolumeStats = { volumeSyncs: 0, metadataSwitches: 0, fdatasyncs: 0, epoch: 0, pagesRelocated: 0, runsWritten: 0, forksDefragmented: 0, pagesDefragmented: 0, catalogPagesWritten: 0, grows: 0, grownBytes: 0 };
  readonly #io: FileIO;
  /** VolumeOpenOptions.enableFsync, dataSyncRetry and poolPages, fixed at open. */
  readonly #enableFsync: boolean;
  readonly #dataSyncRetry: boolean;
  readonly #poolPages: number;
  #handle: FileHandle | null;
  readonly #forks = new Map<string, ForkState>();
  /** The same forks by relation number (#forkOf): a write finds its fork without building a key. */
  readonly #byRelNumber = new Map<number, ForkState[]>();
  readonly #free: FreeSpace;
  readonly #tree: CatalogTree;
  readonly #extentMaxBlocks: number;
  #extentCount = 0;
  /** Sum of nblocks over every fork (V5). */
  #liveBlocks = 0;
  #slots: SlotInfo[];
  #fileSizeBytes: number;
  #generation: number;
  #timeMs: number;
  /** Captures taken (V3: an extent with this era was written since the last one). */
  #captures = 0;
  /** The newest capture whose superblock is durable (A3). */
  #durableCapture = 0;
  /** Where the last page stream stopped (A4); -1 before the first. */
  #cursor = -1;
  /** Blocks allocated for writes in flight (V1). */
  #inFlightBlocks = 0;
  #metaVersion = 0;
  #durableMeta = 0;
  #writeSeq = 0;
  #syncedSeq = 0;
  readonly #needs = new Map<string, SyncNeed>();
  /** Keys in #needs whose fork was unlinked: dropped once covered (#forgetNeedIfCovered). */
  readonly #orphanNeeds = new Set<string>();
  #failure: LamstoreError | null = null;
  #syncChain: Promise<void> = Promise.resolve();
  /** Between checkpointBegin and checkpointEnd: the sync phase's tags share one volume sync. */
  #inCheckpoint = false;
  /** That checkpoint's volume sync, started by the first tag it visits (see syncTag). */
  #epochSync: Promise<void> | null = null;
  /** `#epochSync` fulfilled: the phase's later tags are covered already and return no promise. */
  #epochSynced = false;
  /**
   * A superblock switch whose write or fdatasync failed under dataSyncRetry (R2): the slot may
   * hold either generation, so the next sync writes the same superblock again before anything
   * else.
   */
  #switchInDoubt: PendingSwitch | null = null;
  /**
   * Forks whose map changed since the last defragmentation pass began: its candidates (D1), each
   * once, in the order of their first change; a fork is in it while its `changed` flag is set
   * (a flag and a list, not a Set: every landing write marks its fork, and the Set's add was
   * half of that mark's cost).
   */
  #changed: ForkState[] = [];
  /** VolumeOpenOptions.grow, checked against the volume at open (V6); null: never grows. */
  readonly #grow: VolumeGrowOptions | null;
  /** The growth under way (V6: one at a time). */
  #growing: Promise<void> | null = null;
  /** V7: the snapshots in name order, their table, the blocks they hold, the live data among those. */
  #snapshots: SnapState[] = [];
  #tableRef: SnapshotTableRef | null = null;
  #tableBlocks: number[] = [];
  #held: HeldSet = HeldSet.EMPTY;
  #heldLive = 0;
  /** #countHeldCatalog(#held) as of the tree's build `version` (#heldByLive). */
  #heldCatalogCache: { held: HeldSet; tree: CatalogTree; version: number; count: number } | null = null;
  #durableRoot: DurableRoot;
  /** VolumeOpenOptions.snapshot: the snapshot this read-only volume shows, else null. */
  readonly openedSnapshot: string | null;

  private constructor(io: FileIO, handle: FileHandle, path: string, options: VolumeOpenOptions, ex: VolumeExamination) {
    const sb = ex.active!;
    this.#io = io;
    const readOnly = options.readOnly === true;
    this.#enableFsync = options.enableFsync !== false;
    this.#dataSyncRetry = options.dataSyncRetry === true;
    this.#poolPages = options.poolPages ?? 0;
    this.#grow = options.grow !== undefined && !readOnly ? checkGrowOptions(options.grow, 'volume grow options', sb) : null;
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
    this.#timeMs = sb.timeMs;
    const used: Extent[] = [];
    for (const b of ex.indexBlocks!) used.push({ startBlock: b, lengthBlocks: 1 });
    for (const l of ex.leaves!) used.push({ startBlock: l.block, lengthBlocks: 1 });
    const states: ForkState[] = [];
    for (const f of ex.forks!) {
      const st = this.#newFork(f, f.fork as ForkNumber);
      st.nblocks = f.nblocks;
      this.#liveBlocks += f.nblocks;
      // Durable blocks carry era -1: never fresh (V3).
      for (const e of f.extents) {
        this.#appendExtent(st, { startBlock: e.startBlock, lengthBlocks: e.lengthBlocks, era: -1 });
        used.push(e);
      }
      states.push(st);
    }
    this.openedSnapshot = options.snapshot ?? null;
    this.#durableRoot = { generation: sb.generation, timeMs: sb.timeMs, volumeSizeBytes: sb.volumeSizeBytes, blockSizeBytes: sb.blockSizeBytes, indexBlock: sb.indexBlock, indexCrc: sb.indexCrc, indexPages: sb.indexPages, leafPages: sb.leafPages, forkCount: sb.forkCount };
    // V7: the snapshots' blocks and the table's pages are not free; the live state shares some.
    this.#snapshots = (ex.snapshots ?? []).map((x) => ({ entry: x.entry, extents: catalogExtents([...x.indexBlocks, ...x.leaves.map((l) => l.block)], x.forks) }));
    this.#tableRef = sb.snapshots ?? null;
    this.#tableBlocks = [...(ex.snapshotTableBlocks ?? [])];
    this.#held = new HeldSet(this.#snapshots.flatMap((x) => x.extents));
    const taken = new HeldSet([...used, ...this.#held.runs(), ...this.#tableBlocks.map((b) => ({ startBlock: b, lengthBlocks: 1 }))]);
    this.#free = new FreeSpace(this.volumeBlocks, taken.runs());
    this.#free.setHeld(this.#held);
    this.#tree = new CatalogTree(this.blockSize, ex.leaves!, ex.indexBlocks!, states);
    this.#heldLive = this.#countHeldLive();
  }

  /** Open (or, with `create`, create) a volume file: lock, read, validate. Writes nothing to an existing file. */
  static async open(options: VolumeOpenOptions): Promise<Volume> {
    if (typeof options !== 'object' || options === null) throw badArg('volume options must be an object { path, create?, readOnly? }');
    if (typeof options.path !== 'string' || options.path.length === 0) throw badArg('option path must be a non-empty file path');
    const path = resolve(options.path);
    if (options.snapshot !== undefined) {
      checkSnapshotName(options.snapshot);
      if (options.readOnly === false) throw badArg('option snapshot opens a snapshot read-only: readOnly cannot be false');
      if (options.create !== undefined) throw badArg('options snapshot and create exclude each other: a snapshot is opened in an existing volume');
      options = { ...options, readOnly: true, grow: undefined };
    }
    const readOnly = options.readOnly === true;
    if (options.grow !== undefined && !readOnly) checkGrowOptions(options.grow, 'volume grow options');
    if (options.create !== undefined && !readOnly) {
      const create = options.create;
      const created = checkCreateOptions(create, options.blockSize);
      // V6: a grow.max below the size to create would refuse the volume just made.
      if (options.grow !== undefined) checkGrowOptions(options.grow, 'volume grow options', { blockSizeBytes: created.blockSize, volumeSizeBytes: created.sizeBytes });
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
      const vol = new Volume(options.io, handle, path, options, options.snapshot !== undefined ? snapshotView(ex, options.snapshot) : ex);
      if (options.blockSize !== undefined && vol.blockSize !== options.blockSize) {
        throw badArg(`${path}: volume block size is ${vol.blockSize} but the engine's blockSize is ${options.blockSize}`);
      }
      if (!readOnly && options.uncleanStart !== false) {
        // A process that died with this volume open may have left writes in the page cache
        // only. Make them durable before anything is built on what reads now return. The
        // engine's data directory records whether the last stop was clean; when it says
        // clean, there is nothing left to make durable.
        try {
          await options.io.fdatasync(handle);
        } catch (err) {
          throw ioError('fdatasync', path, err);
        }
      }
      return vol;
    } catch (err) {
      await cleanUp(err, `${path}: close`, () => options.io.close(handle));
      throw err;
    }
  }

  // ------------------------------------------------------------ fork state

  #newFork(rel: RelFileLocator, fork: ForkNumber): ForkState {
    const key = forkKey(rel, fork);
    assert(!this.#forks.has(key), `fork ${key} is new`);
    const st: ForkState = { key, rel: { spcOid: rel.spcOid, dbOid: rel.dbOid, relNumber: rel.relNumber }, fork, nblocks: 0, extents: [], firstBlock: [], capacity: 0, copying: false, catPages: null, dropped: false, need: null, changed: false };
    this.#forks.set(key, st);
    const same = this.#byRelNumber.get(st.rel.relNumber);
    if (same) same.push(st);
    else this.#byRelNumber.set(st.rel.relNumber, [st]);
    return st;
  }

  #appendExtent(st: ForkState, e: MapExtent): void {
    st.firstBlock.push(st.capacity);
    st.extents.push(e);
    st.capacity += e.lengthBlocks;
    this.#extentCount++;
  }

  /**
   * #fork for a write's (rel, fork) as given, unchecked: found by relation number and compared
   * field by field, no key string made (the key cost a write 0.3-0.4 µs per fork). A miss (an
   * unknown fork, or input that is no valid locator, which matches no fork) goes through the
   * checks and #fork, which say what is wrong.
   */
  #forkOf(rel: RelFileLocator, fork: ForkNumber): ForkState {
    const same = this.#byRelNumber.get(rel.relNumber);
    if (same !== undefined) {
      for (let i = 0; i < same.length; i++) {
        const st = same[i]!;
        if (st.fork === fork && st.rel.dbOid === rel.dbOid && st.rel.spcOid === rel.spcOid) return st;
      }
    }
    return this.#fork(checkLocator(rel), checkFork(fork));
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

  /** The fork's map as a catalog records it (F4). */
  #forkMap(st: ForkState): CatalogFork {
    // Fields spelt out: an object spread followed by more fields is V8's slow path, 50x slower
    // here, and this runs for every changed fork at every capture.
    return { spcOid: st.rel.spcOid, dbOid: st.rel.dbOid, relNumber: st.rel.relNumber, fork: st.fork, nblocks: st.nblocks, extents: trimmedMap(st.extents, st.nblocks) };
  }

  /** A fork's map, size or existence changed (V4, and its catalog leaf). */
  #changedMeta(st: ForkState): void {
    this.#metaVersion++;
    this.#tree.touch(st);
    if (!st.changed) {
      st.changed = true;
      this.#changed.push(st);
    }
    this.#noteMeta(st);
  }

  // ------------------------------------------------------------ space

  /**
   * A block the current map no longer uses (A3, V3): free at once if written since the last
   * capture (no catalog can name it), else pending until a capture without it is durable.
   */
  #release(startBlock: number, lengthBlocks: number, era: number, st: ForkState): void {
    if (lengthBlocks < 1) return;
    // V7: live data a snapshot holds stops being live; the block stays the snapshot's (A5).
    if (!this.#held.empty) this.#heldLive -= this.#held.countIn(startBlock, lengthBlocks);
    // While the defragmentation pass copies the fork, nothing of it is reused before the next
    // durable capture (D2: a block freed and taken again would look unmoved to the copy).
    if (era === this.#captures && !st.copying) this.#free.give(startBlock, lengthBlocks);
    else this.#free.deferFree({ startBlock, lengthBlocks }, this.#captures + 1);
  }

  /**
   * V5: blocks to keep free so the next checkpoint can run, after adding `extraForks` forks and
   * `extraBlocks` blocks to forks: a block for every page the pool could hold dirty, the largest
   * catalog a build could write (M, catalog.ts T4), and what the catalog may still grow by
   * (M less the blocks it takes now). The last term is what keeps the reserve enough from one
   * checkpoint to the next: a checkpoint frees as many data blocks as it relocates, and its
   * catalog grows by at most that term, which it uses up.
   */
  #reserveBlocks(extraForks: number, extraBlocks: number, held: HeldSet = this.#held): number {
    const m = CatalogTree.maxBlocks(this.blockSize, this.#forks.size + extraForks, this.#liveBlocks + extraBlocks);
    return Math.min(this.#poolPages, this.#liveBlocks + extraBlocks) + m + Math.max(0, m - this.#tree.pageCount) + this.#heldByLive(held);
  }

  #full(what: string, wanted: number, reserve: number): LamstoreError {
    return new LamstoreError(
      ErrorCode.VOLUME_FULL,
      `${this.path}: volume is full: no room to ${what} (${wanted} block${wanted === 1 ? '' : 's'} wanted, ${this.#free.freeBlocks} free, ${this.#free.pendingBlocks} waiting for a checkpoint, ${reserve} kept so the next checkpoint can relocate every dirty page and write its catalog)${this.#growHint()}`,
      { path: this.path },
    );
  }

  // ------------------------------------------------------------ growth (V6)

  /** The end of every VOLUME_FULL message: how to make the volume larger. */
  #growHint(): string {
    const offline = `\`lamstore grow ${this.path} --size <larger size>\``;
    if (this.#grow) return `; it may not grow past grow.max (${this.#grow.max} bytes, now ${this.volumeSizeBytes}): raise grow.max, or grow it with ${offline} while no engine holds it`;
    return `; grow it with ${offline} while no engine holds it, or open it with volumeExtension({ path, grow: { step, max } }) to let it grow as needed`;
  }

  /**
   * V6: with growth on, grow the file until `deficit()` (free blocks still missing for the
   * caller's allocation) is <= 0 (true), or growth cannot help (false). Undefined when there is
   * nothing to do, so that the caller awaits nothing then: without growth (or with room enough)
   * an operation keeps exactly its old interleaving. Callers loop
   * `for (let room = #roomFor(d); room !== undefined && (await room); room = #roomFor(d));` and
   * then run their own check in the same turn: between this promise settling and the caller
   * resuming, another caller may take what the growth added, so the deficit is asked again
   * with no await in between (found when fewer awaits on the write path changed the order).
   */
  #roomFor(deficit: () => number): Promise<boolean> | undefined {
    if (this.#grow === null || deficit() <= 0) return undefined;
    return (async () => {
      for (let d = deficit(); d > 0; d = deficit()) if (!(await this.#growFor(d))) return false;
      return true;
    })();
  }

  /**
   * Grow by the fewest whole steps that free `deficitBlocks` more blocks, never past max. One
   * growth at a time: a caller arriving during one waits for it and looks again (true). False
   * when growth cannot help: off, read-only, failed, closed, or even max too small.
   */
  async #growFor(deficitBlocks: number): Promise<boolean> {
    if (this.#growing) {
      // The growth's failure goes to the allocation that started it; this one just looks again.
      await this.#growing.catch(() => {});
      return true;
    }
    const grow = this.#grow;
    if (grow === null || this.readOnly || this.#failure || this.#handle === null) return false;
    const stepBlocks = grow.step / this.blockSize;
    const newBlocks = Math.min(grow.max / this.blockSize, this.volumeBlocks + Math.ceil(deficitBlocks / stepBlocks) * stepBlocks);
    if (newBlocks - this.volumeBlocks < deficitBlocks) return false;
    const growing = this.#growTo(newBlocks);
    this.#growing = growing;
    try {
      await growing;
    } finally {
      this.#growing = null;
    }
    return true;
  }

  /**
   * Extend the file to `newBlocks`, zero-fill the tail, fdatasync, then make the tail free space
   * and the new size the one the next capture records (V6; the order of grow.ts G2-G3). A
   * failed extension or fill changes nothing (the file is cut back, best effort) and is
   * VOLUME_FULL when the disk is full, IO_ERROR otherwise; a failed fdatasync is a failed volume
   * sync (it may have lost other pages' writes too).
   */
  async #growTo(newBlocks: number): Promise<void> {
    const handle = this.#checkOpen();
    const oldBytes = this.volumeSizeBytes;
    const newBytes = newBlocks * this.blockSize;
    const fileBytes = this.#fileSizeBytes;
    let step = 'ftruncate';
    try {
      if (fileBytes < newBytes) await this.#io.ftruncate(handle, newBytes);
      step = 'write';
      await zeroFill(this.#io, handle, oldBytes, newBytes);
    } catch (err) {
      const errno = errnoOf(err);
      const e =
        errno === 'ENOSPC' || errno === 'EDQUOT'
          ? new LamstoreError(ErrorCode.VOLUME_FULL, `${this.path}: volume is full and could not grow from ${oldBytes} to ${newBytes} bytes: ${step} failed: ${errno}`, { path: this.path, cause: err, errno, syscall: step })
          : ioError(step, this.path, err);
      if (fileBytes < newBytes) await cleanUp(e, `${this.path}: cut back to ${fileBytes} bytes`, () => this.#io.ftruncate(handle, fileBytes));
      throw e;
    }
    try {
      await this.#io.fdatasync(handle);
    } catch (err) {
      throw this.#syncFailed(err, null);
    }
    this.stats.fdatasyncs++;
    this.#fileSizeBytes = Math.max(fileBytes, newBytes);
    this.volumeSizeBytes = newBytes;
    this.volumeBlocks = newBlocks;
    this.#free.grow(newBlocks);
    // The next volume sync publishes a superblock even if nothing else changed, so the size is
    // recorded at the next checkpoint (until then a crash leaves the old size, E4).
    this.#metaVersion++;
    this.stats.grows++;
    this.stats.grownBytes += newBytes - oldBytes;
  }

  /** The growth step when `st` needs `target` blocks: in place after its last extent, else best fit (A4). */
  #ensureCapacity(st: ForkState, target: number): void {
    if (st.capacity >= target) return;
    const undo: (() => void)[] = [];
    try {
      while (st.capacity < target) {
        const need = target - st.capacity;
        const want = Math.max(growthBlocks(st.capacity, EXTENT_BLOCKS_FIRST, this.#extentMaxBlocks), need);
        const reserve = this.#reserveBlocks(0, target - st.nblocks);
        const spare = this.#free.freeBlocks - reserve;
        if (spare < need) throw this.#full(`grow ${describeForkKey({ ...st.rel, fork: st.fork })}`, need, reserve);
        const len0 = Math.min(want, spare);
        const last = st.extents[st.extents.length - 1];
        if (last) {
          const end = last.startBlock + last.lengthBlocks;
          const run = this.#free.runContaining(end);
          if (run && run.start === end) {
            const len = Math.min(len0, run.length);
            this.#free.take(end, len);
            // Capacity beyond nblocks is never in a catalog (F4); a new extent keeps the era so
            // a later write of these blocks knows they were never captured.
            const era = this.#captures;
            this.#appendExtent(st, { startBlock: end, lengthBlocks: len, era });
            undo.push(() => this.#popExtent(st, end, len));
            continue;
          }
        }
        const best = this.#free.bestFit(len0);
        let start: number;
        let len: number;
        if (best) {
          start = best.start;
          len = len0;
        } else {
          let largest: Extent | undefined;
          for (const r of this.#free.runs()) if (!largest || r.lengthBlocks > largest.lengthBlocks) largest = r;
          start = largest!.startBlock;
          len = Math.min(len0, largest!.lengthBlocks);
        }
        this.#free.take(start, len);
        this.#appendExtent(st, { startBlock: start, lengthBlocks: len, era: this.#captures });
        undo.push(() => this.#popExtent(st, start, len));
      }
    } catch (err) {
      for (const u of undo.reverse()) u();
      throw err;
    }
    this.#mergeTail(st);
  }

  #popExtent(st: ForkState, start: number, len: number): void {
    st.extents.pop();
    st.firstBlock.pop();
    st.capacity -= len;
    this.#extentCount--;
    this.#free.give(start, len);
  }

  /** Merge the last extents when physically adjacent and of the same era (keeps maps short). */
  #mergeTail(st: ForkState): void {
    while (st.extents.length >= 2) {
      const b = st.extents[st.extents.length - 1]!;
      const a = st.extents[st.extents.length - 2]!;
      if (a.startBlock + a.lengthBlocks !== b.startBlock || a.era !== b.era) return;
      a.lengthBlocks += b.lengthBlocks;
      st.extents.pop();
      st.firstBlock.pop();
      this.#extentCount--;
    }
  }

  /** Give up every block of the fork from fork block `from` on (capacity included). */
  #cutFrom(st: ForkState, from: number): void {
    const kept: MapExtent[] = [];
    let at = 0;
    for (const e of st.extents) {
      const keep = Math.max(0, Math.min(e.lengthBlocks, from - at));
      if (keep > 0) kept.push({ startBlock: e.startBlock, lengthBlocks: keep, era: e.era });
      // Blocks at or past nblocks were never captured (F4): free at once. The others may be.
      const dataEnd = Math.max(keep, Math.min(e.lengthBlocks, st.nblocks - at));
      if (dataEnd > keep) this.#release(e.startBlock + keep, dataEnd - keep, e.era, st);
      if (e.lengthBlocks > dataEnd) this.#free.give(e.startBlock + dataEnd, e.lengthBlocks - dataEnd);
      at += e.lengthBlocks;
    }
    this.#setExtents(st, kept);
  }

  #setExtents(st: ForkState, extents: MapExtent[]): void {
    this.#extentCount += extents.length - st.extents.length;
    st.extents = extents;
    st.firstBlock = [];
    let cap = 0;
    for (const e of extents) {
      st.firstBlock.push(cap);
      cap += e.lengthBlocks;
    }
    st.capacity = cap;
  }

  /**
   * Point fork blocks at new volume blocks (`updates` sorted by block, each below nblocks), in
   * one pass over the map; the blocks replaced are released (V3). Pieces merge when physically
   * adjacent and both fresh or both not.
   */
  #remap(st: ForkState, updates: readonly { blk: number; vb: number }[]): void {
    if (updates.length === 0) return;
    const era = this.#captures;
    const out: MapExtent[] = [];
    const push = (startBlock: number, lengthBlocks: number, e: number): void => {
      const last = out[out.length - 1];
      if (last && last.startBlock + last.lengthBlocks === startBlock && (last.era === e || (last.era !== era && e !== era))) {
        last.lengthBlocks += lengthBlocks;
        last.era = Math.min(last.era, e);
      } else out.push({ startBlock, lengthBlocks, era: e });
    };
    let u = 0;
    let at = 0;
    for (const e of st.extents) {
      let i = 0;
      while (i < e.lengthBlocks) {
        const blk = at + i;
        if (u < updates.length && updates[u]!.blk === blk) {
          // A run of updates: the next fork blocks of this extent, moved to the next volume
          // blocks (a checkpoint's stream writes a fork's consecutive dirty blocks so), released
          // and mapped as one piece: the same map and free space as block by block.
          const vb = updates[u]!.vb;
          let n = 1;
          while (i + n < e.lengthBlocks && u + n < updates.length && updates[u + n]!.blk === blk + n && updates[u + n]!.vb === vb + n) n++;
          this.#release(e.startBlock + i, n, e.era, st);
          push(vb, n, era);
          u += n;
          i += n;
          continue;
        }
        // Copy the stretch up to the next update (or the extent's end) in one piece.
        const until = u < updates.length ? Math.min(e.lengthBlocks, updates[u]!.blk - at) : e.lengthBlocks;
        push(e.startBlock + i, until - i, e.era);
        i = until;
      }
      at += e.lengthBlocks;
    }
    assert(u === updates.length, 'every update lies inside the map');
    this.#setExtents(st, out);
  }

  // ------------------------------------------------------------ state checks

  #checkWritable(): void {
    if (this.#failure) throw this.#failure;
    if (this.#handle === null) throw new LamstoreError(ErrorCode.ENGINE_CLOSED, `${this.path}: volume is closed`, { path: this.path });
    if (this.readOnly) {
      const what = this.openedSnapshot !== null ? `snapshot ${this.openedSnapshot} is open (read-only)` : 'volume is open read-only';
      throw new LamstoreError(ErrorCode.VOLUME_READ_ONLY, `${this.path}: ${what}`, { path: this.path });
    }
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

  /**
   * The fork's sync need, held on the fork so that a write landing costs no map lookup. A live
   * fork's entry is never dropped from #needs (#forgetNeedIfCovered), so the one it holds is the
   * one #covered reads; a fork made again under a dropped one's key takes over that key's entry.
   */
  #need(st: ForkState): SyncNeed {
    if (st.need !== null) return st.need;
    let n = this.#needs.get(st.key);
    if (!n) this.#needs.set(st.key, (n = { seq: 0, meta: 0 }));
    else this.#orphanNeeds.delete(st.key);
    st.need = n;
    return n;
  }

  #noteWrite(st: ForkState): void {
    this.#need(st).seq = this.#writeSeq;
  }

  #noteMeta(st: ForkState): void {
    this.#need(st).meta = this.#metaVersion;
  }

  /** Drop a covered need of a fork that is gone; a live fork keeps its entry (see #need). */
  #forgetNeedIfCovered(key: string): void {
    if (this.#orphanNeeds.has(key) && this.#covered(key)) {
      this.#needs.delete(key);
      this.#orphanNeeds.delete(key);
    }
  }

  /**
   * Register a fork's SYNC request (W4; every write and every metadata change does), except for
   * an unlogged relation's non-INIT forks: those register nothing and only mark the volume for
   * the shutdown checkpoint's syncUnlogged (U1). A full queue makes us sync the volume ourselves,
   * as md does for a segment. Undefined when the request is taken at once, the common case, so a
   * checkpoint writing a thousand forks makes no promise for each; the promise of the sync made
   * in its place when the queue is full.
   */
  #registerSync(rel: RelFileLocator, fork: ForkNumber, host: VolumeHost, origin?: WriteOrigin): Promise<void> | undefined {
    if (this.#isUnlogged(rel, fork)) {
      this.#unloggedDirty = true; // synced at shutdown only (U1)
      return undefined;
    }
    if (host.requestSync(rel, fork, origin)) return undefined;
    return this.#syncInsteadOfRequest(host);
  }

  /** The queue is full: a volume sync now, counted as a backend fsync. */
  async #syncInsteadOfRequest(host: VolumeHost): Promise<void> {
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
    const deficit = () => (this.#forks.has(forkKey(rel, fork)) ? 0 : this.#reserveBlocks(1, 0) - this.#free.freeBlocks); // V6
    for (let room = this.#roomFor(deficit); room !== undefined && (await room); room = this.#roomFor(deficit));
    this.#checkWritable();
    if (this.#forks.has(forkKey(rel, fork))) return;
    // V5 for the catalog entry the new fork adds.
    const reserve = this.#reserveBlocks(1, 0);
    if (this.#free.freeBlocks < reserve) {
      throw new LamstoreError(ErrorCode.VOLUME_FULL, `${this.path}: volume is full: no room left in the catalog for ${describeForkKey({ ...rel, fork })} (${this.#free.freeBlocks} blocks free, ${reserve} kept for the next checkpoint)${this.#growHint()}`, { path: this.path });
    }
    const st = this.#newFork(rel, fork);
    this.#tree.addFork(st);
    this.#changedMeta(st);
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

  /** Relations opened unlogged (smgropen), and whether an unlogged page was written since the last sync. */
  readonly #unloggedRels = new Set<string>();
  #unloggedDirty = false;

  /** isUnloggedFork (the engine's rule) for a relation the volume was opened on. */
  #isUnlogged(rel: RelFileLocator, fork: number): boolean {
    if (this.#unloggedRels.size === 0) return false; // the common case, without a key string per page
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
   *
   * MAIN is rewritten inside its own blocks, the one exception to V3: its contents are void
   * after an unclean stop, so overwriting blocks the durable catalog names loses nothing (a crash
   * during the reset leaves the stop unclean, and the next open resets again). Relocating it
   * instead would need free space that only the next checkpoint returns: a nearly full volume
   * then failed every open with VOLUME_FULL.
   */
  async resetUnlogged(host: VolumeHost): Promise<number> {
    if (this.readOnly) return 0;
    const inits = [...this.#forks.values()].filter((st) => st.fork === ForkNumber.INIT).map((st) => st.rel);
    const handle = this.#checkOpen();
    for (const rel of inits) {
      for (const f of [ForkNumber.FSM, ForkNumber.VISIBILITY_MAP]) if (this.#forks.has(forkKey(rel, f))) await this.unlink(rel, f, host);
      if (!this.#forks.has(forkKey(rel, ForkNumber.MAIN))) await this.create(rel, ForkNumber.MAIN, host);
      const main = this.#fork(rel, ForkNumber.MAIN);
      const init = this.#fork(rel, ForkNumber.INIT);
      const page = new Uint8Array(this.blockSize);
      const keep = Math.min(main.nblocks, init.nblocks);
      for (let b = 0; b < keep; b++) {
        await this.read(rel, ForkNumber.INIT, b, page);
        try {
          await this.#io.pwrite(handle, page, this.#locate(main, b).volumeBlock * this.blockSize);
        } catch (err) {
          throw ioError('write', this.path, err);
        }
      }
      if (main.nblocks > init.nblocks) {
        this.#liveBlocks -= main.nblocks - init.nblocks;
        this.#cutFrom(main, init.nblocks);
        main.nblocks = init.nblocks;
        this.#changedMeta(main);
      }
      for (let b = main.nblocks; b < init.nblocks; b++) {
        await this.read(rel, ForkNumber.INIT, b, page);
        await this.extend(rel, ForkNumber.MAIN, b, page, host);
      }
      this.#writeSeq++;
      this.#noteWrite(main);
    }
    if (inits.length > 0) await this.immediateSync(host);
    return inits.length;
  }

  async extend(relIn: RelFileLocator, forkIn: ForkNumber, blockNum: number, page: Uint8Array, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    const blk = checkBlock(blockNum);
    this.#checkPage(page, 'page');
    // V6: the room the check below asks for (0 when a check below refuses the call anyway).
    const deficit = () => {
      const s = this.#forks.get(forkKey(rel, fork));
      return !s || blk < s.nblocks ? 0 : this.#reserveBlocks(0, blk + 1 - s.nblocks) + Math.max(0, blk + 1 - s.capacity) - this.#free.freeBlocks;
    };
    for (let room = this.#roomFor(deficit); room !== undefined && (await room); room = this.#roomFor(deficit));
    this.#checkWritable();
    const handle = this.#checkOpen();
    const st = this.#fork(rel, fork);
    if (blk < st.nblocks) throw badArg(`${this.path}: cannot extend ${describeForkKey({ ...rel, fork })} at block ${blk}: it already has ${st.nblocks} blocks`);
    // V5: every new block is one more page a checkpoint may have to relocate, even when it goes
    // into capacity reserved earlier.
    const added = blk + 1 - st.nblocks;
    const reserve = this.#reserveBlocks(0, added);
    const taken = Math.max(0, blk + 1 - st.capacity);
    if (this.#free.freeBlocks - taken < reserve) throw this.#full(`extend ${describeForkKey({ ...rel, fork })}`, added, reserve);
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
    // Capacity beyond nblocks was never captured (F4, V3): written where it is.
    for (let i = 0; i < pages.length; ) {
      const startVol = this.#locate(st, from + i).volumeBlock;
      let j = i + 1;
      while (j < pages.length && this.#locate(st, from + j).volumeBlock === startVol + (j - i)) j++;
      if (this.#isUnlogged(st.rel, st.fork)) host.exemptFromLedger(startVol * this.blockSize, (j - i) * this.blockSize);
      try {
        await (j - i === 1 ? this.#io.pwrite(handle, pages[i]!, startVol * this.blockSize) : this.#io.pwritev(handle, pages.slice(i, j), startVol * this.blockSize));
      } catch (err) {
        throw ioError('write', this.path, err);
      }
      i = j;
    }
    this.#writeSeq++;
    if (!st.dropped && st.nblocks < blk + 1) {
      this.#liveBlocks += blk + 1 - st.nblocks;
      st.nblocks = blk + 1;
      this.#changedMeta(st);
    }
    this.#noteWrite(st);
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
   * The write contract (smgr.ts W1-W4) for the volume, copy-on-write (V3): the batch, in the
   * (fork, block) order BufferSync gives it, goes to the next blocks of one stream (A4), so a
   * fork's consecutive dirty blocks stay consecutive; each run of volume blocks is written with
   * pwritev calls of at most IOV_MAX pages, all of the batch's calls as one FileIO pwriteEach
   * (RealIO: one message to its sync thread, which makes them one after another from the pool's
   * shared memory; elsewhere up to IN_FLIGHT_DEFAULT at once). A page's map entry moves to its
   * new block only once the batch's writes have returned (a read meanwhile finds the old page,
   * whole); a page whose fork was truncated or dropped meanwhile gives its new block back. On
   * failure every write is waited for, the blocks of the writes that did not land are freed,
   * the forks of those that did are registered (W4), and the first error is thrown (W3).
   */
  async writeBuffers(items: readonly PageWrite[], host: VolumeHost, origin: WriteOrigin = 'eviction'): Promise<WriteResult> {
    const deficit = () => items.length + this.#writeReserveBlocks(items.length, origin) - this.#free.freeBlocks; // V6
    for (let room = this.#roomFor(deficit); room !== undefined && (await room); room = this.#roomFor(deficit));
    this.#checkWritable();
    const handle = this.#checkOpen();
    const n = items.length;
    if (n === 0) return { writes: 0, runs: 0, relocated: 0 };
    // W1 puts a fork's pages together: look the fork up once per stretch.
    let prev: PageWrite | null = null;
    let st: ForkState | null = null;
    const forks: ForkState[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const it = items[i]!;
      if (st === null || prev!.fork !== it.fork || prev!.rel.relNumber !== it.rel.relNumber || prev!.rel.dbOid !== it.rel.dbOid || prev!.rel.spcOid !== it.rel.spcOid) {
        st = this.#forkOf(it.rel, it.fork);
      }
      prev = it;
      const blk = checkBlock(it.blockNum);
      this.#checkPage(it.page, 'page');
      if (blk >= st.nblocks) throw this.#outOfRange(st, blk, 'write');
      forks[i] = st;
    }
    const reserve = this.#writeReserveBlocks(n, origin);
    if (this.#free.freeBlocks - n < reserve) throw this.#full(`write ${n} page${n === 1 ? '' : 's'}`, n, reserve);
    const placed = this.#free.takeStream(n, this.#cursor);
    this.#cursor = placed.cursor;
    this.#inFlightBlocks += n;
    // Write calls: each run, cut at IOV_MAX pages.
    const calls: { from: number; to: number; vb: number }[] = [];
    let k = 0;
    for (const r of placed.runs) {
      for (let off = 0; off < r.lengthBlocks; off += IOV_MAX) {
        const len = Math.min(IOV_MAX, r.lengthBlocks - off);
        calls.push({ from: k, to: k + len, vb: r.startBlock + off });
        k += len;
      }
    }
    const landed: ForkState[] = [];
    let relocated = 0;
    const writes: FileWrite[] = calls.map(({ from, to, vb }) => {
      const pages: Uint8Array[] = [];
      for (let x = from; x < to; x++) {
        const f = forks[x]!;
        // An unlogged fork's pages are not owed durability before shutdown (U1): tell the sync
        // ledger not to hold them against a checkpoint.
        if (this.#isUnlogged(f.rel, f.fork)) host.exemptFromLedger((vb + x - from) * this.blockSize, this.blockSize);
        pages.push(items[x]!.page);
      }
      return { handle, buffers: pages, offsetBytes: vb * this.blockSize };
    });
    const r = await pwriteEach(this.#io, writes, IN_FLIGHT_DEFAULT);
    const written = new Set(writtenOf(r));
    try {
      calls.forEach(({ from, to, vb }, c) => {
        this.#inFlightBlocks -= to - from;
        if (written.has(c)) {
          this.#writeSeq++;
          relocated += this.#landed(items, forks, from, to, vb, landed);
        } else this.#free.give(vb, to - from); // W3: failed or never made: no map names it
      });
      if (r.error !== undefined) throw ioError('write', this.path, r.error);
    } finally {
      // W4: every fork with a write that landed is registered, failure or not.
      for (const f of landed) {
        const fallback = this.#registerSync(f.rel, f.fork, host, origin);
        if (fallback) await fallback;
      }
    }
    this.stats.pagesRelocated += relocated;
    this.stats.runsWritten += placed.runs.length;
    return { writes: calls.length, runs: placed.runs.length, relocated };
  }

  /** V5: a checkpoint's own writes draw on the reserve kept for them; any other write keeps it. */
  #writeReserveBlocks(n: number, origin: WriteOrigin): number {
    return origin === 'checkpoint' ? CatalogTree.maxBlocks(this.blockSize, this.#forks.size, this.#liveBlocks) : this.#reserveBlocks(0, 0);
  }

  /** A write of items[from, to) to volume blocks vb.. returned: move the maps (V3). */
  #landed(items: readonly PageWrite[], forks: readonly ForkState[], from: number, to: number, vb: number, landed: ForkState[]): number {
    let relocated = 0;
    let x = from;
    while (x < to) {
      const st = forks[x]!;
      let y = x;
      const updates: { blk: number; vb: number }[] = [];
      while (y < to && forks[y] === st) {
        const blk = items[y]!.blockNum;
        if (!st.dropped && blk < st.nblocks) updates.push({ blk, vb: vb + y - from });
        else this.#free.give(vb + y - from, 1); // truncated or dropped meanwhile: nothing names it
        y++;
      }
      if (updates.length > 0) {
        this.#remap(st, updates);
        this.#changedMeta(st);
        this.#noteWrite(st);
        // W1 keeps a fork's pages together, so a fork is new here unless it is the last one
        // (a fork seen twice would only register twice, which the pending table coalesces).
        if (landed[landed.length - 1] !== st) landed.push(st);
        relocated += updates.length;
      }
      x = y;
    }
    return relocated;
  }

  async truncate(relIn: RelFileLocator, forkIn: ForkNumber, nblocks: number, host: VolumeHost): Promise<void> {
    const rel = checkLocator(relIn);
    const fork = checkFork(forkIn);
    if (!Number.isInteger(nblocks) || nblocks < 0) throw badArg(`nblocks must be a non-negative integer, got ${String(nblocks)}`);
    this.#checkWritable();
    const st = this.#fork(rel, fork);
    if (nblocks > st.nblocks) throw badArg(`${this.path}: cannot truncate ${describeForkKey({ ...rel, fork })} to ${nblocks} blocks: it has only ${st.nblocks}`);
    if (nblocks === st.nblocks) return;
    // Everything past the new end goes, reserved capacity too: a block past nblocks that a
    // catalog still names (the old size) must never be written by a later extension (V3).
    this.#cutFrom(st, nblocks);
    this.#liveBlocks -= st.nblocks - nblocks;
    st.nblocks = nblocks;
    this.#changedMeta(st);
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
      this.#cutFrom(st, 0);
      this.#liveBlocks -= st.nblocks;
      st.nblocks = 0;
      this.#metaVersion++;
      this.#tree.removeFork(st);
      st.changed = false; // out of #changed: the pass skips it
      this.#noteMeta(st);
      this.#forks.delete(st.key);
      const same = this.#byRelNumber.get(st.rel.relNumber)!.filter((x) => x !== st);
      if (same.length > 0) this.#byRelNumber.set(st.rel.relNumber, same);
      else this.#byRelNumber.delete(st.rel.relNumber);
      this.#orphanNeeds.add(st.key);
      st.dropped = true;
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
    return this.#chainSync(false);
  }

  /** A volume sync after those queued; `pass`: with the defragmentation pass even outside a checkpoint. */
  #chainSync(pass: boolean): Promise<void> {
    const run = this.#syncChain.then(() => this.#syncOnce(pass));
    this.#syncChain = run.catch(() => {}); // the chain only orders syncs; `run`'s caller gets its failure
    return run;
  }

  /** True when every write and metadata change of the fork is durable (V4). */
  #covered(key: string): boolean {
    const n = this.#needs.get(key);
    return n === undefined || (n.seq <= this.#syncedSeq && n.meta <= this.#durableMeta);
  }

  /** The sync handler callback: the first tag of a checkpoint pays, the rest return at once. */
  syncTag(tag: FileTag): Promise<void> | undefined {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#inCheckpoint) {
      // Every tag the sync phase visits was registered before the phase began (P1 of
      // pending-ops.ts), and a fork registers only after its write or metadata change is done.
      // The first visit starts this sync, so its capture covers every tag of the phase: one
      // sync (at most 2 fdatasyncs) per checkpoint. A write racing the checkpoint registered a
      // request of its own, which the next checkpoint serves (PostgreSQL skips entries added
      // during the cycle). Do not go back to "sync until this fork is covered": with a writer
      // running, that made a checkpoint pay one sync per raced fork.
      // The one promise for every tag of the phase: a thousand tags cost no promise each, and
      // once it is fulfilled no await either (the sync phase takes a plain return as done).
      if (this.#epochSynced) return undefined;
      if (this.#epochSync === null) {
        // Only this epoch's own success counts: checkpointBegin/End start a new one. A failure
        // passes through to every tag that waits on it.
        const epoch: Promise<void> = this.syncNow().then(() => {
          if (this.#epochSync === epoch) this.#epochSynced = true;
        });
        this.#epochSync = epoch;
      }
      return this.#epochSync;
    }
    return this.#syncUntilCovered(tag);
  }

  /** Outside a checkpoint (a handler called directly): sync until this fork is covered. */
  async #syncUntilCovered(tag: FileTag): Promise<void> {
    const key = forkKey(tag.rlocator, tag.forkNum);
    // One sync covers everything captured at its start. A write to this fork that raced it
    // (issued after the capture) needs one more; give up after that: such a write re-registered
    // its own request, which the next checkpoint serves.
    for (let attempt = 0; attempt < 2 && !this.#covered(key); attempt++) await this.syncNow();
    this.#forgetNeedIfCovered(key);
  }

  async #syncOnce(pass: boolean): Promise<void> {
    if (this.#failure) throw this.#failure;
    const handle = this.#checkOpen();
    if (this.readOnly) return;
    // fsync off (PostgreSQL's enableFsync): every write below still happens, no flush does.
    const flush = this.#enableFsync;
    let unpublished: BuiltCatalog | null = null;
    try {
      if (this.#switchInDoubt) await this.#switchSuperblock(handle, this.#switchInDoubt, flush);
      if (this.#inCheckpoint || pass) await this.#defragment(handle);
      // The capture: what this sync makes durable, taken synchronously (V4, catalog.ts T3).
      const seq = this.#writeSeq;
      const meta = this.#metaVersion;
      const metaChanged = meta !== this.#durableMeta || this.#tree.dirty;
      if (!metaChanged && seq === this.#syncedSeq) return;
      let next: PendingSwitch | null = null;
      if (metaChanged) {
        const capture = ++this.#captures;
        const generation = this.#generation + 1;
        const built = this.#tree.build(generation, { forkMap: (ref) => this.#forkMap(ref as ForkState) }, () => this.#free.takeOne());
        unpublished = built;
        // The pages the previous catalog had and this one does not: free once this is durable (A3).
        for (const b of built.replaced) this.#free.deferFree({ startBlock: b, lengthBlocks: 1 }, capture);
        const timeMs = Date.now();
        next = {
          generation,
          capture,
          meta,
          built,
          root: { generation, timeMs, volumeSizeBytes: this.volumeSizeBytes, blockSizeBytes: this.blockSize, indexBlock: built.indexBlock, indexCrc: built.indexCrc, indexPages: built.indexPages, leafPages: built.leafPages, forkCount: built.forkCount },
          superblock: encodeSuperblock({
            slot: generation % SLOT_COUNT,
            blockSizeBytes: this.blockSize,
            volumeSizeBytes: this.volumeSizeBytes,
            generation,
            indexBlock: built.indexBlock,
            indexCrc: built.indexCrc,
            indexPages: built.indexPages,
            leafPages: built.leafPages,
            forkCount: built.forkCount,
            timeMs,
            snapshots: this.#tableRef ?? undefined, // V7: every switch keeps the table
          }),
        };
        await this.#writeCatalog(handle, built);
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
      const failure = this.#syncFailed(err, unpublished);
      if (this.#switchInDoubt) await this.#undoSwitch(handle, this.#switchInDoubt.generation, failure);
      throw failure;
    }
  }

  /**
   * A superblock switch failed (its write or its fdatasync): overwrite
   * the slot with zeros, an invalid slot, as LMDB writes the old meta page back after a failed
   * meta write. Without this, a reopen without a power loss could read the new superblock from
   * the page cache although it may never reach the disk (fsyncgate: the kernel forgot the write
   * yet serves it, and the unclean open's fdatasync has nothing left to write): the reopened
   * volume would then reuse the blocks of the older catalog, the one a power loss goes back to,
   * and that power loss finds a catalog whose blocks were overwritten (VOLUME_CORRUPT). With the
   * slot invalid, the reopen picks the other slot: the last completed checkpoint, whose blocks
   * this volume never released (A3 releases them only after a durable switch). Its own failure
   * rides on the reported error (`suppressed`); it is never synced (no fdatasync after a failed one): the unclean open's fdatasync makes the zeros
   * durable before anything is written on the reopened volume; a power loss before that keeps
   * either superblock, and each names an intact catalog. With dataSyncRetry too: R2 redoes the
   * switch at the next sync (which writes the superblock over the zeros), but a process killed
   * before that sync would otherwise leave the same trap in the page cache.
   */
  async #undoSwitch(handle: FileHandle, generation: number, failure: unknown): Promise<void> {
    const slot = generation % SLOT_COUNT;
    // If the zero write fails too, the slot keeps whatever the failed switch left; the failure
    // reported is the switch's, with this one on its `suppressed` list.
    if (await cleanUp(failure, `${this.path}: blank superblock slot ${slot} after the failed switch`, () => this.#io.pwrite(handle, new Uint8Array(SUPERBLOCK_BYTES), slot * this.blockSize))) {
      this.#slots[slot] = { slot, valid: false, reason: SLOT_NEVER_WRITTEN };
    }
  }

  /** The built catalog's pages, volume-adjacent ones in one pwritev. */
  async #writeCatalog(handle: FileHandle, built: BuiltCatalog): Promise<void> {
    const writes = [...built.writes].sort((a, b) => a.block - b.block);
    const calls: { block: number; bufs: Uint8Array[] }[] = [];
    for (const w of writes) {
      const last = calls[calls.length - 1];
      if (last && last.block + last.bufs.length === w.block && last.bufs.length < IOV_MAX) last.bufs.push(w.bytes);
      else calls.push({ block: w.block, bufs: [w.bytes] });
    }
    await forEachInFlight(calls, IN_FLIGHT_DEFAULT, async ({ block, bufs }) => {
      await (bufs.length === 1 ? this.#io.pwrite(handle, bufs[0]!, block * this.blockSize) : this.#io.pwritev(handle, bufs, block * this.blockSize));
    });
    this.stats.catalogPagesWritten += writes.length;
  }

  /**
   * Write the superblock of `sw` into its slot and make it durable; then the catalog it names
   * is the durable one, and the blocks its capture stopped referencing become free (A3). Until
   * the fdatasync returns the slot may hold either generation, so a failure leaves the switch
   * in doubt (R2).
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
    this.#generation = sw.generation;
    this.#timeMs = Date.now();
    this.#durableMeta = Math.max(this.#durableMeta, sw.meta);
    this.#durableCapture = sw.capture;
    this.#durableRoot = sw.root;
    this.#free.releaseUpTo(sw.capture);
    this.#slots[slot] = { slot, valid: true, generation: sw.generation };
  }

  /**
   * A volume sync failed. Without dataSyncRetry the volume enters its failed state (the kernel
   * may have dropped the pages a later fdatasync would then report durable). With it (R1-R2),
   * only this checkpoint fails: nothing is marked durable, catalog pages no superblock names go
   * back to free space at once, and a switch in doubt is redone by the next sync before it
   * writes anything else, so a later generation never overwrites the slot of the only
   * superblock that may be durable.
   */
  #syncFailed(err: unknown, unpublished: BuiltCatalog | null): LamstoreError {
    if (!this.#dataSyncRetry) return this.#fail(err);
    if (unpublished) for (const b of this.#tree.abandon(unpublished)) this.#free.give(b, 1);
    return ioError('sync', this.path, err);
  }

  /**
   * The defragmentation pass, at the start of a checkpoint's volume sync:
   *  D1 A fork whose map (as a catalog would record it) has more than
   *     max(DEFRAG_EXTENTS_MIN, nblocks / DEFRAG_BLOCKS_PER_EXTENT) extents is rewritten whole,
   *     in fork-block order, into one stream (A4), when the free space beyond the reserve (V5)
   *     holds it and the stream takes at most that many runs (free space in short runs only
   *     would scatter the copy wider than the map it replaces); else it waits for a later pass.
   *     Only forks changed since the last pass began are looked at: a fork nobody wrote does
   *     not scatter. A fork changed while a pass runs, or before a sync outside a checkpoint
   *     (which runs no pass), is a candidate of the next pass; a fork that had to wait is one
   *     again at its next write (only writes add extents).
   *  D2 A page is copied from the block the map names when the copy starts; if a write moved the
   *     page meanwhile, the copy is dropped (its block freed) and the newer page stays. While a
   *     fork is being copied, the blocks its writes replace are never reused before the next
   *     durable capture (pending, A3, even when fresh), so a page found in its old block after
   *     the copy is the page that was copied: no block can have been freed and taken again.
   */
  async #defragment(handle: FileHandle): Promise<void> {
    // Taken and cleared here, not at the capture: a capture outside a checkpoint, or a write
    // landing while this pass runs, must leave its fork a candidate of the next pass.
    const candidates: ForkState[] = [];
    for (const st of this.#changed) {
      if (!st.changed) continue;
      st.changed = false;
      candidates.push(st);
    }
    this.#changed = [];
    for (const st of candidates) {
      if (st.dropped || st.nblocks === 0) continue;
      const bound = Math.max(DEFRAG_EXTENTS_MIN, Math.ceil(st.nblocks / DEFRAG_BLOCKS_PER_EXTENT));
      // The map's extent count bounds the recorded one (merging only lowers it): most forks stop here.
      if (st.extents.length <= bound || trimmedMap(st.extents, st.nblocks).length <= bound) continue;
      const n = st.nblocks;
      if (this.#free.freeBlocks - n < this.#reserveBlocks(0, 0)) continue;
      // Free space in short runs only would scatter the copy wider than the map it replaces.
      if (this.#free.streamRunCount(n, this.#cursor, bound) > bound) continue;
      const placed = this.#free.takeStream(n, this.#cursor);
      this.#cursor = placed.cursor;
      const target: number[] = [];
      for (const r of placed.runs) for (let i = 0; i < r.lengthBlocks; i++) target.push(r.startBlock + i);
      this.#inFlightBlocks += n;
      let copied = 0;
      st.copying = true;
      try {
        for (let from = 0; from < n; from += DEFRAG_CHUNK_BLOCKS) {
          const to = Math.min(n, from + DEFRAG_CHUNK_BLOCKS);
          const source: number[] = [];
          const alive = !st.dropped;
          for (let b = from; b < to; b++) source.push(alive && b < st.nblocks ? this.#locate(st, b).volumeBlock : -1);
          const buf = new Uint8Array((to - from) * this.blockSize);
          // Read: one pread per stretch of consecutive source blocks.
          for (let i = 0; i < source.length; ) {
            if (source[i] === -1) {
              i++;
              continue;
            }
            let j = i + 1;
            while (j < source.length && source[j] === source[j - 1]! + 1) j++;
            const got = await this.#io.pread(handle, buf.subarray(i * this.blockSize, j * this.blockSize), source[i]! * this.blockSize);
            assert(got === (j - i) * this.blockSize, 'a fork block reads whole');
            i = j;
          }
          // Write: one call per stretch of consecutive target blocks.
          const pages = Array.from({ length: to - from }, (_, i) => buf.subarray(i * this.blockSize, (i + 1) * this.blockSize));
          for (let i = 0; i < pages.length; ) {
            let j = i + 1;
            while (j < pages.length && target[from + j] === target[from + j - 1]! + 1 && j - i < IOV_MAX) j++;
            await this.#io.pwritev(handle, pages.slice(i, j), target[from + i]! * this.blockSize);
            i = j;
          }
          // D2: move only the pages still where the copy found them. No block of the fork was
          // reused meanwhile (st.copying), so a page in its old block is the page copied.
          const updates: { blk: number; vb: number }[] = [];
          const stillHere = !st.dropped;
          for (let b = from; b < to; b++) {
            const src = source[b - from]!;
            if (stillHere && src !== -1 && b < st.nblocks && this.#locate(st, b).volumeBlock === src) updates.push({ blk: b, vb: target[b]! });
            else this.#free.give(target[b]!, 1);
          }
          this.#inFlightBlocks -= to - from;
          copied += to - from;
          if (updates.length > 0) {
            this.#writeSeq++;
            this.#remap(st, updates);
            this.#metaVersion++;
            this.#tree.touch(st);
            this.#noteMeta(st);
            this.#noteWrite(st);
            this.stats.pagesDefragmented += updates.length;
          }
        }
      } catch (err) {
        for (let b = copied; b < n; b++) this.#free.give(target[b]!, 1);
        this.#inFlightBlocks -= n - copied;
        throw err;
      } finally {
        st.copying = false;
      }
      this.stats.forksDefragmented++;
    }
  }

  checkpointBegin(): void {
    this.stats.epoch++;
    this.#inCheckpoint = true;
    this.#epochSync = null;
    this.#epochSynced = false;
  }

  /** The end of a checkpoint: with fsync off, the catalog is published here (see the header). */
  async checkpointEnd(completed: boolean): Promise<void> {
    this.#inCheckpoint = false;
    this.#epochSync = null;
    this.#epochSynced = false;
    if (!completed || this.#failure) return;
    // fsync off: the sync phase called no handler, yet the catalog and superblock must still be
    // written, or a clean close would lose every change of the volume's metadata. syncNow writes
    // them without a flush (no crash safety is promised with fsync off, as in PostgreSQL).
    // It runs the checkpoint's defragmentation pass too, which the sync phase runs with fsync on.
    if (!this.#enableFsync) await this.#chainSync(true);
    for (const key of [...this.#orphanNeeds]) this.#forgetNeedIfCovered(key);
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

  // ------------------------------------------------------------ snapshots (V7, snapshots.ts)

  /**
   * Pages of the live catalog that `held` holds (V5, with #heldLive): a build that replaces one
   * frees no block for it, so the catalog's growth term alone would not cover that build.
   * Counted when asked (the tree's pages change at every build), and only with snapshots.
   */
  #countHeldCatalog(held: HeldSet): number {
    if (held.empty) return 0;
    let n = 0;
    for (const b of this.#tree.pageBlocks()) if (held.has(b)) n++;
    return n;
  }

  /**
   * V5's snapshot term: the live data blocks and catalog pages `held` holds. For the volume's
   * own set, #heldLive is kept exact and the catalog count is cached per catalog build (the
   * reserve is asked on every allocation; the tree's pages change only at a build).
   */
  #heldByLive(held: HeldSet): number {
    if (held.empty) return 0;
    if (held !== this.#held) return this.#countHeldLive(held) + this.#countHeldCatalog(held);
    const c = this.#heldCatalogCache;
    if (c === null || c.held !== held || c.tree !== this.#tree || c.version !== this.#tree.version) this.#heldCatalogCache = { held, tree: this.#tree, version: this.#tree.version, count: this.#countHeldCatalog(held) };
    return this.#heldLive + this.#heldCatalogCache!.count;
  }

  /** Live data blocks (below nblocks) `held` also holds (V5's last term). */
  #countHeldLive(held: HeldSet = this.#held): number {
    if (held.empty) return 0;
    let n = 0;
    for (const st of this.#forks.values()) for (const e of trimmedMap(st.extents, st.nblocks)) n += held.countIn(e.startBlock, e.lengthBlocks);
    return n;
  }

  /** Every block the live state owns: its maps (capacity too), its newest catalog, pending space. */
  #liveExtents(): Extent[] {
    const out: Extent[] = [];
    for (const st of this.#forks.values()) for (const e of st.extents) out.push({ startBlock: e.startBlock, lengthBlocks: e.lengthBlocks });
    for (const b of this.#tree.pageBlocks()) out.push({ startBlock: b, lengthBlocks: 1 });
    for (const p of this.#free.pendingList()) out.push({ startBlock: p.startBlock, lengthBlocks: p.lengthBlocks });
    return out;
  }

  /** Run `work` in the sync chain: never while a volume sync runs (V7). */
  #inSyncChain<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#syncChain.then(work);
    this.#syncChain = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  #checkSnapshotWritable(op: string): void {
    if (this.openedSnapshot !== null) throw new LamstoreError(ErrorCode.VOLUME_READ_ONLY, `${this.path}: cannot ${op}: snapshot ${this.openedSnapshot} is open (read-only)`, { path: this.path });
    this.#checkWritable();
  }

  #findSnapshot(name: string): SnapState {
    const snap = this.#snapshots.find((x) => x.entry.name === name);
    if (!snap) throw badArg(`no snapshot named ${name} in the volume (${this.#snapshots.length === 0 ? 'it has none' : `it has ${this.#snapshots.map((x) => x.entry.name).join(', ')}`})`);
    return snap;
  }

  /** The snapshots in name order, each with the blocks it alone holds (what dropping it frees). */
  listSnapshots(): SnapshotInfo[] {
    const owners: Extent[][] = [this.#snapshots.length === 0 ? [] : this.#liveExtents(), ...this.#snapshots.map((x) => x.extents)];
    const exclusive = this.#snapshots.length === 0 ? [] : exclusiveBlocks(owners);
    return this.#snapshots.map((x, i) => {
      let blocks = 0;
      for (const e of x.extents) blocks += e.lengthBlocks;
      const e = x.entry;
      return { name: e.name, generation: e.generation, checkpointTimeMs: e.checkpointTimeMs, createdMs: e.createdMs, volumeSizeBytes: e.volumeSizeBytes, forkCount: e.forkCount, blocks, exclusiveBlocks: exclusive[i + 1]! };
    });
  }

  /**
   * Take snapshot `name` of the volume's durable state: a volume sync first (so it names what
   * the volume holds now; an engine runs `engine.checkpoint()` before, or passes it as
   * `checkpoint`, to hand the volume its dirty pages), then the name is recorded with that
   * catalog in one superblock switch (S4).
   * BAD_ARGUMENT for a bad or taken name; VOLUME_FULL when the table's pages, or the reserve the
   * shared blocks add to V5, do not fit (nothing written). A failed write or fdatasync puts the
   * volume in its failed state.
   */
  async createSnapshot(nameIn: string, options: { nowMs?: number; checkpoint?: () => Promise<unknown> } = {}): Promise<SnapshotInfo> {
    const name = checkSnapshotName(nameIn);
    this.#checkSnapshotWritable('create a snapshot');
    // A taken name is refused before anything is written, the checkpoint included (README
    // "Snapshots": refusals come first); the check in the chain below stays for a create that
    // took the name while this one's checkpoint ran.
    if (this.#snapshots.some((x) => x.entry.name === name)) throw badArg(`a snapshot named ${name} exists already in the volume`);
    // `checkpoint: () => engine.checkpoint()` hands the volume the engine's dirty pages first;
    // it runs outside the sync chain, which the checkpoint's own volume sync goes through.
    if (options.checkpoint) await options.checkpoint();
    return this.#inSyncChain(async () => {
      if (this.#snapshots.some((x) => x.entry.name === name)) throw badArg(`a snapshot named ${name} exists already in the volume`);
      if (this.#snapshots.length >= SNAPSHOTS_MAX) throw badArg(`the volume holds ${SNAPSHOTS_MAX} snapshots, the most it can; drop one first`);
      await this.#syncOnce(false);
      const handle = this.#checkOpen();
      const root = this.#durableRoot;
      const cat = await readCatalogRoot(this.#io, handle, this.path, root, `the durable catalog, generation ${root.generation}`);
      const extents = catalogExtents([...cat.indexBlocks, ...cat.leaves.map((l) => l.block)], cat.forks);
      const entry: SnapshotEntry = {
        name,
        generation: root.generation,
        checkpointTimeMs: root.timeMs,
        createdMs: options.nowMs ?? Date.now(),
        volumeSizeBytes: root.volumeSizeBytes,
        indexBlock: root.indexBlock,
        indexCrc: root.indexCrc,
        indexPages: root.indexPages,
        leafPages: root.leafPages,
        forkCount: root.forkCount,
      };
      const snaps = [...this.#snapshots, { entry, extents }].sort((a, b) => (a.entry.name < b.entry.name ? -1 : 1));
      const held = new HeldSet(snaps.flatMap((x) => x.extents));
      // The durable catalog's blocks are live or pending, never free (A3).
      for (const e of extents) assert(this.#free.runContaining(e.startBlock) === undefined, `V7: block ${e.startBlock} of the durable catalog is not free`);
      // V5 with the new snapshot: every live block and catalog page it shares may need
      // relocating later (#heldByLive). V6: a volume that may grow grows for it first.
      const pages = Math.ceil(snaps.length / snapshotEntriesMax(this.blockSize));
      const deficit = () => this.#reserveBlocks(0, 0, held) + pages - this.#free.freeBlocks;
      for (let room = this.#roomFor(deficit); room !== undefined && (await room); room = this.#roomFor(deficit));
      this.#checkWritable();
      const heldLive = this.#heldByLive(held);
      const reserve = this.#reserveBlocks(0, 0, held);
      if (this.#free.freeBlocks - pages < reserve) {
        throw new LamstoreError(
          ErrorCode.VOLUME_FULL,
          `${this.path}: volume is full: no room for snapshot ${name} (${this.#free.freeBlocks} blocks free; ${pages} for the snapshot table and ${reserve} kept so that every later checkpoint can run, ${heldLive} of them because later checkpoints may relocate every live block and rewrite every catalog page the snapshots share)${this.#growHint()}`,
          { path: this.path },
        );
      }
      await this.#switchSnapshots(handle, snaps, root, held);
      return this.listSnapshots().find((x) => x.name === name)!;
    });
  }

  /** Drop snapshot `name`: after the switch the blocks it alone held become pending, free after the next durable capture (S4). */
  async dropSnapshot(nameIn: string): Promise<void> {
    const name = checkSnapshotName(nameIn);
    this.#checkSnapshotWritable('drop a snapshot');
    return this.#inSyncChain(async () => {
      const dropped = this.#findSnapshot(name);
      // R2: a switch in doubt carries the old table; settle it before the table changes.
      if (this.#switchInDoubt) await this.#syncOnce(false);
      const handle = this.#checkOpen();
      const snaps = this.#snapshots.filter((x) => x !== dropped);
      const held = new HeldSet(snaps.flatMap((x) => x.extents));
      await this.#switchSnapshots(handle, snaps, this.#durableRoot, held);
      // Blocks no one names any more: not free before a capture without them is durable (A3).
      const live = new HeldSet(this.#liveExtents());
      for (const e of dropped.extents) {
        for (const a of held.unheld(e.startBlock, e.lengthBlocks)) for (const b of live.unheld(a.startBlock, a.lengthBlocks)) this.#free.deferFree(b, this.#captures + 1);
      }
    });
  }

  /**
   * Make snapshot `name` the volume's state: one superblock switch naming its catalog, generation
   * + 1; the snapshot stays. Only on a volume nothing has changed since it was opened (no engine
   * runs it: `lamstore rollback`), which is closed afterwards (its maps are the old state's):
   * reopen it. VOLUME_FULL (nothing written) when V5 would not hold after it.
   */
  async rollbackToSnapshot(nameIn: string): Promise<void> {
    const name = checkSnapshotName(nameIn);
    this.#checkSnapshotWritable('roll back');
    return this.#inSyncChain(async () => {
      if (this.#metaVersion !== 0 || this.#writeSeq !== 0 || this.#captures !== 0) {
        throw badArg('rollback needs a volume nothing has changed since it was opened: close the engine, then roll back (lamstore rollback)');
      }
      const snap = this.#findSnapshot(name);
      const handle = this.#checkOpen();
      const e = snap.entry;
      // V5 after it: every live block is the snapshot's, so the reserve counts all of them.
      let liveBlocks = 0;
      const cat = await readCatalogRoot(this.#io, handle, this.path, { ...e, blockSizeBytes: this.blockSize }, `snapshot ${name}`);
      for (const f of cat.forks) liveBlocks += f.nblocks;
      const m = CatalogTree.maxBlocks(this.blockSize, e.forkCount, liveBlocks);
      // ... and so is every page of its catalog, which the live state then shares (#countHeldCatalog).
      const reserve = Math.min(this.#poolPages, liveBlocks) + m + Math.max(0, m - e.indexPages - e.leafPages) + liveBlocks + e.indexPages + e.leafPages;
      const free = this.volumeBlocks - METADATA_BLOCKS - this.#held.blocks - this.#tableBlocks.length;
      if (free < reserve) {
        throw new LamstoreError(
          ErrorCode.VOLUME_FULL,
          `${this.path}: volume is full: rolled back to ${name} it would have ${free} blocks free, and ${reserve} must stay free so that every later checkpoint can run (${liveBlocks} of them because the snapshot shares every live block)${this.#growHint()}`,
          { path: this.path },
        );
      }
      const root: DurableRoot = { generation: e.generation, timeMs: e.checkpointTimeMs, volumeSizeBytes: this.volumeSizeBytes, blockSizeBytes: this.blockSize, indexBlock: e.indexBlock, indexCrc: e.indexCrc, indexPages: e.indexPages, leafPages: e.leafPages, forkCount: e.forkCount };
      await this.#switchSnapshots(handle, this.#snapshots, root, this.#held, true);
      await this.close();
    });
  }

  /**
   * S4: write the table of `snaps` to free blocks (unless `keepTable`), fdatasync, the superblock
   * (generation + 1, catalog `root`, the table) into the older slot, fdatasync. Then the old
   * table's pages are free. On failure the switch is undone in the page cache and the volume
   * fails (its state in memory may not be the durable one).
   */
  async #switchSnapshots(handle: FileHandle, snaps: SnapState[], root: DurableRoot, held: HeldSet, keepTable = false): Promise<void> {
    const flush = this.#enableFsync;
    const generation = this.#generation + 1;
    // Hold the new set at once: holding more than is durable is safe; less is not (drop frees after the switch).
    const grows = held.blocks >= this.#held.blocks;
    if (grows) this.#setHeld(held);
    const table = keepTable ? { writes: [], ref: this.#tableRef } : encodeSnapshotTable(snaps.map((x) => x.entry), generation, this.blockSize, () => this.#free.takeOne());
    const superblock = encodeSuperblock({
      slot: generation % SLOT_COUNT,
      blockSizeBytes: this.blockSize,
      volumeSizeBytes: this.volumeSizeBytes,
      generation,
      indexBlock: root.indexBlock,
      indexCrc: root.indexCrc,
      indexPages: root.indexPages,
      leafPages: root.leafPages,
      forkCount: root.forkCount,
      timeMs: root.timeMs,
      snapshots: table.ref ?? undefined,
    });
    const slot = generation % SLOT_COUNT;
    let switching = false;
    try {
      for (const w of table.writes) await this.#io.pwrite(handle, w.bytes, w.block * this.blockSize);
      if (flush && table.writes.length > 0) {
        await this.#io.fdatasync(handle);
        this.stats.fdatasyncs++;
      }
      switching = true;
      await this.#io.pwrite(handle, superblock, slot * this.blockSize);
      if (flush) {
        await this.#io.fdatasync(handle);
        this.stats.fdatasyncs++;
      }
    } catch (err) {
      const failure = this.#fail(err);
      if (switching) await this.#undoSwitch(handle, generation, failure);
      throw failure;
    }
    this.stats.metadataSwitches++;
    this.#generation = generation;
    this.#timeMs = root.timeMs;
    this.#slots[slot] = { slot, valid: true, generation };
    // A snapshot entry keeps the generation of the checkpoint that published its catalog.
    this.#durableRoot = root;
    if (!keepTable) {
      for (const b of this.#tableBlocks) this.#free.give(b, 1);
      this.#tableBlocks = table.writes.map((w) => w.block);
      this.#tableRef = table.ref;
    }
    this.#snapshots = snaps;
    if (!grows) this.#setHeld(held);
  }

  #setHeld(held: HeldSet): void {
    this.#held = held;
    this.#free.setHeld(held);
    this.#heldLive = this.#countHeldLive();
  }

  // ------------------------------------------------------------ inspection

  info(): VolumeInfo {
    let usedBlocks = 0;
    const forks: ForkInfo[] = [];
    const sorted = [...this.#forks.values()].sort((a, b) => a.rel.spcOid - b.rel.spcOid || a.rel.dbOid - b.rel.dbOid || a.rel.relNumber - b.rel.relNumber || a.fork - b.fork);
    for (const st of sorted) {
      for (const e of st.extents) usedBlocks += e.lengthBlocks;
      // The whole map, reserved capacity included (usedBlocks counts it too); offline, capacity
      // equals nblocks.
      forks.push({ spcOid: st.rel.spcOid, dbOid: st.rel.dbOid, relNumber: st.rel.relNumber, fork: st.fork, forkName: FORK_NAMES[st.fork], nblocks: st.nblocks, extents: trimmedMap(st.extents, st.capacity) });
    }
    const treeBlocks = this.#tree.pageBlocks();
    const pageBlocks = [...treeBlocks].sort((a, b) => a - b);
    return {
      path: this.path,
      formatVersion: 2,
      blockSizeBytes: this.blockSize,
      volumeSizeBytes: this.volumeSizeBytes,
      volumeBlocks: this.volumeBlocks,
      fileSizeBytes: this.#fileSizeBytes,
      slots: this.#slots.map((s) => ({ ...s })),
      activeSlot: this.#generation % SLOT_COUNT,
      generation: this.#generation,
      checkpointTimeMs: this.#timeMs,
      catalog: { indexBlock: treeBlocks[0] ?? 0, indexPages: this.#tree.indexPageCount, leafPages: this.#tree.leafCount, blocks: pageBlocks.length, pageBlocks },
      metadataBlocks: METADATA_BLOCKS + pageBlocks.length,
      usedBlocks,
      freeBlocks: this.#free.freeBlocks,
      pendingFreeBlocks: this.#free.pendingBlocks,
      largestFreeRunBlocks: this.#free.largestRunBlocks(),
      freeRuns: this.#free.runs(),
      forks,
      snapshots: this.listSnapshots(),
      snapshotHeldBlocks: this.#held.blocks,
      snapshotHeldRuns: this.#held.runs(),
      snapshotTableBlocks: [...this.#tableBlocks],
      openedSnapshot: this.openedSnapshot,
    };
  }

  /** V1, V2, V4, the allocator's A1-A3 and the catalog tree's T1-T2. */
  checkInvariants(): void {
    this.#free.checkInvariants();
    this.#tree.checkInvariants(this.#forks.values());
    assert(this.#syncedSeq <= this.#writeSeq && this.#durableMeta <= this.#metaVersion, 'V4: sync marks never run ahead');
    const spans: Extent[] = [{ startBlock: 0, lengthBlocks: METADATA_BLOCKS }];
    for (const b of this.#tree.pageBlocks()) spans.push({ startBlock: b, lengthBlocks: 1 });
    for (const b of this.#tableBlocks) spans.push({ startBlock: b, lengthBlocks: 1 });
    spans.push(...this.#free.runs(), ...this.#free.pendingList());
    // V7: a held block is never free nor a table page; held blocks no live owner names are the snapshots' alone.
    for (const r of this.#free.runs()) assert(this.#held.countIn(r.startBlock, r.lengthBlocks) === 0, `V7: free blocks ${r.startBlock}.. are not held by a snapshot`);
    for (const b of this.#tableBlocks) assert(!this.#held.has(b), `V7: table page ${b} is no catalog's block`);
    assert(this.#heldLive === this.#countHeldLive(), 'V7: the count of live blocks a snapshot holds');
    assert(this.#heldByLive(this.#held) === this.#heldLive + this.#countHeldCatalog(this.#held), 'V7: the cached count of catalog pages a snapshot holds');
    let extents = 0;
    let live = 0;
    for (const st of this.#forks.values()) {
      let cap = 0;
      st.extents.forEach((e, i) => {
        assert(st.firstBlock[i] === cap, `V2: firstBlock of ${st.key} extent ${i}`);
        assert(e.lengthBlocks >= 1, 'V2: extents are not empty');
        cap += e.lengthBlocks;
        spans.push(e);
      });
      assert(cap === st.capacity && st.nblocks <= cap, `V2: capacity of ${st.key}`);
      assert(!st.dropped && !this.#orphanNeeds.has(st.key), `V4: ${st.key} is live, its sync need no orphan's`);
      assert(st.need === null || this.#needs.get(st.key) === st.need, `V4: the sync need ${st.key} holds is the one #covered reads`);
      extents += st.extents.length;
      live += st.nblocks;
    }
    assert(extents === this.#extentCount, 'extent count');
    let indexed = 0;
    for (const [relNumber, same] of this.#byRelNumber) {
      assert(same.length > 0, `#byRelNumber has no empty list (relation ${relNumber})`);
      for (const st of same) assert(st.rel.relNumber === relNumber && this.#forks.get(st.key) === st, `#byRelNumber: ${st.key} is a live fork of relation ${relNumber}`);
      indexed += same.length;
    }
    assert(indexed === this.#forks.size, '#byRelNumber holds every fork once');
    const flagged = new Set<ForkState>();
    for (const st of this.#changed) {
      if (!st.changed) continue;
      assert(!flagged.has(st) && !st.dropped, `D1: ${st.key} is a live candidate, listed once`);
      flagged.add(st);
    }
    for (const st of this.#forks.values()) assert(!st.changed || flagged.has(st), `D1: ${st.key}, flagged changed, is in #changed`);
    assert(live === this.#liveBlocks, 'V5: the live block count');
    spans.sort((a, b) => a.startBlock - b.startBlock);
    let at = 0;
    let gaps = 0;
    let heldShared = 0;
    for (const s of spans) {
      assert(s.startBlock >= at, `V1: block ${s.startBlock} belongs to one owner only`);
      gaps += s.startBlock - at;
      at = s.startBlock + s.lengthBlocks;
      if (!this.#held.empty) heldShared += this.#held.countIn(s.startBlock, s.lengthBlocks);
    }
    gaps += this.volumeBlocks - at;
    // The gaps are exactly the blocks allocated to writes in flight and those only snapshots hold (V7).
    assert(gaps === this.#inFlightBlocks + this.#held.blocks - heldShared, `V1: ${gaps} unowned blocks are the ${this.#inFlightBlocks} being written and the ${this.#held.blocks - heldShared} only snapshots hold`);
  }
}

export type { SlotInfo, VolumeExamination } from './examine.js';
export { examineVolume } from './examine.js';
export type { CreateProgress, VolumeCreateOptions } from './create.js';
export { createVolumeFile, checkCreateOptionKeys, ZERO_CHUNK_BYTES } from './create.js';
