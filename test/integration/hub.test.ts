// The cloud twin hub (`leafbridge hub`, src/hub/) against real peers: mosquitto as the cloud broker, in-process
// edge agents bridged to it (through a TCP proxy that can cut the path), and the test API server holding the
// Devices. Simulated edges (mqtt.js clients publishing the upstream topics with `lb-msg-id`) drive the cases
// that need exact control over ids and order.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { TwinHub } from '../../src/hub/hub.js';
import type { HubOptions } from '../../src/hub/types.js';
import { crdManifests } from '../../src/install/crds.js';
import { silentLogger } from '../../src/util/logger.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { simulatedEdge as edgeOnBroker, seedHubDevice, SEEN_AT as T0 } from '../helpers/hubDevices.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { collect, type Received, startInProcessAgent, until } from '../helpers/mqtt.js';
import { tempDir, UpstreamBroker } from '../helpers/processes.js';
import { SilentProxy } from '../helpers/proxy.js';

const NS = 'default';
const CONFIG = 'sensors';
const json = (v: unknown) => JSON.stringify(v);

type Status = {
  online?: boolean;
  lastSeen?: string;
  reported?: Record<string, unknown>;
  conditions?: { type: string; status: string; reason: string; message: string }[];
};

describe('cloud twin hub', () => {
  const cloud = new Mosquitto();
  const dir = tempDir();
  const proxy = new SilentProxy(() => ({ host: '127.0.0.1', port: cloud.port }));
  const hubs: TwinHub[] = [];
  const clients: MqttClient[] = [];
  let api: KubeApiServer;
  let edge: Awaited<ReturnType<typeof startInProcessAgent>>;
  let hub: TwinHub;

  beforeAll(async () => {
    await cloud.start();
    await proxy.start();
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 200 });
    edge = await startInProcessAgent(agentConfig(dir.path, `mqtt://127.0.0.1:${proxy.port}`));
    hub = await startHub();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync().catch(() => {})));
  });
  afterAll(async () => {
    for (const h of hubs) await h.stop(200);
    await edge?.agent.stop();
    await proxy.stop();
    await cloud.stop();
    await api?.close();
    dir.remove();
  });

  async function startHub(extra: Partial<HubOptions> = {}): Promise<TwinHub> {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(api.kubeconfig(NS));
    const h = new TwinHub({
      brokerUrl: cloud.url,
      // Each replica its own session: one client id shared by two would have them take it from each other.
      clientId: `hub-test-${hubs.length}`,
      kubeConfig,
      namespace: NS,
      intervalMs: 200,
      logger: silentLogger(),
      backoff: { baseMs: 100, maxMs: 1000 },
      probe: { baseMs: 50, maxMs: 300 },
      reconnectMs: 200,
      ...extra,
    });
    hubs.push(h);
    await h.start();
    return h;
  }

  const seedDevice = (id: string, node: string) => seedHubDevice(api, NS, CONFIG, id, node);

  function patch(name: string, body: Record<string, unknown>): void {
    const sub = 'status' in body ? { subresource: 'status' as const } : {};
    api.resources.patch(api.type('devices'), NS, name, 'application/merge-patch+json', body, sub);
  }

  function statusOf(name: string): Status {
    return (api.object('devices', NS, name)?.status ?? {}) as Status;
  }

  const reportedVersion = (name: string) => statusOf(name).reported?.$version;

  /** Every distinct `status.reported` the server stored, per Device, in order (from an in-process watch). */
  function recordReported() {
    const states = new Map<string, string[]>();
    const cancel = api.resources.watch(api.type('devices'), NS, {}, (e) => {
      const o = e.object as { metadata?: { name?: string }; status?: Status };
      const name = o.metadata?.name;
      if (!name || !o.status?.reported) return;
      const list = states.get(name) ?? [];
      const text = json(o.status.reported);
      if (list[list.length - 1] !== text) list.push(text);
      states.set(name, list);
    });
    return {
      versions: (name: string) =>
        (states.get(name) ?? []).map((t) => (JSON.parse(t) as { $version: number }).$version),
      stop: cancel,
    };
  }

  /** A simulated edge (hubDevices.ts), ended after the test. */
  async function simulatedEdge(prefix: string, node: string, epoch = 'feedc0de0001', url = cloud.url) {
    const sim = await edgeOnBroker(url, prefix, node, epoch);
    clients.push(sim.client);
    return sim;
  }

  async function upstreamConnected(): Promise<boolean> {
    const body = (await (await fetch(`${edge.http}/readyz`)).json()) as { upstream?: string };
    return body.upstream === 'connected';
  }

  const desiredOn = (messages: Received[]) =>
    messages
      .filter((m) => m.topic.endsWith('/twin/desired'))
      .map((m) => JSON.parse(m.payload.toString()) as Record<string, unknown>);

  it('round-trips a twin: spec.desired reaches the device through its edge, its report lands in status.reported', async () => {
    const name = seedDevice('th-1', 'edge-1');
    const device = await collect(edge.url, 'devices/th-1/twin/desired', { clientId: 'th-1' });
    clients.push(device.client);
    await until(() => hub.devices >= 1, 5000, 'the hub to see the Device');

    patch(name, { spec: { desired: { $version: 1, mode: 'eco', rate: 5 } } });
    await until(() => desiredOn(device.messages).length >= 1, 5000, 'the desired twin at the device');
    expect(desiredOn(device.messages)[0]).toEqual({ $version: 1, mode: 'eco', rate: 5 });

    await device.client.publishAsync('devices/th-1/status', 'online', { qos: 1, retain: true });
    await device.client.publishAsync('devices/th-1/twin/reported', json({ mode: 'eco', fw: '1.2' }), {
      qos: 1,
    });
    await until(() => reportedVersion(name) === 1, 5000, 'status.reported');
    await until(
      () => statusOf(name).conditions?.some((c) => c.type === 'Connected') === true,
      5000,
      'Connected',
    );
    const status = statusOf(name);
    expect(status.reported).toMatchObject({ mode: 'eco', fw: '1.2', $version: 1, $node: 'edge-1' });
    expect(status.reported?.$epoch).toMatch(/^[0-9a-f]{12}$/);
    // The agent's fields are kept: online, its Online condition; lastSeen only moved forward.
    expect(status.online).toBe(true);
    expect(status.conditions?.find((c) => c.type === 'Online')).toMatchObject({ status: 'True' });
    expect(status.conditions?.find((c) => c.type === 'Connected')).toMatchObject({
      status: 'True',
      reason: 'MqttOnline',
    });
    expect(Date.parse(status.lastSeen ?? '')).toBeGreaterThan(Date.parse(T0));

    // A key the device deletes (merge patch null) disappears from status.reported too.
    await device.client.publishAsync('devices/th-1/twin/reported', json({ fw: null }), { qos: 1 });
    await until(() => reportedVersion(name) === 2, 5000, 'status.reported v2');
    expect(statusOf(name).reported).not.toHaveProperty('fw');
    expect(statusOf(name).reported).toMatchObject({ mode: 'eco', $version: 2 });
  });

  it('catches an edge up after an outage: desired set meanwhile arrives, its reports land in order, none twice', async () => {
    const name = seedDevice('th-2', 'edge-1');
    await until(() => hub.devices >= 2, 5000, 'the hub to see the Device');
    const watch = recordReported();
    const device = await collect(edge.url, 'devices/th-2/twin/desired', { clientId: 'th-2' });
    clients.push(device.client);
    await device.client.publishAsync('devices/th-2/twin/reported', json({ t: 0 }), { qos: 1 });
    await until(() => reportedVersion(name) === 1, 5000, 'the first report');
    const writesBefore = hub.metrics.reportedWritten;

    proxy.cut();
    await until(async () => !(await upstreamConnected()), 5000, 'the edge to lose its upstream');
    patch(name, { spec: { desired: { $version: 2, target: 21 } } });
    for (let t = 1; t <= 5; t++) {
      await device.client.publishAsync('devices/th-2/twin/reported', json({ t }), { qos: 1 });
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(desiredOn(device.messages)).toEqual([]);
    expect(reportedVersion(name)).toBe(1);

    proxy.heal();
    await until(() => desiredOn(device.messages).length >= 1, 10_000, 'the desired twin after reconnecting');
    expect(desiredOn(device.messages).at(-1)).toEqual({ $version: 2, target: 21 });
    await until(() => reportedVersion(name) === 6, 10_000, 'the reports made offline');
    expect(statusOf(name).reported).toMatchObject({ t: 5, $version: 6 });
    await new Promise((r) => setTimeout(r, 500)); // a late write would show now
    watch.stop();
    const versions = watch.versions(name);
    expect(versions.at(-1)).toBe(6);
    expect(versions).toEqual([...versions].sort((a, b) => a - b)); // in order
    expect(new Set(versions).size).toBe(versions.length); // none twice
    expect(hub.metrics.reportedWritten - writesBefore).toBeLessThanOrEqual(5);
  });

  it('splits one shared subscription between two replicas: every message handled once, by exactly one', async () => {
    const prefix = 'replicas';
    const names = Array.from({ length: 20 }, (_, i) => seedDevice(`r${i}`, 'edge-9'));
    const [a, b] = [await startHub({ prefix }), await startHub({ prefix })];
    await until(() => a.devices >= 20 && b.devices >= 20, 5000, 'both replicas to see the Devices');
    const sim = await simulatedEdge(prefix, 'edge-9');
    const perDevice = 20;
    for (let v = 1; v <= perDevice; v++) {
      await Promise.all(names.map((_, i) => sim.publish(`r${i}`, 'twin/reported', json({ v, $version: v }))));
    }
    const sent = names.length * perDevice;
    const handled = () => a.metrics.received.reported + b.metrics.received.reported;
    await until(() => handled() >= sent, 10_000, 'every message handled');
    await until(() => names.every((n) => reportedVersion(n) === perDevice), 10_000, 'the last versions');
    expect(handled()).toBe(sent);
    expect(a.metrics.received.reported).toBeGreaterThan(0);
    expect(b.metrics.received.reported).toBeGreaterThan(0);
    expect(a.metrics.duplicates + b.metrics.duplicates).toBe(0);

    // A resend after a lost PUBACK (same id) may reach the other replica, which cannot know the id: its write is
    // monotonic, so nothing moves back. Nor does an older state under a new id.
    const stored = names.map((n) => json(statusOf(n).reported));
    for (let i = 0; i < names.length; i++) {
      const lastId = `feedc0de0001-${(perDevice - 1) * names.length + i + 1}`;
      await sim.publish(`r${i}`, 'twin/reported', json({ v: perDevice, $version: perDevice }), lastId);
      await sim.publish(`r${i}`, 'twin/reported', json({ v: 3, $version: 3 }));
    }
    await until(() => handled() >= sent + 2 * names.length, 10_000, 'the resends handled');
    await new Promise((r) => setTimeout(r, 600));
    expect(names.map((n) => json(statusOf(n).reported))).toEqual(stored);
    const m = [a.metrics, b.metrics];
    const dropped = m.reduce((s, x) => s + x.duplicates + x.stale + x.writesSkipped, 0);
    expect(dropped).toBeGreaterThanOrEqual(2 * names.length);
    await a.stop(200);
    await b.stop(200);
  });

  it('drops a message whose id this replica has handled before the version check sees it (dedupe by lb-msg-id)', async () => {
    const name = seedDevice('dup-1', 'edge-10');
    await until(() => hub.devices >= 1 && hub.metrics.connects >= 1, 5000, 'the hub');
    const sim = await simulatedEdge('leafbridge', 'edge-10', 'd0bed0be0001');
    await sim.publish('dup-1', 'twin/reported', json({ n: 1, $version: 1 }), 'd0bed0be0001-1');
    await until(() => reportedVersion(name) === 1, 5000, 'the first report');
    const before = hub.metrics;

    // Resends of id 1: three as the edge would send them, one carrying a newer state. A hub that let a seen
    // id through to the version check would count the first three stale and write the fourth.
    for (let i = 0; i < 3; i++) {
      await sim.publish('dup-1', 'twin/reported', json({ n: 1, $version: 1 }), 'd0bed0be0001-1');
    }
    await sim.publish('dup-1', 'twin/reported', json({ n: 'resent', $version: 2 }), 'd0bed0be0001-1');
    await until(() => hub.metrics.received.reported >= before.received.reported + 4, 5000, 'the resends');
    // A new id with $version 2 is the state that lands.
    await sim.publish('dup-1', 'twin/reported', json({ n: 'fresh', $version: 2 }), 'd0bed0be0001-2');
    await until(() => reportedVersion(name) === 2, 5000, 'the fresh report');

    const after = hub.metrics;
    expect(statusOf(name).reported).toMatchObject({ n: 'fresh', $version: 2 });
    expect(after.duplicates - before.duplicates).toBe(4);
    expect(after.stale - before.stale).toBe(0);
    expect(after.accepted - before.accepted).toBe(1);
  });

  it('moves a reported twin only forward within an epoch; a report from another epoch replaces it', async () => {
    const name = seedDevice('ver-1', 'edge-11');
    await until(() => hub.devices >= 1 && hub.metrics.connects >= 1, 5000, 'the hub');
    const sim = await simulatedEdge('leafbridge', 'edge-11', 'a0a0a0a0a001');
    await sim.publish('ver-1', 'twin/reported', json({ n: 'three', $version: 3 }));
    await until(() => reportedVersion(name) === 3, 5000, 'version 3');
    const before = hub.metrics;
    // A new message id (no duplicate) carrying an older version of the same edge database.
    await sim.publish('ver-1', 'twin/reported', json({ n: 'two', $version: 2 }));
    await until(
      () => hub.metrics.stale + hub.metrics.writesSkipped > before.stale + before.writesSkipped,
      5000,
      'the older report judged',
    );
    expect(statusOf(name).reported).toMatchObject({ n: 'three', $version: 3, $epoch: 'a0a0a0a0a001' });
    expect(hub.metrics.duplicates).toBe(before.duplicates);
    // The edge's database replaced (a new epoch): versions of different databases do not compare.
    const replaced = await simulatedEdge('leafbridge', 'edge-11', 'b0b0b0b0b002');
    await replaced.publish('ver-1', 'twin/reported', json({ n: 'new database', $version: 1 }));
    await until(() => reportedVersion(name) === 1, 5000, 'the new epoch');
    expect(statusOf(name).reported).toMatchObject({ n: 'new database', $version: 1, $epoch: 'b0b0b0b0b002' });
  });

  it('drops bad input, counts it by reason, and keeps working', async () => {
    const name = seedDevice('bad-1', 'edge-7');
    await until(() => hub.devices >= 1 && hub.metrics.connects >= 1, 5000, 'the hub');
    const sim = await simulatedEdge('leafbridge', 'edge-7', 'badbadbad001');
    const before = hub.metrics;
    const deep = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`;
    const cases: [string, 'twin/reported' | 'status', string | Buffer][] = [
      ['bad-1', 'twin/reported', 'garbage{'],
      ['bad-1', 'twin/reported', '[1,2]'],
      ['bad-1', 'twin/reported', json({ a: 1 })],
      ['bad-1', 'twin/reported', json({ $version: '7' })],
      ['bad-1', 'twin/reported', json({ $version: 0 })],
      ['bad-1', 'twin/reported', `{"$version":1,"x":${deep}}`],
      ['bad-1', 'twin/reported', Buffer.alloc(300 * 1024, 0x41)],
      ['bad-1', 'twin/reported', Buffer.from([0xff, 0xfe, 0x00, 0x80])],
      ['bad-1', 'status', 'maybe'],
      ['nobody', 'twin/reported', json({ $version: 1 })],
    ];
    for (const [device, kind, payload] of cases) await sim.publish(device, kind, payload);
    await sim.client.publishAsync('leafbridge/edge-7/devices/bad-1/twin/reported', json({ $version: 1 }), {
      qos: 1,
      properties: { userProperties: { 'lb-msg-id': 'not an id' } },
    });
    await sim.client.publishAsync('leafbridge/edge-7/devices//status', 'online', { qos: 1 });
    await sim.client.publishAsync('leafbridge/edge-7/agent/status', 'sideways', { qos: 1 });
    // A good message after all that still lands.
    await sim.publish('bad-1', 'twin/reported', json({ ok: true, $version: 4 }));
    await until(() => reportedVersion(name) === 4, 5000, 'the good report');

    const after = hub.metrics;
    const delta = (k: string) => (after.invalid[k] ?? 0) - (before.invalid[k] ?? 0);
    expect(delta('PAYLOAD_NOT_JSON')).toBe(2); // garbage, binary
    expect(delta('PAYLOAD_NOT_OBJECT')).toBe(1);
    expect(delta('TWIN_VERSION')).toBe(3);
    expect(delta('PAYLOAD_TOO_DEEP')).toBe(1);
    expect(delta('PAYLOAD_TOO_LARGE')).toBe(1);
    expect(delta('STATUS_INVALID')).toBe(2); // device status, agent status
    expect(delta('MSG_ID_INVALID')).toBe(1);
    expect(delta('TOPIC_UNKNOWN')).toBe(1);
    expect(after.unknownDevice - before.unknownDevice).toBe(1);
    expect(statusOf(name).reported).toMatchObject({ ok: true, $version: 4, $node: 'edge-7' });
  });

  it('holds the state of a device whose Device is not there yet, and writes it when the Device appears', async () => {
    const sim = await simulatedEdge('leafbridge', 'edge-8', 'a11ce0000001');
    const unknown = hub.metrics.unknownDevice;
    await sim.publish('late-1', 'status', 'online');
    await sim.publish('late-1', 'twin/reported', json({ early: true, $version: 1 }));
    await until(() => hub.metrics.unknownDevice >= unknown + 2, 5000, 'the messages to arrive');
    const applied = hub.metrics.heldApplied;
    const name = seedDevice('late-1', 'edge-8');
    await until(() => reportedVersion(name) === 1, 5000, 'the held report');
    expect(statusOf(name).conditions?.find((c) => c.type === 'Connected')?.status).toBe('True');
    expect(hub.metrics.heldApplied - applied).toBe(1);
  });

  it('queues writes while the API server is down and writes only the newest state after up()', async () => {
    const name = seedDevice('down-1', 'edge-6');
    await until(() => hub.devices >= 1 && hub.metrics.connects >= 1, 5000, 'the hub');
    const sim = await simulatedEdge('leafbridge', 'edge-6', 'd0d0d0d00001');
    await sim.publish('down-1', 'twin/reported', json({ n: 0, $version: 1 }));
    await until(() => reportedVersion(name) === 1, 5000, 'the first report');
    const watch = recordReported();

    await api.down();
    const received = hub.metrics.received.reported;
    for (let v = 2; v <= 10; v++) await sim.publish('down-1', 'twin/reported', json({ n: v, $version: v }));
    await sim.publish('down-1', 'status', 'offline');
    await until(() => hub.metrics.received.reported >= received + 9, 5000, 'the reports at the hub');
    await new Promise((r) => setTimeout(r, 800)); // writes fail meanwhile and wait for the server
    expect(reportedVersion(name)).toBe(1);

    await api.up();
    await until(() => reportedVersion(name) === 10, 10_000, 'the newest report after up()');
    await new Promise((r) => setTimeout(r, 500));
    watch.stop();
    expect(watch.versions(name)).toEqual([1, 10]);
    const status = statusOf(name);
    expect(status.reported).toMatchObject({ n: 10, $version: 10 });
    expect(status.conditions?.find((c) => c.type === 'Connected')).toMatchObject({
      status: 'False',
      reason: 'MqttOffline',
    });
    expect(status.conditions?.find((c) => c.type === 'Online')?.status).toBe('True'); // the agent's, kept
  });

  it('publishes a new desired version to every node of the Device, and again to an edge that comes online', async () => {
    const name = seedDevice('d-1', 'edge-5');
    await until(() => hub.devices >= 1, 5000, 'the hub to see the Device');
    const cloudSide = await collect(cloud.url, 'leafbridge/edge-5/devices/d-1/twin/desired');
    clients.push(cloudSide.client);
    patch(name, { spec: { desired: { $version: 3, level: 'high' } } });
    await until(() => desiredOn(cloudSide.messages).length >= 1, 5000, 'the desired twin on the broker');
    // A lower $version is not published; an invalid one is counted.
    const invalid = hub.metrics.desiredInvalid;
    patch(name, { spec: { desired: { $version: 2, level: 'old' } } });
    patch(name, { spec: { desired: { $version: 'x' } } });
    await until(() => hub.metrics.desiredInvalid > invalid, 5000, 'the invalid twin counted');
    patch(name, { spec: { desired: { $version: 3, level: 'high' } } });
    // The edge edge-5 says it is (back) online: its twins go again (a broker may have lost the retained ones).
    const sim = await simulatedEdge('leafbridge', 'edge-5');
    await sim.client.publishAsync('leafbridge/edge-5/agent/status', 'online', { qos: 1, retain: false });
    await until(() => desiredOn(cloudSide.messages).length >= 2, 5000, 'the twin published again');
    expect(desiredOn(cloudSide.messages)).toEqual([
      { $version: 3, level: 'high' },
      { $version: 3, level: 'high' },
    ]);
  });

  it('hands telemetry on to a JSON-lines file (text as utf8, anything else as base64), never to the API server', async () => {
    const file = join(dir.path, 'telemetry.jsonl');
    const h = await startHub({ prefix: 'tele', telemetry: { file } });
    const sim = await simulatedEdge('tele', 'edge-4', 'beefbeef0001');
    await sim.client.publishAsync('tele/edge-4/devices/t-1/telemetry/temp', '21.5', {
      qos: 1,
      properties: { userProperties: { 'lb-msg-id': 'beefbeef0001-7' } },
    });
    await sim.client.publishAsync(
      'tele/edge-4/devices/t-1/telemetry/cam/jpeg',
      Buffer.from([0xff, 0xd8, 0x00]),
      {
        qos: 1,
      },
    );
    await until(() => h.metrics.telemetryWritten >= 2, 5000, 'two telemetry lines');
    await h.stop(200);
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      {
        node: 'edge-4',
        device: 't-1',
        stream: 'temp',
        encoding: 'utf8',
        payload: '21.5',
        msgId: 'beefbeef0001-7',
        receivedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      },
      {
        node: 'edge-4',
        device: 't-1',
        stream: 'cam/jpeg',
        encoding: 'base64',
        payload: Buffer.from([0xff, 0xd8, 0x00]).toString('base64'),
        receivedAt: expect.any(String),
      },
    ]);
  });

  it('works with a broker without shared subscriptions (aedes): plain subscriptions, same results', async () => {
    const aedes = new UpstreamBroker();
    await aedes.start(0);
    try {
      const name = seedDevice('ae-1', 'edge-3');
      const h = await startHub({ brokerUrl: aedes.url, prefix: 'viaaedes' });
      const sim = await simulatedEdge('viaaedes', 'edge-3', 'aedea0000001', aedes.url);
      await sim.publish('ae-1', 'twin/reported', json({ via: 'aedes', $version: 2 }));
      await sim.publish('ae-1', 'status', 'online');
      await until(() => reportedVersion(name) === 2, 5000, 'the report through aedes');
      expect(statusOf(name).reported).toMatchObject({ via: 'aedes', $node: 'edge-3' });
      await until(
        () => statusOf(name).conditions?.some((c) => c.type === 'Connected') === true,
        5000,
        'Connected',
      );
      await h.stop(200);
    } finally {
      await aedes.kill();
    }
  });
});
