/**
 * Fixtures for the volume suites: an engine with the volume extension on SimDisk or a real
 * temporary directory, pages that carry valid checksums, and file hashes.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Engine, setPageChecksum } from '../../engine/index.js';
import type { FileIO, ForkNumber, RelFileLocator, StorageManager } from '../../engine/index.js';
import { SMALL_BS } from './engine.js';
import { volumeExtension } from '../../volume/index.js';
import type { Volume, VolumeCreateOptions } from '../../volume/index.js';


export interface VolumeEngine {
  engine: Engine;
  smgr: StorageManager;
  volume: Volume;
}

export async function openVolumeEngine(options: {
  io?: FileIO;
  dataDir: string;
  path: string;
  create?: VolumeCreateOptions;
  readOnly?: boolean;
  blockSize?: number;
  /** The pool's pages, also the volume's reserve for dirty pages (volume.ts V5). @default 256 */
  sharedBuffers?: number;
}): Promise<VolumeEngine> {
  const ext = volumeExtension({ path: options.path, create: options.create, readOnly: options.readOnly });
  const engine = await Engine.open({ dataDir: options.dataDir, blockSize: options.blockSize ?? SMALL_BS, sharedBuffers: options.sharedBuffers ?? 256, io: options.io, preload: [ext] });
  return { engine, smgr: engine.storageManager('volume'), volume: ext.volume! };
}

/** Write existing blocks `blockNum`.. of one fork through the write contract (smgr.ts W1-W4). */
export async function writePages(smgr: StorageManager, r: RelFileLocator, fork: ForkNumber, blockNum: number, pages: readonly Uint8Array[]): Promise<number> {
  return (await smgr.writeBuffers(pages.map((page, i) => ({ rel: r, fork, blockNum: blockNum + i, page })), 'eviction')).writes;
}

export function rel(relNumber: number, dbOid = 5): RelFileLocator {
  return { spcOid: 1663, dbOid, relNumber };
}

/** A page whose bytes say which relation, fork, block and version it is, with its checksum. */
export function makePage(r: RelFileLocator, fork: ForkNumber, blk: number, version = 1, bs = SMALL_BS): Uint8Array {
  const p = new Uint8Array(bs);
  const v = new DataView(p.buffer);
  v.setUint32(0, r.relNumber, true);
  v.setUint32(4, blk, true);
  v.setUint32(12, fork, true);
  v.setUint32(16, version, true);
  for (let i = 20; i < bs; i += 4) v.setUint32(i, (r.relNumber * 7919 + blk * 104729 + version * 31 + i) >>> 0, true);
  setPageChecksum(p, blk);
  return p;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function hashFile(path: string): Promise<string> {
  return sha256(await readFile(path));
}
