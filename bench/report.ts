/**
 * Text report of a bench run: ratios first (the headline), then the medians they come from,
 * the page path, the machine and the expected-shape checks. Plain tables (cli-table3 without
 * colours), so the output pastes into BENCHMARKS.md and reads the same in a pipe.
 */
import Table from 'cli-table3';
import type { BenchCheck, BenchResult } from './run.js';
import { MD_CONCURRENT_SYNCS, STALL_TARGET_MS, type CellResult, type RowResult } from './matrix.js';

const PLAIN = { head: [] as string[], border: [] as string[] };

function x(v: number): string {
  return Number.isFinite(v) ? `${v >= 10 ? v.toFixed(1) : v.toFixed(2)}x` : 'n/a';
}
function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
function rate(v: number): string {
  return Number.isFinite(v) ? `${Math.round(v).toLocaleString('en-US')}/s` : 'n/a';
}
function range(r: { min: number; max: number }): string {
  return r.min === r.max ? String(r.min) : `${r.min}-${r.max}`;
}

function hasPostgres(cells: readonly CellResult[]): boolean {
  return cells.some((c) => c.rows.postgres !== undefined);
}

/** The medians of a row's phases, in the order asked for, formatted as ms. */
function medians(row: RowResult, ...phases: ('writeMs' | 'syncMs' | 'totalMs')[]): string[] {
  return phases.map((p) => ms(row[p].median));
}

/** A table of one row per (R, P) cell: R and P, then `columns`. */
function cellTable(columns: string[]): InstanceType<typeof Table> {
  return new Table({ head: ['R', 'P', ...columns], style: PLAIN });
}

export function ratioTable(cells: readonly CellResult[]): string {
  const pg = hasPostgres(cells);
  const t = cellTable([
    'md/volume sync',
    'md/volume total',
    ...(pg ? ['md/postgres total', 'postgres/volume total'] : []),
    'raw seg/extent sync',
    'volume/floor total',
    'volume/(floor+switch) total',
    'md/raw seg total',
    `md(sync×${MD_CONCURRENT_SYNCS})/raw seg total`,
    ...(pg ? [`md(sync×${MD_CONCURRENT_SYNCS})/postgres total`] : []),
    'vol write/raw vol write',
    'md fsyncs',
    'volume fdatasyncs',
  ]);
  for (const c of cells) {
    const r = c.ratios;
    t.push([
      c.relations,
      c.pages,
      x(r.mdToVolumeSync),
      x(r.mdToVolumeTotal),
      ...(pg ? [x(r.mdToPostgresTotal), x(r.postgresToVolumeTotal)] : []),
      x(r.rawSegmentsToExtentSync),
      x(r.volumeToFloorTotal),
      x(r.volumeToCowFloorTotal),
      x(r.mdToRawSegmentsTotal),
      x(r.mdConcurrentToRawSegmentsTotal),
      ...(pg ? [x(r.mdConcurrentToPostgresTotal)] : []),
      x(r.volumeToRawVolumeWrite),
      range(c.rows.md.fsyncCalls),
      range(c.rows.volume.fdatasyncCalls),
    ]);
  }
  return t.toString();
}

export function timeTable(cells: readonly CellResult[]): string {
  const pg = hasPostgres(cells);
  const t = cellTable([
    'md write',
    'md sync',
    'md total',
    `md(sync×${MD_CONCURRENT_SYNCS}) sync`,
    `md(sync×${MD_CONCURRENT_SYNCS}) total`,
    'vol write',
    'vol sync',
    'vol total',
    ...(pg ? ['pg write', 'pg sync', 'pg total', 'pg files'] : []),
    'raw seg sync',
    'raw seg total',
    'raw vol write',
    'raw vol sync',
    'floor sync',
    'floor total',
  ]);
  for (const c of cells) {
    const { md, mdConcurrent, volume, rawSegments, rawVolume, rawExtent, postgres } = c.rows;
    const pgCols = !pg ? [] : postgres ? [...medians(postgres, 'writeMs', 'syncMs', 'totalMs'), range(postgres.fsyncCalls)] : ['n/a', 'n/a', 'n/a', 'n/a'];
    t.push([
      c.relations,
      c.pages,
      ...medians(md, 'writeMs', 'syncMs', 'totalMs'),
      ...medians(mdConcurrent, 'syncMs', 'totalMs'),
      ...medians(volume, 'writeMs', 'syncMs', 'totalMs'),
      ...pgCols,
      ...medians(rawSegments, 'syncMs', 'totalMs'),
      ...medians(rawVolume, 'writeMs', 'syncMs'),
      ...medians(rawExtent, 'syncMs', 'totalMs'),
    ]);
  }
  return t.toString();
}

