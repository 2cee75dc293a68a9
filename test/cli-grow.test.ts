/**
 * Goal: `lamstore grow <volume> --size <size>` (cli/grow.ts G1-G3, volume/grow.ts): a volume no
 * engine holds grows, `inspect` shows the new size and the new free space, `check --pages` stays
 * clean, every page reads back after a reopen and the new space takes writes; `--json` prints
 * { path, oldSizeBytes, newSizeBytes, generation }. A size not larger (shrink, same), a bad size
 * or a missing --size is bad usage (exit 2); a missing, locked or corrupt volume is exit 1; each
 * refusal is one stderr line and leaves the file byte for byte unchanged. SIGINT / SIGTERM during
 * the zero-fill stop it (exit 130 / 143) and the volume keeps its old size, bytes unchanged.
 * Method: spawn the built bin in a temp dir on volumes made in this process (helpers/cli.ts);
 * the terminal case runs under `script(1)`; file hashes before and after.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ForkNumber } from '../engine/index.js';
import { tempDir } from './helpers/index.js';
import { hashFile, makePage, openVolumeEngine, rel } from './helpers/volume.js';
import { BIN, builtBinMissing, expectRefusal, holdVolume, lamstore, makeVolume } from './helpers/cli.js';
import { SMALL_BS } from './helpers/engine.js';

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

const MiB = 1024 * 1024;

interface InspectDoc {
  volumeSizeBytes: number;
  volumeBlocks: number;
  fileSizeBytes: number;
  freeBlocks: number;
  generation: number;
  slots: { valid: boolean }[];
}

async function inspectJson(dir: string, file = 'vol.lam'): Promise<InspectDoc> {
  const r = await lamstore(['inspect', file, '--json'], dir);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as InspectDoc;
}

/** makeVolume's relations: [relNumber, fork, nblocks]. */
const CONTENT: [number, ForkNumber, number][] = [
  [16384, ForkNumber.MAIN, 40],
  [16384, ForkNumber.FSM, 3],
  [16385, ForkNumber.MAIN, 12],
  [16386, ForkNumber.MAIN, 35],
];

