/**
 * Goal: the snapshot format byte by byte (volume/README.md "Snapshots", snapshots.ts S1-S6): the
 * superblock's table root at bytes 72..91 (all zero without snapshots, validated with them), a
 * table page and its 128-byte entries at the offsets of the README's tables, every decode
 * refusal (magic, count, names, order, reserved bytes, generations, sizes, catalog roots); and
 * the pure helpers: `HeldSet` and `exclusiveBlocks` against a bitmap model, `sharingFindings`
 * accepting what catalogs may share and naming what they may not.
 * Method: encode, read the bytes back with DataView at the documented offsets, damage one field
 * at a time; random extents (seeded prng) for the model checks.
 */
import { describe, expect, it } from 'vitest';
import { crc32c } from '../engine/index.js';
import { prng } from '../engine/testing.js';
import { decodeSuperblock, encodeSuperblock } from '../volume/format.js';
import type { Superblock } from '../volume/format.js';
import { HeldSet, decodeSnapshotTablePage, encodeSnapshotTable, exclusiveBlocks, sharingFindings } from '../volume/snapshots.js';
import type { SnapshotEntry } from '../volume/snapshots.js';

const BS = 4096;

const SB: Superblock = { slot: 1, blockSizeBytes: BS, volumeSizeBytes: 1024 * BS, generation: 41, indexBlock: 7, indexCrc: 0x1234, indexPages: 1, leafPages: 2, forkCount: 3, timeMs: 1_700_000_000_000 };

function entry(name: string, extra: Partial<SnapshotEntry> = {}): SnapshotEntry {
  return { name, generation: 30, checkpointTimeMs: 1_700_000_000_001, createdMs: 1_700_000_000_002, volumeSizeBytes: 512 * BS, indexBlock: 9, indexCrc: 0xabcdef01, indexPages: 1, leafPages: 4, forkCount: 5, ...extra };
}

function corruptMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect((err as { code?: string }).code).toBe('VOLUME_CORRUPT');
    return (err as Error).message;
  }
  throw new Error('expected VOLUME_CORRUPT');
}

