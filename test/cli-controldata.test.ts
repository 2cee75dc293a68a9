/**
 * Goal: `lamstore controldata <dataDir> [--json]` (cli/controldata.ts D1-D3) as a user meets
 * it: pg_controldata's "key: value" lines for a data directory's control file, the same in one
 * JSON document, read without a lock while an engine has the directory open, and every bad
 * directory refused with exit 1 and one stderr line naming the directory, or the control file
 * when that is what is wrong, no stack trace, the file's bytes unchanged; bad usage exit 2.
 * Method: spawn the built bin (dist/cli/main.js) in a temp dir on data directories made in this
 * process with the Engine on real files (a ManualClock for exact times), damaged with plain
 * writes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Engine, ForkNumber } from '../engine/index.js';
import { ManualClock } from '../engine/testing.js';
import { tempDir } from './helpers/index.js';
import { builtBinMissing, expectRefusal, lamstore } from './helpers/cli.js';
import { REL, pageOf } from './helpers/engine.js';

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

const T0 = Date.UTC(2026, 10, 27, 9, 30, 0);

/** `<dir>/data`: two checkpoints, multixacts, a clog truncation; closed cleanly unless `keepOpen`. */
async function makeDataDir(dir: string, keepOpen = false): Promise<Engine> {
  const clock = new ManualClock(T0);
  const engine = await Engine.open({ dataDir: join(dir, 'data'), clock });
  const rel = engine.relation(REL);
  await rel.create(ForkNumber.MAIN);
  await rel.extend(ForkNumber.MAIN, pageOf(1));
  for (let i = 1; i <= 10; i++) await engine.multixact.create([{ xid: i, status: 0 }]);
  await engine.multixact.truncate(4);
  await engine.clog.setStatus(5, 1);
  await engine.clog.setStatus(32768 * 32 + 5, 1);
  await engine.checkpoint();
  await engine.clog.truncate(32768 * 32);
  await clock.advance(60_000);
  if (!keepOpen) await engine.close(); // the shutdown checkpoint is number 2, at T0 + 60 s
  return engine;
}

function fields(stdout: string): Map<string, string> {
  return new Map(
    stdout
      .trimEnd()
      .split('\n')
      .map((l) => {
        const m = /^([^:]+):\s+(.*)$/.exec(l);
        expect(m, l).not.toBeNull();
        return [m![1]!, m![2]!] as [string, string];
      }),
  );
}

