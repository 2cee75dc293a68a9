/**
 * Files a command works on through FileIO (the CLI imports no node:fs): open one, work on it, and
 * close it whatever happens.
 */
import { closeAfter, ioError, openFile } from '../engine/index.js';
import type { FileHandle, FileIO, OpenOptions } from '../engine/index.js';

/**
 * Open `path`, run `work` on the handle, close it. A failure of `work` is an IO_ERROR naming the
 * file and `step` (a LamstoreError it throws passes as it is). A failed close after a failure
 * rides on the first error (`suppressed`, printed under it), which is the one a user can act
 * on; after success it is the error (a file the command wrote may not be whole).
 */
export async function onOpenFile(io: FileIO, path: string, options: OpenOptions, step: string, work: (handle: FileHandle) => Promise<void>): Promise<void> {
  const handle = await openFile(io, path, options);
  await closeAfter(io, handle, path, async () => {
    try {
      await work(handle);
    } catch (err) {
      throw ioError(step, path, err);
    }
  });
}
