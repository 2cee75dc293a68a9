/**
 * SimDisk: an in-memory FileIO with power-loss semantics and fault injection, for tests.
 *
 * Method (after SQLite's test6.c and TigerBeetle's testing/storage.zig):
 *  - Every file (inode) holds its current bytes, its durable bytes, and the ordered list of
 *    writes and truncates issued since its last fsync/fdatasync ("pending"). A sync moves the
 *    pending operations into the durable image. Reads see the current bytes.
 *  - Every directory holds its current entries, its durable entries, and the directory
 *    operations (link a name, remove a name) issued since its last fsyncDir. A new file whose
 *    directory was never fsynced has no durable name: after a crash it is gone.
 *  - `crash(mode, seed)` returns a NEW disk made of the durable state plus, per mode:
 *      drop     nothing that was pending;
 *      prefix   the pending operations (data and directory) issued before a random cut;
 *      subset   a random subset of the pending operations, applied in issue order;
 *      torn     drop, except one pending write (the last, or a random one with
 *               `tornTarget: 'random'`) kept sector by sector (512 B), each sector old or new;
 *      garbage  drop, except one random pending write whose sectors hold random bytes.
 *    The disk it was called on is left untouched, so a harness can take a crash image at any
 *    call index and carry on. Everything on the new disk is durable.
 *  - `injectFault` fails the n-th call of a kind (counted from the injection) with EIO, ENOSPC,
 *    EDQUOT or EROFS, once or persistently. Each fault counts only the calls that match it
 *    (kind, and `pathIncludes` when given), whatever other faults do. A failing call has no
 *    effect, except close, which releases the handle as close(2) does. In `fsyncgate` mode a
 *    failing fsync/fdatasync also forgets that file's pending writes (they can never become
 *    durable, though reads still see them) and the next sync of the file succeeds: the Linux
 *    behaviour that made PostgreSQL PANIC on fsync failure.
 *  - Deterministic: all randomness comes from the seed given to `crash` (print it on failure).
 *  - `flock` locks are per inode and per handle, as flock(2) is per open file description.
 *  - `writeback` (the sync_file_range hint) is counted and can be failed, but changes nothing:
 *    it never makes a pending write durable.
 */
import type { FileHandle, FileIO, FileStat, IoKind, LockMode, OpenOptions } from './file-io.js';
import { fsError, totalLength } from './file-io.js';
import { assert } from '../errors.js';

export type CrashMode = 'drop' | 'prefix' | 'subset' | 'torn' | 'garbage';
export const CRASH_MODES: readonly CrashMode[] = ['drop', 'prefix', 'subset', 'torn', 'garbage'];

export type FaultCode = 'EIO' | 'ENOSPC' | 'EDQUOT' | 'EROFS';

export interface FaultSpec {
  kind: IoKind;
  /** Which call of that kind fails, counting from 1 at the moment of injection. @default 1 */
  nth?: number;
  code: FaultCode;
  /** Keep failing every later call of that kind too. @default false */
  persistent?: boolean;
  /** fsync/fdatasync only: the failure drops the file's pending writes. @default false */
  fsyncgate?: boolean;
  /** Only calls on paths containing this string count. */
  pathIncludes?: string;
}

export interface CrashOptions {
  /** For torn mode: which pending write is torn. @default 'last' */
  tornTarget?: 'last' | 'random';
  /** Sector size for torn and garbage modes. @default 512 */
  sectorBytes?: number;
}

export const SECTOR_BYTES_DEFAULT = 512;

interface WriteOp {
  seq: number;
  kind: 'write';
  offset: number;
  bytes: Uint8Array;
}
interface TruncateOp {
  seq: number;
  kind: 'truncate';
  length: number;
}
type DataOp = WriteOp | TruncateOp;

interface Inode {
  id: number;
  data: Uint8Array; // current bytes; length is the file size
  durable: Uint8Array;
  pending: DataOp[];
  lockExclusive: SimHandle | null;
  lockShared: Set<SimHandle>;
}

