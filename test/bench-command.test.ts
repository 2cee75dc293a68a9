/**
 * Goal: `lamstore bench` reports every raw number in JSON with the shape the docs
 * promise, its sync counts match the design (md: one fsync per dirty segment file, so >= R per
 * checkpoint; volume: at most 2 fdatasyncs and no fsync on the volume per checkpoint, its one
 * fsync the control file's), it leaves no temporary files behind (also when stopped by SIGINT,
 * SIGTERM or SIGHUP, exit 128 + the signal), and it refuses bad flags, and an --svg it could not
 * write, with exit 2 and one line before measuring; the aged sequential read is in the JSON with
 * its two checks.
 * Method: spawn the built CLI (dist/, built here if missing) on a small matrix in a temp dir and
 * read its stdout, stderr and exit code; then list the --dir. Timings are never asserted.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/index.js';
import { lamstore, type RunResult } from './helpers/cli.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The built `lamstore` run from the repository root (helpers/cli.ts). */
const runCli = (args: string[], onSpawn?: (child: ChildProcess) => void): Promise<RunResult> => lamstore(args, root, {}, onSpawn);

/** Whether a file named `name` is somewhere under `dir`. */
async function findFile(dir: string, name: string): Promise<boolean> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.some((e) => e === name || e.endsWith(`/${name}`));
}

beforeAll(() => {
  // The suite's check builds dist first (tsc -p tsconfig.build.json); build here only if a
  // lone run of this file finds nothing built.
  if (!existsSync(join(root, 'dist', 'bench', 'command.js'))) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});

