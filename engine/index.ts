/**
 * lamstore's public API (the `lamstore` package export). Also the extension API: volume/
 * imports only from here, as an outside extension would.
 */
export { Engine, checkBlockSize, BLOCK_SIZE_DEFAULT, SHARED_BUFFERS_DEFAULT, REL_SEG_BLOCKS_DEFAULT, MAX_OPEN_FILES_DEFAULT } from './engine.js';
export type { EngineOptions, Extension, PreloadContext, OpenStats, CheckpointStats } from './engine.js';
export { LamstoreError, ErrorCode, isLamstoreError, errnoOf, ioError, assert } from './errors.js';
export type { LamstoreErrorOptions } from './errors.js';
export { checkOptionKeys, optionKeys } from './options.js';
export type { FileIO, FileHandle, OpenOptions, FileStat, LockMode, IoKind } from './io/file-io.js';
export { IO_KINDS, carriesWriteback, fsError } from './io/file-io.js';
export { RealIO } from './io/real-io.js';
export type { RealIOOptions } from './io/real-io.js';
export { SYNC_FILE_RANGE_WRITE, loadSyncFileRange, probeSyncFileRange } from './io/sync-file-range.js';
export type { SyncFileRangeFn, SyncFileRangeProbe } from './io/sync-file-range.js';
export { makeTempDir, removeTree, removeTreeSync } from './io/real-io.js';
export { CountingIO, zeroCounts, diffCounts } from './io/counting-io.js';
export type { IoCounts } from './io/counting-io.js';
export { SimDisk, CRASH_MODES, prng } from './io/sim-disk.js';
export type { CrashMode, FaultSpec, FaultCode, CrashOptions } from './io/sim-disk.js';
export { systemClock, ManualClock } from './clock.js';
export type { Clock } from './clock.js';
export { ForkNumber, FORKS, FORK_NAMES, checkLocator, checkFork, checkBlock, describeFork, locatorKey, forkKey, isUint32, INVALID_BLOCK_NUMBER, DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID } from './relfile.js';
export type { RelFileLocator } from './relfile.js';
export { SyncHandlerId, SyncRequestType, BUILTIN_HANDLER_NAMES } from './sync/registry.js';
export type { SyncOps, SyncHandlerInfo } from './sync/registry.js';
export { encodeFileTag, decodeFileTag, fileTagKey, checkFileTag, FILE_TAG_BYTES } from './sync/file-tag.js';
export type { FileTag } from './sync/file-tag.js';
export type { StorageManager, StorageManagerFactory, SmgrContext, Persistence, PageWrite } from './smgr/smgr.js';
export { isUnloggedFork } from './smgr/smgr.js';
export { forEachInFlight, IN_FLIGHT_DEFAULT } from './io/in-flight.js';
export { Relation } from './relation.js';
export type { RelationOptions } from './relation.js';
export { MdStorageManager, MD_NAME } from './md/md.js';
export { BufferPool, USAGE_COUNT_MAX, WRITE_COMBINE_MAX_BLOCKS } from './buffer/buffer-pool.js';
export type { BufferTag, BufferPoolStats } from './buffer/buffer-pool.js';
export { WritebackContext, WRITEBACK_MAX_PENDING_FLUSHES, CHECKPOINT_FLUSH_AFTER_DEFAULT } from './buffer/writeback.js';
export type { WritebackTag, WritebackStats } from './buffer/writeback.js';
export { crc32c } from './checksum.js';
export { setPageChecksum, verifyPageChecksum, computePageChecksum, PAGE_CHECKSUM_OFFSET } from './page.js';
export { Slru, SLRU_BUFFER_COUNT_DEFAULT } from './slru/slru.js';
export type { SlruContext, SlruOptions, SlruStats } from './slru/slru.js';
export { SLRU_PAGES_PER_SEGMENT, SLRU_DIRS, slruSegmentName } from './slru/names.js';
export { Clog, ClogStatus } from './slru/clog.js';
export { CommitTs, COMMIT_TS_ENTRY_BYTES } from './slru/commit-ts.js';
export type { CommitTsEntry } from './slru/commit-ts.js';
export { MultiXact, MultiXactStatus, FIRST_MULTIXACT_ID, MULTIXACT_ID_MAX, MULTIXACT_MEMBERS_MAX } from './slru/multixact.js';
export type { MultiXactMember } from './slru/multixact.js';
