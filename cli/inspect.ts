/**
 * `lamstore inspect <volume> [--json] [--relations]`: what a volume holds, read-only.
 *
 * Invariants:
 *  I1 Never writes: the volume is opened read-only under a shared flock (openVolumeReadOnly),
 *     so it works on a read-only file and while other readers look, and is refused while a
 *     writer holds it (VOLUME_LOCKED, exit 1).
 *  I2 A damaged superblock slot does not stop inspection while the other is valid: both slots
 *     are shown, the damaged one with the reason.
 *  I3 `--json` prints exactly one JSON document on stdout, on success and on failure.
 *  I4 Pending free space exists only inside a running engine (space freed since the last
 *     checkpoint); a volume opened offline rebuilds its free space from the catalog, so it
 *     shows 0 here.
 *  I5 A file longer than the volume it records is not damage: a grow stopped before its
 *     superblock switch leaves it (volume/grow.ts G4); the text says so next to the sizes.
 *  I6 Snapshots (volume/snapshots.ts): the text lists each with its name, generation, when it
 *     was taken and the blocks it holds alone (what dropping it frees); the JSON document has
 *     `snapshots` (each with `exclusiveBlocks`), `snapshotHeldBlocks` and `snapshotTableBlocks`.
 */
import type { Command } from 'commander';
import { openVolumeReadOnly } from '../volume/index.js';
import type { ForkInfo, SnapshotInfo, VolumeInfo } from '../volume/index.js';
import { formatBytes } from '../cmdline/args.js';
import { withFile } from '../cmdline/failure.js';

export interface InspectOptions {
  json?: boolean;
  relations?: boolean;
}

export interface VolumeSummary {
  forkCount: number;
  relationCount: number;
  extentCount: number;
  extentsPerForkAverage: number;
  extentsPerForkMax: number;
  largestFreeRunStartBlock: number | null;
}

export function relationKey(f: { spcOid: number; dbOid: number; relNumber: number }): string {
  return `${f.spcOid}/${f.dbOid}/${f.relNumber}`;
}

export function summarize(info: VolumeInfo): VolumeSummary {
  const relations = new Set(info.forks.map(relationKey));
  let extentCount = 0;
  let extentsPerForkMax = 0;
  for (const f of info.forks) {
    extentCount += f.extents.length;
    extentsPerForkMax = Math.max(extentsPerForkMax, f.extents.length);
  }
  let largest: { startBlock: number; lengthBlocks: number } | undefined;
  for (const r of info.freeRuns) if (!largest || r.lengthBlocks > largest.lengthBlocks) largest = r;
  return {
    forkCount: info.forks.length,
    relationCount: relations.size,
    extentCount,
    extentsPerForkAverage: info.forks.length === 0 ? 0 : Math.round((extentCount / info.forks.length) * 100) / 100,
    extentsPerForkMax,
    largestFreeRunStartBlock: largest?.startBlock ?? null,
  };
}

function blocks(n: number, blockSize: number, ofBlocks?: number): string {
  const pct = ofBlocks ? `, ${((100 * n) / ofBlocks).toFixed(1)}%` : '';
  return `${n} block${n === 1 ? '' : 's'} (${formatBytes(n * blockSize)}${pct})`;
}

function extentList(f: ForkInfo, max = 6): string {
  const shown = f.extents.slice(0, max).map((e) => `${e.startBlock}+${e.lengthBlocks}`);
  if (f.extents.length > max) shown.push(`... (${f.extents.length - max} more)`);
  return shown.join(' ');
}

/** I5: a file longer than its volume is the tail of a grow that did not finish (volume/grow.ts G4). */
function beyond(info: VolumeInfo): string {
  const extra = info.fileSizeBytes - info.volumeSizeBytes;
  return extra > 0 ? `, ${extra} beyond the volume (left by a grow that did not finish; not in use, the next grow reuses it)` : '';
}

