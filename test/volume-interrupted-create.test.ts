/**
 * Goal (audit part 10, the library side): a volume creation that never finished, because the
 * process creating it inside Engine.open was killed, leaves a file of the full size whose two
 * superblock slots are all zero. Every later open refuses it as VOLUME_CORRUPT; the message
 * must say that the file was never completed (its creation was interrupted) and may be
 * removed, in Engine.open and in `lamstore inspect` / `check` / `map`, without changing a byte.
 * Other damage keeps its own message.
 * Method: a child process (the built package) runs Engine.open with a 1 TiB volume to create
 * and is sent SIGTERM (an embedding program installs no handler, so it dies at once) once the
 * file has its full size; then a zero-filled file of the right size made here, and a 0-byte one.
 */
import { spawn } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Engine, ErrorCode, isLamstoreError } from '../engine/index.js';
import { volumeExtension } from '../volume/index.js';
import { tempDir } from './helpers/index.js';
import { hashFile } from './helpers/volume.js';
import { builtBinMissing, expectRefusal, lamstore } from './helpers/cli.js';
import { SMALL_BS } from './helpers/engine.js';

const NEVER_COMPLETED = /the file was never completed as a volume \(both superblock slots are all zero: its creation was interrupted\); it may be removed/;

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

/** The error Engine.open with the volume extension on `path` rejects with. */
async function openError(dataDir: string, path: string, create?: { sizeBytes: number }): Promise<Error> {
  try {
    const engine = await Engine.open({ dataDir, blockSize: SMALL_BS, preload: [volumeExtension({ path, create })] });
    await engine.close();
  } catch (err) {
    return err as Error;
  }
  throw new Error(`Engine.open of ${path} succeeded`);
}

describe('a volume whose creation never completed', () => {
  it('killed (SIGTERM) while Engine.open zero-fills it: later opens, inspect and check say it was never completed and may be removed', async () => {
    const dir = await tempDir();
    const path = join(dir, 'big.lam');
    const size = 2 ** 40;
    const script = `
      const { Engine } = await import(${JSON.stringify(resolve('dist/engine/index.js'))});
      const { volumeExtension } = await import(${JSON.stringify(resolve('dist/volume/index.js'))});
      await Engine.open({ dataDir: ${JSON.stringify(join(dir, 'child-data'))}, blockSize: ${SMALL_BS},
        preload: [volumeExtension({ path: ${JSON.stringify(path)}, create: { sizeBytes: ${size}, blockSize: ${SMALL_BS} } })] });
      console.log('created');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((done) => child.on('close', (_code, signal) => done(signal)));
    // createVolumeFile sets the size before it zero-fills: full size means the fill is under way.
    let sized = false;
    for (let i = 0; i < 3000 && !sized; i++) {
      sized = await stat(path).then(
        (st) => st.size === size,
        () => false,
      );
      if (!sized) await new Promise((r) => setTimeout(r, 10));
    }
    expect(sized, out).toBe(true);
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect(out).not.toContain('created');

    const st = await stat(path);
    const err = await openError(join(dir, 'data'), path, { sizeBytes: size });
    expect(isLamstoreError(err, ErrorCode.VOLUME_CORRUPT), String(err)).toBe(true);
    expect(err.message).toMatch(NEVER_COMPLETED);
    expect(err.message.startsWith(`${path}: volume is corrupt: `)).toBe(true);

    const [inspect, check] = await Promise.all([lamstore(['inspect', 'big.lam'], dir), lamstore(['check', 'big.lam'], dir)]);
    expectRefusal(inspect, 1, 'big.lam', NEVER_COMPLETED);
    expectRefusal(check, 1, 'big.lam', /3 findings/);
    expect(check.stdout).toMatch(new RegExp(`^big\\.lam: error: file: ${NEVER_COMPLETED.source}`, 'm'));
    // Nobody wrote to it (a 1 TiB file is not hashed: size and mtime say the same here).
    const after = await stat(path);
    expect([after.size, after.mtimeMs]).toEqual([st.size, st.mtimeMs]);
  });

  it('a zero-filled file of the right size: Engine.open (with or without create), inspect, inspect --json, check --json, map; bytes unchanged', async () => {
    const dir = await tempDir();
    const path = join(dir, 'zero.lam');
    await writeFile(path, new Uint8Array(1024 * 1024));
    const before = await hashFile(path);
    for (const create of [undefined, { sizeBytes: 1024 * 1024 }]) {
      const err = await openError(join(dir, 'data'), path, create);
      expect(isLamstoreError(err, ErrorCode.VOLUME_CORRUPT), String(err)).toBe(true);
      expect(err.message).toMatch(NEVER_COMPLETED);
    }
    const [inspect, inspectJson, checkJson, map] = await Promise.all([
      lamstore(['inspect', 'zero.lam'], dir),
      lamstore(['inspect', 'zero.lam', '--json'], dir),
      lamstore(['check', 'zero.lam', '--json'], dir),
      lamstore(['map', 'zero.lam'], dir),
    ]);
    expectRefusal(inspect, 1, 'zero.lam', NEVER_COMPLETED);
    expectRefusal(map, 1, 'zero.lam', NEVER_COMPLETED);
    expect(JSON.parse(inspectJson.stdout)).toEqual({ error: { code: 'VOLUME_CORRUPT', message: expect.stringMatching(NEVER_COMPLETED) } });
    expect(checkJson.code).toBe(1);
    const doc = JSON.parse(checkJson.stdout) as { clean: boolean; findings: { severity: string; part: string; message: string }[] };
    expect(doc.clean).toBe(false);
    expect(doc.findings).toContainEqual({ severity: 'error', part: 'file', message: expect.stringMatching(NEVER_COMPLETED) });
    expect(await hashFile(path)).toBe(before);
  });

  it('a 0-byte file (a creation killed before it sized the file) may be removed too', async () => {
    const dir = await tempDir();
    const path = join(dir, 'empty.lam');
    await writeFile(path, '');
    const err = await openError(join(dir, 'data'), path);
    expect(isLamstoreError(err, ErrorCode.VOLUME_CORRUPT), String(err)).toBe(true);
    expect(err.message).toMatch(/file is empty \(0 bytes\), not a volume \(an interrupted volume creation leaves this\); it holds nothing and may be removed/);
  });

  it.each([
    ['slot 1 of a 4 KiB volume', SMALL_BS],
    ['slot 1 of an 8 KiB volume', 8192],
  ])('other damage is not called an interrupted creation: slot 0 zero, %s garbage', async (_what, at) => {
    const dir = await tempDir();
    const path = join(dir, 'mixed.lam');
    const bytes = new Uint8Array(1024 * 1024);
    // Slot 1 is looked for at every legal block size; garbage at any of them is not "never written".
    bytes.fill(0x5a, at, at + 512);
    await writeFile(path, bytes);
    const err = await openError(join(dir, 'data'), path);
    expect(isLamstoreError(err, ErrorCode.VOLUME_CORRUPT), String(err)).toBe(true);
    expect(err.message).toMatch(/no valid superblock \(slot 0: never written \(all zero\); slot 1: /);
    expect(err.message).not.toMatch(/never completed|may be removed/);
  });
});
