/**
 * A byte-at-a-time table CRC-32C (Castagnoli) in TypeScript, for one purpose: the bench's
 * comparison with the native `crc32c` the engine uses (engine/checksum.ts), which shows what the
 * CPU's CRC instructions buy. It lives in bench/ because nothing else may use it: the engine has
 * one checksum implementation.
 */
/** 0x82f63b78 is the Castagnoli polynomial 0x1EDC6F41 bit-reversed, as this LSB-first loop needs. */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `bytes`, continuing from `previous`; equal to the engine's `crc32c` for every input. */
export function crc32cTable(bytes: Uint8Array, previous = 0): number {
  let c = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
