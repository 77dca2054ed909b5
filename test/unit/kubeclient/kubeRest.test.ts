import { getEventListeners, setMaxListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { isConflict, isGone, noAnswer, statusOf } from '../../../src/kubeclient/kubeApiError.js';
import { KubeRest } from '../../../src/kubeclient/kubeRest.js';
import { until } from '../../helpers/wait.js';

let server: Server | undefined;
let rest: KubeRest | undefined;

afterEach(async () => {
  rest?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** A plain-http server on port 0 and a KubeRest pointed at it; `connections` counts TCP connections. */
async function serve(handler: Parameters<typeof createServer>[1]) {
  server = createServer(handler);
  const counter = { connections: 0 };
  server.on('connection', () => counter.connections++);
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u', token: 't0ken' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  rest = new KubeRest(kc, { timeoutMs: 2000 });
  return { rest, counter };
}

describe('KubeRest', () => {
  it('sends the token, passes bodies as they are, and reuses one connection for sequential calls', async () => {
    const seen: { auth?: string; body: string; type?: string }[] = [];
    const { rest, counter } = await serve((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        seen.push({ auth: req.headers.authorization, body, type: req.headers['content-type'] });
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ echoed: body ? JSON.parse(body) : null, url: req.url }));
      });
    });
    for (let i = 0; i < 5; i++)
      await rest.call({ method: 'GET', path: '/api/v1/nodes', query: { limit: 1 } });
    const patched = await rest.call<{ echoed: unknown; url: string }>({
      method: 'PATCH',
      path: '/x',
      body: { at: '2024-01-01T00:00:00Z', unknownField: 1 },
      contentType: 'application/merge-patch+json',
    });
    expect(patched.echoed).toEqual({ at: '2024-01-01T00:00:00Z', unknownField: 1 });
    expect(seen.every((s) => s.auth === 'Bearer t0ken')).toBe(true);
    expect(seen.at(-1)?.type).toBe('application/merge-patch+json');
    expect(counter.connections).toBe(1);
  });

  it('an answer other than 2xx is a KubeApiError with the Status reason; no server is status 0', async () => {
    const { rest } = await serve((_req, res) => {
      res.statusCode = 409;
      res.end(JSON.stringify({ kind: 'Status', reason: 'Conflict', message: 'changed' }));
    });
    const err = await rest.call({ method: 'PUT', path: '/x', body: {} }).catch((e: unknown) => e);
    expect(isConflict(err)).toBe(true);
    expect(err).toMatchObject({ reason: 'Conflict', message: 'changed' });
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    const down = await rest.call({ method: 'GET', path: '/x' }).catch((e: unknown) => e);
    expect(noAnswer(down)).toBe(true);
    expect(statusOf(down)).toBe(0);
  });

  it('a call cut by its signal, or by close(), fails with status 0', async () => {
    const { rest } = await serve(() => {}); // never answers
    const abort = new AbortController();
    const pending = rest
      .call({ method: 'GET', path: '/slow', signal: abort.signal })
      .catch((e: unknown) => e);
    setTimeout(() => abort.abort(), 50);
    expect(statusOf(await pending)).toBe(0);
    const closing = rest.call({ method: 'GET', path: '/slow' }).catch((e: unknown) => e);
    setTimeout(() => rest.close(), 50);
    expect(statusOf(await closing)).toBe(0);
    expect(statusOf(await rest.call({ method: 'GET', path: '/x' }).catch((e: unknown) => e))).toBe(0);
  });

  it('many calls at once: no listener-leak warning, and every abort listener is gone once they are answered', async () => {
    const held: (() => void)[] = [];
    const { rest } = await serve((_req, res) => {
      held.push(() => res.end('{}'));
    });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const signal = new AbortController().signal;
      setMaxListeners(0, signal); // the caller's signal is the caller's business; the client's own is checked
      const calls = Array.from({ length: 25 }, () => rest.call({ method: 'GET', path: '/x', signal }));
      await until(() => held.length === 25, 5000, '25 requests at the server');
      expect(getEventListeners(signal, 'abort')).toHaveLength(25);
      for (const answer of held) answer();
      await Promise.all(calls);
      expect(getEventListeners(signal, 'abort')).toHaveLength(0);
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on a later turn
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a watch hands on each event, ends when the server ends it, and a 410 answer is gone', async () => {
    const { rest } = await serve((req, res) => {
      if (req.url?.includes('resourceVersion=1')) {
        res.statusCode = 410;
        return void res.end(JSON.stringify({ kind: 'Status', reason: 'Expired', code: 410 }));
      }
      res.write('{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n{"type":"BOOK');
      setTimeout(() => res.end('MARK","object":{"metadata":{"resourceVersion":"9"}}}\n'), 20);
    });
    const events: string[] = [];
    const signal = new AbortController().signal;
    const onEvent = (type: string) => events.push(type);
    await rest.watch({ path: '/w', query: { resourceVersion: '5' }, onEvent, signal });
    expect(events).toEqual(['ADDED', 'BOOKMARK']);
    const gone = await rest
      .watch({ path: '/w', query: { resourceVersion: '1' }, onEvent, signal })
      .catch((e: unknown) => e);
    expect(isGone(gone)).toBe(true);
  });

  it('a watch aborted from inside its own event handler resolves', async () => {
    const { rest } = await serve((_req, res) => {
      res.write('{"type":"ERROR","object":{"code":410}}\n'); // and never ends
    });
    const abort = new AbortController();
    await rest.watch({ path: '/w', query: {}, onEvent: () => abort.abort(), signal: abort.signal });
  });
});
