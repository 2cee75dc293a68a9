/**
 * PostgreSQL's `log_checkpoints` end line, parsed: what the server itself says a checkpoint
 * cost. Pure functions, no I/O (the bench's postgres row feeds them the server's stderr).
 *
 * The line, as PostgreSQL 13-18 write it (one line; the prefix is log_line_prefix):
 *
 *   checkpoint complete: wrote B buffers (X%)[, wrote S SLRU buffers]; A WAL file(s) added,
 *     R removed, C recycled; write=W s, sync=Y s, total=Z s; sync files=F, longest=L s,
 *     average=V s; distance=D kB, estimate=E kB[; lsn=X/X, redo lsn=X/X]
 *
 * "lsn=..., redo lsn=..." came with 16; "wrote S SLRU buffers" with 18. A standby writes
 * "restartpoint complete:" with the same fields. Times are printed with millisecond
 * resolution, so a parsed time is a whole number of milliseconds.
 *
 * Rules:
 *  L1 A line without "checkpoint complete:" / "restartpoint complete:" is not ours: null.
 *  L2 A line with it must carry the buffers, write/sync/total and sync-files fields; if one is
 *     missing the format has changed and the caller must hear of it (PgLogFormatError), never a
 *     silent zero.
 *  L3 Optional fields (WAL files, distance, lsn, SLRU buffers) are present in the result exactly
 *     when the line has them.
 */
import type { CheckpointStats } from '../engine/index.js';

/**
 * What the line shares with the engine's CheckpointStats, which mirror it: the same figures in
 * the same units (`syncFiles`: files fsynced in the sync phase).
 */
type SharedWithCheckpointStats = 'buffersWritten' | 'writeMs' | 'syncMs' | 'totalMs' | 'syncFiles' | 'longestSyncMs' | 'averageSyncMs';

export interface PgCheckpointLine extends Pick<CheckpointStats, SharedWithCheckpointStats> {
  kind: 'checkpoint' | 'restartpoint';
  buffersPercent: number;
  /** PostgreSQL 18+. */
  slruBuffersWritten?: number;
  walFilesAdded?: number;
  walFilesRemoved?: number;
  walFilesRecycled?: number;
  distanceKB?: number;
  estimateKB?: number;
  /** PostgreSQL 16+. */
  lsn?: string;
  redoLsn?: string;
}

export class PgLogFormatError extends Error {
  override readonly name = 'PgLogFormatError';
}

const MARKER = /\b(checkpoint|restartpoint) complete:/;

/** "0.019" (seconds, as the server prints them) to 19 ms, without float noise. */
function secondsToMs(s: string): number {
  return Math.round(Number(s) * 1e6) / 1e3;
}

function required(line: string, re: RegExp, what: string): RegExpExecArray {
  const m = re.exec(line);
  if (!m) throw new PgLogFormatError(`checkpoint log line without ${what}: ${line.trim()}`);
  return m;
}

/** One line; null when it is not a checkpoint/restartpoint end line (L1). */
export function parseCheckpointLine(line: string): PgCheckpointLine | null {
  const marker = MARKER.exec(line);
  if (!marker) return null;
  const body = line.slice(marker.index + marker[0].length);
  const num = String.raw`(\d+(?:\.\d+)?)`;
  const buffers = required(body, /wrote (\d+) buffers \((\d+(?:\.\d+)?)%\)/, '"wrote N buffers (X%)"');
  const times = required(body, new RegExp(String.raw`write=${num} s, sync=${num} s, total=${num} s`), '"write=, sync=, total="');
  const files = required(body, new RegExp(String.raw`sync files=(\d+), longest=${num} s, average=${num} s`), '"sync files=, longest=, average="');
  const out: PgCheckpointLine = {
    kind: marker[1] as 'checkpoint' | 'restartpoint',
    buffersWritten: Number(buffers[1]),
    buffersPercent: Number(buffers[2]),
    writeMs: secondsToMs(times[1]!),
    syncMs: secondsToMs(times[2]!),
    totalMs: secondsToMs(times[3]!),
    syncFiles: Number(files[1]),
    longestSyncMs: secondsToMs(files[2]!),
    averageSyncMs: secondsToMs(files[3]!),
  };
  const slru = /wrote (\d+) SLRU buffers/.exec(body);
  if (slru) out.slruBuffersWritten = Number(slru[1]);
  const wal = /(\d+) WAL file\(s\) added, (\d+) removed, (\d+) recycled/.exec(body);
  if (wal) {
    out.walFilesAdded = Number(wal[1]);
    out.walFilesRemoved = Number(wal[2]);
    out.walFilesRecycled = Number(wal[3]);
  }
  const distance = /distance=(\d+) kB, estimate=(\d+) kB/.exec(body);
  if (distance) {
    out.distanceKB = Number(distance[1]);
    out.estimateKB = Number(distance[2]);
  }
  const lsn = /\blsn=([0-9A-F]+\/[0-9A-F]+), redo lsn=([0-9A-F]+\/[0-9A-F]+)/i.exec(body);
  if (lsn) {
    out.lsn = lsn[1];
    out.redoLsn = lsn[2];
  }
  return out;
}

/** Every checkpoint/restartpoint end line of a log text, in order. */
export function parseCheckpointLines(text: string): PgCheckpointLine[] {
  const out: PgCheckpointLine[] = [];
  for (const line of text.split('\n')) {
    const p = parseCheckpointLine(line);
    if (p) out.push(p);
  }
  return out;
}
