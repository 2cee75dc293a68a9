/**
 * Goal: D1-D4 of DESIGN.md section 8 hold after a power loss at every I/O call of a scripted
 * workload over the volume, md and clog together (reliability-anchors 8(a)).
 * Method: one Engine on SimDisk (4 KiB blocks, relSegBlocks 4, a 256 KiB volume) runs the
 * workload: three checkpoints; relations with two forks on md and on the volume; volume growth
 * past the first 8-block extent; md growth past a segment boundary; a truncate on each; an md
 * drop whose segment-0 tombstone waits for the next checkpoint's unlink; clog statuses in two
 * segments (xids 0.. and 4*4096*32 = 524288..). Every change is recorded in the model
 * (test/helpers/campaign-crash-model.ts) before its engine call. Before every FileIO call
 * (SimDisk.beforeCall, awaited) it takes crash images in the 5 modes x LAMSTORE_CRASH_SEEDS seeds
 * (once when nothing is pending), dedupes them by the hash of every file plus the model
 * position, reopens each in a fresh Engine and checks:
 *  D1-D2 on the volume, strict (copy-on-write, format 2): the whole volume equals the model's
 *     snapshot of C_k or of C_k+1, exactly one of them for every fork: the same forks, nblocks
 *     and pages (judgeVolume). A volume page that fails its checksum (volume torn-detected), a
 *     sector mix returned as data (torn-returned), forks, sizes or pages of two checkpoints
 *     together (meta-mixed) or other data (lost) all count, and all must be 0;
 *  D2 on md (in place, no WAL): pages below nblocks read back as C_k's image, an image written
 *     since, or (past the smallest nblocks since C_k) zeros; a page written since may fail with
 *     CHECKSUM_MISMATCH (md torn-detected); a sector mix returned as data is torn-returned,
 *     other data lost;
 *  D3 vol.checkInvariants() and checkVolume find nothing (a damaged inactive superblock slot,
 *     left by an interrupted switch, is counted apart: check cannot tell it from media damage);
 *  D4 md forks of C_k not dropped since exist with nblocks >= their smallest since C_k; clog
 *     segments of C_k exist and every status is C_k's or one set since (garbage mode: pages with
 *     a status set since are skipped, SLRU pages carry no checksum, like PostgreSQL's); the
 *     dropped relation's tombstone exists in every image taken before its unlink call, and once
 *     the image's pending-unlink log names the drop (the drop began; it returned once it had
 *     truncated), the reopen removes it, whatever size the crash left: the drop is done after
 *     the next open (md/pending-unlinks.ts PU5).
 * Prints the crash-matrix line of reliability-anchors 8(a), its torn and mixed figures apart for
 * the volume and for md, and asserts its zero counts.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.js';
import { SimDisk, CRASH_MODES } from '../engine/testing.js';
import type { ForkNumber, RelFileLocator } from '../engine/index.js';
import { checkVolume, volumeExtension } from '../volume/index.js';
import type { VolumeExtension } from '../volume/index.js';
import { makePage, rel } from './helpers/volume.js';
import { CrashModel, forkKey, judgePage, judgeVolume, readVolume, sha256, volumeCandidate } from './helpers/campaign-crash-model.js';
import { PENDING_UNLINKS_FILE, pendingOf } from '../engine/md/pending-unlinks.js';
import type { Storage } from './helpers/campaign-crash-model.js';
import { SMALL_BS } from './helpers/engine.js';

const SEG = 4;
const VOL = '/vol/lam.vol';
const DATA = '/data';
const SEEDS = Number(process.env.LAMSTORE_CRASH_SEEDS ?? (process.env.LAMSTORE_SOAK ? 50 : 2));
/** xids per clog segment: 4 per byte, SMALL_BS bytes per page, 32 pages per segment. */
const XIDS_PER_SEGMENT = 4 * SMALL_BS * 32;
const ZERO = new Uint8Array(SMALL_BS);
const ZERO_HASH = sha256(ZERO);

interface Image {
  index: number;
  mode: string;
  seed: number;
  disk: SimDisk;
  committed: number;
  inflight: number | null;
  tombstones: string[];
}

