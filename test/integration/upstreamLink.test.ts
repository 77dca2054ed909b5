import { writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { generate, type Packet, parser } from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { readJournal } from '../helpers/leafStream.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { collect, connect, metric, startInProcessAgent, until } from '../helpers/mqtt.js';
import { startAgent, stopProcess, tempDir, UpstreamBroker } from '../helpers/processes.js';
import { SilentProxy } from '../helpers/proxy.js';

/**
 * What docs/mqtt.md ("Upstream") and docs/operations.md ("Durability") promise about the link to the cloud,
 * beyond the fault tests: a 3.1.1 upstream, the agent's own status topic, messages the upstream refuses, and
 * a clean stop with a backlog.
 */
describe('the upstream link', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  function workspace(): string {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    return dir.path;
  }
  const reconnect = { minDelay: '100ms', maxDelay: '1s' };
  const telemetry = readJournal; // the journaled telemetry, {topic, msgId, device: `dev-${d}`, n}

  it('an MQTT 3.1.1 upstream gets the same topics and payloads, in order per device, without message ids', async () => {
    const dir = workspace();
    const journal = join(dir, 'journal.tsv');
    const upstream = new UpstreamBroker(journal);
    cleanups.push(() => upstream.kill());
    await upstream.start(0);
    // A tap on port 0 in front of the upstream notes the protocol level of each CONNECT (the byte after "MQTT").
    const levels: number[] = [];
    const tap = createServer((a) => {
      const b = tcpConnect(upstream.port, '127.0.0.1');
      a.once('data', (first: Buffer) => levels.push(first[first.indexOf('MQTT') + 4] ?? -1));
      a.pipe(b).pipe(a);
      a.on('error', () => b.destroy());
      b.on('error', () => a.destroy());
    });
    await new Promise<void>((r) => tap.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => tap.close(r)));
    const tapPort = (tap.address() as AddressInfo).port;
    const edge = await startInProcessAgent(
      agentConfig(join(dir, 'agent'), undefined, {
        upstream: { url: `mqtt://127.0.0.1:${tapPort}`, protocolVersion: 4, reconnect },
      }),
    );
    cleanups.push(() => edge.agent.stop());
    const leaves = await Promise.all(['dev-a', 'dev-b'].map((id) => connect(edge.url, { clientId: id })));
    cleanups.push(() => Promise.all(leaves.map((l) => l.endAsync(true))));
    for (let n = 0; n < 50; n++) {
      await Promise.all(
        leaves.map((leaf, d) =>
          leaf.publishAsync(`devices/dev-${'ab'[d]}/telemetry/t`, JSON.stringify({ d, n }), { qos: 1 }),
        ),
      );
    }
    await until(() => telemetry(journal).length >= 100, 10_000, 'every message upstream');
    const arrived = telemetry(journal);
    for (const [d, id] of ['dev-a', 'dev-b'].entries()) {
      const mine = arrived.filter((e) => e.topic === `leafbridge/edge-1/devices/${id}/telemetry/t`);
      expect(mine.map((e) => e.n)).toEqual(Array.from({ length: 50 }, (_, n) => n));
      expect(mine.every((e) => e.device === `dev-${d}`)).toBe(true);
    }
    expect(arrived).toHaveLength(100);
    expect(arrived.every((e) => e.msgId === '')).toBe(true); // 3.1.1 has no user properties
    expect(levels).toEqual([4]);
  });

  /** An agent process on a journaling upstream, and a subscriber to its status that has seen `online`. */
  async function agentWithStatusWatcher() {
    const dir = workspace();
    const upstream = new UpstreamBroker();
    cleanups.push(() => upstream.kill());
    await upstream.start(0);
    const agent = await startAgent(dir, agentConfig(join(dir, 'agent'), upstream.url));
    cleanups.push(() => stopProcess(agent.child));
    const topic = 'leafbridge/edge-1/agent/status';
    const watcher = await collect(upstream.url, topic, { clientId: 'status-watcher' });
    cleanups.push(() => watcher.client.endAsync(true));
    await until(() => watcher.messages.some((m) => `${m.payload}` === 'online'), 10_000, 'online');
    return { upstream, agent, topic, watcher };
  }

  it('publishes {prefix}/{node}/agent/status: online, retained; offline as its last will when the agent dies', async () => {
    const { upstream, agent, topic, watcher } = await agentWithStatusWatcher();
    // A subscriber that comes later gets `online` from the retained store.
    const late = await collect(upstream.url, topic, { clientId: 'late-watcher' });
    cleanups.push(() => late.client.endAsync(true));
    await until(() => late.messages.length >= 1, 5000, 'the retained status');
    expect(late.messages.map((m) => [`${m.payload}`, m.retain])).toEqual([['online', true]]);
    const before = watcher.messages.length;
    await stopProcess(agent.child, 'SIGKILL'); // no goodbye: only the will can say it
    await until(() => watcher.messages.length > before, 10_000, 'the last will');
    expect(watcher.messages.slice(before).map((m) => `${m.payload}`)).toEqual(['offline']);
  });

  it('says offline itself when the agent stops (SIGTERM): the status left retained at the upstream is offline', async () => {
    const { upstream, agent, topic, watcher } = await agentWithStatusWatcher();
    const before = watcher.messages.length;
    // A clean stop ends with a DISCONNECT, after which the broker discards the will: the agent must say it.
    await stopProcess(agent.child);
    await until(() => watcher.messages.length > before, 10_000, 'offline');
    expect(watcher.messages.slice(before).map((m) => `${m.payload}`)).toEqual(['offline']);
    const late = await collect(upstream.url, topic, { clientId: 'late-watcher' });
    cleanups.push(() => late.client.endAsync(true));
    await until(() => late.messages.length >= 1, 5000, 'the retained status');
    expect(late.messages.map((m) => [`${m.payload}`, m.retain])).toEqual([['offline', true]]);
  });

  it('a message the upstream refuses in its PUBACK is dropped and counted as upstream-rejected; the rest flows', async () => {
    const dir = workspace();
    const cloud = new Mosquitto({
      users: [
        {
          username: 'edge',
          password: 'edge-secret',
          acl: ['topic write leafbridge/edge-1/agent/#', 'topic write leafbridge/edge-1/devices/good/#'],
        },
        { username: 'reader', password: 'reader-secret', acl: ['topic read leafbridge/#'] },
      ],
    });
    cleanups.push(() => cloud.stop());
    await cloud.start();
    const arrived = await collect(cloud.url, 'leafbridge/edge-1/devices/#', {
      username: 'reader',
      password: 'reader-secret',
    });
    cleanups.push(() => arrived.client.endAsync(true));
    const passwordFile = join(dir, 'upstream-password');
    writeFileSync(passwordFile, 'edge-secret\n');
    const edge = await startInProcessAgent(
      agentConfig(join(dir, 'agent'), undefined, {
        upstream: { url: cloud.url, username: 'edge', passwordFile, reconnect },
      }),
    );
    cleanups.push(() => edge.agent.stop());
    const leaves = await Promise.all(['good', 'bad'].map((id) => connect(edge.url, { clientId: id })));
    cleanups.push(() => Promise.all(leaves.map((l) => l.endAsync(true))));
    // mosquitto answers an MQTT 5 PUBLISH its ACL denies with PUBACK 0x87 (not authorized): not retried.
    for (let n = 0; n < 5; n++) {
      for (const [i, id] of ['good', 'bad'].entries()) {
        await leaves[i]?.publishAsync(`devices/${id}/telemetry/t`, String(n), { qos: 1 });
      }
    }
    await until(
      async () =>
        (await metric(edge.http, 'leafbridge_outbox_dropped_total{reason="upstream-rejected"}')) === 5,
      10_000,
      'the refused messages counted',
    );
    await until(async () => (await metric(edge.http, 'leafbridge_outbox_messages')) === 0, 10_000, 'drained');
    await until(() => arrived.messages.length >= 5, 5000, 'the allowed messages upstream');
    expect(arrived.messages.map((m) => `${m.topic} ${m.payload}`)).toEqual(
      Array.from({ length: 5 }, (_, n) => `leafbridge/edge-1/devices/good/telemetry/t ${n}`),
    );
    expect(await metric(edge.http, 'leafbridge_messages_forwarded_total')).toBeGreaterThanOrEqual(5);
  });

  it('"quota exceeded", "unspecified" and "implementation specific" PUBACKs are retried, in order, and never dropped', async () => {
    // No broker here answers these codes on demand, so the upstream is written for this case: MQTT 5 over
    // mqtt-packet on port 0. The first attempt of telemetry "1", "2" and "3" gets 0x97, 0x80 and 0x83; after a
    // refusal the connection refuses everything with that code (its quota is spent) until the bridge comes back
    // on a new one.
    const firstRefusal = new Map([
      ['1', 0x97],
      ['2', 0x80],
      ['3', 0x83],
    ]);
    const accepted: string[] = [];
    const codes: number[] = [];
    let connections = 0;
    const upstream = createServer((socket) => {
      connections++;
      let refusing = 0;
      const p = parser({ protocolVersion: 5 });
      const send = (packet: Packet) => socket.write(generate(packet, { protocolVersion: 5 }));
      p.on('packet', (packet) => {
        if (packet.cmd === 'connect') send({ cmd: 'connack', sessionPresent: false, reasonCode: 0 });
        else if (packet.cmd === 'subscribe')
          send({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) });
        else if (packet.cmd === 'pingreq') send({ cmd: 'pingresp' });
        else if (packet.cmd === 'publish' && packet.qos === 1) {
          const body = packet.payload.toString();
          const telemetry = packet.topic.includes('/telemetry/');
          if (telemetry && refusing === 0) {
            refusing = firstRefusal.get(body) ?? 0;
            firstRefusal.delete(body);
            if (refusing === 0) accepted.push(body);
            else codes.push(refusing);
          }
          send({ cmd: 'puback', messageId: packet.messageId, reasonCode: telemetry ? refusing : 0 });
        }
      });
      p.on('error', () => socket.destroy());
      socket.on('data', (d) => p.parse(d));
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const sockets = new Set<Socket>();
    upstream.on('connection', (s) => sockets.add(s));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => upstream.close(r));
    });
    const dir = workspace();
    const edge = await startInProcessAgent(
      agentConfig(join(dir, 'agent'), `mqtt://127.0.0.1:${(upstream.address() as AddressInfo).port}`),
    );
    cleanups.push(() => edge.agent.stop());
    const leaf = await connect(edge.url, { clientId: 'dev-q' });
    cleanups.push(() => leaf.endAsync(true));
    for (let n = 0; n < 6; n++) await leaf.publishAsync('devices/dev-q/telemetry/t', String(n), { qos: 1 });
    await until(() => accepted.length >= 6, 15_000, 'every message taken upstream');
    await until(async () => (await metric(edge.http, 'leafbridge_outbox_messages')) === 0, 5000, 'drained');
    expect(accepted).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(codes).toEqual([0x97, 0x80, 0x83]);
    expect(connections).toBeGreaterThanOrEqual(4); // a new connection after each refusal
    expect(await metric(edge.http, 'leafbridge_outbox_dropped_total{reason="upstream-rejected"}')).toBe(0);
  });

  it('SIGTERM: exit 0, and what the upstream had not acknowledged goes up after the next start', async () => {
    const dir = workspace();
    const journal = join(dir, 'journal.tsv');
    const upstream = new UpstreamBroker(journal);
    cleanups.push(() => upstream.kill());
    // The cloud is away while the leaf publishes: a proxy on port 0 that refuses connections until heal().
    const link = new SilentProxy(() => ({ host: '127.0.0.1', port: upstream.port }));
    cleanups.push(() => link.stop());
    await link.start();
    link.cut();
    const config = agentConfig(join(dir, 'agent'), `mqtt://127.0.0.1:${link.port}`);
    const first = await startAgent(dir, config);
    const leaf = await connect(`mqtt://127.0.0.1:${first.broker.port}`, {
      clientId: 'dev-0',
      reconnectPeriod: 0,
    });
    for (let n = 0; n < 200; n++) {
      await leaf.publishAsync('devices/dev-0/telemetry/t', JSON.stringify({ d: 0, n }), { qos: 1 });
    }
    await leaf.endAsync(true);
    expect(await metric(`http://127.0.0.1:${first.http.port}`, 'leafbridge_outbox_messages')).toBe(200);
    expect(await stopProcess(first.child, 'SIGTERM')).toBe(0);

    await upstream.start(0);
    link.heal();
    const second = await startAgent(dir, config);
    cleanups.push(() => stopProcess(second.child));
    await until(() => telemetry(journal).length >= 200, 15_000, 'the backlog upstream');
    expect([...new Set(telemetry(journal).map((e) => e.n))]).toEqual(
      Array.from({ length: 200 }, (_, n) => n),
    );
  });
});
