/**
 * Goal: the occupancy grid of `lamstore map` (cli/map.ts M1-M3) on volumes too large for one
 * block per cell: equal cells, every block counted once, pending free derived from the gaps,
 * and a one-block relation or a catalog page (format 2 puts each page in a block of its own,
 * anywhere) never hidden inside a free cell.
 * Method: buildMap / formatMap / renderSvg in process on hand-made VolumeInfo values.
 */
import { describe, expect, it } from 'vitest';
import { ROWS_MAX, buildMap, formatMap, renderSvg } from '../cli/map.js';
import type { VolumeInfo } from '../volume/index.js';
import { FORK_NAMES } from '../engine/index.js';

function info(volumeBlocks: number, forks: VolumeInfo['forks'], freeRuns: VolumeInfo['freeRuns'], pageBlocks: number[]): VolumeInfo {
  return {
    path: '/x/v.lam',
    formatVersion: 2,
    blockSizeBytes: 4096,
    volumeSizeBytes: volumeBlocks * 4096,
    volumeBlocks,
    fileSizeBytes: volumeBlocks * 4096,
    slots: [
      { slot: 0, valid: true, generation: 2 },
      { slot: 1, valid: true, generation: 1 },
    ],
    activeSlot: 0,
    generation: 2,
    checkpointTimeMs: 0,
    // Format 2: one-block catalog pages anywhere in the volume (the index page first).
    catalog: { indexBlock: pageBlocks[0]!, indexPages: 1, leafPages: pageBlocks.length - 1, blocks: pageBlocks.length, pageBlocks },
    metadataBlocks: 2 + pageBlocks.length,
    usedBlocks: forks.reduce((a, f) => a + f.extents.reduce((b, e) => b + e.lengthBlocks, 0), 0),
    freeBlocks: freeRuns.reduce((a, r) => a + r.lengthBlocks, 0),
    pendingFreeBlocks: 0,
    largestFreeRunBlocks: Math.max(0, ...freeRuns.map((r) => r.lengthBlocks)),
    freeRuns,
    forks,
  };
}

const fork = (relNumber: number, fork: number, extents: { startBlock: number; lengthBlocks: number }[]) => ({
  spcOid: 1663,
  dbOid: 5,
  relNumber,
  fork,
  forkName: FORK_NAMES[fork]!,
  nblocks: extents.reduce((a, e) => a + e.lengthBlocks, 0),
  extents,
});

describe('lamstore map grid', () => {
  it('M1-M3: equal cells, every block counted once, gaps are pending free, a one-block relation or catalog page stays visible', () => {
    // 10000 blocks: metadata 0-1 (superblocks), 2 (index page) and 7000 (a leaf page: catalog
    // pages go wherever a free block was), relation A 3-99 (main) + 5000 (fsm, one block),
    // relation B 100-199, pending 200-299 (in no run, no extent, no catalog page: for instance
    // the pages a running volume replaced, until the next checkpoint), free the rest.
    const v = info(
      10000,
      [fork(10, 0, [{ startBlock: 3, lengthBlocks: 97 }]), fork(10, 1, [{ startBlock: 5000, lengthBlocks: 1 }]), fork(11, 0, [{ startBlock: 100, lengthBlocks: 100 }])],
      [
        { startBlock: 300, lengthBlocks: 4700 },
        { startBlock: 5001, lengthBlocks: 1999 },
        { startBlock: 7001, lengthBlocks: 2999 },
      ],
      [2, 7000],
    );
    const map = buildMap(v, 10);
    expect(map.blocksPerCell).toBe(Math.ceil(10000 / (10 * ROWS_MAX)));
    expect(map.rows).toBeLessThanOrEqual(ROWS_MAX);
    expect(map.cellCount).toBe(Math.ceil(10000 / map.blocksPerCell));
    expect(map.owners.map((o) => [o.char, o.blocks])).toEqual([
      ['M', 4],
      ['.', 9698],
      ['~', 100],
      ['a', 98],
      ['b', 100],
    ]);
    const cellOf = (block: number) => map.owners[map.cells[Math.floor(block / map.blocksPerCell)]!]!.char;
    expect(cellOf(0)).toBe('a'); // 29 blocks of relation a outnumber the 3 metadata blocks
    expect(cellOf(5000)).toBe('a'); // one block among 31 free ones
    expect(cellOf(7000)).toBe('M'); // one catalog page among 31 free blocks
    expect(cellOf(250)).toBe('~');
    expect(cellOf(9000)).toBe('.');
    expect(map.owners.reduce((a, o) => a + o.blocks, 0)).toBe(10000);
    const text = formatMap('v.lam', v, map, false);
    expect(text).toContain('a relation 1663/5/10: 98 blocks');
    expect(text).not.toContain('\u001b[');
    const svg = renderSvg('v.lam', v, map);
    expect(svg).toContain('pending free (reusable after the next checkpoint): 100 blocks');
  });
});
