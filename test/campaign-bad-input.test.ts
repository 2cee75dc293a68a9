/**
 * Goal: bad input on the volume open path (reliability-anchors 8(d)): every
 * single-bit flip of both superblocks and of the used bytes of every page of the active catalog
 * (its index page and its leaf) of a small volume, and a random-mutation fuzz of
 * LAMSTORE_FUZZ_IMAGES images (CI 1000; soak 20000), either open to a state that check accepts
 * or are refused with a LamstoreError; never a TypeError/RangeError (or any other untyped
 * error), never a hang, never an allocation sized by a corrupt field, and the file is never
 * modified. Plus the open-path cases of 8(d) that test/volume-bad-input.test.ts does not cover
 * (FIFO, dangling symlink, 64-bit fields above 2^53 other than the volume size, a catalog page
 * whose generation is newer than its superblock's).
 *
 * Method: each image is put on a fresh SimDisk and run through three entry points:
 * openVolumeReadOnly (what `inspect` shows), checkVolume (`check`), and a read-write
 * Volume.open + checkInvariants + close. Each call is raced against a 2 s timer (a hang guard,
 * not a timing assertion: one open of a 256 KiB image on SimDisk takes milliseconds) and the
 * process RSS is sampled after it (an allocation sized by a corrupt 32/64-bit field would be
 * hundreds of MB). The image's sha256 is compared before and after.
 *
 * Definitions (counted in the figure line):
 *  - untyped error: any throw from those three calls that is not a LamstoreError.
 *  - detected: open refused with a LamstoreError, or check reports at least one error.
 *  - harmless: opens, check reports nothing, and the visible state equals the original's.
 *  - undetected: opens (read-only and read-write alike), check reports no error, and the
 *    visible state differs from the original image's. The visible state is what
 *    openVolumeReadOnly reports about geometry and contents: block size, volume size, active
 *    generation and slot, the catalog's pages (index block, page counts, every page's block),
 *    and every fork (locator, fork, nblocks, extents). Slot details of the inactive slot are excluded: a damaged inactive slot is
 *    either reported by check (detected) or changes nothing a reader sees.
 *    Fuzz images whose mutation was forged with recomputed CRCs (a field rewritten, then the
 *    CRCs fixed, so the value reaches validation) are not counted as undetected when they open
 *    cleanly to a changed state: such a catalog is valid by construction, no checksum can tell
 *    it from a real one; they count as forged-valid-accepted. A forged catalog page has every
 *    CRC above it fixed too (index entry or previous index page, superblock: F3). Bit flips and raw byte
 *    mutations carry no recomputed CRC and count fully.
 *  - accepted-bad (fuzz): opens, but check reports an error other than "superblock slot N" for
 *    the slot open did not use (that one is the documented fallback case, 8(d)). Except, for a
 *    forged image, page checksum mismatches: a forged extent start that still lies in the volume
 *    and overlaps nothing names other blocks as the fork's pages; the catalog is valid by
 *    construction (as for forged-valid-accepted), so only the pages can tell, and check --pages
 *    names every one of them (forged-caught-by-page-check; found by the 20,000-image soak, 6 of
 *    them, never in the CI's 1000).
 * Bit flips in the part of each superblock block past its 128 CRC'd bytes are provably
 * harmless (decodeSuperblock reads only SUPERBLOCK_BYTES, F2); they are sampled (every 61st
 * byte), not flipped exhaustively, and counted apart. The opposite holds for a catalog page: its
 * CRC covers the whole block (F3), so a flip in the unused rest of a page must be refused; those
 * are sampled the same way (every 61st byte) and must all be refused.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Engine, LamstoreError, RealIO } from '../engine/index.js';
import { SimDisk, prng } from '../engine/testing.js';
import { Volume, checkVolume, openVolumeReadOnly, volumeExtension } from '../volume/index.js';
import type { VolumeInfo } from '../volume/index.js';
import { INDEX_ENTRY_BYTES, PAGE_HEADER_BYTES, SUPERBLOCK_BYTES, decodeIndexPage, decodeLeafPage, encodeIndexPage, itemBytes } from '../volume/format.js';
import { SB_FIELD, blockOf, catalogLayout, fixCatalogCrcs, fixSlotCrc, hashFile, makePage, openVolumeEngine, rel, rewriteLeaf, sha256 } from './helpers/volume.js';
import type { CatalogLayout } from './helpers/volume.js';
import { tempDir } from './helpers/index.js';
import { SMALL_BS } from './helpers/engine.js';

const PATH = '/v/lam.vol';
const SOAK = process.env.LAMSTORE_SOAK !== undefined && process.env.LAMSTORE_SOAK !== '';
const FUZZ_IMAGES = Number(process.env.LAMSTORE_FUZZ_IMAGES ?? (SOAK ? 20000 : 1000));
const HANG_GUARD_MS = 2000;
const RSS_JUMP_MAX_BYTES = 200 * 1024 * 1024;

/**
 * A small valid volume: three forks over two relations, both slots valid (generation >= 2). 512
 * KiB (128 blocks): the volume keeps free a block for every page the engine's 256 buffers could
 * hold dirty (volume.ts V5), so 256 KiB no longer holds these 24 pages and their growth.
 */
