/**
 * Goal: the bench's postgres row reads the server's own checkpoint figures correctly from any
 * PostgreSQL it may find (13 to 18), and a changed format is an error, never a silent zero.
 * Method: the parser (bench/postgres-log.ts) on sample lines in each version's layout, with
 * the usual prefixes (timestamp and pid, syslog, docker), on other log lines, and on damaged
 * checkpoint lines. Pure functions: no server, no files.
 */
import { describe, expect, it } from 'vitest';
import { PgLogFormatError, parseCheckpointLine, parseCheckpointLines } from '../bench/postgres-log.js';

// Sample lines in each version's layout (figures made up, fields and punctuation as the
// server prints them).
const PG13 =
  '2026-12-02 01:20:11.482 UTC [4121] LOG:  checkpoint complete: wrote 1003 buffers (6.1%); 0 WAL file(s) added, 0 removed, 1 recycled; ' +
  'write=0.019 s, sync=0.094 s, total=0.129 s; sync files=1002, longest=0.003 s, average=0.001 s; distance=5120 kB, estimate=5120 kB';
const PG14 =
  '2026-12-02 01:20:11.482 UTC [4121] LOG:  checkpoint complete: wrote 3 buffers (0.0%); 1 WAL file(s) added, 2 removed, 0 recycled; ' +
  'write=0.002 s, sync=0.003 s, total=0.015 s; sync files=2, longest=0.002 s, average=0.002 s; distance=0 kB, estimate=17 kB';
const PG15 =
  '2026-12-02 01:20:11.482 UTC [4121] LOG:  checkpoint complete: wrote 1000 buffers (6.1%); 0 WAL file(s) added, 0 removed, 0 recycled; ' +
  'write=0.019 s, sync=0.094 s, total=0.114 s; sync files=1000, longest=0.002 s, average=0.001 s; distance=2301 kB, estimate=2301 kB';
const PG16_LSN = 'lsn=0/1A4F370, redo lsn=0/1A4F318';
const PG16 =
  '2026-12-02 01:20:11.482 UTC [77] LOG:  checkpoint complete: wrote 926 buffers (5.7%); 0 WAL file(s) added, 0 removed, 0 recycled; ' +
  'write=0.015 s, sync=0.054 s, total=0.078 s; sync files=301, longest=0.006 s, average=0.001 s; distance=4273 kB, estimate=4273 kB; ' +
  'lsn=0/191F0F0, redo lsn=0/191F0F0';
const PG17 =
  '2026-12-02 01:20:11.482 CET [1726] LOG:  checkpoint complete: wrote 1699 buffers (10.4%); 0 WAL file(s) added, 0 removed, 0 recycled; ' +
  'write=26.273 s, sync=0.037 s, total=26.322 s; sync files=47, longest=0.019 s, average=0.001 s; distance=12863 kB, estimate=12863 kB; ' +
  'lsn=1/71138F78, redo lsn=1/6FF45C40';
const PG18 =
  '2026-12-02 01:20:11.482 UTC [31] LOG:  checkpoint complete: wrote 20 buffers (0.1%), wrote 3 SLRU buffers; 0 WAL file(s) added, 0 removed, 0 recycled; ' +
  'write=0.003 s, sync=0.006 s, total=0.015 s; sync files=21, longest=0.005 s, average=0.001 s; distance=98 kB, estimate=1288 kB; ' +
  'lsn=0/42D5018, redo lsn=0/42D4FC0';

/** Logged by this machine's PostgreSQL 15.18 (Debian 15.18-0+deb12u1) for a CHECKPOINT, verbatim. */
const CAPTURED_15 =
  '2026-12-02 01:23:17.642 UTC [12640] LOG:  checkpoint complete: wrote 3 buffers (0.0%); 0 WAL file(s) added, 0 removed, 0 recycled; ' +
  'write=0.012 s, sync=0.004 s, total=0.048 s; sync files=2, longest=0.003 s, average=0.002 s; distance=0 kB, estimate=0 kB';

