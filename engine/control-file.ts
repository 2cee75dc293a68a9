/**
 * The control file, `<dataDir>/lam_control`: what PostgreSQL keeps in `global/pg_control`. One
 * record says whether the data directory was shut down cleanly, which checkpoint completed last
 * and when, and the SLRU positions no segment file can tell after a restart (the clog and
 * commit_ts truncation cutoffs, multixact's oldest and next ids and member offsets).
 *
 * On-disk contract (all integers little-endian; CONTROL_RECORD_BYTES = 512, one sector):
 *
 *   offset  bytes  field
 *        0      4  magic "LCTL"
 *        4      4  format version (CONTROL_FORMAT_VERSION = 1)
 *        8      4  block size of the data directory
 *       12      4  state: 1 shut down, 2 shutting down, 3 in production (ControlState)
 *       16      8  generation: grows by one at every write of the record
 *       24      8  checkpoint number: completed checkpoints in the directory's life (0: none yet)
 *       32      8  time the last completed checkpoint started, ms since the Unix epoch (0: none)
 *       40      8  time this record was written, ms since the Unix epoch
 *       48      4  clog: oldest page kept (pages below were truncated away)
 *       52      4  commit_ts: oldest page kept
 *       56      4  multixact: next mxid
 *       60      4  multixact: oldest mxid
 *       64      8  multixact: next member offset
 *       72      8  multixact: oldest member offset
 *       80    428  reserved, zero
 *      508      4  CRC-32C of bytes 0-507
 *
 * Invariants:
 *  CF1 The file is CONTROL_SLOTS = 2 slots of 512 bytes. Generation g is written to slot g % 2,
 *      in place, with ONE pwrite of 512 bytes at a sector-aligned offset, then fsync: the slot
 *      holding the newest durable record is never written while the other is. Why in place
 *      (PostgreSQL's way) and not a temporary file renamed over the old one: a one-sector write
 *      is atomic on the devices we care about, and one fsync per checkpoint is what it costs
 *      (a rename costs a second, of the directory). Why two slots and not PostgreSQL's one: a
 *      device that garbles the sector being written when the power fails (SimDisk's garbage
 *      mode, which the crash matrix runs) would otherwise leave a data directory that no longer
 *      opens; with two, the other slot still holds the previous record (LMDB's meta pages, the
 *      volume's superblocks, volume/format.ts F1).
 *  CF2 Reading picks, among the slots whose CRC holds and whose generation has the slot's
 *      parity, the one with the highest generation. A slot that fails its CRC (never written,
 *      torn, garbled) is ignored. If no slot is valid the file is DATA_CORRUPT naming it, and
 *      nothing is written. A slot whose CRC holds but whose magic, version, state, block size,
 *      reserved bytes or positions are impossible is DATA_CORRUPT too: it was written by
 *      something else, not damaged by a crash. A block size other than the engine's
 *      `blockSize` option is BAD_ARGUMENT naming the file.
 *  CF3 The file is created whole (both slots, the second all zeros) under a temporary name,
 *      fsynced, renamed into place and the directory fsynced: once the name exists its content
 *      is durable, so a crash during the first open never leaves a damaged control file.
 *  CF4 A write that fails (pwrite or fsync) leaves the newest durable record where it was: the
 *      slot it was writing is blanked (best effort), so that a reader in the same boot cannot
 *      be served the record that never became durable from the page cache (LMDB writes its old
 *      meta page back for the same reason), and the next write goes to that slot again with the
 *      same generation. What the caller does about the failure is its business (the engine
 *      enters the failed state, engine.ts F3).
 *  CF5 The record is written (a) by every open, state "in production", after the startup sync;
 *      (b) at the end of every completed checkpoint (number and time; state "shut down" for the
 *      shutdown checkpoint); (c) by close before the shutdown checkpoint, state "shutting down";
 *      (d) before an SLRU truncation removes a segment, with its new cutoff (so a cutoff is
 *      durable before the files below it go). So the state is "shut down" exactly when the
 *      last engine completed its shutdown checkpoint and wrote nothing after it.
 *  CF6 `fsync: false` skips the fsyncs only, never a write (as everywhere in lamstore).
 */
