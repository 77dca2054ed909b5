import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FrameStore } from './frameStore.js';

/** A frame older than this makes /healthz answer 503 (a Kubernetes liveness or readiness probe can use it). */
const healthyWithinMs = 30_000;

/**
 * `GET /frame.jpg`: the latest frame (503 until there is one). `GET /healthz`: 200 while frames arrive, with
 * the count and the latest frame's number, size and time; 503 when none came for 30 s.
 */
export async function startFrameServer(store: FrameStore, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const latest = store.latest;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/frame.jpg') {
      if (!latest) res.writeHead(503, { 'content-type': 'text/plain' }).end('no frame yet\n');
      else {
        res.writeHead(200, {
          'content-type': 'image/jpeg',
          'content-length': latest.data.length,
          'cache-control': 'no-store',
          'x-frame-number': String(latest.number),
        });
        res.end(req.method === 'HEAD' ? undefined : latest.data);
      }
    } else if (path === '/healthz') {
      const fresh = latest !== undefined && Date.now() - latest.at.getTime() < healthyWithinMs;
      const body = {
        frames: store.count,
        latest: latest && {
          number: latest.number,
          bytes: latest.data.length,
          width: latest.width,
          height: latest.height,
          at: latest.at.toISOString(),
        },
      };
      res
        .writeHead(fresh ? 200 : 503, { 'content-type': 'application/json' })
        .end(`${JSON.stringify(body)}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /frame.jpg or /healthz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}
