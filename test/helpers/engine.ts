/**
 * What most engine tests share, in one place: the block size they use, pages of one byte value,
 * the relation locator they work on, the code of a refusal, and an engine that is always closed.
 *
 * `withEngine(options, fn)` is the shape of a test on one open engine: open, run `fn`, close,
 * whatever `fn` did. It never hides a failure: if `fn` throws and the close fails too, both come
 * out (an AggregateError, `fn`'s first); if only the close fails, that is the test's failure. A
 * test whose engine ends up failed on purpose says what its close must do (`closeRejects`):
 * a failed engine's close rejects with ENGINE_FAILED (its last changes were not made durable),
 * and a close that does anything else then fails the test.
 */
import { expect } from 'vitest';
import { BLOCK_SIZE_DEFAULT, Engine, isLamstoreError } from '../../engine/index.js';
import type { EngineOptions, ErrorCode, FileIO, RelFileLocator } from '../../engine/index.js';

/** The engine's default block size, the page size of every test that does not choose one. */
export const BS = BLOCK_SIZE_DEFAULT;

/**
 * The smallest block size the engine takes (4 KiB), for volume and crash tests: a volume of a
 * few hundred KiB then holds enough blocks, and a crash campaign has fewer bytes to compare.
 */
export const SMALL_BS = 4096;

/** A page of `bs` bytes all equal to `fill`. */
export function pageOf(fill: number, bs = BS): Uint8Array {
  return new Uint8Array(bs).fill(fill);
}

/**
 * The fill of a pageOf page read back. Bytes 8-11 hold the engine's checksum, so the fill is
 * read past them, at byte 16; the last byte must agree, or the page is a mix of two.
 */
export function fillOf(page: Uint8Array): number {
  expect(page[16], 'first and last byte of the page agree').toBe(page[page.length - 1]);
  return page[16]!;
}

/** A page carrying a 16-bit tag in bytes 0-1 and the tag's low byte from byte 16 on (8-11 are the engine's). */
export function taggedPage(tag: number, bs = BS): Uint8Array {
  const p = new Uint8Array(bs).fill(tag & 0xff, 16);
  p[0] = tag & 0xff;
  p[1] = tag >> 8;
  return p;
}

/** The tag of a taggedPage read back. */
export function tagOf(page: Uint8Array): number {
  return page[0]! | (page[1]! << 8);
}

/** A relation of database 5 in the default tablespace (1663), the locator tests use. */
export function locator(relNumber = 16384, dbOid = 5): RelFileLocator {
  return { spcOid: 1663, dbOid, relNumber };
}

/** The relation most tests work on: 1663/5/16384. */
export const REL: RelFileLocator = locator();

/**
 * The LamstoreError code `p` (a promise, or a function called at once) fails with, undefined
 * when it succeeds. Anything that is not a LamstoreError is rethrown: a test naming a code must
 * not pass on a TypeError.
 */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    if (typeof p === 'function') await p();
    else await p;
  } catch (err) {
    if (isLamstoreError(err)) return err.code;
    throw err;
  }
  return undefined;
}

/** Options for an engine at /data on `io` (a SimDisk or a FileIO over one), plus the test's own. */
export function onDisk(io: FileIO, options: Partial<EngineOptions> = {}): EngineOptions {
  return { dataDir: '/data', io, ...options };
}

/** Engine.open(onDisk(io, options)): for tests that close (or crash) the engine themselves. */
export function openOn(io: FileIO, options: Partial<EngineOptions> = {}): Promise<Engine> {
  return Engine.open(onDisk(io, options));
}

export interface WithEngineExpectations {
  /** The engine is failed by the end of `fn`: its close must reject with this code. */
  closeRejects?: ErrorCode;
}

async function closeAs(engine: Engine, expected: WithEngineExpectations): Promise<void> {
  if (expected.closeRejects === undefined) return engine.close();
  let closeError: unknown;
  try {
    await engine.close();
  } catch (err) {
    closeError = err;
  }
  if (closeError === undefined) throw new Error(`engine.close() resolved; the test expected it to reject with ${expected.closeRejects}`);
  if (!isLamstoreError(closeError, expected.closeRejects)) throw closeError;
}

/** Open an engine, run `fn` on it, and close it whatever `fn` does (see the header). */
export async function withEngine<T>(options: EngineOptions, fn: (engine: Engine) => Promise<T>, expected: WithEngineExpectations = {}): Promise<T> {
  const engine = await Engine.open(options);
  let result: T;
  try {
    result = await fn(engine);
  } catch (err) {
    try {
      await closeAs(engine, expected);
    } catch (closeError) {
      throw new AggregateError([err, closeError], `the test failed (${String(err)}) and closing its engine failed too (${String(closeError)})`);
    }
    throw err;
  }
  await closeAs(engine, expected);
  return result;
}