import { join } from 'node:path';
import { crc32c } from './checksum.js';
import { ErrorCode, LamstoreError, assert, cleanUp, errnoOf, ioError } from './errors.js';
import type { FileHandle, FileIO } from './io/file-io.js';
import { RealIO } from './io/real-io.js';
import { CLOG_XACTS_PER_BYTE } from './slru/clog.js';
import { COMMIT_TS_ENTRY_BYTES } from './slru/commit-ts.js';

export const CONTROL_FILE_NAME = 'lam_control';
/** One record, one sector (CF1). */
export const CONTROL_RECORD_BYTES = 512;
export const CONTROL_SLOTS = 2;
export const CONTROL_FILE_BYTES = CONTROL_RECORD_BYTES * CONTROL_SLOTS;
export const CONTROL_FORMAT_VERSION = 1;
/** "LCTL" read as a little-endian uint32. */
const CONTROL_MAGIC = 0x4c54434c;
const CRC_OFFSET = CONTROL_RECORD_BYTES - 4;
const RESERVED_OFFSET = 80;
assert(RESERVED_OFFSET < CRC_OFFSET, 'the fields and the CRC fit one record');
assert(CONTROL_RECORD_BYTES === 512, 'a record is one 512-byte sector, so its write is atomic (CF1)');

/** The data directory's state (PostgreSQL's DBState, the three lamstore uses). */
export const ControlState = {
  /** The last engine completed its shutdown checkpoint: a clean stop. */
  SHUT_DOWN: 1,
  /** close() began; its shutdown checkpoint has not completed. Unclean if found at open. */
  SHUTTING_DOWN: 2,
  /** An engine has (or had) the directory open. Unclean if found at open. */
  IN_PRODUCTION: 3,
} as const;
export type ControlState = (typeof ControlState)[keyof typeof ControlState];

export const CONTROL_STATE_NAMES: Readonly<Record<ControlState, string>> = {
  [ControlState.SHUT_DOWN]: 'shut down',
  [ControlState.SHUTTING_DOWN]: 'shutting down',
  [ControlState.IN_PRODUCTION]: 'in production',
};

/** The SLRU positions the control file keeps (CF5 d). */
export interface SlruPositions {
  clogOldestPage: number;
  commitTsOldestPage: number;
  multixactNextMxid: number;
  multixactOldestMxid: number;
  multixactNextOffset: number;
  multixactOldestOffset: number;
}

/**
 * The oldest xid clog and commit_ts keep, from the record's cutoff pages (whole pages: clog
 * holds 4 xids a byte, commit_ts 10 bytes an xid, at the record's block size).
 */
export function oldestXidsKept(r: Pick<ControlRecord, 'blockSize' | 'clogOldestPage' | 'commitTsOldestPage'>): { clog: number; commitTs: number } {
  return {
    clog: r.clogOldestPage * r.blockSize * CLOG_XACTS_PER_BYTE,
    commitTs: r.commitTsOldestPage * Math.floor(r.blockSize / COMMIT_TS_ENTRY_BYTES),
  };
}

/** A fresh data directory's positions: nothing truncated, mxid and member offset 1 next. */
export const INITIAL_SLRU_POSITIONS: Readonly<SlruPositions> = {
  clogOldestPage: 0,
  commitTsOldestPage: 0,
  multixactNextMxid: 1,
  multixactOldestMxid: 1,
  multixactNextOffset: 1,
  multixactOldestOffset: 1,
};

export interface ControlRecord extends SlruPositions {
  formatVersion: number;
  blockSize: number;
  state: ControlState;
  generation: number;
  checkpointNumber: number;
  /** Wall-clock ms since the Unix epoch; 0 before the first checkpoint. */
  checkpointTimeMs: number;
  writtenTimeMs: number;
}

