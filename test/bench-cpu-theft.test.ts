/**
 * Goal: `bench/cpu-theft.ts` (BENCHMARKS.md, "What the machine takes") runs its loads and
 * reports a line for each, removes its files (also when stopped by SIGINT), and refuses a bad
 * command line before it makes any. Its figures are the machine's and are not asserted.
 * Method: the built script (dist/, built here if missing) spawned for one second a load on 20
 * files of 2 pages in a temp dir.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { RealIO } from '../engine/index.js';
import { tempDir } from './helpers/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const script = join(root, 'dist', 'bench', 'cpu-theft.js');

function runScript(args: string[], onStdout?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(() => {
  if (!existsSync(script)) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});

describe.runIf(process.platform === 'linux')('cpu-theft script', () => {
  it('one second per load: a line for each load, the temporary files removed', async () => {
    const dir = await tempDir('lamstore-cpu-theft-test-');
    const run = await runScript(['--seconds', '1', '--files', '20', '--pages', '2', '--dir', dir]);
    expect(run.code, run.stderr).toBe(0);
    const loads = run.stdout.split('\n').filter((l) => /^(idle|fsync|hints) /.test(l)).map((l) => l.split(' ')[0]);
    expect(loads).toEqual(new RealIO().writebackSupported ? ['idle', 'fsync', 'hints'] : ['idle', 'fsync']);
    expect(run.stdout).toMatch(/^idle +rounds +0; gaps charged to the spinner: /m);
    expect(run.stdout).toMatch(/^fsync +rounds +[1-9]\d*;/m);
    expect(await readdir(dir)).toEqual([]);
  });

  it('SIGINT during a load stops the run, removes the files and exits 130', async () => {
    const dir = await tempDir('lamstore-cpu-theft-test-');
    let sent = false;
    const run = await runScript(['--seconds', '5', '--files', '20', '--pages', '2', '--dir', dir], (stdout, child) => {
      if (!sent && /^idle /m.test(stdout)) sent = child.kill('SIGINT'); // the fsync load has begun
    });
    expect(sent).toBe(true);
    expect(run.code, run.stderr).toBe(130);
    expect(run.stderr).toBe('cpu-theft: interrupted (SIGINT); temporary files removed\n');
    expect(await readdir(dir)).toEqual([]);
  });

  it('a bad flag or value: exit 2 with one line, nothing made', async () => {
    const dir = await tempDir('lamstore-cpu-theft-test-');
    const bad = await runScript(['--pages', 'many', '--dir', dir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("cpu-theft: --pages 'many' must be a positive whole number\n");
    const unknown = await runScript(['--files', '3', '--runs', '2']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^cpu-theft: unknown flag '--runs'/);
    expect(await readdir(dir)).toEqual([]);
  });
});
