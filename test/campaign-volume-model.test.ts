/**
 * Goal: the model-based property test on the volume API alone (reliability-anchors.md 8(e), "one
 * suite on the volume API alone"): random sequences of create / extend / write (eviction and
 * through a checkpoint) / read / truncate / unlink / checkpoint / bare sync / power loss between
 * commands and before any I/O call inside one / reopen (clean, close, kill) / offline and online
 * growth / injected faults (fdatasync with and without fsyncgate, pwrite, pread, ftruncate)
 * / online snapshot create (with the harness's checkpoint as its `checkpoint` option) and drop
 * agree with a small model, and every state a crash or a reopen leaves is exactly one checkpoint
 * of the whole volume, its snapshots included: each opened read-only and compared page by page
 * (VM1-VM6 in test/helpers/campaign-volume-model.ts). No Engine: a `Volume`
 * on SimDisk driven as the engine drives it (STUB_HOST; checkpointBegin, writeBuffers
 * 'checkpoint', syncNow, checkpointEnd), `checkInvariants()` after every command.
 *
 * Method: fast-check (fc.commands + fc.asyncModelRun); each run also draws the volume's size
 * (16 to 64 blocks of 4 KiB: VOLUME_FULL is frequent and must change nothing), the pool's pages
 * (0-4) and online growth (off, or a step and a max). All five SimDisk crash modes, torn and
 * garbage included: the copy-on-write volume never tears, so every page must read back whole.
 * A checkpoint refused with VOLUME_FULL is the V5 known limit (doCheckpoint in the helper,
 * test/campaign-volume-model-regressions.test.ts): counted in the figure, not a failure.
 * Snapshot names come from three (s0-s2), so creates meet taken names (BAD_ARGUMENT, nothing
 * run) and drops are followed by re-creates; a snapshot create may end VOLUME_FULL (V5/V7).
 *
 * Sizes: LAMSTORE_VOLUME_PBT_RUNS (CI 200 runs of up to 60 commands, ~2 s) with a fixed seed
 * LAMSTORE_VOLUME_PBT_SEED (default 20251202, printed); LAMSTORE_SOAK=1 runs 50,000 with a random
 * seed (~1.5 min). Replay a failure with LAMSTORE_VOLUME_PBT_SEED, LAMSTORE_VOLUME_PBT_PATH and
 * LAMSTORE_VOLUME_PBT_REPLAY (fast-check's seed, path and replayPath); the shrunk sequence then
 * goes into a regression test as an explicit list (`runVolumeSequence`).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { ForkNumber, IoKind } from '../engine/index.js';
import { CRASH_MODES } from '../engine/testing.js';
import type { CrashMode, FaultCode } from '../engine/testing.js';
import {
  CRASH_DURING_KINDS,
  VM_FORKS,
  VM_RELS,
  VM_SIZE_BLOCKS_MAX,
  VM_SNAPSHOT_NAMES,
  VOL_CMD_KINDS,
  VolumeModelCommand,
  newVolumeModelStats,
  setupVolumeModel,
} from './helpers/campaign-volume-model.js';
import type { VolCmdSpec, VolFaultTarget, VolumeRunConfig } from './helpers/campaign-volume-model.js';

const SOAK = process.env.LAMSTORE_SOAK === '1';
const RUNS = Number(process.env.LAMSTORE_VOLUME_PBT_RUNS ?? (SOAK ? 50_000 : 200));
const SEED = process.env.LAMSTORE_VOLUME_PBT_SEED !== undefined ? Number(process.env.LAMSTORE_VOLUME_PBT_SEED) : SOAK ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : 20251202;
const PATH = process.env.LAMSTORE_VOLUME_PBT_PATH;
const REPLAY = process.env.LAMSTORE_VOLUME_PBT_REPLAY;
const MAX_COMMANDS = 60;

const config: fc.Arbitrary<VolumeRunConfig> = fc
  .record({
    sizeBlocks: fc.constantFrom(16, 24, 32, 32, 64),
    poolPages: fc.nat({ max: 4 }),
    grow: fc.option(fc.record({ stepBlocks: fc.constantFrom(4, 8, 16), steps: fc.integer({ min: 1, max: 6 }) }), { nil: null }),
  })
  .map(({ sizeBlocks, poolPages, grow }) => ({
    sizeBlocks,
    poolPages,
    grow: grow === null ? null : { stepBlocks: grow.stepBlocks, maxBlocks: Math.min(VM_SIZE_BLOCKS_MAX, sizeBlocks + grow.steps * grow.stepBlocks) },
  }));

const at = fc.nat({ max: 23 });
const pick = fc.nat({ max: 63 });
const mode = fc.constantFrom<CrashMode>(...CRASH_MODES);
const seed = fc.nat({ max: 1_000_000 });

const create = fc.record({ kind: fc.constant('create' as const), rel: fc.constantFrom(...VM_RELS), fork: fc.constantFrom(...VM_FORKS) as fc.Arbitrary<ForkNumber> });
const extend = fc.record({ kind: fc.constant('extend' as const), at, skip: fc.constantFrom(0, 0, 0, 1, 2), count: fc.integer({ min: 1, max: 4 }) });
const write = fc.record({ kind: fc.constant('write' as const), picks: fc.array(fc.record({ at, pick }), { minLength: 1, maxLength: 4 }), pooled: fc.boolean() });
const checkpoint = fc.constant({ kind: 'checkpoint' as const });
const sync = fc.constant({ kind: 'sync' as const });
const grow = fc.record({ kind: fc.constant('grow' as const), byBlocks: fc.integer({ min: 1, max: 16 }), checkpointFirst: fc.boolean() });

const snapCreate = fc.record({ kind: fc.constant('snapCreate' as const), slot: fc.nat({ max: VM_SNAPSHOT_NAMES.length - 1 }) });
const snapDrop = fc.record({ kind: fc.constant('snapDrop' as const), at });

const inner: fc.Arbitrary<VolCmdSpec> = fc.oneof(checkpoint, checkpoint, sync, write, extend, grow, snapCreate, snapDrop);

/** Each fault target with the I/O kinds it makes and how many of each (nth up to that). */
const FAULTS: { target: VolFaultTarget; io: IoKind; nthMax: number }[] = [
  { target: 'checkpoint', io: 'pwrite', nthMax: 3 },
  { target: 'checkpoint', io: 'fdatasync', nthMax: 2 },
  { target: 'checkpoint', io: 'pread', nthMax: 1 },
  { target: 'sync', io: 'pwrite', nthMax: 2 },
  { target: 'sync', io: 'fdatasync', nthMax: 2 },
  { target: 'write', io: 'pwrite', nthMax: 2 },
  { target: 'extend', io: 'pwrite', nthMax: 1 },
  { target: 'extend', io: 'ftruncate', nthMax: 1 },
  { target: 'extend', io: 'fdatasync', nthMax: 1 },
  { target: 'read', io: 'pread', nthMax: 1 },
  { target: 'grow', io: 'pwrite', nthMax: 3 },
  { target: 'grow', io: 'fdatasync', nthMax: 2 },
  { target: 'grow', io: 'ftruncate', nthMax: 1 },
];