describe('lamstore controldata', () => {
  it("prints the control file as pg_controldata prints pg_control: one 'key: value' line per field", async () => {
    const dir = await tempDir();
    await makeDataDir(dir);
    const r = await lamstore(['controldata', 'data'], dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const f = fields(r.stdout);
    expect(f.get('Control file')).toBe(join('data', 'lam_control'));
    expect(f.get('Control file format version')).toBe('1');
    expect(f.get('Data directory state')).toBe('shut down');
    expect(f.get('Latest checkpoint number')).toBe('2');
    expect(f.get('Time of latest checkpoint')).toBe('2026-11-27T09:31:00.000Z');
    expect(f.get('Block size')).toBe('8192');
    expect(f.get('clog oldest page kept')).toBe(`32 (oldest xid kept ${32768 * 32})`);
    expect(f.get('commit_ts oldest page kept')).toBe('0 (oldest xid kept 0)');
    expect(f.get('NextMultiXactId')).toBe('11');
    expect(f.get('oldestMultiXid')).toBe('4');
    expect(f.get('NextMultiOffset')).toBe('11');
    expect(f.get('oldestMultiOffset')).toBe('4');
    expect(f.get('Control file slot 0')).toMatch(/^generation \d+/);
    expect(f.get('Control file slot 1')).toMatch(/^generation \d+/);
    // Values line up, as pg_controldata's do.
    const columns = new Set(r.stdout.trimEnd().split('\n').map((l) => /^[^:]+:\s+/.exec(l)![0].length));
    expect(columns.size).toBe(1);
  });

  it('--json: one document with the same fields; read without a lock while an engine has the directory open ("in production")', async () => {
    const dir = await tempDir();
    const engine = await makeDataDir(dir, true);
    try {
      const r = await lamstore(['controldata', join(dir, 'data'), '--json'], dir);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(doc).toMatchObject({
        dataDirectory: join(dir, 'data'),
        controlFile: join(dir, 'data', 'lam_control'),
        formatVersion: 1,
        state: 'in production',
        stateCode: 3,
        checkpoint: { number: 1, timeMs: T0, time: '2026-11-27T09:30:00.000Z' },
        blockSize: 8192,
        clog: { oldestPageKept: 32, oldestXidKept: 32768 * 32 },
        commitTs: { oldestPageKept: 0, oldestXidKept: 0 },
        multixact: { nextMxid: 11, oldestMxid: 4, nextOffset: 11, oldestOffset: 4 },
      });
      expect((doc.slots as unknown[]).length).toBe(2);
    } finally {
      await engine.close();
    }
  });

  it('a missing directory, a file, a directory without a control file: exit 1, one line naming the directory', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'plain'), 'x');
    await mkdir(join(dir, 'empty'));
    const [missing, plain, empty, missingJson] = await Promise.all([
      lamstore(['controldata', 'nope'], dir),
      lamstore(['controldata', 'plain'], dir),
      lamstore(['controldata', 'empty'], dir),
      lamstore(['controldata', 'nope', '--json'], dir),
    ]);
    expectRefusal(missing, 1, 'nope', /: no such file or directory \(ENOENT\)$/);
    expectRefusal(plain, 1, 'plain', /not a directory/);
    expectRefusal(empty, 1, 'empty', /no control file \(lam_control\)/);
    expectRefusal(missingJson, 1, 'nope');
    expect(JSON.parse(missingJson.stdout)).toEqual({ error: { code: 'IO_ERROR', message: 'nope: no such file or directory (ENOENT)' } });
  });

  it('a damaged control file: exit 1, one line naming the control file and what is wrong, its bytes unchanged', async () => {
    const dir = await tempDir();
    await makeDataDir(dir);
    const path = join(dir, 'data', 'lam_control');
    const bytes = await readFile(path);
    bytes[40] = bytes[40]! ^ 0xff;
    bytes[512 + 40] = bytes[512 + 40]! ^ 0xff;
    await writeFile(path, bytes);
    const [r, j] = await Promise.all([lamstore(['controldata', 'data'], dir), lamstore(['controldata', 'data', '--json'], dir)]);
    expectRefusal(r, 1, join('data', 'lam_control'), /: control file is damaged: slot 0 fails its CRC-32C, slot 1 fails its CRC-32C$/);
    expect(JSON.parse(j.stdout)).toMatchObject({ error: { code: 'DATA_CORRUPT' } });
    expect(await readFile(path)).toEqual(bytes);
    await writeFile(path, bytes.subarray(0, 100));
    expectRefusal(await lamstore(['controldata', 'data'], dir), 1, join('data', 'lam_control'), /is 100 bytes, not 1024/);
  });

  it('bad usage: no directory, an unknown flag, an empty path (exit 2); --help has an example', async () => {
    const dir = await tempDir();
    const [none, flag, empty, help] = await Promise.all([
      lamstore(['controldata'], dir),
      lamstore(['controldata', 'data', '--pages'], dir),
      lamstore(['controldata', ''], dir),
      lamstore(['controldata', '--help'], dir),
    ]);
    expectRefusal(none, 2, null, /missing required argument 'dataDir'/);
    expectRefusal(flag, 2, 'data', /unknown option '--pages'/);
    expectRefusal(empty, 2, null, /the data directory path is empty/);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: lamstore controldata [options] <dataDir>');
    expect(help.stdout).toMatch(/Example:\n {2}\$ lamstore controldata /);
  });
});
