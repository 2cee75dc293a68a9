/**
 * The signals that ask a command to stop: SIGINT (Ctrl-C), SIGTERM (`kill`, a service manager,
 * a CI timeout) and SIGHUP (the terminal went away). Node's default for each is to exit at once
 * without running any JavaScript, which would leave `create`'s partial file and `bench`'s
 * temporary directory behind (a killed `bench --relations 100000` left 8.6 GB); with a listener
 * installed the command stops itself, cleans up, and exits as a shell reports a process that
 * signal ended, 128 + its number.
 */
import { constants } from 'node:os';

export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** 128 + the signal's number: 129 SIGHUP, 130 SIGINT, 143 SIGTERM. */
export function signalExitCode(signal: StopSignal): number {
  return 128 + constants.signals[signal];
}

/**
 * Call `onSignal` for every stop signal that arrives until the returned function is called,
 * which puts Node's defaults back (a signal after the command finished its work ends the
 * process at once, as usual).
 */
export function onStopSignals(onSignal: (signal: StopSignal) => void): () => void {
  const listeners = STOP_SIGNALS.map((signal) => {
    const listener = () => onSignal(signal);
    process.on(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of listeners) process.off(signal, listener);
  };
}