const fault = fc
  .record({ f: fc.constantFrom(...FAULTS), n: fc.nat({ max: 2 }), code: fc.constantFrom<FaultCode>('EIO', 'ENOSPC'), fsyncgate: fc.boolean(), at, pick })
  .map(({ f, n, ...rest }) => ({ kind: 'fault' as const, target: f.target, io: f.io, nth: 1 + (n % f.nthMax), ...rest, fsyncgate: rest.fsyncgate && f.io === 'fdatasync' }));

const cmd = (a: fc.Arbitrary<VolCmdSpec>) => a.map((spec) => new VolumeModelCommand(spec));
const arbitraries = [
  // Repeated entries weigh the choice (fc.commands picks an arbitrary uniformly): forks must
  // fill the volume between crashes, for VOLUME_FULL, online growth and scattered forks.
  ...[1, 2, 3].map(() => cmd(create)),
  ...[1, 2, 3, 4, 5, 6, 7].map(() => cmd(extend)),
  ...[1, 2, 3, 4, 5, 6].map(() => cmd(write)),
  cmd(fc.record({ kind: fc.constant('read' as const), at, pick })),
  cmd(fc.record({ kind: fc.constant('truncate' as const), at, pick })),
  cmd(fc.record({ kind: fc.constant('unlink' as const), at, all: fc.boolean() })),
  cmd(checkpoint),
  cmd(checkpoint),
  cmd(sync),
  cmd(fc.record({ kind: fc.constant('crash' as const), mode, seed })),
  cmd(fc.record({ kind: fc.constant('crashDuring' as const), inner, call: fc.integer({ min: 1, max: 7 }), mode, seed })),
  cmd(fc.record({ kind: fc.constant('reopen' as const), how: fc.constantFrom('clean' as const, 'close' as const, 'kill' as const) })),
  cmd(grow),
  cmd(fault),
  cmd(fault),
  cmd(snapCreate),
  cmd(snapDrop),
];