function tally() {
  return {
    states: 0,
    crashImages: 0,
    pagesVerified: 0,
    xidsVerified: 0,
    slruSkipped: 0,
    lost: 0,
    volumePages: 0,
    volumeTornDetected: 0,
    volumeTornReturned: 0,
    volumeMetaMixed: 0,
    mdPages: 0,
    mdTornDetected: 0,
    mdTornReturned: 0,
    reopenFailed: 0,
    checkErrors: 0,
    interruptedSwitch: 0,
    choseCompleting: 0,
    tombstoneChecks: 0,
    placeholdersRemoved: 0,
  };
}

describe('campaign: crash matrix over volume, md and SLRU', () => {
  it('D1-D4 hold after a crash at every I/O call index, in every crash mode and seed', { timeout: process.env.LAMSTORE_SOAK ? 7_200_000 : 600_000 }, async () => {
    const started = Date.now();
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const engineOptions = (io: SimDisk, ext: VolumeExtension) => ({ dataDir: DATA, blockSize: SMALL_BS, relSegBlocks: SEG, sharedBuffers: 16, io, preload: [ext] });
    const engine = await Engine.open(engineOptions(disk, volumeExtension({ path: VOL, create: { sizeBytes: 256 * 1024 } })));
    const model = new CrashModel();
    const t = tally();
    const failures: string[] = [];
    let version = 0;
    /** md tombstones (segment-0 paths) that must exist until their unlink call. */
    const tombstones = new Set<string>();

    const handle = (storage: Storage, r: RelFileLocator) => engine.relation(r, { storage });
    const ops = {
      create: async (storage: Storage, r: RelFileLocator, f: ForkNumber) => {
        model.create(storage, r.relNumber, f);
        await handle(storage, r).create(f);
      },
      extendTo: async (storage: Storage, r: RelFileLocator, f: ForkNumber, n: number) => {
        const st = model.fork(storage, r.relNumber, f);
        while (st.nblocks < n) {
          const blk = st.nblocks;
          const page = makePage(r, f, blk, ++version, SMALL_BS);
          model.noteWrite(st, blk, page);
          expect(await handle(storage, r).extend(f, page)).toBe(blk);
        }
      },
      write: async (storage: Storage, r: RelFileLocator, f: ForkNumber, blk: number) => {
        const page = makePage(r, f, blk, ++version, SMALL_BS);
        model.noteWrite(model.fork(storage, r.relNumber, f), blk, page);
        await handle(storage, r).write(f, blk, page);
      },
      truncate: async (storage: Storage, r: RelFileLocator, f: ForkNumber, n: number) => {
        model.noteTruncate(model.fork(storage, r.relNumber, f), n);
        await handle(storage, r).truncate(f, n);
      },
      drop: async (storage: Storage, r: RelFileLocator) => {
        model.noteDrop(storage, r.relNumber);
        if (storage === 'md') tombstones.add(`${DATA}/base/${r.dbOid}/${r.relNumber}`);
        await handle(storage, r).drop();
      },
      clog: async (xid: number, status: 0 | 1 | 2 | 3) => {
        model.noteClog(xid, status);
        await engine.clog.setStatus(xid, status);
      },
      checkpoint: async () => {
        model.beginCheckpoint();
        await engine.checkpoint();
        model.endCheckpoint();
      },
    };

    const [v1, v2] = [rel(11), rel(12)];
    const [m1, m2, m3] = [rel(21), rel(22), rel(23)];
    const X1 = XIDS_PER_SEGMENT; // first xid of clog segment 1
    const steps: (() => Promise<void>)[] = [
      () => ops.create('volume', v1, 0),
      () => ops.create('volume', v1, 1),
      () => ops.create('volume', v2, 0),
      () => ops.create('md', m1, 0),
      () => ops.create('md', m1, 1),
      () => ops.create('md', m2, 0),
      () => ops.create('md', m3, 0),
      () => ops.extendTo('volume', v1, 0, 6),
      () => ops.extendTo('volume', v1, 1, 2),
      () => ops.extendTo('volume', v2, 0, 3),
      () => ops.extendTo('md', m1, 0, 3),
      () => ops.extendTo('md', m1, 1, 2),
      () => ops.extendTo('md', m2, 0, 2),
      () => ops.extendTo('md', m3, 0, 6), // two md segments
      () => ops.clog(1, 1),
      () => ops.clog(2, 2),
      () => ops.clog(3, 3),
      ops.checkpoint, // C1
      () => ops.write('volume', v1, 0, 1),
      () => ops.extendTo('volume', v1, 0, 11), // past the first 8-block extent
      () => ops.extendTo('md', m1, 0, 6), // past the md segment boundary (4)
      () => ops.write('md', m1, 0, 0),
      () => ops.truncate('md', m3, 0, 2),
      () => ops.truncate('volume', v2, 0, 1),
      () => ops.clog(X1 + 5, 1), // clog segment 1
      () => ops.clog(2, 1),
      ops.checkpoint, // C2
      () => ops.drop('md', m2), // tombstone until C3's unlinks
      () => ops.write('md', m1, 1, 0),
      () => ops.write('volume', v1, 1, 0),
      () => ops.extendTo('md', m3, 0, 5),
      () => ops.clog(X1 + 6, 2),
      () => ops.clog(4, 1),
      ops.checkpoint, // C3
      () => ops.write('volume', v1, 0, 2),
      () => ops.write('md', m1, 0, 5),
      () => ops.clog(X1 + 5, 2),
    ];

    const seen = new Set<string>();
    const imageKey = (img: Image): string => {
      const files = img.disk.listFiles().map((p) => `${p}:${sha256(img.disk.readFileNow(p)!)}`);
      return `${img.committed}/${img.inflight}/${img.tombstones.join(',')}/${img.mode === 'garbage'}/${sha256(new TextEncoder().encode(files.join('\n')))}`;
    };

    const verify = async (img: Image): Promise<void> => {
      t.states++;
      const where = `crash before call ${img.index} mode ${img.mode} seed ${img.seed}`;
      const fail = (what: string) => failures.push(`${where}: ${what}`);
      // D4 tombstones: checked on the raw image, before an engine opens it.
      const placeholders: string[] = [];
      for (const p of img.tombstones) {
        t.tombstoneChecks++;
        const bytes = img.disk.readFileNow(p);
        if (bytes === null) {
          t.lost++;
          fail(`tombstone ${p} is gone before its unlink`);
        } else if (pendingOf(img.disk.readFileNow(`${DATA}/${PENDING_UNLINKS_FILE}`) ?? new Uint8Array(0)).some((r) => p.endsWith(`/${r.dbOid}/${r.relNumber}`))) {
          placeholders.push(p);
        }
      }
      const ext = volumeExtension({ path: VOL });
      let eng: Engine;
      try {
        eng = await Engine.open(engineOptions(img.disk, ext));
      } catch (err) {
        t.reopenFailed++;
        fail(`reopen failed: ${(err as Error).message}`);
        return;
      }
      // D4: a relation dropped before the crash is gone after the next open.
      for (const p of placeholders) {
        t.placeholdersRemoved++;
        if (img.disk.readFileNow(p) !== null) fail(`${p}, dropped before the crash, is still there after the reopen`);
      }
      let activeSlot = 0;
      try {
        const volume = ext.volume!;
        volume.checkInvariants(); // D3
        const info = volume.info();
        activeSlot = info.activeSlot;
        if (info.usedBlocks + info.freeBlocks + info.metadataBlocks + info.pendingFreeBlocks !== info.volumeBlocks) fail('volume blocks do not add up');

        // D1 and D2 on the volume, strict (copy-on-write): exactly C_k or C_k+1, whole.
        const observed = await readVolume(eng, info.forks);
        const candidates = [img.committed, ...(img.inflight === null ? [] : [img.inflight])].map((c) => volumeCandidate(model.snapshots[c]!, c));
        const verdict = judgeVolume(observed, candidates, model.images);
        t.volumePages += verdict.pagesVerified;
        t.pagesVerified += verdict.pagesVerified;
        t.volumeTornDetected += verdict.tornDetected;
        t.volumeTornReturned += verdict.tornReturned;
        t.lost += verdict.lost;
        if (verdict.metaMixed) t.volumeMetaMixed++;
        if (verdict.chosen === null) for (const p of verdict.problems.slice(0, 4)) fail(`volume: ${p}`);
        else if (verdict.chosen !== img.committed) t.choseCompleting++;

        // D2/D4 on md, against C_k (md has no metadata switch: C_k+1's syncs may be partial).
        const base = model.snapshots[img.committed]!;
        const since = model.since[img.committed]!;
        const mdKeys = new Set<string>();
        for (const [k, v] of base.forks) if (v.storage === 'md') mdKeys.add(k);
        for (const k of since.written.keys()) if (k.startsWith('md:')) mdKeys.add(k.slice(0, k.lastIndexOf('/')));
        for (const k of mdKeys) {
          const [relNumber, fork] = k.slice(3).split('/').map(Number) as [number, ForkNumber];
          if (since.dropped.has(`md:${relNumber}`)) continue; // contents after a drop are not promised
          const snap = base.forks.get(k);
          const minN = Math.min(since.minNblocks.get(k) ?? snap?.nblocks ?? 0, snap?.nblocks ?? 0);
          const h = eng.relation(rel(relNumber), { storage: 'md' });
          if (!(await h.exists(fork))) {
            if (snap) {
              t.lost++;
              fail(`md ${k} of checkpoint ${img.committed} is missing`);
            }
            continue;
          }
          const n = await h.nblocks(fork);
          if (n < minN) {
            t.lost++;
            fail(`md ${k} has ${n} blocks, checkpoint ${img.committed} had ${snap?.nblocks} (at least ${minN} promised)`);
          }
          for (let b = 0; b < n; b++) {
            const written = since.written.get(`${k}/${b}`);
            const allowed = new Set<string>(written ?? []);
            if (snap && b < snap.nblocks) allowed.add(snap.pages[b]!);
            if (b >= minN) allowed.add(ZERO_HASH);
            if (allowed.size === 0) continue; // beyond anything ever written (cannot happen; not promised)
            await readAndJudge(h, fork, b, allowed, written !== undefined, `${k} block ${b}`);
          }
        }

        // D4 on clog: segments of C_k exist; every status is C_k's or one set since.
        const xids = new Set([...base.clog.keys(), ...since.clog.keys()]);
        const xidsPerPage = 4 * SMALL_BS;
        const pagesChanged = new Set([...since.clog.keys()].map((x) => Math.floor(x / xidsPerPage)));
        for (const seg of new Set([...base.clog.keys()].map((x) => Math.floor(x / XIDS_PER_SEGMENT)))) {
          const p = `${DATA}/pg_xact/${seg.toString(16).toUpperCase().padStart(4, '0')}`;
          if (img.disk.readFileNow(p) === null) {
            t.lost++;
            fail(`clog segment ${p} of checkpoint ${img.committed} is missing`);
          }
        }
        for (const xid of xids) {
          if (img.mode === 'garbage' && pagesChanged.has(Math.floor(xid / xidsPerPage))) {
            t.slruSkipped++;
            continue;
          }
          const status = await eng.clog.getStatus(xid);
          t.xidsVerified++;
          const ok = new Set([base.clog.get(xid) ?? 0, ...(since.clog.get(xid) ?? [])]);
          if (!ok.has(status)) {
            t.lost++;
            fail(`clog xid ${xid} reads ${status}, allowed ${[...ok].join('/')}`);
          }
        }
      } finally {
        await eng.close();
      }
      // D3: check. A crash while the inactive slot was being rewritten leaves it damaged: check
      // reports it (it cannot tell that from media damage) and the next metadata switch rewrites it.
      const findings = (await checkVolume(VOL, { io: img.disk, checkPages: false })).filter((f) => {
        if (f.severity !== 'error') return false;
        if (f.part === `superblock slot ${1 - activeSlot}`) {
          t.interruptedSwitch++;
          return false;
        }
        return true;
      });
      if (findings.length > 0) {
        t.checkErrors++;
        fail(`check: ${findings.map((f) => `${f.part}: ${f.message}`).join('; ')}`);
      }

      async function readAndJudge(h: ReturnType<Engine['relation']>, fork: ForkNumber, b: number, allowed: Set<string>, writtenSince: boolean, what: string): Promise<void> {
        t.pagesVerified++;
        t.mdPages++;
        let page: Uint8Array;
        try {
          page = await h.read(fork, b);
        } catch (err) {
          // A torn page must fail its checksum, and only a page written since may be torn.
          if ((err as { code?: string }).code === 'CHECKSUM_MISMATCH' && writtenSince) {
            t.mdTornDetected++;
            return;
          }
          t.lost++;
          fail(`${what}: read failed: ${(err as Error).message}`);
          return;
        }
        const verdict = judgePage(page, allowed, model.images);
        if (verdict === 'ok') return;
        if (verdict === 'torn-returned') t.mdTornReturned++;
        else t.lost++;
        fail(`${what}: ${verdict}`);
      }
    };

    let ioCalls = 0;
    let verifying: Promise<void> = Promise.resolve();
    disk.beforeCall = async (index, kind, path) => {
      ioCalls = index;
      const base = { index, committed: model.committed, inflight: model.inflight, tombstones: [...tombstones].sort() };
      const batch: Image[] = [];
      const add = (img: Image) => {
        t.crashImages++;
        const k = imageKey(img);
        if (seen.has(k)) return;
        seen.add(k);
        batch.push(img);
      };
      if (disk.pendingCount === 0) add({ ...base, mode: 'any', seed: 0, disk: disk.crash('drop', 1) });
      else for (const mode of CRASH_MODES) for (let seed = 1; seed <= SEEDS; seed++) add({ ...base, mode, seed, disk: disk.crash(mode, seed) });
      // Images in this call are taken before the unlink runs: the tombstone must be in them.
      if (kind === 'unlink') tombstones.delete(path);
      // Verify in order, one image at a time, while this call waits.
      const run = verifying.then(async () => {
        for (const img of batch) await verify(img);
      });
      verifying = run;
      await run;
    };

    for (const step of steps) await step();
    disk.beforeCall = undefined;
    await verifying;
    await engine.close();

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(
      `crash-matrix: io-calls=${ioCalls} modes=${CRASH_MODES.length} seeds=${SEEDS} states=${t.states} pages-verified=${t.pagesVerified} lost=${t.lost} ` +
        `volume: pages=${t.volumePages} torn-detected=${t.volumeTornDetected} torn-returned=${t.volumeTornReturned} meta-mixed=${t.volumeMetaMixed} ` +
        `md: pages=${t.mdPages} torn-detected=${t.mdTornDetected} torn-returned=${t.mdTornReturned} reopen-failed=${t.reopenFailed} check-errors=${t.checkErrors}`,
    );
    console.log(
      `crash-matrix detail: crash-images=${t.crashImages} distinct=${t.states} xids-verified=${t.xidsVerified} slru-garbage-skipped=${t.slruSkipped} ` +
        `tombstone-checks=${t.tombstoneChecks} drops-finished-at-reopen=${t.placeholdersRemoved} interrupted-switch-slot-reported=${t.interruptedSwitch} chose-completing=${t.choseCompleting} time=${seconds}s`,
    );
    expect(failures.slice(0, 10)).toEqual([]);
    expect(t.lost).toBe(0);
    // The volume is copy-on-write: every crash state is exactly one checkpoint, never torn.
    expect(t.volumeTornDetected).toBe(0);
    expect(t.volumeTornReturned).toBe(0);
    expect(t.volumeMetaMixed).toBe(0);
    expect(t.volumePages).toBeGreaterThan(0);
    // md writes in place: a torn page must fail its checksum (detected), never come back as data.
    expect(t.mdTornReturned).toBe(0);
    expect(t.mdTornDetected).toBeGreaterThan(0);
    expect(t.reopenFailed).toBe(0);
    expect(t.checkErrors).toBe(0);
    expect(t.choseCompleting).toBeGreaterThan(0);
    expect(t.tombstoneChecks).toBeGreaterThan(0);
    expect(t.placeholdersRemoved).toBeGreaterThan(0);
    expect([...tombstones], 'the tombstone\'s unlink call was seen').toEqual([]);
    expect(disk.readFileNow(`${DATA}/base/5/${m2.relNumber}`)).toBeNull();
  });
});
