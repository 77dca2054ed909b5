import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../util/logger.js';
import { sendJson } from './http.js';

/** One server-sent event: a name and a JSON body. */
export interface SseEvent {
  event: string;
  data: unknown;
}

export interface SseHubOptions {
  logger: Logger;
  /** Streams open at once; more are answered 503. Default 32. */
  maxClients?: number;
  /** A client that lets this much output pile up unread is dropped (it reconnects and resyncs). Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Reconnect delay the browser is told to use. Default 2 s. */
  retryMs?: number;
  /** Comment lines sent this often keep idle proxies from closing the stream. Default 15 s. */
  heartbeatMs?: number;
  /** Told `true` when the first client connects and `false` when the last one leaves. */
  onWatching?: (watching: boolean) => void;
}

/** `event: NAME` and one `data:` line (JSON escapes every line break, so one line always suffices). */
export function formatEvent(e: SseEvent): string {
  return `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

/**
 * The open `text/event-stream` responses: each new one gets its snapshot first, then every broadcast. Slow
 * readers are dropped rather than buffered without bound; the number of streams is capped.
 */
export class SseHub {
  private readonly clients = new Set<ServerResponse>();
  private heartbeat?: NodeJS.Timeout;
  private readonly maxClients: number;
  private readonly maxBuffered: number;

  constructor(private readonly o: SseHubOptions) {
    this.maxClients = o.maxClients ?? 32;
    this.maxBuffered = o.maxBufferedBytes ?? 1024 * 1024;
  }

  get size(): number {
    return this.clients.size;
  }

  get full(): boolean {
    return this.clients.size >= this.maxClients;
  }

  /** Answers 503 when full; else starts the stream with `initial` and keeps it for broadcasts. */
  open(req: IncomingMessage, res: ServerResponse, initial: SseEvent[]): void {
    if (this.full) {
      refuse(res, this.maxClients);
      return;
    }
    if (req.destroyed || res.destroyed) return;
    req.socket.setNoDelay(true);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${this.o.retryMs ?? 2000}\n\n${initial.map(formatEvent).join('')}`);
    this.clients.add(res);
    res.once('close', () => this.remove(res));
    if (this.clients.size === 1) this.startWatching();
  }

  /** Sends the events to every open stream (serialised once). */
  broadcast(events: SseEvent[]): void {
    if (this.clients.size === 0 || events.length === 0) return;
    this.write(events.map(formatEvent).join(''));
  }

  /** Ends every stream (the agent is stopping). */
  close(): void {
    for (const res of [...this.clients]) res.end();
    this.clients.clear();
    this.stopWatching();
  }

  private write(text: string): void {
    for (const res of this.clients) {
      res.write(text);
      if (res.writableLength > this.maxBuffered) {
        this.o.logger.warn({ buffered: res.writableLength }, 'event stream client too slow; dropped');
        res.destroy();
        this.remove(res);
      }
    }
  }

  private remove(res: ServerResponse): void {
    if (!this.clients.delete(res)) return;
    if (this.clients.size === 0) this.stopWatching();
  }

  private startWatching(): void {
    const every = this.o.heartbeatMs ?? 15_000;
    this.heartbeat = setInterval(() => this.write(': keep-alive\n\n'), every);
    this.heartbeat.unref();
    this.notify(true);
  }

  private stopWatching(): void {
    if (!this.heartbeat) return;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.notify(false);
  }

  private notify(watching: boolean): void {
    try {
      this.o.onWatching?.(watching);
    } catch (err) {
      this.o.logger.error({ err: String(err) }, 'event stream watcher failed');
    }
  }
}

function refuse(res: ServerResponse, max: number): void {
  res.setHeader('retry-after', '5');
  sendJson(res, 503, {
    status: 'error',
    error: { code: 'TOO_MANY_STREAMS', message: `at most ${max} event streams are served at once` },
  });
}
