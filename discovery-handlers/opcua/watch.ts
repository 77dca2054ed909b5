import type { OPCUAClient } from 'node-opcua';
import { createClient, NO_SECURITY, onceDisconnect, withDeadline } from './connection.js';
import type { OpcuaEnv } from './env.js';
import { oneLine } from './failureLog.js';

interface Watched {
  client: OPCUAClient;
  disconnect: () => Promise<void>;
  closed: boolean;
  timer?: NodeJS.Timeout;
}

/** A loss this recent makes a failed re-watch worth one more scan (the server may have been half way down). */
const RECENT_LOSS_MS = 10_000;

/**
 * OPC UA tells a client nothing when a server goes away, so each found server gets one secure channel (no
 * session, no security: the discovery endpoint) that is checked with GetEndpoints every keepAliveIntervalMs.
 * When it closes or a check fails, `onLost` asks for a scan at once: a stopped server leaves the device list
 * in about the time of one scan instead of a poll interval.
 */
export class ConnectionWatch {
  private readonly watched = new Map<string, Watched>();
  private readonly lostAt = new Map<string, number>();

  constructor(
    private readonly env: OpcuaEnv,
    private readonly onLost: (url: string) => void,
  ) {}

  /** Watch exactly these server URLs. */
  sync(urls: ReadonlySet<string>): void {
    for (const [url, w] of this.watched) if (!urls.has(url)) this.forget(url, w);
    for (const url of urls) if (!this.watched.has(url)) this.watch(url);
  }

  async close(): Promise<void> {
    const all = [...this.watched];
    this.watched.clear();
    await Promise.all(all.map(([url, w]) => this.forget(url, w)));
  }

  private watch(url: string): void {
    const { keepAliveIntervalMs, connectTimeoutMs } = this.env.settings;
    const client = createClient(this.env, NO_SECURITY, keepAliveIntervalMs * 2 + connectTimeoutMs);
    const w: Watched = { client, disconnect: onceDisconnect(client), closed: false };
    this.watched.set(url, w);
    void this.connect(url, w);
  }

  private async connect(url: string, w: Watched): Promise<void> {
    try {
      await withDeadline(this.env, w.client.connect(url), this.env.settings.connectTimeoutMs, url, () => {
        void w.disconnect();
      });
    } catch (err) {
      if (w.closed) return;
      this.env.logger.debug({ url, err: oneLine(err) }, 'cannot watch OPC UA server');
      void this.forget(url, w);
      if (this.wasRecentlyLost(url)) this.onLost(url);
      return;
    }
    if (w.closed) return void w.disconnect();
    w.client.on('close', () => this.lost(url, w, 'connection closed'));
    w.client.on('connection_lost', () => this.lost(url, w, 'connection lost'));
    this.schedulePing(url, w);
  }

  private schedulePing(url: string, w: Watched): void {
    w.timer = this.env.clock.setTimeout(() => void this.ping(url, w), this.env.settings.keepAliveIntervalMs);
  }

  private async ping(url: string, w: Watched): Promise<void> {
    if (w.closed) return;
    try {
      await withDeadline(
        this.env,
        w.client.getEndpoints(),
        this.env.settings.connectTimeoutMs,
        url,
        () => {},
      );
    } catch (err) {
      return this.lost(url, w, `keep-alive failed: ${oneLine(err)}`);
    }
    if (!w.closed) this.schedulePing(url, w);
  }

  private lost(url: string, w: Watched, reason: string): void {
    if (w.closed || this.env.signal.aborted) return;
    void this.forget(url, w);
    this.lostAt.set(url, this.env.clock.now());
    this.env.logger.info({ url, reason }, 'OPC UA server connection lost; scanning now');
    this.onLost(url);
  }

  private forget(url: string, w: Watched): Promise<void> {
    w.closed = true;
    if (w.timer) this.env.clock.clearTimeout(w.timer);
    if (this.watched.get(url) === w) this.watched.delete(url);
    return w.disconnect();
  }

  private wasRecentlyLost(url: string): boolean {
    const at = this.lostAt.get(url);
    this.lostAt.delete(url);
    return at !== undefined && this.env.clock.now() - at < RECENT_LOSS_MS;
  }
}
