import type { Clock } from '../../src/util/clock.js';

/** The poll loop's pause: ends after a delay, on `trigger()` (also one that came while not waiting), or on abort. */
export class Wakeup {
  private pending = false;
  private release: (() => void) | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly signal: AbortSignal,
  ) {}

  trigger(): void {
    this.pending = true;
    this.release?.();
  }

  /** Resolves `true` when woken by a trigger, `false` after `ms` (if given) or on abort. */
  wait(ms?: number): Promise<boolean> {
    if (this.pending || this.signal.aborted) {
      const triggered = this.pending;
      this.pending = false;
      return Promise.resolve(triggered);
    }
    return new Promise((resolve) => {
      const done = () => {
        if (timer) this.clock.clearTimeout(timer);
        this.signal.removeEventListener('abort', done);
        this.release = undefined;
        const triggered = this.pending;
        this.pending = false;
        resolve(triggered);
      };
      const timer = ms === undefined ? undefined : this.clock.setTimeout(done, ms);
      this.signal.addEventListener('abort', done, { once: true });
      this.release = done;
    });
  }

  /** A plain pause on the injected clock, cut short by abort only. */
  pause(ms: number): Promise<void> {
    if (ms <= 0 || this.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.clock.clearTimeout(timer);
        this.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.clock.setTimeout(done, ms);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }
}
