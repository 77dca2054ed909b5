import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { errorMessage, LeafbridgeError } from '../util/errors.js';

/**
 * A failed Kubernetes API call: `status` is the HTTP status (0 when the server did not answer at all), and
 * `reason` and the message come from the `Status` object the API server answered with.
 */
export class KubeApiError extends LeafbridgeError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(status === 0 ? 'API_UNREACHABLE' : 'API_ERROR', message, options);
  }
}

export interface KubeCall {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** `/api/v1/namespaces/default/pods`, without the query. */
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  /** Default `application/json`; patches say which kind (`application/merge-patch+json`). */
  contentType?: string;
}

/** The HTTP status of an API error (0: no answer), undefined for anything else. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof KubeApiError ? err.status : undefined;
}

/**
 * The Kubernetes REST API as plain JSON, for any resource (built-in or custom), with the connection and
 * credentials of a client-node `KubeConfig`. The controller reads and writes Pods, Jobs and Services whose
 * specs come from users: client-node's typed APIs would re-serialize them through their models (dropping
 * fields they do not know, and turning times into Dates), so the bodies go as they are.
 */
export class KubeRest {
  private readonly closing = new AbortController();

  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly timeoutMs = 30_000,
  ) {}

  /** Cuts the requests under way (they fail with status 0) and refuses new ones. */
  close(): void {
    this.closing.abort();
  }

  async call<T = unknown>(c: KubeCall): Promise<T> {
    if (this.closing.signal.aborted) throw new KubeApiError(0, 'Closed', 'the API client is closed');
    const server = this.kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new KubeApiError(0, 'NoCluster', 'the kubeconfig has no current cluster');
    const url = new URL(server.replace(/\/$/, '') + c.path);
    for (const [k, v] of Object.entries(c.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const options: RequestOptions = { method: c.method, signal: this.closing.signal };
    await this.kubeConfig.applyToHTTPSOptions(options);
    const body = c.body === undefined ? undefined : Buffer.from(JSON.stringify(c.body));
    options.headers = {
      ...(options.headers as Record<string, string> | undefined),
      Accept: 'application/json',
      ...(body ? { 'Content-Type': c.contentType ?? 'application/json', 'Content-Length': body.length } : {}),
    };
    const what = `${c.method} ${c.path}`;
    const { status, text } = await this.send(url, options, body, what);
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
    let reason = 'Unknown';
    let message = `${what}: HTTP ${status}`;
    try {
      const s = JSON.parse(text) as { reason?: unknown; message?: unknown };
      if (typeof s.reason === 'string') reason = s.reason;
      if (typeof s.message === 'string') message = s.message;
    } catch {
      // not a Status: keep the generic message
    }
    throw new KubeApiError(status, reason, message);
  }

  private send(
    url: URL,
    options: RequestOptions,
    body: Buffer | undefined,
    what: string,
  ): Promise<{ status: number; text: string }> {
    const request = url.protocol === 'http:' ? httpRequest : httpsRequest;
    return new Promise((resolve, reject) => {
      const unreachable = (err: unknown) =>
        reject(new KubeApiError(0, 'Unreachable', `${what}: ${errorMessage(err)}`, { cause: err }));
      const req = request(url, options, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', unreachable);
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', unreachable);
      req.end(body);
    });
  }
}
