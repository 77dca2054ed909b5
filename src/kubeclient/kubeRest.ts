import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import {
  type ClientRequest,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
  type RequestOptions,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { errorMessage } from '../util/errors.js';
import { KubeApiError } from './kubeApiError.js';
import { WatchLines } from './watchLines.js';

export interface KubeCall {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** `/api/v1/namespaces/default/pods`, without the query. */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Default `application/json`; patches say which kind (`application/merge-patch+json`). */
  contentType?: string;
  /** Ends the request early (it fails with status 0), besides the client's own timeout. */
  signal?: AbortSignal;
}

export interface KubeWatch {
  /** The collection's path. */
  path: string;
  query: Record<string, string | number | boolean | undefined>;
  /** Each event as the server sent it (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`). */
  onEvent: (type: string, object: unknown) => void;
  signal: AbortSignal;
}

export interface KubeRestOptions {
  /** A request without an answer after this long fails with status 0. Default 30 s; 0: no timeout. */
  timeoutMs?: number;
}

type Sent = { status: number; text: string };

/** The TLS options of a request that decide which pooled connection may carry it. */
const TLS_KEYS = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const;

/**
 * The Kubernetes REST API as plain JSON, for any resource (built-in or custom), with the connection and
 * credentials of a client-node `KubeConfig` (tokens, exec plugins, client certificates, CA). Bodies pass as
 * they are: client-node's typed APIs would re-serialize them through their models (dropping fields they do
 * not know, turning times into Dates). Every failure is a `KubeApiError` (status 0: no answer).
 *
 * Connections are kept alive and pooled: client-node builds a fresh http(s).Agent for each request, which
 * against a real API server is a TLS handshake per request (and a TIME_WAIT socket). Its agent is replaced
 * here by one long-lived keep-alive agent with the same TLS options (a new one if they change, e.g. a
 * rotated client certificate). Through a proxy (`proxy-url`) client-node's own agent is kept.
 */
export class KubeRest {
  private readonly closing = new AbortController();
  private pool: { key: string; agent: HttpAgent } | undefined;
  private readonly timeoutMs: number;

  constructor(
    private readonly kubeConfig: KubeConfig,
    options: KubeRestOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
    // One abort listener per request in flight, each removed when its request ends (cutOnAbort): a burst of more
    // than 10 writes is not a leak, and Node's warning would say it is.
    setMaxListeners(0, this.closing.signal);
  }

  /** Cuts the requests and watches under way (they fail with status 0) and refuses new ones. */
  close(): void {
    this.closing.abort();
    this.pool?.agent.destroy();
  }

  async call<T = unknown>(c: KubeCall): Promise<T> {
    const what = `${c.method} ${c.path}`;
    const body = c.body === undefined ? undefined : Buffer.from(JSON.stringify(c.body));
    const { url, options } = await this.prepare(c.path, c.query);
    options.method = c.method;
    options.headers = {
      ...(options.headers as Record<string, string> | undefined),
      Accept: 'application/json',
      ...(body ? { 'Content-Type': c.contentType ?? 'application/json', 'Content-Length': body.length } : {}),
    };
    const { status, text } = await this.send(url, options, body, what, c.signal);
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
    throw apiError(status, text, what);
  }

  /**
   * One watch request: resolves when the server ends it (or `signal` aborts it), rejects with a
   * `KubeApiError` when it is refused (410 when its resourceVersion is too old) or the connection fails.
   */
  async watch(w: KubeWatch): Promise<void> {
    const what = `watch ${w.path}`;
    const { url, options } = await this.prepare(w.path, { ...w.query, watch: true });
    options.method = 'GET';
    options.headers = {
      ...(options.headers as Record<string, string> | undefined),
      Accept: 'application/json',
    };
    const lines = new WatchLines(w.onEvent);
    return new Promise<void>((resolve, reject) => {
      const failed = (err: unknown) =>
        w.signal.aborted || this.closing.signal.aborted ? resolve() : reject(unreachable(what, err));
      const req = this.request(url)(url, options, (res: IncomingMessage) => {
        if (res.statusCode !== 200)
          return void readAll(res).then((text) => reject(apiError(res.statusCode ?? 0, text, what)), failed);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => lines.push(chunk));
        res.on('end', () => {
          lines.end();
          resolve();
        });
        res.on('error', failed);
        res.on('aborted', () => failed(new Error('the watch connection was cut')));
      });
      // The server ends a watch after its timeoutSeconds; silence well past that is a dead connection.
      const idle = (Number(w.query.timeoutSeconds) || 600) * 1000 + this.timeoutMs;
      req.setTimeout(idle, () => req.destroy(new Error(`watch silent for ${idle} ms`)));
      req.on('error', failed);
      const unbind = this.cutOnAbort(req, w.signal);
      req.on('close', unbind);
      req.end();
    });
  }

  private async prepare(
    path: string,
    query: KubeCall['query'],
  ): Promise<{ url: URL; options: RequestOptions }> {
    if (this.closing.signal.aborted) throw new KubeApiError(0, 'Closed', 'the API client is closed');
    const server = this.kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new KubeApiError(0, 'NoCluster', 'the kubeconfig has no current cluster');
    const url = new URL(server.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const options: RequestOptions = {};
    try {
      await this.kubeConfig.applyToHTTPSOptions(options);
    } catch (err) {
      // An exec plugin or a credentials file that failed: no request was made.
      throw new KubeApiError(0, 'Credentials', `credentials for ${url.host}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    if (!this.kubeConfig.getCurrentCluster()?.proxyUrl) options.agent = this.pooled(options);
    return { url, options };
  }

  /** The keep-alive agent for these TLS options; the per-request agent client-node made is dropped. */
  private pooled(options: RequestOptions): HttpAgent {
    const made = options.agent as (HttpAgent & { options?: Record<string, unknown> }) | undefined;
    const tls = (made?.options ?? {}) as Record<string, unknown>;
    const hash = createHash('sha256');
    for (const k of TLS_KEYS) hash.update(`${k}=${String(tls[k] ?? '')};`);
    const key = `${made instanceof HttpsAgent}:${hash.digest('hex')}`;
    if (made && typeof made.destroy === 'function') made.destroy();
    if (this.pool?.key !== key) {
      this.pool?.agent.destroy();
      const agentOptions = { ...tls, keepAlive: true };
      const agent =
        made instanceof HttpAgent && !(made instanceof HttpsAgent)
          ? new HttpAgent(agentOptions)
          : new HttpsAgent(agentOptions);
      this.pool = { key, agent };
    }
    return this.pool.agent;
  }

  private request(url: URL): typeof httpRequest {
    return url.protocol === 'http:' ? httpRequest : httpsRequest;
  }

  private send(
    url: URL,
    options: RequestOptions,
    body: Buffer | undefined,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Sent> {
    return new Promise((resolve, reject) => {
      const failed = (err: unknown) => reject(unreachable(what, err));
      const req = this.request(url)(url, options, (res: IncomingMessage) => {
        readAll(res).then((text) => resolve({ status: res.statusCode ?? 0, text }), failed);
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', failed);
      const unbind = this.cutOnAbort(req, signal);
      req.on('close', unbind);
      req.end(body);
    });
  }

  /**
   * Destroys `req` when the client closes or `signal` aborts, until the request is over (then its socket
   * may already carry another request and must be left alone). Returns the unbinding.
   */
  private cutOnAbort(req: ClientRequest, signal: AbortSignal | undefined): () => void {
    const signals = signal ? [this.closing.signal, signal] : [this.closing.signal];
    // Not from inside the abort (which may run in this response's own 'data' handler): on the next turn.
    const cut = () => setImmediate(() => req.destroy());
    if (signals.some((x) => x.aborted)) cut();
    for (const x of signals) x.addEventListener('abort', cut, { once: true });
    return () => {
      for (const x of signals) x.removeEventListener('abort', cut);
    };
  }
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (d: Buffer) => chunks.push(d));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('the connection was cut mid-answer')));
  });
}

function unreachable(what: string, err: unknown): KubeApiError {
  return err instanceof KubeApiError
    ? err
    : new KubeApiError(0, 'Unreachable', `${what}: ${errorMessage(err)}`, { cause: err });
}

/** The error of an answer other than 2xx, with the reason and message of its `Status` body when it has one. */
export function apiError(status: number, text: string, what: string): KubeApiError {
  let reason = '';
  let message = `${what}: HTTP ${status}`;
  try {
    const s = JSON.parse(text) as { reason?: unknown; message?: unknown };
    if (typeof s.reason === 'string') reason = s.reason;
    if (typeof s.message === 'string' && s.message) message = s.message;
  } catch {
    // not a Status: keep the generic message
  }
  return new KubeApiError(status, reason, message, { body: text.slice(0, 1000) });
}
