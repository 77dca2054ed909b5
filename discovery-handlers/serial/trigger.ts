import type { Clock } from '../../src/util/clock.js';

/**
 * Wakes the discovery loop: `fire()` (from file-system events) marks a rescan due after a short debounce,
 * so a burst of events costs one scan; `wait()` returns when one is due, the interval passes, or the
 * signal aborts.
 */
export class RescanTrigger {
  private due = false;
  private debounce: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly debounceMs: number,
  ) {}

  fire(): void {
    if (this.debounce) return;
    this.debounce = this.clock.setTimeout(() => {
      this.debounce = undefined;
      this.due = true;
      this.wake?.();
    }, this.debounceMs);
  }

  /** Called as a scan starts: events from now on call for another scan. */
  reset(): void {
    this.due = false;
  }

  wait(intervalMs: number, signal: AbortSignal): Promise<void> {
    if (this.due || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const timer = this.clock.setTimeout(done, intervalMs);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  close(): void {
    if (this.debounce) this.clock.clearTimeout(this.debounce);
    this.debounce = undefined;
    this.wake?.();
  }
}