describe('lamstore bench', () => {
  it('--json: every row, count and ratio of a one-cell run; md fsyncs >= R, volume <= 2 fdatasyncs and only the control file fsync; temp files removed', async () => {
    const dir = await tempDir('lamstore-bench-test-');
    const R = 10;
    // --no-postgres: the postgres row has its own tests (bench-postgres.test.ts).
    const run = await runCli(['bench', '--quick', '--json', '--no-postgres', '--relations', String(R), '--pages', '1', '--rounds', '1', '--warmup', '1', '--dir', dir]);
    expect(run.stderr).not.toMatch(/Error|at .*\.js:\d+/);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.options.cellWarmupRounds).toBe(1);
    expect(out.options.isolateEngines).toBe(true); // each engine row on a thread of its own (engine-row.ts E1)

    expect(out.tool).toBe('lamstore bench');
    expect(out.formatVersion).toBe(1);
    expect(out.options).toMatchObject({ relations: [R], pages: [1], rounds: 1, dir });
    expect(typeof out.machine.fsType).toBe('string');
    expect(out.machine.node).toBe(process.version);
    expect(out.machine.cpus).toBeGreaterThan(0);
    expect(out.machine.fdatasync8KiBMs.samples).toBe(100);
    expect(typeof out.machine.fdatasync8KiBMs.median).toBe('number');

    expect(out.cells).toHaveLength(1);
    const cell = out.cells[0];
    expect(cell).toMatchObject({ relations: R, pages: 1, dirtyPages: R, dirtyBytes: R * 8192 });
    for (const kind of ['md', 'mdConcurrent', 'volume', 'rawSegments', 'rawVolume', 'rawExtent']) {
      const row = cell.rows[kind];
      expect(row.kind).toBe(kind);
      expect(row.samples).toHaveLength(1);
      for (const f of ['writeMs', 'syncMs', 'totalMs']) {
        expect(Object.keys(row[f]).sort()).toEqual(['max', 'median', 'min']);
        expect(typeof row.samples[0][f]).toBe('number');
      }
      expect(row.samples[0].bytesWritten).toBeGreaterThanOrEqual(R * 8192);
      expect(row.samples[0].rangesWritten).toBeGreaterThan(0);
    }
    for (const k of ['mdToVolumeSync', 'mdToVolumeTotal', 'rawSegmentsToExtentSync', 'syncRatioAgreement', 'volumeToFloorTotal', 'volumeToCowFloorTotal', 'cowFloorToFloorTotal', 'mdToRawSegmentsTotal', 'mdConcurrentToRawSegmentsTotal', 'volumeToRawVolumeWrite']) {
      expect(cell.ratios).toHaveProperty(k);
    }
    // The floor row times the copy-on-write commit's second fdatasync apart from its own.
    expect(typeof cell.rows.rawExtent.samples[0].switchMs).toBe('number');
    expect(cell.rows.rawExtent.samples[0].fdatasyncCalls).toBe(1);

    // The counts the design fixes, per checkpoint.
    const md = cell.rows.md.samples[0];
    const vol = cell.rows.volume.samples[0];
    expect(md.buffersWritten).toBe(R);
    expect(md.fsyncCalls).toBeGreaterThanOrEqual(R);
    expect(md.io.fsync).toBeGreaterThanOrEqual(R);
    expect(md.tagsDispatched.md).toBe(R);
    // The same counts with the sync phase's calls in flight: concurrency changes no count.
    const mdc = cell.rows.mdConcurrent.samples[0];
    expect(mdc.buffersWritten).toBe(R);
    expect(mdc.fsyncCalls).toBe(md.fsyncCalls);
    expect(mdc.tagsDispatched.md).toBe(R);
    expect(vol.buffersWritten).toBe(R);
    expect(vol.fdatasyncCalls).toBeGreaterThanOrEqual(1);
    expect(vol.fdatasyncCalls).toBeLessThanOrEqual(2);
    expect(vol.fsyncCalls).toBe(1); // the control file's record of the checkpoint, not the volume
    expect(vol.io.fsync).toBe(1);
    expect(vol.io.fsyncDir).toBe(0);
    expect(vol.tagsDispatched.volume).toBe(R);
    // Part 6: the longest event-loop stall of each engine checkpoint, per sample and per row.
    for (const kind of ['md', 'mdConcurrent', 'volume']) {
      expect(typeof cell.rows[kind].samples[0].maxStallMs).toBe('number');
      expect(cell.rows[kind].samples[0].maxStallMs).toBeGreaterThanOrEqual(0);
      expect(cell.rows[kind].longestStallMs).toBe(cell.rows[kind].samples[0].maxStallMs);
      // Beside it, the longest GC pause of the same window (0 when there was none).
      expect(cell.rows[kind].samples[0].maxGcPauseMs).toBeGreaterThanOrEqual(0);
      expect(cell.rows[kind].longestGcPauseMs).toBe(cell.rows[kind].samples[0].maxGcPauseMs);
      // And, on Linux, the main thread's run-queue wait over the checkpoint.
      if (process.platform === 'linux') {
        expect(cell.rows[kind].samples[0].runQueueWaitMs).toBeGreaterThanOrEqual(0);
        expect(cell.rows[kind].mostRunQueueWaitMs).toBe(cell.rows[kind].samples[0].runQueueWaitMs);
        expect(cell.rows[kind].samples[0].maxBusyMs).toBeGreaterThanOrEqual(0);
        expect(cell.rows[kind].longestBusyMs).toBe(cell.rows[kind].samples[0].maxBusyMs);
      }
    }
    expect(cell.rows.rawExtent.samples[0].maxStallMs).toBeUndefined();
    expect(cell.rows.rawExtent.samples[0].maxGcPauseMs).toBeUndefined();
    expect(out.checks.filter((c: { name: string }) => c.name === 'checkpointStallAtMost20ms')).toHaveLength(1);
    expect(out.checks.filter((c: { name: string }) => c.name === 'checkpointBusyStretchAtMost20ms')).toHaveLength(process.platform === 'linux' ? 1 : 0);
    expect(cell.rows.rawSegments.samples[0].fsyncCalls).toBe(R);
    expect(cell.rows.rawExtent.samples[0].fdatasyncCalls).toBe(1);
    expect(cell.rows.rawVolume.samples[0].fdatasyncCalls).toBe(1);
    // The raw volume row writes where the volume row's last checkpoint put the pages: copy-on-write
    // wrote the R pages as one stream (one pwritev), not at the R places setup gave them.
    expect(cell.rows.rawVolume.samples[0].rangesWritten).toBe(1);
    expect(out.checks.filter((c: { kind: string; pass: boolean }) => c.kind === 'count' && !c.pass)).toEqual([]);

    for (const storage of ['md', 'volume']) {
      const p = out.pagePath[storage];
      expect(p.storage).toBe(storage);
      for (const f of ['hitReadsPerS', 'hitReadIntosPerS', 'hitReadIntosPerCpuS', 'copyFloorPerS', 'copyFloorPerCpuS', 'missReadsPerS', 'poolWritesPerS', 'evictionWritesPerS', 'rawPreadsPerS', 'rawPwritesPerS']) expect(p[f]).toBeGreaterThan(0);
      expect(Object.keys(p.ratios).sort()).toEqual(['evictionWriteToRawPwrite', 'hitReadIntoToCopyFloor', 'hitReadIntoToHitRead', 'hitReadToRawPread', 'missReadToRawPread', 'poolWriteToRawPwrite']);
    }
    expect(out.crc32c.nativeMBps).toBeGreaterThan(0);
    expect(out.crc32c.tableMBps).toBeGreaterThan(0);
    // The aged sequential read at --quick's size (its own suite: bench-aged-read.test.ts).
    expect(out.agedRead).toMatchObject({ forks: 16, pages: 64, blockSize: 8192, rounds: 3, updates: 256 });
    for (const set of ['fresh', 'aged']) {
      expect(out.agedRead[set].samples).toHaveLength(3);
      expect(Object.keys(out.agedRead[set].readMBps).sort()).toEqual(['max', 'median', 'min']);
    }
    expect(out.agedRead.fresh.extentsPerFork).toEqual({ mean: 1, max: 1 });
    expect(out.agedRead.agingExtentsMax).toBeLessThanOrEqual(16);
    expect(typeof out.agedRead.cache.dropped).toBe('boolean');
    expect(Object.keys(out.agedRead.ratios).sort()).toEqual(['agedToFreshRead', 'agedToFreshWarmRead']);
    expect(out.checks.filter((c: { name: string }) => c.name.startsWith('aged')).map((c: { name: string; kind: string }) => [c.name, c.kind])).toEqual([
      ['agedExtentsAtMost16', 'count'],
      ['agedReadAtLeast0.7xFresh', 'timing'],
    ]);

    expect(await readdir(dir)).toEqual([]);
  });

  it('--one-thread runs the engine rows on the main thread, and --verbose forwards every engine row\'s checkpoint lines either way', async () => {
    for (const oneThread of [false, true]) {
      const dir = await tempDir('lamstore-bench-test-');
      const run = await runCli(['bench', '--quick', '--json', '--no-postgres', '--relations', '10', '--pages', '1', '--rounds', '1', '--warmup', '0', '--verbose', '--dir', dir, ...(oneThread ? ['--one-thread'] : [])]);
      expect(run.code, run.stderr).toBe(0);
      const out = JSON.parse(run.stdout);
      expect(out.options.isolateEngines).toBe(!oneThread);
      expect(out.cells[0].rows.volume.samples[0].buffersWritten).toBe(10);
      // Setup's checkpoint and the round's, of each engine row, wherever it ran.
      for (const row of ['md', 'mdConcurrent', 'volume']) {
        expect(run.stderr).toMatch(new RegExp(`^\\[${row}\\] checkpoint complete: wrote 10 buffers`, 'm'));
      }
      expect(await readdir(dir)).toEqual([]);
    }
  });

  it('--svg writes a chart with axes, legend and one panel per P', async () => {
    const dir = await tempDir('lamstore-bench-test-');
    const svg = join(await tempDir('lamstore-bench-svg-'), 'chart.svg');
    const run = await runCli(['bench', '--quick', '--no-postgres', '--relations', '5,10', '--pages', '1,2', '--rounds', '1', '--dir', dir, '--svg', svg]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('md/volume sync');
    expect(run.stdout).toContain('Longest event-loop stall during the checkpoint');
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(svg, 'utf8');
    expect(text.startsWith('<svg')).toBe(true);
    expect(text).toContain('log scale');
    expect(text).toContain('P = 1 dirty page per relation');
    expect(text).toContain('P = 2 dirty pages per relation');
    expect(text).toContain('floor: same bytes');
    expect(await readdir(dir)).toEqual([]);
  });

  it.each([
    [['--relations', '10,x'], /^lamstore: bench: --relations 'x' must be a positive whole number/],
    [['--relations', ''], /^lamstore: bench: --relations/],
    [['--pages', '0'], /^lamstore: bench: --pages '0'/],
    [['--rounds', '1.5'], /^lamstore: bench: --rounds '1.5'/],
    [['--warmup', '-1'], /^lamstore: bench: --warmup '-1' must be a whole number in 0\.\.1000/],
    [['--warmup', '1001'], /^lamstore: bench: --warmup '1001' must be a whole number in 0\.\.1000/],
    [['--relations', '100000', '--pages', '16'], /^lamstore: bench: --relations x --pages/],
    [['--dir', '/nonexistent/lamstore-bench'], /^lamstore: bench: --dir '\/nonexistent\/lamstore-bench' does not exist/],
    [['--bogus'], /^lamstore: bench: unknown option '--bogus'/],
    [['--rounds'], /^lamstore: bench: option '--rounds <n>' argument missing/],
    [['extra'], /^lamstore: bench: too many arguments/],
  ])('refuses %j: exit 2, one line on stderr, no stack, nothing on stdout', async (args, message) => {
    const run = await runCli(['bench', ...args]);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.stdout).toBe('');
  });

  it('--svg it could not write (missing directory, a directory, a file as directory) is refused before measuring: exit 2, one line naming it', async () => {
    const dir = await tempDir('lamstore-bench-test-');
    const out = await tempDir('lamstore-bench-svg-');
    await mkdir(join(out, 'adir'));
    await writeFile(join(out, 'afile'), 'x');
    const cases: [string, RegExp][] = [
      [join(out, 'no', 'such', 'chart.svg'), /directory '.*\/no\/such' does not exist/],
      [join(out, 'adir'), /is a directory; give the path of a file to write/],
      [join(out, 'afile', 'chart.svg'), /'.*\/afile' is not a directory/],
    ];
    for (const [svg, problem] of cases) {
      for (const json of [false, true]) {
        const run = await runCli(['bench', '--quick', '--relations', '10', '--pages', '1', '--rounds', '1', '--dir', dir, '--svg', svg, ...(json ? ['--json'] : [])]);
        expect(run.code, run.stderr).toBe(2);
        // One line and nothing else on stderr: no progress line, so no cell was measured.
        const lines = run.stderr.trimEnd().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]!.startsWith(`lamstore: bench: --svg '${svg}'`), lines[0]).toBe(true);
        expect(lines[0]).toMatch(problem);
        if (json) expect(JSON.parse(run.stdout)).toEqual({ error: { code: 'USAGE', message: expect.stringContaining(svg) } });
        else expect(run.stdout).toBe('');
        expect(await readdir(dir)).toEqual([]);
      }
    }
    expect((await readdir(out)).sort()).toEqual(['adir', 'afile']);
  });

  it('with --json a refused flag also prints a JSON error document on stdout', async () => {
    const run = await runCli(['bench', '--json', '--rounds', '0']);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(run.stdout)).toEqual({ error: { code: 'USAGE', message: expect.stringContaining("--rounds '0'") } });
  });

  /** Run a bench that takes long enough, and send `signals` once its temporary directory exists. */
  async function interrupted(signals: NodeJS.Signals[], extra: string[] = []): Promise<{ run: RunResult; dir: string }> {
    const dir = await tempDir('lamstore-bench-test-');
    let poll: ReturnType<typeof setInterval> | undefined;
    const run = await runCli(['bench', '--quick', '--json', '--no-postgres', '--relations', '200', '--pages', '4', '--rounds', '50', '--dir', dir, ...extra], (child) => {
      // Interrupt once the run works inside its temporary directory: its handlers are installed
      // and it knows the directory (a second signal can remove it at once).
      poll = setInterval(() => {
        void readdir(dir, { recursive: true }).then((names) => {
          if (names.length > 1 && poll) {
            clearInterval(poll);
            poll = undefined;
            for (const s of signals) child.kill(s);
          }
        });
      }, 20);
    });
    if (poll) clearInterval(poll);
    return { run, dir };
  }

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const)('%s stops the run, removes its temporary files and exits %i', async (signal, exitCode) => {
    const { run, dir } = await interrupted([signal]);
    // Handled, not killed: Node's default for SIGTERM and SIGHUP ends the process with no cleanup.
    expect(run.signal).toBeNull();
    expect(run.code).toBe(exitCode);
    expect(run.stderr).toMatch(new RegExp(`lamstore: bench: interrupted \\(${signal}\\); temporary files removed`));
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(JSON.parse(run.stdout).error.code).toBe('INTERRUPTED');
    expect(await readdir(dir)).toEqual([]);
  });

  it('a second stop signal removes the temporary directory at once and exits with its code', async () => {
    // Two different signals, as two of one kind may merge into one delivery. Both pending, the
    // kernel delivers the lower number first, so either may be the second.
    const { run, dir } = await interrupted(['SIGTERM', 'SIGHUP']);
    expect(run.signal).toBeNull();
    const m = /lamstore: bench: interrupted again \((SIGTERM|SIGHUP)\); temporary files removed without finishing the current step/.exec(run.stderr);
    expect(m, run.stderr).not.toBeNull();
    expect(run.code).toBe(m![1] === 'SIGTERM' ? 143 : 129);
    expect(JSON.parse(run.stdout).error.code).toBe('INTERRUPTED');
    expect(await readdir(dir)).toEqual([]);
  });

  it('SIGTERM during the volume zero-fill of a large setup stops it there: nothing left in --dir', async () => {
    const dir = await tempDir('lamstore-bench-test-');
    // R = 20000 makes a 1.6 GB volume to zero-fill at setup; stop as soon as that file exists.
    let poll: ReturnType<typeof setInterval> | undefined;
    let sent = false;
    const run = await runCli(['bench', '--json', '--no-postgres', '--relations', '20000', '--pages', '1', '--rounds', '1', '--dir', dir], (child) => {
      poll = setInterval(() => {
        void findFile(dir, 'bench.lamvol').then((found) => {
          if (found && poll) {
            clearInterval(poll);
            poll = undefined;
            sent = child.kill('SIGTERM');
          }
        });
      }, 20);
    });
    if (poll) clearInterval(poll);
    expect(sent, run.stderr).toBe(true);
    expect(run.code).toBe(143);
    expect(run.stderr).toMatch(/lamstore: bench: interrupted \(SIGTERM\); temporary files removed/);
    expect(await readdir(dir)).toEqual([]);
  });

});
