/**
 * A progress bar for long commands (create's zero-fill, check --pages), drawn with cli-progress
 * only when the output stream is a terminal: piped output gets no control characters at all,
 * the command prints one summary line instead.
 *
 * Invariants:
 *  P1 Disabled (not a TTY, or --json) means no byte is written by this module.
 *  P2 The rate is work done / time since start, shown in the unit's own format (bytes/s or
 *     pages/s); the clock is injectable so tests do not depend on timing.
 */
import cliProgress from 'cli-progress';
import { formatBytes } from '../cmdline/args.js';

export interface ProgressStream {
  isTTY?: boolean;
  write(text: string): unknown;
}

export interface ProgressOptions {
  stream: ProgressStream;
  label: string;
  unit: 'bytes' | 'pages';
  total: number;
  /** Draw nothing when false (P1). */
  enabled: boolean;
  /** Milliseconds, monotonic. @default performance.now */
  nowMs?: () => number;
}

export interface Progress {
  update(done: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update() {}, stop() {} };

function amount(unit: 'bytes' | 'pages', n: number): string {
  return unit === 'bytes' ? formatBytes(n) : `${n} pages`;
}

export function startProgress(options: ProgressOptions): Progress {
  if (!options.enabled || options.stream.isTTY !== true) return NO_PROGRESS;
  const now = options.nowMs ?? (() => performance.now());
  const startMs = now();
  const totalText = amount(options.unit, options.total);
  const bar = new cliProgress.SingleBar({
    stream: options.stream as NodeJS.WritableStream,
    format: `${options.label} [{bar}] {percentage}% {doneText}/{totalText} {rate}`,
    barsize: 30,
    hideCursor: true,
    clearOnComplete: true,
    fps: 10,
  });
  const payload = (done: number) => {
    const seconds = Math.max((now() - startMs) / 1000, 1e-3);
    const perSecond = done / seconds;
    const rate = options.unit === 'bytes' ? `${formatBytes(Math.round(perSecond))}/s` : `${Math.round(perSecond)} pages/s`;
    return { doneText: amount(options.unit, done), totalText, rate };
  };
  bar.start(Math.max(options.total, 1), 0, payload(0));
  let stopped = false;
  return {
    update(done: number) {
      if (!stopped) bar.update(done, payload(done));
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
