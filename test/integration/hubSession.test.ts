// The hub's persistent MQTT session on mosquitto 2.0.11's shared subscription (issue 14, point 5): reports an
// edge sends while no replica is connected reach Device status when one comes back, none lost; what mosquitto
// does with the share of a replica that is away (docs/hub.md, "Sessions"), measured here.
// The edge is simulated: an MQTT 5 client on the cloud broker publishing the upstream topics with `lb-msg-id`,
// as an agent's bridge does. The hubs reach mosquitto through TCP proxies that can cut their path.
import { KubeConfig } from '@kubernetes/client-node';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { TwinHub } from '../../src/hub/hub.js';
import type { HubOptions } from '../../src/hub/types.js';
import { crdManifests } from '../../src/install/crds.js';
import { silentLogger } from '../../src/util/logger.js';
import { seedHubDevice } from '../helpers/hubDevices.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { connect, until } from '../helpers/mqtt.js';
import { SilentProxy } from '../helpers/proxy.js';

const NS = 'default';
const CONFIG = 'sensors';
const DEVICES = 10;

describe("the hub's persistent session on a mosquitto shared subscription", () => {
  const cloud = new Mosquitto();
  const hubs: TwinHub[] = [];
  const proxies: SilentProxy[] = [];
  let api: KubeApiServer;
  let edge: MqttClient;

  beforeAll(async () => {
    await cloud.start();
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 200 });
    edge = await connect(cloud.url, { clientId: 'simulated-edge' });
  });
  afterAll(async () => {
    for (const h of hubs) await h.stop(200);
    await edge?.endAsync();
    for (const p of proxies) await p.stop();
    await cloud.stop();
    await api?.close();
  });

  /** A path to the broker that can be cut, as a network partition or a crashed pod would. */
  async function path(): Promise<SilentProxy> {
    const p = new SilentProxy(() => ({ host: '127.0.0.1', port: cloud.port }));
    proxies.push(p);
    await p.start();
    return p;
  }

  async function startHub(
    clientId: string,
    prefix: string,
    extra: Partial<HubOptions> = {},
  ): Promise<TwinHub> {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(api.kubeconfig(NS));
    const h = new TwinHub({
      brokerUrl: cloud.url,
      clientId,
      prefix,
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
    await until(() => h.devices >= DEVICES, 10_000, `${clientId} to see the Devices`);
    return h;
  }

  /** Devices d0 … d9 on `node`, as discovery makes them. */
  const seed = (node: string) =>
    Array.from({ length: DEVICES }, (_, i) => seedHubDevice(api, NS, CONFIG, `d${i}`, node));

  let seq = 0;
  /** One round: every device reports version `v` (QoS 1, acknowledged by the broker before this resolves). */
  async function reportRound(prefix: string, node: string, v: number): Promise<void> {
    for (let i = 0; i < DEVICES; i++)
      await edge.publishAsync(
        `${prefix}/${node}/devices/d${i}/twin/reported`,
        JSON.stringify({ v, $version: v }),
        {
          qos: 1,
          properties: { userProperties: { 'lb-msg-id': `5e551090aaaa-${++seq}` } },
        },
      );
  }

  const version = (name: string) =>
    (api.object('devices', NS, name)?.status as { reported?: { $version?: number } } | undefined)?.reported
      ?.$version;
  const allAt = (names: string[], v: number) => names.every((n) => version(n) === v);
  const reported = (...hs: TwinHub[]) => hs.reduce((sum, h) => sum + h.metrics.received.reported, 0);

  it('delivers every report sent while no replica was connected: after a reconnect, and after a restart', async () => {
    const names = seed('edge-gap');
    const link = await path();
    const a = await startHub('hub-gap-a', 'gap', { brokerUrl: `mqtt://127.0.0.1:${link.port}` });

    // The only replica loses its path to the broker; the edge keeps reporting (3 rounds, 30 reports).
    link.cut();
    for (let v = 1; v <= 3; v++) await reportRound('gap', 'edge-gap', v);
    expect(a.metrics.received.reported).toBe(0);
    link.heal();
    await until(() => allAt(names, 3), 15_000, 'the reports of the gap in status');
    await until(() => a.metrics.received.reported >= 30, 5000, 'all 30 reports at the hub');
    expect(a.metrics.received.reported).toBe(30);
    // The broker kept the session, and with it the subscriptions: the hub did not subscribe again.
    expect(a.metrics.sessionsResumed).toBe(1);

    // It crashes (its path is cut, so no DISCONNECT reaches the broker), the edge reports on, and the replica
    // restarts under the same client id: the first connection of the new process resumes the session.
    link.cut();
    await a.stop(200);
    for (let v = 4; v <= 6; v++) await reportRound('gap', 'edge-gap', v);
    link.heal();
    const restarted = await startHub('hub-gap-a', 'gap', { brokerUrl: `mqtt://127.0.0.1:${link.port}` });
    await until(() => allAt(names, 6), 15_000, 'the reports made while the replica was down');
    await until(() => restarted.metrics.received.reported >= 30, 5000, 'the 30 queued reports');
    expect(restarted.metrics.received.reported).toBe(30);
    expect(restarted.metrics.sessionsResumed).toBe(1);
    await restarted.stop(200);
  });

  it('two replicas, one cut off: its share waits in its session and arrives when it comes back, none lost', async () => {
    const names = seed('edge-two');
    const linkB = await path();
    const a = await startHub('hub-two-a', 'two');
    const b = await startHub('hub-two-b', 'two', { brokerUrl: `mqtt://127.0.0.1:${linkB.port}` });

    linkB.cut();
    for (let v = 1; v <= 4; v++) await reportRound('two', 'edge-two', v);
    linkB.heal();
    await until(() => reported(a, b) >= 40, 15_000, 'all 40 reports at one replica or the other');
    await until(() => allAt(names, 4), 15_000, 'the last round in status');
    expect(reported(a, b)).toBe(40);
    expect(a.metrics.duplicates + b.metrics.duplicates).toBe(0);
    // mosquitto gave the replica that was away its turn: those reports waited in its session for it.
    expect(b.metrics.received.reported).toBeGreaterThan(0);
    expect(a.metrics.received.reported).toBeLessThan(40);
    await a.stop(200);
    await b.stop(200);
  });

  it('a replica that does not come back: its queue is dropped at session expiry; then the others take every report', async () => {
    const names = seed('edge-exp');
    const linkB = await path();
    const a = await startHub('hub-exp-a', 'exp');
    const b = await startHub('hub-exp-b', 'exp', {
      brokerUrl: `mqtt://127.0.0.1:${linkB.port}`,
      sessionExpiryS: 2,
    });

    // B is cut off for good. Rounds go on until one lands whole at A: a round split with B cannot, so one
    // that does shows mosquitto has stopped handing B its share. Each waits up to 1.5 s to land whole.
    linkB.cut();
    let v = 0;
    while (!allAt(names, v)) {
      expect(v).toBeLessThan(20);
      await reportRound('exp', 'edge-exp', ++v);
      await until(() => allAt(names, v), 1500, `round ${v} whole`).catch(() => {});
    }
    // The rounds before were split: B's share was queued in its session and went with it.
    const lost = v * DEVICES - a.metrics.received.reported;
    expect(lost).toBeGreaterThan(0);

    // B comes back to no session: it subscribes again and takes its share of what follows, none of the old.
    linkB.heal();
    await until(() => b.metrics.connects >= 2, 10_000, 'B to reconnect');
    for (let r = 1; r <= 2; r++) await reportRound('exp', 'edge-exp', v + r);
    await until(() => allAt(names, v + 2), 15_000, 'the rounds after B is back');
    await until(() => reported(a, b) >= (v + 2) * DEVICES - lost, 5000, 'both rounds handled');
    expect(reported(a, b)).toBe((v + 2) * DEVICES - lost);
    expect(b.metrics.sessionsResumed).toBe(0);
    expect(b.metrics.received.reported).toBeGreaterThan(0);
    await a.stop(200);
    await b.stop(200);
  });

  it('a replica stopped on purpose leaves the group: the one left takes every report at once', async () => {
    const names = seed('edge-stop');
    const a = await startHub('hub-stop-a', 'stop');
    const b = await startHub('hub-stop-b', 'stop');
    await b.stop(200);
    await reportRound('stop', 'edge-stop', 1);
    await until(() => allAt(names, 1), 10_000, 'the round in status');
    expect(a.metrics.received.reported).toBe(DEVICES);
    await a.stop(200);
  });
});
