/**
 * Goal: the snapshot commands (cli/snapshot.ts N1-N3) under their exact names: `lamstore snapshot
 * create|list|drop`, `lamstore rollback`, `lamstore clone`. They work on a volume no engine holds:
 * a snapshot reads back as taken after the volume changed, `list` (text and --json) shows name,
 * generation, time and the blocks each holds alone, `drop` frees them, `rollback` brings the
 * snapshot's pages back and keeps it, `clone` writes a new compact volume with the snapshot's
 * forks (each fork one extent) and leaves the source unchanged. A bad, taken or missing name
 * and a clone target that exists are exit 2, one line, the volume unchanged byte for byte; a
 * volume an engine holds is VOLUME_LOCKED, exit 1; a stop signal during a clone removes the new
 * file. `check` validates every snapshot's catalog (a damaged snapshot page is a finding, exit
 * 1) and that no two maps share a block they should not; `inspect` lists the snapshots.
 * Method: spawn the built bin in a temp dir on volumes made in this process (helpers/cli.ts);
 * pages read back through an in-process engine; file hashes before and after; damage is made
 * by rewriting one page of the snapshot's catalog with every parent CRC fixed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ForkNumber, RealIO, crc32c } from '../engine/index.js';
import { examineVolume } from '../volume/index.js';
import { decodeIndexPage, decodeLeafPage, decodeSuperblock, encodeIndexPage, encodeLeafPage, encodeSuperblock } from '../volume/format.js';
import { decodeSnapshotTablePage, encodeSnapshotTable } from '../volume/snapshots.js';
import { tempDir } from './helpers/index.js';
import { hashFile, makePage, openVolumeEngine, rel } from './helpers/volume.js';
import { BIN, builtBinMissing, expectRefusal, holdVolume, lamstore, makeVolume } from './helpers/cli.js';
import { SMALL_BS } from './helpers/engine.js';

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

interface ListDoc {
  volume: string;
  snapshots: { name: string; generation: number; checkpointTimeMs: number; createdMs: number; blocks: number; exclusiveBlocks: number; forkCount: number }[];
}

async function mustRun(args: string[], dir: string): Promise<void> {
  const r = await lamstore(args, dir);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
}

async function listJson(dir: string, file = 'vol.lam'): Promise<ListDoc> {
  const r = await lamstore(['snapshot', 'list', file, '--json'], dir);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ListDoc;
}

/** Rewrite `count` pages of relation 16384 with `version`, through an engine, and close it (a checkpoint). */
async function changeVolume(dir: string, version: number, count = 10, file = 'vol.lam'): Promise<void> {
  // A small pool: V5 keeps a block per pool page free besides the live blocks the snapshot shares.
  const { engine, smgr } = await openVolumeEngine({ dataDir: join(dir, `${file}.data`), path: join(dir, file), sharedBuffers: 16 });
  const r = rel(16384);
  await smgr.writeBuffers(
    Array.from({ length: count }, (_, b) => ({ rel: r, fork: ForkNumber.MAIN, blockNum: b, page: makePage(r, ForkNumber.MAIN, b, version) })),
    'eviction',
  );
  await engine.close();
}

/** Page b of relation 16384 reads back as `version` (0..count-1 checked). */
async function expectVersion(dir: string, version: number, count = 10, file = 'vol.lam'): Promise<void> {
  const { engine, smgr } = await openVolumeEngine({ dataDir: join(dir, `${file}.data2`), path: join(dir, file), sharedBuffers: 16 });
  const r = rel(16384);
  const buf = new Uint8Array(SMALL_BS);
  for (let b = 0; b < count; b++) {
    await smgr.read(r, ForkNumber.MAIN, b, buf);
    expect(Buffer.from(buf).equals(Buffer.from(makePage(r, ForkNumber.MAIN, b, version))), `${file} block ${b}`).toBe(true);
  }
  await engine.close();
}

