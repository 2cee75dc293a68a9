/**
 * Goal: the bench's postgres row. Where PostgreSQL's server binaries are found, `lamstore bench
 * --postgres` measures a throwaway cluster (R tables, P dirty heap pages each, the server's own
 * checkpoint line), prints the md/postgres and postgres/volume ratios, and leaves no server
 * process and no files behind, also when stopped by SIGTERM. Where they are not, the live tests
 * are skipped and say so. On every machine: the finder answers null for empty places,
 * `--no-postgres` skips the row with one line, and a required row without binaries fails.
 * Method: spawn the built CLI (dist/, built here if missing) on a tiny matrix (R=10) in a temp
 * dir; read stdout/stderr/exit code, the --dir afterwards, and /proc for leftover servers.
 * runBench in process with a finder that finds nothing. Timings are never asserted.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { findPostgres } from '../bench/postgres.js';
import { BENCH_DEFAULTS, BENCH_QUICK, runBench } from '../bench/run.js';
import { formatReport } from '../bench/report.js';
import { renderSvg } from '../bench/svg.js';
import { tempDir } from './helpers/index.js';
import { lamstore, type RunResult } from './helpers/cli.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const install = await findPostgres();

/** The built `lamstore` run from the repository root (helpers/cli.ts). */
const runCli = (args: string[], onSpawn?: (child: ChildProcess) => void): Promise<RunResult> => lamstore(args, root, {}, onSpawn);

/** Processes whose command line mentions `dir` (a server left running there). */
async function processesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(dir)) out.push(`${pid}: ${cmd.replace(/\0/g, ' ')}`);
  }
  return out;
}

/** A temp dir the server's user can reach when the bench runs as root (mkdtemp makes it 0700). */
async function reachableTempDir(): Promise<string> {
  const dir = await tempDir('lamstore-bench-pg-');
  await chmod(dir, 0o711);
  return dir;
}

/** initdb and a server under a loaded machine take a while; the live tests get longer. */
const LIVE_TIMEOUT_MS = 240_000;

async function findFile(dir: string, name: string): Promise<string | null> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.name === name) return p;
    if (e.isDirectory()) {
      const found = await findFile(p, name);
      if (found) return found;
    }
  }
  return null;
}

beforeAll(() => {
  if (!existsSync(join(root, 'dist', 'bench', 'command.js'))) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});

describe('postgres row, live', () => {
  if (!install) {
    it.skip('skipped: no PostgreSQL server binaries (initdb, postgres, psql) on PATH or in /usr/lib/postgresql/*/bin', () => {});
    return;
  }

  it(`--postgres on PostgreSQL ${install.version}: a postgres row per cell from the server's log line, the headline ratios in the table, a chart series, no server or files left`, async () => {
    const dir = await reachableTempDir();
    const R = 10;
    const run = await runCli(['bench', '--quick', '--json', '--postgres', '--relations', String(R), '--pages', '1,2', '--rounds', '1', '--dir', dir]);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.postgres).toMatchObject({ mode: 'on', measured: true, version: install.version, binDir: install.binDir });
    expect(out.postgres.skipped).toBeUndefined();
    if (process.getuid?.() === 0) expect(['postgres', 'nobody']).toContain(out.postgres.user);
    expect(out.cells).toHaveLength(2);
    for (const cell of out.cells) {
      const P = cell.pages;
      const row = cell.rows.postgres;
      expect(row.kind).toBe('postgres');
      expect(row.samples).toHaveLength(1);
      const s = row.samples[0];
      // The server wrote at least the R*P pages the round dirtied and synced at least R files.
      expect(s.buffersWritten).toBeGreaterThanOrEqual(R * P);
      expect(s.syncFiles).toBeGreaterThanOrEqual(R);
      expect(s.postgres.line.buffersWritten).toBe(s.buffersWritten);
      for (const f of ['writeMs', 'syncMs', 'totalMs']) {
        expect(typeof s[f]).toBe('number');
        expect(s[f]).toBe(s.postgres.line[f]);
      }
      expect(s.postgres.clientMs).toBeGreaterThan(0);
      for (const k of ['mdToPostgresTotal', 'postgresToVolumeTotal', 'mdToPostgresSync', 'postgresToVolumeSync']) expect(cell.ratios).toHaveProperty(k);
      expect(cell.ratios.mdToPostgresTotal === null || typeof cell.ratios.mdToPostgresTotal === 'number').toBe(true);
    }
    // The rows rotate with the others: seven rows, positions 0..6.
    expect(Object.keys(out.cells[0].rows).sort()).toEqual(['md', 'mdConcurrent', 'postgres', 'rawExtent', 'rawSegments', 'rawVolume', 'volume']);
    expect(out.cells[0].rows.postgres.samples[0].position).toBeLessThan(7);
    // The same result as a table: md/postgres and postgres/volume in the headline, the postgres
    // line; as a chart: a postgres series.
    const report = formatReport(out);
    const headline = report.split('\n').find((l) => l.includes('md/volume sync'));
    expect(headline).toMatch(/md\/postgres total/);
    expect(headline).toMatch(/postgres\/volume total/);
    expect(report).toMatch(new RegExp(`postgres row: PostgreSQL ${install.version.replace(/\./g, '\\.')} from `));
    expect(renderSvg(out)).toContain('postgres: CHECKPOINT, its own log line');
    expect(await readdir(dir)).toEqual([]);
    expect(await processesUnder(dir)).toEqual([]);
  }, LIVE_TIMEOUT_MS);

  it('SIGTERM while the server runs: exit 143, server stopped, temporary files removed', async () => {
    const dir = await reachableTempDir();
    let poll: ReturnType<typeof setInterval> | undefined;
    const run = await runCli(['bench', '--quick', '--json', '--postgres', '--relations', '10', '--pages', '1', '--rounds', '1000', '--dir', dir], (child) => {
      // Signal once the server has written its pid file (it is up, or nearly).
      poll = setInterval(() => {
        void findFile(dir, 'postmaster.pid').then((found) => {
          if (found && poll) {
            clearInterval(poll);
            poll = undefined;
            child.kill('SIGTERM');
          }
        });
      }, 50);
    });
    if (poll) clearInterval(poll);
    expect(run.code).toBe(143);
    expect(run.stderr).toMatch(/lamstore: bench: interrupted \(SIGTERM\)/);
    expect(JSON.parse(run.stdout).error.code).toBe('INTERRUPTED');
    expect(await readdir(dir)).toEqual([]);
    expect(await processesUnder(dir)).toEqual([]);
  }, LIVE_TIMEOUT_MS);

  it('a --dir the server user cannot reach: auto skips the row with one line saying why', async () => {
    if (process.getuid?.() !== 0) return; // only root hands the server to another user
    const dir = await tempDir('lamstore-bench-pg-'); // 0700, root's
    const run = await runCli(['bench', '--quick', '--json', '--relations', '3', '--pages', '1', '--rounds', '1', '--dir', dir]);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.postgres.measured).toBe(false);
    expect(out.postgres.skipped).toMatch(/^postgres row skipped: setup failed: the server runs as user \w+, which cannot reach /);
    expect(out.cells[0].rows.postgres).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
    expect(await processesUnder(dir)).toEqual([]);
  }, LIVE_TIMEOUT_MS);
});