/** What one slot of the file holds (the CLI shows both). */
export interface ControlSlot {
  slot: number;
  /** The record, when the slot is valid (CF2). */
  record: ControlRecord | null;
  /** Why the slot is not valid ('empty' for a slot never written). */
  problem: string | null;
}

const U32_MAX = 0xffff_ffff;

function checkU64(name: string, v: number): void {
  assert(Number.isSafeInteger(v) && v >= 0, `control record ${name} ${v} is a non-negative safe integer`);
}

/** The 512 bytes of `r` (its CRC computed here). Asserts the record is one the reader accepts. */
export function encodeControlRecord(r: ControlRecord): Uint8Array {
  for (const name of ['blockSize', 'clogOldestPage', 'commitTsOldestPage', 'multixactNextMxid', 'multixactOldestMxid'] as const) {
    assert(Number.isInteger(r[name]) && r[name] >= 0 && r[name] <= U32_MAX, `control record ${name} ${r[name]} fits a uint32`);
  }
  for (const name of ['generation', 'checkpointNumber', 'checkpointTimeMs', 'writtenTimeMs', 'multixactNextOffset', 'multixactOldestOffset'] as const) checkU64(name, r[name]);
  assert(r.state in CONTROL_STATE_NAMES, `control record state ${r.state} is a ControlState`);
  const bytes = new Uint8Array(CONTROL_RECORD_BYTES);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, CONTROL_MAGIC, true);
  v.setUint32(4, r.formatVersion, true);
  v.setUint32(8, r.blockSize, true);
  v.setUint32(12, r.state, true);
  v.setBigUint64(16, BigInt(r.generation), true);
  v.setBigUint64(24, BigInt(r.checkpointNumber), true);
  v.setBigUint64(32, BigInt(r.checkpointTimeMs), true);
  v.setBigUint64(40, BigInt(r.writtenTimeMs), true);
  v.setUint32(48, r.clogOldestPage, true);
  v.setUint32(52, r.commitTsOldestPage, true);
  v.setUint32(56, r.multixactNextMxid, true);
  v.setUint32(60, r.multixactOldestMxid, true);
  v.setBigUint64(64, BigInt(r.multixactNextOffset), true);
  v.setBigUint64(72, BigInt(r.multixactOldestOffset), true);
  v.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), true);
  // Pair the assertion: what we write must read back as itself (TigerBeetle's paired asserts).
  const back = decodeControlSlot(bytes, r.generation % CONTROL_SLOTS);
  assert(back.record !== null && back.record.generation === r.generation, `an encoded control record decodes again (${back.problem ?? ''})`);
  return bytes;
}

/**
 * One slot's 512 bytes (CF2): `{ record }` when valid, `{ problem }` when the CRC fails (or the
 * slot is all zeros: 'empty'). A slot whose CRC holds but whose content is impossible throws
 * DATA_CORRUPT through `corrupt`.
 */