describe('lamstore snapshot create | list | drop, rollback', () => {
  it('create, list (text and --json) with exclusive blocks, rollback brings the pages back and keeps the snapshot, drop frees its blocks', async () => {
    const dir = await tempDir();
    await makeVolume(dir);
    let r = await lamstore(['snapshot', 'create', 'vol.lam', 'base'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^created snapshot base of vol\.lam: generation \d+, \d+ blocks/);
    expect(r.stderr).toBe('');
    let doc = await listJson(dir);
    expect(doc.snapshots).toHaveLength(1);
    expect(doc.snapshots[0]).toMatchObject({ name: 'base', forkCount: 4, exclusiveBlocks: 0 });
    await changeVolume(dir, 2);
    doc = await listJson(dir);
    // The 10 rewritten pages and the catalog pages replaced since are the snapshot's alone.
    expect(doc.snapshots[0]!.exclusiveBlocks).toBeGreaterThanOrEqual(10);
    expect(doc.snapshots[0]!.exclusiveBlocks).toBeLessThanOrEqual(12);
    r = await lamstore(['snapshot', 'list', 'vol.lam'], dir);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^snapshot\s+generation\s+taken\s+blocks\s+exclusive\nbase\s+\d+\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+\d+\s+1[012]\n$/);
    const inspect = await lamstore(['inspect', 'vol.lam'], dir);
    expect(inspect.stdout).toMatch(/\nsnapshots\s+1, holding \d+ blocks/);
    expect(inspect.stdout).toMatch(/\nbase\s+\d+\s+\S+\s+\d+\s+1[012]\n/);
    const map = await lamstore(['map', 'vol.lam', '--width', '64'], dir);
    expect(map.code, map.stderr).toBe(0);
    expect(map.stdout).toMatch(/\* +held by snapshots only/);
    const inspectDoc = JSON.parse((await lamstore(['inspect', 'vol.lam', '--json'], dir)).stdout) as { snapshots: { name: string; exclusiveBlocks: number }[] };
    expect(inspectDoc.snapshots.map((s) => s.name)).toEqual(['base']);
    expect((await lamstore(['check', 'vol.lam', '--pages'], dir)).code).toBe(0);

    r = await lamstore(['rollback', 'vol.lam', 'base', '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ volume: 'vol.lam', rolledBackTo: 'base' });
    await expectVersion(dir, 1);
    expect((await listJson(dir)).snapshots.map((s) => s.name)).toEqual(['base']);
    expect((await lamstore(['check', 'vol.lam', '--pages'], dir)).code).toBe(0);

    const freeBefore = (JSON.parse((await lamstore(['inspect', 'vol.lam', '--json'], dir)).stdout) as { freeBlocks: number }).freeBlocks;
    await changeVolume(dir, 3);
    const exclusive = (await listJson(dir)).snapshots[0]!.exclusiveBlocks;
    const freeChanged = (JSON.parse((await lamstore(['inspect', 'vol.lam', '--json'], dir)).stdout) as { freeBlocks: number }).freeBlocks;
    expect(freeChanged).toBe(freeBefore - exclusive);
    r = await lamstore(['snapshot', 'drop', 'vol.lam', 'base'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`dropped snapshot base of vol.lam: ${exclusive} blocks it alone held are free\n`);
    const after = JSON.parse((await lamstore(['inspect', 'vol.lam', '--json'], dir)).stdout) as { freeBlocks: number; snapshots: unknown[] };
    expect(after.snapshots).toEqual([]);
    expect(after.freeBlocks).toBe(freeChanged + exclusive + 1); // and the table page
    expect((await lamstore(['snapshot', 'list', 'vol.lam'], dir)).stdout).toBe('no snapshots in vol.lam\n');
    await expectVersion(dir, 3);
  });

  it('a bad, taken or missing name is exit 2 with one line, and the volume is unchanged byte for byte', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await mustRun(['snapshot', 'create', 'vol.lam', 'a'], dir);
    const before = await hashFile(path);
    const cases: [string[], RegExp][] = [
      [['snapshot', 'create', 'vol.lam', '.dot'], /bad snapshot name "\.dot"/],
      [['snapshot', 'create', 'vol.lam', 'a/b'], /bad snapshot name/],
      [['snapshot', 'create', 'vol.lam', 'x'.repeat(64)], /bad snapshot name/],
      [['snapshot', 'create', 'vol.lam', 'a'], /a snapshot named a exists already/],
      [['snapshot', 'drop', 'vol.lam', 'b'], /no snapshot named b in the volume \(it has a\)/],
      [['rollback', 'vol.lam', 'b'], /no snapshot named b/],
      [['rollback', 'vol.lam', '-x'], /./],
      [['clone', 'vol.lam', 'b', 'copy.lam'], /no snapshot named b/],
      [['snapshot', 'create', 'vol.lam'], /missing required argument/],
    ];
    for (const [args, problem] of cases) {
      const r = await lamstore(args, dir);
      expectRefusal(r, 2, 'vol.lam', problem);
      expect(await hashFile(path), args.join(' ')).toBe(before);
    }
    expect(existsSync(join(dir, 'copy.lam'))).toBe(false);
    const json = await lamstore(['snapshot', 'drop', 'vol.lam', 'zz', '--json'], dir);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'BAD_ARGUMENT' } });
  });

  it('a volume an engine holds is VOLUME_LOCKED, exit 1, unchanged; a missing volume is exit 1', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await mustRun(['snapshot', 'create', 'vol.lam', 'a'], dir);
    const before = await hashFile(path);
    const holder = await holdVolume(path, join(dir, 'holder'));
    try {
      for (const args of [
        ['snapshot', 'create', 'vol.lam', 'b'],
        ['snapshot', 'list', 'vol.lam'],
        ['snapshot', 'drop', 'vol.lam', 'a'],
        ['rollback', 'vol.lam', 'a'],
        ['clone', 'vol.lam', 'a', 'copy.lam'],
      ]) {
        const r = await lamstore(args, dir);
        expectRefusal(r, 1, 'vol.lam', /volume is locked/);
      }
    } finally {
      await holder.release();
    }
    expect(existsSync(join(dir, 'copy.lam'))).toBe(false);
    expect(await hashFile(path)).toBe(before);
    expectRefusal(await lamstore(['snapshot', 'list', 'nope.lam'], dir), 1, 'nope.lam', /no such file/);
  });
});

