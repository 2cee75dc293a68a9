/**
 * ForwardingIO: a FileIO that passes every call to another one, `inner`, through one hook,
 * `around(method, call)`. The FileIO wrappers (CountingIO, the bench's tracing FileIO, the test
 * doubles) extend it and override the hook, or the one method whose arguments or result they
 * need, instead of each writing out sixteen forwarding methods.
 *
 * Rules it keeps:
 *  W1 Every forwarded call returns a promise, also when `inner` throws at once: errors arrive as
 *     rejections, as from any FileIO.
 *  W2 `rmdir` on an `inner` without it rejects with ENOSYS (what the caller of an optional
 *     method must expect); `writeback` on an `inner` without it ends here, as a hint that goes
 *     nowhere (FileIO C7), and `writebackSupported` is the inner's answer.
 */
import { carriesWriteback, fsError } from './file-io.js';
import type { FileHandle, FileIO } from './file-io.js';

/** The methods of a FileIO (its one property, writebackSupported, and fsyncEach and pwriteEach aside: a wrapper without its own is fsynced one handle at a time, and written one call per write, through `around`). */
export type FileIOMethod = Exclude<keyof FileIO, 'writebackSupported' | 'fsyncEach' | 'pwriteEach'>;

/** The methods forwarded as they are; rmdir and writeback are optional on `inner` (W2). */
const FORWARDED = ['open', 'close', 'pread', 'pwrite', 'pwritev', 'fsync', 'fdatasync', 'ftruncate', 'size', 'unlink', 'rename', 'mkdir', 'fsyncDir', 'stat', 'readdir', 'flock'] as const satisfies readonly FileIOMethod[];

/** Compile-time check: FORWARDED names every method a FileIO must have. */
type RequiredMethod = { [K in FileIOMethod]-?: undefined extends FileIO[K] ? never : K }[FileIOMethod];
const FORWARDS_EVERY_REQUIRED_METHOD: Exclude<RequiredMethod, (typeof FORWARDED)[number]> extends never ? true : never = true;
void FORWARDS_EVERY_REQUIRED_METHOD;

// The forwarding methods are made below, from FORWARDED; this tells the compiler they exist.
export interface ForwardingIO extends FileIO {}

export class ForwardingIO implements FileIO {
  constructor(readonly inner: FileIO) {}

  /** Every forwarded call passes through here; `call` makes it on `inner`. */
  protected around<T>(method: FileIOMethod, call: () => Promise<T>): Promise<T> {
    void method;
    return call();
  }

  rmdir(path: string): Promise<void> {
    return this.around('rmdir', async () => {
      if (!this.inner.rmdir) throw fsError('ENOSYS', 'rmdir', path, 'the wrapped FileIO cannot remove directories');
      await this.inner.rmdir(path);
    });
  }

  writeback(h: FileHandle, offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.around('writeback', async () => {
      await this.inner.writeback?.(h, offsetBytes, lengthBytes);
    });
  }

  /** The inner FileIO's answer: a wrapper adds no place for hints to go. */
  get writebackSupported(): boolean {
    return carriesWriteback(this.inner);
  }

  static {
    for (const method of FORWARDED) {
      Object.defineProperty(ForwardingIO.prototype, method, {
        // async (W1): an inner that throws at once still gives a rejection.
        async value(this: ForwardingIO, ...args: unknown[]): Promise<unknown> {
          return this.around(method, () => (this.inner[method] as (...a: unknown[]) => Promise<unknown>).apply(this.inner, args));
        },
        writable: true,
        configurable: true,
      });
    }
  }
}