type Entry = { kind: 'file'; inode: Inode } | { kind: 'dir'; path: string };

interface DirOp {
  seq: number;
  name: string;
  /** null removes the name. */
  entry: Entry | null;
}

interface Dir {
  path: string;
  entries: Map<string, Entry>;
  durable: Map<string, Entry>;
  pending: DirOp[];
}

class SimHandle implements FileHandle {
  closed = false;
  constructor(
    readonly path: string,
    readonly inode: Inode,
    readonly readOnly: boolean,
    readonly disk: SimDisk,
  ) {}
}

interface ActiveFault extends FaultSpec {
  remaining: number; // calls of that kind still to let through
}

/** splitmix32: small, fast, good enough to drive crash choices reproducibly. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 0x1_0000_0000;
  };
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}
function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
function normalize(path: string): string {
  assert(path.startsWith('/'), `SimDisk paths are absolute: ${path}`);
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return '/' + parts.join('/');
}

function applyData(base: Uint8Array, op: DataOp): Uint8Array {
  if (op.kind === 'truncate') {
    const out = new Uint8Array(op.length);
    out.set(base.subarray(0, Math.min(base.length, op.length)));
    return out;
  }
  const end = op.offset + op.bytes.length;
  const out = end > base.length ? new Uint8Array(end) : base;
  if (out !== base) out.set(base);
  out.set(op.bytes, op.offset);
  return out;
}

export class SimDisk implements FileIO {
  #dirs = new Map<string, Dir>();
  #nextInode = 1;
  #seq = 1;
  #faults: ActiveFault[] = [];
  #openHandles = new Set<SimHandle>();
  /** Total FileIO calls made on this disk so far (all kinds). */
  callCount = 0;
  /** Called before every FileIO call with its 1-based index; a crash harness hooks here. */
  onCall: ((index: number, kind: IoKind, path: string) => void) | undefined;
  /**
   * Awaited before every FileIO call, with the index that call will get. A crash harness uses
   * it to take crash images and verify them (on other disks) while the workload waits.
   */
  beforeCall: ((nextIndex: number, kind: IoKind, path: string) => void | Promise<void>) | undefined;

  async #gate(kind: IoKind, path: string): Promise<void> {
    if (this.beforeCall) await this.beforeCall(this.callCount + 1, kind, path);
  }

  constructor() {
    this.#dirs.set('/', { path: '/', entries: new Map(), durable: new Map(), pending: [] });
  }

  /** Number of handles open now (to find descriptor leaks). */
  get openHandleCount(): number {
    return this.#openHandles.size;
  }

  // ---------------------------------------------------------------- faults

  injectFault(spec: FaultSpec): void {
    const nth = spec.nth ?? 1;
    assert(Number.isInteger(nth) && nth >= 1, 'fault nth is a positive integer');
    this.#faults.push({ ...spec, remaining: nth - 1 });
  }

  clearFaults(): void {
    this.#faults = [];
  }

  #enter(kind: IoKind, path: string): ActiveFault | null {
    this.callCount++;
    this.onCall?.(this.callCount, kind, path);
    // Every matching fault counts this call, even when an earlier one fires: each fault's nth
    // is counted from its own injection, whatever other faults do.
    let firing: ActiveFault | null = null;
    for (const f of this.#faults) {
      if (f.kind !== kind) continue;
      if (f.pathIncludes !== undefined && !path.includes(f.pathIncludes)) continue;
      if (f.remaining > 0) f.remaining--;
      else firing ??= f;
    }
    if (firing && !firing.persistent) this.#faults.splice(this.#faults.indexOf(firing), 1);
    return firing;
  }

  #maybeFail(kind: IoKind, path: string, syscall: string = kind): void {
    const f = this.#enter(kind, path);
    if (f) throw fsError(f.code, syscall, path, 'injected fault');
  }

  // ---------------------------------------------------------------- namespace

  #dir(path: string, syscall: string): Dir {
    const d = this.#dirs.get(path);
    // A removed directory keeps its record (rmdir) but no longer has a name.
    if (!d || this.#lookup(path)?.kind !== 'dir') throw fsError('ENOENT', syscall, path, 'no such directory');
    return d;
  }

  #lookup(path: string): Entry | undefined {
    if (path === '/') return { kind: 'dir', path: '/' };
    const d = this.#dirs.get(parentOf(path));
    return d?.entries.get(baseOf(path));
  }

  #link(dir: Dir, name: string, entry: Entry | null): void {
    if (entry) dir.entries.set(name, entry);
    else dir.entries.delete(name);
    dir.pending.push({ seq: this.#seq++, name, entry });
  }

  #handle(h: FileHandle, syscall: string): SimHandle {
    if (!(h instanceof SimHandle) || h.disk !== this) throw fsError('EBADF', syscall, h.path, 'not a handle of this disk');
    if (h.closed) throw fsError('EBADF', syscall, h.path, 'handle is closed');
    return h;
  }

  // ---------------------------------------------------------------- FileIO

  async open(rawPath: string, options: OpenOptions = {}): Promise<FileHandle> {
    const path = normalize(rawPath);
    await this.#gate('open', path);
    this.#maybeFail('open', path);
    const dir = this.#dir(parentOf(path), 'open');
    let entry = dir.entries.get(baseOf(path));
    if (entry?.kind === 'dir') throw fsError('EISDIR', 'open', path, 'is a directory');
    if (entry && options.create && options.exclusive) throw fsError('EEXIST', 'open', path, 'file exists');
    if (!entry) {
      if (!options.create) throw fsError('ENOENT', 'open', path, 'no such file');
      const inode: Inode = {
        id: this.#nextInode++,
        data: new Uint8Array(0),
        durable: new Uint8Array(0),
        pending: [],
        lockExclusive: null,
        lockShared: new Set(),
      };
      entry = { kind: 'file', inode };
      this.#link(dir, baseOf(path), entry);
    }
    const h = new SimHandle(path, entry.inode, options.readOnly === true, this);
    this.#openHandles.add(h);
    return h;
  }

  async close(h: FileHandle): Promise<void> {
    const sh = this.#handle(h, 'close');
    await this.#gate('close', sh.path);
    const f = this.#enter('close', sh.path);
    // As with close(2), the handle is released even when close reports an error.
    sh.closed = true;
    this.#openHandles.delete(sh);
    this.#unlock(sh);
    if (f) throw fsError(f.code, 'close', sh.path, 'injected fault');
  }

  async pread(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<number> {
    const sh = this.#handle(h, 'read');
    await this.#gate('pread', sh.path);
    this.#maybeFail('pread', sh.path, 'read');
    const data = sh.inode.data;
    if (offsetBytes >= data.length) return 0;
    const n = Math.min(buffer.length, data.length - offsetBytes);
    buffer.set(data.subarray(offsetBytes, offsetBytes + n));
    return n;
  }

  async pwrite(h: FileHandle, buffer: Uint8Array, offsetBytes: number): Promise<void> {
    await this.pwritev(h, [buffer], offsetBytes);
  }

  async pwritev(h: FileHandle, buffers: readonly Uint8Array[], offsetBytes: number): Promise<void> {
    const sh = this.#handle(h, 'write');
    await this.#gate('pwrite', sh.path);
    this.#maybeFail('pwrite', sh.path, 'write');
    if (sh.readOnly) throw fsError('EBADF', 'write', sh.path, 'opened read-only');
    // A write of nothing changes nothing, not even the size (pwrite(2) past the end included).
    if (totalLength(buffers) === 0) return;
    const bytes = new Uint8Array(totalLength(buffers));
    let at = 0;
    for (const b of buffers) {
      bytes.set(b, at);
      at += b.length;
    }
    const op: WriteOp = { seq: this.#seq++, kind: 'write', offset: offsetBytes, bytes };
    sh.inode.data = applyData(sh.inode.data, op);
    sh.inode.pending.push(op);
  }

  #sync(h: FileHandle, kind: 'fsync' | 'fdatasync'): void {
    const sh = this.#handle(h, kind);
    const f = this.#enter(kind, sh.path);
    if (f) {
      if (f.fsyncgate) sh.inode.pending = [];
      throw fsError(f.code, kind, sh.path, 'injected fault');
    }
    let d = sh.inode.durable;
    for (const op of sh.inode.pending) d = applyData(d, op);
    sh.inode.durable = d === sh.inode.data ? d.slice() : d;
    sh.inode.pending = [];
  }

  async fsync(h: FileHandle): Promise<void> {
    await this.#gate('fsync', h.path);
    this.#sync(h, 'fsync');
  }

  async fdatasync(h: FileHandle): Promise<void> {
    await this.#gate('fdatasync', h.path);
    this.#sync(h, 'fdatasync');
  }

  async ftruncate(h: FileHandle, lengthBytes: number): Promise<void> {
    const sh = this.#handle(h, 'ftruncate');
    await this.#gate('ftruncate', sh.path);
    this.#maybeFail('ftruncate', sh.path);
    if (sh.readOnly) throw fsError('EBADF', 'ftruncate', sh.path, 'opened read-only');
    const op: TruncateOp = { seq: this.#seq++, kind: 'truncate', length: lengthBytes };
    sh.inode.data = applyData(sh.inode.data, op);
    sh.inode.pending.push(op);
  }

  async size(h: FileHandle): Promise<number> {
    const sh = this.#handle(h, 'fstat');
    await this.#gate('size', sh.path);
    this.#maybeFail('size', sh.path, 'fstat');
    return sh.inode.data.length;
  }

  async unlink(rawPath: string): Promise<void> {
    const path = normalize(rawPath);
    await this.#gate('unlink', path);
    this.#maybeFail('unlink', path);
    const dir = this.#dir(parentOf(path), 'unlink');
    const entry = dir.entries.get(baseOf(path));
    if (!entry) throw fsError('ENOENT', 'unlink', path, 'no such file');
    if (entry.kind === 'dir') throw fsError('EISDIR', 'unlink', path, 'is a directory');
    this.#link(dir, baseOf(path), null);
  }

  async rename(rawFrom: string, rawTo: string): Promise<void> {
    const from = normalize(rawFrom);
    const to = normalize(rawTo);
    await this.#gate('rename', from);
    this.#maybeFail('rename', from);
    const fromDir = this.#dir(parentOf(from), 'rename');
    const toDir = this.#dir(parentOf(to), 'rename');
    const entry = fromDir.entries.get(baseOf(from));
    if (!entry) throw fsError('ENOENT', 'rename', from, 'no such file');
    if (entry.kind === 'dir') throw fsError('EINVAL', 'rename', from, 'SimDisk renames files only');
    if (toDir.entries.get(baseOf(to))?.kind === 'dir') throw fsError('EISDIR', 'rename', to, 'target is a directory');
    // rename(2) of a name onto itself does nothing (and must not remove the name).
    if (from === to) return;
    this.#link(toDir, baseOf(to), entry);
    this.#link(fromDir, baseOf(from), null);
  }

  async mkdir(rawPath: string): Promise<void> {
    const path = normalize(rawPath);
    await this.#gate('mkdir', path);
    this.#maybeFail('mkdir', path);
    // Check the whole chain first so that a failing call has no effect.
    for (let p = path; p !== '/'; p = parentOf(p)) {
      const existing = this.#lookup(p);
      if (existing?.kind === 'dir') break;
      if (existing) throw fsError(p === path ? 'EEXIST' : 'ENOTDIR', 'mkdir', path, `a file has the name ${p}`);
    }
    this.#mkdirs(path);
  }

  /** Create `path` and its missing parents (one FileIO call, however many levels). */
  #mkdirs(path: string): void {
    if (path === '/' || this.#lookup(path)?.kind === 'dir') return;
    const parent = parentOf(path);
    this.#mkdirs(parent);
    this.#dirs.set(path, { path, entries: new Map(), durable: new Map(), pending: [] });
    this.#link(this.#dirs.get(parent)!, baseOf(path), { kind: 'dir', path });
  }

  /** rmdir(2) of an empty directory: the name goes as an unlink's does (durable at fsyncDir). */
  async rmdir(rawPath: string): Promise<void> {
    const path = normalize(rawPath);
    const dir = this.#dir(path, 'rmdir');
    if (dir.entries.size > 0) throw fsError('ENOTEMPTY', 'rmdir', path, 'directory not empty');
    // The Dir record stays: a crash image may still reach it through a durable entry.
    this.#link(this.#dir(parentOf(path), 'rmdir'), baseOf(path), null);
  }

  async fsyncDir(rawPath: string): Promise<void> {
    const path = normalize(rawPath);
    await this.#gate('fsyncDir', path);
    this.#maybeFail('fsyncDir', path, 'fsync');
    const dir = this.#dir(path, 'fsync');
    dir.durable = new Map(dir.entries);
    dir.pending = [];
  }

  async stat(rawPath: string): Promise<FileStat | null> {
    const path = normalize(rawPath);
    await this.#gate('stat', path);
    this.#maybeFail('stat', path);
    const e = this.#lookup(path);
    if (!e) return null;
    if (e.kind === 'dir') return this.#dirs.has(e.path) ? { kind: 'directory', sizeBytes: 4096 } : null;
    return { kind: 'file', sizeBytes: e.inode.data.length };
  }

  async readdir(rawPath: string): Promise<string[]> {
    const path = normalize(rawPath);
    await this.#gate('readdir', path);
    this.#maybeFail('readdir', path, 'scandir');
    return [...this.#dir(path, 'scandir').entries.keys()].sort();
  }

  async flock(h: FileHandle, mode: LockMode): Promise<void> {
    const sh = this.#handle(h, 'flock');
    await this.#gate('flock', sh.path);
    this.#maybeFail('flock', sh.path);
    const ino = sh.inode;
    if (mode === 'unlock') return this.#unlock(sh);
    const othersShared = [...ino.lockShared].some((o) => o !== sh);
    const otherExclusive = ino.lockExclusive !== null && ino.lockExclusive !== sh;
    if (otherExclusive || (mode === 'exclusive' && othersShared)) {
      throw fsError('EAGAIN', 'flock', sh.path, 'resource temporarily unavailable (locked)');
    }
    this.#unlock(sh);
    if (mode === 'exclusive') ino.lockExclusive = sh;
    else ino.lockShared.add(sh);
  }

  /**
   * The writeback hint (FileIO C7): a counted call (callCount, onCall, faults of kind
   * 'writeback') with no effect on contents or durability: pending writes stay pending until a
   * sync, as sync_file_range(SYNC_FILE_RANGE_WRITE) guarantees nothing either.
   */
  async writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    const sh = this.#handle(h, 'sync_file_range');
    await this.#gate('writeback', sh.path);
    this.#maybeFail('writeback', sh.path, 'sync_file_range');
    if (!(Number.isInteger(offsetBytes) && offsetBytes >= 0 && Number.isInteger(lengthBytes) && lengthBytes >= 0)) {
      throw fsError('EINVAL', 'sync_file_range', sh.path, `bad range ${offsetBytes}+${lengthBytes}`);
    }
  }

  #unlock(sh: SimHandle): void {
    if (sh.inode.lockExclusive === sh) sh.inode.lockExclusive = null;
    sh.inode.lockShared.delete(sh);
  }

  /**
   * The process that had this disk open died (kill -9): every handle is closed and every lock
   * released, but nothing is lost: unsynced writes stay in the "page cache", still pending.
   */
  processCrash(): void {
    for (const h of this.#openHandles) {
      h.closed = true;
      this.#unlock(h);
    }
    this.#openHandles.clear();
  }

  // ---------------------------------------------------------------- inspection for tests

  /** Current bytes of a file (what reads see), or null. */
  readFileNow(rawPath: string): Uint8Array | null {
    const e = this.#lookup(normalize(rawPath));
    return e?.kind === 'file' ? e.inode.data.slice() : null;
  }

  /** Bytes of a file that have reached durable storage under a durable name, or null. */
  readFileDurable(rawPath: string): Uint8Array | null {
    const path = normalize(rawPath);
    if (!this.#durablyReachable(parentOf(path))) return null;
    const e = this.#dirs.get(parentOf(path))?.durable.get(baseOf(path));
    return e?.kind === 'file' ? e.inode.durable.slice() : null;
  }

  /** Write a file directly, durable at once (to set up a test image or corrupt one). */
  putFile(rawPath: string, bytes: Uint8Array): void {
    const path = normalize(rawPath);
    const dir = this.#dirs.get(parentOf(path));
    assert(dir, `putFile: parent of ${path} exists`);
    let e = dir.entries.get(baseOf(path));
    if (!e) {
      const inode: Inode = { id: this.#nextInode++, data: new Uint8Array(0), durable: new Uint8Array(0), pending: [], lockExclusive: null, lockShared: new Set() };
      e = { kind: 'file', inode };
      dir.entries.set(baseOf(path), e);
      dir.durable.set(baseOf(path), e);
    }
    assert(e.kind === 'file', `putFile: ${path} is a file`);
    e.inode.data = bytes.slice();
    e.inode.durable = bytes.slice();
    e.inode.pending = [];
  }

  /** Paths of every file reachable now, sorted. */
  listFiles(): string[] {
    const out: string[] = [];
    for (const d of this.#dirs.values()) {
      for (const [name, e] of d.entries) if (e.kind === 'file') out.push(d.path === '/' ? `/${name}` : `${d.path}/${name}`);
    }
    return out.sort();
  }

  /** Number of operations (data and directory) not yet durable. */
  get pendingCount(): number {
    let n = 0;
    for (const ino of this.#inodes()) n += ino.pending.length;
    for (const d of this.#dirs.values()) n += d.pending.length;
    return n;
  }

  #durablyReachable(path: string): boolean {
    if (path === '/') return true;
    const parent = this.#dirs.get(parentOf(path));
    const e = parent?.durable.get(baseOf(path));
    return e?.kind === 'dir' && this.#durablyReachable(parentOf(path));
  }

  #inodes(): Set<Inode> {
    const set = new Set<Inode>();
    for (const d of this.#dirs.values()) {
      for (const e of d.entries.values()) if (e.kind === 'file') set.add(e.inode);
      for (const e of d.durable.values()) if (e.kind === 'file') set.add(e.inode);
      for (const op of d.pending) if (op.entry?.kind === 'file') set.add(op.entry.inode);
    }
    for (const h of this.#openHandles) set.add(h.inode);
    return set;
  }

  // ---------------------------------------------------------------- crash

  /**
   * A new disk holding what a power loss now would leave (see the header for the modes).
   * This disk is not changed.
   */
  crash(mode: CrashMode, seed = 1, options: CrashOptions = {}): SimDisk {
    const rand = prng(seed);
    const sector = options.sectorBytes ?? SECTOR_BYTES_DEFAULT;
    const inodes = [...this.#inodes()];
    const writes: { ino: Inode; op: WriteOp }[] = [];
    const allSeqs: number[] = [];
    for (const ino of inodes) {
      for (const op of ino.pending) {
        allSeqs.push(op.seq);
        if (op.kind === 'write') writes.push({ ino, op });
      }
    }
    for (const d of this.#dirs.values()) for (const op of d.pending) allSeqs.push(op.seq);
    allSeqs.sort((a, b) => a - b);
    writes.sort((a, b) => a.op.seq - b.op.seq);

    // Which pending operations survive, by sequence number.
    let keep: (seq: number) => boolean = () => false;
    if (mode === 'prefix') {
      const cut = Math.floor(rand() * (allSeqs.length + 1));
      const limit = cut < allSeqs.length ? allSeqs[cut]! : Infinity;
      keep = (seq) => seq < limit;
    } else if (mode === 'subset') {
      const kept = new Set(allSeqs.filter(() => rand() < 0.5));
      keep = (seq) => kept.has(seq);
    }
    // torn / garbage: one write, reshaped sector by sector.
    let special: { ino: Inode; op: WriteOp } | undefined;
    if ((mode === 'torn' || mode === 'garbage') && writes.length > 0) {
      const pickRandom = mode === 'garbage' || options.tornTarget === 'random';
      special = pickRandom ? writes[Math.floor(rand() * writes.length)] : writes[writes.length - 1];
    }

    const next = new SimDisk();
    next.#seq = this.#seq;
    const rebuilt = new Map<Inode, Inode>();
    const rebuild = (ino: Inode): Inode => {
      let out = rebuilt.get(ino);
      if (out) return out;
      // A copy: applyData writes in place when it can, and this disk must stay untouched.
      let bytes: Uint8Array = ino.durable.slice();
      for (const op of ino.pending) {
        if (special && special.op === op) {
          bytes = mode === 'torn' ? tornApply(bytes, op, sector, rand) : garbageApply(bytes, op, sector, rand);
        } else if (keep(op.seq)) bytes = applyData(bytes, op);
      }
      out = { id: next.#nextInode++, data: bytes.slice(), durable: bytes.slice(), pending: [], lockExclusive: null, lockShared: new Set() };
      rebuilt.set(ino, out);
      return out;
    };

    // Directory tree: durable entries plus the kept directory operations, from the root down.
    const entriesAfter = (d: Dir): Map<string, Entry> => {
      const m = new Map(d.durable);
      for (const op of d.pending) {
        if (!keep(op.seq)) continue;
        if (op.entry) m.set(op.name, op.entry);
        else m.delete(op.name);
      }
      return m;
    };
    const walk = (src: Dir, dstPath: string): void => {
      const dst: Dir = { path: dstPath, entries: new Map(), durable: new Map(), pending: [] };
      next.#dirs.set(dstPath, dst);
      for (const [name, e] of entriesAfter(src)) {
        const childPath = dstPath === '/' ? `/${name}` : `${dstPath}/${name}`;
        if (e.kind === 'file') {
          const ne: Entry = { kind: 'file', inode: rebuild(e.inode) };
          dst.entries.set(name, ne);
          dst.durable.set(name, ne);
        } else {
          const sub = this.#dirs.get(e.path);
          if (!sub) continue;
          const ne: Entry = { kind: 'dir', path: childPath };
          dst.entries.set(name, ne);
          dst.durable.set(name, ne);
          walk(sub, childPath);
        }
      }
    };
    walk(this.#dirs.get('/')!, '/');
    return next;
  }
}

function tornApply(base: Uint8Array, op: WriteOp, sector: number, rand: () => number): Uint8Array {
  // Sectors are aligned to the file, not to the write: a write covers part of its first and
  // last sector, and those parts tear with the rest.
  let out = base;
  const end = op.offset + op.bytes.length;
  for (let s = Math.floor(op.offset / sector) * sector; s < end; s += sector) {
    if (rand() < 0.5) continue; // this sector keeps its old bytes
    const from = Math.max(s, op.offset);
    const to = Math.min(s + sector, end);
    out = applyData(out, { seq: op.seq, kind: 'write', offset: from, bytes: op.bytes.subarray(from - op.offset, to - op.offset) });
  }
  return out;
}

function garbageApply(base: Uint8Array, op: WriteOp, sector: number, rand: () => number): Uint8Array {
  const start = Math.floor(op.offset / sector) * sector;
  // Garbage covers whole sectors but never makes the file longer than the write would have.
  const end = Math.min(Math.ceil((op.offset + op.bytes.length) / sector) * sector, Math.max(base.length, op.offset + op.bytes.length));
  const junk = new Uint8Array(end - start);
  for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rand() * 256);
  return applyData(base, { seq: op.seq, kind: 'write', offset: start, bytes: junk });
}
