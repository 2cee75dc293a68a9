/**
 * Page checksums (DESIGN.md section 3). Bytes 8..11 of every page belong to the engine: the
 * CRC-32C of the page with those four bytes taken as zero, XOR the block number, stored
 * little-endian. Mixing in the block number catches a page written to or read from the wrong
 * place (a misdirected write), which a plain content CRC would accept.
 *
 * An all-zero page is valid: it is what extension and preallocation leave behind.
 */
import { crc32c } from './checksum.js';

export const PAGE_CHECKSUM_OFFSET = 8;
export const PAGE_CHECKSUM_BYTES = 4;
const ZERO4 = new Uint8Array(4);

/** The checksum a page at `blockNum` must carry. */
export function computePageChecksum(page: Uint8Array, blockNum: number): number {
  let c = crc32c(page.subarray(0, PAGE_CHECKSUM_OFFSET));
  c = crc32c(ZERO4, c);
  c = crc32c(page.subarray(PAGE_CHECKSUM_OFFSET + PAGE_CHECKSUM_BYTES), c);
  return (c ^ blockNum) >>> 0;
}

function isAllZero(page: Uint8Array): boolean {
  // Compare 8 bytes at a time where the buffer is aligned; pages always are.
  if (page.byteOffset % 8 === 0 && page.length % 8 === 0) {
    const words = new BigUint64Array(page.buffer, page.byteOffset, page.length / 8);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0n) return false;
    return true;
  }
  for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

/** Store the checksum in bytes 8..11 (in place). An all-zero page is left all zero. */
export function setPageChecksum(page: Uint8Array, blockNum: number): void {
  const view = new DataView(page.buffer, page.byteOffset, page.length);
  view.setUint32(PAGE_CHECKSUM_OFFSET, 0, true);
  if (isAllZero(page)) return;
  view.setUint32(PAGE_CHECKSUM_OFFSET, computePageChecksum(page, blockNum), true);
}

/** True when the page is all zero or carries the right checksum for `blockNum`. */
export function verifyPageChecksum(page: Uint8Array, blockNum: number): boolean {
  const view = new DataView(page.buffer, page.byteOffset, page.length);
  const stored = view.getUint32(PAGE_CHECKSUM_OFFSET, true);
  if (stored === 0 && isAllZero(page)) return true;
  return stored === computePageChecksum(page, blockNum);
}
