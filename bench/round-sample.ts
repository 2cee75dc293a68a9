/**
 * One row's figures in one round of the checkpoint matrix (matrix.ts), apart so that the engine
 * rows (engine-row.ts) and the matrix share it without importing each other.
 */
import type { IoCounts } from '../engine/index.js';
import type { PgCheckpointLine } from './postgres-log.js';

/** A garbage collection's kind, from its 'gc' performance entry. */
export type GcKind = 'minor' | 'major' | 'incremental' | 'weakcb' | 'unknown';

export interface RoundSample {
  round: number;
  /** 0-based position of the row within its round (M3). */
  position: number;
  writeMs: number;
  syncMs: number;
  totalMs: number;
  fsyncCalls: number;
  fdatasyncCalls: number;
  bytesWritten: number;
  /** pwrite/pwritev calls. */
  rangesWritten: number;
  /** Engine rows: CheckpointStats (buffersWritten, syncFiles, tagsDispatched) and the io counters' difference. */
  buffersWritten?: number;
  syncFiles?: number;
  tagsDispatched?: Record<string, number>;
  /** rawExtent: the superblock-sized write and second fdatasync after the floor's, ms (not in totalMs). */
  switchMs?: number;
  /** Engine rows: the longest event-loop stall during engine.checkpoint(), ms (M8). */
  maxStallMs?: number;
  /** Engine rows: the longest garbage-collection pause in the same window, ms (M8; 0: none). */
  maxGcPauseMs?: number;
  /** Engine rows: that pause's kind (V8's: minor is a scavenge, major a mark-compact); absent when there was none. */
  maxGcPauseKind?: GcKind;
  /** Engine rows on Linux: the run-queue wait of the row's thread over the same window, ms (M8). */
  runQueueWaitMs?: number;
  /** Engine rows on Linux: the most CPU of the row's thread between two firings of a 1 ms timer, ms (M8). */
  maxBusyMs?: number;
  /** Engine rows on Linux: when that stretch was seen to end, ms from the checkpoint's start (write phase first, then sync: compare writeMs). */
  maxBusyEndMs?: number;
  io?: Pick<IoCounts, 'open' | 'close' | 'pwrite' | 'fsync' | 'fdatasync' | 'fsyncDir' | 'bytesWritten'>;
  /** Postgres row: the server's checkpoint line and CHECKPOINT as the client timed it. */
  postgres?: { clientMs: number; line: PgCheckpointLine };
}
