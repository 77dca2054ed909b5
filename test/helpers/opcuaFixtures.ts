import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { type OpcuaDetails, opcuaHandler } from '../../discovery-handlers/opcua/index.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { systemClock } from '../../src/util/clock.js';
import type { Logger } from '../../src/util/logger.js';

/** A port free a moment ago (bind 0, read, close), for a server that must be found before it starts. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface FakeServer {
  url: string;
  close(): Promise<void>;
}

async function listen(onConnection: (socket: Socket) => void): Promise<FakeServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `opc.tcp://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Accepts TCP and never says a word. */
export function startHangingServer(): Promise<FakeServer> {
  return listen(() => {});
}

/**
 * Answers HEL with a well-formed-looking ACK chunk followed by bytes that are not a chunk header: with
 * node-opcua 2.182 unguarded, this throws out of the client's socket `data` listener (uncaughtException).
 */
export function startGarbageServer(): Promise<FakeServer> {
  const ack = Buffer.from(`ACKF\x40\x00\x00\x00${'x'.repeat(56)}`, 'latin1');
  return listen((socket) =>
    socket.once('data', () => socket.write(Buffer.concat([ack, Buffer.from('garbage'.repeat(50))]))),
  );
}

export interface ListSeen {
  devices: DiscoveredDevice[];
  /** ms since the probe started */
  at: number;
}

/** Runs the OPC UA handler in the background and lets a test wait for a list that satisfies a predicate. */
export class DiscoveryProbe {
  readonly lists: ListSeen[] = [];
  private readonly abort = new AbortController();
  private readonly startedAt = Date.now();
  private readonly waiters = new Set<() => void>();
  private readonly done: Promise<void>;
  private error: unknown;

  constructor(details: OpcuaDetails, logger: Logger) {
    const ctx = { logger, clock: systemClock, signal: this.abort.signal };
    this.done = (async () => {
      try {
        for await (const devices of opcuaHandler.discover(details, ctx)) {
          this.lists.push({ devices, at: Date.now() - this.startedAt });
          for (const w of this.waiters) w();
        }
      } catch (err) {
        this.error = err;
      }
    })();
  }

  /** The first list for which `predicate` holds, among those seen from index `from` on (default: all). */
  async waitFor(
    predicate: (devices: DiscoveredDevice[]) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<ListSeen> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lists.slice(from).find((l) => predicate(l.devices));
      if (hit) return hit;
      from = this.lists.length;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        const last = JSON.stringify(this.lists.at(-1)?.devices ?? null);
        throw new Error(`no matching device list within ${timeoutMs} ms; last list: ${last}`);
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, remaining);
        this.waiters.add(wake);
      });
    }
  }

  /** How many lists were seen so far: `waitFor(..., probe.seen())` waits for a list still to come. */
  seen(): number {
    return this.lists.length;
  }

  /** ms since the probe started, on the same scale as `ListSeen.at`. */
  now(): number {
    return Date.now() - this.startedAt;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
    if (this.error) throw this.error;
  }
}

export function ids(devices: DiscoveredDevice[]): string[] {
  return devices.map((d) => d.id);
}