describe('volume model-based property test (the Volume API alone)', () => {
  it('random command sequences on one volume agree with the model; every crash and reopen leaves exactly one checkpoint, whole; VOLUME_FULL changes nothing', async () => {
    expect(CRASH_DURING_KINDS.every((k) => VOL_CMD_KINDS.includes(k))).toBe(true);
    const stats = newVolumeModelStats();
    const started = performance.now();
    console.log(`volume-model: seed=${SEED} runs=${RUNS}${PATH ? ` path=${PATH}` : ''}${REPLAY ? ` replayPath=${REPLAY}` : ''} (replay with LAMSTORE_VOLUME_PBT_SEED, LAMSTORE_VOLUME_PBT_PATH, LAMSTORE_VOLUME_PBT_REPLAY)`);
    const property = fc.asyncProperty(config, fc.commands(arbitraries, { maxCommands: MAX_COMMANDS, size: 'max', replayPath: REPLAY }), async (cfg, cmds) => {
      await fc.asyncModelRun(() => setupVolumeModel(cfg, stats), cmds);
    });
    const details = await fc.check(property, { numRuns: RUNS, seed: SEED, path: PATH, verbose: 1, endOnFailure: PATH !== undefined });
    const failures = details.failed ? 1 : 0;
    const s = stats;
    console.log(
      `volume-model: runs=${details.numRuns} commands=${s.commands} crashes=${s.crashes} faults=${s.faultsFired} grows=${s.growsOffline + s.growsOnline} ` +
        `command-kinds-covered=${s.kinds.size}/${VOL_CMD_KINDS.length} failures=${failures} ` +
        `(seed=${SEED}, crash-during-a-command=${s.crashesDuring} (inside ${s.crashesInside}), faults injected=${s.faultsInjected}, failed-states=${s.failedStates}, grows offline=${s.growsOffline} online=${s.growsOnline}, ` +
        `volume-full=${s.volumeFull}, reopens=${s.reopens}, checkpoint-page-writes=${s.checkpointWrites}, forks-defragmented=${s.forksDefragmented}, ${((performance.now() - started) / 1000).toFixed(1)} s)`,
    );
    console.log(
      `volume-model (strict): states=${s.states} pages-verified=${s.pagesVerified} torn-detected=${s.tornDetected} torn-returned=${s.tornReturned} meta-mixed=${s.metaMixed} lost=${s.lost} ` +
        `check-errors=${s.checkErrors} interrupted-switch-slot-reported=${s.interruptedSwitch} chose-completing=${s.choseCompleting}`,
    );
    console.log(
      `volume-model (snapshots): created=${s.snapCreated} name-taken=${s.snapNameTaken} volume-full=${s.snapFull} dropped=${s.snapDropped} ` +
        `snapshots-verified=${s.snapshotsVerified} states-with-snapshots=${s.snapshotStates} chose-snapshot-op-under-way=${s.snapChoseCompleting}`,
    );
    console.log(`volume-model commands per kind: ${JSON.stringify(s.perKind)}`);
    if (details.failed) throw new Error(`${fc.defaultReportMessage(details)}\nError: ${String((details.errorInstance as Error)?.stack ?? details.errorInstance)}`);
    expect(s.kinds.size).toBe(VOL_CMD_KINDS.length);
    expect(s.crashes).toBeGreaterThan(0);
    expect(s.crashesDuring).toBeGreaterThan(0);
    expect(s.faultsFired).toBeGreaterThan(0);
    expect(s.failedStates).toBeGreaterThan(0);
    expect(s.growsOffline).toBeGreaterThan(0);
    expect(s.growsOnline).toBeGreaterThan(0);
    expect(s.volumeFull).toBeGreaterThan(0);
    expect(s.choseCompleting).toBeGreaterThan(0);
    expect(s.snapCreated).toBeGreaterThan(0);
    expect(s.snapNameTaken).toBeGreaterThan(0);
    expect(s.snapDropped).toBeGreaterThan(0);
    expect(s.snapshotsVerified).toBeGreaterThan(0);
    expect(s.tornDetected + s.tornReturned + s.metaMixed + s.lost + s.checkErrors).toBe(0);
  }, SOAK ? 24 * 3600_000 : 300_000);
});