describe('postgres row, without a server', () => {
  it('findPostgres answers null where there are no binaries', async () => {
    const empty = await tempDir('lamstore-no-pg-');
    expect(await findPostgres({ pathEnv: empty, libDir: join(empty, 'nothing') })).toBeNull();
  });

  it('--no-postgres: no row, one line saying so', async () => {
    const dir = await tempDir('lamstore-bench-pg-');
    const run = await runCli(['bench', '--quick', '--json', '--no-postgres', '--relations', '3', '--pages', '1', '--rounds', '1', '--dir', dir]);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out.options.postgres).toBe('off');
    expect(out.postgres).toEqual({ mode: 'off', measured: false, skipped: 'postgres row off (--no-postgres)' });
    expect(out.cells[0].rows.postgres).toBeUndefined();
    expect(out.cells[0].ratios.mdToPostgresTotal).toBeNull();
    expect(await readdir(dir)).toEqual([]);
  });

  it('default (auto) with no binaries: the row is skipped with one line; required (on), the run fails naming where it looked', async () => {
    const dir = await tempDir('lamstore-bench-pg-');
    // isolateEngines false: in process, from the TypeScript sources, there is no compiled worker
    // file for the engine rows' threads (bench/engine-row.ts E1); bench-command covers both ways.
    const options = { ...BENCH_DEFAULTS, ...BENCH_QUICK, relations: [3], pages: [1], rounds: 1, dir, pagePathPages: 64, pagePathOps: 100, crcScale: 0.01, latencySamples: 3, postgres: 'auto' as const, isolateEngines: false };
    const nothing = { findPostgres: async () => null };
    const result = await runBench(options, {}, nothing);
    expect(result.postgres).toMatchObject({ mode: 'auto', measured: false });
    expect(result.postgres.skipped).toMatch(/^postgres row skipped: no PostgreSQL server binaries \(initdb, postgres, psql\) in PATH and \/usr\/lib\/postgresql\/\*\/bin$/);
    const report = formatReport(result);
    expect(report.split('\n').filter((l) => l.includes('postgres row skipped'))).toHaveLength(1);
    expect(report).not.toMatch(/md\/postgres/);
    await expect(runBench({ ...options, postgres: 'on' }, {}, nothing)).rejects.toThrow(/^--postgres: no PostgreSQL server binaries/);
    expect(await readdir(dir)).toEqual([]);
  });
});
