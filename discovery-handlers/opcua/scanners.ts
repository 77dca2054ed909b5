import { logError } from '../../src/util/logger.js';
import type { OpcuaEnv } from './env.js';
import { scanDiscoveryUrl } from './scan.js';
import type { FoundServer } from './types.js';
import { Wakeup } from './wakeup.js';

/** Scans woken early (a lost connection) are at least this far apart, so a flapping server cannot spin a loop. */
const MIN_SCAN_GAP_MS = 200;

/**
 * One poll loop per discovery URL, so that a discovery URL that hangs (and costs connectTimeoutMs per scan)
 * does not delay what the others report. `changed` is triggered each time a loop has a new result.
 */
export class Scanners {
  readonly changed: Wakeup;
  private readonly results = new Map<string, FoundServer[]>();
  private readonly wakeups = new Map<string, Wakeup>();
  /** Server URLs whose connection was lost, and when: results of scans begun before then leave them out. */
  private readonly lostAt = new Map<string, number>();
  private loops: Promise<void>[] = [];

  constructor(private readonly env: OpcuaEnv) {
    this.changed = new Wakeup(env.clock, env.signal);
  }

  start(): void {
    this.loops = this.env.settings.discoveryUrls.map((url) => {
      const wakeup = new Wakeup(this.env.clock, this.env.signal);
      this.wakeups.set(url, wakeup);
      return this.loop(url, wakeup);
    });
  }

  /**
   * A watched server went away: drop it from every result now (a discovery server's last answer may still
   * list it) and scan every discovery URL again, which brings it back if it is still there.
   */
  lost(serverUrl: string): void {
    this.lostAt.set(serverUrl, this.env.clock.now());
    for (const [url, found] of this.results) {
      this.results.set(
        url,
        found.filter((f) => f.serverUrl !== serverUrl),
      );
    }
    this.changed.trigger();
    for (const wakeup of this.wakeups.values()) wakeup.trigger();
  }

  /** True once every discovery URL has been scanned once: the first list waits for all of them. */
  complete(): boolean {
    return this.results.size === this.env.settings.discoveryUrls.length;
  }

  /** The latest results, in discoveryUrls order (which decides who wins when two URLs find one server). */
  current(): FoundServer[] {
    return this.env.settings.discoveryUrls.flatMap((url) => this.results.get(url) ?? []);
  }

  /** Resolves when every loop has ended (after the env's signal aborted). */
  async stopped(): Promise<void> {
    await Promise.all(this.loops);
  }

  private lostSince(serverUrl: string, startedAt: number): boolean {
    const at = this.lostAt.get(serverUrl);
    return at !== undefined && at >= startedAt;
  }

  private async loop(url: string, wakeup: Wakeup): Promise<void> {
    while (!this.env.signal.aborted) {
      const startedAt = this.env.clock.now();
      try {
        const found = await scanDiscoveryUrl(this.env, url);
        if (this.env.signal.aborted) return;
        this.results.set(
          url,
          found.filter((f) => !this.lostSince(f.serverUrl, startedAt)),
        );
        this.changed.trigger();
      } catch (err) {
        logError(this.env.logger, 'OPC UA scan failed', err, { url });
      }
      const woken = await wakeup.wait(this.env.settings.pollIntervalMs);
      if (woken) await wakeup.pause(MIN_SCAN_GAP_MS - (this.env.clock.now() - startedAt));
    }
  }
}
