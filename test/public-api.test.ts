/**
 * Goal: the public API says what is public. `lamstore` (engine/index.ts) holds what a program or
 * an extension needs, with every name DESIGN.md sections 3-6 fix; `lamstore/testing`
 * (engine/testing.ts) holds the test doubles and tools; neither hands out the engine's internal
 * classes. package.json `exports` names the three entry points, each built into dist/ with its
 * types, and a user's `import('lamstore/testing')` finds them.
 * Method: the entry modules' runtime exports (type names are held by the `import type` below:
 * removing one fails the typecheck); the package's own name resolved by Node from the built
 * package, in a child process (skipped, saying why, when dist/ is not built: `npm test` builds).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as lamstore from '../engine/index.js';
import * as testing from '../engine/testing.js';
import * as volume from '../volume/index.js';
// DESIGN.md's type names: the typecheck fails here if one leaves the public API.
import type { CheckpointStats, EngineOptions, Extension, FileTag, PreloadContext, RelFileLocator, StorageManager, SyncOps } from '../engine/index.js';
import { ROOT } from './helpers/imports.js';

export type DesignTypes = [CheckpointStats, EngineOptions, Extension, FileTag, PreloadContext, RelFileLocator, StorageManager, SyncOps];

/** Values DESIGN.md fixes (the before-stop check imports the first six by the package's name). */
const DESIGN_VALUES = ['Engine', 'SyncHandlerId', 'SyncRequestType', 'ForkNumber', 'ClogStatus', 'LamstoreError', 'ErrorCode'];
const TESTING_VALUES = ['SimDisk', 'CRASH_MODES', 'prng', 'CountingIO', 'diffCounts', 'zeroCounts', 'ManualClock', 'makeTempDir', 'removeTree', 'removeTreeSync', 'loadSyncFileRange', 'probeSyncFileRange', 'WRITE_COMBINE_MAX_BLOCKS'];
/** The engine's insides: reachable from tests by their files, from no entry point. */
const INTERNAL_VALUES = ['BufferPool', 'MdStorageManager', 'Slru', 'WritebackContext', 'PendingOps', 'SyncHandlerRegistry', 'Clog', 'CommitTs', 'MultiXact', 'SyncLedgerIO', 'Checkpointer'];

describe('public API', () => {
  it('lamstore exports every value DESIGN.md fixes and lamstore/volume exports volumeExtension', () => {
    expect(DESIGN_VALUES.filter((n) => !(n in lamstore))).toEqual([]);
    expect(typeof volume.volumeExtension).toBe('function');
  });

  it('lamstore exports no test double, tool or internal class; lamstore/testing has the doubles and tools', () => {
    expect([...TESTING_VALUES, ...INTERNAL_VALUES].filter((n) => n in lamstore)).toEqual([]);
    expect(TESTING_VALUES.filter((n) => !(n in testing))).toEqual([]);
    expect(INTERNAL_VALUES.filter((n) => n in testing || n in volume)).toEqual([]);
  });

  it("package.json's exports name lamstore, lamstore/volume and lamstore/testing, each built into dist/ with its types", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { types?: string; default?: string } | string> };
    const entries = Object.entries(pkg.exports).filter(([key]) => key !== './package.json');
    expect(entries.map(([key]) => key).sort()).toEqual(['.', './testing', './volume']);
    for (const [key, target] of entries) {
      expect(typeof target, key).toBe('object');
      const { types, default: file } = target as { types?: string; default?: string };
      const m = /^\.\/dist\/(.+)\.js$/.exec(file ?? '');
      expect(m, `${key} default`).not.toBeNull();
      expect(types, `${key} types`).toBe(`./dist/${m![1]}.d.ts`);
      expect(existsSync(join(ROOT, `${m![1]}.ts`)), `${key}: source ${m![1]}.ts`).toBe(true);
    }
  });

  it('a user imports the three entry points by the package name (built package)', (ctx) => {
    const missing = ['dist/engine/index.js', 'dist/engine/testing.js', 'dist/volume/index.js'].filter((f) => !existsSync(join(ROOT, f)));
    if (missing.length > 0) {
      ctx.skip(`${missing.join(', ')} not built: run npm run build (npm test does)`);
      return;
    }
    const script = `
      const [a, v, t] = await Promise.all([import('lamstore'), import('lamstore/volume'), import('lamstore/testing')]);
      console.log(JSON.stringify({ engine: typeof a.Engine, volumeExtension: typeof v.volumeExtension, simDisk: typeof t.SimDisk, simDiskInLamstore: 'SimDisk' in a }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ engine: 'function', volumeExtension: 'function', simDisk: 'function', simDiskInLamstore: false });
  });
});
