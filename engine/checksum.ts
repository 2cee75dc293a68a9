/**
 * CRC-32C (Castagnoli), the one checksum of lamstore: page checksums, volume superblocks and
 * catalog. @node-rs/crc32 computes it natively with SSE4.2/ARMv8 CRC instructions; the
 * table-driven `crc32cTable` below exists only so the bench can show what that buys.
 */
import { createRequire } from 'node:module';

interface Crc32Module {
  crc32c(input: Uint8Array, initialState?: number | null): number;
}
const native = createRequire(import.meta.url)('@node-rs/crc32') as Crc32Module;

/** CRC-32C of `bytes`, continuing from `previous` (the CRC of what came before). */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  return native.crc32c(bytes, previous) >>> 0;
}

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** Byte-at-a-time table CRC-32C in TypeScript (bench comparison only). */
export function crc32cTable(bytes: Uint8Array, previous = 0): number {
  let c = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
