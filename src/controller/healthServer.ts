import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a replica of the controller is doing, as its health endpoints tell it. */
export type ControllerRole = 'candidate' | 'leader' | 'stopping';

export interface ControllerHealth {
  role: ControllerRole;
  /** The leader's caches have been listed and it reconciles (a candidate: false). */
  synced: boolean;
}

/**
 * `/healthz` and `/readyz` of `leafbridge controller`, no credentials (they hold no data): both answer 200
 * with `{"role": …, "synced": …}` for a leader and for a standby candidate alike, since a standby is a
 * healthy replica waiting for the Lease; 503 only once the process is stopping. Other paths: 404.
 */
export class HealthServer {
  private readonly server: Server;

  constructor(health: () => ControllerHealth) {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' || (path !== '/healthz' && path !== '/readyz')) {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error":"not found"}');
        return;
      }
      const now = health();
      res
        .writeHead(now.role === 'stopping' ? 503 : 200, { 'Content-Type': 'application/json' })
        .end(JSON.stringify(now));
    });
  }

  /** Listens on `host:port` (port 0: any free one); resolves with the port bound. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
