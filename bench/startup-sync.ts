/**
 * Startup sync after an unclean stop: how long opening takes when the data
 * directory says the last engine died, for 1000 md relations and a 1 GiB volume.
 * Run: npx tsx bench/startup-sync.ts [dir]   (default: a temporary directory, removed after)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, ForkNumber } from '../engine/index.js';
import { volumeExtension } from '../volume/index.js';
import { markUncleanStop } from '../engine/testing.js';

const RELATIONS = 1000;
const VOLUME_BYTES = 1024 ** 3;

async function main(): Promise<void> {
  const dir = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'lamstore-startup-')));
  const dataDir = join(dir, 'data');
  const volPath = join(dir, 'vol');
  try {
    const ext = () => volumeExtension({ path: volPath, create: { sizeBytes: VOLUME_BYTES, blockSize: 8192 } });
    let engine = await Engine.open({ dataDir, preload: [ext()], sharedBuffers: 2048 });
    const page = new Uint8Array(8192).fill(7, 16);
    for (let r = 0; r < RELATIONS; r++) {
      const rel = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 10000 + r });
      await rel.create(ForkNumber.MAIN);
      await rel.extend(ForkNumber.MAIN, page);
    }
    const v = engine.relation({ spcOid: 1663, dbOid: 5, relNumber: 1 }, { storage: 'volume' });
    await v.create(ForkNumber.MAIN);
    for (let b = 0; b < 1000; b++) await v.extend(ForkNumber.MAIN, page);
    await engine.close();
    // An unclean stop: the control file says "in production", as if the engine had died.
    await markUncleanStop(dataDir);
    const t0 = performance.now();
    engine = await Engine.open({ dataDir, preload: [ext()], sharedBuffers: 2048 });
    const openMs = performance.now() - t0;
    const s = engine.openStats;
    const counts = engine.ioCounts();
    console.log(
      `startup-sync: md-relations=${RELATIONS} files=${s.startupSyncFiles} dirs=${s.startupSyncDirs} ` +
        `data-dir-sync=${s.startupSyncMs.toFixed(1)} ms open-total=${openMs.toFixed(1)} ms volume=${VOLUME_BYTES / 1024 ** 3} GiB fdatasync-calls=${counts.fdatasync} fsync-calls=${counts.fsync}`,
    );
    await engine.close();
  } finally {
    if (process.argv[2] === undefined) await rm(dir, { recursive: true, force: true });
  }
}

await main();
