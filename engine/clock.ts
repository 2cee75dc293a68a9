/**
 * The clock is injected (Engine.open({ clock })) so checkpoint timing, spreading and timeout
 * triggers can be tested exactly, without real sleeps.
 */
export interface Clock {
  /** Milliseconds, monotonic, with sub-millisecond precision. */
  now(): number;
  /**
   * Resolve after `ms` milliseconds of this clock. A `background` sleep does not keep the
   * process alive (the checkpointer's timer uses it, so an engine never blocks exit).
   */
  sleep(ms: number, options?: { background?: boolean }): Promise<void>;
  /**
   * Wall-clock milliseconds since the Unix epoch, for what is written down for people (the
   * control file's checkpoint time). Optional: a clock without it gets `Date.now()`.
   */
  wallTimeMs?(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallTimeMs: () => Date.now(),
  sleep: (ms, options) =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (options?.background) t.unref();
    }),
};

/**
 * A clock that moves only when told. `sleep` resolves once `advance` has moved time past its
 * deadline; tests drive timers with it.
 */
export class ManualClock implements Clock {
  #now: number;
  #sleepers: { until: number; resolve: () => void }[] = [];

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /** The same time read as wall-clock ms since the epoch: deterministic too. */
  wallTimeMs(): number {
    return this.#now;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#sleepers.push({ until: this.#now + Math.max(0, ms), resolve });
    });
  }

  /** Number of sleepers waiting. */
  get sleeping(): number {
    return this.#sleepers.length;
  }

  /** Move time forward and wake every sleeper whose deadline passed. */
  async advance(ms: number): Promise<void> {
    this.#now += ms;
    const due = this.#sleepers.filter((s) => s.until <= this.#now);
    this.#sleepers = this.#sleepers.filter((s) => s.until > this.#now);
    for (const s of due) s.resolve();
    // Let the woken continuations run before the caller looks at the result.
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }
}
