/**
 * Fixtures for the snapshot suites: a volume built through the Volume API (no engine) on SimDisk
 * or a real file, pages written and rewritten by version, and a fingerprint of a state (every
 * fork's every page, hashed) to compare a snapshot or the live state with what it was.
 */
import { ForkNumber } from '../../engine/index.js';
import type { FileIO } from '../../engine/index.js';
import { Volume } from '../../volume/index.js';
import { SMALL_BS } from './engine.js';
import { STUB_HOST, makePage, rel, sha256 } from './volume.js';

export async function openVol(io: FileIO, path: string, options: { create?: number; snapshot?: string; readOnly?: boolean; poolPages?: number } = {}): Promise<Volume> {
  return Volume.open({
    io,
    path,
    blockSize: SMALL_BS,
    create: options.create !== undefined ? { sizeBytes: options.create, blockSize: SMALL_BS } : undefined,
    snapshot: options.snapshot,
    readOnly: options.readOnly,
    poolPages: options.poolPages,
  });
}

/** Extend relation `relNumber`'s MAIN fork by `count` pages of `version`, creating it when missing. */
export async function extendPages(vol: Volume, relNumber: number, count: number, version = 1): Promise<void> {
  const r = rel(relNumber);
  if (!vol.exists(r, ForkNumber.MAIN)) await vol.create(r, ForkNumber.MAIN, STUB_HOST);
  const from = vol.nblocks(r, ForkNumber.MAIN);
  for (let b = from; b < from + count; b++) await vol.extend(r, ForkNumber.MAIN, b, makePage(r, ForkNumber.MAIN, b, version), STUB_HOST);
}

/** Rewrite the given blocks of a fork (copy-on-write: each goes to a new block) with `version`. */
export async function rewritePages(vol: Volume, relNumber: number, blocks: readonly number[], version: number): Promise<void> {
  const r = rel(relNumber);
  const sorted = [...new Set(blocks)].sort((a, b) => a - b);
  if (sorted.length === 0) return;
  await vol.writeBuffers(
    sorted.map((b) => ({ rel: r, fork: ForkNumber.MAIN, blockNum: b, page: makePage(r, ForkNumber.MAIN, b, version) })),
    STUB_HOST,
    'checkpoint',
  );
}

/** Every fork of the state the volume shows: key -> (nblocks, hash of every page in order). */
export async function fingerprint(vol: Volume): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const page = new Uint8Array(vol.blockSize);
  for (const f of vol.info().forks) {
    const r = { spcOid: f.spcOid, dbOid: f.dbOid, relNumber: f.relNumber };
    const hashes: string[] = [];
    for (let b = 0; b < f.nblocks; b++) {
      await vol.read(r, f.fork as ForkNumber, b, page);
      hashes.push(sha256(page).slice(0, 16));
    }
    out[`${f.spcOid}/${f.dbOid}/${f.relNumber}/${f.forkName}`] = `${f.nblocks}:${sha256(new TextEncoder().encode(hashes.join(',')))}`;
  }
  return out;
}

/** The fingerprint of snapshot `name` (opened read-only on its own). */
export async function snapshotFingerprint(io: FileIO, path: string, name: string): Promise<Record<string, string>> {
  const vol = await openVol(io, path, { snapshot: name });
  try {
    return await fingerprint(vol);
  } finally {
    await vol.close();
  }
}

export { SMALL_BS };