describe('lamstore clone', () => {
  it("writes a new compact volume holding the snapshot's forks, each fork one extent; the source is unchanged; a target that exists is exit 2", async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await mustRun(['snapshot', 'create', 'vol.lam', 'base'], dir);
    await changeVolume(dir, 2);
    const before = await hashFile(path);
    const r = await lamstore(['clone', 'vol.lam', 'base', 'copy.lam', '--json'], dir);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { forks: number; dataBlocks: number; sizeBytes: number };
    expect(doc).toMatchObject({ volume: 'vol.lam', snapshot: 'base', clone: 'copy.lam', forks: 4, dataBlocks: 40 + 3 + 12 + 35 });
    expect(await hashFile(path)).toBe(before);
    const info = JSON.parse((await lamstore(['inspect', 'copy.lam', '--json', '--relations'], dir)).stdout) as { forks: { nblocks: number; extents: unknown[] }[]; snapshots: unknown[]; volumeSizeBytes: number };
    expect(info.forks.map((f) => f.extents.length)).toEqual([1, 1, 1, 1]);
    expect(info.snapshots).toEqual([]);
    expect(info.volumeSizeBytes).toBe(doc.sizeBytes);
    expect((await lamstore(['check', 'copy.lam', '--pages'], dir)).code).toBe(0);
    await expectVersion(dir, 1, 40, 'copy.lam');
    await expectVersion(dir, 2, 10, 'vol.lam');
    // The clone is a volume like any: it takes writes.
    await changeVolume(dir, 4, 10, 'copy.lam');
    await expectVersion(dir, 4, 10, 'copy.lam');

    const copyHash = await hashFile(join(dir, 'copy.lam'));
    expectRefusal(await lamstore(['clone', 'vol.lam', 'base', 'copy.lam'], dir), 2, 'copy.lam', /exists already; clone never replaces a file/);
    expect(await hashFile(join(dir, 'copy.lam'))).toBe(copyHash);
    expect(await hashFile(path)).toBe(before);
    expectRefusal(await lamstore(['clone', 'vol.lam', 'base', 'small.lam', '--size', '64KiB'], dir), 2, 'vol.lam', /too small/);
    expect(existsSync(join(dir, 'small.lam'))).toBe(false);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s during a clone removes the new file and exits %i with one line', async (signal, exitCode) => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await mustRun(['snapshot', 'create', 'vol.lam', 'base'], dir);
    const before = await hashFile(path);
    const target = join(dir, 'big.lam');
    // 1 TiB (sparse until written): the zero-fill cannot finish before the signal arrives.
    const child = spawn(process.execPath, [BIN, 'clone', 'vol.lam', 'base', 'big.lam', '--size', '1TiB'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('close', (code, sig) => done({ code, signal: sig })));
    for (let i = 0; i < 2000 && !existsSync(target); i++) await new Promise((res) => setTimeout(res, 10));
    expect(existsSync(target)).toBe(true);
    child.kill(signal);
    const { code, signal: killedBy } = await exited;
    expect(killedBy).toBeNull();
    expectRefusal({ code, signal: null, stdout, stderr }, exitCode, 'big.lam', new RegExp(`interrupted \\(${signal}\\); the partial clone was removed`));
    expect(existsSync(target)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.endsWith('.lam'))).toEqual(['vol.lam']);
    expect(await hashFile(path)).toBe(before);
  });
});

