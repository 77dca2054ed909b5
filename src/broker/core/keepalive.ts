// One timer for every connection the core owns: a connection silent for 1.5 times its Keep Alive is closed
// ([MQTT-3.1.2-24]), one that sent no CONNECT within the connect timeout too. A packet costs nothing here: the
// read path stamps the connection with the sweep's tick, a number.
import { type CoreConnection, STATE } from './connection.js';

/** The reason code an MQTT 5 client hears when its Keep Alive ran out. */
const DISCONNECT_KEEPALIVE_TIMEOUT = Buffer.from([0xe0, 1, 0x8d]);

export interface SweepOptions {
  /** How often the sweep runs: a silent connection closes at most this much late. */
  intervalMs: number;
  /** How long a connection may take to send CONNECT. */
  connectTimeoutMs: number;
  /** A connection closed by the core whose peer keeps it open is destroyed after this. */
  lingerMs: number;
}

export class KeepaliveSweep {
  /** Counts sweeps; what `seen` is stamped with. */
  tick = 1;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connections: Set<CoreConnection>,
    private readonly o: SweepOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.sweep(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass: ticks that went by in silence, counted whole, so a connection is never closed early. */
  sweep(): void {
    const tick = ++this.tick;
    const { intervalMs, connectTimeoutMs, lingerMs } = this.o;
    for (const conn of this.connections) {
      const silentMs = (tick - conn.seen - 1) * intervalMs;
      if (conn.state === STATE.gone) {
        if (conn.goneAt === 0) conn.goneAt = tick;
        else if ((tick - conn.goneAt) * intervalMs >= lingerMs) conn.socket.destroy();
      } else if (conn.state === STATE.new) {
        if ((tick - conn.since - 1) * intervalMs >= connectTimeoutMs) conn.abort();
      } else if (conn.keepalive > 0 && silentMs >= conn.keepalive * 1500) {
        if (conn.version === 5 && conn.state === STATE.connected) conn.close(DISCONNECT_KEEPALIVE_TIMEOUT);
        else conn.abort();
      }
    }
  }
}
