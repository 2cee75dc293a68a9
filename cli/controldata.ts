/**
 * `lamstore controldata <dataDir> [--json]`: the data directory's control file
 * (`<dataDir>/lam_control`, engine/control-file.ts), as PostgreSQL's pg_controldata prints
 * pg_control: one "key: value" line per field.
 *
 * Invariants:
 *  D1 Never writes and takes no lock: the file is read as it is, also while an engine has the
 *     directory open (its two slots mean a reader always finds the newest completed record or
 *     the one before it, never half of one).
 *  D2 A missing directory, a missing control file and a damaged one are each one line on stderr,
 *     exit 1; the line names the data directory, or the control file when that is the problem.
 *  D3 `--json` prints exactly one JSON document on stdout, on success and on failure.
 */
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CONTROL_FILE_NAME, CONTROL_STATE_NAMES, ErrorCode, LamstoreError, RealIO, oldestXidsKept, readControlFile } from '../engine/index.js';
import type { ControlRecord, ControlSlot } from '../engine/index.js';
import { CliCode, CliFailure, EXIT_VOLUME, toFailure, usageFailure } from '../cmdline/failure.js';

export interface ControldataOptions {
  json?: boolean;
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

function slotText(s: ControlSlot, inUse: ControlRecord): string {
  if (!s.record) return s.problem === 'empty' ? 'empty' : `invalid (${s.problem})`;
  return `generation ${s.record.generation}${s.record.generation === inUse.generation ? ' (in use)' : ''}`;
}

export function formatControldata(controlFile: string, record: ControlRecord, slots: ControlSlot[]): string {
  const xids = oldestXidsKept(record);
  const rows: [string, string][] = [
    ['Control file', controlFile],
    ['Control file format version', String(record.formatVersion)],
    ['Data directory state', CONTROL_STATE_NAMES[record.state]],
    ['Control file last modified', isoTime(record.writtenTimeMs)],
    ['Control file generation', String(record.generation)],
    ...slots.map((s): [string, string] => [`Control file slot ${s.slot}`, slotText(s, record)]),
    ['Latest checkpoint number', String(record.checkpointNumber)],
    ['Time of latest checkpoint', record.checkpointNumber === 0 ? 'none' : isoTime(record.checkpointTimeMs)],
    ['Block size', String(record.blockSize)],
    ['clog oldest page kept', `${record.clogOldestPage} (oldest xid kept ${xids.clog})`],
    ['commit_ts oldest page kept', `${record.commitTsOldestPage} (oldest xid kept ${xids.commitTs})`],
    ['NextMultiXactId', String(record.multixactNextMxid)],
    ['oldestMultiXid', String(record.multixactOldestMxid)],
    ['NextMultiOffset', String(record.multixactNextOffset)],
    ['oldestMultiOffset', String(record.multixactOldestOffset)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return `${rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join('\n')}\n`;
}

export function controldataJson(dataDir: string, controlFile: string, record: ControlRecord, slots: ControlSlot[]): object {
  const xids = oldestXidsKept(record);
  return {
    dataDirectory: dataDir,
    controlFile,
    formatVersion: record.formatVersion,
    state: CONTROL_STATE_NAMES[record.state],
    stateCode: record.state,
    generation: record.generation,
    writtenTimeMs: record.writtenTimeMs,
    writtenTime: isoTime(record.writtenTimeMs),
    slots: slots.map((s) => ({ slot: s.slot, valid: s.record !== null, generation: s.record?.generation ?? null, problem: s.problem })),
    checkpoint: { number: record.checkpointNumber, timeMs: record.checkpointTimeMs, time: record.checkpointNumber === 0 ? null : isoTime(record.checkpointTimeMs) },
    blockSize: record.blockSize,
    clog: { oldestPageKept: record.clogOldestPage, oldestXidKept: xids.clog },
    commitTs: { oldestPageKept: record.commitTsOldestPage, oldestXidKept: xids.commitTs },
    multixact: { nextMxid: record.multixactNextMxid, oldestMxid: record.multixactOldestMxid, nextOffset: record.multixactNextOffset, oldestOffset: record.multixactOldestOffset },
  };
}

export async function runControldata(dataDir: string, options: ControldataOptions): Promise<void> {
  if (dataDir === '') throw usageFailure('the data directory path is empty');
  const controlFile = join(dataDir, CONTROL_FILE_NAME);
  const io = new RealIO();
  const dir = resolve(dataDir); // FileIO takes absolute paths; messages name the path as typed
  let st;
  try {
    st = await io.stat(dir);
  } catch (err) {
    throw toFailure(err, dataDir);
  }
  if (!st) throw new CliFailure(EXIT_VOLUME, ErrorCode.IO_ERROR, dataDir, 'no such file or directory (ENOENT)');
  if (st.kind !== 'directory') throw new CliFailure(EXIT_VOLUME, ErrorCode.BAD_ARGUMENT, dataDir, 'not a directory: a data directory was expected');
  let controlStat;
  try {
    controlStat = await io.stat(join(dir, CONTROL_FILE_NAME));
  } catch (err) {
    throw toFailure(err, controlFile); // EACCES and the like: not the same as no control file
  }
  if (!controlStat) {
    throw new CliFailure(EXIT_VOLUME, ErrorCode.IO_ERROR, dataDir, `no control file (${CONTROL_FILE_NAME}): not a lamstore data directory, or one no engine has opened since the control file came`);
  }
  let read: Awaited<ReturnType<typeof readControlFile>>;
  try {
    read = await readControlFile(dir, { io });
  } catch (err) {
    if (err instanceof LamstoreError || (err as { name?: string }).name === 'LamstoreError') throw toFailure(err, controlFile);
    throw new CliFailure(EXIT_VOLUME, CliCode.INTERNAL, controlFile, err instanceof Error ? err.message : String(err), { cause: err });
  }
  if (options.json) process.stdout.write(`${JSON.stringify(controldataJson(dataDir, controlFile, read.record, read.slots), null, 2)}\n`);
  else process.stdout.write(formatControldata(controlFile, read.record, read.slots));
}

export function addControldataCommand(program: Command): Command {
  return program
    .command('controldata')
    .description("show a data directory's control file: its state, the last checkpoint, the SLRU positions (read-only)")
    .argument('<dataDir>', 'the data directory')
    .option('--json', 'print one JSON document (errors too: { "error": { "code", "message" } })')
    .addHelpText(
      'after',
      `
Example:
  $ lamstore controldata /var/lib/lamstore
  $ lamstore controldata /var/lib/lamstore --json

Reads <dataDir>/${CONTROL_FILE_NAME} without a lock, as pg_controldata reads pg_control. Exit
status: 0 shown; 1 missing directory, missing or damaged control file; 2 bad usage.`,
    )
    .action(async (dataDir: string, options: ControldataOptions) => {
      await runControldata(dataDir, options);
    });
}
