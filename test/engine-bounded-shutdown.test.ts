/**
 * Goal: `engine.close({ timeoutMs })` on a real engine, on md and on the volume (checkpointer K5,
 * README "Durability: bounded shutdown"): with a disk too slow to finish the shutdown checkpoint
 * in time, close rejects with TIMEOUT just past the bound, prints progress through onLog even
 * for a bound under one second, counts in its message exactly the pages it did not write, leaves
 * the data directory unclean, and loses nothing the last completed checkpoint made durable.
 * Method: SimDisk behind SlowWriteIO, whose writes move a ManualClock (the engine's clock) by
 * 1 ms per block once the test makes it slow, so the deadline is met at exact, repeatable points
 * and nothing depends on wall-clock time. Pages carry a version byte: v1 is what the completed
 * checkpoint made durable, v2 what was dirty in the buffer pool when close was called. After the
 * timed-out close the same disk is reopened (a process restart: unsynced writes kept) and a
 * power-loss image of it (SimDisk.crash('drop')) is opened too.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ForkNumber, LamstoreError } from '../engine/index.js';
import { ManualClock, SimDisk, WRITE_COMBINE_MAX_BLOCKS, BOUNDED_WRITE_BLOCKS_MAX } from '../engine/testing.js';
import type { EngineOptions, Extension, FileIO } from '../engine/index.js';
import { volumeExtension } from '../volume/index.js';
import { SlowWriteIO } from './helpers/io-doubles.js';
import { onDisk, withEngine, SMALL_BS, REL, pageOf, fillOf } from './helpers/engine.js';

const MS_PER_BLOCK = 1;
/** Blocks the relation has, all v1 at the completed checkpoint. */
const NBLOCKS = 240;
/**
 * Blocks 0..DIRTY-1 are rewritten (v2) before close: fewer than one BufferSync batch
 * (WRITE_COMBINE_MAX_BLOCKS), the case where the volume used to hand its whole write phase to
 * one batch and so could not stop before it had written everything.
 */
const DIRTY = 200;
/** Writing DIRTY blocks takes DIRTY ms; the bound allows a quarter of that. */
const BOUND_MS = 50;
const VOLUME_PATH = '/vol/lam.vol';

type Storage = 'md' | 'volume';

/** Version `version` of a page: every byte is the version. */
const page = (version: number) => pageOf(version, SMALL_BS);

function preload(storage: Storage): Extension[] {
  return storage === 'volume' ? [volumeExtension({ path: VOLUME_PATH, create: { sizeBytes: 8 * 1024 * 1024 } })] : [];
}

function boundedOptions(io: FileIO, storage: Storage, extra: { clock?: ManualClock; onLog?: (line: string) => void } = {}): EngineOptions {
  // relSegBlocks 128: md's relation spans two segments, as any real one of size does.
  return onDisk(io, { blockSize: SMALL_BS, sharedBuffers: 512, relSegBlocks: 128, preload: preload(storage), ...extra });
}

interface BoundedClose {
  disk: SimDisk;
  error: unknown;
  /** Clock time from the close call to its rejection. */
  elapsedMs: number;
  lines: string[];
  blocksWrittenByClose: number;
}

/** A completed checkpoint of NBLOCKS v1 pages, DIRTY of them rewritten, then a slow bounded close. */
async function boundedClose(storage: Storage): Promise<BoundedClose> {
  const disk = new SimDisk();
  await disk.mkdir('/vol');
  const clock = new ManualClock(0);
  // Data files only: the control file's 512-byte records are not pages the figures count.
  const io = new SlowWriteIO(disk, clock, MS_PER_BLOCK, SMALL_BS, (path) => !path.endsWith('/lam_control'));
  const lines: string[] = [];
  const engine = await Engine.open(boundedOptions(io, storage, { clock, onLog: (l) => lines.push(l) }));
  const rel = engine.relation(REL, { storage });
  await rel.create(ForkNumber.MAIN);
  for (let b = 0; b < NBLOCKS; b++) await rel.extend(ForkNumber.MAIN, page(1));
  await engine.checkpoint();
  for (let b = 0; b < DIRTY; b++) await rel.write(ForkNumber.MAIN, b, page(2));
  expect(engine.bufferPool.dirtyCount()).toBe(DIRTY);

  io.slow = true;
  const start = clock.now();
  const error = await engine.close({ timeoutMs: BOUND_MS }).then(
    () => null,
    (e: unknown) => e,
  );
  return { disk, error, elapsedMs: clock.now() - start, lines, blocksWrittenByClose: io.slowBlocksWritten };
}

