/**
 * Files a command works on through FileIO (the CLI imports no node:fs): open one, work on it, and
 * close it whatever happens.
 */
import { ioError, openFile } from '../engine/index.js';
import type { FileHandle, FileIO, OpenOptions } from '../engine/index.js';

/**
 * Open `path`, run `work` on the handle, close it. A failure of `work` is an IO_ERROR naming the
 * file and `step` (a LamstoreError it throws passes as it is); the close's own failure is never
 * reported: after a failure the first error is the one a user can act on, and after success the
 * work is done (a command that needs the data durable fsyncs inside `work`).
 */
export async function onOpenFile(io: FileIO, path: string, options: OpenOptions, step: string, work: (handle: FileHandle) => Promise<void>): Promise<void> {
  const handle = await openFile(io, path, options);
  try {
    await work(handle);
  } catch (err) {
    throw ioError(step, path, err);
  } finally {
    await io.close(handle).catch(() => {});
  }
}
