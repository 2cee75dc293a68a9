/**
 * Goal: `lamstore create`: strict sizes (every value of reliability-anchors
 * 8 (d)'s list is bad usage, exit 2, nothing created), refusal of an existing file unless
 * --force, a progress bar with bytes/s on a terminal and one summary line otherwise, and no
 * partial file after an error or a stop signal: SIGINT (Ctrl-C, exit 130), SIGTERM (143),
 * SIGHUP (129), as the audit's part 10 asks.
 * Method: spawn the built bin in a temp dir; the terminal case runs it under `script(1)`, which
 * gives it a pseudo-terminal; the signal cases send the signal once the file appears.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers/index.js';
import { hashFile } from './helpers/volume.js';
import { BIN, builtBinMissing, expectRefusal, lamstore } from './helpers/cli.js';

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

describe('lamstore create', () => {
  it('creates a volume with one summary line when stdout is not a terminal; inspect and check accept it', async () => {
    const dir = await tempDir();
    const made = await lamstore(['create', 'new.lam', '--size', '1MiB', '--block-size', '4096'], dir);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toBe('');
    expect(made.stdout).toMatch(/^created new\.lam: 1\.0 MiB \(1048576 bytes, 256 blocks of 4096\) in [\d.]+ s, [\d.]+ [KMG]?i?B\/s\n$/);
    expect((await stat(join(dir, 'new.lam'))).size).toBe(1024 * 1024);
    const [inspect, check] = await Promise.all([lamstore(['inspect', 'new.lam', '--json'], dir), lamstore(['check', 'new.lam', '--pages'], dir)]);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ blockSizeBytes: 4096, volumeSizeBytes: 1048576, forkCount: 0 });
    expect(check.code).toBe(0);
    // Units k/M/G/T mean the same as KiB/MiB/GiB/TiB; the default block size is 8192.
    const k = await lamstore(['create', 'k.lam', '--size', '512k'], dir);
    expect(k.stdout).toContain('(524288 bytes, 64 blocks of 8192)');
  });

  it('refuses an existing file unless --force (bytes unchanged), --force replaces it, a directory is never replaced', async () => {
    const dir = await tempDir();
    expect((await lamstore(['create', 'v.lam', '--size', '1MiB'], dir)).code).toBe(0);
    await writeFile(join(dir, 'other.txt'), 'not a volume');
    await mkdir(join(dir, 'adir'));
    const before = await hashFile(join(dir, 'v.lam'));
    const [again, other, adir, adirForce] = await Promise.all([
      lamstore(['create', 'v.lam', '--size', '2MiB'], dir),
      lamstore(['create', 'other.txt', '--size', '1MiB'], dir),
      lamstore(['create', 'adir', '--size', '1MiB'], dir),
      lamstore(['create', 'adir', '--size', '1MiB', '--force'], dir),
    ]);
    expectRefusal(again, 1, 'v.lam', /already exists \(use --force to replace it\)/);
    expectRefusal(other, 1, 'other.txt', /already exists/);
    expectRefusal(adir, 1, 'adir', /is a directory/);
    expectRefusal(adirForce, 1, 'adir', /is a directory/);
    expect(await hashFile(join(dir, 'v.lam'))).toBe(before);
    const forced = await lamstore(['create', 'v.lam', '--size', '2MiB', '--force'], dir);
    expect(forced.code, forced.stderr).toBe(0);
    expect((await stat(join(dir, 'v.lam'))).size).toBe(2 * 1024 * 1024);
    expect((await stat(join(dir, 'adir'))).isDirectory()).toBe(true);
  });

  it("sizes '', '-1', '-0', '0', '1.5', 'NaN', 'Infinity', '1e309', '0x10', '12abc', ' 12 ', '10XB', above 2^53 and too small are bad usage (exit 2); nothing is created", async () => {
    const dir = await tempDir();
    const bad: [string, RegExp][] = [
      ['', /--size '' is not a size/],
      ['-1', /--size '-1' is not a size/],
      ['-0', /is not a size/],
      ['0', /--size '0' must be greater than zero/],
      ['1.5', /is not a size/],
      ['NaN', /is not a size/],
      ['Infinity', /unknown unit 'Infinity'|is not a size/],
      ['1e309', /unknown unit|is not a size/],
      ['0x10', /unknown unit|is not a size/],
      ['12abc', /unknown unit 'abc'/],
      [' 12 ', /is not a size/],
      ['10XB', /unknown unit 'XB'/],
      ['9007199254740993', /too large/],
      ['4KiB', /volume size 4096 is outside/],
      ['65537', /volume size 65537 is not a multiple of the block size 8192/],
      ['2TiB', /is outside/],
    ];
    const runs = await Promise.all(bad.map(([size], i) => lamstore(['create', `v${i}.lam`, '--size', size], dir)));
    runs.forEach((r, i) => expectRefusal(r, 2, `v${i}.lam`, bad[i]![1]));
    const blockSizes = await Promise.all(['1000', '65536', '0', 'x'].map((bs) => lamstore(['create', 'b.lam', '--size', '1MiB', '--block-size', bs], dir)));
    for (const r of blockSizes) expectRefusal(r, 2, 'b.lam', /block size|--block-size/);
    const missing = await lamstore(['create', 'm.lam'], dir);
    expectRefusal(missing, 2, 'm.lam', /--size <size>' is required/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a creation that fails (directory missing) exits 1 naming the file and leaves nothing', async () => {
    const dir = await tempDir();
    const r = await lamstore(['create', 'no/such/dir/v.lam', '--size', '1MiB'], dir);
    expectRefusal(r, 1, 'no/such/dir/v.lam', /ENOENT/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('on a terminal, a progress bar shows bytes/s while zero-filling', async () => {
    const dir = await tempDir();
    // script(1) runs the command on a pseudo-terminal and copies what it draws to our pipe.
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} create tty.lam --size 64MiB`;
    const { stdout } = await promisify(execFile)('script', ['-qec', cmd, '/dev/null'], { cwd: dir, timeout: 30_000 });
    expect(stdout).toMatch(/zero-filling \[[=-]+\] +\d+% [\d.]+ [KMG]?i?B\/64\.0 MiB [\d.]+ [KMG]?i?B\/s/);
    expect(stdout).toMatch(/created tty\.lam: 64\.0 MiB/);
    expect((await stat(join(dir, 'tty.lam'))).size).toBe(64 * 1024 * 1024);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const)('%s during the zero-fill removes the partial file and exits %i with one line', async (signal, exitCode) => {
    const dir = await tempDir();
    const path = join(dir, 'big.lam');
    // 1 TiB (sparse until written): the zero-fill cannot finish before the signal arrives.
    const child = spawn(process.execPath, [BIN, 'create', 'big.lam', '--size', '1TiB', '--block-size', '4096'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('close', (code, sig) => done({ code, signal: sig })));
    // Wait for the first progress: the file exists once the zero-fill started.
    for (let i = 0; i < 2000 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 10));
    expect(existsSync(path)).toBe(true);
    child.kill(signal);
    const { code, signal: killedBy } = await exited;
    // Handled, not killed: Node's default for these signals ends the process with no cleanup.
    expect(killedBy).toBeNull();
    expectRefusal({ code, signal: null, stdout, stderr }, exitCode, 'big.lam', new RegExp(`interrupted \\(${signal}\\); the partial file was removed`));
    expect(existsSync(path)).toBe(false);
    expect(await readdir(dir)).toEqual([]);
  });
});
