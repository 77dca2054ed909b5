import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1:0 in front of `target`. `silence()` makes the connections open now go quiet in
 * both directions without closing (a half-open path, as a dead NAT or cable gives); new ones pass normally.
 * `cut()` closes every connection and refuses new ones (accepted, then closed at once) until `heal()`.
 */
export class SilentProxy {
  private server?: Server;
  private readonly pairs = new Set<{ a: Socket; b: Socket; silent: boolean }>();
  private refusing = false;
  connections = 0;
  port = 0;

  constructor(private readonly target: () => { host: string; port: number }) {}

  async start(): Promise<number> {
    const server = createServer((a) => {
      if (this.refusing) {
        a.destroy();
        return;
      }
      this.connections++;
      const t = this.target();
      const b = tcpConnect(t.port, t.host);
      const pair = { a, b, silent: false };
      this.pairs.add(pair);
      a.on('data', (d) => pair.silent || b.write(d));
      b.on('data', (d) => pair.silent || a.write(d));
      const close = () => {
        this.pairs.delete(pair);
        if (!pair.silent) {
          a.destroy();
          b.destroy();
        }
      };
      a.on('close', close);
      b.on('close', close);
      a.on('error', () => {});
      b.on('error', () => {});
    });
    this.server = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** The path goes down: open connections are closed, new ones refused until heal(). */
  cut(): void {
    this.refusing = true;
    for (const p of [...this.pairs]) {
      p.a.destroy();
      p.b.destroy();
    }
  }

  heal(): void {
    this.refusing = false;
  }

  silence(): void {
    for (const p of this.pairs) p.silent = true;
  }

  async stop(): Promise<void> {
    for (const p of this.pairs) {
      p.a.destroy();
      p.b.destroy();
    }
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
