/**
 * The bench's `postgres` row: the same checkpoint shape (R tables, P dirty heap pages in each)
 * on a real PostgreSQL server, timed by the server itself (its log_checkpoints line).
 *
 * A throwaway cluster in the bench's temporary directory: initdb (no sync: nothing of it needs
 * to survive), then `postgres` as a child process, Unix socket only, configured for the
 * measurement: fsync on, log_checkpoints on, checkpoint_timeout 1 day and max_wal_size 64 GB
 * (no checkpoint but ours), no autovacuum, no background writer (bgwriter_lru_maxpages 0: only
 * the checkpoint writes dirty buffers), shared_buffers large enough to hold every dirty page,
 * data checksums on (lamstore checksums every page too). SQL goes through `psql` (spawned; no
 * client library dependency). The server's stderr is its log, read here line by line.
 *
 * Invariants:
 *  G1 The server is always stopped and its files removed: `stop()` on success, error and
 *     interrupt (fast shutdown, then immediate, then SIGKILL), and `stopAllServersSync()` for an
 *     exit handler when the process must stop at once. Only pids this module started are
 *     signalled.
 *  G2 Run as root, initdb and postgres run as an unprivileged user (`postgres` if it exists,
 *     else `nobody`) through setpriv or runuser; the cluster directory is theirs and the bench
 *     directory gets search permission (0711) so they can reach it. psql runs as we do.
 *  G3 Every table has exactly P_max heap pages (checked after setup): fillfactor 10 leaves room
 *     for each update to stay on its page (HOT), and rows per page are probed, not assumed.
 *  G4 A round dirties exactly one tuple's page in each of pages 0..P-1 of tables 0..R-1, reading
 *     no other page (TID range and TID scans: a sequential scan could prune, and so dirty,
 *     pages left prunable by an earlier cell), then CHECKPOINT; the server must report at least
 *     R*P buffers written (M1 of bench/matrix.ts, as far as the server lets us see).
 *  G5 Nothing is assumed about where binaries are beyond PATH and Debian's
 *     /usr/lib/postgresql/<major>/bin; `findPostgres` answers null when there are none.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { RealIO } from '../engine/index.js';
import { removeTree } from '../engine/testing.js';
import { parseCheckpointLine, type PgCheckpointLine } from './postgres-log.js';
import { nowMs } from './stats.js';

export interface PgInstall {
  /** Directory holding initdb and postgres. */
  binDir: string;
  initdb: string;
  postgres: string;
  psql: string;
  /** `postgres --version`, e.g. "15.18". */
  version: string;
}

export interface FindPostgresOptions {
  /** PATH to search (default process.env.PATH). */
  pathEnv?: string;
  /** Where Debian puts each major version's bin/ (default /usr/lib/postgresql). */
  libDir?: string;
}

export const DEBIAN_LIB_DIR = '/usr/lib/postgresql';

async function isFile(path: string): Promise<boolean> {
  // Discovery only: a PATH entry we may not look into (EACCES, ENOTDIR) has no binaries for us,
  // just as a missing one; the run itself never depends on this answer being an error.
  const st = await new RealIO().stat(path).catch(() => null);
  return st?.kind === 'file';
}

function versionOf(binary: string): string | null {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  if (r.status !== 0) return null;
  return /\(PostgreSQL\)\s+(\S+)/.exec(r.stdout)?.[1] ?? null;
}

/** The server binaries (G5): PATH first, then the newest /usr/lib/postgresql/<major>/bin. */
export async function findPostgres(options: FindPostgresOptions = {}): Promise<PgInstall | null> {
  const pathDirs = (options.pathEnv ?? process.env.PATH ?? '').split(':').filter((d) => d !== '');
  const libDir = options.libDir ?? DEBIAN_LIB_DIR;
  const debian: string[] = [];
  // No /usr/lib/postgresql (or one we cannot list) means no Debian-packaged server.
  const majors = await new RealIO().readdir(libDir).catch(() => [] as string[]);
  for (const m of majors.filter((n) => /^\d+(\.\d+)?$/.test(n)).sort((a, b) => Number(b) - Number(a))) debian.push(join(libDir, m, 'bin'));
  for (const dir of [...pathDirs, ...debian]) {
    const initdb = join(dir, 'initdb');
    const postgres = join(dir, 'postgres');
    if (!(await isFile(initdb)) || !(await isFile(postgres))) continue;
    const version = versionOf(postgres);
    if (version === null || versionOf(initdb) === null) continue;
    // psql beside the server if it is there, else Debian's for the same major version, else
    // any on PATH or in the Debian directories.
    const major = version.split('.')[0]!;
    let psql: string | null = null;
    for (const d of [dir, join(libDir, major, 'bin'), ...pathDirs, ...debian]) {
      if ((await isFile(join(d, 'psql'))) && versionOf(join(d, 'psql')) !== null) {
        psql = join(d, 'psql');
        break;
      }
    }
    if (psql === null) continue;
    return { binDir: dir, initdb, postgres, psql, version };
  }
  return null;
}

