/**
 * FileTag: the identity of "one file that may need syncing or unlinking" (PostgreSQL sync.h).
 *
 * The pending-ops table and the request queue key tags by one canonical 24-byte encoding:
 *
 *   offset size  field
 *        0    2  handler    int16 (NONE = -1 encodes as 0xFFFF)
 *        2    2  forkNum    int16 (InvalidForkNumber -1 for a database filter tag)
 *        4    4  spcOid     uint32
 *        8    4  dbOid      uint32
 *       12    4  relNumber  uint32
 *       16    4  segno      uint32 (lamstore's segment numbers fit in 32 bits)
 *       20    4  zero padding
 *
 * all little-endian. PostgreSQL hashes the raw struct bytes, so a tag built without zeroing its
 * padding would not coalesce with an equal one; here only the encoder writes those bytes and
 * always writes zeros, so equal logical tags always coalesce (behaviour 5).
 */
import { ErrorCode, LamstoreError } from '../errors.js';
import type { RelFileLocator } from '../relfile.js';
import { isUint32 } from '../relfile.js';

export interface FileTag {
  handler: number;
  forkNum: number;
  rlocator: RelFileLocator;
  segno: number;
}

export const FILE_TAG_BYTES = 24;

const INT16_MIN = -0x8000;
const INT16_MAX = 0x7fff;

function isInt16(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= INT16_MIN && n <= INT16_MAX;
}

/** Validate a tag given by a caller; returns a fresh, canonical copy. */
export function checkFileTag(tag: unknown): FileTag {
  const t = tag as Partial<FileTag> | null;
  if (typeof t !== 'object' || t === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'file tag must be an object { handler, forkNum, rlocator, segno }');
  if (!isInt16(t.handler)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `file tag handler must be an int16, got ${String(t.handler)}`);
  if (!isInt16(t.forkNum)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `file tag forkNum must be an int16, got ${String(t.forkNum)}`);
  const l = t.rlocator as Partial<RelFileLocator> | undefined;
  if (typeof l !== 'object' || l === null) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, 'file tag rlocator must be an object');
  for (const k of ['spcOid', 'dbOid', 'relNumber'] as const) {
    if (!isUint32(l[k])) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `file tag rlocator.${k} must be a uint32, got ${String(l[k])}`);
  }
  if (!isUint32(t.segno)) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `file tag segno must be a uint32, got ${String(t.segno)}`);
  return {
    handler: t.handler,
    forkNum: t.forkNum,
    rlocator: { spcOid: l.spcOid!, dbOid: l.dbOid!, relNumber: l.relNumber! },
    segno: t.segno,
  };
}

/** The canonical 24 bytes of a tag (zero padding). */
export function encodeFileTag(tag: FileTag, out: Buffer = Buffer.alloc(FILE_TAG_BYTES)): Buffer {
  out.fill(0, 0, FILE_TAG_BYTES);
  out.writeInt16LE(tag.handler, 0);
  out.writeInt16LE(tag.forkNum, 2);
  out.writeUInt32LE(tag.rlocator.spcOid, 4);
  out.writeUInt32LE(tag.rlocator.dbOid, 8);
  out.writeUInt32LE(tag.rlocator.relNumber, 12);
  out.writeUInt32LE(tag.segno, 16);
  return out;
}

/** Read a tag from 24 bytes (the padding is ignored, as a canonical decoder must). */
export function decodeFileTag(bytes: Uint8Array): FileTag {
  if (bytes.length < FILE_TAG_BYTES) throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `a file tag is ${FILE_TAG_BYTES} bytes, got ${bytes.length}`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, FILE_TAG_BYTES);
  return {
    handler: b.readInt16LE(0),
    forkNum: b.readInt16LE(2),
    rlocator: { spcOid: b.readUInt32LE(4), dbOid: b.readUInt32LE(8), relNumber: b.readUInt32LE(12) },
    segno: b.readUInt32LE(16),
  };
}

const scratch = Buffer.alloc(FILE_TAG_BYTES);

/**
 * The map key of a tag: its canonical bytes as a latin1 string (one char per byte). Built in
 * JavaScript for a tag whose fields fit (every tag lamstore makes): every write's SYNC request
 * makes one, and going through a Buffer cost twice as much. A field that does not fit takes the
 * Buffer's path, which refuses it as before.
 */
export function fileTagKey(tag: FileTag): string {
  const l = tag.rlocator;
  const h = tag.handler;
  const f = tag.forkNum;
  const a = l.spcOid;
  const b = l.dbOid;
  const c = l.relNumber;
  const s = tag.segno;
  if ((h << 16) >> 16 !== h || (f << 16) >> 16 !== f || a >>> 0 !== a || b >>> 0 !== b || c >>> 0 !== c || s >>> 0 !== s) return encodeFileTag(tag, scratch).toString('latin1');
  // prettier-ignore
  return String.fromCharCode(
    h & 0xff, (h >>> 8) & 0xff, f & 0xff, (f >>> 8) & 0xff,
    a & 0xff, (a >>> 8) & 0xff, (a >>> 16) & 0xff, a >>> 24,
    b & 0xff, (b >>> 8) & 0xff, (b >>> 16) & 0xff, b >>> 24,
    c & 0xff, (c >>> 8) & 0xff, (c >>> 16) & 0xff, c >>> 24,
    s & 0xff, (s >>> 8) & 0xff, (s >>> 16) & 0xff, s >>> 24,
    0, 0, 0, 0,
  );
}

/** A raw 24-byte image as a key, padding included (what PostgreSQL's HASH_BLOBS does). */
export function rawTagKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, FILE_TAG_BYTES).toString('latin1');
}

export function describeTag(tag: FileTag): string {
  const l = tag.rlocator;
  return `tag(handler=${tag.handler} fork=${tag.forkNum} rel=${l.spcOid}/${l.dbOid}/${l.relNumber} seg=${tag.segno})`;
}