async function makeImage(): Promise<Uint8Array> {
  const disk = new SimDisk();
  await disk.mkdir('/v');
  const ve = await openVolumeEngine({ io: disk, dataDir: '/data', path: PATH, create: { sizeBytes: 512 * 1024 } });
  await ve.smgr.create(rel(1), 0);
  await ve.smgr.create(rel(1), 1);
  await ve.smgr.create(rel(2), 0);
  for (let b = 0; b < 10; b++) await ve.smgr.extend(rel(1), 0, b, makePage(rel(1), 0, b));
  for (let b = 0; b < 2; b++) await ve.smgr.extend(rel(1), 1, b, makePage(rel(1), 1, b));
  for (let b = 0; b < 12; b++) await ve.smgr.extend(rel(2), 0, b, makePage(rel(2), 0, b));
  await ve.engine.checkpoint();
  await ve.smgr.truncate(rel(2), 0, 9);
  await ve.engine.close();
  return disk.readFileNow(PATH)!;
}

function visibleState(info: VolumeInfo): string {
  return JSON.stringify({
    bs: info.blockSizeBytes,
    size: info.volumeSizeBytes,
    gen: info.generation,
    slot: info.activeSlot,
    catalog: info.catalog,
    forks: info.forks.map((f) => [f.spcOid, f.dbOid, f.relNumber, f.fork, f.nblocks, f.extents]),
  });
}

class HangError extends Error {}

async function guarded<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new HangError(`${what} did not finish in ${HANG_GUARD_MS} ms`)), HANG_GUARD_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

interface Outcome {
  /** null when the read-only open was refused. */
  info: VolumeInfo | null;
  rwOpened: boolean;
  checkErrors: string[];
  untyped: string[];
  hang: boolean;
  modified: boolean;
  rssJumpBytes: number;
}

