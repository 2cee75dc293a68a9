/**
 * The relation API (DESIGN.md section 6): `engine.relation(locator, { storage, persistence })`
 * returns a Relation handle; no I/O happens until a method is called.
 *
 * Rules every method keeps:
 *  R1 Arguments are validated before anything is touched: forks 0..3, block numbers uint32 below
 *     InvalidBlockNumber (BAD_ARGUMENT), pages exactly blockSize bytes (BAD_ARGUMENT), blocks
 *     below nblocks for read and write (BLOCK_OUT_OF_RANGE), forks that exist
 *     (RELATION_NOT_FOUND). A refused call writes nothing.
 *  R2 create, extend, write, truncate and drop check first that the engine is open
 *     (ENGINE_CLOSED) and not failed (ENGINE_FAILED); exists, read and nblocks need it open.
 *  R3 Reads and writes go through the buffer pool; `read` returns a copy the caller may keep,
 *     `readInto` fills the caller's array (all of it, or nothing when it throws).
 *     Bytes 8-11 of a page belong to the engine (the checksum): what a caller puts there is
 *     replaced by the page's checksum on write and extend, and `read` returns the checksum there.
 *  R4 extend, truncate and drop of one fork are serialised by a per-fork lock (PostgreSQL's
 *     relation extension lock), so two extends never pick the same block number.
 *  R5 truncate and drop discard the affected buffers (dirty ones too) before the storage
 *     manager changes the files, and again after it (each discard bumps the fork's epoch, pool
 *     B6). A read or write racing them checks the epoch before a miss maps a buffer; the second
 *     discard removes what one mapped while the storage manager still reported the old size.
 *  R6 The handle caches each fork's nblocks with the epoch it was read at. The fork cannot have
 *     shrunk while the epoch is unchanged (only truncate and drop shrink it, and both bump the
 *     epoch after the change), so a block below the cached nblocks is in range without asking
 *     the storage manager; at or past it, or at another epoch, the storage manager is asked.
 *     With R5 this is what lets a buffer hit run without an await (the part 8).
 */
import { ErrorCode, LamstoreError } from './errors.js';
import type { ForkNumber, RelFileLocator } from './relfile.js';
import { FORKS, INVALID_BLOCK_NUMBER, checkBlock, checkFork, describeFork, isUint32 } from './relfile.js';
import type { Persistence, StorageManager } from './smgr/smgr.js';
import type { BufferPool, ForkBuffers } from './buffer/buffer-pool.js';
import { forkBufferKey } from './buffer/buffer-pool.js';
import { setPageChecksum } from './page.js';

export interface RelationOptions {
  /** Storage manager name. @default 'md' */
  storage?: string;
  /** 'unlogged' relations register no sync requests. @default 'permanent' */
  persistence?: Persistence;
}

/** What a Relation needs from its engine. */
export interface RelationHost {
  readonly blockSize: number;
  readonly pool: BufferPool;
  smgr(name: string): StorageManager;
  /** Throws ENGINE_CLOSED. */
  checkOpen(): void;
  /** Throws ENGINE_CLOSED or ENGINE_FAILED. */
  checkWritable(): void;
  /** Run `fn` holding the lock of `key` (R4). */
  withLock<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

export class Relation {
  readonly locator: RelFileLocator;
  readonly storage: string;
  readonly persistence: Persistence;
  readonly #host: RelationHost;
  readonly #smgr: StorageManager;
  /** Per fork: the pool's entry (made on first use), and nblocks as of epoch `#nbEpoch` (R6; -1: none). */
  readonly #forks: (ForkBuffers | undefined)[] = [undefined, undefined, undefined, undefined];
  readonly #nblocks: number[] = [0, 0, 0, 0];
  readonly #nbEpoch: number[] = [-1, -1, -1, -1];

  constructor(host: RelationHost, locator: RelFileLocator, options: { storage: string; persistence: Persistence }) {
    this.#host = host;
    this.locator = locator;
    this.storage = options.storage;
    this.persistence = options.persistence;
    this.#smgr = host.smgr(options.storage);
    // smgropen: the storage manager learns the persistence once, here.
    this.#smgr.open(this.locator, this.persistence);
  }

  #fork(fork: ForkNumber): ForkBuffers {
    return (this.#forks[fork] ??= this.#host.pool.forkBuffers(this.storage, this.locator, fork));
  }

  /** True when `block` is below the nblocks cached at the fork's current epoch (R6). */
  #knownInRange(fb: ForkBuffers, fork: ForkNumber, block: number): boolean {
    return this.#nbEpoch[fork] === fb.epoch && block < this.#nblocks[fork]!;
  }