export function formatInspect(file: string, info: VolumeInfo, withRelations: boolean): string {
  const s = summarize(info);
  const bs = info.blockSizeBytes;
  const rows: [string, string][] = [['volume', file]];
  for (const slot of info.slots) {
    const state = slot.valid ? `valid, generation ${slot.generation}${slot.slot === info.activeSlot ? ' (active)' : ''}` : `DAMAGED: ${slot.reason ?? 'invalid'}`;
    rows.push([`superblock ${slot.slot}`, state]);
  }
  rows.push(
    ['block size', `${bs} bytes`],
    ['volume size', `${formatBytes(info.volumeSizeBytes)} (${info.volumeSizeBytes} bytes, ${info.volumeBlocks} blocks); file ${info.fileSizeBytes} bytes${beyond(info)}`],
    ['catalog', `format ${info.formatVersion}, generation ${info.generation}: index at block ${info.catalog.indexBlock}, ${info.catalog.indexPages} index and ${info.catalog.leafPages} leaf page${info.catalog.leafPages === 1 ? '' : 's'}`],
    ['metadata', blocks(info.metadataBlocks, bs, info.volumeBlocks)],
    ['used', blocks(info.usedBlocks, bs, info.volumeBlocks)],
    ['free', blocks(info.freeBlocks, bs, info.volumeBlocks)],
    ['pending free', blocks(info.pendingFreeBlocks, bs, info.volumeBlocks)],
    ['relation forks', `${s.forkCount} in ${s.relationCount} relation${s.relationCount === 1 ? '' : 's'}`],
    ['extents per fork', s.forkCount === 0 ? 'no forks' : `average ${s.extentsPerForkAverage}, max ${s.extentsPerForkMax} (${s.extentCount} extents)`],
    ['largest free run', s.largestFreeRunStartBlock === null ? 'none (volume full)' : `${blocks(info.largestFreeRunBlocks, bs)} at block ${s.largestFreeRunStartBlock}`],
  );
  const snaps = info.snapshots ?? [];
  if (snaps.length > 0) rows.push(['snapshots', `${snaps.length}, holding ${blocks(info.snapshotHeldBlocks ?? 0, bs, info.volumeBlocks)} (shared with the live state or not)`]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}${v}`);
  if (snaps.length > 0) lines.push('', ...formatSnapshotTable(snaps));
  if (withRelations) {
    lines.push('');
    if (info.forks.length === 0) lines.push('no relation forks');
    else {
      const table = [['relation', 'fork', 'nblocks', 'extents', 'blocks', 'extent list (start+length)']];
      for (const f of info.forks) {
        const capacity = f.extents.reduce((a, e) => a + e.lengthBlocks, 0);
        table.push([relationKey(f), f.forkName, String(f.nblocks), String(f.extents.length), String(capacity), extentList(f)]);
      }
      const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
      const numeric = new Set([2, 3, 4]);
      for (const r of table) {
        lines.push(
          r
            .map((cell, c) => (c === r.length - 1 ? cell : numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
            .join('  ')
            .trimEnd(),
        );
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

/** I6: one row per snapshot (also `lamstore snapshot list`). */
export function formatSnapshotTable(snaps: readonly SnapshotInfo[]): string[] {
  const table = [['snapshot', 'generation', 'taken', 'blocks', 'exclusive']];
  for (const x of snaps) table.push([x.name, String(x.generation), new Date(x.createdMs).toISOString(), String(x.blocks), String(x.exclusiveBlocks)]);
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  const numeric = new Set([1, 3, 4]);
  return table.map((r) => r.map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

export function inspectJson(file: string, info: VolumeInfo, withRelations: boolean): object {
  const { forks, freeRuns, ...rest } = info;
  const s = summarize(info);
  return {
    volume: file,
    ...rest,
    forkCount: s.forkCount,
    relationCount: s.relationCount,
    extentsPerFork: { average: s.extentsPerForkAverage, max: s.extentsPerForkMax, total: s.extentCount },
    largestFreeRun: s.largestFreeRunStartBlock === null ? null : { startBlock: s.largestFreeRunStartBlock, lengthBlocks: info.largestFreeRunBlocks },
    freeRunCount: freeRuns.length,
    ...(withRelations ? { forks, freeRuns } : {}),
  };
}

export async function runInspect(file: string, options: InspectOptions): Promise<void> {
  const info = await openVolumeReadOnly(file);
  if (options.json) process.stdout.write(`${JSON.stringify(inspectJson(file, info, options.relations === true), null, 2)}\n`);
  else process.stdout.write(formatInspect(file, info, options.relations === true));
}

export function addInspectCommand(program: Command): Command {
  return program
    .command('inspect')
    .description('show a volume: both superblock slots, sizes, used/free space, forks and extents (read-only)')
    .argument('<volume>', 'the volume file')
    .option('--json', 'print one JSON document (errors too: { "error": { "code", "message" } })')
    .option('-r, --relations', 'list every relation fork with its nblocks and extents')
    .addHelpText(
      'after',
      `
Example:
  $ lamstore inspect data.lam
  $ lamstore inspect data.lam --relations --json

Opens the file read-only with a shared lock: works on a read-only file, refused while an engine
has the volume open. Exit status: 0 shown; 1 missing, locked or corrupt volume; 2 bad usage.`,
    )
    .action(async (file: string, options: InspectOptions) => {
      await withFile(file, 'inspect', () => runInspect(file, options));
    });
}
