import { backoffDelay, sleep } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import { noAnswer } from './kubeApiError.js';

/**
 * Whether the API server answers. While it does not, one probe (with backoff and jitter) asks, and every
 * queued write waits here instead of knocking on its own: an outage costs a probe every few seconds, not a
 * request per device, and all writes resume together as soon as the server is back.
 */
export class Reachability {
  private back: Promise<void> | undefined;

  constructor(
    private readonly probe: () => Promise<unknown>,
    private readonly delays: { baseMs: number; maxMs: number },
    private readonly signal: AbortSignal,
    private readonly logger: Logger,
  ) {}

  /** True from a request that got no answer until the probe sees the server back. */
  get down(): boolean {
    return this.back !== undefined;
  }

  /** Resolves at once while the server answers; otherwise when the probe sees it back (or on close). */
  wait(): Promise<void> {
    return this.back ?? Promise.resolve();
  }

  /** A request got no answer: start probing. True for the first report of an outage. */
  lost(reason: string): boolean {
    if (this.back) return false;
    this.back = this.probeUntilBack(reason).finally(() => {
      this.back = undefined;
    });
    return true;
  }

  private async probeUntilBack(reason: string): Promise<void> {
    const started = Date.now();
    for (let attempt = 0; !this.signal.aborted; attempt++) {
      await sleep(backoffDelay(attempt, this.delays.baseMs, this.delays.maxMs), this.signal);
      if (this.signal.aborted) return;
      try {
        await this.probe();
      } catch (err) {
        if (noAnswer(err)) continue; // still no answer
      }
      this.logger.info({ downMs: Date.now() - started, reason }, 'API server answers again; writing');
      return;
    }
  }
}
