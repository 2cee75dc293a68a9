/**
 * `lamstore/testing`: what tests and tools need and a program using the engine does not: the
 * simulated disk and its crash and fault machinery, the counting FileIO and count arithmetic,
 * the forwarding FileIO wrappers are built on, a clock moved by hand, the seeded PRNG, temporary
 * directories on the real file system, the sync_file_range probe, and the figures tests and the
 * bench check against.
 *
 * Kept apart from `lamstore` (engine/index.ts) so that the engine's API says what is public:
 * nothing here is needed to store pages, write an extension or run the CLI. Internal classes
 * (the buffer pool, md, the SLRU, pending ops) are not exported from either: the repository's
 * own tests import them from their files.
 */
export { SimDisk, CRASH_MODES, SECTOR_BYTES_DEFAULT, prng } from './io/sim-disk.js';
export type { CrashMode, FaultSpec, FaultCode, CrashOptions } from './io/sim-disk.js';
export { CountingIO, zeroCounts, diffCounts } from './io/counting-io.js';
export { ManualClock } from './clock.js';
export { makeTempDir, removeTree, removeTreeSync } from './io/real-io.js';
export { SYNC_FILE_RANGE_WRITE, loadSyncFileRange, probeSyncFileRange } from './io/sync-file-range.js';
export type { SyncFileRangeProbe } from './io/sync-file-range.js';
export { WRITE_COMBINE_MAX_BLOCKS, BOUNDED_WRITE_BLOCKS_MAX, USAGE_COUNT_MAX } from './buffer/buffer-pool.js';
export { ForwardingIO } from './io/forwarding-io.js';
export type { FileIOMethod } from './io/forwarding-io.js';
export { openLibc } from './io/libc.js';
export type { Koffi, LibcOpening } from './io/libc.js';
export { markUncleanStop } from './control-file.js';