export function decodeControlSlot(bytes: Uint8Array, slot: number, corrupt: (why: string) => Error = (why) => new Error(why)): { record: ControlRecord | null; problem: string | null } {
  assert(bytes.length === CONTROL_RECORD_BYTES, `a control slot is ${CONTROL_RECORD_BYTES} bytes`);
  if (bytes.every((b) => b === 0)) return { record: null, problem: 'empty' };
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (v.getUint32(CRC_OFFSET, true) !== crc32c(bytes.subarray(0, CRC_OFFSET))) {
    return { record: null, problem: v.getUint32(0, true) === CONTROL_MAGIC ? 'fails its CRC-32C' : 'fails its CRC-32C (bad magic number)' };
  }
  const where = `slot ${slot}`;
  if (v.getUint32(0, true) !== CONTROL_MAGIC) throw corrupt(`${where} has a bad magic number: not a lamstore control file`);
  const formatVersion = v.getUint32(4, true);
  if (formatVersion !== CONTROL_FORMAT_VERSION) throw corrupt(`${where} has format version ${formatVersion}; this lamstore reads version ${CONTROL_FORMAT_VERSION}`);
  for (let i = RESERVED_OFFSET; i < CRC_OFFSET; i++) {
    if (bytes[i] !== 0) throw corrupt(`${where} has a non-zero reserved byte at offset ${i}`);
  }
  const big = (at: number, name: string): number => {
    const x = v.getBigUint64(at, true);
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${where}: ${name} ${x} is out of range`);
    return Number(x);
  };
  const r: ControlRecord = {
    formatVersion,
    blockSize: v.getUint32(8, true),
    state: v.getUint32(12, true) as ControlState,
    generation: big(16, 'generation'),
    checkpointNumber: big(24, 'checkpoint number'),
    checkpointTimeMs: big(32, 'checkpoint time'),
    writtenTimeMs: big(40, 'write time'),
    clogOldestPage: v.getUint32(48, true),
    commitTsOldestPage: v.getUint32(52, true),
    multixactNextMxid: v.getUint32(56, true),
    multixactOldestMxid: v.getUint32(60, true),
    multixactNextOffset: big(64, 'multixact next offset'),
    multixactOldestOffset: big(72, 'multixact oldest offset'),
  };
  if (r.generation % CONTROL_SLOTS !== slot) return { record: null, problem: `holds generation ${r.generation}, which belongs in slot ${r.generation % CONTROL_SLOTS}` };
  if (!(r.state in CONTROL_STATE_NAMES)) throw corrupt(`${where} has state ${r.state}, not a state lamstore writes`);
  if (r.blockSize < 4096 || r.blockSize > 32768 || (r.blockSize & (r.blockSize - 1)) !== 0) throw corrupt(`${where} has block size ${r.blockSize}, not a power of two in 4096..32768`);
  if (r.multixactOldestMxid < 1 || r.multixactOldestMxid > r.multixactNextMxid || r.multixactOldestOffset < 1 || r.multixactOldestOffset > r.multixactNextOffset) {
    throw corrupt(`${where} holds impossible multixact positions (next ${r.multixactNextMxid}/${r.multixactNextOffset}, oldest ${r.multixactOldestMxid}/${r.multixactOldestOffset})`);
  }
  return { record: r, problem: null };
}

/** The whole file's bytes -> its slots and the record to use (CF2). */
export function decodeControlFile(bytes: Uint8Array, path: string): { record: ControlRecord; slots: ControlSlot[] } {
  const corrupt = (why: string) => new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: control file ${why}`, { path });
  if (bytes.length !== CONTROL_FILE_BYTES) throw corrupt(`is ${bytes.length} bytes, not ${CONTROL_FILE_BYTES}`);
  const slots: ControlSlot[] = [];
  for (let s = 0; s < CONTROL_SLOTS; s++) {
    const d = decodeControlSlot(bytes.subarray(s * CONTROL_RECORD_BYTES, (s + 1) * CONTROL_RECORD_BYTES), s, corrupt);
    slots.push({ slot: s, ...d });
  }
  let best: ControlRecord | null = null;
  for (const s of slots) if (s.record && (!best || s.record.generation > best.generation)) best = s.record;
  if (!best) throw corrupt(`is damaged: ${slots.map((s) => `slot ${s.slot} ${s.problem}`).join(', ')}`);
  return { record: best, slots };
}

/**
 * Open `path` (read-only or not) and read it whole: null when nothing is there. With `keep`, the
 * handle stays open and is returned for the caller to write through.
 */
async function readWhole(io: FileIO, path: string, keep: boolean): Promise<{ bytes: Uint8Array; handle: FileHandle | null } | null> {
  let h: FileHandle;
  try {
    const st = await io.stat(path);
    if (!st) return null;
    if (st.kind !== 'file') throw new LamstoreError(ErrorCode.DATA_CORRUPT, `${path}: control file is not a regular file`, { path });
    h = await io.open(path, { readOnly: !keep });
  } catch (err) {
    throw ioError('open', path, err);
  }
  let error: unknown;
  const bytes = new Uint8Array(CONTROL_FILE_BYTES + 1);
  let n = 0;
  try {
    n = await io.pread(h, bytes, 0);
  } catch (err) {
    error = ioError('pread', path, err);
  }
  if (!keep || error) {
    try {
      await io.close(h);
    } catch (err) {
      error ??= ioError('close', path, err);
    }
  }
  if (error) throw error;
  return { bytes: bytes.subarray(0, n), handle: keep ? h : null };
}

