// The cloud twin hub's limits as docs/hub.md states them, against real peers: mosquitto as the cloud broker,
// mqtt.js clients as the edges, the test API server holding the Devices (its gate counts writes in flight and
// its request log times them), a FIFO as a telemetry file nobody reads, and `leafbridge hub` as a process for
// SIGTERM. Time-based limits run on their documented defaults where a test can wait them out (the write
// interval) and on an injected clock where it cannot (the 30-s hold, the bad-input log's minute).
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { KubeConfig } from '@kubernetes/client-node';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { HUB_DEFAULTS, TwinHub } from '../../src/hub/hub.js';
import type { HubOptions } from '../../src/hub/types.js';
import { crdManifests } from '../../src/install/crds.js';
import { type Clock, systemClock } from '../../src/util/clock.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { seedHubDevice, simulatedEdge } from '../helpers/hubDevices.js';
import { KubeApiServer, type RequestRecord } from '../helpers/kubeApiServer.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { until } from '../helpers/mqtt.js';
import { CLI, stopProcess, tempDir, waitForLine } from '../helpers/processes.js';

const NS = 'default';
const CONFIG = 'sensors';
const json = (v: unknown) => JSON.stringify(v);
const MiB = 2 ** 20;

type Line = { level: number; msg: string; [k: string]: unknown };

/** A logger whose lines the test reads. */
function capturedLogger() {
  const lines: Line[] = [];
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Line);
        cb();
      },
    }),
  });
  return { logger, lines };
}

/** A clock standing at `at` until the test moves it (timers are the system's). */
function testClock(): Clock & { at: number } {
  const c = { ...systemClock, at: Date.now() };
  c.now = () => c.at;
  return c;
}

const isStatusWrite = (r: RequestRecord) => r.verb === 'patch' && r.subresource === 'status';