describe('lamstore grow', () => {
  it('grows a volume: one summary line; inspect shows the new size and free space; check --pages is clean; pages intact after a reopen and the new space takes writes', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    const before = await inspectJson(dir);
    expect(before.volumeSizeBytes).toBe(MiB);

    const r = await lamstore(['grow', 'vol.lam', '--size', '2MiB'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(new RegExp(`^grew vol\\.lam: 1\\.0 MiB -> 2\\.0 MiB \\(2097152 bytes, \\+256 blocks of 4096\\), generation ${before.generation + 1}, in [\\d.]+ s\\n$`));
    expect((await stat(path)).size).toBe(2 * MiB);

    const after = await inspectJson(dir);
    expect(after).toMatchObject({ volumeSizeBytes: 2 * MiB, volumeBlocks: 512, fileSizeBytes: 2 * MiB, freeBlocks: before.freeBlocks + 256, generation: before.generation + 1 });
    expect(after.slots.map((s) => s.valid)).toEqual([true, true]);
    const text = await lamstore(['inspect', 'vol.lam'], dir);
    expect(text.stdout).toMatch(/^volume size +2\.0 MiB \(2097152 bytes, 512 blocks\); file 2097152 bytes$/m);
    const check = await lamstore(['check', 'vol.lam', '--pages'], dir);
    expect(check.code, check.stdout).toBe(0);

    // Reopen: every page as written; then more data than the old 1 MiB could hold.
    const { engine, smgr, volume } = await openVolumeEngine({ dataDir: join(dir, 'vol.lam.data'), path });
    expect(volume.volumeSizeBytes).toBe(2 * MiB);
    const buf = new Uint8Array(SMALL_BS);
    for (const [n, fork, nblocks] of CONTENT) {
      expect(await smgr.nblocks(rel(n), fork)).toBe(nblocks);
      for (let b = 0; b < nblocks; b++) {
        await smgr.read(rel(n), fork, b, buf);
        expect(Buffer.from(buf).equals(Buffer.from(makePage(rel(n), fork, b))), `${n} fork ${fork} block ${b}`).toBe(true);
      }
    }
    const r2 = rel(16387);
    const extend100 = async (s: typeof smgr) => {
      await s.create(r2, ForkNumber.MAIN);
      for (let b = 0; b < 100; b++) await s.extend(r2, ForkNumber.MAIN, b, makePage(r2, ForkNumber.MAIN, b));
    };
    await extend100(smgr);
    await engine.close();
    // The same on a twin that did not grow: VOLUME_FULL (1 MiB cannot hold it with the V5 reserve).
    const twin = await openVolumeEngine({ dataDir: join(dir, 'twin.lam.data'), path: await makeVolume(dir, 'twin.lam') });
    await expect(extend100(twin.smgr)).rejects.toMatchObject({ code: 'VOLUME_FULL' });
    await twin.engine.close();
    const clean = await lamstore(['check', 'vol.lam', '--pages'], dir);
    expect(clean.code, clean.stdout).toBe(0);
  });

  it('--json prints { path, oldSizeBytes, newSizeBytes, generation }', async () => {
    const dir = await tempDir();
    await makeVolume(dir);
    const { generation } = await inspectJson(dir);
    const r = await lamstore(['grow', 'vol.lam', '--size', '3145728', '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ path: 'vol.lam', oldSizeBytes: MiB, newSizeBytes: 3 * MiB, generation: generation + 1 });
    expect((await inspectJson(dir)).volumeSizeBytes).toBe(3 * MiB);
  });

  it('shrinking, the same size, bad sizes and a missing --size are bad usage (exit 2, one line); the file is unchanged byte for byte', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    const hash = await hashFile(path);
    const cases: [string[], RegExp][] = [
      [['--size', '512KiB'], /--size 512KiB: new size 524288 bytes is smaller than the volume's 1048576: a volume cannot shrink/],
      [['--size', '1MiB'], /--size 1MiB: new size 1048576 bytes is the volume's size already: nothing to grow/],
      [['--size', '1048577'], /--size 1048577: volume size 1048577 is not a multiple of the block size 4096/],
      [['--size', '2TiB'], /--size 2TiB: volume size 2199023255552 is outside/],
      [['--size', '0'], /--size '0' must be greater than zero/],
      [['--size', '1.5'], /--size '1.5' is not a size/],
      [['--size', '12abc'], /unknown unit 'abc'/],
      [['--size', ''], /--size '' is not a size/],
      [[], /option '--size <size>' is required/],
    ];
    // One at a time: each grow takes the exclusive flock before it can compare sizes, so two at
    // once would see each other as the engine holding the volume.
    for (const [args, problem] of cases) expectRefusal(await lamstore(['grow', 'vol.lam', ...args], dir), 2, 'vol.lam', problem);
    const json = await lamstore(['grow', 'vol.lam', '--size', '512KiB', '--json'], dir);
    expectRefusal(json, 2, 'vol.lam', /cannot shrink/);
    expect(JSON.parse(json.stdout)).toEqual({ error: { code: 'USAGE', message: expect.stringMatching(/^vol\.lam: --size 512KiB: .*cannot shrink/) } });
    expect(await hashFile(path)).toBe(hash);
    // A bad size is refused before the file is looked at: a missing file with one is still usage.
    expectRefusal(await lamstore(['grow', 'missing.lam', '--size', 'x'], dir), 2, 'missing.lam', /is not a size/);
  });

  it('a missing file, a directory, a corrupt volume and a volume an engine holds are exit 1 (one line), unchanged', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await mkdir(join(dir, 'adir'));
    await writeFile(join(dir, 'garbage.lam'), new Uint8Array(MiB).fill(0x5a));
    const garbageHash = await hashFile(join(dir, 'garbage.lam'));
    const [missing, adir, garbage] = await Promise.all([
      lamstore(['grow', 'missing.lam', '--size', '2MiB'], dir),
      lamstore(['grow', 'adir', '--size', '2MiB'], dir),
      lamstore(['grow', 'garbage.lam', '--size', '2MiB'], dir),
    ]);
    expectRefusal(missing, 1, 'missing.lam', /no such file or directory \(ENOENT\)/);
    expectRefusal(adir, 1, 'adir', /is a directory/);
    expectRefusal(garbage, 1, 'garbage.lam', /volume is corrupt: no valid superblock/);
    expect(await hashFile(join(dir, 'garbage.lam'))).toBe(garbageHash);

    const holder = await holdVolume(path, join(dir, 'holder-data'));
    try {
      const hash = await hashFile(path);
      const locked = await lamstore(['grow', 'vol.lam', '--size', '2MiB'], dir);
      expectRefusal(locked, 1, 'vol.lam', /volume is locked by another process/);
      const lockedJson = await lamstore(['grow', 'vol.lam', '--size', '2MiB', '--json'], dir);
      expect(JSON.parse(lockedJson.stdout)).toMatchObject({ error: { code: 'VOLUME_LOCKED' } });
      expect(await hashFile(path)).toBe(hash);
      expect((await stat(path)).size).toBe(MiB);
    } finally {
      await holder.release();
    }
  });

  it('on a terminal, a progress bar shows bytes/s while zero-filling', async () => {
    const dir = await tempDir();
    await makeVolume(dir);
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} grow vol.lam --size 64MiB`;
    const { stdout } = await promisify(execFile)('script', ['-qec', cmd, '/dev/null'], { cwd: dir, timeout: 30_000 });
    expect(stdout).toMatch(/zero-filling \[[=-]+\] +\d+% [\d.]+ [KMG]?i?B\/63\.0 MiB [\d.]+ [KMG]?i?B\/s/);
    expect(stdout).toMatch(/grew vol\.lam: 1\.0 MiB -> 64\.0 MiB/);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s during the zero-fill stops it, exits %i with one line; the volume keeps its old size, bytes unchanged', async (signal, exitCode) => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    const hash = await hashFile(path);
    // To 1 TiB (sparse until written): the zero-fill cannot finish before the signal arrives.
    const child = spawn(process.execPath, [BIN, 'grow', 'vol.lam', '--size', '1TiB'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('close', (code, sig) => done({ code, signal: sig })));
    // The file is extended before the zero-fill starts.
    let extended = false;
    for (let i = 0; i < 2000 && !extended; i++) {
      extended = (await stat(path)).size > MiB;
      if (!extended) await new Promise((r) => setTimeout(r, 10));
    }
    expect(extended).toBe(true);
    child.kill(signal);
    const { code, signal: killedBy } = await exited;
    expect(killedBy).toBeNull(); // handled: Node's default would end the process with no cleanup
    expectRefusal({ code, signal: null, stdout, stderr }, exitCode, 'vol.lam', new RegExp(`interrupted \\(${signal}\\) while zero-filling; the volume keeps its old size`));
    expect((await stat(path)).size).toBe(MiB); // cut back (volume/grow.ts G4)
    expect(await hashFile(path)).toBe(hash);
    expect((await inspectJson(dir)).volumeSizeBytes).toBe(MiB);
  });
});
