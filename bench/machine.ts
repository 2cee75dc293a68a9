/**
 * The machine a bench ran on: what a reader needs to judge the figures.
 *
 *  - fsType: the file system of the bench directory, from `df --output=fstype` (GNU), else
 *    `stat -f -c %T` (which names ext4 "ext2/ext3"), else "unknown". Child processes, not
 *    node:fs: file access stays behind FileIO.
 *  - fdatasync latency: one 8 KiB overwrite of an already allocated page followed by fdatasync,
 *    timed around the fdatasync only, median of `samples` (the cost one volume checkpoint pays
 *    at least once). The file is created, preallocated and synced first, so no sample pays for
 *    allocation or a size change.
 */
import { execFileSync } from 'node:child_process';
import { cpus, totalmem, platform, release } from 'node:os';
import { join } from 'node:path';
import { RealIO, type FileIO } from '../engine/index.js';
import { nowMs, roundMs, summarize, type Summary } from './stats.js';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  platform: string;
  kernel: string;
  node: string;
  dir: string;
  fsType: string;
  fdatasync8KiBMs: Summary & { samples: number };
}

function tryRun(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    return null;
  }
}

export function fileSystemType(dir: string): string {
  const df = tryRun('df', ['--output=fstype', dir]);
  const fromDf = df?.split('\n')[1]?.trim();
  if (fromDf) return fromDf;
  return tryRun('stat', ['-f', '-c', '%T', dir]) || 'unknown';
}

/** Median (min, max) of `samples` timed fdatasyncs after an 8 KiB overwrite, in a scratch file under `dir`. */
export async function fdatasyncLatency(dir: string, samples = 100, io: FileIO = new RealIO()): Promise<Summary & { samples: number }> {
  const path = join(dir, 'fdatasync-latency.dat');
  const page = new Uint8Array(8192);
  const h = await io.open(path, { create: true });
  const times: number[] = [];
  try {
    await io.pwrite(h, page, 0);
    await io.fsync(h);
    for (let i = 0; i < samples; i++) {
      page[0] = i & 0xff;
      await io.pwrite(h, page, 0);
      const t0 = nowMs();
      await io.fdatasync(h);
      times.push(nowMs() - t0);
    }
  } finally {
    await io.close(h);
  }
  await io.unlink(path);
  const s = summarize(times);
  return { median: roundMs(s.median), min: roundMs(s.min), max: roundMs(s.max), samples };
}

/** `dir` is reported (and its file system); the latency scratch file goes in `scratchDir` on the same file system. */
export async function machineInfo(dir: string, scratchDir: string, latencySamples = 100): Promise<MachineInfo> {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    memoryBytes: totalmem(),
    platform: platform(),
    kernel: release(),
    node: process.version,
    dir,
    fsType: fileSystemType(dir),
    fdatasync8KiBMs: await fdatasyncLatency(scratchDir, latencySamples),
  };
}