describe('cloud twin hub: limits (docs/hub.md)', () => {
  const cloud = new Mosquitto();
  const dir = tempDir('lb-hublimits-');
  const hubs: TwinHub[] = [];
  const clients: MqttClient[] = [];
  let api: KubeApiServer;

  beforeAll(async () => {
    await cloud.start();
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 200 });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync().catch(() => {})));
    for (const h of hubs.splice(0)) await h.stop(200);
  });
  afterAll(async () => {
    await cloud.stop();
    await api?.close();
    dir.remove();
  });

  function kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromString(api.kubeconfig(NS));
    return kc;
  }

  /** A hub in this process on its own topic prefix; only what a test gives differs from the defaults. */
  async function startHub(prefix: string, extra: Partial<HubOptions> = {}): Promise<TwinHub> {
    const h = new TwinHub({
      brokerUrl: cloud.url,
      clientId: `hub-limits-${prefix}`,
      prefix,
      kubeConfig: kubeConfig(),
      namespace: NS,
      logger: silentLogger(),
      probe: { baseMs: 50, maxMs: 300 },
      reconnectMs: 200,
      ...extra,
    });
    hubs.push(h);
    await h.start();
    return h;
  }

  /** A simulated edge (hubDevices.ts) on the cloud broker, ended after the test. */
  async function edge(prefix: string, node: string) {
    const sim = await simulatedEdge(cloud.url, prefix, node);
    clients.push(sim.client);
    return sim;
  }

  const statusOf = (name: string) =>
    (api.object('devices', NS, name)?.status ?? {}) as { reported?: { $version?: number } };
  const reportedVersion = (name: string) => statusOf(name).reported?.$version;
  const statusWrites = (name: string) => api.requests({ verb: 'patch', subresource: 'status', name });

  it('holds the state of a device without a Device for 30 s (the default), then drops it and counts heldDropped', async () => {
    expect(HUB_DEFAULTS.hold).toEqual({ ms: 30_000, maxBytes: 16 * MiB });
    const clock = testClock();
    const hub = await startHub('held', { clock }); // no `hold`: the default
    const e = await edge('held', 'edge-h');
    const arrived = (n: number) => until(() => hub.metrics.unknownDevice >= n, 5000, `${n} held messages`);
    // held-0 at t, held-1 and held-2 100 ms later (as the hub's clock tells it).
    const t = clock.at;
    await e.publish('held-0', 'twin/reported', json({ $version: 1 }));
    await arrived(1);
    clock.at = t + 100;
    await e.publish('held-1', 'twin/reported', json({ n: 1, $version: 1 }));
    await e.publish('held-2', 'twin/reported', json({ n: 2, $version: 1 }));
    await arrived(3);

    // 30 s after held-0: it goes (29.9 s after the other two: they stay).
    clock.at = t + 30_000;
    await until(() => hub.metrics.heldDropped === 1, 5000, 'held-0 dropped at 30 s');
    const one = seedHubDevice(api, NS, CONFIG, 'held-1', 'edge-h');
    await until(() => reportedVersion(one) === 1, 5000, 'held-1 written when its Device appears');
    expect(hub.metrics.heldApplied).toBe(1);

    // 30 s after held-2: dropped; its Device appearing now gets nothing.
    clock.at = t + 30_100;
    await until(() => hub.metrics.heldDropped === 2, 5000, 'held-2 dropped at 30 s');
    const two = seedHubDevice(api, NS, CONFIG, 'held-2', 'edge-h');
    await until(() => hub.devices >= 2, 5000, 'the hub to see the Device of held-2');
    expect(hub.metrics.heldApplied).toBe(1);
    expect(hub.metrics.pendingDevices).toBe(0);
    expect(statusWrites(two)).toEqual([]);
  });

  it('writes a Device at most once per interval (default 1 s) while its reports keep coming', async () => {
    expect(HUB_DEFAULTS.intervalMs).toBe(1000);
    const name = seedHubDevice(api, NS, CONFIG, 'iv-1', 'edge-i');
    const hub = await startHub('interval'); // no `intervalMs`: the default
    await until(() => hub.devices >= 1, 5000, 'the hub to see the Device');
    const e = await edge('interval', 'edge-i');
    const start = performance.now();
    let v = 0;
    while (performance.now() - start < 2500) {
      await e.publish('iv-1', 'twin/reported', json({ v: ++v, $version: v }));
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => reportedVersion(name) === v, 10_000, 'the last report written');
    const elapsed = performance.now() - start;
    // Every write was sent between `start` and now, each at least an interval after the one before.
    const writes = statusWrites(name).length;
    expect(writes).toBeGreaterThanOrEqual(1);
    expect(writes).toBeLessThanOrEqual(Math.floor(elapsed / 1000) + 1);
    expect(v).toBeGreaterThan(4 * writes); // so there was something to fold
  });

  it('retries 5xx and 429 with backoff; drops a write refused with 422 (logged) and goes on', async () => {
    expect(HUB_DEFAULTS.backoff).toEqual({ baseMs: 500, maxMs: 30_000 });
    const name = seedHubDevice(api, NS, CONFIG, 'rt-1', 'edge-r');
    const { logger, lines } = capturedLogger();
    const base = 200;
    const hub = await startHub('retry', {
      intervalMs: 50,
      backoff: { baseMs: base, maxMs: 4 * base },
      logger,
    });
    await until(() => hub.devices >= 1, 5000, 'the hub to see the Device');
    const e = await edge('retry', 'edge-r');
    api.failNext(2, 503, { verb: 'patch', resource: 'devices' });
    api.failNext(1, 500, { verb: 'patch', resource: 'devices' });
    api.failNext(2, 429, { verb: 'patch', resource: 'devices' });
    await e.publish('rt-1', 'twin/reported', json({ n: 1, $version: 1 }));
    await until(() => reportedVersion(name) === 1, 20_000, 'the write after five refusals');
    const tries = statusWrites(name);
    expect(tries.map((r) => r.status)).toEqual([503, 503, 500, 429, 429, 200]);
    // Each retry came a backoff delay (at least the base) after the refusal was answered. Half the base is
    // asked for: a timer counts from the event loop's cached time, which can lag the real one under load.
    for (let i = 1; i < tries.length; i++) {
      const prev = tries[i - 1] as RequestRecord;
      expect((tries[i] as RequestRecord).at - (prev.answeredAt as number)).toBeGreaterThanOrEqual(base / 2);
    }
    expect(hub.metrics.apiWriteFailures).toBe(5);

    // 422: refused for good. Logged, dropped: no retry, the server keeps version 1.
    api.failNext(1, 422, { verb: 'patch', resource: 'devices' });
    await e.publish('rt-1', 'twin/reported', json({ n: 2, $version: 2 }));
    await until(
      () => lines.some((l) => l.msg === 'Device status write refused; dropped' && l.device === name),
      10_000,
      'the refusal logged',
    );
    await until(() => hub.metrics.pendingDevices === 0, 10_000, 'nothing left to write');
    expect(statusWrites(name).map((r) => r.status)).toEqual([503, 503, 500, 429, 429, 200, 422]);
    expect(reportedVersion(name)).toBe(1);
    // And the next report is written as usual.
    await e.publish('rt-1', 'twin/reported', json({ n: 3, $version: 3 }));
    await until(() => reportedVersion(name) === 3, 10_000, 'the next report');
    expect(statusWrites(name).map((r) => r.status)).toEqual([503, 503, 500, 429, 429, 200, 422, 200]);
  });

  it('drops telemetry lines, counted, while the file is 8 MiB behind; writes again once it keeps up', async () => {
    const fifo = join(dir.path, 'telemetry.fifo');
    execFileSync('mkfifo', [fifo]);
    // Nobody reads the FIFO yet: the hub's file cannot even be opened, so every line it takes waits in memory.
    const hub = await startHub('tele8', { telemetry: { file: fifo } }); // no maxBufferedBytes: the default
    const chunks: Buffer[] = [];
    let reader: Promise<string> | undefined;
    const read = () => {
      reader ??= new Promise<string>((resolve, reject) => {
        createReadStream(fifo)
          .on('data', (c) => chunks.push(c as Buffer))
          .on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
          .on('error', reject);
      });
      return reader;
    };
    const linesRead = () => chunks.reduce((n, c) => n + c.filter((b) => b === 0x0a).length, 0);
    try {
      const e = await edge('tele8', 'edge-t');
      const sent = 100;
      const payload = 'x'.repeat(100 * 1024);
      for (let i = 0; i < sent; i++) await e.publish('t-1', 'telemetry/blob', payload);
      const taken = () => hub.metrics.telemetryWritten + hub.metrics.telemetryDropped;
      await until(() => taken() === sent, 20_000, 'every telemetry message handled');
      const written = hub.metrics.telemetryWritten;
      expect(hub.metrics.telemetryDropped).toBe(sent - written);

      // The file reads again: what waited is written, and new lines are taken.
      const text = read();
      await until(() => linesRead() === written, 20_000, 'the waiting lines read from the file');
      for (let i = 0; i < 3; i++) await e.publish('t-1', 'telemetry/small', `${i}`);
      await until(() => hub.metrics.telemetryWritten === written + 3, 10_000, 'new lines written');
      await hub.stop(200);
      const lines = (await text).trim().split('\n');
      expect(lines).toHaveLength(written + 3);
      const big = lines.slice(0, written);
      expect(new Set(big.map((l) => (JSON.parse(l) as { stream: string }).stream))).toEqual(
        new Set(['blob']),
      );
      expect(lines.slice(written).map((l) => (JSON.parse(l) as { payload: string }).payload)).toEqual([
        '0',
        '1',
        '2',
      ]);
      // A line was taken while fewer than 8 MiB waited, and dropped once more did.
      const sizes = big.map((l) => Buffer.byteLength(l) + 1);
      const bytesOf = (k: number) => sizes.slice(0, k).reduce((a, b) => a + b, 0);
      expect(bytesOf(written - 1)).toBeLessThanOrEqual(8 * MiB);
      expect(bytesOf(written)).toBeGreaterThan(8 * MiB);
    } finally {
      void read(); // a hub stopping with its file never opened would wait for a reader
      await hub.stop(200);
    }
  });

  it('keeps at most 32 status writes in flight, and fewer while its thread is over 95 % busy (the governor)', async () => {
    const n = 40;
    const names = Array.from({ length: n }, (_, i) => seedHubDevice(api, NS, CONFIG, `gv-${i}`, 'edge-g'));
    const hub = await startHub('governor', { intervalMs: 100 }); // no `concurrency`: the default
    await until(() => hub.devices >= n, 5000, 'the hub to see the Devices');
    // Its start may have kept the thread busy enough for a cut; idle, the limit is back at the default soon.
    await until(() => hub.metrics.writeConcurrency === 32, 20_000, 'the default limit, 32');
    const e = await edge('governor', 'edge-g');
    const gate = api.hold(isStatusWrite);
    try {
      for (let i = 0; i < n; i++) await e.publish(`gv-${i}`, 'twin/reported', json({ $version: 1 }));
      const left = (version: number) => names.filter((x) => reportedVersion(x) !== version).length;
      await until(() => gate.waiting >= 32, 20_000, '32 writes at the server');
      while (left(1) > 0) {
        gate.release(1);
        await until(() => gate.waiting >= Math.min(32, left(1)), 10_000, 'the next write');
      }
      expect(gate.peak).toBe(32);

      // The thread busy: the limit is cut by 30 % per quarter second (down to 1 at the least). From 32: the work
      // above may have kept the thread busy enough for a cut already.
      await until(() => hub.metrics.writeConcurrency === 32, 20_000, 'the limit back at 32');
      while (hub.metrics.writeConcurrency === 32) {
        const end = performance.now() + 300;
        while (performance.now() < end) {} // busy, as a flood of messages would keep it
        await new Promise((r) => setImmediate(r));
      }
      expect(hub.metrics.writeConcurrency).toBe(22); // 32 × 0.7
      // Idle again: it grows by one a quarter second; the writes in flight follow it, never ahead.
      let limit = hub.metrics.writeConcurrency;
      let ahead = 0;
      await Promise.all(names.map((_, i) => e.publish(`gv-${i}`, 'twin/reported', json({ $version: 2 }))));
      await until(
        () => {
          limit = Math.max(limit, hub.metrics.writeConcurrency);
          ahead = Math.max(ahead, gate.waiting - limit);
          return gate.waiting >= 32 || left(2) === 0;
        },
        30_000,
        'the limit back at 32, and 32 writes in flight',
      );
      expect(ahead).toBe(0);
      expect(hub.metrics.writeConcurrency).toBe(32);
    } finally {
      gate.open();
    }
    await until(() => names.every((x) => reportedVersion(x) === 2), 10_000, 'every write landed');
  });

  it('logs bad input at most 10 lines a minute, then the count held back', async () => {
    const clock = testClock();
    const { logger, lines } = capturedLogger();
    const hub = await startHub('badlog', { clock, logger });
    const e = await edge('badlog', 'edge-b');
    const dropped = () => lines.filter((l) => l.msg === 'message dropped');
    const invalid = () => hub.metrics.invalid.STATUS_INVALID ?? 0;
    const t = clock.at;
    for (let i = 0; i < 25; i++) await e.publish('b-1', 'status', 'maybe');
    await until(() => invalid() === 25, 5000, '25 bad messages');
    expect(dropped()).toHaveLength(10);
    clock.at = t + 59_999;
    await e.publish('b-1', 'status', 'maybe');
    await until(() => invalid() === 26, 5000, 'the 26th');
    expect(dropped()).toHaveLength(10);
    clock.at = t + 60_000;
    await e.publish('b-1', 'status', 'maybe');
    await until(() => invalid() === 27, 5000, 'the 27th');
    expect(dropped()).toHaveLength(11);
    expect(dropped()[10]).toMatchObject({ level: 40, reason: 'STATUS_INVALID', suppressed: 16 });
  });

  describe('`leafbridge hub` stopped with SIGTERM', () => {
    /** The hub as users run it (the built CLI), with an hour between writes of a Device. */
    async function hubProcess(prefix: string) {
      const kubeconfig = api.writeKubeconfig(dir.path, NS);
      const child = spawn(
        process.execPath,
        [
          CLI,
          'hub',
          '--broker',
          cloud.url,
          '--kubeconfig',
          kubeconfig,
          '--prefix',
          prefix,
          '--client-id',
          `hub-${prefix}`,
          '--interval',
          '1h',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      await waitForLine(child, (l) => (l.msg === 'hub ready' ? true : undefined), 30_000);
      return child;
    }

    /** Publishes a report, then a malformed one on the same topic: once that is logged, the report was taken. */
    async function reportTaken(
      child: ReturnType<typeof spawn>,
      e: Awaited<ReturnType<typeof edge>>,
      device: string,
      version: number,
    ) {
      await e.publish(device, 'twin/reported', json({ version, $version: version }));
      await e.publish(device, 'twin/reported', 'not json');
      await waitForLine(child, (l) =>
        l.msg === 'message dropped' && l.reason === 'PAYLOAD_NOT_JSON' ? true : undefined,
      );
    }

    it('writes what is pending before it exits 0', async () => {
      const name = seedHubDevice(api, NS, CONFIG, 'term-1', 'edge-s');
      const child = await hubProcess('term1');
      try {
        const e = await edge('term1', 'edge-s');
        await reportTaken(child, e, 'term-1', 1);
        await until(() => reportedVersion(name) === 1, 10_000, 'the first write (a quiet Device: soon)');
        await reportTaken(child, e, 'term-1', 2); // due in an hour
        expect(reportedVersion(name)).toBe(1);
        expect(await stopProcess(child, 'SIGTERM')).toBe(0);
        expect(reportedVersion(name)).toBe(2);
      } finally {
        await stopProcess(child, 'SIGKILL');
      }
    });

    it('gives the pending writes 2 s when the API server does not answer, then exits 0', async () => {
      const name = seedHubDevice(api, NS, CONFIG, 'term-2', 'edge-s');
      const child = await hubProcess('term2');
      const gate = api.hold((r) => isStatusWrite(r) && r.name === name);
      try {
        const e = await edge('term2', 'edge-s');
        await reportTaken(child, e, 'term-2', 1);
        await until(() => gate.waiting === 1, 10_000, 'the write at the server, unanswered');
        const stopping = performance.now();
        const code = await stopProcess(child, 'SIGTERM');
        // It waited for the write (2 s), then gave up before its 5-s deadline (which exits 1).
        expect(code).toBe(0);
        expect(performance.now() - stopping).toBeGreaterThanOrEqual(2000);
        expect(reportedVersion(name)).toBeUndefined();
      } finally {
        gate.open();
        await stopProcess(child, 'SIGKILL');
      }
    });
  });
});
