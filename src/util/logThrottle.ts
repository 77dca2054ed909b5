import type { Clock } from './clock.js';

/**
 * Lets at most `limit` log lines through per window, so a flood of bad input (datagrams, births, packets) cannot flood the log.
 * `allow()` returns how many lines were suppressed since the last one let through, or false.
 */
export class LogThrottle {
  private windowStart = Number.NEGATIVE_INFINITY;
  private count = 0;
  private suppressed = 0;
  constructor(
    private readonly clock: Clock,
    private readonly limit = 10,
    private readonly windowMs = 60_000,
  ) {}

  allow(): { suppressed: number } | false {
    const now = this.clock.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.count = 0;
    }
    if (this.count >= this.limit) {
      this.suppressed++;
      return false;
    }
    this.count++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return { suppressed };
  }
}