describe('parseCheckpointLine', () => {
  it('a line captured from a real PostgreSQL 15 server', () => {
    expect(parseCheckpointLine(CAPTURED_15)).toEqual({
      kind: 'checkpoint',
      buffersWritten: 3,
      buffersPercent: 0,
      walFilesAdded: 0,
      walFilesRemoved: 0,
      walFilesRecycled: 0,
      writeMs: 12,
      syncMs: 4,
      totalMs: 48,
      syncFiles: 2,
      longestSyncMs: 3,
      averageSyncMs: 2,
      distanceKB: 0,
      estimateKB: 0,
    });
  });

  it('PostgreSQL 13: every field, no lsn', () => {
    expect(parseCheckpointLine(PG13)).toEqual({
      kind: 'checkpoint',
      buffersWritten: 1003,
      buffersPercent: 6.1,
      walFilesAdded: 0,
      walFilesRemoved: 0,
      walFilesRecycled: 1,
      writeMs: 19,
      syncMs: 94,
      totalMs: 129,
      syncFiles: 1002,
      longestSyncMs: 3,
      averageSyncMs: 1,
      distanceKB: 5120,
      estimateKB: 5120,
    });
  });

  it('PostgreSQL 14 and 15: the same layout as 13', () => {
    const p = parseCheckpointLine(PG14)!;
    expect(p).toMatchObject({ buffersWritten: 3, buffersPercent: 0, walFilesAdded: 1, walFilesRemoved: 2, writeMs: 2, syncMs: 3, totalMs: 15, syncFiles: 2, estimateKB: 17 });
    expect(p).not.toHaveProperty('lsn');
    expect(p).not.toHaveProperty('slruBuffersWritten');
    const p15 = parseCheckpointLine(PG15)!;
    expect(p15).toMatchObject({ buffersWritten: 1000, writeMs: 19, syncMs: 94, totalMs: 114, syncFiles: 1000, distanceKB: 2301 });
    expect(p15).not.toHaveProperty('lsn');
  });

  it('PostgreSQL 16 and 17: lsn and redo lsn at the end', () => {
    expect(parseCheckpointLine(`${PG15}; ${PG16_LSN}`)).toMatchObject({ buffersWritten: 1000, totalMs: 114, lsn: '0/1A4F370', redoLsn: '0/1A4F318' });
    expect(parseCheckpointLine(PG16)).toMatchObject({ buffersWritten: 926, buffersPercent: 5.7, syncMs: 54, totalMs: 78, syncFiles: 301, longestSyncMs: 6, lsn: '0/191F0F0', redoLsn: '0/191F0F0' });
    expect(parseCheckpointLine(PG17)).toMatchObject({ buffersWritten: 1699, buffersPercent: 10.4, writeMs: 26273, syncMs: 37, totalMs: 26322, syncFiles: 47, longestSyncMs: 19, lsn: '1/71138F78', redoLsn: '1/6FF45C40' });
  });

  it('PostgreSQL 18: SLRU buffers after the buffers', () => {
    expect(parseCheckpointLine(PG18)).toMatchObject({ buffersWritten: 20, buffersPercent: 0.1, slruBuffersWritten: 3, writeMs: 3, syncMs: 6, totalMs: 15, syncFiles: 21, lsn: '0/42D5018' });
  });

  it('a standby restartpoint line has the same fields', () => {
    const line = PG15.replace('checkpoint complete:', 'restartpoint complete:');
    expect(parseCheckpointLine(line)).toMatchObject({ kind: 'restartpoint', buffersWritten: 1000, totalMs: 114 });
  });

  it('any prefix: none, syslog, a docker service name; trailing CR and spaces', () => {
    const body = PG15.slice(PG15.indexOf('checkpoint complete:'));
    for (const line of [
      body,
      `LOG:  ${body}`,
      `Jun 08 21:38:35 host postgres[1467]: 2026-06-08 21:38:35.797 CDT [1467] LOG:  ${body}`,
      `db-1  | 2026-12-02 01:20:11.482 UTC [36] LOG:  ${body}\r`,
      `${body}   `,
    ]) {
      expect(parseCheckpointLine(line)).toMatchObject({ buffersWritten: 1000, writeMs: 19, syncMs: 94, totalMs: 114, syncFiles: 1000, estimateKB: 2301 });
    }
  });

  it('seconds become whole milliseconds without float noise', () => {
    const line = PG15.replace('write=0.019 s, sync=0.094 s, total=0.114 s', 'write=0.001 s, sync=1.005 s, total=123.457 s');
    expect(parseCheckpointLine(line)).toMatchObject({ writeMs: 1, syncMs: 1005, totalMs: 123457 });
  });

  it('other log lines are not checkpoint lines (null)', () => {
    for (const line of [
      '',
      '2026-12-02 01:20:11.380 UTC [4121] LOG:  checkpoint starting: immediate force wait',
      '2026-12-02 01:20:11.380 UTC [4120] LOG:  database system is ready to accept connections',
      '2026-12-02 01:20:11.380 UTC [4120] LOG:  checkpoints are occurring too frequently (9 seconds apart)',
      'checkpoint sync: number=1 file=base/5/20000 time=0.318 ms',
    ]) {
      expect(parseCheckpointLine(line)).toBeNull();
    }
  });

  it('a checkpoint line missing a required field is a PgLogFormatError naming it', () => {
    const noTimes = PG15.replace('write=0.019 s, sync=0.094 s, total=0.114 s; ', '');
    expect(() => parseCheckpointLine(noTimes)).toThrow(PgLogFormatError);
    expect(() => parseCheckpointLine(noTimes)).toThrow(/write=, sync=, total=/);
    expect(() => parseCheckpointLine(PG15.replace('wrote 1000 buffers (6.1%)', 'wrote many buffers'))).toThrow(/wrote N buffers/);
    expect(() => parseCheckpointLine(PG15.replace('sync files=1000', 'sync files=n/a'))).toThrow(/sync files=/);
  });
});

describe('parseCheckpointLines', () => {
  it('picks the end lines out of a server log, in order', () => {
    const log = [
      '2026-12-02 01:20:10.001 UTC [4120] LOG:  database system is ready to accept connections',
      '2026-12-02 01:20:11.380 UTC [4121] LOG:  checkpoint starting: immediate force wait',
      PG14,
      '2026-12-02 01:20:12.380 UTC [4121] LOG:  checkpoint starting: immediate force wait',
      PG15,
      '',
    ].join('\n');
    expect(parseCheckpointLines(log).map((p) => p.buffersWritten)).toEqual([3, 1000]);
    expect(parseCheckpointLines('')).toEqual([]);
  });
});
