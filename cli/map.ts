/**
 * `lamstore map <volume> [--width N] [--svg <file>]`: the occupancy of a volume as a grid of
 * cells, in the terminal and optionally as an SVG picture of the same grid.
 *
 * Invariants:
 *  M1 The grid has `width` cells per row and at most ROWS_MAX rows; each cell covers the same
 *     number of consecutive blocks (the last may cover fewer), so cell i starts at block
 *     i * blocksPerCell.
 *  M2 Every block has exactly one owner: metadata (superblocks, catalog, snapshot table), a
 *     relation (any of its forks), held by snapshots only (`*`, listed only when there are
 *     some), free, or pending free (blocks in no extent and no free run: space freed in a
 *     running engine and not yet reusable; 0 for a volume read offline). The legend's counts
 *     add up to the volume's blocks.
 *  M3 A cell shows the owner of most of its blocks, except that a cell with any used block
 *     (metadata or relation) shows the used owner with most blocks: a small relation never
 *     vanishes into a free cell, so the map errs towards showing fragmentation.
 *  M4 Colours only when stdout is a terminal or FORCE_COLOR is set, never with NO_COLOR;
 *     otherwise plain characters: M metadata, . free, ~ pending free, a-z A-Z 0-9 relations
 *     (in catalog order; further relations share #).
 *  M5 Read-only (openVolumeReadOnly); the SVG file is written with FileIO, never the volume.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import pc from 'picocolors';
import { RealIO } from '../engine/index.js';
import { METADATA_BLOCKS, openVolumeReadOnly } from '../volume/index.js';
import type { VolumeInfo } from '../volume/index.js';
import { formatBytes, parsePositiveInt } from '../cmdline/args.js';
import { toFailure, usageFailure, withFile } from '../cmdline/failure.js';
import { onOpenFile } from '../cmdline/files.js';
import { relationKey } from './inspect.js';

export interface MapOptions {
  width: string;
  svg?: string;
}

export const MAP_WIDTH_DEFAULT = 64;
export const MAP_WIDTH_MAX = 1024;
export const ROWS_MAX = 32;

/** Owner numbers: the index of each owner in `OccupancyMap.owners`; relations from FIRST_RELATION on. */
const Owner = { METADATA: 0, FREE: 1, PENDING: 2, FIRST_RELATION: 3 } as const;
const RELATION_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLNOPQRSTUVWXYZ0123456789';

export interface OwnerInfo {
  char: string;
  label: string;
  blocks: number;
  /** SVG fill colour. */
  fill: string;
}

export interface OccupancyMap {
  width: number;
  rows: number;
  blocksPerCell: number;
  cellCount: number;
  /** Owner index per cell (M3). */
  cells: Uint32Array;
  owners: OwnerInfo[];
}

interface Span {
  start: number;
  end: number;
  owner: number;
}

