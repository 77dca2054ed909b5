import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Registry } from 'prom-client';
import type { HostPort, ServerTlsConfig } from '../config/load.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { TlsFiles } from '../util/tlsFiles.js';
import { accessOf } from './access.js';
import type { HttpAuth } from './httpAuth.js';

export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

export interface HttpOptions {
  logger: Logger;
  metrics: Registry;
  /** Ready when the parts that serve devices are up (the broker), whatever the upstream's state. */
  ready: () => { ready: boolean; details: Record<string, unknown> };
  /** Extra routes by path prefix, e.g. `/api/v1/` (the device API adds itself here). */
  routes?: Record<string, Route>;
  /** Who may do what: every request but /healthz, /readyz and the dashboard's files passes it first. */
  auth: HttpAuth;
  /** HTTPS with the certificate and key of these files, read again when they change. */
  tls?: ServerTlsConfig;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** /healthz, /readyz, /metrics, and the routes added by other modules. */
export class HttpApi {
  private server?: Server;
  private tlsFiles?: TlsFiles;
  constructor(private readonly o: HttpOptions) {}

  async start(listen: HostPort): Promise<HostPort> {
    const listener = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        this.o.logger.error({ url: req.url, err: errorMessage(err) }, 'http handler failed');
        if (!res.headersSent)
          sendJson(res, 500, { status: 'error', error: { code: 'INTERNAL', message: 'internal error' } });
        else res.destroy();
      });
    };
    const server = this.o.tls ? this.httpsServer(this.o.tls, listener) : createServer(listener);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('http: no TCP address');
    return { host: address.address, port: address.port };
  }

  private httpsServer(tls: ServerTlsConfig, listener: (req: IncomingMessage, res: ServerResponse) => void) {
    const files = new TlsFiles(tls, {
      logger: this.o.logger,
      intervalMs: tls.reloadIntervalMs,
      what: 'http.tls',
    });
    const server = createHttpsServer(files.load(), listener);
    files.watch(server);
    this.tlsFiles = files;
    return server;
  }

  async stop(): Promise<void> {
    this.tlsFiles?.stop();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const decision = await this.o.auth.decide(
      req.headers.authorization,
      accessOf(req.method ?? 'GET', url.pathname),
    );
    if (!decision.allowed) return refuse(res, decision.status, decision.message);
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/readyz') {
      const r = this.o.ready();
      return sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ok' : 'not ready', ...r.details });
    }
    if (url.pathname === '/metrics') {
      const text = await this.o.metrics.metrics();
      res.writeHead(200, { 'content-type': this.o.metrics.contentType });
      res.end(text);
      return;
    }
    for (const [prefix, route] of Object.entries(this.o.routes ?? {})) {
      if (url.pathname.startsWith(prefix)) return route(req, res, url);
    }
    sendJson(res, 404, {
      status: 'error',
      error: { code: 'NOT_FOUND', message: `no route ${url.pathname}` },
    });
  }
}

const REASONS = { 401: 'Unauthorized', 403: 'Forbidden', 503: 'ServiceUnavailable' } as const;

/** A refused request, answered as the Kubernetes API server does (a Status), with the body left unread. */
function refuse(res: ServerResponse, code: 401 | 403 | 503, message: string): void {
  if (code === 401) res.setHeader('www-authenticate', 'Bearer realm="leafbridge"');
  // The request's body (a write's) is not read: the connection closes after the answer.
  res.setHeader('connection', 'close');
  sendJson(res, code, {
    apiVersion: 'v1',
    kind: 'Status',
    metadata: {},
    status: 'Failure',
    reason: REASONS[code],
    code,
    message,
  });
}
