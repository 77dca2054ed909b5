import { readFileSync } from 'node:fs';
import { createServer, type Server, connect as tcpConnect } from 'node:net';
import { Writable } from 'node:stream';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient, type Packet } from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConfig } from '../../../src/config/load.js';
import { openDb } from '../../../src/database/db.js';
import { Outbox } from '../../../src/database/outbox.js';
import type { EdgeTopic } from '../../../src/model/topics.js';
import { UpstreamBridge } from '../../../src/sync/bridge.js';
import type { DownstreamProps } from '../../../src/sync/engine.js';
import { createLogger, silentLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/processes.js';
import { makeCa, makeLeaf } from '../../helpers/tlsCerts.js';
import { until, within } from '../../helpers/wait.js';

interface Seen {
  topic: string;
  payload: string;
  msgId: unknown;
  properties: Record<string, unknown> | undefined;
  qos: number;
  retain: boolean;
  /** Published by the broker itself: a will. */
  will: boolean;
}

interface UpstreamOptions {
  /** Called for each PUBLISH to a device topic: the PUBACK waits until `release`. */
  hold?: (release: (err?: Error) => void, topic: string) => void;
  credentials?: { username: string; password: string };
  /** Serve mqtts with these options. */
  tls?: TlsOptions;
  /** Asked on each CONNECT: false refuses it (as bad credentials would be). */
  accept?: () => boolean;
  /** Never acknowledge an `offline` on the agent's status topic. */
  holdOffline?: boolean;
  /** Refuse every SUBSCRIBE (a failure code in the SUBACK), as a cloud ACL would. */
  refuseSubscribe?: boolean;
}

/** A will reaches aedes's hooks as the CONNECT's will object, a client's message as a PUBLISH packet. */
const isWill = (packet: { cmd?: string }) => packet.cmd !== 'publish';

/** An in-process upstream (aedes on 127.0.0.1, port 0) that records what the bridge's client publishes. */
async function upstream({
  hold,
  credentials,
  tls,
  accept,
  holdOffline,
  refuseSubscribe,
}: UpstreamOptions = {}) {
  const seen: Seen[] = [];
  const sessions: { clean: boolean; expiry: number }[] = [];
  const broker = await Aedes.createBroker({
    authenticate(_client, username, password, done) {
      done(
        null,
        (accept?.() ?? true) &&
          (credentials === undefined ||
            (username === credentials.username && String(password) === credentials.password)),
      );
    },
    authorizePublish(client, packet, done) {
      if (holdOffline && !isWill(packet) && packet.topic.endsWith('/agent/status')) {
        if (String(packet.payload) === 'offline') return; // no PUBACK, ever
      }
      if (client && packet.topic.includes('/devices/') && hold)
        hold((err) => done(err ?? null), packet.topic);
      else done(null);
    },
    authorizeSubscribe(_client, subscription, done) {
      done(null, refuseSubscribe ? null : subscription);
    },
  });
  broker.on('clientReady', (client) => {
    const c = client as unknown as { clean: boolean; sessionExpiryInterval: number };
    sessions.push({ clean: c.clean, expiry: c.sessionExpiryInterval });
  });
  broker.on('publish', (packet, client) => {
    // Wills are published by the broker itself: keep those of the agent's status topic.
    if (!client && !packet.topic.endsWith('/agent/status')) return;
    const properties = (packet as { properties?: Record<string, unknown> }).properties;
    seen.push({
      topic: packet.topic,
      payload: packet.payload.toString(),
      msgId: (properties?.userProperties as Record<string, unknown> | undefined)?.['lb-msg-id'],
      properties,
      qos: packet.qos,
      retain: packet.retain,
      will: isWill(packet),
    });
  });
  const server: Server = tls ? createTlsServer(tls, broker.handle) : createServer(broker.handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    broker,
    seen,
    sessions,
    url: `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close();
        broker.close(() => r());
      }),
  };
}

function config(url: string, overrides: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    url,
    prefix: 'lb',
    clientId: 'edge-1-bridge',
    protocolVersion: 5,
    keepaliveSeconds: 30,
    inflight: 4,
    reconnect: { minDelayMs: 20, maxDelayMs: 50 },
    sessionExpirySeconds: 600,
    ...overrides,
  };
}

const telemetry = (n: number, device = 'd1') => ({
  device,
  topic: `devices/${device}/telemetry/t`,
  payload: Buffer.from(String(n)),
});

describe('UpstreamBridge', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(
    o: UpstreamOptions & {
      config?: Partial<UpstreamConfig>;
      onDownstream?: (t: EdgeTopic, p: Buffer, props: DownstreamProps) => void;
    } = {},
  ) {
    const up = await upstream(o);
    cleanups.push(() => up.close());
    const dir = tempDir();
    const db = openDb(dir.path, { synchronous: 'normal' });
    const outbox = new Outbox(db, { maxBytes: 1 << 24, overflow: 'drop-oldest' }, silentLogger());
    cleanups.push(() => {
      outbox.close();
      db.close();
      dir.remove();
    });
    const lines: { msg: string; [k: string]: unknown }[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
        done();
      },
    });
    const bridge = new UpstreamBridge({
      config: config(up.url, o.config),
      node: 'edge-1',
      outbox,
      logger: createLogger({ level: 'debug', destination }),
      onDownstream: o.onDownstream ?? (() => {}),
    });
    cleanups.push(() => bridge.stop());
    return { up, outbox, bridge, lines };
  }

  it('drains the outbox in order under the node root, with the message id and MQTT 5 properties', async () => {
    const { up, outbox, bridge } = await setup();
    const props = {
      correlationData: Buffer.from([1, 2]),
      contentType: 'application/json',
      userProperties: { a: 'b' },
    };
    await outbox.append({ ...telemetry(0), props });
    await Promise.all(Array.from({ length: 19 }, (_, i) => outbox.append(telemetry(i + 1, `d${i % 3}`))));
    outbox.rewind();
    const ids = outbox.take(100).map((e) => e.msgId);
    outbox.rewind();
    expect(bridge.connected).toBe(false);
    bridge.start();
    await until(() => outbox.messages === 0, 10_000, 'the outbox to drain');
    expect(bridge.connected).toBe(true);
    expect(bridge.forwarded).toBe(20);
    expect(bridge.rejected).toBe(0);
    expect(bridge.connects).toBe(1);
    const sent = up.seen.filter((s) => s.topic.includes('/devices/'));
    expect(sent.map((s) => s.payload)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(sent.map((s) => s.msgId)).toEqual(ids);
    expect(sent[0]?.topic).toBe('lb/edge-1/devices/d1/telemetry/t');
    expect(sent[1]?.topic).toBe('lb/edge-1/devices/d0/telemetry/t');
    expect(sent.every((s) => s.qos === 1 && !s.retain)).toBe(true);
    expect(sent[0]?.properties).toMatchObject({
      correlationData: Buffer.from([1, 2]),
      contentType: 'application/json',
      userProperties: { a: 'b', 'lb-msg-id': ids[0] },
    });
    expect(sent[1]?.properties?.contentType).toBeUndefined();
    expect(sent[1]?.properties?.correlationData).toBeUndefined();
    expect(up.seen.find((s) => s.topic === 'lb/edge-1/agent/status')).toMatchObject({
      payload: 'online',
      qos: 1,
      retain: true,
    });
    // Later appends go out as they are committed.
    await outbox.append(telemetry(20));
    await until(() => bridge.forwarded === 21 && outbox.messages === 0, 10_000, 'the new message');
  });

  it("takes the upstream's PUBACKs for its PUBLISHes from the socket: mqtt.js parses none of them", async () => {
    const { outbox, bridge } = await setup({ config: { inflight: 8 } });
    bridge.start();
    await until(() => bridge.connected, 10_000, 'the link');
    const client = (bridge as unknown as { client: MqttClient }).client;
    // mqtt.js's own PUBLISH (the status) is acknowledged to it first.
    await until(() => Object.keys(client.outgoing).length === 0, 10_000, "the status's PUBACK");
    const parsed: Packet[] = [];
    client.on('packetreceive', (p) => parsed.push(p));
    await Promise.all(Array.from({ length: 30 }, (_, i) => outbox.append(telemetry(i))));
    await until(() => bridge.forwarded === 30 && outbox.messages === 0, 10_000, 'the outbox to drain');
    expect(parsed.filter((p) => p.cmd === 'puback')).toEqual([]);
  });

  it('keeps at most `inflight` messages unacknowledged, and deletes each only after its PUBACK', async () => {
    const held: (() => void)[] = [];
    let most = 0;
    const { up, outbox, bridge } = await setup({
      config: { inflight: 3 },
      hold: (release) => {
        held.push(() => release());
        most = Math.max(most, held.length);
      },
    });
    await Promise.all(Array.from({ length: 10 }, (_, i) => outbox.append(telemetry(i))));
    bridge.start();
    let released = 0;
    while (released < 10) {
      await until(() => held.length > 0, 10_000, 'a held PUBLISH');
      // Each acknowledged entry is deleted, and no other: the PUBLISHes held here stay.
      await until(() => outbox.messages <= 10 - released, 10_000, 'the acknowledged entries deleted');
      await new Promise((r) => setTimeout(r, 20));
      expect(outbox.messages).toBe(10 - released);
      expect(held.length).toBeLessThanOrEqual(3);
      held.shift()?.();
      released++;
    }
    await until(() => outbox.messages === 0, 10_000, 'the outbox to drain');
    expect(most).toBe(3);
    expect(up.seen.filter((s) => s.topic.includes('/devices/')).map((s) => s.payload)).toEqual(
      Array.from({ length: 10 }, (_, i) => String(i)),
    );
  });

  it('a message the upstream refuses for good (0x87) is dropped, counted and logged; the rest go on', async () => {
    const { outbox, bridge, lines } = await setup({
      hold: (release, topic) => (topic.endsWith('/bad/telemetry/t') ? release(new Error('no')) : release()),
    });
    await outbox.append(telemetry(1));
    await outbox.append(telemetry(2, 'bad'));
    await outbox.append(telemetry(3));
    bridge.start();
    await until(() => outbox.messages === 0, 10_000, 'the outbox to drain');
    expect(bridge.rejected).toBe(1);
    expect(bridge.forwarded).toBe(2);
    expect(lines.find((l) => l.msg === 'upstream refused a message')).toMatchObject({
      topic: 'devices/bad/telemetry/t',
      reasonCode: 0x87,
    });
  });

  it('MQTT 3.1.1: plain QoS 1 publishes without properties', async () => {
    const { up, outbox, bridge } = await setup({ config: { protocolVersion: 4 } });
    await outbox.append({ ...telemetry(1), props: { contentType: 'text/plain' } });
    bridge.start();
    await until(() => outbox.messages === 0, 10_000, 'the outbox to drain');
    const sent = up.seen.filter((s) => s.topic.includes('/devices/'));
    expect(sent).toHaveLength(1);
    expect(sent[0]?.qos).toBe(1);
    expect(sent[0]?.msgId).toBeUndefined();
    expect(sent[0]?.properties).toBeUndefined();
  });

  it('after a lost connection it reconnects and resends what was not acknowledged, in order', async () => {
    const held: ((err?: Error) => void)[] = [];
    let holding = true;
    const { up, outbox, bridge, lines } = await setup({
      config: { inflight: 5 },
      hold: (release) => (holding ? held.push(release) : release()),
    });
    await Promise.all(Array.from({ length: 8 }, (_, i) => outbox.append(telemetry(i))));
    bridge.start();
    await until(() => held.length === 5, 10_000, 'five PUBLISHes in flight');
    // Two acknowledged, then the link drops with three unacknowledged.
    held.shift()?.();
    held.shift()?.();
    await until(() => bridge.forwarded === 2, 10_000, 'two PUBACKs');
    holding = false;
    const client = [
      ...Object.values(
        (up.broker as unknown as { clients: Record<string, { conn: { destroy(): void } }> }).clients,
      ),
    ][0];
    client?.conn.destroy();
    await until(() => outbox.messages === 0 && bridge.connects === 2, 10_000, 'the rest after a reconnect');
    // The lost connection's will said offline (retained); the new connection says online again.
    const status = up.seen.filter((s) => s.topic === 'lb/edge-1/agent/status');
    expect(status.map((s) => [s.payload, s.retain])).toEqual([
      ['online', true],
      ['offline', true],
      ['online', true],
    ]);
    // A persistent session each time, as configured.
    expect(up.sessions).toEqual([
      { clean: false, expiry: 600 },
      { clean: false, expiry: 600 },
    ]);
    for (const r of held.splice(0)) r();
    expect(lines.some((l) => l.msg === 'upstream down' && l.attempt === 1)).toBe(true);
    expect(lines.filter((l) => l.msg === 'upstream connected').map((l) => [l.url, l.connects])).toEqual([
      [up.url, 1],
      [up.url, 2],
    ]);
    const payloads = up.seen.filter((s) => s.topic.includes('/devices/')).map((s) => s.payload);
    // After the first connection's five, the second starts again at the oldest unacknowledged (2).
    const second = payloads.slice(payloads.lastIndexOf('2'));
    expect(second).toEqual(['2', '3', '4', '5', '6', '7']);
    expect(bridge.forwarded).toBe(8);
  });

  it('hands on desired twins and commands for this node only; a throwing handler is logged', async () => {
    const got: [EdgeTopic, string, DownstreamProps][] = [];
    const { up, bridge, lines } = await setup({
      onDownstream: (t, p, props) => {
        if (t.device === 'boom') throw new Error('handler failed');
        got.push([t, p.toString(), props]);
      },
    });
    bridge.start();
    await until(() => bridge.connected, 10_000, 'the bridge to connect');
    const cloud = await mqtt.connectAsync(up.url, { protocolVersion: 5, clientId: 'cloud' });
    cleanups.push(() => cloud.endAsync());
    await until(
      () => Object.keys((up.broker as unknown as { clients: object }).clients).length === 2,
      10_000,
      'subscriptions',
    );
    await new Promise((r) => setTimeout(r, 100));
    await cloud.publishAsync('lb/edge-1/devices/d1/twin/desired', '{"x":1}', {
      qos: 1,
      properties: { correlationData: Buffer.from('c') },
    });
    await cloud.publishAsync('lb/edge-1/devices/d1/commands/reboot', 'now', { qos: 1 });
    await cloud.publishAsync('lb/edge-2/devices/d1/commands/reboot', 'other node', { qos: 1 });
    await cloud.publishAsync('lb/edge-1/devices/boom/commands/x', 'fails', { qos: 1 });
    await until(
      () => got.length === 2 && lines.some((l) => l.msg === 'downstream message refused'),
      10_000,
      'downstream',
    );
    expect(got[0]?.[0]).toEqual({ kind: 'desired', device: 'd1' });
    expect(got[0]?.[1]).toBe('{"x":1}');
    expect(got[0]?.[2].correlationData).toEqual(Buffer.from('c'));
    expect(got[1]?.[0]).toEqual({ kind: 'command', device: 'd1', name: 'reboot' });
    expect(lines.find((l) => l.msg === 'downstream message refused')).toMatchObject({
      topic: 'lb/edge-1/devices/boom/commands/x',
      err: 'handler failed',
    });
  });

  it('an upstream that refuses the subscriptions is logged (no twins or commands will come); telemetry still goes up', async () => {
    const { outbox, bridge, lines } = await setup({ refuseSubscribe: true });
    await outbox.append(telemetry(1));
    bridge.start();
    await until(() => outbox.messages === 0, 10_000, 'the outbox to drain');
    await until(() => lines.some((l) => l.msg === 'upstream subscribe failed'), 10_000, 'the refusal logged');
    expect(lines.find((l) => l.msg === 'upstream subscribe failed')).toMatchObject({
      level: 40,
      err: 'Subscribe error: Not authorized',
    });
    expect(bridge.connects).toBe(1);
  });

  it('stop closes the link and leaves what is appended afterwards in the outbox', async () => {
    const { up, outbox, bridge } = await setup();
    bridge.start();
    await until(() => bridge.connected, 10_000, 'the bridge to connect');
    await bridge.stop();
    expect(bridge.connected).toBe(false);
    await outbox.append(telemetry(1));
    await new Promise((r) => setTimeout(r, 100));
    expect(outbox.messages).toBe(1);
    expect(up.seen.filter((s) => s.topic.includes('/devices/'))).toEqual([]);
  });
  /** What a subscriber that comes now gets from the upstream's retained store on the agent's status topic. */
  async function retainedStatus(url: string): Promise<string[]> {
    const reader = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: 'status-reader' });
    const got: string[] = [];
    reader.on('message', (_topic, payload, packet) => packet.retain && got.push(payload.toString()));
    await reader.subscribeAsync('lb/edge-1/agent/status', { qos: 1 });
    await until(() => got.length > 0, 10_000, 'the retained status');
    await reader.endAsync();
    return got;
  }
  const bridgeGone = (up: { broker: Aedes }, clientId: string) =>
    until(
      () => !(clientId in (up.broker as unknown as { clients: object }).clients),
      10_000,
      'the bridge gone from the upstream',
    );

  it('a clean stop publishes `offline` (retained, QoS 1), and disconnects once it is acknowledged: the upstream keeps `offline`', async () => {
    for (const protocolVersion of [4, 5] as const) {
      const clientId = `edge-1-v${protocolVersion}`;
      const { up, bridge } = await setup({ config: { protocolVersion, clientId } });
      bridge.start();
      await until(() => up.seen.some((s) => s.topic === 'lb/edge-1/agent/status'), 10_000, 'online');
      await within(bridge.stop(), 5000, 'stop');
      await bridgeGone(up, clientId);
      expect(await retainedStatus(up.url)).toEqual(['offline']);
      // Said by the agent itself; its DISCONNECT left the broker no will to publish.
      const status = up.seen.filter((s) => s.topic === 'lb/edge-1/agent/status');
      expect(status.map((s) => [s.payload, s.qos, s.retain, s.will])).toEqual([
        ['online', 1, true, false],
        ['offline', 1, true, false],
      ]);
    }
  });

  it('a stop whose `offline` the upstream does not acknowledge drops the link after 1 s; the will says `offline`', async () => {
    const { up, bridge } = await setup({ holdOffline: true });
    bridge.start();
    await until(() => up.seen.some((s) => s.topic === 'lb/edge-1/agent/status'), 10_000, 'online');
    await within(bridge.stop(), 5000, 'stop');
    await bridgeGone(up, 'edge-1-bridge');
    await until(() => up.seen.some((s) => s.will), 10_000, 'the will');
    const status = up.seen.filter((s) => s.topic === 'lb/edge-1/agent/status');
    expect(status.map((s) => [s.payload, s.will])).toEqual([
      ['online', false],
      ['offline', true],
    ]);
    expect(await retainedStatus(up.url)).toEqual(['offline']);
  });

  it('logs in with the configured username and password; refused credentials are retried with backoff', async () => {
    const credentials = { username: 'edge', password: 's3cret' };
    const good = await setup({ credentials, config: { ...credentials, protocolVersion: 4 } });
    await good.outbox.append(telemetry(1));
    good.bridge.start();
    await until(() => good.outbox.messages === 0, 10_000, 'the outbox to drain');
    const bad = await setup({ credentials, config: { username: 'edge', password: 'wrong' } });
    bad.bridge.start();
    await until(
      () => bad.lines.filter((l) => l.msg === 'upstream down').length >= 2,
      10_000,
      'two refused connects',
    );
    expect(bad.bridge.connects).toBe(0);
    const downs = bad.lines.filter((l) => l.msg === 'upstream down');
    expect(downs.map((l) => l.attempt)).toEqual(downs.map((_, i) => i + 1));
    for (const d of downs) expect(d.retryInMs).toBeGreaterThanOrEqual(20);
    for (const d of downs) expect(d.retryInMs).toBeLessThanOrEqual(50);
  });

  it('reconnects with exponential backoff and full jitter while the upstream keeps hanging up', async () => {
    const hangUp = createServer((socket) => socket.destroy());
    await new Promise<void>((r) => hangUp.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => hangUp.close(() => r())));
    const port = (hangUp.address() as { port: number }).port;
    const reconnect = { minDelayMs: 5, maxDelayMs: 160 };
    const { bridge, lines } = await setup({ config: { url: `mqtt://127.0.0.1:${port}`, reconnect } });
    bridge.start();
    const downs = () => lines.filter((l) => l.msg === 'upstream down');
    await until(() => downs().length >= 14, 30_000, 'fourteen refused attempts');
    await bridge.stop();
    const delays = downs()
      .slice(0, 14)
      .map((d) => d.retryInMs as number);
    expect(
      downs()
        .map((d) => d.attempt)
        .slice(0, 14),
    ).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
    // Attempt i waits a random time in [min, min(max, min·2^i)]: the window doubles until the cap.
    delays.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(reconnect.minDelayMs);
      expect(ms).toBeLessThanOrEqual(Math.min(reconnect.maxDelayMs, reconnect.minDelayMs * 2 ** i));
    });
    const capped = delays.slice(6);
    // Grown: eight draws from [5, 160] all at or under 40 (the fourth attempt's ceiling) has odds of 7 in a million.
    expect(Math.max(...capped)).toBeGreaterThan(40);
    // Jittered: the delays at the cap are not one fixed value.
    expect(new Set(capped).size).toBeGreaterThan(1);
  });

  it('a command published while the edge is away arrives when it reconnects (persistent session, QoS 1 subscription)', async () => {
    for (const protocolVersion of [4, 5] as const) {
      const got: string[] = [];
      const { up, bridge } = await setup({
        config: { protocolVersion, clientId: `edge-1-v${protocolVersion}` },
        onDownstream: (t, p) => got.push(`${t.kind} ${t.device} ${p.toString()}`),
      });
      bridge.start();
      await until(() => bridge.connected, 10_000, 'the bridge to connect');
      await until(
        () => Object.keys((up.broker as unknown as { clients: object }).clients).length === 1,
        10_000,
        'the bridge known to the upstream',
      );
      // The SUBSCRIBE is the bridge's second packet after the CONNACK: wait for its subscriptions to be stored.
      const { persistence } = up.broker as unknown as {
        persistence: { subscriptionsByClient(client: { id: string }): Promise<unknown[] | null> };
      };
      await until(
        async () =>
          (await persistence.subscriptionsByClient({ id: `edge-1-v${protocolVersion}` }))?.length === 2,
        10_000,
        'the subscriptions stored',
      );
      await bridge.stop();
      const cloud = await mqtt.connectAsync(up.url, {
        protocolVersion: 5,
        clientId: `cloud-v${protocolVersion}`,
      });
      await cloud.publishAsync('lb/edge-1/devices/d1/commands/reboot', 'now', { qos: 1 });
      await cloud.endAsync();
      bridge.start();
      await until(() => got.length === 1, 10_000, 'the command queued while away');
      expect(got).toEqual(['command d1 now']);
      // The bridge's two connections (the cloud client's in between is a clean one).
      expect(up.sessions.map((s) => s.clean)).toEqual([false, true, false]);
    }
  });

  it('a link that was up starts its backoff again from the shortest delay when it drops', async () => {
    let refusals = 3;
    const { up, bridge, lines } = await setup({
      config: { reconnect: { minDelayMs: 10, maxDelayMs: 10_000 } },
      accept: () => refusals-- <= 0,
    });
    bridge.start();
    await until(() => bridge.connects === 1, 10_000, 'a connect after three refusals');
    expect(lines.filter((l) => l.msg === 'upstream down').map((l) => l.attempt)).toEqual([1, 2, 3]);
    const client = Object.values(
      (up.broker as unknown as { clients: Record<string, { conn: { destroy(): void } }> }).clients,
    )[0];
    client?.conn.destroy();
    await until(() => bridge.connects === 2, 10_000, 'the reconnect');
    const down = lines.filter((l) => l.msg === 'upstream down')[3];
    expect(down?.attempt).toBe(1);
    expect(down?.retryInMs).toBe(10);
  });

  it('stop during the reconnect backoff: no connection is attempted afterwards', async () => {
    const peers: (number | undefined)[] = [];
    const hangUp = createServer((socket) => {
      peers.push(socket.remotePort);
      socket.destroy();
    });
    await new Promise<void>((r) => hangUp.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => hangUp.close(() => r())));
    const port = (hangUp.address() as { port: number }).port;
    const reconnect = { minDelayMs: 100, maxDelayMs: 100 };
    const { bridge, lines } = await setup({ config: { url: `mqtt://127.0.0.1:${port}`, reconnect } });
    bridge.start();
    await until(() => lines.some((l) => l.msg === 'upstream down'), 10_000, 'the first refused attempt');
    await bridge.stop();
    // The reconnect would have been due by now; a connection it made reaches the server before a later probe's.
    await new Promise((r) => setTimeout(r, reconnect.maxDelayMs));
    const probe = tcpConnect(port, '127.0.0.1');
    probe.on('error', () => {});
    await new Promise<void>((r) => probe.once('connect', () => r()));
    const probePort = probe.localPort;
    await until(() => peers.includes(probePort), 10_000, 'the probe connection');
    probe.destroy();
    expect(peers.indexOf(probePort)).toBe(1);
    expect(lines.filter((l) => l.msg === 'upstream down')).toHaveLength(1);
  });

  describe('mqtts', () => {
    const dir = tempDir('lb-bridge-tls-');
    const ca = makeCa(dir.path, 'cloud-ca');
    const server = makeLeaf(dir.path, ca, 'cloud', { cn: 'cloud', usage: 'server' });
    const edge = makeLeaf(dir.path, ca, 'edge', { cn: 'edge-1', usage: 'client' });
    const pem = (file: string) => readFileSync(file);
    // The cloud broker: its certificate from the CA, and it asks for a client certificate from the same CA.
    const serverTls: TlsOptions = {
      cert: pem(server.cert),
      key: pem(server.key),
      ca: pem(ca.cert),
      requestCert: true,
      rejectUnauthorized: true,
    };
    afterAll(() => dir.remove());

    it('verifies the upstream against the configured CA and logs in with the client certificate', async () => {
      const tls = { ca: pem(ca.cert), cert: pem(edge.cert), key: pem(edge.key), rejectUnauthorized: true };
      const { up, outbox, bridge } = await setup({ tls: serverTls, config: { tls } });
      expect(up.url).toMatch(/^mqtts:/);
      await outbox.append(telemetry(1));
      bridge.start();
      await until(() => outbox.messages === 0, 10_000, 'the outbox to drain over TLS');
      expect(up.seen.filter((s) => s.topic.includes('/devices/')).map((s) => s.payload)).toEqual(['1']);
      const clients = Object.values(
        (
          up.broker as unknown as {
            clients: Record<string, { conn: { getPeerCertificate(): { subject: { CN: string } } } }>;
          }
        ).clients,
      );
      expect(clients.map((c) => c.conn.getPeerCertificate().subject.CN)).toEqual(['edge-1']);
    });

    it('without the CA the upstream is refused, unless rejectUnauthorized is false; no client certificate, no login', async () => {
      const client = { cert: pem(edge.cert), key: pem(edge.key) };
      const strict = await setup({
        tls: serverTls,
        config: { tls: { ...client, rejectUnauthorized: true } },
      });
      strict.bridge.start();
      await until(
        () => strict.lines.filter((l) => l.msg === 'upstream down').length >= 2,
        10_000,
        'two refused attempts',
      );
      expect(strict.bridge.connects).toBe(0);
      expect(strict.lines.find((l) => l.msg === 'upstream error')?.err).toMatch(/certificate/);
      const anonymous = await setup({
        tls: serverTls,
        config: { tls: { ca: pem(ca.cert), rejectUnauthorized: true } },
      });
      anonymous.bridge.start();
      await until(
        () => anonymous.lines.filter((l) => l.msg === 'upstream down').length >= 2,
        10_000,
        'two refused attempts without a client certificate',
      );
      expect(anonymous.bridge.connects).toBe(0);
      const lax = await setup({ tls: serverTls, config: { tls: { ...client, rejectUnauthorized: false } } });
      await lax.outbox.append(telemetry(2));
      lax.bridge.start();
      await until(() => lax.outbox.messages === 0, 10_000, 'the outbox to drain without verifying');
      expect(lax.bridge.connects).toBe(1);
    });
  });
});