  /**
   * BLOCK_OUT_OF_RANGE unless `block` < nblocks, asking the storage manager (which also throws
   * RELATION_NOT_FOUND). The answer is cached only if no discard ran during the await (R6).
   */
  async #checkInRange(fb: ForkBuffers, fork: ForkNumber, block: number): Promise<void> {
    const epoch = fb.epoch;
    const nb = await this.#smgr.nblocks(this.locator, fork);
    if (fb.epoch === epoch) {
      this.#nblocks[fork] = nb;
      this.#nbEpoch[fork] = epoch;
    }
    if (block >= nb) throw this.#outOfRange(fork, block, nb);
  }

  #lockKey(fork: number): string {
    return forkBufferKey(this.storage, this.locator, fork);
  }

  #checkPage(page: unknown): Uint8Array {
    if (!(page instanceof Uint8Array)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${this.#describe()}: page must be a Uint8Array of ${this.#host.blockSize} bytes`);
    if (page.length !== this.#host.blockSize) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${this.#describe()}: page must be ${this.#host.blockSize} bytes (blockSize), got ${page.length}`);
    }
    return page;
  }

  #describe(fork?: number): string {
    return fork === undefined
      ? `relation ${this.locator.spcOid}/${this.locator.dbOid}/${this.locator.relNumber} (${this.storage})`
      : `${describeFork(this.locator, fork)} (${this.storage})`;
  }

  #outOfRange(fork: ForkNumber, block: number, nblocks: number): LamstoreError {
    return new LamstoreError(ErrorCode.BLOCK_OUT_OF_RANGE, `${this.#describe(fork)}: block ${block} is out of range (nblocks ${nblocks})`);
  }

  /** Create the fork's storage (no-op when it exists). */
  async create(fork: ForkNumber): Promise<void> {
    const f = checkFork(fork);
    this.#host.checkWritable();
    await this.#host.withLock(this.#lockKey(f), () => this.#smgr.create(this.locator, f));
  }

  async exists(fork: ForkNumber): Promise<boolean> {
    const f = checkFork(fork);
    this.#host.checkOpen();
    return this.#smgr.exists(this.locator, f);
  }

  async nblocks(fork: ForkNumber): Promise<number> {
    const f = checkFork(fork);
    this.#host.checkOpen();
    return this.#smgr.nblocks(this.locator, f);
  }

  /** Append a page (zeros when omitted); resolves to its block number. */
  async extend(fork: ForkNumber, page?: Uint8Array): Promise<number> {
    const f = checkFork(fork);
    const p = page === undefined ? new Uint8Array(this.#host.blockSize) : this.#checkPage(page);
    this.#host.checkWritable();
    return this.#host.withLock(this.#lockKey(f), async () => {
      const nb = await this.#smgr.nblocks(this.locator, f);
      if (nb >= INVALID_BLOCK_NUMBER) throw this.#outOfRange(f, nb, nb);
      this.#host.checkWritable();
      const copy = p.slice();
      setPageChecksum(copy, nb);
      await this.#smgr.extend(this.locator, f, nb, copy);
      return nb;
    });
  }

  /** A copy of the page. */
  read(fork: ForkNumber, block: number): Promise<Uint8Array> {
    try {
      const f = checkFork(fork);
      const b = checkBlock(block);
      this.#host.checkOpen();
      return this.#readInto(f, b, new Uint8Array(this.#host.blockSize));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Copy the page into `dst` (a Uint8Array of blockSize bytes) and resolve to `dst`. A buffer
   * hit allocates nothing and awaits nothing; a miss reads the page from disk and verifies its
   * checksum before any byte reaches `dst`, so `dst` is either the whole page or untouched.
   *
   * Not an async function, on purpose: an async one returning the promise of #readMiss would
   * cost two more microtask turns per call, a third of a hit's time. Errors still arrive as
   * rejections, never as throws.
   */
  readInto(fork: ForkNumber, block: number, dst: Uint8Array): Promise<Uint8Array> {
    try {
      const f = checkFork(fork);
      const b = checkBlock(block);
      if (!(dst instanceof Uint8Array) || dst.length !== this.#host.blockSize) throw this.#badDst(dst);
      this.#host.checkOpen();
      return this.#readInto(f, b, dst);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #badDst(dst: unknown): LamstoreError {
    const got = dst instanceof Uint8Array ? `${dst.length} bytes` : dst === null ? 'null' : typeof dst === 'object' ? ((dst.constructor as { name?: string } | undefined)?.name ?? 'an object') : typeof dst;
    return new LamstoreError(ErrorCode.BAD_ARGUMENT, `${this.#describe()}: dst must be a Uint8Array of ${this.#host.blockSize} bytes (blockSize), got ${got}`);
  }

  /** Arguments checked: the hit path (R6, pool B8) or the miss path. */
  #readInto(f: ForkNumber, b: number, dst: Uint8Array): Promise<Uint8Array> {
    const fb = this.#fork(f);
    if (this.#knownInRange(fb, f, b) && this.#host.pool.readHit(fb, b, dst)) return Promise.resolve(dst);
    return this.#readMiss(fb, f, b, dst);
  }

  async #readMiss(fb: ForkBuffers, f: ForkNumber, b: number, dst: Uint8Array): Promise<Uint8Array> {
    const pool = this.#host.pool;
    for (;;) {
      const epoch = fb.epoch;
      if (!this.#knownInRange(fb, f, b)) await this.#checkInRange(fb, f, b);
      if (await pool.readInto(fb, b, this.persistence, dst, () => fb.epoch === epoch)) return dst;
      // Truncated or dropped meanwhile: look at nblocks again.
    }
  }

  /** Overwrite block `block` (< nblocks) with `page`. */
  async write(fork: ForkNumber, block: number, page: Uint8Array): Promise<void> {
    const f = checkFork(fork);
    const b = checkBlock(block);
    const p = this.#checkPage(page);
    this.#host.checkWritable();
    const pool = this.#host.pool;
    const fb = this.#fork(f);
    // A resident page in range is overwritten at once, with no copy allocated: a page per write
    // was 8 KiB of garbage per call, and the GC it caused landed in checkpoints (part 6).
    if (this.#knownInRange(fb, f, b) && pool.writeHit(fb, b, this.persistence, p)) return;
    // Otherwise we will await before the pool takes the bytes: snapshot them now, so a caller
    // changing its array after the call does not change what is written. The pool sets the
    // checksum in its own copy (R3).
    const copy = p.slice();
    for (;;) {
      const epoch = fb.epoch;
      if (!this.#knownInRange(fb, f, b)) {
        await this.#checkInRange(fb, f, b);
        this.#host.checkWritable();
      }
      const ok = await pool.write(fb, b, this.persistence, copy, () => fb.epoch === epoch);
      if (ok) return;
      // Truncated or dropped meanwhile: look at nblocks again.
    }
  }

  /** Cut the fork to `nblocks` blocks (at most its current size). */
  async truncate(fork: ForkNumber, nblocks: number): Promise<void> {
    const f = checkFork(fork);
    if (!isUint32(nblocks) || nblocks === INVALID_BLOCK_NUMBER) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${this.#describe(f)}: nblocks must be an integer in 0..${INVALID_BLOCK_NUMBER - 1}, got ${String(nblocks)}`);
    }
    this.#host.checkWritable();
    await this.#host.withLock(this.#lockKey(f), async () => {
      const cur = await this.#smgr.nblocks(this.locator, f);
      if (nblocks > cur) throw new LamstoreError(ErrorCode.BLOCK_OUT_OF_RANGE, `${this.#describe(f)}: cannot truncate to ${nblocks} blocks, it has ${cur}`);
      if (nblocks === cur) return;
      this.#host.checkWritable();
      await this.#host.pool.discard(this.storage, this.locator, f, nblocks);
      try {
        await this.#smgr.truncate(this.locator, f, nblocks);
      } finally {
        // R5/R6: also when the storage manager failed part way (the size may have changed).
        await this.#host.pool.discard(this.storage, this.locator, f, nblocks);
      }
    });
  }

  /** Drop every fork: buffers discarded, files removed as the storage manager does it. */
  async drop(): Promise<void> {
    this.#host.checkWritable();
    const run = async (i: number): Promise<void> => {
      if (i < FORKS.length) return this.#host.withLock(this.#lockKey(FORKS[i]!), () => run(i + 1));
      let any = false;
      for (const f of FORKS) if (await this.#smgr.exists(this.locator, f)) any = true;
      if (!any) throw new LamstoreError(ErrorCode.RELATION_NOT_FOUND, `${this.#describe()}: no fork exists; nothing to drop`);
      this.#host.checkWritable();
      await this.#host.pool.discard(this.storage, this.locator, undefined, 0);
      try {
        await this.#smgr.unlink(this.locator, undefined);
      } finally {
        await this.#host.pool.discard(this.storage, this.locator, undefined, 0); // R5/R6
      }
    };
    await run(0);
  }
}
