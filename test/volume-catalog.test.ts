/**
 * Goal: the catalog tree's leaf bound (catalog.ts T4) holds whatever the history: after every
 * build no two neighbouring leaves fit in one, so the catalog never takes more blocks than
 * CatalogTree.maxBlocks(forks, blocks), the bound volume.ts V5 reserves room for. Method: a
 * tree driven directly (no volume) through random creates, drops and map changes of random
 * sizes, built after each round; each build's leaves and index pages are counted against the
 * bound and T1-T4 checked.
 */
import { describe, expect, it } from 'vitest';
import { CatalogTree, type ForkRef } from '../volume/catalog.js';
import type { CatalogFork } from '../volume/format.js';

const BS = 1024;

interface Fork extends ForkRef {
  nblocks: number;
  extents: number;
}

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** A map of `extents` extents holding `nblocks` blocks (each extent at least one block). */
function mapOf(f: Fork): CatalogFork {
  const extents = [];
  let start = 1000 + f.rel.relNumber * 100_000;
  for (let i = 0; i < f.extents; i++) {
    const len = i === f.extents - 1 ? f.nblocks - (f.extents - 1) : 1;
    extents.push({ startBlock: start, lengthBlocks: len });
    start += len + 1;
  }
  return { spcOid: f.rel.spcOid, dbOid: f.rel.dbOid, relNumber: f.rel.relNumber, fork: f.fork, nblocks: f.nblocks, extents };
}

describe('catalog tree (catalog.ts T4)', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: after every build no two neighbouring leaves fit in one, and the catalog stays within maxBlocks`, () => {
      const rand = rng(seed);
      const tree = new CatalogTree(BS, [], [], []);
      const forks = new Map<number, Fork>();
      let next = 1;
      let block = 10;
      for (let round = 0; round < 300; round++) {
        const ops = 1 + Math.floor(rand() * 20);
        for (let k = 0; k < ops; k++) {
          const live = [...forks.values()];
          const r = rand();
          if (r < 0.35 || live.length === 0) {
            const relNumber = rand() < 0.5 ? next++ : Math.floor(rand() * next * 2) + 1;
            if (forks.has(relNumber)) continue;
            const nblocks = Math.floor(rand() * 400);
            const f: Fork = { key: `r${relNumber}`, rel: { spcOid: 1663, dbOid: 5, relNumber }, fork: 0, catPages: null, nblocks, extents: nblocks === 0 ? 0 : 1 + Math.floor(rand() * Math.min(nblocks, rand() < 0.1 ? 400 : 8)) };
            forks.set(relNumber, f);
            tree.addFork(f);
          } else if (r < 0.6) {
            const f = live[Math.floor(rand() * live.length)]!;
            tree.removeFork(f);
            forks.delete(f.rel.relNumber);
          } else {
            const f = live[Math.floor(rand() * live.length)]!;
            f.nblocks = Math.floor(rand() * 400);
            f.extents = f.nblocks === 0 ? 0 : 1 + Math.floor(rand() * Math.min(f.nblocks, rand() < 0.1 ? 400 : 8));
            tree.touch(f);
          }
        }
        const built = tree.build(round + 2, { forkMap: (ref) => mapOf(ref as Fork) }, () => block++);
        tree.checkInvariants(forks.values());
        let blocks = 0;
        for (const f of forks.values()) blocks += f.nblocks;
        const bound = CatalogTree.maxBlocks(BS, forks.size, blocks);
        expect(built.leafPages + built.indexPages).toBeLessThanOrEqual(bound);
        expect(tree.pageCount).toBe(built.leafPages + built.indexPages);
      }
    });
  }
});
