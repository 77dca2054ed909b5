/**
 * The dashboard's endpoints without a browser: the server-sent event stream (framing, snapshot, live
 * events, hostile strings), the page's files and headers, the read-only twins, and the sample ring.
 * test/e2e/dashboard.test.ts drives the page itself in Chromium.
 */
import { get, createServer as httpServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiveFeed, type LiveSample } from '../../src/api/liveFeed.js';
import type { SyncEvents } from '../../src/sync/syncEvents.js';
import type { Twin } from '../../src/sync/twins.js';
import { EventBus } from '../../src/util/events.js';
import { silentLogger } from '../../src/util/logger.js';
import { Ring } from '../../src/util/ring.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { startInProcessAgent } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

interface StreamEvent {
  event: string;
  data: unknown;
}

/** An open `GET /api/v1/events`: its raw text, and the events parsed so far. */
interface Stream {
  status: number;
  headers: IncomingMessage['headers'];
  raw: () => string;
  events: StreamEvent[];
  next(event: string, where?: (data: unknown) => boolean, ms?: number): Promise<unknown>;
  close(): void;
}

function openStream(url: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      let raw = '';
      let pending = '';
      const events: StreamEvent[] = [];
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        raw += chunk;
        pending += chunk;
        const blocks = pending.split('\n\n');
        pending = blocks.pop() ?? '';
        for (const block of blocks) {
          const m = /^event: (.*)\ndata: (.*)$/.exec(block);
          if (m) events.push({ event: m[1] as string, data: JSON.parse(m[2] as string) });
        }
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        raw: () => raw,
        events,
        next: async (event, where = () => true, ms = 5_000) => {
          let found: StreamEvent | undefined;
          await until(
            () => {
              found = events.find((e) => e.event === event && where(e.data));
              return found !== undefined;
            },
            ms,
            `event ${event}`,
          );
          return found?.data;
        },
        close: () => req.destroy(),
      });
    });
    req.once('error', reject);
  });
}

const HOSTILE_ID = '<script>alert(1)</script>';
const HOSTILE_VALUE = '</pre><img src=x onerror=alert(2)>\n\nevent: devices\ndata: {"items":[]}\n\n';