/**
 * Read `<dataDir>/lam_control` without opening an engine (the `controldata` command): the record
 * in use and both slots. IO_ERROR ENOENT when there is none; DATA_CORRUPT when it is damaged.
 */
export async function readControlFile(dataDir: string, options: { io?: FileIO } = {}): Promise<{ path: string; record: ControlRecord; slots: ControlSlot[] }> {
  const io = options.io ?? new RealIO();
  const path = join(dataDir, CONTROL_FILE_NAME);
  const read = await readWhole(io, path, false);
  if (!read) {
    const enoent = Object.assign(new Error(`ENOENT: no such file or directory, stat '${path}'`), { code: 'ENOENT', syscall: 'stat', path });
    throw ioError('stat', path, enoent);
  }
  return { path, ...decodeControlFile(read.bytes, path) };
}

/**
 * The control file of an open engine: read at open, then written in place (CF1, CF4). Not safe
 * for concurrent writes: the engine serializes them.
 */
export class ControlFile {
  readonly path: string;
  readonly #io: FileIO;
  readonly #dir: string;
  readonly #enableFsync: boolean;
  #handle: FileHandle | null = null;
  /** The newest record known durable (or, after a failed write, still the one before it: CF4). */
  #durable: ControlRecord | null;

  private constructor(io: FileIO, dataDir: string, enableFsync: boolean, record: ControlRecord | null, handle: FileHandle | null) {
    this.#io = io;
    this.#handle = handle;
    this.#dir = dataDir;
    this.path = join(dataDir, CONTROL_FILE_NAME);
    this.#enableFsync = enableFsync;
    this.#durable = record;
  }