/** Build the grid of a volume (M1-M3). */
export function buildMap(info: VolumeInfo, width: number): OccupancyMap {
  const volumeBlocks = info.volumeBlocks;
  const blocksPerCell = Math.max(1, Math.ceil(volumeBlocks / (width * ROWS_MAX)));
  const cellCount = Math.ceil(volumeBlocks / blocksPerCell);
  const rows = Math.ceil(cellCount / width);
  const owners: OwnerInfo[] = [
    { char: 'M', label: 'metadata (superblocks, catalog)', blocks: 0, fill: '#d62728' },
    { char: '.', label: 'free', blocks: 0, fill: '#eeeeee' },
    { char: '~', label: 'pending free (reusable after the next checkpoint)', blocks: 0, fill: '#f2c14e' },
  ];
  const spans: Span[] = [
    { start: 0, end: METADATA_BLOCKS, owner: Owner.METADATA },
  ];
  for (const b of info.catalog.pageBlocks) spans.push({ start: b, end: b + 1, owner: Owner.METADATA });
  for (const b of info.snapshotTableBlocks ?? []) spans.push({ start: b, end: b + 1, owner: Owner.METADATA });
  for (const r of info.freeRuns) spans.push({ start: r.startBlock, end: r.startBlock + r.lengthBlocks, owner: Owner.FREE });
  const relationOwner = new Map<string, number>();
  for (const f of info.forks) {
    const key = relationKey(f);
    let owner = relationOwner.get(key);
    if (owner === undefined) {
      const n = relationOwner.size;
      owner = Owner.FIRST_RELATION + n;
      relationOwner.set(key, owner);
      // Spread hues by the golden angle so neighbouring relations differ clearly.
      owners.push({ char: RELATION_CHARS[n] ?? '#', label: `relation ${key}`, blocks: 0, fill: `hsl(${Math.round((n * 137.508) % 360)}, 65%, 50%)` });
    }
    for (const e of f.extents) spans.push({ start: e.startBlock, end: e.startBlock + e.lengthBlocks, owner });
  }
  spans.sort((a, b) => a.start - b.start);
  // Gaps between the known spans are pending free (M2), except what only snapshots hold.
  const held = info.snapshotHeldRuns ?? [];
  const snapshotOwner = owners.length;
  if (held.length > 0) owners.push({ char: '*', label: 'held by snapshots only', blocks: 0, fill: '#7f7f7f' });
  const full: Span[] = [];
  let hi = 0;
  const gap = (start: number, end: number): void => {
    let at = start;
    while (hi < held.length && held[hi]!.startBlock + held[hi]!.lengthBlocks <= at) hi++;
    for (let k = hi; k < held.length && held[k]!.startBlock < end; k++) {
      const h = held[k]!;
      const hs = Math.max(at, h.startBlock);
      const he = Math.min(end, h.startBlock + h.lengthBlocks);
      if (hs > at) full.push({ start: at, end: hs, owner: Owner.PENDING });
      if (he > hs) full.push({ start: hs, end: he, owner: snapshotOwner });
      at = Math.max(at, he);
    }
    if (at < end) full.push({ start: at, end, owner: Owner.PENDING });
  };
  let at = 0;
  for (const s of spans) {
    if (s.start > at) gap(at, s.start);
    const start = Math.max(s.start, at);
    if (s.end > start) full.push({ start, end: s.end, owner: s.owner });
    at = Math.max(at, s.end);
  }
  if (at < volumeBlocks) gap(at, volumeBlocks);
  for (const s of full) owners[s.owner]!.blocks += s.end - s.start;

  const cells = new Uint32Array(cellCount);
  const tally = new Map<number, number>();
  let si = 0;
  for (let c = 0; c < cellCount; c++) {
    const cStart = c * blocksPerCell;
    const cEnd = Math.min(cStart + blocksPerCell, volumeBlocks);
    tally.clear();
    while (si < full.length && full[si]!.end <= cStart) si++;
    for (let k = si; k < full.length && full[k]!.start < cEnd; k++) {
      const s = full[k]!;
      const n = Math.min(s.end, cEnd) - Math.max(s.start, cStart);
      if (n > 0) tally.set(s.owner, (tally.get(s.owner) ?? 0) + n);
    }
    let best: number = Owner.FREE;
    let bestN = -1;
    let bestUsed = false;
    for (const [owner, n] of tally) {
      const used = owner === Owner.METADATA || owner >= Owner.FIRST_RELATION;
      if ((used && !bestUsed) || (used === bestUsed && n > bestN)) {
        best = owner;
        bestN = n;
        bestUsed = used;
      }
    }
    cells[c] = best;
  }
  return { width, rows, blocksPerCell, cellCount, cells, owners };
}

const RELATION_COLOURS = [pc.cyan, pc.green, pc.blue, pc.magenta, pc.yellow, pc.white];

function paint(owner: number, text: string, colour: boolean): string {
  if (!colour) return text;
  if (owner === Owner.METADATA) return pc.bold(pc.red(text));
  if (owner === Owner.FREE) return pc.dim(text);
  if (owner === Owner.PENDING) return pc.yellow(text);
  return RELATION_COLOURS[(owner - Owner.FIRST_RELATION) % RELATION_COLOURS.length]!(text);
}