describe('dashboard endpoints on a running agent', () => {
  const dir = tempDir('lb-dash-');
  let agent: Awaited<ReturnType<typeof startInProcessAgent>>;
  let device: mqtt.MqttClient;

  beforeAll(async () => {
    agent = await startInProcessAgent(
      agentConfig(dir.path, undefined, {
        discoveryConfigs: [
          {
            name: 'hostile',
            spec: {
              handler: {
                name: 'debug-echo',
                details: { devices: [{ id: HOSTILE_ID, properties: { NOTE: HOSTILE_VALUE } }] },
              },
            },
          },
        ],
      }),
    );
    device = await mqtt.connectAsync(agent.url, { protocolVersion: 5, clientId: 'dash-sensor' });
  });
  afterAll(async () => {
    await device?.endAsync();
    await agent?.agent.stop();
    dir.remove();
  });

  it('streams a snapshot, then one sample a second and the telemetry seen, in SSE framing', async () => {
    const stream = await openStream(`${agent.http}/api/v1/events`);
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers['cache-control']).toContain('no-cache');
      await stream.next('sample', () => true, 3_000);
      const snapshot = stream.events.slice(0, 6).map((e) => e.event);
      expect(snapshot).toEqual(['hello', 'samples', 'devices', 'configs', 'twins', 'telemetry']);
      // The agent's defaults: a sample a second, the last ten minutes kept (README "Dashboard").
      expect(stream.events[0]?.data).toMatchObject({ sampleIntervalMs: 1000, historySamples: 600 });
      expect(stream.raw().startsWith('retry: 2000\n\n')).toBe(true);

      const payload = `<b>hot</b> 21.5\n\nevent: devices\ndata: {}`;
      await device.publishAsync('devices/dash-sensor/telemetry/temperature', payload, { qos: 1 });
      await device.publishAsync('devices/dash-sensor/telemetry/temperature', '22.0', { qos: 1 });
      const twice = (d: unknown) => itemOf(d, 'dash-sensor')?.count === 2;
      const telemetry = (await stream.next('telemetry', twice, 3_000)) as {
        items: { device: string; stream: string; value: string; count: number; rate: number }[];
      };
      const item = telemetry.items.find((i) => i.device === 'dash-sensor');
      expect(item).toMatchObject({ stream: 'temperature', count: 2, value: '22.0' });
      expect(item?.rate).toBeGreaterThan(0);

      // Every block is a retry line, a keep-alive comment, or `event:` + one `data:` line of JSON.
      const blocks = stream.raw().split('\n\n').slice(0, -1);
      for (const block of blocks)
        expect(block).toMatch(/^(retry: \d+|: keep-alive|event: [a-z]+\ndata: .+)$/);
    } finally {
      stream.close();
    }
  });

  it('carries hostile device strings as JSON strings that cannot break the framing', async () => {
    await until(async () => (await listDevices(agent.http)).length === 1, 5_000, 'the hostile device');
    const stream = await openStream(`${agent.http}/api/v1/events`);
    try {
      const devices = (await stream.next('devices')) as {
        items: { spec: { id: string; properties: Record<string, string> } }[];
      };
      expect(devices.items).toHaveLength(1);
      expect(devices.items[0]?.spec.id).toBe(HOSTILE_ID);
      expect(devices.items[0]?.spec.properties.NOTE).toBe(HOSTILE_VALUE);
      // The value's own "\n\nevent: devices" stayed inside the JSON: still one devices event.
      expect(stream.events.filter((e) => e.event === 'devices')).toHaveLength(1);
      const payload = Buffer.from(`<script>x</script>\u0000\u001b[2J`);
      await device.publishAsync('devices/dash-sensor/telemetry/raw', payload, { qos: 1 });
      const telemetry = await stream.next('telemetry', (d) => hasItem(d, 'dash-sensor'));
      expect(itemOf(telemetry, 'dash-sensor')?.value).toBe('<script>x</script>··[2J');
    } finally {
      stream.close();
    }
  });

  it('serves the page: / redirects, three files, a strict CSP, gzip, ETags; nothing from elsewhere', async () => {
    const root = await fetch(`${agent.http}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('dashboard/');
    const page = await fetch(`${agent.http}/dashboard/`);
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc="app\.js")/); // no inline script
    const sizes: Record<string, { raw: number; gzip: number }> = {};
    for (const name of ['', 'app.js', 'app.css']) {
      const raw = await rawGet(`${agent.http}/dashboard/${name}`, {});
      const zipped = await rawGet(`${agent.http}/dashboard/${name}`, { 'accept-encoding': 'gzip' });
      expect(zipped.headers['content-encoding']).toBe('gzip');
      expect(gunzipSync(zipped.body).equals(raw.body)).toBe(true);
      const again = await rawGet(`${agent.http}/dashboard/${name}`, {
        'if-none-match': String(raw.headers.etag),
      });
      expect(again.status).toBe(304);
      const text = raw.body.toString('utf8');
      // Only the SVG namespace name looks like a URL; nothing is loaded from another origin.
      expect(text.replace('http://www.w3.org/2000/svg', '')).not.toMatch(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]/i);
      sizes[name || 'index.html'] = { raw: raw.body.length, gzip: zipped.body.length };
    }
    const js = (await rawGet(`${agent.http}/dashboard/app.js`, {})).body.toString('utf8');
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
    const total = Object.values(sizes).reduce((a, s) => ({ raw: a.raw + s.raw, gzip: a.gzip + s.gzip }));
    console.info(`dashboard page weight: ${total.raw} bytes, ${total.gzip} gzipped`, sizes);
    expect(total.gzip).toBeLessThan(16 * 1024);
    expect((await fetch(`${agent.http}/dashboard/nope.js`)).status).toBe(404);
    expect((await fetch(`${agent.http}/nope`)).status).toBe(404);
    expect((await fetch(`${agent.http}/healthz`)).status).toBe(200);
  });

  it('serves twins read-only at /api/v1/twins/{id}', async () => {
    await device.publishAsync('devices/dash-sensor/twin/reported', JSON.stringify({ fw: '<1.0>' }), {
      qos: 1,
    });
    const one = await fetch(`${agent.http}/api/v1/twins/dash-sensor`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({
      device: 'dash-sensor',
      reported: { fw: '<1.0>' },
      reportedVersion: 1,
    });
    const all = (await (await fetch(`${agent.http}/api/v1/twins`)).json()) as { items: { device: string }[] };
    expect(all.items.map((t) => t.device)).toContain('dash-sensor');
    expect((await fetch(`${agent.http}/api/v1/twins/nobody`)).status).toBe(404);
    expect(
      (await fetch(`${agent.http}/api/v1/twins/dash-sensor`, { method: 'PUT', body: '{}' })).status,
    ).toBe(405);
    // The device API still answers below /api/v1/.
    expect((await fetch(`${agent.http}/api/v1/devices`)).status).toBe(200);
  });
});

describe('live feed', () => {
  /** A feed on fake sources with a fast clock, served on its own HTTP server. */
  async function feedServer(o: { intervalMs: number; history: number; maxClients?: number }) {
    let counter = 0;
    const twins = {
      devices: () => [],
      get: (): Twin => ({ reported: {}, reportedVersion: 0, desired: {}, desiredVersion: 0 }),
    };
    const events = new EventBus<SyncEvents>(silentLogger());
    const feed = new LiveFeed({
      node: 'n1',
      events,
      logger: silentLogger(),
      sample: () => ({
        outboxMessages: ++counter,
        outboxBytes: 0,
        upstream: 'connected',
        received: 0,
        forwarded: 0,
        dropped: 0,
      }),
      devices: { list: async () => [], watch: () => () => {} },
      configs: () => [],
      twins,
      sampleIntervalMs: o.intervalMs,
      historySamples: o.history,
      ...(o.maxClients ? { stream: { maxClients: o.maxClients } } : {}),
    });
    const server = httpServer((req, res) => void feed.route(req, res, new URL(req.url ?? '/', 'http://x')));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    feed.start();
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/events`;
    return {
      feed,
      events,
      url,
      stop: () => {
        feed.stop();
        server.closeAllConnections();
        server.close();
      },
    };
  }

  it('keeps the last N samples, oldest first, and gives a new page the whole history', async () => {
    const s = await feedServer({ intervalMs: 10, history: 5 });
    try {
      await until(
        () => s.feed.samples.size === 5 && (s.feed.samples.last()?.outboxMessages ?? 0) >= 12,
        2_000,
      );
      const stream = await openStream(s.url);
      const history = (await stream.next('samples')) as { items: LiveSample[] };
      stream.close();
      expect(history.items).toHaveLength(5);
      const depths = history.items.map((x) => x.outboxMessages);
      expect(depths).toEqual([...depths].sort((a, b) => a - b));
      expect(depths.at(-1)! - depths[0]!).toBe(4);
      const times = history.items.map((x) => x.t);
      expect(times).toEqual([...times].sort((a, b) => a - b));
    } finally {
      s.stop();
    }
  });

  it('observes messages only while a page is open, and caps the number of streams', async () => {
    const s = await feedServer({ intervalMs: 50, history: 10, maxClients: 1 });
    try {
      const listening = () => s.events.listenerCount('accepted') + s.events.listenerCount('desired');
      expect(listening()).toBe(0);
      const stream = await openStream(s.url);
      await until(() => listening() === 2, 1_000, 'watching');
      const refused = await fetch(s.url);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      s.events.emit('accepted', { topic: 'devices/a/telemetry/x', payload: Buffer.from('1') });
      await stream.next('telemetry', (d) => hasItem(d, 'a'), 1_000);
      s.events.emit('desired', 'b');
      await stream.next('twins', (d) => hasItem(d, 'b'), 1_000);
      stream.close();
      await until(() => s.feed.watchers === 0 && listening() === 0, 1_000, 'unwatched');
    } finally {
      s.stop();
    }
  });

  it('Ring overwrites the oldest item once full', () => {
    const ring = new Ring<number>(3);
    expect(ring.items()).toEqual([]);
    for (let i = 1; i <= 7; i++) ring.push(i);
    expect(ring.items()).toEqual([5, 6, 7]);
    expect(ring.last()).toBe(7);
    expect(ring.size).toBe(3);
  });
});

type Item = { device: string; value?: string; count?: number };

function itemOf(data: unknown, device: string): Item | undefined {
  return ((data as { items?: Item[] }).items ?? []).find((i) => i.device === device);
}

function hasItem(data: unknown, device: string): boolean {
  return itemOf(data, device) !== undefined;
}

async function listDevices(http: string): Promise<unknown[]> {
  const body = (await (await fetch(`${http}/api/v1/devices`)).json()) as { items: unknown[] };
  return body.items;
}

/** A GET with exactly these headers (fetch would add and decode `accept-encoding`). */
function rawGet(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    }).once('error', reject);
  });
}