/** Where findPostgres looks, for messages. */
export function searchedWhere(options: FindPostgresOptions = {}): string {
  return `PATH and ${options.libDir ?? DEBIAN_LIB_DIR}/*/bin`;
}

interface RunAs {
  user: string;
  uid: number;
  gid: number;
  /** Command prefix that runs the rest as `user`. */
  prefix: string[];
}

function idOf(user: string, flag: '-u' | '-g'): number | null {
  const r = spawnSync('id', [flag, user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return r.status === 0 ? Number(r.stdout.trim()) : null;
}

function has(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** G2: null when not root (run as ourselves). */
function unprivileged(): RunAs | null {
  if (process.getuid?.() !== 0) return null;
  for (const user of ['postgres', 'nobody']) {
    const uid = idOf(user, '-u');
    const gid = idOf(user, '-g');
    if (uid === null || gid === null || uid === 0) continue;
    // setpriv execs the command itself, so the child we signal is the server; runuser stays
    // in between (it forwards SIGINT/SIGTERM/SIGQUIT).
    if (has('setpriv')) return { user, uid, gid, prefix: ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--'] };
    if (has('runuser')) return { user, uid, gid, prefix: ['runuser', '-u', user, '--'] };
    throw new Error('running as root: PostgreSQL refuses root and neither setpriv nor runuser is available to run it as another user');
  }
  throw new Error('running as root: PostgreSQL refuses root and there is no postgres or nobody user to run it as');
}

function run(cmd: string, args: string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${what} failed: ${lastLine(r.stderr || r.stdout || String(r.error ?? r.status))}`);
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n').filter((l) => l.trim() !== '');
  return lines[lines.length - 1]?.trim() ?? '(no output)';
}

/** Servers started by this module and not yet seen to exit (G1). */
const live = new Set<ChildProcess>();

/** For exit handlers (nothing asynchronous runs any more): immediate shutdown of every server we started. */
export function stopAllServersSync(): void {
  for (const child of live) {
    try {
      // SIGQUIT: immediate shutdown; the postmaster takes its children with it.
      child.kill('SIGQUIT');
    } catch {
      // Already gone: nothing to stop.
    }
  }
  live.clear();
}

export interface PostgresRowOptions {
  /** An empty directory for the cluster (inside the bench's temporary directory). */
  dir: string;
  /** The bench's temporary root: given search permission when the server runs as another user (G2). */
  root: string;
  relationsMax: number;
  pagesMax: number;
  blockSize: number;
  checkAbort?: () => void;
}

export interface PgRoundResult {
  line: PgCheckpointLine;
  /** CHECKPOINT as psql's \timing saw it (client round trip). */
  clientMs: number;
}

/** Tables per transaction at setup and update: each holds a lock per table until commit. */
const TABLES_PER_TRANSACTION = 500;
const PORT = 5432;
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 60_000;
const LOG_LINE_TIMEOUT_MS = 30_000;

export class PostgresRow {
  readonly install: PgInstall;
  readonly user: string | null;
  readonly #o: PostgresRowOptions;
  #server: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #log: string[] = [];
  #partial = '';
  #waiters: (() => void)[] = [];

  readonly #runAs: RunAs | null;

  private constructor(install: PgInstall, options: PostgresRowOptions, runAs: RunAs | null) {
    this.install = install;
    this.#o = options;
    this.user = runAs?.user ?? null;
    this.#runAs = runAs;
  }

  get #dataDir(): string {
    return join(this.#o.dir, 'data');
  }

  /** initdb, start, R_max tables of P_max pages, a first checkpoint. Stops the server if any step fails (G1). */
  static async start(install: PgInstall, options: PostgresRowOptions): Promise<PostgresRow> {
    if (options.blockSize !== 8192) throw new Error(`the postgres row needs 8192-byte pages (PostgreSQL's default BLCKSZ), not ${options.blockSize}`);
    const row = new PostgresRow(install, options, unprivileged());
    try {
      await row.#initdb();
      await row.#start();
      await row.#setupTables();
    } catch (err) {
      await row.stop();
      throw err;
    }
    return row;
  }

  async #initdb(): Promise<void> {
    const io = new RealIO();
    await io.mkdir(this.#o.dir);
    const as = this.#runAs;
    if (as) {
      // The root and every directory between it and the cluster must be searchable by the user.
      for (let d = dirname(this.#o.dir); d.startsWith(this.#o.root); d = dirname(d)) {
        run('chmod', ['0711', d], `chmod of ${d}`);
        if (d === this.#o.root || d === dirname(d)) break;
      }
      run('chown', [`${as.uid}:${as.gid}`, this.#o.dir], `chown of ${this.#o.dir} to ${as.user}`);
      run('chmod', ['0700', this.#o.dir], `chmod of ${this.#o.dir}`);
      // The directories above the bench's root are the user's (--dir): not ours to open up.
      const probe = spawnSync(as.prefix[0]!, [...as.prefix.slice(1), 'test', '-w', this.#o.dir], { stdio: 'ignore' });
      if (probe.status !== 0) {
        throw new Error(`the server runs as user ${as.user}, which cannot reach ${this.#o.dir} (give the directories above it search permission, or choose another --dir)`);
      }
    }
    const args = ['-D', this.#dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C', '--data-checksums'];
    await this.#spawnToEnd([...(as?.prefix ?? []), this.install.initdb, ...args], 'initdb');
  }

  #spawnToEnd(argv: string[], what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { cwd: this.#o.dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', (e) => reject(new Error(`${what}: ${e.message}`)));
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${what} failed (exit ${code}): ${lastLine(err || out)}`))));
    });
  }

  async #start(): Promise<void> {
    const pages = this.#o.relationsMax * this.#o.pagesMax;
    // Every dirty page, the catalogs and some slack, and never below the default 128 MB.
    const sharedBuffersKB = Math.max(128 * 1024, (pages + 8192) * 8);
    const settings: Record<string, string> = {
      listen_addresses: '',
      unix_socket_directories: this.#o.dir,
      port: String(PORT),
      fsync: 'on',
      log_checkpoints: 'on',
      checkpoint_timeout: '1d',
      max_wal_size: '64GB',
      autovacuum: 'off',
      bgwriter_lru_maxpages: '0',
      shared_buffers: `${sharedBuffersKB}kB`,
      max_connections: '10',
      max_locks_per_transaction: String(Math.max(64, TABLES_PER_TRANSACTION)),
      logging_collector: 'off',
      log_destination: 'stderr',
    };
    const args = ['-D', this.#dataDir];
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
    const argv = [...(this.#runAs?.prefix ?? []), this.install.postgres, ...args];
    const child = spawn(argv[0]!, argv.slice(1), { cwd: this.#o.dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    this.#server = child;
    live.add(child);
    this.#exited = new Promise<void>((resolve) => {
      child.on('exit', () => {
        live.delete(child);
        this.#server = null;
        this.#wake();
        resolve();
      });
      child.on('error', () => {
        live.delete(child);
        this.#server = null;
        this.#wake();
        resolve();
      });
    });
    child.stderr!.on('data', (d: Buffer) => {
      const text = this.#partial + d.toString();
      const lines = text.split('\n');
      this.#partial = lines.pop()!;
      this.#log.push(...lines);
      this.#wake();
    });
    await this.#waitFor((l) => l.includes('database system is ready to accept connections'), START_TIMEOUT_MS, 'the server to start');
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Wait until a log line from index `from` on satisfies `pred`; returns its index. */
  async #waitFor(pred: (line: string) => boolean, timeoutMs: number, what: string, from = 0): Promise<number> {
    const deadline = nowMs() + timeoutMs;
    for (let i = from; ; ) {
      for (; i < this.#log.length; i++) if (pred(this.#log[i]!)) return i;
      if (this.#server === null) throw new Error(`postgres exited while waiting for ${what}: ${this.#lastLogLine()}`);
      const left = deadline - nowMs();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}: ${this.#lastLogLine()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  #lastLogLine(): string {
    const lines = [...this.#log, this.#partial].filter((l) => l.trim() !== '');
    return lines[lines.length - 1]?.trim() ?? '(no log output)';
  }

  /** Run SQL through psql; resolves to its stdout. */
  psql(sql: string): Promise<string> {
    const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', this.#o.dir, '-p', String(PORT), '-U', 'postgres', '-d', 'postgres', '-f', '-'];
    return new Promise((resolve, reject) => {
      const child = spawn(this.install.psql, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', PGCONNECT_TIMEOUT: '30' } });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', (e) => reject(new Error(`psql: ${e.message}`)));
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`psql failed (exit ${code}): ${lastLine(err || out)}`))));
      child.stdin.on('error', () => {
        // psql gone early: its exit code and stderr say why (the close handler reports it).
      });
      child.stdin.end(sql);
    });
  }

  /** G3: every table b_0..b_{R-1} with exactly P_max pages. */
  async #setupTables(): Promise<void> {
    const { relationsMax: R, pagesMax: P } = this.#o;
    const bs = (await this.psql('SHOW block_size;')).trim();
    if (bs !== '8192') throw new Error(`the server's block_size is ${bs}, the bench's pages are 8192 bytes`);
    // Rows of one int per page at fillfactor 10: ask the server rather than compute it.
    const perPage = Number(
      (
        await this.psql(
          'CREATE TABLE probe (a int) WITH (fillfactor = 10); INSERT INTO probe SELECT generate_series(1, 1000);\n' +
            "SELECT count(*) FROM probe WHERE ctid < '(1,0)'::tid; DROP TABLE probe;",
        )
      ).trim(),
    );
    if (!Number.isInteger(perPage) || perPage < 1) throw new Error(`could not find how many rows fit a page (got '${perPage}')`);
    for (let first = 0; first < R; first += TABLES_PER_TRANSACTION) {
      this.#o.checkAbort?.();
      const last = Math.min(R, first + TABLES_PER_TRANSACTION) - 1;
      await this.psql(
        `DO $$ BEGIN FOR i IN ${first}..${last} LOOP ` +
          `EXECUTE format('CREATE TABLE %I (a int) WITH (fillfactor = 10)', 'b_' || i); ` +
          `EXECUTE format('INSERT INTO %I SELECT generate_series(1, ${perPage * P})', 'b_' || i); ` +
          `END LOOP; END $$;`,
      );
    }
    const wrong = (
      await this.psql(`SELECT count(*) FROM pg_class WHERE relname ~ '^b_[0-9]+$' AND relkind = 'r' AND pg_relation_size(oid) <> ${P * 8192};`)
    ).trim();
    if (wrong !== '0') throw new Error(`${wrong} of the ${R} tables do not have exactly ${P} pages (rows per page probed as ${perPage})`);
    await this.psql('CHECKPOINT;');
  }

  /** G4: one round of cell (R, P). */
  async round(R: number, P: number): Promise<PgRoundResult> {
    for (let first = 0; first < R; first += TABLES_PER_TRANSACTION) {
      const last = Math.min(R, first + TABLES_PER_TRANSACTION) - 1;
      // The lowest live tuple of each page below P, found by a TID range scan, updated through
      // a TID scan: no page at or above P is read, so none is pruned or dirtied.
      await this.psql(
        `DO $$ BEGIN FOR i IN ${first}..${last} LOOP ` +
          `EXECUTE format('UPDATE %1$I SET a = a + 1 WHERE ctid = ANY (ARRAY(SELECT min(ctid) FROM %1$I WHERE ctid < ''(${P},0)''::tid GROUP BY (ctid::text::point)[0]))', 'b_' || i); ` +
          `END LOOP; END $$;`,
      );
    }
    const from = this.#log.length;
    const out = await this.psql('\\timing on\nCHECKPOINT;\n');
    const client = /Time: ([\d.]+) ms/.exec(out);
    if (!client) throw new Error(`psql \\timing printed no time for CHECKPOINT: ${lastLine(out)}`);
    // The server logs the line before CHECKPOINT returns; the pipe may still be delivering it.
    const at = await this.#waitFor((l) => parseCheckpointLine(l) !== null, LOG_LINE_TIMEOUT_MS, 'the checkpoint complete log line', from);
    const line = parseCheckpointLine(this.#log[at]!)!;
    if (line.buffersWritten < R * P) {
      throw new Error(`postgres wrote ${line.buffersWritten} buffers at the checkpoint, expected at least R*P = ${R * P} (the updates did not dirty one page each)`);
    }
    return { line, clientMs: Number(client[1]) };
  }

  /** G1: fast shutdown, then immediate, then SIGKILL; then remove the cluster. Never throws for a server already gone. */
  async stop(): Promise<void> {
    const child = this.#server;
    if (child) {
      const waitExit = (ms: number) => Promise.race([this.#exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
      for (const [signal, ms] of [['SIGINT', STOP_TIMEOUT_MS], ['SIGQUIT', 10_000], ['SIGKILL', 10_000]] as const) {
        try {
          child.kill(signal);
        } catch {
          // Gone between the check and the signal.
        }
        if (await waitExit(ms)) break;
      }
    }
    await removeTree(this.#o.dir);
  }
}
