/**
 * md file naming (PostgreSQL relpath.c and md.c's _mdfd_segpath):
 *   spcOid 1664 (global)   global/<relNumber>
 *   spcOid 1663 (default)  base/<dbOid>/<relNumber>
 *   any other tablespace   pg_tblspc/<spcOid>/<TABLESPACE_VERSION_DIRECTORY>/<dbOid>/<relNumber>
 * then `_fsm`, `_vm` or `_init` for the non-main forks, then `.<segno>` for segments >= 1.
 */
import { join, sep } from 'node:path';
import type { RelFileLocator } from '../relfile.js';
import { DEFAULTTABLESPACE_OID, FORK_NAMES, GLOBALTABLESPACE_OID } from '../relfile.js';

/** PG_<major>_<catversion>, the per-version directory inside a tablespace. */
export const TABLESPACE_VERSION_DIRECTORY = 'PG_17_202406281';

// The names below are joined by hand, not with path.join: every component is a number or a fixed
// word (no separator, no "." or ".."), so the result is what join would give, and md builds a
// segment's name for every write and every hint (path.join's normalising was 4 MB allocated per
// checkpoint at R=1000 P=16).

/** Directory holding a relation's files, relative to the data directory. */
export function relDirRelative(loc: RelFileLocator): string {
  if (loc.spcOid === GLOBALTABLESPACE_OID) return 'global';
  if (loc.spcOid === DEFAULTTABLESPACE_OID) return `base${sep}${loc.dbOid}`;
  return `pg_tblspc${sep}${loc.spcOid}${sep}${TABLESPACE_VERSION_DIRECTORY}${sep}${loc.dbOid}`;
}

/** File name of a fork's segment, relative to the data directory. */
export function relPathRelative(loc: RelFileLocator, fork: number, segno = 0): string {
  const forkSuffix = fork === 0 ? '' : `_${FORK_NAMES[fork] ?? String(fork)}`;
  const segSuffix = segno === 0 ? '' : `.${segno}`;
  return `${relDirRelative(loc)}${sep}${loc.relNumber}${forkSuffix}${segSuffix}`;
}

/** `dataDir` normalised and ending in a separator: `dataDirPrefix(d) + relPathRelative(..)` is relPath(d, ..). */
export function dataDirPrefix(dataDir: string): string {
  const d = join(dataDir);
  return d.endsWith(sep) ? d : d + sep;
}

export function relPath(dataDir: string, loc: RelFileLocator, fork: number, segno = 0): string {
  return join(dataDir, relPathRelative(loc, fork, segno));
}
