/**
 * Relation file identities: RelFileLocator, ForkNumber and block numbers (PostgreSQL's
 * relfilelocator.h and relpath.h), with the validation every public entry point uses.
 */
import { ErrorCode, LamstoreError } from './errors.js';

/** Identity of a relation's storage: tablespace, database, relfilenumber (uint32 each). */
export interface RelFileLocator {
  spcOid: number;
  dbOid: number;
  relNumber: number;
}

export const ForkNumber = { INVALID: -1, MAIN: 0, FSM: 1, VISIBILITY_MAP: 2, INIT: 3 } as const;
export type ForkNumber = 0 | 1 | 2 | 3;
/** Every fork, in fork-number order: the one list code loops over ("all four forks"). */
export const FORKS: readonly ForkNumber[] = [ForkNumber.MAIN, ForkNumber.FSM, ForkNumber.VISIBILITY_MAP, ForkNumber.INIT];

/** The forks' names, indexed by fork number (relpath.c's forkNames: md's file suffixes, messages, inspect). */
export const FORK_NAMES = ['main', 'fsm', 'vm', 'init'] as const;

/** Tablespace OIDs with fixed meaning. */
export const DEFAULTTABLESPACE_OID = 1663;
export const GLOBALTABLESPACE_OID = 1664;

export const UINT32_MAX = 0xffff_ffff;
/** InvalidBlockNumber: never a real block; extension refuses to reach it. */
export const INVALID_BLOCK_NUMBER = UINT32_MAX;

export function isUint32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= UINT32_MAX;
}

export function checkLocator(loc: unknown): RelFileLocator {
  const l = loc as Partial<RelFileLocator> | null;
  if (typeof l !== 'object' || l === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'relation locator must be an object { spcOid, dbOid, relNumber }');
  for (const k of ['spcOid', 'dbOid', 'relNumber'] as const) {
    if (!isUint32(l[k])) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `relation locator ${k} must be an unsigned 32-bit integer, got ${String(l[k])}`);
  }
  return { spcOid: l.spcOid!, dbOid: l.dbOid!, relNumber: l.relNumber! };
}

export function checkFork(fork: unknown): ForkNumber {
  if (fork === 0 || fork === 1 || fork === 2 || fork === 3) return fork;
  throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `fork number must be 0 (main), 1 (fsm), 2 (vm) or 3 (init), got ${String(fork)}`);
}

/**
 * A block number that may be read or written: uint32 and not InvalidBlockNumber. Returned as
 * `block >>> 0` (the same value): a block number that arrives as a double (from Math.floor, say)
 * leaves as an integer, so the buffer pool's Map lookups hash an integer rather than a boxed double.
 */
export function checkBlock(block: unknown, what = 'block number'): number {
  if (!isUint32(block) || block === INVALID_BLOCK_NUMBER) {
    throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${what} must be an integer in 0..${INVALID_BLOCK_NUMBER - 1}, got ${String(block)}`);
  }
  return block >>> 0;
}

/** "relation 1663/5/16384 fork main" for messages (a number for a fork that has no name). */
export function describeFork(loc: RelFileLocator, fork: number): string {
  const name = FORK_NAMES[fork as ForkNumber] ?? String(fork);
  return `relation ${loc.spcOid}/${loc.dbOid}/${loc.relNumber} fork ${name}`;
}

/** "1663/5/16384": a relation as a map key. */
export function locatorKey(loc: RelFileLocator): string {
  return `${loc.spcOid}/${loc.dbOid}/${loc.relNumber}`;
}

/** "1663/5/16384/0": one fork of a relation as a map key. */
export function forkKey(loc: RelFileLocator, fork: number): string {
  return `${locatorKey(loc)}/${fork}`;
}
