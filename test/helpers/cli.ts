/**
 * Fixtures for the CLI suites: run the BUILT `lamstore` bin (dist/cli/main.js, as `npx lamstore`
 * runs it) in a temporary directory, build volumes with relations in this process, damage them,
 * hold one locked from another process, and check the shape of a refusal.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { expect } from 'vitest';
import { ForkNumber } from '../../engine/index.js';
import { SMALL_BS } from './engine.js';
import { openVolumeEngine, makePage, rel } from './volume.js';

export const BIN = resolve('dist/cli/main.js');
const DIST_ENGINE = resolve('dist/engine/index.js');
const DIST_VOLUME = resolve('dist/volume/index.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function builtBinMissing(): string | null {
  for (const f of [BIN, DIST_ENGINE, DIST_VOLUME]) if (!existsSync(f)) return `${f} is missing: run npx tsc -p tsconfig.build.json first (npm test does)`;
  return null;
}

/**
 * Run `lamstore <args>` in `cwd`; never rejects (the exit code is the result). `onSpawn` gets
 * the child at once (to signal it while it runs).
 */
export function lamstore(args: string[], cwd: string, env: Record<string, string> = {}, onSpawn?: (child: ChildProcess) => void): Promise<RunResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, LAMSTORE_DEBUG: '', NO_COLOR: '', FORCE_COLOR: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code, signal) => done({ code, signal, stdout, stderr }));
    onSpawn?.(child);
  });
}

/**
 * A refusal as cli/README.md describes it: the exit code, exactly one line on stderr of the form
 * `lamstore: <file>: <problem>`, and no stack trace anywhere.
 */
export function expectRefusal(r: RunResult, exitCode: number, file: string | null, problem?: RegExp): void {
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(r.code, `exit code; stderr: ${r.stderr}`).toBe(exitCode);
  expect(lines, `one stderr line: ${r.stderr}`).toHaveLength(1);
  expect(lines[0]!.startsWith(file === null ? 'lamstore: ' : `lamstore: ${file}: `), lines[0]).toBe(true);
  if (problem) expect(lines[0]).toMatch(problem);
  expect(r.stderr + r.stdout).not.toContain('    at ');
}

/**
 * A 1 MiB volume (4 KiB blocks) with three relations: 16384 main (40 blocks) + fsm (3),
 * 16385 main (12), 16386 main (5, then grown again after others so it has two extents).
 * Closed cleanly, so everything is checkpointed.
 */
export async function makeVolume(dir: string, name = 'vol.lam'): Promise<string> {
  const path = join(dir, name);
  const { engine, smgr } = await openVolumeEngine({ dataDir: join(dir, `${name}.data`), path, create: { sizeBytes: 1024 * 1024, blockSize: SMALL_BS } });
  const grow = async (relNumber: number, fork: ForkNumber, count: number) => {
    const r = rel(relNumber);
    if (!(await smgr.exists(r, fork))) await smgr.create(r, fork);
    const from = await smgr.nblocks(r, fork);
    for (let b = from; b < from + count; b++) await smgr.extend(r, fork, b, makePage(r, fork, b));
  };
  await grow(16384, ForkNumber.MAIN, 40);
  await grow(16384, ForkNumber.FSM, 3);
  await grow(16386, ForkNumber.MAIN, 5);
  await grow(16385, ForkNumber.MAIN, 12);
  await grow(16386, ForkNumber.MAIN, 30);
  await engine.checkpoint();
  await engine.close();
  return path;
}

/** Overwrite bytes at an offset (damage a volume). */
export async function poke(path: string, offset: number, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, offset);
  } finally {
    await fh.close();
  }
}

/** Flip one byte at an offset. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = new Uint8Array(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/**
 * Another process holding the volume open read-write (an Engine with the volume extension,
 * from the built package): resolves once it printed "ready". Stop it with `release()`.
 */
export async function holdVolume(path: string, dataDir: string): Promise<{ child: ChildProcess; release(): Promise<void> }> {
  const script = `
    const { Engine } = await import(${JSON.stringify(DIST_ENGINE)});
    const { volumeExtension } = await import(${JSON.stringify(DIST_VOLUME)});
    const e = await Engine.open({ dataDir: ${JSON.stringify(dataDir)}, blockSize: ${SMALL_BS}, preload: [volumeExtension({ path: ${JSON.stringify(path)} })] });
    console.log('ready');
    process.stdin.on('end', async () => { await e.close(); process.exit(0); });
    process.stdin.resume();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((ready, fail) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) ready();
    });
    child.on('error', fail);
    child.on('exit', (code) => fail(new Error(`holder exited early with ${code}`)));
  });
  return {
    child,
    release: () =>
      new Promise<void>((done) => {
        child.removeAllListeners('exit');
        child.on('exit', () => done());
        child.stdin!.end();
      }),
  };
}
