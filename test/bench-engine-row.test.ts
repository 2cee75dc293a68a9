/**
 * Goal: an engine row of the bench (bench/engine-row.ts) works the same on a worker thread of
 * its own as on this one (E1): a round checkpoints exactly R*P pages and reports its figures,
 * the volume row says where its pages went, and a failure in the worker comes back as the error
 * it was (E2: a LamstoreError stays one, with its code and path) instead of a crash or a hang.
 * Method: errorImage/errorOf across structuredClone (what postMessage does); then the built
 * module (dist/, built here if missing: the worker is a compiled file) on real files in a temp
 * directory, one row per kind, and a setup under a regular file.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, LamstoreError } from '../engine/index.js';
import { errorImage, errorOf, type startEngineRow as StartEngineRow } from '../bench/engine-row.js';
import { tempDir } from './helpers/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUILT = join(root, 'dist', 'bench', 'engine-row.js');

beforeAll(() => {
  // The suite's check builds dist first; build here only if a lone run finds nothing built.
  if (!existsSync(BUILT)) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});

describe('bench engine rows', () => {
  it('an error crosses the hop as it was: a LamstoreError keeps its class, code, path, errno and syscall; a Node error its code', () => {
    const lam = new LamstoreError(ErrorCode.VOLUME_FULL, '/x/bench.lamvol: volume is full', { path: '/x/bench.lamvol', errno: 'ENOSPC', syscall: 'write' });
    const back = errorOf(structuredClone(errorImage(lam)));
    expect(back).toBeInstanceOf(LamstoreError);
    expect(back).toMatchObject({ code: ErrorCode.VOLUME_FULL, message: lam.message, path: '/x/bench.lamvol', errno: 'ENOSPC', syscall: 'write' });
    const node = Object.assign(new Error('ENOTDIR: not a directory'), { code: 'ENOTDIR' });
    const nodeBack = errorOf(structuredClone(errorImage(node)));
    expect(nodeBack).not.toBeInstanceOf(LamstoreError);
    expect(nodeBack).toMatchObject({ code: 'ENOTDIR', message: 'ENOTDIR: not a directory' });
    expect(errorOf(structuredClone(errorImage('plain'))).message).toBe('plain');
  });

  it('on a thread of its own and on this one: a round writes R*P pages with its figures; the volume row names its pages\' blocks; setup failures come back as errors', async () => {
    const { startEngineRow } = (await import(pathToFileURL(BUILT).href)) as { startEngineRow: typeof StartEngineRow };
    const R = 3;
    const P = 2;
    // Threads first, all three alive until the end (fs-ext aborts a process that loads it on a
    // new thread after a thread that had loaded it exited: engine/README.md), then this thread.
    for (const isolate of [true, false]) {
      const dir = await tempDir('lamstore-engine-row-');
      const kinds = ['md', 'mdConcurrent', 'volume'] as const;
      const lines = new Map<string, string[]>(kinds.map((k) => [k, []]));
      const rows = await Promise.all(kinds.map((kind) => startEngineRow({ kind, dir, relationsMax: R, pagesMax: P, blockSize: 8192 }, { onLog: (l) => lines.get(kind)!.push(l) }, isolate)));
      try {
        for (const [i, kind] of kinds.entries()) {
          const row = rows[i]!;
          const s = await row.round(R, P, 1);
          expect(s.buffersWritten).toBe(R * P);
          expect(s.maxStallMs).toBeGreaterThanOrEqual(0);
          expect(s.maxGcPauseMs).toBeGreaterThanOrEqual(0);
          // The longest pause's kind, when there was one; where the longest busy stretch ended.
          if (s.maxGcPauseMs! > 0) expect(['minor', 'major', 'incremental', 'weakcb', 'unknown']).toContain(s.maxGcPauseKind);
          else expect(s.maxGcPauseKind).toBeUndefined();
          if (s.maxBusyMs !== undefined && s.maxBusyMs > 0) expect(Number.isFinite(s.maxBusyEndMs)).toBe(true);
          if (kind === 'volume') {
            expect(s.fdatasyncCalls).toBeLessThanOrEqual(2);
            const blocks = await row.blocks(R, P);
            expect(blocks).toHaveLength(R * P);
            expect(new Set(blocks).size).toBe(R * P); // every page in a block of its own
          } else {
            expect(s.fsyncCalls).toBeGreaterThanOrEqual(R);
            await expect(row.blocks(R, P)).rejects.toThrow(/only the volume row/);
          }
          // E4: the setup's checkpoint line and the round's, in order.
          expect(lines.get(kind)!.filter((l) => l.startsWith('checkpoint complete')).map((l) => /wrote (\d+) buffers/.exec(l)?.[1])).toEqual(['0', String(R * P)]);
        }
        // A data directory under a regular file: the engine cannot open, on either thread.
        await writeFile(join(dir, 'file'), 'x');
        const failed = startEngineRow({ kind: 'md', dir: join(dir, 'file'), relationsMax: 1, pagesMax: 1, blockSize: 8192 }, {}, isolate);
        await expect(failed).rejects.toThrow(/file/);
      } finally {
        for (const row of rows) await row.close(false);
      }
    }
  });
});
