import { createServer, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { Aedes } from 'aedes';
import type { MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mqttHandler } from '../../discovery-handlers/mqtt/index.js';
import type { MqttDetails } from '../../discovery-handlers/mqtt/schema.js';
import { type MqttSensor, startMqttSensor } from '../../firmware-stubs/mqtt-sensor/sensor.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { createLogger, type Logger } from '../../src/util/logger.js';
import { connect, until } from '../helpers/mqtt.js';
import { DiscoveryRun, serialTestLogger } from '../helpers/serialHarness.js';

interface TestBroker {
  aedes: Aedes;
  url: string;
  port: number;
  close(): Promise<void>;
}

/** A real aedes broker (in-memory persistence) on 127.0.0.1, on `port` or any free one. */
async function startBroker(port = 0): Promise<TestBroker> {
  const aedes = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    aedes.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const closed = async () => {
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await serverClosed;
  };
  return { aedes, url: `mqtt://127.0.0.1:${address.port}`, port: address.port, close: closed };
}

let broker: TestBroker;
let runs: DiscoveryRun<typeof mqttHandler>[];
let sensors: MqttSensor[];
let clients: MqttClient[];

beforeEach(async () => {
  broker = await startBroker();
  runs = [];
  sensors = [];
  clients = [];
});
afterEach(async () => {
  await Promise.all(runs.map((r) => r.stop()));
  await Promise.all(sensors.map((s) => s.stop().catch(() => {})));
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await broker.close();
});

function discover(details: MqttDetails = {}, logger: Logger = serialTestLogger()) {
  const run = new DiscoveryRun(mqttHandler, { brokerUrl: broker.url, ...details }, logger);
  runs.push(run);
  return run;
}

async function sensor(id: string, properties: Record<string, string> = {}): Promise<MqttSensor> {
  const s = await startMqttSensor({ url: broker.url, id, properties, intervalMs: 60_000 });
  sensors.push(s);
  return s;
}

/** A plain client that publishes announcements. */
async function publisher(): Promise<MqttClient> {
  const c = await connect(broker.url, { protocolVersion: 4 });
  clients.push(c);
  return c;
}

function birth(properties: Record<string, unknown>): string {
  return JSON.stringify({ properties });
}

const ids = (devices: DiscoveredDevice[]) => devices.map((d) => d.id);
const has = (id: string) => (devices: DiscoveredDevice[]) => devices.some((d) => d.id === id);
const lacks = (id: string) => (devices: DiscoveredDevice[]) => !devices.some((d) => d.id === id);

describe('mqtt discovery handler on a real aedes broker', () => {
  it('lists the mqtt-sensor stub with its properties, and drops it after stop()', {
    timeout: 30_000,
  }, async () => {
    const run = discover();
    await run.waitFor((d) => d.length === 0, 10_000);

    const t0 = Date.now();
    const s = await sensor('sensor-1', { SENSOR_ROOM: 'lab' });
    const listed = await run.waitFor(has('sensor-1'), 10_000);
    expect(listed.devices).toEqual([
      {
        id: 'sensor-1',
        properties: {
          SENSOR_MODEL: 'lb-sim-temp',
          SENSOR_FIRMWARE: '1.0.0',
          SENSOR_ROOM: 'lab',
          MQTT_DEVICE_ID: 'sensor-1',
          MQTT_BROKER_URL: broker.url,
          MQTT_TELEMETRY_TOPIC: 'devices/sensor-1/telemetry/#',
          MQTT_COMMAND_TOPIC: 'devices/sensor-1/commands',
        },
      },
    ]);

    const t1 = Date.now();
    await s.stop();
    const gone = await run.waitFor((d) => d.length === 0, 10_000);
    console.info(`mqtt: announce→listed ${listed.at - t0} ms; stop→gone ${gone.at - t1} ms`);
  });

  it('drops a crashed sensor when the broker publishes its last will', { timeout: 30_000 }, async () => {
    const run = discover();
    const s = await sensor('sensor-crash');
    await run.waitFor(has('sensor-crash'), 10_000);

    const t0 = Date.now();
    s.crash();
    sensors.splice(sensors.indexOf(s), 1);
    const gone = await run.waitFor(lacks('sensor-crash'), 10_000);
    console.info(`mqtt: crash→gone ${gone.at - t0} ms (last will on socket loss)`);
  });

  it('finds devices that announced before it started, from the retained messages, and only those online', {
    timeout: 30_000,
  }, async () => {
    await sensor('early-online', { SENSOR_ROOM: 'hall' });
    const stopped = await startMqttSensor({ url: broker.url, id: 'early-stopped', intervalMs: 60_000 });
    await stopped.stop();
    const pub = await publisher();
    await pub.publishAsync('devices/birth-only/birth', birth({ KIND: 'no-status' }), {
      qos: 1,
      retain: true,
    });
    await pub.publishAsync('devices/status-only/status', 'online', { qos: 1, retain: true });

    const t0 = Date.now();
    const run = discover();
    const first = await run.waitFor((d) => d.length > 0, 10_000);
    expect(ids(first.devices)).toEqual(['birth-only', 'early-online']);
    expect(first.devices[1]?.properties.SENSOR_ROOM).toBe('hall');
    // The stopped device (birth still retained, status offline) is never listed, not even for a moment.
    expect(run.snapshots.every((s) => lacks('early-stopped')(s.devices))).toBe(true);
    console.info(`mqtt: handler start→first list of retained devices ${first.at - t0} ms`);
  });

  it('lists 500 devices announcing at once, in a few coalesced lists', { timeout: 10_000 }, async () => {
    const run = discover();
    await run.waitFor((d) => d.length === 0, 10_000);
    const pubs = await Promise.all(Array.from({ length: 10 }, () => publisher()));

    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: 500 }, (_, i) => {
        const id = `bulk-${String(i).padStart(3, '0')}`;
        const pub = pubs[i % pubs.length] as MqttClient;
        return Promise.all([
          pub.publishAsync(`devices/${id}/status`, 'online', { qos: 1, retain: true }),
          pub.publishAsync(`devices/${id}/birth`, birth({ INDEX: String(i) }), { qos: 1, retain: true }),
        ]);
      }),
    );
    const all = await run.waitFor((d) => d.length === 500, 10_000);
    const elapsed = all.at - t0;
    const lists = run.snapshots.filter((s) => s.at >= t0).length;
    expect(all.devices[499]?.properties).toMatchObject({ INDEX: '499', MQTT_DEVICE_ID: 'bulk-499' });
    // Coalesced: about one list per 50 ms window, not one per message.
    expect(lists).toBeLessThanOrEqual(Math.ceil(elapsed / 50) + 2);
    console.info(`mqtt: 500 devices announcing at once → all listed in ${elapsed} ms, ${lists} lists`);
  });

  it('ignores hostile births, logs them rate-limited, and keeps listing the good ones', {
    timeout: 10_000,
  }, async () => {
    const log = captureLogger();
    const run = discover({}, log.logger);
    const pub = await publisher();
    await pub.publishAsync('devices/good-1/birth', birth({ A: '1' }), { qos: 1, retain: true });
    await run.waitFor(has('good-1'), 10_000);

    const hostile: [string, string | Buffer][] = [
      ['devices/not-json/birth', '{"properties": {'],
      ['devices/huge/birth', Buffer.alloc(1_048_576, 0x7b)],
      ['devices/numbers/birth', birth({ A: 1, B: true })],
      ['devices/nested/birth', birth({ A: { b: 'c' } })],
      ['devices/bad-key/birth', birth({ 'NOT AN ENV NAME': 'x' })],
      ['devices/array/birth', '[1,2,3]'],
      [`devices/${'x'.repeat(200)}/birth`, birth({ A: '1' })],
      ['devices/good-1/status', 'maybe'],
    ];
    for (const [topic, payload] of hostile) await pub.publishAsync(topic, payload, { qos: 1, retain: true });
    for (let i = 0; i < 200; i++) {
      await pub.publishAsync(`devices/junk-${i}/birth`, 'not json', { qos: 0, retain: true });
    }
    await pub.publishAsync('devices/good-2/birth', birth({ B: '2' }), { qos: 1, retain: true });

    const after = await run.waitFor(has('good-2'), 10_000);
    expect(ids(after.devices)).toEqual(['good-1', 'good-2']);
    expect(after.devices[0]?.properties.A).toBe('1');
    expect(run.snapshots.every((s) => s.devices.every((d) => d.id.startsWith('good-')))).toBe(true);
    const ignored = log.lines().filter((l) => l.msg === 'announcement ignored');
    expect(ignored.length).toBeGreaterThan(0);
    expect(ignored.length).toBeLessThanOrEqual(10);
    const reasons = ignored.map((l) => l.reason ?? '').join('\n');
    for (const expected of ['not JSON', 'exceeds 16384', 'is a number', 'is an object', 'not an env name']) {
      expect(reasons).toContain(expected);
    }
    expect(reasons).toMatch(/device id of 200 characters/);
    expect(run.error).toBeUndefined();
  });

  it('tracks at most maxDevices ids under a flood of 5,000 births, and takes new ones once there is room', {
    timeout: 30_000,
  }, async () => {
    const run = discover({ maxDevices: 1_000 });
    const pubs = await Promise.all(Array.from({ length: 5 }, () => publisher()));
    // One anchor device per publisher, tracked before the flood; its `offline` after the flood, from the same
    // connection, reaches the handler only after that publisher's whole flood did.
    for (const [p, pub] of pubs.entries()) {
      await pub.publishAsync(`devices/anchor-${p}/birth`, birth({}), { qos: 1, retain: true });
    }
    await run.waitFor((d) => d.length === pubs.length, 10_000);

    const t0 = Date.now();
    await Promise.all(
      pubs.map(async (pub, p) => {
        for (let i = p; i < 5_000; i += pubs.length) {
          pub.publish(`devices/flood-${i}/birth`, birth({ N: String(i) }), { qos: 0, retain: true });
        }
        await pub.publishAsync(`devices/anchor-${p}/status`, 'offline', { qos: 1, retain: true });
      }),
    );
    const full = await run.waitFor(
      (d) => d.length === 995 && d.every((x) => x.id.startsWith('flood-')),
      3_000,
    );
    // 1,000 ids tracked: 995 flood devices listed, the 5 anchors offline; every other birth was ignored.
    expect(Math.max(...run.snapshots.map((s) => s.devices.length))).toBeLessThanOrEqual(1_000);
    console.info(
      `mqtt: flood of 5,000 births → all read, ${full.devices.length} + 5 tracked after ${full.at - t0} ms`,
    );

    const pub = pubs[0] as MqttClient;
    const victim = full.devices[0]?.id as string;
    await pub.publishAsync(`devices/${victim}/birth`, '', { qos: 1, retain: true });
    await run.waitFor((d) => d.length === 994 && lacks(victim)(d), 10_000);
    await pub.publishAsync('devices/late/birth', birth({}), { qos: 1, retain: true });
    await run.waitFor((d) => d.length === 995 && has('late')(d), 10_000);
    await pub.publishAsync('devices/too-late/birth', birth({}), { qos: 1, retain: true });
    await new Promise((r) => setTimeout(r, 200));
    expect(run.latest?.some((d) => d.id === 'too-late')).toBe(false);
  });

  it('follows the broker through a restart: reconnects, re-reads the retained state', {
    timeout: 30_000,
  }, async () => {
    const run = discover();
    await sensor('survivor');
    const pub = await publisher();
    await pub.publishAsync('devices/ghost/birth', birth({}), { qos: 1, retain: true });
    await run.waitFor((d) => ids(d).join() === 'ghost,survivor', 10_000);

    const port = broker.port;
    await broker.close();
    broker = await startBroker(port);
    // The new broker has no retained messages: the stub re-announces on reconnect, the ghost does not.
    const t0 = Date.now();
    const after = await run.waitFor((d) => ids(d).join() === 'survivor', 5_000);
    console.info(`mqtt: broker restart → list re-read in ${after.at - t0} ms`);
  });

  it('ends cleanly, its client closed, when the signal aborts, also while the broker is unreachable', {
    timeout: 30_000,
  }, async () => {
    const run = discover();
    await run.waitFor((d) => d.length === 0, 10_000);
    await until(() => broker.aedes.connectedClients === 1, 10_000, 'handler connected');
    await run.stop();
    await until(() => broker.aedes.connectedClients === 0, 10_000, 'handler client closed');

    const unreachable = new DiscoveryRun(
      mqttHandler,
      { brokerUrl: 'mqtt://127.0.0.1:1' },
      serialTestLogger(),
    );
    await new Promise((r) => setTimeout(r, 700));
    await unreachable.stop();
    expect(unreachable.error).toBeUndefined();
    expect(unreachable.snapshots).toEqual([]);
  });
});

/** A logger whose JSON lines the test can read. */
function captureLogger() {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  const logger = createLogger({ level: 'warn', destination: stream });
  const lines = () =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { msg: string; reason?: string });
  return { logger, lines };
}
