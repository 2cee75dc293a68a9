/**
 * Summaries of repeated measurements. The bench reports median, min and max of every timing
 * (never a mean: one slow fsync in five would drag it), and ratios of medians.
 *
 * Invariants:
 *  S1 `summarize` of a non-empty list gives min <= median <= max; of an empty list, all NaN
 *     (JSON prints it as null), so a missing row is visible rather than a zero.
 *  S2 `ratio` is NaN when either side is missing or the divisor is 0: no Infinity in reports.
 */
import { assert } from '../engine/index.js';

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) return { median: NaN, min: NaN, max: NaN };
  const out = { median: median(values), min: Math.min(...values), max: Math.max(...values) };
  assert(out.min <= out.median && out.median <= out.max, 'summary keeps min <= median <= max (S1)');
  return out;
}

export function ratio(numerator: number, denominator: number): number {
  if (!Number.isFinite(numerator) || !Number.isFinite(denominator) || denominator === 0) return NaN;
  return numerator / denominator;
}

/** Milliseconds since an arbitrary origin, sub-millisecond. */
export function nowMs(): number {
  return performance.now();
}

/** Round for JSON: timings to microseconds, so the output stays readable. */
export function roundMs(ms: number): number {
  return Number.isFinite(ms) ? Math.round(ms * 1000) / 1000 : ms;
}
