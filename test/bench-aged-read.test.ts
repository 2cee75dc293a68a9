/**
 * Goal: the bench's aged sequential read (bench/aged-read.ts, BENCHMARKS.md "Aged sequential
 * read") reports what it promises: two sets of the same size, the fresh one contiguous, the aged
 * one scattered by the aging and kept at its bound by the defragmentation pass, a rate for every
 * round of each set, the ratio, how the page cache was dropped (or why not), and its two shape
 * checks; it leaves its engine closed and only files under its directory; a failed page-cache
 * drop names the file.
 * Method: measureAgedRead in process at a tiny size (4 forks of 64 pages) on a real temporary
 * directory, with and without the page-cache drop; agedReadChecks and the report's table on its
 * result. Timings are never asserted, only their presence and shape.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGED_EXTENTS_MAX, AGED_READ_PAGES, loadPageCacheDrop, measureAgedRead, type AgedReadResult } from '../bench/aged-read.js';
import { agedReadChecks, type BenchResult } from '../bench/run.js';
import { median } from '../bench/stats.js';
import { agedReadLine, agedReadTable } from '../bench/report.js';
import { tempDir } from './helpers/index.js';

const FORKS = 4;

function expectShape(r: AgedReadResult, rounds: number): void {
  expect(r).toMatchObject({ forks: FORKS, pages: AGED_READ_PAGES, blockSize: 4096, rounds });
  // 16 updates per fork, forks / 4 (here 1) per checkpoint.
  expect(r.updates).toBe(16 * FORKS);
  expect(r.checkpoints).toBe(16 * FORKS);
  for (const set of [r.fresh, r.aged]) {
    expect(set.forks).toBe(FORKS);
    expect(set.samples).toHaveLength(rounds);
    for (const v of set.samples) expect(v).toBeGreaterThan(0);
    expect(set.readMBps.min).toBeLessThanOrEqual(set.readMBps.median);
    expect(set.readMBps.median).toBeLessThanOrEqual(set.readMBps.max);
    expect(set.warmReadMBps).toBeGreaterThan(0);
  }
  // Fresh forks were written once, each whole before the next: one extent each.
  expect(r.fresh.extentsPerFork).toEqual({ mean: 1, max: 1 });
  // The aging scattered the aged forks (16 updates each, ~2 extents per update) and the pass
  // rewrote them: never past the bound after any checkpoint.
  expect(r.forksDefragmented).toBeGreaterThan(0);
  expect(r.pagesDefragmented).toBeGreaterThan(0);
  expect(r.agingExtentsMax).toBeGreaterThan(1);
  expect(r.agingExtentsMax).toBeLessThanOrEqual(AGED_EXTENTS_MAX);
  expect(r.aged.extentsPerFork.max).toBeLessThanOrEqual(r.agingExtentsMax);
  expect(r.roundRatios).toHaveLength(rounds);
  r.roundRatios.forEach((q, k) => expect(q).toBeCloseTo(r.aged.samples[k]! / r.fresh.samples[k]!, 9));
  expect(r.ratios.agedToFreshRead).toBeCloseTo(median(r.roundRatios), 9);
  expect(r.ratios.agedToFreshWarmRead).toBeCloseTo(r.aged.warmReadMBps / r.fresh.warmReadMBps, 9);
}

describe('bench: aged sequential read', () => {
  it('on Linux with koffi: the page cache dropped before each fork, both sets, every round, the checks; only its own files', async () => {
    const dir = await tempDir('lamstore-aged-read-');
    const r = await measureAgedRead({ dir, forks: FORKS, blockSize: 4096, rounds: 2 });
    expectShape(r, 2);
    const probe = loadPageCacheDrop();
    if (probe.drop) expect(r.cache).toEqual({ dropped: true, via: 'posix_fadvise(POSIX_FADV_DONTNEED) through koffi' });
    else expect(r.cache).toEqual({ dropped: false, reason: probe.reason });
    expect((await readdir(dir)).sort()).toEqual(['aged-read.lamvol', 'data']);

    const checks = agedReadChecks(r);
    expect(checks.map((c) => [c.name, c.kind, c.relations, c.pages])).toEqual([
      ['agedExtentsAtMost16', 'count', FORKS, AGED_READ_PAGES],
      ['agedReadAtLeast0.7xFresh', 'timing', FORKS, AGED_READ_PAGES],
    ]);
    expect(checks[0]!.pass).toBe(true);
    expect(checks[1]!.pass).toBe(r.ratios.agedToFreshRead >= 0.7);

    const result = { agedRead: r } as BenchResult;
    expect(agedReadLine(result)).toContain(`${FORKS} forks of ${AGED_READ_PAGES} pages (4096 B) per set`);
    const table = agedReadTable(result);
    for (const row of ['fresh', 'aged', 'aged / fresh', 'MB/s']) expect(table).toContain(row);
  });

  it('dropCache false: warm reads, and the result says so', async () => {
    const dir = await tempDir('lamstore-aged-read-');
    const r = await measureAgedRead({ dir, forks: FORKS, blockSize: 4096, rounds: 1, dropCache: false });
    expectShape(r, 1);
    expect(r.cache).toEqual({ dropped: false, reason: 'page cache drop turned off (dropCache: false)' });
    expect(agedReadChecks(r)[1]!.detail).toContain('warm reads: page cache drop turned off');
    expect(agedReadLine({ agedRead: r } as BenchResult)).toContain('page cache NOT dropped');
  });

  it('a page-cache drop that cannot open the file names it', async () => {
    const probe = loadPageCacheDrop();
    if (!probe.drop) {
      expect(probe.reason).toMatch(/./);
      return;
    }
    const missing = join(await tempDir('lamstore-aged-read-'), 'missing.lamvol');
    expect(() => probe.drop(missing)).toThrow(`open ${missing} to drop its page cache: ENOENT`);
  });
});
