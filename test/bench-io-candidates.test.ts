/**
 * Goal: `bench/io-candidates.ts` (the I/O candidates side by side, BENCHMARKS.md) parses its
 * flags strictly, plans each shape's calls as documented (every page written exactly once, no
 * pwritev over IOV_MAX, A syncs every file and the others one), reports every candidate for
 * every shape, and leaves no temporary files behind, also when stopped by SIGINT or SIGTERM.
 * Method: the plan module in process (P1-P3 of io-candidates-plan.ts); the built script
 * (dist/, built here if missing) spawned on 8 pages and one run in a temp dir, then the dir
 * listed. Timings are never asserted.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../cmdline/args.js';
import {
  FILE_SIZE_A,
  PAGE_SIZE,
  SHAPES,
  candidates,
  parseIoCandidatesArgs,
  planShape,
  rotate,
  vectorPieces,
  volumeBytes,
  type ShapeFiles,
} from '../bench/io-candidates-plan.js';
import { tempDir } from './helpers/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const script = join(root, 'dist', 'bench', 'io-candidates.js');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runScript(args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

beforeAll(() => {
  if (!existsSync(script)) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});

describe('io-candidates flags (P1)', () => {
  it('defaults, both value forms, --json', () => {
    expect(parseIoCandidatesArgs([])).toEqual({ dir: null, json: false, runs: 5, pages: 1000, child: null, help: false });
    expect(parseIoCandidatesArgs(['--dir', '/x', '--json', '--runs=3', '--pages', '10'])).toEqual({ dir: '/x', json: true, runs: 3, pages: 10, child: null, help: false });
    expect(parseIoCandidatesArgs(['--child', 'uv16', '--dir', '/w']).child).toBe('uv16');
    expect(parseIoCandidatesArgs(['--child', 'uring', '--dir', '/w']).child).toBe('uring');
    expect(parseIoCandidatesArgs(['-h']).help).toBe(true);
  });

  it.each([
    [['--rounds', '3'], /unknown option '--rounds'/],
    [['extra'], /unexpected argument 'extra'/],
    [['--dir'], /'--dir' needs a value/],
    [['--dir', '--json'], /'--dir' needs a value/],
    [['--dir='], /'--dir' needs a directory/],
    [['--runs', '0'], /--runs '0'/],
    [['--runs', '2.5'], /--runs '2.5'/],
    [['--runs', '101'], /--runs '101'/],
    [['--pages', '1e3'], /--pages '1e3'/],
    [['--pages', '20000'], /--pages '20000'/],
    [['--json', '--json'], /'--json' given twice/],
    [['--json=yes'], /'--json' takes no value/],
    [['--child', 'uv4'], /not a child kind/],
  ])('%j is refused', (argv, message) => {
    expect(() => parseIoCandidatesArgs(argv)).toThrow(UsageError);
    expect(() => parseIoCandidatesArgs(argv)).toThrow(message);
  });
});

describe('io-candidates plan (P2, P3)', () => {
  const files: ShapeFiles = { fdsA: Array.from({ length: 10 }, (_, i) => 100 + i), fdB: 7, fdC: 8 };

  it('every shape writes each page exactly once; vectored pieces stay within IOV_MAX', () => {
    for (const iovMax of [1, 3, 4, 1024]) {
      for (const shape of SHAPES) {
        const plan = planShape(shape, files, 10, iovMax, 2);
        const pages = plan.write.flatMap((w) => Array.from({ length: w.pageCount }, (_, k) => w.firstPage + k));
        expect(pages.sort((a, b) => a - b), `${shape} iovMax ${iovMax}`).toEqual(Array.from({ length: 10 }, (_, i) => i));
        for (const w of plan.write) expect(w.pageCount).toBeLessThanOrEqual(shape === 'C' ? iovMax : 1);
      }
    }
    expect(vectorPieces(1000, 1024)).toEqual([{ firstPage: 0, pageCount: 1000 }]);
    expect(vectorPieces(2049, 1024)).toEqual([
      { firstPage: 0, pageCount: 1024 },
      { firstPage: 1024, pageCount: 1024 },
      { firstPage: 2048, pageCount: 1 },
    ]);
    expect(() => vectorPieces(10, 0)).toThrow(RangeError);
  });

  it('A: one page per file inside its 64 KiB, moving with the run, every file fsynced; B, C, C1: one fdatasync', () => {
    for (const run of [0, 1, 7, 8]) {
      const a = planShape('A', files, 10, 1024, run);
      expect(a.write.map((w) => w.fd)).toEqual(files.fdsA);
      for (const w of a.write) {
        expect(w.offset % PAGE_SIZE).toBe(0);
        expect(w.offset + PAGE_SIZE).toBeLessThanOrEqual(FILE_SIZE_A);
      }
      expect(a.syncOp).toBe('fsync');
      expect(a.sync.map((s) => s.fd)).toEqual(files.fdsA);
    }
    expect(planShape('A', files, 10, 1024, 0).write[0]!.offset).not.toBe(planShape('A', files, 10, 1024, 1).write[0]!.offset);
    const b = planShape('B', files, 10, 1024, 0);
    expect(b.write.map((w) => w.offset)).toEqual(Array.from({ length: 10 }, (_, i) => i * 65536));
    for (const shape of ['B', 'C', 'C1'] as const) {
      const p = planShape(shape, files, 10, 1024, 0);
      expect(p.syncOp).toBe('fdatasync');
      expect(p.sync.map((s) => s.fd)).toEqual([shape === 'B' ? 7 : 8]);
    }
    expect(planShape('C', files, 10, 1024, 0).write).toEqual([{ fd: 8, offset: 0, firstPage: 0, pageCount: 10 }]);
    expect(volumeBytes(1000)).toBe(64 * 2 ** 20);
    expect(volumeBytes(2000)).toBe(2000 * 65536);
  });

  it('candidates: the six groups of the issue and io_uring, unique ids; rotation keeps every one', () => {
    const list = candidates();
    expect(new Set(list.map((c) => c.id)).size).toBe(list.length);
    expect([...new Set(list.map((c) => c.group))]).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(list[0]).toMatchObject({ id: 'async-1', kind: 'async', inFlight: 1 });
    for (let r = 0; r < 5; r++) expect([...rotate(list, r)].sort((p, q) => p.id.localeCompare(q.id))).toEqual([...list].sort((p, q) => p.id.localeCompare(q.id)));
    expect(rotate([1, 2, 3], 1)).toEqual([2, 3, 1]);
  });
});

describe('io-candidates script', () => {
  it('--json on 8 pages: every candidate for every shape, ratios to (1), temp files removed', async () => {
    const dir = await tempDir('lamstore-io-candidates-test-');
    const run = await runScript(['--json', '--runs', '1', '--pages', '8', '--dir', dir]);
    expect(run.stderr).not.toMatch(/Error|\n\s+at /);
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.formatVersion).toBe(1);
    expect(out.options).toMatchObject({ dir, runs: 1, pages: 8, warmUpRuns: 1 });
    expect(out.iovMax.value).toBeGreaterThan(0);
    const ids: string[] = out.candidates.map((c: { id: string }) => c.id);
    // koffi loads here (it is a dependency), so every candidate runs.
    expect(out.koffi.available).toBe(true);
    expect(ids).toEqual(candidates().map((c) => c.id));
    expect(out.results).toHaveLength(ids.length * SHAPES.length);
    // Each child ran with its one libuv setting changed (CHILD_ENV), and said so.
    expect(out.children.map((c: { runtime: string }) => c.runtime)).toEqual(['uv16', 'uring']);
    expect(out.children[0].env).toMatchObject({ uvThreadpoolSize: '16', uvUseIoUring: '0' });
    expect(out.children[1].env).toMatchObject({ uvThreadpoolSize: '4', uvUseIoUring: '1' });
    for (const r of out.results) {
      expect(r.samples).toHaveLength(1);
      for (const f of ['writeMs', 'syncMs', 'totalMs', 'stallMs']) expect(typeof r[f].median).toBe('number');
      expect(typeof r.ratioToAwaitedOneByOne.total).toBe('number');
      if (r.candidate === 'async-1') expect(r.ratioToAwaitedOneByOne.total).toBe(1);
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s after the warm-up stops the run, removes the files and exits %i', async (signal, exitCode) => {
    const dir = await tempDir('lamstore-io-candidates-test-');
    let sent = false;
    const run = await runScript(['--json', '--runs', '100', '--pages', '8', '--dir', dir], (stderr, child) => {
      if (!sent && /warm-up run done/.test(stderr)) sent = child.kill(signal);
    });
    expect(sent, run.stderr).toBe(true);
    expect(run.signal).toBeNull();
    expect(run.code, run.stderr).toBe(exitCode);
    expect(run.stderr).toMatch(new RegExp(`io-candidates: interrupted \\(${signal}\\); temporary files removed`));
    expect(JSON.parse(run.stdout).error.code).toBe('INTERRUPTED');
    expect(await readdir(dir)).toEqual([]);
  });

  it('a bad flag: exit 2 with one line and the usage, before any file is made', async () => {
    const dir = await tempDir('lamstore-io-candidates-test-');
    const run = await runScript(['--json', '--pages', 'many', '--dir', dir]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^io-candidates: --pages 'many' must be a positive whole number\nusage:/);
    expect(JSON.parse(run.stdout).error.code).toBe('USAGE');
    const missing = await runScript(['--dir', join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--dir '.*nope': ENOENT/);
    expect(await readdir(dir)).toEqual([]);
  });
});