/** Rewrite snapshot `name`'s first leaf with `mutate`, fixing every parent CRC (index page, table entry, table page, superblock). */
async function rewriteSnapshotLeaf(path: string, name: string, mutate: (items: ReturnType<typeof decodeLeafPage>['items'], bytes: Uint8Array) => Uint8Array | void): Promise<void> {
  const io = new RealIO();
  const handle = await io.open(path, { readOnly: true });
  const ex = await examineVolume(io, handle, path);
  await io.close(handle);
  const sb = ex.active!;
  const bs = sb.blockSizeBytes;
  const snap = ex.snapshots!.find((s) => s.entry.name === name)!;
  expect(snap.indexBlocks).toHaveLength(1);
  expect(ex.snapshotTableBlocks).toHaveLength(1);
  const image = new Uint8Array(await readFile(path));
  const block = (b: number) => image.subarray(b * bs, (b + 1) * bs);
  const leafBlock = snap.leaves[0]!.block;
  // The snapshot's leaf and index page are its own (the live catalog was rewritten since).
  expect(ex.leaves!.some((l) => l.block === leafBlock)).toBe(false);
  const leaf = decodeLeafPage(block(leafBlock), path, 'leaf', sb.generation);
  const replaced = mutate(leaf.items, block(leafBlock).slice());
  const leafBytes = replaced ?? encodeLeafPage(leaf, bs);
  const index = decodeIndexPage(block(snap.indexBlocks[0]!), path, 'index', sb.generation);
  index.entries[0]!.crc = crc32c(leafBytes);
  const indexBytes = encodeIndexPage(index, bs);
  const tableBlock = ex.snapshotTableBlocks![0]!;
  const table = decodeSnapshotTablePage(block(tableBlock), path, 'table', sb);
  table.entries.find((e) => e.name === name)!.indexCrc = crc32c(indexBytes);
  const tableGeneration = Number(new DataView(image.buffer, tableBlock * bs + 16, 8).getBigUint64(0, true));
  const encoded = encodeSnapshotTable(table.entries, tableGeneration, bs, () => tableBlock);
  const slot = sb.generation % 2;
  const decoded = decodeSuperblock(block(slot), slot);
  expect(decoded.ok).toBe(true);
  if (!decoded.ok) return;
  const sbBytes = encodeSuperblock({ ...decoded.sb, snapshots: encoded.ref! });
  const fh = await open(path, 'r+');
  try {
    await fh.write(leafBytes, 0, bs, leafBlock * bs);
    await fh.write(indexBytes, 0, bs, snap.indexBlocks[0]! * bs);
    await fh.write(encoded.writes[0]!.bytes, 0, bs, tableBlock * bs);
    await fh.write(sbBytes, 0, sbBytes.length, slot * bs);
  } finally {
    await fh.close();
  }
}

