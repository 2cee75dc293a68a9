/**
 * CRC-32C (Castagnoli), the one checksum of lamstore: page checksums, volume superblocks and
 * catalog. @node-rs/crc32 computes it natively with SSE4.2/ARMv8 CRC instructions (the bench's
 * table-driven `crc32cTable`, bench/crc32c-table.ts, shows what that buys).
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
