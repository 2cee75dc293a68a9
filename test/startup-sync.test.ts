/**
 * Goal: after an unclean stop the engine makes everything already in the data directory durable
 * before use; after a clean stop it syncs nothing but its control file (whose state, "in
 * production", is what tells the next open about a crash). Method: SimDisk. A process
 * crash (processCrash: handles gone, page cache kept) leaves a file written but unsynced; the
 * next open must fsync it, so that a power loss after that (crash 'drop') keeps it.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { withEngine } from './helpers/engine.js';

async function writeUnsynced(disk: SimDisk, path: string, byte: number, lengthBytes = 64): Promise<void> {
  await disk.mkdir(path.slice(0, path.lastIndexOf('/')));
  const h = await disk.open(path, { create: true });
  await disk.pwrite(h, new Uint8Array(lengthBytes).fill(byte), 0);
  await disk.close(h);
}

describe('startup sync after an unclean stop', () => {
  it('a clean stop leaves nothing to sync: the next open syncs no file, only writes its control file', async () => {
    const disk = new SimDisk();
    const a = await Engine.open({ dataDir: '/data', io: disk });
    await a.close();
    await withEngine({ dataDir: '/data', io: disk }, async (b) => {
      expect(b.openStats.uncleanStop).toBe(false);
      expect(b.openStats.startupSyncFiles).toBe(0);
      expect(b.ioCounts().fsync).toBe(1); // the control file, now "in production"
      expect(b.ioCounts().fsyncDir).toBe(0);
    });
  });

  it('after a process crash every file and directory is synced at open, so a later power loss keeps what the page cache held', async () => {
    const disk = new SimDisk();
    await Engine.open({ dataDir: '/data', io: disk }); // never closed: the process dies
    await writeUnsynced(disk, '/data/base/5/16384', 7);
    await writeUnsynced(disk, '/data/pg_xact/0000', 9, 8192);
    disk.processCrash();

    const b = await Engine.open({ dataDir: '/data', io: disk });
    expect(b.openStats.uncleanStop).toBe(true);
    expect(b.openStats.startupSyncFiles).toBe(2);
    // /data, base, base/5 and the SLRU directories the first open made: pg_xact, pg_commit_ts,
    // pg_multixact, pg_multixact/offsets, pg_multixact/members
    expect(b.openStats.startupSyncDirs).toBe(8);
    expect(b.ioCounts().fsync).toBe(2 + 1); // and the control file, "in production" again
    expect(b.ioCounts().fsyncDir).toBeGreaterThanOrEqual(8);

    const afterPowerLoss = disk.crash('drop');
    expect(afterPowerLoss.readFileNow('/data/base/5/16384')).toEqual(new Uint8Array(64).fill(7));
    expect(afterPowerLoss.readFileNow('/data/pg_xact/0000')).toEqual(new Uint8Array(8192).fill(9));
    await b.close();
  });

  it('without the startup sync the same power loss would lose the file (the test can fail)', async () => {
    const disk = new SimDisk();
    await writeUnsynced(disk, '/data/base/5/16384', 7);
    expect(disk.crash('drop').readFileNow('/data/base/5/16384')).toBeNull();
  });

  it('a failed shutdown checkpoint leaves the directory unclean', async () => {
    const disk = new SimDisk();
    const a = await Engine.open({ dataDir: '/data', io: disk });
    // The first fsync of the control file is close's "shutting down"; the second, the shutdown
    // checkpoint's last step, fails: that checkpoint did not complete.
    disk.injectFault({ kind: 'fsync', nth: 2, code: 'EIO', pathIncludes: 'lam_control' });
    await expect(a.close()).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    const b = await Engine.open({ dataDir: '/data', io: disk });
    expect(b.openStats.uncleanStop).toBe(true);
    await b.close();
  });
});

describe('startup sync of the volume', () => {
  it('clean stop: no fdatasync of the volume at open; unclean stop: exactly one', async () => {
    const { volumeExtension } = await import('../volume/index.js');
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const ext = () => volumeExtension({ path: '/vol/v', create: { sizeBytes: 1024 * 1024, blockSize: 8192 } });
    const a = await Engine.open({ dataDir: '/data', io: disk, preload: [ext()] });
    await a.close();
    const clean = await Engine.open({ dataDir: '/data', io: disk, preload: [ext()] });
    expect(clean.openStats.uncleanStop).toBe(false);
    expect(clean.ioCounts().fdatasync).toBe(0);
    disk.processCrash(); // dies without closing
    await withEngine({ dataDir: '/data', io: disk, preload: [ext()] }, async (unclean) => {
      expect(unclean.openStats.uncleanStop).toBe(true);
      expect(unclean.ioCounts().fdatasync).toBe(1);
    });
  });
});