describe('the snapshot table in the format', () => {
  it('superblock bytes 72..91 name the table (block u64, pages, CRC, count); zero without snapshots; validated', () => {
    const none = encodeSuperblock(SB);
    expect(none.subarray(72, 124).every((b) => b === 0)).toBe(true);
    const back0 = decodeSuperblock(none, 1);
    expect(back0.ok && back0.sb.snapshots).toBeUndefined();
    const bytes = encodeSuperblock({ ...SB, snapshots: { block: 20, pages: 2, crc: 0xdeadbeef, count: 40 } });
    const v = new DataView(bytes.buffer);
    expect(v.getBigUint64(72, true)).toBe(20n);
    expect(v.getUint32(80, true)).toBe(2);
    expect(v.getUint32(84, true)).toBe(0xdeadbeef);
    expect(v.getUint32(88, true)).toBe(40);
    expect(bytes.subarray(92, 124).every((b) => b === 0)).toBe(true);
    const back = decodeSuperblock(bytes, 1);
    expect(back.ok && back.sb.snapshots).toEqual({ block: 20, pages: 2, crc: 0xdeadbeef, count: 40 });
    const forged = (mutate: (w: DataView) => void) => {
      const b = bytes.slice();
      const w = new DataView(b.buffer);
      mutate(w);
      w.setUint32(124, crc32c(b.subarray(0, 124)), true);
      return decodeSuperblock(b, 1);
    };
    expect(forged((w) => w.setUint32(80, 3, true))).toEqual({ ok: false, reason: 'snapshot table of 3 pages does not match its 40 snapshots' });
    expect(forged((w) => w.setUint32(88, 0, true))).toEqual({ ok: false, reason: 'snapshot count 0 is outside 1..1000' });
    expect(forged((w) => w.setUint32(88, 1001, true))).toEqual({ ok: false, reason: 'snapshot count 1001 is outside 1..1000' });
    expect(forged((w) => w.setBigUint64(72, 1n, true))).toEqual({ ok: false, reason: 'snapshot table at block 1 is outside 2..1023' });
    expect(forged((w) => w.setBigUint64(72, 1024n, true))).toEqual({ ok: false, reason: 'snapshot table at block 1024 is outside 2..1023' });
    expect(forged((w) => w.setUint8(92, 1))).toEqual({ ok: false, reason: 'reserved byte 92 is not zero' });
  });

  it('a table page and its entries at the README offsets, chained last to first with CRCs, names in order', () => {
    const entries = Array.from({ length: 40 }, (_, i) => entry(`snap-${String(39 - i).padStart(2, '0')}`, { generation: i + 1 }));
    const blocks = [100, 101];
    const { writes, ref } = encodeSnapshotTable(entries, 41, BS, () => blocks.shift()!);
    // 31 entries per 4 KiB page: 2 pages, written last to first, the first one named by the ref.
    expect(ref).toEqual({ block: 100, pages: 2, crc: crc32c(writes.find((w) => w.block === 100)!.bytes), count: 40 });
    const first = writes.find((w) => w.block === 100)!.bytes;
    const second = writes.find((w) => w.block === 101)!.bytes;
    const v = new DataView(first.buffer);
    expect(Buffer.from(first.subarray(0, 8)).toString('latin1')).toBe('LAMSNAPT');
    expect(v.getUint32(8, true)).toBe(2);
    expect(v.getUint32(12, true)).toBe(31);
    expect(v.getBigUint64(16, true)).toBe(41n);
    expect(v.getUint32(24, true)).toBe(101);
    expect(v.getUint32(28, true)).toBe(crc32c(second));
    expect(new DataView(second.buffer).getUint32(12, true)).toBe(9);
    expect(new DataView(second.buffer).getUint32(24, true)).toBe(0);
    // Entry 0 is the smallest name.
    const at = 32;
    expect(Buffer.from(first.subarray(at, at + 64)).toString('latin1').replace(/\0+$/, '')).toBe('snap-00');
    expect(first.subarray(at + 7, at + 64).every((b) => b === 0)).toBe(true);
    expect(v.getBigUint64(at + 64, true)).toBe(40n);
    expect(v.getBigUint64(at + 72, true)).toBe(1_700_000_000_001n);
    expect(v.getBigUint64(at + 80, true)).toBe(1_700_000_000_002n);
    expect(v.getBigUint64(at + 88, true)).toBe(BigInt(512 * BS));
    expect(v.getBigUint64(at + 96, true)).toBe(9n);
    expect(v.getUint32(at + 104, true)).toBe(1);
    expect(v.getUint32(at + 108, true)).toBe(0xabcdef01);
    expect(v.getUint32(at + 112, true)).toBe(4);
    expect(v.getUint32(at + 116, true)).toBe(5);
    expect(v.getBigUint64(at + 120, true)).toBe(0n);
    const page = decodeSnapshotTablePage(first, '/v', 'table page 0', SB);
    expect(page.next).toEqual({ block: 101, crc: crc32c(second) });
    expect(page.entries[0]).toEqual(entry('snap-00', { generation: 40 }));
    expect(encodeSnapshotTable([], 41, BS, () => 5)).toEqual({ writes: [], ref: null });
  });

  it('decoding refuses every damaged field with VOLUME_CORRUPT naming it', () => {
    const { writes } = encodeSnapshotTable([entry('a'), entry('b')], 41, BS, () => 100);
    const good = writes[0]!.bytes;
    const damaged = (mutate: (b: Uint8Array, v: DataView) => void) => {
      const b = good.slice();
      mutate(b, new DataView(b.buffer));
      return corruptMessage(() => decodeSnapshotTablePage(b, '/v', 'tp', SB));
    };
    expect(damaged((b) => (b[0] = 0x41))).toMatch(/tp has wrong magic/);
    expect(damaged((_b, v) => v.setUint32(8, 3, true))).toMatch(/tp has unknown format version 3/);
    expect(damaged((_b, v) => v.setUint32(12, 0, true))).toMatch(/tp claims 0 entries/);
    expect(damaged((_b, v) => v.setUint32(12, 32, true))).toMatch(/tp claims 32 entries/);
    expect(damaged((_b, v) => v.setBigUint64(16, 42n, true))).toMatch(/newer than its superblock's 41/);
    expect(damaged((_b, v) => v.setUint32(28, 7, true))).toMatch(/names no next page but carries a next CRC/);
    expect(damaged((b) => (b[32] = 0x2e))).toMatch(/tp entry 0: bad snapshot name/); // '.a'
    expect(damaged((b) => (b[32 + 63] = 0x61))).toMatch(/tp entry 0: bad snapshot name/); // no terminating zero
    expect(damaged((b) => (b[32 + 10] = 1))).toMatch(/tp entry 0: bad snapshot name/); // garbage after the name
    expect(damaged((b) => (b[32 + 128] = 0x61))).toMatch(/out of order or duplicated \(a\)/);
    expect(damaged((_b, v) => v.setUint8(32 + 121, 1))).toMatch(/snapshot a\): reserved bytes are not zero/);
    expect(damaged((_b, v) => v.setBigUint64(32 + 64, 41n, true))).toMatch(/generation 41 is not older than its superblock's 41/);
    expect(damaged((_b, v) => v.setBigUint64(32 + 88, BigInt(2048 * BS), true))).toMatch(/volume size .* is not a size of this volume/);
    expect(damaged((_b, v) => v.setBigUint64(32 + 88, BigInt(BS * 10 + 1), true))).toMatch(/is not a size of this volume/);
    expect(damaged((_b, v) => v.setBigUint64(32 + 96, 512n, true))).toMatch(/catalog index page at block 512 is outside 2..511/);
    expect(damaged((_b, v) => v.setUint32(32 + 104, 0, true))).toMatch(/catalog of 0 index and 4 leaf pages does not fit/);
    expect(damaged((_b, v) => v.setBigUint64(32 + 72, 2n ** 60n, true))).toMatch(/a 64-bit field is above 2\^53/);
  });
});

describe('the pure helpers', () => {
  it('HeldSet: has, countIn and unheld agree with a bitmap over random overlapping extents', () => {
    const rand = prng(5);
    for (let round = 0; round < 50; round++) {
      const n = 200;
      const bitmap = new Uint8Array(n);
      const extents = Array.from({ length: Math.floor(rand() * 12) }, () => {
        const startBlock = Math.floor(rand() * (n - 10));
        const lengthBlocks = 1 + Math.floor(rand() * 10);
        for (let b = startBlock; b < startBlock + lengthBlocks; b++) bitmap[b] = 1;
        return { startBlock, lengthBlocks };
      });
      const held = new HeldSet(extents);
      expect(held.blocks).toBe(bitmap.reduce((a, b) => a + b, 0));
      expect(held.empty).toBe(extents.length === 0);
      for (let b = 0; b < n; b++) expect(held.has(b)).toBe(bitmap[b] === 1);
      for (let k = 0; k < 20; k++) {
        const start = Math.floor(rand() * n);
        const length = 1 + Math.floor(rand() * (n - start));
        let count = 0;
        for (let b = start; b < start + length; b++) count += bitmap[b]!;
        expect(held.countIn(start, length)).toBe(count);
        const pieces = held.unheld(start, length);
        const free = new Set<number>();
        for (const p of pieces) for (let b = p.startBlock; b < p.startBlock + p.lengthBlocks; b++) free.add(b);
        for (let b = start; b < start + length; b++) expect(free.has(b)).toBe(bitmap[b] === 0);
        expect(free.size).toBe(length - count);
      }
      // Runs are disjoint and not adjacent.
      const runs = held.runs();
      for (let i = 1; i < runs.length; i++) expect(runs[i]!.startBlock).toBeGreaterThan(runs[i - 1]!.startBlock + runs[i - 1]!.lengthBlocks);
    }
  });

  it('exclusiveBlocks: per owner, the blocks no other owner covers (against a per-block count)', () => {
    const rand = prng(9);
    for (let round = 0; round < 50; round++) {
      const n = 100;
      const owners = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => {
        const list: { startBlock: number; lengthBlocks: number }[] = [];
        let at = 0;
        while (at < n) {
          at += Math.floor(rand() * 15);
          const len = 1 + Math.floor(rand() * 8);
          if (at + len > n) break;
          list.push({ startBlock: at, lengthBlocks: len });
          at += len;
        }
        return list;
      });
      const covers = owners.map((list) => {
        const m = new Uint8Array(n);
        for (const e of list) for (let b = e.startBlock; b < e.startBlock + e.lengthBlocks; b++) m[b] = 1;
        return m;
      });
      const expected = owners.map((_, o) => {
        let c = 0;
        for (let b = 0; b < n; b++) if (covers[o]![b] && covers.every((m, p) => p === o || !m[b])) c++;
        return c;
      });
      expect(exclusiveBlocks(owners)).toEqual(expected);
    }
  });

  it('sharingFindings: the same page or the same fork block may be shared; anything else is named', () => {
    const fork = (relNumber: number, extents: { startBlock: number; lengthBlocks: number }[]) => ({ spcOid: 1663, dbOid: 5, relNumber, fork: 0, nblocks: extents.reduce((a, e) => a + e.lengthBlocks, 0), extents });
    const live = { name: 'the live catalog', pageBlocks: [2, 3], forks: [fork(1, [{ startBlock: 10, lengthBlocks: 5 }, { startBlock: 30, lengthBlocks: 2 }])] };
    // Shares page 2 and fork 1's blocks 0..4 at the same places.
    const same = { name: 'snapshot s', pageBlocks: [2, 4], forks: [fork(1, [{ startBlock: 10, lengthBlocks: 5 }, { startBlock: 40, lengthBlocks: 2 }])] };
    expect(sharingFindings([live, same], [{ block: 50, owner: 'the snapshot table page at block 50' }])).toEqual([]);
    // Fork 1 block 0 of the snapshot sits where the live fork has block 1: not the same block.
    const shifted = { name: 'snapshot t', pageBlocks: [5], forks: [fork(1, [{ startBlock: 11, lengthBlocks: 1 }])] };
    expect(sharingFindings([live, shifted], [])).toEqual([{ severity: 'error', part: 'relation 1663/5/1 fork main of snapshot t', message: 'shares blocks 11..11 with relation 1663/5/1 fork main of the live catalog, which holds something else there' }]);
    // Another fork on the live fork's blocks; a catalog page on data; the table on a page.
    const other = { name: 'snapshot u', pageBlocks: [31], forks: [fork(2, [{ startBlock: 12, lengthBlocks: 2 }])] };
    const found = sharingFindings([live, other], [{ block: 3, owner: 'the snapshot table page at block 3' }]);
    expect(found.map((f) => f.part).sort()).toEqual(['a catalog page of snapshot u', 'relation 1663/5/2 fork main of snapshot u', 'the snapshot table page at block 3'].sort());
  });
});
