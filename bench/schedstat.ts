/**
 * A thread's scheduler counters from Linux's /proc/self/task/<tid>/schedstat: time on a CPU,
 * time runnable but waiting for one (the run queue), and how many times it was scheduled. The
 * bench reads them beside its timings (matrix.ts M8, checkpoint-profile.ts); they are not data
 * files, so they are read with node:fs and never go through FileIO's counts.
 */
import { readFileSync } from 'node:fs';

export interface ThreadTimes {
  /** ns on a CPU, ns waiting on a run queue, times scheduled. */
  cpu: number;
  wait: number;
  slices: number;
}

/** Thread `tid`'s counters; throws where there is no such file (not Linux, no /proc). */
export function schedstat(tid: number): ThreadTimes {
  return parse(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8'));
}

/**
 * The calling thread's counters (Linux's /proc/thread-self: the main thread's or a worker's), or
 * null where they cannot be read.
 */
export function threadSchedstat(): ThreadTimes | null {
  if (process.platform !== 'linux') return null;
  try {
    return parse(readFileSync('/proc/thread-self/schedstat', 'utf8'));
  } catch {
    return null; // no /proc (a container without it): the figures are left out, nothing else changes
  }
}

function parse(text: string): ThreadTimes {
  const f = text.trim().split(/\s+/);
  return { cpu: Number(f[0]), wait: Number(f[1]), slices: Number(f[2]) };
}
