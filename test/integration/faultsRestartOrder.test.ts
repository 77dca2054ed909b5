import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { metric, until } from '../helpers/mqtt.js';
import { type AgentProcess, startAgent, stopProcess, tempDir } from '../helpers/processes.js';
import { SilentProxy } from '../helpers/proxy.js';

// Issue 13 point 1: order per device through an agent restart that happens while the upstream is away.
// The leaves are mqtt.js, not Debian's python3-paho-mqtt 1.6.1: after a reconnect Paho resets its in-flight
// count to 0 (_messages_reconnect_reset_out), so publish() calls made just then go on the wire before the
// messages it still holds (unacknowledged or queued while the agent was down); the agent receives and keeps
// that order. That was the reordering reported in the issue; a client that keeps its own order gets it kept
// end to end, as here.
//
// The upstream goes away behind a TCP proxy (connections cut, new ones refused), not by stopping mosquitto:
// Debian's mosquitto 2.0.11 itself loses QoS 1 messages it has already PUBACKed when it is stopped with SIGTERM
// while a persistent subscriber lags (the last few it took before exiting never reach that subscriber after
// the restart; reproduced without leafbridge, see docs/testing.md). From the agent's side both look the same:
// the link drops and connecting is refused until the path is back.
const DEVICES = 10;
const PER_DEVICE = 500;
const GAP_MS = 4;
/** Unacknowledged messages a leaf allows itself: several are in flight when the agent is killed. */
const WINDOW = 8;

interface Arrival {
  device: string;
  n: number;
}

/** A cloud-side subscriber with a persistent session. */
function cloudSubscriber(url: string, arrivals: Arrival[]): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    clientId: 'cloud-order',
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 100,
  });
  client.on('message', (topic, payload) => {
    if (!topic.endsWith('/telemetry/t')) return;
    const { d, n } = JSON.parse(payload.toString()) as { d: number; n: number };
    arrivals.push({ device: `dev-${d}`, n });
  });
  return new Promise((resolve, reject) => {
    client.once('error', reject);
    client.once('connect', () =>
      client.subscribe('#', { qos: 1 }, (err) => (err ? reject(err) : resolve(client))),
    );
  });
}

/**
 * Leaves with persistent sessions (mqtt.js, clean: false), each publishing `{"d","n"}` QoS 1 messages with up
 * to WINDOW unacknowledged. Across a lost connection mqtt.js keeps them and resends them on reconnect, in
 * their order and before anything newer.
 */
function persistentLeaves(port: number) {
  const acked = new Map<string, Set<number>>();
  const clients: MqttClient[] = [];
  let total = 0;
  const run = async (i: number) => {
    const device = `dev-${i}`;
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: device,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 100,
    });
    client.on('error', () => {}); // refused connections while the agent is down
    clients.push(client);
    const got = new Set<number>();
    acked.set(device, got);
    const window: Promise<void>[] = [];
    for (let n = 0; n < PER_DEVICE; n++) {
      const payload = JSON.stringify({ d: i, n });
      window.push(
        client.publishAsync(`devices/${device}/telemetry/t`, payload, { qos: 1 }).then(() => {
          got.add(n);
          total++;
        }),
      );
      if (window.length >= WINDOW) await window.shift();
      await new Promise((r) => setTimeout(r, GAP_MS));
    }
    await Promise.all(window);
  };
  const done = Promise.all(Array.from({ length: DEVICES }, (_, i) => run(i))).then(() => undefined);
  return { acked, total: () => total, done, stop: () => Promise.all(clients.map((c) => c.endAsync(true))) };
}

/** Devices whose first arrivals are not strictly increasing, and acknowledged messages that never arrived. */
function firstArrivals(arrivals: Arrival[], acked: Map<string, Set<number>>) {
  const seen = new Set<string>();
  const last = new Map<string, number>();
  const outOfOrder: string[] = [];
  for (const a of arrivals) {
    const key = `${a.device}/${a.n}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const before = last.get(a.device) ?? -1;
    if (a.n < before) outOfOrder.push(`${key} after ${before}`);
    last.set(a.device, Math.max(before, a.n));
  }
  const missing: string[] = [];
  for (const [device, ns] of acked)
    for (const n of ns) if (!seen.has(`${device}/${n}`)) missing.push(`${device}/${n}`);
  return { unique: seen.size, duplicates: arrivals.length - seen.size, outOfOrder, missing };
}

describe('faults: order per device through an agent restart (mosquitto upstream, persistent leaves)', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('upstream unreachable, agent SIGKILLed with a backlog and restarted, upstream back: first arrivals in order', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    // Unbounded queues at the peer: with mosquitto's default of 1,000 queued messages per subscriber, this test's
    // subscriber, on a loaded machine, once lagged that far behind the backlog drained when the link healed, and
    // the broker's own drops ("Outgoing messages are being dropped") read as 332 losses. (Not set for every test
    // mosquitto: with it, upstreamLink.test.ts's ACL-refused PUBLISHes were no longer counted as refused; the
    // cause was not looked into.)
    const cloud = new Mosquitto({ extra: ['max_queued_messages 0'] });
    cleanups.push(() => cloud.stop());
    await cloud.start();
    const arrivals: Arrival[] = [];
    const sub = await cloudSubscriber(cloud.url, arrivals);
    cleanups.push(() => sub.endAsync(true));

    const link = new SilentProxy(() => ({ host: '127.0.0.1', port: cloud.port }));
    cleanups.push(() => link.stop());
    await link.start();

    // The leaves reconnect to the restarted agent, so its broker keeps the port it bound first (port 0).
    const firstConfig = agentConfig(join(dir.path, 'agent'), `mqtt://127.0.0.1:${link.port}`);
    let agent: AgentProcess = await startAgent(dir.path, firstConfig);
    cleanups.push(() => stopProcess(agent.child));
    const brokerPort = agent.broker.port;
    const config = { ...firstConfig, broker: { listen: `127.0.0.1:${brokerPort}` } };
    const leaves = persistentLeaves(brokerPort);
    cleanups.push(() => leaves.stop());

    await until(() => arrivals.length >= 500, 20_000, 'messages arriving upstream');
    link.cut(); // the upstream is gone: the link drops, and connecting is refused
    const http = () => `http://127.0.0.1:${agent.http.port}`;
    await until(async () => (await metric(http(), 'leafbridge_outbox_messages')) >= 800, 20_000, 'a backlog');
    await stopProcess(agent.child, 'SIGKILL');
    const ackedAtKill = leaves.total();
    agent = await startAgent(dir.path, config);
    await until(() => leaves.total() >= ackedAtKill + 300, 20_000, 'leaves publishing after the restart');
    link.heal();
    await leaves.done;

    // Waited for, then asserted, so that a failure lists what is missing.
    await until(
      () => firstArrivals(arrivals, leaves.acked).missing.length === 0,
      30_000,
      'every acknowledged message upstream',
    ).catch(() => {});
    const result = firstArrivals(arrivals, leaves.acked);
    console.log(
      `restart order: ${ackedAtKill} acknowledged before SIGKILL, ${result.unique} arrived, ` +
        `${result.duplicates} duplicates, ${result.outOfOrder.length} out of order, ` +
        `${result.missing.length} missing`,
    );
    expect(result.outOfOrder).toEqual([]);
    expect(cloud.log.filter((l) => l.includes('dropped'))).toEqual([]); // the peer lost none itself
    expect(result.missing).toEqual([]);
  });
});