  /**
   * Read the file (null record when there is none) and keep it open for the writes to come.
   * Refuses a damaged file (CF2), holding nothing open.
   */
  static async open(io: FileIO, dataDir: string, options: { blockSize: number; enableFsync: boolean }): Promise<ControlFile> {
    const path = join(dataDir, CONTROL_FILE_NAME);
    const read = await readWhole(io, path, true);
    let record: ControlRecord | null = null;
    if (read) {
      try {
        record = decodeControlFile(read.bytes, path).record;
        if (record.blockSize !== options.blockSize) {
          throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${path}: the data directory has block size ${record.blockSize}; option blockSize is ${options.blockSize}`, { path });
        }
      } catch (err) {
        await cleanUp(err, `${path}: close`, () => io.close(read.handle!)); // the refusal is the error to report
        throw err;
      }
    }
    return new ControlFile(io, dataDir, options.enableFsync, record, read?.handle ?? null);
  }

  /** The newest durable record, null when the file does not exist (yet, or any more). */
  get record(): ControlRecord | null {
    return this.#durable;
  }

  /**
   * Write `fields` over the newest record as the next generation, durably (CF1), or create the
   * file with them (CF3). Resolves to the record written. Throws the I/O error as IO_ERROR.
   */
  async write(fields: Omit<ControlRecord, 'formatVersion' | 'generation' | 'writtenTimeMs'>, writtenTimeMs: number): Promise<ControlRecord> {
    const prev = this.#durable;
    const record: ControlRecord = { ...fields, formatVersion: CONTROL_FORMAT_VERSION, generation: prev ? prev.generation + 1 : 1, writtenTimeMs: Math.max(0, Math.floor(writtenTimeMs)) };
    const bytes = encodeControlRecord(record);
    if (prev) await this.#writeSlot(record.generation % CONTROL_SLOTS, bytes);
    else await this.#create(record.generation % CONTROL_SLOTS, bytes);
    this.#durable = record;
    return record;
  }

  async #writeSlot(slot: number, bytes: Uint8Array): Promise<void> {
    const io = this.#io;
    if (!this.#handle) {
      try {
        this.#handle = await io.open(this.path);
      } catch (err) {
        throw ioError('open', this.path, err);
      }
    }
    const h = this.#handle;
    let error: unknown;
    try {
      await io.pwrite(h, bytes, slot * CONTROL_RECORD_BYTES);
    } catch (err) {
      error = ioError('pwrite', this.path, err);
    }
    if (!error && this.#enableFsync) {
      try {
        await io.fsync(h);
      } catch (err) {
        error = ioError('fsync', this.path, err);
      }
    }
    if (!error) return;
    // CF4: the kernel may keep serving the new record from its cache although it never became
    // durable (a failed fsync): blank the slot, so that whoever reads the file next, crash or
    // not, finds the record before it. The first error is the one to report; this one rides on it.
    await cleanUp(error, `${this.path}: blank control slot ${slot}`, () => io.pwrite(h, new Uint8Array(CONTROL_RECORD_BYTES), slot * CONTROL_RECORD_BYTES));
    throw error;
  }

  /** CF3: both slots, under a temporary name, renamed into place. */
  async #create(slot: number, record: Uint8Array): Promise<void> {
    const io = this.#io;
    const tmp = `${this.path}.tmp`;
    const whole = new Uint8Array(CONTROL_FILE_BYTES);
    whole.set(record, slot * CONTROL_RECORD_BYTES);
    let h: FileHandle;
    try {
      h = await io.open(tmp, { create: true });
    } catch (err) {
      throw ioError('open', tmp, err);
    }
    let error: unknown;
    try {
      await io.ftruncate(h, 0);
      await io.pwrite(h, whole, 0);
    } catch (err) {
      error = ioError('pwrite', tmp, err);
    }
    if (!error && this.#enableFsync) {
      try {
        await io.fsync(h);
      } catch (err) {
        error = ioError('fsync', tmp, err);
      }
    }
    try {
      await io.close(h);
    } catch (err) {
      error ??= ioError('close', tmp, err);
    }
    if (error) throw error;
    try {
      await io.rename(tmp, this.path);
    } catch (err) {
      throw ioError('rename', this.path, err);
    }
    if (this.#enableFsync) {
      try {
        await io.fsyncDir(this.#dir);
      } catch (err) {
        throw ioError('fsync', this.#dir, err);
      }
    }
    // Open now, so that checkpoints write without opening anything.
    try {
      this.#handle = await io.open(this.path);
    } catch (err) {
      throw ioError('open', this.path, err);
    }
  }

  /** Remove the file and its temporary name (a failed open undoing what it created), durably. */
  async remove(): Promise<void> {
    await this.close();
    for (const path of [this.path, `${this.path}.tmp`]) {
      try {
        await this.#io.unlink(path);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw ioError('unlink', path, err);
      }
    }
    try {
      await this.#io.fsyncDir(this.#dir);
    } catch (err) {
      throw ioError('fsync', this.#dir, err);
    }
    this.#durable = null;
  }

  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = null;
    if (!h) return;
    try {
      await this.#io.close(h);
    } catch (err) {
      throw ioError('close', this.path, err);
    }
  }
}

/**
 * Tests and tools (`lamstore/testing`): make a cleanly closed data directory look as a crashed
 * engine leaves it, state "in production" (the startup-sync bench uses it on real files, where
 * it cannot kill the process that holds the directory). Not for a directory an engine has open.
 */
export async function markUncleanStop(dataDir: string, options: { io?: FileIO } = {}): Promise<void> {
  const io = options.io ?? new RealIO();
  const { record } = await readControlFile(dataDir, { io });
  const control = await ControlFile.open(io, dataDir, { blockSize: record.blockSize, enableFsync: true });
  try {
    const { formatVersion: _v, generation: _g, writtenTimeMs, ...fields } = record;
    await control.write({ ...fields, state: ControlState.IN_PRODUCTION }, writtenTimeMs);
  } finally {
    await control.close();
  }
}
