/**
 * Goal: `lamstore inspect`, `check` and `map` (cli/README.md's exit codes) as a user
 * meets them: right answers on good volumes, read-only on a read-only file, and every bad
 * volume refused with the documented exit code, one stderr line `lamstore: <file>: <problem>`,
 * no stack trace, and the file's bytes unchanged (reliability-anchors 8 (d)).
 * Method: spawn the built bin (dist/cli/main.js) in a temp dir on real volumes made in this
 * process with the Engine, damaged with plain writes; independent runs go in parallel.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdir, readFile, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempDir } from './helpers/index.js';
import { hashFile } from './helpers/volume.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BIN, builtBinMissing, expectRefusal, flipByte, holdVolume, lamstore, makeVolume } from './helpers/cli.js';
import { SMALL_BS } from './helpers/engine.js';

beforeAll(() => {
  expect(builtBinMissing()).toBeNull();
});

interface InspectJson {
  volume: string;
  blockSizeBytes: number;
  volumeSizeBytes: number;
  volumeBlocks: number;
  slots: { slot: number; valid: boolean; generation?: number; reason?: string }[];
  activeSlot: number;
  usedBlocks: number;
  freeBlocks: number;
  pendingFreeBlocks: number;
  metadataBlocks: number;
  forkCount: number;
  relationCount: number;
  extentsPerFork: { average: number; max: number; total: number };
  largestFreeRunBlocks: number;
  forks?: { relNumber: number; forkName: string; nblocks: number; extents: { startBlock: number; lengthBlocks: number }[] }[];
}

describe('lamstore inspect, check and map on good volumes', () => {
  it('inspect shows both slots, sizes, used/free, forks and extents per fork; --json and --relations', async () => {
    const dir = await tempDir();
    await makeVolume(dir);
    const [text, json, rels] = await Promise.all([
      lamstore(['inspect', 'vol.lam'], dir),
      lamstore(['inspect', 'vol.lam', '--json', '--relations'], dir),
      lamstore(['inspect', 'vol.lam', '--relations'], dir),
    ]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toBe('');
    expect(text.stdout).toMatch(/^superblock 0 +valid, generation \d+/m);
    expect(text.stdout).toMatch(/^superblock 1 +valid, generation \d+/m);
    expect(text.stdout).toMatch(/\(active\)/);
    expect(text.stdout).toMatch(/^block size +4096 bytes$/m);
    expect(text.stdout).toMatch(/^volume size +1\.0 MiB \(1048576 bytes, 256 blocks\)/m);
    expect(text.stdout).toMatch(/^relation forks +4 in 3 relations$/m);
    expect(text.stdout).toMatch(/^extents per fork +average [\d.]+, max \d+/m);
    expect(text.stdout).toMatch(/^largest free run +\d+ blocks/m);
    expect(text.stdout).toMatch(/^pending free +0 blocks/m);

    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout) as InspectJson;
    expect(doc).toMatchObject({ volume: 'vol.lam', blockSizeBytes: SMALL_BS, volumeSizeBytes: 1024 * 1024, volumeBlocks: 256, forkCount: 4, relationCount: 3, pendingFreeBlocks: 0 });
    expect(doc.slots.map((s) => s.valid)).toEqual([true, true]);
    expect(doc.metadataBlocks + doc.usedBlocks + doc.freeBlocks + doc.pendingFreeBlocks).toBe(doc.volumeBlocks);
    const forks = doc.forks!;
    expect(forks.map((f) => [f.relNumber, f.forkName, f.nblocks])).toEqual([
      [16384, 'main', 40],
      [16384, 'fsm', 3],
      [16385, 'main', 12],
      [16386, 'main', 35],
    ]);
    const maxExtents = Math.max(...forks.map((f) => f.extents.length));
    expect(doc.extentsPerFork.max).toBe(maxExtents);
    expect(doc.extentsPerFork.total).toBe(forks.reduce((a, f) => a + f.extents.length, 0));

    expect(rels.code).toBe(0);
    expect(rels.stdout).toMatch(/^relation +fork +nblocks +extents +blocks +extent list/m);
    expect(rels.stdout).toMatch(/^1663\/5\/16386 +main +35 +\d+ +\d+ +\d+\+\d+/m);
  });

  it('check: exit 0 when clean; --pages verifies every page; a damaged page is a finding naming relation, fork and block (exit 1)', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    const [clean, pages, pagesJson, inspect] = await Promise.all([
      lamstore(['check', 'vol.lam'], dir),
      lamstore(['check', 'vol.lam', '--pages'], dir),
      lamstore(['check', 'vol.lam', '--pages', '--json'], dir),
      lamstore(['inspect', 'vol.lam', '--json', '--relations'], dir),
    ]);
    expect(clean).toMatchObject({ code: 0, stderr: '' });
    expect(clean.stdout).toBe('vol.lam: clean (metadata checked)\n');
    expect(pages.code, pages.stderr).toBe(0);
    expect(pages.stdout).toBe(`vol.lam: clean (metadata and ${40 + 3 + 12 + 35} pages checked)\n`);
    expect(JSON.parse(pagesJson.stdout)).toMatchObject({ volume: 'vol.lam', clean: true, pagesVerified: 90, findings: [] });

    // Damage block 3 of relation 16385 in the middle of its page.
    const fork = (JSON.parse(inspect.stdout) as InspectJson).forks!.find((f) => f.relNumber === 16385)!;
    const volumeBlock = fork.extents[0]!.startBlock + 3;
    await flipByte(path, volumeBlock * SMALL_BS + 1000);
    const before = await hashFile(path);
    const [meta, bad, badJson] = await Promise.all([
      lamstore(['check', 'vol.lam'], dir),
      lamstore(['check', 'vol.lam', '--pages'], dir),
      lamstore(['check', 'vol.lam', '--pages', '--json'], dir),
    ]);
    expect(meta.code).toBe(0); // metadata alone does not read pages
    expectRefusal(bad, 1, 'vol.lam', /1 finding/);
    expect(bad.stdout).toContain(`vol.lam: error: relation 1663/5/16385 fork main block 3: page checksum mismatch (volume block ${volumeBlock})`);
    expect(bad.stdout).toMatch(/1 error, 0 warnings/);
    expect(badJson.code).toBe(1);
    const doc = JSON.parse(badJson.stdout) as { clean: boolean; findings: { part: string }[] };
    expect(doc.clean).toBe(false);
    expect(doc.findings.map((f) => f.part)).toEqual(['relation 1663/5/16385 fork main block 3']);
    expect(await hashFile(path)).toBe(before);
  });

  it('map draws metadata, each relation and free space with a legend that adds up; --svg writes the same picture', async () => {
    const dir = await tempDir();
    await makeVolume(dir);
    const [plain, narrow, svg, coloured] = await Promise.all([
      lamstore(['map', 'vol.lam'], dir),
      lamstore(['map', 'vol.lam', '--width', '16'], dir),
      lamstore(['map', 'vol.lam', '--svg', 'map.svg'], dir),
      lamstore(['map', 'vol.lam'], dir, { FORCE_COLOR: '1' }),
    ]);
    expect(coloured.code).toBe(0);
    expect(coloured.stdout).toContain('\u001b[');
    expect(plain.code, plain.stderr).toBe(0);
    // Not a terminal: plain characters, no escape sequences.
    expect(plain.stdout).not.toContain('\u001b[');
    expect(plain.stdout).toMatch(/one cell = 1 block/);
    const rows = plain.stdout.split('\n').filter((l) => /^ *\d+ [M.~a-zA-Z0-9#]+$/.test(l));
    expect(rows).toHaveLength(4); // 256 blocks, 64 per row
    const grid = rows.map((r) => r.split(' ').pop()).join('');
    expect(grid).toHaveLength(256);
    expect(grid.slice(0, 2)).toBe('MM');
    const legend = [...plain.stdout.matchAll(/^ {2}(\S) (.+): (\d+) blocks?/gm)].map((m) => ({ char: m[1]!, label: m[2]!, blocks: Number(m[3]) }));
    expect(legend.map((l) => l.label)).toEqual([
      'metadata (superblocks, catalog)',
      'free',
      'pending free (reusable after the next checkpoint)',
      'relation 1663/5/16384',
      'relation 1663/5/16385',
      'relation 1663/5/16386',
    ]);
    expect(legend.reduce((a, l) => a + l.blocks, 0)).toBe(256);
    // With one block per cell the grid is exact: each owner's cells equal its block count.
    for (const l of legend) expect(grid.split(l.char).length - 1, l.label).toBe(l.blocks);

    expect(narrow.code).toBe(0);
    expect(narrow.stdout.split('\n').filter((l) => /^ *\d+ [M.~a-zA-Z0-9#]+$/.test(l))).toHaveLength(16);

    expect(svg.code, svg.stderr).toBe(0);
    expect(svg.stdout).toContain('wrote map.svg');
    const picture = await readFile(join(dir, 'map.svg'), 'utf8');
    expect(picture.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(picture.trimEnd().endsWith('</svg>')).toBe(true);
    for (const l of legend) expect(picture).toContain(`${l.label}: ${l.blocks} blocks`);
    expect((picture.match(/<rect /g) ?? []).length).toBeGreaterThan(6);
  });

  it('check --pages on a terminal draws a progress bar (pages/s), and the report follows', async () => {
    const dir = await tempDir();
    await makeVolume(dir);
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} check vol.lam --pages`;
    const { stdout } = await promisify(execFile)('script', ['-qec', cmd, '/dev/null'], { cwd: dir, timeout: 30_000 });
    expect(stdout).toMatch(/checking pages \[[=-]+\] +\d+% \d+ pages\/90 pages \d+ pages\/s/);
    expect(stdout).toContain('vol.lam: clean (metadata and 90 pages checked)');
  });

  it('a read-only file (0444): inspect, check --pages and map work, and the bytes do not change', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    await chmod(path, 0o444);
    const before = await hashFile(path);
    const mtimeBefore = (await stat(path)).mtimeMs;
    const runs = await Promise.all([
      lamstore(['inspect', 'vol.lam'], dir),
      lamstore(['inspect', 'vol.lam', '--json'], dir),
      lamstore(['check', 'vol.lam', '--pages'], dir),
      lamstore(['map', 'vol.lam'], dir),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(runs[2]!.stdout).toMatch(/clean/);
    expect(await hashFile(path)).toBe(before);
    expect((await stat(path)).mtimeMs).toBe(mtimeBefore);
  });
});

describe('lamstore refuses bad volumes: exit code, one line naming the file, no stack trace, bytes unchanged', () => {
  it('missing file, directory, FIFO, dangling symlink, 0-byte file, truncated volume, garbage file, both superblocks damaged', async () => {
    const dir = await tempDir();
    const good = await makeVolume(dir, 'good.lam');
    await mkdir(join(dir, 'adir'));
    await promisify(execFile)('mkfifo', [join(dir, 'fifo.lam')]);
    await symlink(join(dir, 'nowhere.lam'), join(dir, 'dangling.lam'));
    await writeFile(join(dir, 'empty.lam'), '');
    await writeFile(join(dir, 'garbage.lam'), randomBytes(256 * 1024));
    await writeFile(join(dir, 'truncated.lam'), await readFile(good));
    await truncate(join(dir, 'truncated.lam'), 300 * 1024);
    await writeFile(join(dir, 'both.lam'), await readFile(good));
    await flipByte(join(dir, 'both.lam'), 40);
    await flipByte(join(dir, 'both.lam'), SMALL_BS + 40);
    // [file, inspect/map exit, check exit, problem]
    const cases: [string, number, number, RegExp][] = [
      ['missing.lam', 1, 2, /no such file or directory \(ENOENT\)/],
      ['adir', 1, 2, /is a directory/],
      ['fifo.lam', 1, 2, /is not a regular file/],
      ['dangling.lam', 1, 2, /no such file or directory/],
      ['empty.lam', 1, 1, /empty/],
      ['truncated.lam', 1, 1, /corrupt.*1048576 bytes.*307200/],
      ['garbage.lam', 1, 1, /corrupt: no valid superblock/],
      // (slot 1's reason is the one at the first block size tried; see the report)
      ['both.lam', 1, 1, /corrupt: no valid superblock \(slot 0: superblock CRC mismatch.*; slot 1: /],
    ];
    const hashes = new Map<string, string>();
    for (const [file] of cases) if (!['missing.lam', 'adir', 'fifo.lam', 'dangling.lam'].includes(file)) hashes.set(file, await hashFile(join(dir, file)));
    let runs = 0;
    await Promise.all(
      cases.map(async ([file, exitOther, exitCheck, problem]) => {
        const [inspect, inspectJson, check, checkJson, map] = await Promise.all([
          lamstore(['inspect', file], dir),
          lamstore(['inspect', file, '--json'], dir),
          lamstore(['check', file], dir),
          lamstore(['check', file, '--json'], dir),
          lamstore(['map', file], dir),
        ]);
        runs += 5;
        expectRefusal(inspect, exitOther, file, problem);
        expectRefusal(map, exitOther, file, problem);
        expectRefusal(inspectJson, exitOther, file, problem);
        const err = JSON.parse(inspectJson.stdout) as { error: { code: string; message: string } };
        expect(err.error.message.startsWith(`${file}: `)).toBe(true);
        expect(err.error.code).toMatch(/^(IO_ERROR|BAD_ARGUMENT|VOLUME_CORRUPT)$/);
        if (exitCheck === 2) {
          expectRefusal(check, 2, file, problem);
          expect(JSON.parse(checkJson.stdout)).toMatchObject({ error: { code: expect.any(String) } });
        } else {
          // Checked, and found damage: the findings name the damaged part.
          expectRefusal(check, 1, file, /finding/);
          expect(check.stdout).toMatch(new RegExp(`^${file}: error: (file|superblock slot [01]|catalog)`, 'm'));
          const doc = JSON.parse(checkJson.stdout) as { clean: boolean; findings: unknown[] };
          expect(doc.clean).toBe(false);
          expect(doc.findings.length).toBeGreaterThan(0);
        }
        expect(checkJson.code).toBe(exitCheck);
        if (hashes.has(file)) expect(await hashFile(join(dir, file)), file).toBe(hashes.get(file));
      }),
    );
    expect(runs).toBe(40);
  });

  it('one damaged superblock: inspect works and says which slot and why; check exits 1 naming it', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    const json = JSON.parse((await lamstore(['inspect', 'vol.lam', '--json'], dir)).stdout) as InspectJson;
    const inactive = 1 - json.activeSlot;
    await flipByte(path, inactive * SMALL_BS + 40);
    const before = await hashFile(path);
    const [inspect, inspectJson, check, checkJson] = await Promise.all([
      lamstore(['inspect', 'vol.lam'], dir),
      lamstore(['inspect', 'vol.lam', '--json'], dir),
      lamstore(['check', 'vol.lam'], dir),
      lamstore(['check', 'vol.lam', '--json'], dir),
    ]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(new RegExp(`^superblock ${inactive} +DAMAGED: superblock CRC mismatch`, 'm'));
    expect(inspect.stdout).toMatch(new RegExp(`^superblock ${json.activeSlot} +valid, generation \\d+ \\(active\\)`, 'm'));
    const slots = (JSON.parse(inspectJson.stdout) as InspectJson).slots;
    expect(slots[inactive]).toMatchObject({ valid: false, reason: expect.stringMatching(/CRC mismatch/) });
    expectRefusal(check, 1, 'vol.lam', /1 finding/);
    expect(check.stdout).toContain(`vol.lam: error: superblock slot ${inactive}: superblock CRC mismatch`);
    expect(checkJson.code).toBe(1);
    expect((JSON.parse(checkJson.stdout) as { findings: { part: string }[] }).findings.map((f) => f.part)).toEqual([`superblock slot ${inactive}`]);
    expect(await hashFile(path)).toBe(before);
  });

  it('a volume locked by another process: inspect and map exit 1, check exit 2, create --force refuses; bytes unchanged', async () => {
    const dir = await tempDir();
    const path = await makeVolume(dir);
    const holder = await holdVolume(path, join(dir, 'holder-data'));
    try {
      const before = await hashFile(path);
      const [inspect, inspectJson, check, map, create] = await Promise.all([
        lamstore(['inspect', 'vol.lam'], dir),
        lamstore(['inspect', 'vol.lam', '--json'], dir),
        lamstore(['check', 'vol.lam'], dir),
        lamstore(['map', 'vol.lam'], dir),
        lamstore(['create', 'vol.lam', '--size', '1MiB', '--force'], dir),
      ]);
      expectRefusal(inspect, 1, 'vol.lam', /volume is locked by another process/);
      expect(JSON.parse(inspectJson.stdout)).toMatchObject({ error: { code: 'VOLUME_LOCKED' } });
      expectRefusal(check, 2, 'vol.lam', /locked/);
      expectRefusal(map, 1, 'vol.lam', /locked/);
      expectRefusal(create, 1, 'vol.lam', /locked by another process; not replacing it/);
      expect(await hashFile(path)).toBe(before);
    } finally {
      await holder.release();
    }
    expect((await lamstore(['check', 'vol.lam'], dir)).code).toBe(0);
  });
});
