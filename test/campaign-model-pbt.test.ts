/**
 * Goal: the model-based property test (reliability-anchors.md 8(e)): random sequences of
 * create / extend / write / read / truncate / drop / checkpoint / close-reopen / crash / fault /
 * md sync requests / SLRU commands (clog and commit_ts set and get, multixact create and members,
 * truncation of each), through the Engine facade with md AND volume relations mixed in every run,
 * agree with a small in-memory model; after every crash or failed-state reopen the engine's state
 * is one the model allows (MA1-MA4, MS1-MS3 and MF1-MF5 in test/helpers/campaign-model.ts, where
 * the model and the "allowed states" are documented). SLRU truncation cutoffs live in the control
 * file: an xid or mxid below one stays refused after every restart, clean or not.
 *
 * Method: fast-check model-based testing (fc.commands + fc.asyncModelRun) on SimDisk; engine
 * with sharedBuffers 16 (evictions happen), relSegBlocks 4, blockSize 4096, a 4 MiB volume on
 * the same SimDisk, the sync ledger on (vitest env). Crash modes are restricted to drop and
 * prefix (which never tear a write), so every page must read back whole; the crash matrix
 * (campaign-crash-matrix.test.ts) covers subset, torn and garbage. The volume is judged
 * strictly (MA1): after every crash and failed-state reopen it equals exactly one checkpoint,
 * every fork and page, also after fsyncgate failures of its fdatasyncs; its torn-detected and
 * meta-mixed counts are printed and must be 0.
 *
 * Sizes: LAMSTORE_PBT_RUNS (default 100 runs of up to 60 commands) with a fixed seed
 * LAMSTORE_PBT_SEED (default 20250610, printed); LAMSTORE_SOAK=1 runs 10,000 with a random seed.
 * Replay a failure with LAMSTORE_PBT_SEED, LAMSTORE_PBT_PATH and LAMSTORE_PBT_REPLAY (the
 * seed, path and replayPath fast-check prints); the shrunk sequence then goes into
 * test/campaign-model-pbt-regressions.test.ts as an explicit command list.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { ForkNumber, IoKind } from '../engine/index.js';
import type { CrashMode, FaultCode } from '../engine/testing.js';
import { CMD_KINDS, FORKS_USED, ModelCommand, RELS, SLRU_XIDS, STORAGES, newStats, setup } from './helpers/campaign-model.js';
import type { CmdSpec, FaultTarget, SlruWhich } from './helpers/campaign-model.js';

const SOAK = process.env.LAMSTORE_SOAK === '1';
const RUNS = Number(process.env.LAMSTORE_PBT_RUNS ?? (SOAK ? 10_000 : 100));
const SEED = process.env.LAMSTORE_PBT_SEED !== undefined ? Number(process.env.LAMSTORE_PBT_SEED) : SOAK ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : 20250610;
const PATH = process.env.LAMSTORE_PBT_PATH;
const REPLAY = process.env.LAMSTORE_PBT_REPLAY;
const MAX_COMMANDS = 60;

const storage = fc.constantFrom(...STORAGES);
const rel = fc.constantFrom(...RELS);
const fork = fc.constantFrom(...FORKS_USED) as fc.Arbitrary<ForkNumber>;
const pick = fc.nat({ max: 63 });
const at = fc.nat({ max: 23 });
const xid = fc.nat({ max: SLRU_XIDS.length - 1 });
const cmd = (a: fc.Arbitrary<CmdSpec>) => a.map((spec) => new ModelCommand(spec));

const FAULTS: { target: FaultTarget; io: IoKind }[] = [
  { target: 'checkpoint', io: 'pwrite' },
  { target: 'checkpoint', io: 'fsync' },
  { target: 'checkpoint', io: 'fdatasync' },
  { target: 'checkpoint', io: 'fsyncDir' },
  { target: 'checkpoint', io: 'open' },
  { target: 'extend', io: 'pwrite' },
  { target: 'extend', io: 'open' },
  { target: 'read', io: 'pread' },
  { target: 'write', io: 'pwrite' },
];

const arbitraries = [
  // Repeated entries weigh the choice (fc.commands picks an arbitrary uniformly): forks must
  // grow past segment and extent boundaries between crashes.
  cmd(fc.record({ kind: fc.constant('create' as const), storage, rel, fork })),
  cmd(fc.record({ kind: fc.constant('create' as const), storage, rel, fork })),
  ...[1, 2, 3, 4, 5].map(() => cmd(fc.record({ kind: fc.constant('extend' as const), at }))),
  ...[1, 2, 3].map(() => cmd(fc.record({ kind: fc.constant('write' as const), at, pick }))),
  cmd(fc.record({ kind: fc.constant('read' as const), at, pick })),
  cmd(fc.record({ kind: fc.constant('truncate' as const), at, pick })),
  cmd(fc.record({ kind: fc.constant('drop' as const), at })),
  cmd(fc.constant({ kind: 'checkpoint' as const })),
  cmd(fc.constant({ kind: 'closeReopen' as const })),
  cmd(fc.record({ kind: fc.constant('crash' as const), mode: fc.constantFrom<CrashMode>('drop', 'prefix'), seed: fc.nat({ max: 1_000_000 }) })),
  cmd(
    fc.record({
      kind: fc.constant('fault' as const),
      f: fc.constantFrom(...FAULTS),
      code: fc.constantFrom<FaultCode>('EIO', 'ENOSPC'),
      // fsyncgate on the volume's fdatasync only: see MF5 in helpers/campaign-model.ts.
      fsyncgate: fc.boolean(),
      at,
      pick,
    }).map(({ f, ...rest }) => ({ ...rest, io: f.io, target: f.target })),
  ),
  cmd(fc.record({ kind: fc.constant('syncRequest' as const), type: fc.constantFrom('sync' as const, 'forget' as const), rel, fork, segno: fc.nat({ max: 2 }) })),
  // The SLRUs (MS1-MS3).
  cmd(fc.record({ kind: fc.constant('clogSet' as const), x: xid, status: fc.nat({ max: 3 }) })),
  cmd(fc.record({ kind: fc.constant('clogSet' as const), x: xid, status: fc.nat({ max: 3 }) })),
  cmd(fc.record({ kind: fc.constant('clogGet' as const), x: xid })),
  cmd(fc.record({ kind: fc.constant('commitTsSet' as const), x: xid })),
  cmd(fc.record({ kind: fc.constant('commitTsGet' as const), x: xid })),
  cmd(fc.record({ kind: fc.constant('multixactCreate' as const), members: fc.array(fc.record({ x: fc.nat({ max: 999 }), status: fc.nat({ max: 5 }) }), { minLength: 1, maxLength: 5 }) })),
  cmd(fc.record({ kind: fc.constant('multixactMembers' as const), pick })),
  cmd(fc.record({ kind: fc.constant('slruTruncate' as const), which: fc.constantFrom<SlruWhich>('clog', 'commitTs', 'multixact'), pick })),
];

describe('model-based property test', () => {
  it('random command sequences over md and volume relations agree with the model; crashes and faults leave allowed states', async () => {
    const stats = newStats();
    const started = performance.now();
    console.log(`model-pbt: seed=${SEED} runs=${RUNS}${PATH ? ` path=${PATH}` : ''}${REPLAY ? ` replayPath=${REPLAY}` : ''} (replay with LAMSTORE_PBT_SEED, LAMSTORE_PBT_PATH, LAMSTORE_PBT_REPLAY)`);
    const property = fc.asyncProperty(fc.commands(arbitraries, { maxCommands: MAX_COMMANDS, size: 'max', replayPath: REPLAY }), async (cmds) => {
      await fc.asyncModelRun(() => setup(stats), cmds);
    });
    const details = await fc.check(property, { numRuns: RUNS, seed: SEED, path: PATH, verbose: 1, endOnFailure: PATH !== undefined });
    const failures = details.failed ? 1 : 0;
    console.log(
      `model-pbt: runs=${details.numRuns} commands=${stats.commands} crashes=${stats.crashes} faults=${stats.faultsFired} ` +
        `command-kinds-covered=${stats.kinds.size}/${CMD_KINDS.length} failures=${failures} ` +
        `(seed=${SEED}, faults injected=${stats.faultsInjected}, failed-states=${stats.failedStates}, unclean-reopens=${stats.uncleanReopens}, ` +
        `pages-verified=${stats.pagesVerified}, ${((performance.now() - started) / 1000).toFixed(1)} s)`,
    );
    console.log(
      `model-pbt volume (strict): states=${stats.volumeStates} pages=${stats.volumePages} torn-detected=${stats.volumeTornDetected} meta-mixed=${stats.volumeMetaMixed} ` +
        `at-a-failed-checkpoint's-capture=${stats.volumeChoseCandidate}`,
    );
    console.log(
      `model-pbt slru: values-verified=${stats.slruValuesVerified} mxids-verified=${stats.mxidsVerified} truncations=${stats.slruTruncations} refusals-verified=${stats.slruRefusalsVerified} ` +
        `lost-after-unclean-stop (allowed, set since the last checkpoint): values=${stats.slruValuesLost} mxids=${stats.mxidsLost}`,
    );
    if (details.failed) throw new Error(`${fc.defaultReportMessage(details)}\nError: ${String((details.errorInstance as Error)?.stack ?? details.errorInstance)}`);
    expect(stats.kinds.size).toBe(CMD_KINDS.length);
    expect(stats.crashes).toBeGreaterThan(0);
    expect(stats.faultsFired).toBeGreaterThan(0);
    expect(stats.volumeTornDetected + stats.volumeMetaMixed).toBe(0);
    expect(stats.volumeStates).toBeGreaterThan(0);
    expect(stats.slruTruncations).toBeGreaterThan(0);
    expect(stats.slruRefusalsVerified).toBeGreaterThan(0);
  }, SOAK ? 24 * 3600_000 : 180_000);
});
