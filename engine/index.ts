/**
 * `lamstore`: the public API, what a program storing pages or an extension adding a storage
 * manager needs, and nothing else. volume/ imports only from here, as an outside extension
 * would: that is the proof the extension API suffices.
 *
 * What tests and tools need besides (SimDisk, CountingIO, ManualClock, the seeded PRNG,
 * temporary directories) is `lamstore/testing` (engine/testing.ts). The engine's internal classes
 * (buffer pool, md, SLRU, pending ops) are exported from neither: `engine.bufferPool`,
 * `engine.clog` and the like hand out objects whose types come with them.
 */
// The engine and its options.
export { Engine, checkBlockSize, BLOCK_SIZE_DEFAULT, SHARED_BUFFERS_DEFAULT, REL_SEG_BLOCKS_DEFAULT, MAX_OPEN_FILES_DEFAULT } from './engine.js';
export type { EngineOptions, Extension, PreloadContext, OpenStats, CheckpointStats } from './engine.js';
// The control file (`<dataDir>/lam_control`), read without an engine by `lamstore controldata`.
export { readControlFile, oldestXidsKept, ControlState, CONTROL_STATE_NAMES, CONTROL_FILE_NAME, CONTROL_FORMAT_VERSION } from './control-file.js';
export type { ControlRecord, ControlSlot, SlruPositions } from './control-file.js';
export { CHECKPOINT_FLUSH_AFTER_DEFAULT } from './buffer/writeback.js';
export { SLRU_BUFFER_COUNT_DEFAULT } from './slru/slru.js';
export type { IoCounts } from './io/counting-io.js';
export { systemClock } from './clock.js';
export type { Clock } from './clock.js';

// Errors and option checking (engine/README.md lists the codes).
export { LamstoreError, ErrorCode, isLamstoreError, errnoOf, ioError, assert, cleanUp, suppress, suppressedOf } from './errors.js';
export type { LamstoreErrorOptions } from './errors.js';
export { checkOptionKeys, optionKeys } from './options.js';

// Files: the FileIO contract and the real file system.
export type { FileIO, FileHandle, OpenOptions, FileStat, LockMode, IoKind, FsyncEachResult, FileWrite, WriteEachResult } from './io/file-io.js';
export { IO_KINDS, carriesWriteback, closeAfter, closeOrThrow, fsError, fsyncEach, openFile, pwriteEach, writtenOf } from './io/file-io.js';
export { RealIO } from './io/real-io.js';
export type { RealIOOptions } from './io/real-io.js';
export type { SyncFileRangeFn } from './io/sync-file-range.js';
export { forEachInFlight, IN_FLIGHT_DEFAULT, LIBUV_POOL_THREADS } from './io/in-flight.js';

// Relations, forks and pages (DESIGN.md section 3).
export { ForkNumber, FORKS, FORK_NAMES, checkLocator, checkFork, checkBlock, describeFork, locatorKey, forkKey, isUint32, INVALID_BLOCK_NUMBER, DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID } from './relfile.js';
export type { RelFileLocator } from './relfile.js';
export { Relation } from './relation.js';
export type { RelationOptions } from './relation.js';
export { crc32c } from './checksum.js';
export { setPageChecksum, verifyPageChecksum, computePageChecksum, PAGE_CHECKSUM_OFFSET } from './page.js';

// The extension API: storage managers and sync handlers (DESIGN.md sections 3-4).
export type { StorageManager, StorageManagerFactory, SmgrContext, Persistence, PageWrite, WriteOrigin, WriteResult } from './smgr/smgr.js';
export { isUnloggedFork } from './smgr/smgr.js';
export { MD_NAME } from './md/md.js';
export { SyncHandlerId, SyncRequestType, BUILTIN_HANDLER_NAMES } from './sync/registry.js';
export type { SyncOps, SyncHandlerInfo, SyncTagsResult } from './sync/registry.js';
export { encodeFileTag, decodeFileTag, fileTagKey, checkFileTag, FILE_TAG_BYTES } from './sync/file-tag.js';
export type { FileTag } from './sync/file-tag.js';

// The SLRU emulations behind engine.clog, engine.commitTs and engine.multixact.
export { ClogStatus } from './slru/clog.js';
export type { Clog } from './slru/clog.js';
export type { CommitTs, CommitTsEntry } from './slru/commit-ts.js';
export { MultiXactStatus, FIRST_MULTIXACT_ID, MULTIXACT_ID_MAX, MULTIXACT_MEMBERS_MAX } from './slru/multixact.js';
export type { MultiXact, MultiXactMember } from './slru/multixact.js';
