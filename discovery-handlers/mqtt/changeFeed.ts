import type { Clock } from '../../src/util/clock.js';

/**
 * Tells the discovery loop that the device list may have changed. `mark()` is cheap and may be called for
 * every message; the loop `wait()`s for a mark, then `settle()`s for the coalescing window, so a burst of
 * messages costs one list.
 */
export class ChangeFeed {
  private dirty = false;
  private wake: (() => void) | undefined;

  constructor(private readonly clock: Clock) {}

  mark(): void {
    this.dirty = true;
    this.wake?.();
  }

  /** Resolves once marked since the last `take()`, or when the signal aborts. */
  wait(signal: AbortSignal): Promise<void> {
    if (this.dirty || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  /** Waits `ms` (or until the signal aborts): changes in the meantime join this round. */
  settle(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Clears the mark; marks from now on call for another round. */
  take(): void {
    this.dirty = false;
  }
}
