/**
 * Parsing of command-line values. Strict on purpose: a size that is not exactly
 * "<digits>[unit]" is refused with a message saying what is accepted, rather than guessed at
 * ('1.5', '0x10', '12abc', '1e309', ' 12 ', '-1' are all refused).
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** Bytes from "65536", "64KiB", "64k", "1 GiB" is refused (no spaces), "10XB" is refused. */
export function parseSize(text: string, option = '--size'): number {
  const m = /^(\d+)([A-Za-z]*)$/.exec(text);
  if (!m) {
    throw new UsageError(`${option} '${text}' is not a size: use a whole number of bytes, optionally with a unit (KiB, MiB, GiB, TiB or k, M, G, T), e.g. 64MiB`);
  }
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) throw new UsageError(`${option} '${text}': unknown unit '${m[2]}' (use KiB, MiB, GiB, TiB or k, M, G, T)`);
  const value = Number(m[1]) * unit;
  if (!Number.isSafeInteger(value)) throw new UsageError(`${option} '${text}' is too large`);
  if (value === 0) throw new UsageError(`${option} '${text}' must be greater than zero`);
  return value;
}

/** A positive whole number (counts, widths); the same strictness as sizes, no units. */
export function parsePositiveInt(text: string, option: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${option} '${text}' must be a positive whole number`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1 || value > max) throw new UsageError(`${option} '${text}' must be a whole number in 1..${max}`);
  return value;
}

/** A comma-separated list of positive whole numbers ("10,100,1000"). */
export function parseIntList(text: string, option: string, max = Number.MAX_SAFE_INTEGER): number[] {
  const parts = text.split(',');
  if (parts.length === 0 || parts.some((p) => p === '')) throw new UsageError(`${option} '${text}' must be a comma-separated list of whole numbers, e.g. 10,100,1000`);
  return parts.map((p) => parsePositiveInt(p, option, max));
}

/** "64.0 MiB" for people. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
