/**
 * Goal: a crash at any point of volume creation leaves no file, a file that is refused, or a
 * valid empty volume.
 * Method: SimDisk.onCall takes a crash image in every mode before every FileIO call of
 * creation; each image is reopened through a fresh Engine.
 * The D1-D3 crash matrix over a volume workload that lived here is superseded by
 * test/campaign-crash-matrix.test.ts, which runs the same checks on a workload
 * over the volume, md and clog together and adds D4.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.js';
import { SimDisk, CRASH_MODES } from '../engine/testing.js';
import { volumeExtension } from '../volume/index.js';
import { SMALL_BS } from './helpers/engine.js';

const VOL = '/vol/lam.vol';

describe('volume crash safety', () => {
  it('a crash at any point of volume creation leaves no file, or a file that is refused, or a valid empty volume', async () => {
    const disk = new SimDisk();
    await disk.mkdir('/vol');
    const images: { index: number; disk: SimDisk }[] = [];
    disk.onCall = (index) => {
      for (const mode of CRASH_MODES) images.push({ index, disk: disk.crash(mode, index) });
    };
    await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 16, io: disk, preload: [volumeExtension({ path: VOL, create: { sizeBytes: 256 * 1024 } })] }).then((e) => e.close());
    disk.onCall = undefined;
    let absent = 0;
    let refused = 0;
    let valid = 0;
    for (const img of images) {
      const ext = volumeExtension({ path: VOL });
      try {
        const e = await Engine.open({ dataDir: '/data', blockSize: SMALL_BS, sharedBuffers: 16, io: img.disk, preload: [ext] });
        expect(ext.volume!.info().forks).toEqual([]);
        await e.close();
        valid++;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'IO_ERROR') {
          expect((err as { errno?: string }).errno).toBe('ENOENT');
          absent++;
        } else {
          expect(code).toBe('VOLUME_CORRUPT');
          refused++;
        }
      }
    }
    console.log(`create-crash: states=${images.length} absent=${absent} refused=${refused} valid-empty=${valid}`);
    expect(valid).toBeGreaterThan(0);
  });
});
