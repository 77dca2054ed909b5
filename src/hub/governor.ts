import { performance } from 'node:perf_hooks';

/** Over this event-loop utilisation the hub's thread counts as saturated (time spent waiting for a CPU counts too). */
const BUSY = 0.95;
/** Under this, there is room for more writes. */
const ROOM = 0.85;
const EVERY_MS = 250;

/**
 * How many status writes may be in flight, adjusted to the hub's own thread: message intake comes first.
 * A message not taken off the socket backs up into the broker (whose queues are bounded), while a status
 * write that waits loses nothing — the Device's pending state just folds in the newer report. So every
 * 250 ms the event loop's utilisation is read: over 95% the write concurrency is cut by 30%, under 85% it
 * grows by one, between `1` and `max`. When the API server is the slow side the loop is idle and the
 * limit stays at `max`; when the hub's CPU is, writes slow down before intake does. (npm run bench -- hub:
 * with 85%/70% the limit sat at 1–2 and writes at ~500/s on the shared 2-core machine; with 95%/85% at 2–5
 * and ~900/s, the intake backlog flat either way.)
 */
export class WriteGovernor {
  limit: number;
  private timer?: NodeJS.Timeout;
  private last = performance.eventLoopUtilization();

  constructor(
    private readonly max: number,
    private readonly apply: (limit: number) => void,
  ) {
    this.limit = max;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private tick(): void {
    const now = performance.eventLoopUtilization();
    const elu = performance.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
    const next =
      elu > BUSY
        ? Math.max(1, Math.floor(this.limit * 0.7))
        : elu < ROOM
          ? Math.min(this.max, this.limit + 1)
          : this.limit;
    if (next !== this.limit) {
      this.limit = next;
      this.apply(next);
    }
  }
}