/** Longest event-loop stall during any checkpoint of each cell's engine rows (matrix M7). */
export function stallTable(cells: readonly CellResult[]): string {
  const t = new Table({ head: ['R', 'P', 'md longest stall (GC; run queue; busy)', `md(sync×${MD_CONCURRENT_SYNCS}) longest stall (GC; run queue; busy)`, 'volume longest stall (GC; run queue; busy)', 'md per round', 'volume per round'], style: PLAIN });
  const per = (c: CellResult, k: 'md' | 'volume') => c.rows[k].samples.map((s) => ms(s.maxStallMs ?? NaN)).join(' ');
  // Beside each, the longest GC pause, the most main-thread run-queue wait (a whole
  // checkpoint's, not one stall's) and the longest busy stretch of the same windows (matrix.ts M8).
  const withGc = (c: CellResult, k: 'md' | 'mdConcurrent' | 'volume') =>
    `${ms(c.rows[k].longestStallMs)} (${ms(c.rows[k].longestGcPauseMs)}; ${ms(c.rows[k].mostRunQueueWaitMs)}; ${ms(c.rows[k].longestBusyMs)})`;
  for (const c of cells) t.push([c.relations, c.pages, withGc(c, 'md'), withGc(c, 'mdConcurrent'), withGc(c, 'volume'), per(c, 'md'), per(c, 'volume')]);
  return t.toString();
}

/** The longest stall of the whole matrix, over both engines (NaN without cells). */
export function longestStallMs(cells: readonly CellResult[]): number {
  const all = cells.flatMap((c) => [c.rows.md.longestStallMs, c.rows.mdConcurrent.longestStallMs, c.rows.volume.longestStallMs]).filter(Number.isFinite);
  return all.length > 0 ? Math.max(...all) : NaN;
}

export function pagePathTable(result: BenchResult): string {
  const t = new Table({
    head: ['storage', 'hit reads', 'readInto hits', 'readInto / CPU s (to floor)', 'miss reads', 'pool writes', 'eviction writes', 'raw pread', 'raw pwrite'],
    style: PLAIN,
  });
  for (const p of [result.pagePath.md, result.pagePath.volume]) {
    t.push([
      p.storage,
      `${rate(p.hitReadsPerS)} (${x(p.ratios.hitReadToRawPread)})`,
      `${rate(p.hitReadIntosPerS)} (${x(p.ratios.hitReadIntoToHitRead)} read)`,
      `${rate(p.hitReadIntosPerCpuS)} (${x(p.ratios.hitReadIntoToCopyFloor)})`,
      `${rate(p.missReadsPerS)} (${x(p.ratios.missReadToRawPread)})`,
      `${rate(p.poolWritesPerS)} (${x(p.ratios.poolWriteToRawPwrite)})`,
      `${rate(p.evictionWritesPerS)} (${x(p.ratios.evictionWriteToRawPwrite)})`,
      rate(p.rawPreadsPerS),
      rate(p.rawPwritesPerS),
    ]);
  }
  return t.toString();
}

/** MB/s with one decimal below 100. */
function mbps(v: number): string {
  return Number.isFinite(v) ? `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} MB/s` : 'n/a';
}

/** The aged sequential read (aged-read.ts): how the sets were made and read, in one line. */
export function agedReadLine(result: BenchResult): string {
  const r = result.agedRead;
  const how = r.cache.dropped ? `page cache dropped before each fork's read (${r.cache.via})` : `page cache NOT dropped, warm reads only: ${r.cache.reason}`;
  return (
    `Aged sequential read: ${r.forks} forks of ${r.pages} pages (${r.blockSize} B) per set, fresh (written once, contiguous) and aged ` +
    `(${r.updates} random single-page updates over ${r.checkpoints} checkpoints; the defragmentation pass rewrote ${r.forksDefragmented} forks, ${r.pagesDefragmented} pages); ` +
    `every block in order through smgr.read, the two sets side by side; medians of ${r.rounds} rounds (aged / fresh: of each round's ratio); ${how}`
  );
}

export function agedReadTable(result: BenchResult): string {
  const r = result.agedRead;
  const t = new Table({ head: ['set', 'extents per fork (mean / max)', 'sequential read', 'min-max', 'warm read'], style: PLAIN });
  for (const [name, s] of [
    ['fresh', r.fresh],
    ['aged', r.aged],
  ] as const) {
    t.push([name, `${s.extentsPerFork.mean.toFixed(2)} / ${s.extentsPerFork.max}`, mbps(s.readMBps.median), `${mbps(s.readMBps.min)} - ${mbps(s.readMBps.max)}`, mbps(s.warmReadMBps)]);
  }
  const q = r.roundRatios.filter(Number.isFinite);
  t.push(['aged / fresh', `most after any checkpoint: ${r.agingExtentsMax}`, x(r.ratios.agedToFreshRead), q.length > 0 ? `${x(Math.min(...q))} - ${x(Math.max(...q))}` : 'n/a', x(r.ratios.agedToFreshWarmRead)]);
  return t.toString();
}