/** Versions of every block of the relation, read through a fresh engine on `disk`. */
async function reopenAndRead(disk: SimDisk, storage: Storage): Promise<{ uncleanStop: boolean; versions: number[] }> {
  return withEngine(boundedOptions(disk, storage), async (engine) => {
    const rel = engine.relation(REL, { storage });
    expect(await rel.nblocks(ForkNumber.MAIN)).toBe(NBLOCKS);
    const versions: number[] = [];
    for (let b = 0; b < NBLOCKS; b++) versions.push(fillOf(await rel.read(ForkNumber.MAIN, b)));
    return { uncleanStop: engine.openStats.uncleanStop, versions };
  });
}

function pagesLeftIn(error: unknown): number {
  const m = /\((?:stopped [^,]+), (\d+) pages left unwritten\)/.exec((error as Error).message);
  expect(m, `pages-left figure in: ${(error as Error).message}`).not.toBeNull();
  return Number(m![1]);
}

describe.each<Storage>(['md', 'volume'])('bounded close on %s with a slow disk', (storage) => {
  it('rejects with TIMEOUT at the first write boundary past the bound, not after writing everything', async () => {
    const r = await boundedClose(storage);
    expect(r.error).toBeInstanceOf(LamstoreError);
    expect(r.error).toMatchObject({ code: 'TIMEOUT' });
    expect((r.error as Error).message).toMatch(new RegExp(`^/data: shutdown checkpoint did not finish within ${BOUND_MS} ms \\(stopped in the write phase, \\d+ pages left unwritten\\); the data directory is left unclean$`));
    // Past the bound (it stops only once the deadline has passed), and by at most one write
    // boundary's worth of blocks: well before the DIRTY ms that writing everything takes.
    expect(r.elapsedMs).toBeGreaterThan(BOUND_MS);
    expect(r.elapsedMs).toBeLessThanOrEqual(BOUND_MS + BOUNDED_WRITE_BLOCKS_MAX * MS_PER_BLOCK);
    expect(r.blocksWrittenByClose).toBeLessThan(DIRTY);
    expect(BOUNDED_WRITE_BLOCKS_MAX).toBeLessThan(WRITE_COMBINE_MAX_BLOCKS);
  });

  it('its "pages left unwritten" figure is exactly the number of dirty pages it did not write', async () => {
    const r = await boundedClose(storage);
    const left = pagesLeftIn(r.error);
    expect(left).toBeGreaterThan(0);
    expect(DIRTY - left).toBe(r.blocksWrittenByClose);
    const after = await reopenAndRead(r.disk, storage);
    if (storage === 'md') {
      // A process restart keeps the writes the close made (unsynced, in the page cache, in
      // place): the rewritten blocks still at v1 are the ones it did not write.
      const notWritten = after.versions.slice(0, DIRTY).filter((v) => v === 1).length;
      expect(notWritten).toBe(left);
    } else {
      // Copy-on-write: the pages the close wrote went to new blocks that no published map names,
      // so a restart reads the last completed checkpoint, whole.
      expect(after.versions).toEqual(new Array<number>(NBLOCKS).fill(1));
    }
  });

  it('leaves the data directory unclean, and a power loss after it keeps every page of the completed checkpoint', async () => {
    const r = await boundedClose(storage);
    expect(r.error).toMatchObject({ code: 'TIMEOUT' });
    // Power loss right after the timed-out close: nothing it wrote was synced.
    const lost = await reopenAndRead(r.disk.crash('drop'), storage);
    expect(lost.uncleanStop).toBe(true);
    expect(lost.versions).toEqual(new Array<number>(NBLOCKS).fill(1));
    // Process restart: unclean too; md: each rewritten block is old or new, the rest untouched;
    // the volume: exactly the completed checkpoint (copy-on-write, DESIGN.md section 8).
    const restarted = await reopenAndRead(r.disk, storage);
    expect(restarted.uncleanStop).toBe(true);
    if (storage === 'md') for (const v of restarted.versions.slice(0, DIRTY)) expect([1, 2]).toContain(v);
    else expect(restarted.versions.slice(0, DIRTY)).toEqual(new Array<number>(DIRTY).fill(1));
    expect(restarted.versions.slice(DIRTY)).toEqual(new Array<number>(NBLOCKS - DIRTY).fill(1));
  });

  it(`prints progress through onLog before the TIMEOUT with a bound of ${BOUND_MS} ms (under one second)`, async () => {
    const r = await boundedClose(storage);
    expect(r.error).toMatchObject({ code: 'TIMEOUT' });
    const progress = r.lines.filter((l) => /^shutdown checkpoint: \d+ pages left, \d+% written, [\d.]+ MiB\/s$/.test(l));
    expect(progress.length).toBeGreaterThanOrEqual(1);
    // Each line's count is the pages still dirty then: fewer than were dirty, never more.
    for (const l of progress) expect(Number(/: (\d+) pages left/.exec(l)![1])).toBeLessThan(DIRTY);
  });
});