/** Run one image through inspect, check and a read-write open (see the header). */
async function examine(image: Uint8Array, fileBytes: Uint8Array = image): Promise<Outcome> {
  const disk = new SimDisk();
  await disk.mkdir('/v');
  disk.putFile(PATH, fileBytes);
  const before = sha256(fileBytes);
  const rss0 = process.memoryUsage.rss();
  const out: Outcome = { info: null, rwOpened: false, checkErrors: [], untyped: [], hang: false, modified: false, rssJumpBytes: 0 };
  const classify = (where: string, err: unknown) => {
    if (err instanceof HangError) out.hang = true;
    else if (!(err instanceof LamstoreError)) out.untyped.push(`${where}: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  };
  try {
    out.info = await guarded('openVolumeReadOnly', () => openVolumeReadOnly(PATH, { io: disk }));
  } catch (err) {
    classify('inspect', err);
  }
  try {
    const findings = await guarded('checkVolume', () => checkVolume(PATH, { io: disk, checkPages: true }));
    out.checkErrors = findings.filter((f) => f.severity === 'error').map((f) => `${f.part}: ${f.message}`);
  } catch (err) {
    classify('check', err);
    out.checkErrors = ['check refused'];
  }
  try {
    await guarded('Volume.open', async () => {
      const v = await Volume.open({ io: disk, path: PATH });
      try {
        v.checkInvariants();
        out.rwOpened = true;
      } finally {
        await v.close();
      }
    });
  } catch (err) {
    classify('open', err);
  }
  out.rssJumpBytes = process.memoryUsage.rss() - rss0;
  out.modified = sha256(disk.readFileNow(PATH) ?? new Uint8Array(0)) !== before;
  if (disk.openHandleCount !== 0) out.untyped.push(`${disk.openHandleCount} handles left open`);
  return out;
}

interface Tally {
  cases: number;
  bitflips: number;
  paddingFlips: number;
  pageTailFlips: number;
  fuzzImages: number;
  refused: number;
  fellBack: number;
  harmless: number;
  detected: number;
  undetected: number;
  acceptedBad: number;
  forgedAccepted: number;
  forgedCaughtByPageCheck: number;
  untypedErrors: number;
  hangs: number;
  filesModified: number;
  rssJumpMaxBytes: number;
}

const tally: Tally = { cases: 0, bitflips: 0, paddingFlips: 0, pageTailFlips: 0, fuzzImages: 0, refused: 0, fellBack: 0, harmless: 0, detected: 0, undetected: 0, acceptedBad: 0, forgedAccepted: 0, forgedCaughtByPageCheck: 0, untypedErrors: 0, hangs: 0, filesModified: 0, rssJumpMaxBytes: 0 };
const failures: string[] = [];

/** Count one outcome; returns it for extra checks. */
function record(what: string, o: Outcome, original: string, forged = false): Outcome {
  tally.cases++;
  tally.rssJumpMaxBytes = Math.max(tally.rssJumpMaxBytes, o.rssJumpBytes);
  if (o.untyped.length > 0) {
    tally.untypedErrors++;
    failures.push(`${what}: ${o.untyped.join('; ')}`);
  }
  if (o.hang) {
    tally.hangs++;
    failures.push(`${what}: hang`);
  }
  if (o.modified) {
    tally.filesModified++;
    failures.push(`${what}: file modified`);
  }
  if ((o.info !== null) !== o.rwOpened) failures.push(`${what}: read-only open ${o.info ? 'succeeded' : 'failed'} but read-write open ${o.rwOpened ? 'succeeded' : 'failed'}`);
  if (o.info === null) {
    tally.refused++;
    tally.detected++;
    return o;
  }
  const sameState = visibleState(o.info) === original;
  if (o.checkErrors.length > 0) tally.detected++;
  else if (sameState) tally.harmless++;
  else if (forged) tally.forgedAccepted++;
  else {
    tally.undetected++;
    failures.push(`${what}: opens, check is clean, visible state changed`);
  }
  if (!o.info.slots.every((s) => s.valid)) tally.fellBack++;
  // Open succeeded: check may only object to the slot open did not use (the fallback case).
  const inactive = `superblock slot ${1 - o.info.activeSlot}`;
  const other = o.checkErrors.filter((e) => !e.startsWith(`${inactive}:`));
  if (forged && other.length > 0 && other.every((e) => /: page checksum mismatch \(volume block \d+\)$/.test(e))) {
    tally.forgedCaughtByPageCheck++;
    return o;
  }
  if (other.length > 0) {
    tally.acceptedBad++;
    failures.push(`${what}: opens but check reports ${other.join('; ')}`);
  }
  return o;
}

/** The catalog pages of an image with the bytes of each that its counts use (the rest is zero). */
function catalogPages(image: Uint8Array, layout: CatalogLayout): { name: string; block: number; usedBytes: number }[] {
  const pages: { name: string; block: number; usedBytes: number }[] = [];
  layout.index.forEach((ip, k) => {
    const page = decodeIndexPage(blockOf(image, ip.block), PATH, 'index', layout.sb.generation);
    pages.push({ name: `index page ${k}`, block: ip.block, usedBytes: PAGE_HEADER_BYTES + page.entries.length * INDEX_ENTRY_BYTES });
  });
  layout.leaves.forEach((block, i) => {
    const page = decodeLeafPage(blockOf(image, block), PATH, 'leaf', layout.sb.generation);
    pages.push({ name: `leaf ${i}`, block, usedBytes: PAGE_HEADER_BYTES + page.items.reduce((n, it) => n + itemBytes(it.extents.length), 0) });
  });
  return pages;
}

const INTERESTING32 = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

describe('campaign: bad input on the volume open path', () => {
  it('every single-bit flip of both superblocks and the used bytes of every catalog page, and a random-mutation fuzz: typed refusal or a state check accepts; no hang, no big allocation, file unchanged', { timeout: SOAK ? 7_200_000 : 600_000 }, async () => {
    const started = Date.now();
    const maxRss0Kb = process.resourceUsage().maxRSS;
    const image = await makeImage();
    const original = await examine(image);
    expect(original.info).not.toBeNull();
    expect(original.checkErrors).toEqual([]);
    const originalState = visibleState(original.info!);
    const layout = catalogLayout(image);
    const slot = layout.sb.slot;
    const pages = catalogPages(image, layout);
    expect(pages.map((p) => p.name)).toEqual(['index page 0', 'leaf 0']);
    // Random bytes land in the metadata: the two superblock blocks and the catalog pages' blocks
    // (which lie after the data pages in this image; a damaged data page is check's business,
    // not the open path's).
    const metadataBlocks = [0, 1, ...pages.map((p) => p.block)];
    expect(original.info!.slots.every((s) => s.valid)).toBe(true);

    // Exhaustive flips: both superblocks' CRC'd bytes and the used bytes of every catalog page.
    const regions: [string, number, number][] = [
      ['slot 0', 0, SUPERBLOCK_BYTES],
      ['slot 1', SMALL_BS, SMALL_BS + SUPERBLOCK_BYTES],
      ...pages.map((p): [string, number, number] => [p.name, p.block * SMALL_BS, p.block * SMALL_BS + p.usedBytes]),
    ];
    for (const [name, from, to] of regions) {
      for (let byte = from; byte < to; byte++) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = image.slice();
          bad[byte]! ^= 1 << bit;
          tally.bitflips++;
          record(`flip ${name} byte ${byte - from} bit ${bit}`, await examine(bad), originalState);
        }
      }
    }
    // Sampled flips in the ignored rest of each superblock block (provably harmless, F2).
    for (const base of [0, SMALL_BS]) {
      for (let byte = base + SUPERBLOCK_BYTES; byte < base + SMALL_BS; byte += 61) {
        const bad = image.slice();
        bad[byte]! ^= 0x10;
        tally.paddingFlips++;
        const o = record(`flip superblock padding byte ${byte}`, await examine(bad), originalState);
        if (o.info === null || visibleState(o.info) !== originalState || o.checkErrors.length > 0) failures.push(`padding flip at ${byte} was not harmless`);
      }
    }
    // Sampled flips in the unused rest of each catalog page: the page's CRC covers them (F3).
    for (const p of pages) {
      for (let byte = p.usedBytes; byte < SMALL_BS; byte += 61) {
        const bad = image.slice();
        bad[p.block * SMALL_BS + byte]! ^= 0x08;
        tally.pageTailFlips++;
        const o = record(`flip ${p.name} unused byte ${byte}`, await examine(bad), originalState);
        if (o.info !== null) failures.push(`flip of ${p.name} unused byte ${byte} was not refused`);
      }
    }

    // Random mutations (seeded; the seed of a failing image is in its name).
    const kinds = ['raw-bytes', 'superblock-field', 'catalog-field', 'truncate', 'combo'] as const;
    for (let i = 0; i < FUZZ_IMAGES; i++) {
      const rand = prng(0x5eed + i);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const kind = kinds[i % kinds.length]!;
      let bad = image.slice();
      let forged = false;
      const mutateOnce = (k: (typeof kinds)[number]) => {
        if (k === 'raw-bytes') {
          const n = 1 + Math.floor(rand() * 8);
          for (let j = 0; j < n; j++) bad[pick(metadataBlocks) * SMALL_BS + Math.floor(rand() * SMALL_BS)] = Math.floor(rand() * 256);
        } else if (k === 'superblock-field') {
          // A 32-bit field of either slot set to an interesting value, CRC recomputed, so the
          // value gets past the CRC and reaches validation.
          const s = rand() < 0.7 ? slot : 1 - slot;
          const off = 4 * Math.floor(rand() * ((SUPERBLOCK_BYTES - 4) / 4));
          new DataView(bad.buffer, s * SMALL_BS, SUPERBLOCK_BYTES).setUint32(off, rand() < 0.5 ? pick(INTERESTING32) : Math.floor(rand() * 0x1_0000_0000), true);
          fixSlotCrc(bad, s);
          forged = true;
        } else if (k === 'catalog-field') {
          // A 32-bit field of the used part of a catalog page, every CRC above it recomputed.
          const p = pick(pages);
          const off = 4 * Math.floor(rand() * (p.usedBytes / 4));
          new DataView(bad.buffer, p.block * SMALL_BS, SMALL_BS).setUint32(off, rand() < 0.5 ? pick(INTERESTING32) : Math.floor(rand() * 0x1_0000_0000), true);
          fixCatalogCrcs(bad, layout);
          forged = true;
        } else if (k === 'truncate') {
          const cut = pick([0, 1, SUPERBLOCK_BYTES - 1, SUPERBLOCK_BYTES, SMALL_BS, SMALL_BS + 100, 2 * SMALL_BS, pick(pages).block * SMALL_BS + 10, image.length - SMALL_BS, Math.floor(rand() * image.length)]);
          bad = bad.slice(0, cut);
        } else {
          mutateOnce(pick(['raw-bytes', 'superblock-field', 'catalog-field'] as const));
          mutateOnce(pick(['raw-bytes', 'superblock-field', 'catalog-field'] as const));
        }
      };
      mutateOnce(kind);
      tally.fuzzImages++;
      record(`fuzz image ${i} (${kind}, seed ${0x5eed + i})`, await examine(bad), originalState, forged);
    }

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    // Peak RSS over the whole run (catches an allocation freed before the per-case sample).
    const peakJumpBytes = (process.resourceUsage().maxRSS - maxRss0Kb) * 1024;
    console.log(`bad-input: cases=${tally.cases} bitflips=${tally.bitflips} undetected=${tally.undetected} untyped-errors=${tally.untypedErrors} files-modified=${tally.filesModified}`);
    console.log(
      `bad-input detail: padding-flips=${tally.paddingFlips} page-tail-flips=${tally.pageTailFlips} fuzz-images=${tally.fuzzImages} refused=${tally.refused} fell-back-to-other-slot=${tally.fellBack} ` +
        `detected=${tally.detected} harmless=${tally.harmless} forged-valid-accepted=${tally.forgedAccepted} forged-caught-by-page-check=${tally.forgedCaughtByPageCheck} accepted-bad=${tally.acceptedBad} hangs=${tally.hangs} rss-jump-max=${(tally.rssJumpMaxBytes / 1024 / 1024).toFixed(1)}MiB peak-rss-growth=${(peakJumpBytes / 1024 / 1024).toFixed(1)}MiB time=${seconds}s`,
    );
    expect(failures.slice(0, 10)).toEqual([]);
    expect(tally.undetected).toBe(0);
    expect(tally.untypedErrors).toBe(0);
    expect(tally.filesModified).toBe(0);
    expect(tally.hangs).toBe(0);
    expect(tally.acceptedBad).toBe(0);
    expect(tally.rssJumpMaxBytes).toBeLessThan(RSS_JUMP_MAX_BYTES);
    expect(peakJumpBytes).toBeLessThan(RSS_JUMP_MAX_BYTES);
    expect(tally.refused).toBeGreaterThan(0);
    expect(tally.fellBack).toBeGreaterThan(0);
  });

  it('a FIFO and a dangling symlink instead of a volume file are refused with a LamstoreError naming the path; a symlink to a valid volume opens', async () => {
    const dir = await tempDir();
    const fifo = join(dir, 'fifo.vol');
    execFileSync('mkfifo', [fifo]);
    // stat before open: opening a FIFO for reading would block until a writer appears.
    const e1 = await guarded('open fifo', () => Volume.open({ io: new RealIO(), path: fifo })).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(LamstoreError);
    expect((e1 as LamstoreError).code).toBe('BAD_ARGUMENT');
    expect((e1 as Error).message).toContain(fifo);
    expect((e1 as Error).message).toMatch(/not a regular file/);
    const e1c = await guarded('check fifo', () => checkVolume(fifo)).catch((e: unknown) => e);
    expect(e1c).toBeInstanceOf(LamstoreError);

    const dangling = join(dir, 'dangling.vol');
    await symlink(join(dir, 'nowhere.vol'), dangling);
    const entryPoints: (() => Promise<unknown>)[] = [() => Volume.open({ io: new RealIO(), path: dangling }), () => openVolumeReadOnly(dangling), () => checkVolume(dangling)];
    for (const run of entryPoints) {
      const e = await guarded('open dangling', run).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(LamstoreError);
      expect((e as LamstoreError).code).toBe('IO_ERROR');
      expect((e as LamstoreError).errno).toBe('ENOENT');
      expect((e as Error).message).toContain(dangling);
    }
    // Through the engine too: nothing is created at the symlink's target.
    const viaEngine = await Engine.open({ dataDir: join(dir, 'data'), blockSize: SMALL_BS, preload: [volumeExtension({ path: dangling })] }).catch((e: unknown) => e);
    expect((viaEngine as LamstoreError).code).toBe('IO_ERROR');

    const real = join(dir, 'real');
    await mkdir(real);
    const target = join(real, 'lam.vol');
    await writeFile(target, await makeImage());
    const link = join(dir, 'link.vol');
    await symlink(target, link);
    const before = await hashFile(target);
    const info = await openVolumeReadOnly(link);
    expect(info.forks.length).toBe(3);
    expect(await checkVolume(link)).toEqual([]);
    expect(await hashFile(target)).toBe(before);
  });

  it('64-bit superblock fields above 2^53 (generation, index block, checkpoint time) and a catalog page whose generation is newer than its superblock are refused before use', async () => {
    const image = await makeImage();
    const layout = catalogLayout(image);
    const above53 = (field: number, value: bigint) => (img: Uint8Array) =>
      [0, 1].forEach((s) => {
        new DataView(img.buffer, s * SMALL_BS, SUPERBLOCK_BYTES).setBigUint64(field, value + BigInt(s), true);
        fixSlotCrc(img, s);
      });
    const cases: [string, (img: Uint8Array) => void, RegExp][] = [
      ['generation', above53(SB_FIELD.generation, 1n << 60n), /2\^53/],
      ['index block', above53(SB_FIELD.indexBlock, 1n << 55n), /2\^53/],
      ['checkpoint time', above53(SB_FIELD.timeMs, 1n << 62n), /2\^53/],
      [
        'leaf generation',
        (img) => {
          rewriteLeaf(img, layout, 0, (p) => void (p.generation = layout.sb.generation + 2));
          fixCatalogCrcs(img, layout);
        },
        /catalog leaf 0 at block \d+ has generation \d+, newer than its superblock's \d+/,
      ],
      [
        'index page generation',
        (img) => {
          const block = layout.index[0]!.block;
          const page = decodeIndexPage(blockOf(img, block), PATH, 'index', layout.sb.generation);
          img.set(encodeIndexPage({ ...page, generation: layout.sb.generation + 1 }, SMALL_BS), block * SMALL_BS);
          fixCatalogCrcs(img, layout);
        },
        /catalog index page 0 at block \d+ has generation \d+, newer than its superblock's \d+/,
      ],
    ];
    const dir = await tempDir();
    for (const [name, mutate, pattern] of cases) {
      const bad = image.slice();
      mutate(bad);
      const path = join(dir, `${name.replace(/ /g, '-')}.vol`);
      await writeFile(path, bad);
      const before = await hashFile(path);
      const err = await Volume.open({ io: new RealIO(), path }).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(LamstoreError);
      expect((err as LamstoreError).code, name).toBe('VOLUME_CORRUPT');
      expect((err as Error).message, name).toContain(path);
      expect((err as Error).message, name).toMatch(pattern);
      expect((await checkVolume(path)).some((f) => f.severity === 'error' && pattern.test(f.message)), name).toBe(true);
      expect(await hashFile(path)).toBe(before);
      expect(Buffer.compare(await readFile(path), bad)).toBe(0);
    }
  });
});