export function formatMap(file: string, info: VolumeInfo, map: OccupancyMap, colour: boolean): string {
  const bs = info.blockSizeBytes;
  const lines = [
    `${file}: ${info.volumeBlocks} blocks of ${bs} bytes (${formatBytes(info.volumeSizeBytes)}); one cell = ${map.blocksPerCell} block${map.blocksPerCell === 1 ? '' : 's'} (${formatBytes(map.blocksPerCell * bs)})`,
  ];
  const labelWidth = String(info.volumeBlocks).length;
  for (let r = 0; r < map.rows; r++) {
    let row = '';
    for (let c = r * map.width; c < Math.min((r + 1) * map.width, map.cellCount); c++) {
      const owner = map.cells[c]!;
      row += paint(owner, map.owners[owner]!.char, colour);
    }
    lines.push(`${String(r * map.width * map.blocksPerCell).padStart(labelWidth)} ${row}`);
  }
  lines.push('legend:');
  for (let i = 0; i < map.owners.length; i++) {
    const o = map.owners[i]!;
    lines.push(`  ${paint(i, o.char, colour)} ${o.label}: ${o.blocks} block${o.blocks === 1 ? '' : 's'} (${formatBytes(o.blocks * bs)})`);
  }
  return `${lines.join('\n')}\n`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The same grid as an SVG picture: one rect per horizontal run of equal cells, and a legend. */
export function renderSvg(file: string, info: VolumeInfo, map: OccupancyMap): string {
  const cellPx = 10;
  const pad = 10;
  const headerPx = 24;
  const legendLinePx = 18;
  const gridW = map.width * cellPx;
  const gridH = map.rows * cellPx;
  const w = Math.max(gridW + 2 * pad, 420);
  const h = headerPx + gridH + pad + map.owners.length * legendLinePx + pad;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="monospace" font-size="12">`,
    `<title>lamstore map of ${escapeXml(file)}</title>`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="${pad}" y="16">${escapeXml(`${file}: ${info.volumeBlocks} blocks of ${info.blockSizeBytes} bytes; one cell = ${map.blocksPerCell} block(s)`)}</text>`,
  ];
  for (let r = 0; r < map.rows; r++) {
    const end = Math.min((r + 1) * map.width, map.cellCount);
    let c = r * map.width;
    while (c < end) {
      const owner = map.cells[c]!;
      let k = c + 1;
      while (k < end && map.cells[k] === owner) k++;
      const x = pad + (c - r * map.width) * cellPx;
      const y = headerPx + r * cellPx;
      const o = map.owners[owner]!;
      out.push(
        `<rect x="${x}" y="${y}" width="${(k - c) * cellPx}" height="${cellPx}" fill="${o.fill}" stroke="#ffffff" stroke-width="0.5"><title>${escapeXml(`${o.label}: blocks ${c * map.blocksPerCell}..${Math.min(k * map.blocksPerCell, info.volumeBlocks) - 1}`)}</title></rect>`,
      );
      c = k;
    }
  }
  map.owners.forEach((o, i) => {
    const y = headerPx + gridH + pad + i * legendLinePx;
    out.push(`<rect x="${pad}" y="${y}" width="12" height="12" fill="${o.fill}" stroke="#888888" stroke-width="0.5"/>`);
    out.push(`<text x="${pad + 18}" y="${y + 10}">${escapeXml(`${o.char} ${o.label}: ${o.blocks} blocks`)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Write a small text file through FileIO (M5): create or truncate, write, fsync, close. */
async function writeTextFile(path: string, text: string): Promise<void> {
  const io = new RealIO();
  await onOpenFile(io, path, { create: true }, 'write', async (handle) => {
    await io.ftruncate(handle, 0);
    await io.pwrite(handle, new TextEncoder().encode(text), 0);
    await io.fsync(handle);
  });
}

export async function runMap(file: string, options: MapOptions): Promise<void> {
  const width = parsePositiveInt(options.width, '--width', MAP_WIDTH_MAX);
  if (options.svg === '') throw usageFailure('--svg needs a file name', file);
  const info = await openVolumeReadOnly(file);
  const map = buildMap(info, width);
  if (options.svg !== undefined) {
    const svgFile = options.svg;
    try {
      await writeTextFile(resolve(svgFile), renderSvg(file, info, map));
    } catch (err) {
      // Name the SVG file, not the volume: that is the one that failed.
      throw toFailure(err, svgFile, 'map');
    }
  }
  const colour = pc.isColorSupported && (process.stdout.isTTY === true || Boolean(process.env.FORCE_COLOR));
  process.stdout.write(formatMap(file, info, map, colour));
  if (options.svg !== undefined) process.stdout.write(`wrote ${options.svg}\n`);
}

export function addMapCommand(program: Command): Command {
  return program
    .command('map')
    .description('draw the occupancy of a volume: metadata, each relation, free and pending-free space')
    .argument('<volume>', 'the volume file')
    .option('-w, --width <cells>', `cells per row (1..${MAP_WIDTH_MAX})`, String(MAP_WIDTH_DEFAULT))
    .option('--svg <file>', 'also write the map as an SVG picture to <file>')
    .addHelpText(
      'after',
      `
Example:
  $ lamstore map data.lam
  $ lamstore map data.lam --width 100 --svg data-map.svg

Each cell covers the same number of blocks (at most ${ROWS_MAX} rows); a cell holding any used
block shows the used owner with most blocks. Plain characters when stdout is not a terminal:
M metadata, . free, ~ pending free, a-z A-Z 0-9 relations. Exit status: 0 drawn; 1 missing,
locked or corrupt volume (or the SVG could not be written); 2 bad usage.`,
    )
    .action(async (file: string, options: MapOptions) => {
      await withFile(file, 'map', () => runMap(file, options));
    });
}