export function machineLine(result: BenchResult): string {
  const m = result.machine;
  const gib = (m.memoryBytes / 1024 ** 3).toFixed(0);
  return `${m.cpus} x ${m.cpuModel}, ${gib} GiB, ${m.platform} ${m.kernel}, Node ${m.node}; ${m.dir} on ${m.fsType}; fdatasync of an 8 KiB overwrite: median ${m.fdatasync8KiBMs.median.toFixed(3)} ms (min ${m.fdatasync8KiBMs.min.toFixed(3)}, max ${m.fdatasync8KiBMs.max.toFixed(3)}, ${m.fdatasync8KiBMs.samples} samples)`;
}

/** One line on the postgres row: what was measured, or why it was not. */
export function postgresLine(result: BenchResult): string {
  const p = result.postgres;
  if (!p.measured) return p.skipped ?? 'postgres row not measured';
  return `postgres row: PostgreSQL ${p.version} from ${p.binDir}${p.user ? `, run as ${p.user}` : ''}; CHECKPOINT after updating one row in each of P pages of R tables, write/sync/total from the server's log_checkpoints line (1 ms resolution), pg files = its sync files`;
}

/** The whole report, as printed without --json. */
export function formatReport(result: BenchResult): string {
  const o = result.options;
  const lines: string[] = [];
  lines.push(`lamstore bench: checkpoint of R relations x P dirty pages (${o.blockSize} B), md segment files vs one volume file; medians of ${o.rounds} rounds${o.cellWarmupRounds > 0 ? ` after ${o.cellWarmupRounds} unrecorded warm-up rounds per cell` : ''}`);
  lines.push('');
  lines.push('Ratios (the headline; floor = raw extent: same bytes, one preallocated file, one fdatasync)');
  lines.push(ratioTable(result.cells));
  lines.push('');
  lines.push('Medians in ms (write and sync phase from CheckpointStats; raw rows timed around pwrite / fsync / fdatasync)');
  lines.push(timeTable(result.cells));
  lines.push(postgresLine(result));
  lines.push('');
  const rowsOn = result.options.isolateEngines === false ? 'all engine rows on the main thread (--one-thread)' : 'each engine row on a thread of its own';
  lines.push(`Longest event-loop stall during the checkpoint, ms (monitorEventLoopDelay, resolution 1 ms; ${rowsOn}; target <= ${STALL_TARGET_MS}): ${ms(longestStallMs(result.cells))} over the matrix`);
  lines.push(stallTable(result.cells));
  lines.push('');
  lines.push(`Page path: ${o.pagePathPages} pages, ${o.pagePathOps} random operations each (ratio to raw RealIO of the same pages; readInto hits: ratio to read hits, and per second of process CPU with the ratio to the floor of a hit, a Map lookup and an 8 KiB copy with no engine)`);
  lines.push(pagePathTable(result));
  lines.push('');
  lines.push(agedReadLine(result));
  lines.push(agedReadTable(result));
  lines.push('');
  const c = result.crc32c;
  lines.push(`CRC-32C on 8 KiB pages: native ${c.nativeMBps.toFixed(0)} MB/s, table ${c.tableMBps.toFixed(0)} MB/s (${x(c.speedup)})`);
  lines.push(`Machine: ${machineLine(result)}`);
  const failed = result.checks.filter((k) => !k.pass);
  // The aged-read checks name forks per set and pages per fork where the others name R and P.
  const where = (k: BenchCheck) => (k.name.startsWith('aged') ? `forks=${k.relations} pages=${k.pages}` : `R=${k.relations} P=${k.pages}`);
  const counts = result.checks.filter((k) => k.kind === 'count');
  const timings = result.checks.filter((k) => k.kind === 'timing');
  lines.push(
    `Checks: counts ${counts.filter((k) => k.pass).length}/${counts.length} as designed (sync counts, aged extents); timing shape ${timings.filter((k) => k.pass).length}/${timings.length} as expected`,
  );
  for (const k of failed) lines.push(`  ${k.kind === 'count' ? 'FAIL' : 'miss'} ${where(k)} ${k.name}: ${k.detail}`);
  lines.push(`Ran ${(result.durationMs / 1000).toFixed(1)} s, ${result.startedAt}`);
  return lines.join('\n');
}

/** One line per finished cell, for non-TTY progress. */
export function cellLine(c: CellResult): string {
  const r = c.ratios;
  const pg = c.rows.postgres ? `, postgres total ${ms(c.rows.postgres.totalMs.median)} ms (md/postgres ${x(r.mdToPostgresTotal)}, postgres/volume ${x(r.postgresToVolumeTotal)})` : '';
  return `R=${c.relations} P=${c.pages}: md sync ${ms(c.rows.md.syncMs.median)} ms, volume sync ${ms(c.rows.volume.syncMs.median)} ms, floor sync ${ms(c.rows.rawExtent.syncMs.median)} ms; md/volume sync ${x(r.mdToVolumeSync)}, volume/floor total ${x(r.volumeToFloorTotal)} (floor + switch: ${x(r.volumeToCowFloorTotal)})${pg}`;
}
