/**
 * Goal: bad usage of `lamstore` (reliability-anchors 8 (d) CLI arguments) is
 * exit 2 with exactly one stderr line and no usage dump or stack trace; `--json` failures are
 * one valid JSON document on stdout; every command has --help with an example; --version
 * prints the package version; LAMSTORE_DEBUG=1 adds the stack trace.
 * Method: spawn the built bin in a temp dir, runs in parallel.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { tempDir } from './helpers/index.js';
import { builtBinMissing, expectRefusal, lamstore } from './helpers/cli.js';

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

describe('lamstore usage errors', () => {
  it('unknown subcommand, unknown flag, missing argument, excess argument: exit 2, one line', async () => {
    const dir = await tempDir();
    const [sub, flag, flagCreate, missingArg, excess, none, emptyPath] = await Promise.all([
      lamstore(['frobnicate', 'x.lam'], dir),
      lamstore(['inspect', 'x.lam', '--bogus'], dir),
      lamstore(['create', 'x.lam', '--size', '1MiB', '--sise', '2'], dir),
      lamstore(['check'], dir),
      lamstore(['inspect', 'a.lam', 'b.lam'], dir),
      lamstore([], dir),
      lamstore(['inspect', ''], dir),
    ]);
    expectRefusal(emptyPath, 2, null, /^lamstore: the volume path is empty$/);
    expectRefusal(sub, 2, null, /^lamstore: unknown command 'frobnicate' \(run lamstore --help\)$/);
    expectRefusal(flag, 2, 'x.lam', /unknown option '--bogus' \(run lamstore inspect --help\)$/);
    expectRefusal(flagCreate, 2, 'x.lam', /unknown option '--sise'/);
    expectRefusal(missingArg, 2, null, /missing required argument 'volume' \(run lamstore check --help\)/);
    expectRefusal(excess, 2, 'a.lam', /too many arguments/);
    // No command at all: the help, on stderr, exit 2 (as git does).
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Usage: lamstore');
    expect(none.stdout).toBe('');
  });

  it('--json commands print one valid JSON error document on stdout when they fail', async () => {
    const dir = await tempDir();
    const runs = await Promise.all([
      lamstore(['inspect', 'missing.lam', '--json'], dir),
      lamstore(['check', 'missing.lam', '--json'], dir),
      lamstore(['inspect', 'x.lam', '--json', '--bogus'], dir),
      lamstore(['check', '--json'], dir),
    ]);
    const codes = runs.map((r) => (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error.code);
    expect(codes).toEqual(['IO_ERROR', 'IO_ERROR', 'USAGE', 'USAGE']);
    expect(runs.map((r) => r.code)).toEqual([1, 2, 2, 2]);
    expect((JSON.parse(runs[0]!.stdout) as { error: { message: string } }).error.message).toBe('missing.lam: no such file or directory (ENOENT)');
    for (const r of runs) expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it("map --width '', '0', '-1', '1.5', 'abc', '5000' are bad usage", async () => {
    const dir = await tempDir();
    const runs = await Promise.all(['', '0', '-1', '1.5', 'abc', '5000'].map((w) => lamstore(['map', 'v.lam', '--width', w], dir)));
    for (const r of runs) expectRefusal(r, 2, 'v.lam', /--width/);
  });

  it('every command has --help with an example; --version prints the package version', async () => {
    const dir = await tempDir();
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
    const [top, create, inspect, check, map, version, shortVersion, helpCmd, grow] = await Promise.all([
      lamstore(['--help'], dir),
      lamstore(['create', '--help'], dir),
      lamstore(['inspect', '--help'], dir),
      lamstore(['check', '--help'], dir),
      lamstore(['map', '--help'], dir),
      lamstore(['--version'], dir),
      lamstore(['-V'], dir),
      lamstore(['help', 'check'], dir),
      lamstore(['grow', '--help'], dir),
    ]);
    for (const [r, name] of [
      [create, 'create'],
      [grow, 'grow'],
      [inspect, 'inspect'],
      [check, 'check'],
      [map, 'map'],
    ] as const) {
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: lamstore ${name} [options] <volume>`);
      expect(r.stdout).toMatch(new RegExp(`Example:\\n {2}\\$ lamstore ${name} `));
    }
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Examples:\n {2}\$ lamstore create/);
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
    expect(shortVersion.stdout).toBe(`${pkg.version}\n`);
    expect(helpCmd.stdout).toContain('Usage: lamstore check');
  });

  it('LAMSTORE_DEBUG=1 adds the stack trace after the one line', async () => {
    const dir = await tempDir();
    const r = await lamstore(['inspect', 'missing.lam'], dir, { LAMSTORE_DEBUG: '1' });
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n');
    expect(lines[0]).toBe('lamstore: missing.lam: no such file or directory (ENOENT)');
    expect(r.stderr).toContain('    at ');
  });
});