describe('check and inspect know snapshots', () => {
  async function volumeWithSnapshot(): Promise<{ dir: string; path: string }> {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await mustRun(['snapshot', 'create', 'vol.lam', 'snap'], dir);
    await changeVolume(dir, 2);
    // A new relation in the live state only: fresh blocks no snapshot names.
    const { engine, smgr } = await openVolumeEngine({ dataDir: join(dir, 'more.data'), path, sharedBuffers: 16 });
    const r = rel(16390);
    await smgr.create(r, ForkNumber.MAIN);
    for (let b = 0; b < 16; b++) await smgr.extend(r, ForkNumber.MAIN, b, makePage(r, ForkNumber.MAIN, b));
    await engine.close();
    expect((await lamstore(['check', 'vol.lam', '--pages'], dir)).code).toBe(0);
    return { dir, path };
  }

  it("a damaged page of a snapshot's catalog is a finding naming the snapshot (exit 1), and the volume is refused as corrupt", async () => {
    const { dir, path } = await volumeWithSnapshot();
    const io = new RealIO();
    const handle = await io.open(path, { readOnly: true });
    const ex = await examineVolume(io, handle, path);
    await io.close(handle);
    const leafBlock = ex.snapshots![0]!.leaves[0]!.block;
    const fh = await open(path, 'r+');
    await fh.write(new Uint8Array([0xee]), 0, 1, leafBlock * SMALL_BS + 100);
    await fh.close();
    const r = await lamstore(['check', 'vol.lam'], dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`snapshot snap: catalog leaf 0 at block ${leafBlock}: CRC mismatch`));
    const doc = JSON.parse((await lamstore(['check', 'vol.lam', '--json'], dir)).stdout) as { clean: boolean; findings: { part: string }[] };
    expect(doc.clean).toBe(false);
    expect(doc.findings.some((f) => f.part === 'snapshot snap')).toBe(true);
    expectRefusal(await lamstore(['inspect', 'vol.lam'], dir), 1, 'vol.lam', /volume is corrupt: snapshot snap/);
  });

  it('a snapshot whose map names a block the live state uses for another fork is a finding (exit 1); a structurally damaged snapshot leaf too', async () => {
    const { dir, path } = await volumeWithSnapshot();
    const liveInfo = JSON.parse((await lamstore(['inspect', 'vol.lam', '--json', '--relations'], dir)).stdout) as { forks: { relNumber: number; extents: { startBlock: number; lengthBlocks: number }[] }[] };
    const fresh = liveInfo.forks.find((f) => f.relNumber === 16390)!.extents[0]!;
    await rewriteSnapshotLeaf(path, 'snap', (items) => {
      const it = items.find((i) => i.relNumber === 16385)!;
      expect(it.extents).toHaveLength(1);
      expect(fresh.lengthBlocks).toBeGreaterThanOrEqual(it.extents[0]!.lengthBlocks);
      it.extents[0] = { startBlock: fresh.startBlock, lengthBlocks: it.extents[0]!.lengthBlocks };
    });
    let r = await lamstore(['check', 'vol.lam'], dir);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/relation 1663\/5\/16385 fork main of snapshot snap|relation 1663\/5\/16390 fork main of the live catalog/);
    expect(r.stdout).toMatch(/which holds something else there/);

    // A leaf whose items are out of order (every CRC fixed): the snapshot's catalog is judged like the live one.
    const { dir: dir2, path: path2 } = await volumeWithSnapshot();
    await rewriteSnapshotLeaf(path2, 'snap', (_items, bytes) => {
      // Swap the relNumber of the first two items' keys: order broken, CRCs fixed by the caller.
      const v = new DataView(bytes.buffer);
      v.setUint32(32 + 8, 99999, true);
      return bytes;
    });
    r = await lamstore(['check', 'vol.lam'], dir2);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/snapshot snap/);
  });
});
