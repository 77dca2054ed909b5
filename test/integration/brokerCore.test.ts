// The broker core (src/broker/core/) with real clients: mqtt.js (MQTT 5 and 3.1.1) and raw sockets
// (test/helpers/rawMqtt.ts) for what mqtt.js will not send. EdgeBroker is built as the agent builds it, with a
// sync layer the test holds in its hand: `held` keeps each ingest's `done` until the test lets it go.
import { connect as tcpConnect } from 'node:net';
import type { Aedes, PublishPacket } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Authorizer } from '../../src/broker/auth.js';
import { EdgeBroker } from '../../src/broker/edgeBroker.js';
import { openDb } from '../../src/database/db.js';
import { silentLogger } from '../../src/util/logger.js';
import { connect, until, within } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';
import { RawClient } from '../helpers/rawMqtt.js';

interface Ingested {
  clientId: string;
  topic: string;
  payload: string;
  done: (err?: Error) => void;
}

describe('broker core', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function startBroker(
    o: {
      hold?: boolean;
      receiveMaximum?: number;
      allowAnonymous?: boolean;
      rateLimit?: { messagesPerSecond: number; burst: number };
    } = {},
  ) {
    const dir = tempDir('lb-broker-core-');
    const db = openDb(dir.path, { synchronous: 'normal' });
    const ingested: Ingested[] = [];
    const broker = new EdgeBroker({
      db,
      logger: silentLogger(),
      authorizer: new Authorizer({ allowAnonymous: o.allowAnonymous ?? true, devices: [], users: [] }),
      ingest: (_identity, clientId, packet: PublishPacket, done) => {
        ingested.push({ clientId, topic: packet.topic, payload: packet.payload.toString(), done });
        if (!o.hold) done();
      },
      maxPacketSize: 64 * 1024,
      rateLimit: o.rateLimit ?? { messagesPerSecond: 1000, burst: 1000 },
      core: true,
      keepaliveSweepMs: 100,
      ...(o.receiveMaximum ? { receiveMaximum: o.receiveMaximum } : {}),
    });
    const { port } = (await broker.start({ listen: { host: '127.0.0.1', port: 0 } })).mqtt;
    cleanups.push(
      () => dir.remove(),
      () => db.close(),
      () => broker.stop(),
    );
    return { broker, port, url: `mqtt://127.0.0.1:${port}`, ingested };
  }

  async function raw(port: number, version: 4 | 5, options: Parameters<typeof RawClient.connect>[2]) {
    const client = await RawClient.connect(port, version, options);
    cleanups.push(() => client.destroy());
    return client;
  }

  const telemetry = (device: string, payload: string, qos: 0 | 1 = 1) => ({
    topic: `devices/${device}/telemetry/t`,
    payload,
    qos,
  });

  it('answers MQTT 5 with the CONNACK properties aedes sends, and our Receive Maximum', async () => {
    const { port, broker } = await startBroker({ receiveMaximum: 7 });
    const { client, connack } = await RawClient.open(port, 5, { clientId: 'd1', clean: true });
    cleanups.push(() => client.destroy());
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties).toEqual({
      sharedSubscriptionAvailable: false,
      topicAliasMaximum: 10,
      maximumPacketSize: 64 * 1024,
      receiveMaximum: 7,
    });
    expect(broker.connectedClients).toBe(1);
  });

  it('ingests QoS 0 and 1 telemetry and answers PINGREQ (MQTT 5 and 3.1.1)', async () => {
    const { port, ingested } = await startBroker();
    for (const version of [4, 5] as const) {
      const device = await raw(port, version, { clientId: `d${version}`, clean: true });
      expect(await device.publish(telemetry(`d${version}`, 'one'))).toBe(0);
      await device.publish(telemetry(`d${version}`, 'zero', 0));
      device.send({ cmd: 'pingreq' });
      await device.next('pingresp');
      await until(
        () => ingested.filter((m) => m.clientId === `d${version}`).length === 2,
        2000,
        'QoS 0 ingested',
      );
    }
    expect(ingested.map((m) => m.payload)).toEqual(['one', 'zero', 'one', 'zero']);
  });

  describe('session takeover', () => {
    it('a second CONNECT with the same id closes the first (MQTT 5 hears 0x8E)', async () => {
      const { port, broker } = await startBroker();
      const first = await raw(port, 5, { clientId: 'twin', clean: true });
      const second = await raw(port, 5, { clientId: 'twin', clean: true });
      expect((await first.next('disconnect')).reasonCode).toBe(0x8e);
      await within(first.closed, 2000, 'the first connection closed');
      expect(await second.publish(telemetry('twin', 'x'))).toBe(0);
      expect(broker.connectedClients).toBe(1);
    });

    it('a CONNECT through aedes (persistent session) closes the core connection of that id', async () => {
      const { port, broker } = await startBroker();
      const onCore = await raw(port, 4, { clientId: 'moving', clean: true });
      const onAedes = await raw(port, 4, { clientId: 'moving', clean: false });
      await within(onCore.closed, 2000, 'the core connection closed');
      expect(await onAedes.subscribe([{ topic: 'devices/moving/#', qos: 1 }])).toEqual([1]);
      expect(broker.connectedClients).toBe(1);
    });

    it('a CONNECT through aedes that fails authentication leaves the core connection of that id alone', async () => {
      const { port, broker } = await startBroker();
      const onCore = await raw(port, 4, { clientId: 'victim', clean: true });
      const refused = await RawClient.open(port, 4, {
        clientId: 'victim',
        clean: false, // aedes' (a persistent session)
        username: 'nobody',
        password: Buffer.from('x'),
      });
      expect(refused.connack.returnCode).toBe(4);
      await within(refused.client.closed, 2000, 'the refused connection closed');
      expect(await onCore.publish(telemetry('victim', 'still here'))).toBe(0);
      expect(broker.connectedClients).toBe(1);
    });

    it('a clean CONNECT for an id with a persistent session goes to aedes, which discards the session', async () => {
      const { port, broker } = await startBroker();
      const session = await raw(port, 4, { clientId: 'pod', clean: false });
      await session.subscribe([{ topic: 'devices/#', qos: 1 }]);
      await session.disconnect();
      await broker.publish({
        topic: 'devices/x/telemetry/t',
        payload: Buffer.from('queued'),
        qos: 1,
        retain: false,
      });

      const clean = await RawClient.open(port, 4, { clientId: 'pod', clean: true });
      cleanups.push(() => clean.client.destroy());
      expect(clean.connack.sessionPresent).toBe(false);
      await clean.client.disconnect();
      const back = await RawClient.open(port, 4, { clientId: 'pod', clean: false });
      cleanups.push(() => back.client.destroy());
      expect(back.connack.sessionPresent).toBe(false);
      await broker.publish({
        topic: 'devices/x/telemetry/t',
        payload: Buffer.from('later'),
        qos: 1,
        retain: false,
      });
      await new Promise((r) => setTimeout(r, 200));
      expect(back.client.publishes).toEqual([]); // no subscription, no queued message survived
    });
  });

  describe('keepalive: one sweep over the connections', () => {
    it('closes a client silent for 1.5 times its Keep Alive (MQTT 5 hears 0x8D), not one that pings', async () => {
      const { port, broker } = await startBroker();
      const silent = await raw(port, 5, { clientId: 'silent', clean: true, keepalive: 1 });
      const silent4 = await raw(port, 4, { clientId: 'silent4', clean: true, keepalive: 1 });
      const pinging = await raw(port, 5, { clientId: 'pinging', clean: true, keepalive: 1 });
      const pings = setInterval(() => pinging.send({ cmd: 'pingreq' }), 500);
      cleanups.push(() => clearInterval(pings));
      const from = Date.now();
      expect((await silent.next('disconnect', undefined, 4000)).reasonCode).toBe(0x8d);
      await within(silent4.closed, 4000, 'the silent 3.1.1 client closed');
      expect(Date.now() - from).toBeGreaterThanOrEqual(1400);
      expect(pinging.isClosed).toBe(false);
      expect(broker.connectedClients).toBe(1);
    });

    it('closes a connection that sends no CONNECT', async () => {
      // (30 s in the agent; the same sweep.) Checked here only as "not closed early": an open socket stays.
      const { port } = await startBroker();
      const socket = tcpConnect(port, '127.0.0.1');
      cleanups.push(() => socket.destroy());
      await new Promise((r) => socket.once('connect', r));
      await new Promise((r) => setTimeout(r, 300));
      expect(socket.destroyed).toBe(false);
    });
  });

  describe('topic aliases (MQTT 5)', () => {
    it('are resolved before the ACL, and stripped before local subscribers get the message', async () => {
      const { port, url, ingested } = await startBroker();
      const watcher = await connect(url, { clientId: 'watcher' });
      cleanups.push(() => watcher.endAsync(true));
      const seen: { topic: string; alias: unknown }[] = [];
      watcher.on('message', (topic, _p, packet) =>
        seen.push({ topic, alias: packet.properties?.topicAlias }),
      );
      await watcher.subscribeAsync('devices/#', { qos: 1 });
      const device = await raw(port, 5, { clientId: 'aliased', clean: true });
      const send = (topic: string, alias: number, payload: string) =>
        device.publish({ topic, payload, qos: 1, properties: { topicAlias: alias } });
      expect(await send('devices/aliased/telemetry/t', 3, 'a')).toBe(0);
      expect(await send('', 3, 'b')).toBe(0);
      // An alias of an allowed topic does not let a forbidden one through: the ACL sees the resolved topic.
      expect(await send('devices/aliased/twin/desired', 4, 'c')).toBe(0x87);
      expect(await send('', 4, 'd')).toBe(0x87);
      expect(ingested.map((m) => [m.topic, m.payload])).toEqual([
        ['devices/aliased/telemetry/t', 'a'],
        ['devices/aliased/telemetry/t', 'b'],
      ]);
      await until(() => seen.length === 2, 2000, 'both messages at the local subscriber');
      expect(seen).toEqual([
        { topic: 'devices/aliased/telemetry/t', alias: undefined },
        { topic: 'devices/aliased/telemetry/t', alias: undefined },
      ]);
    });

    it('an alias out of range or never set closes the connection with 0x94', async () => {
      const { port } = await startBroker();
      for (const [topic, alias] of [
        ['devices/a/telemetry/t', 11],
        ['', 2],
      ] as const) {
        const device = await raw(port, 5, { clientId: `bad-alias-${alias}`, clean: true });
        device.send({
          cmd: 'publish',
          topic,
          payload: Buffer.from('x'),
          qos: 1,
          messageId: 1,
          dup: false,
          retain: false,
          properties: { topicAlias: alias },
        });
        expect((await device.next('disconnect')).reasonCode).toBe(0x94);
        await within(device.closed, 2000, 'closed after 0x94');
      }
    });
  });

  it('enforces its Receive Maximum: one QoS 1 PUBLISH past it is answered with DISCONNECT 0x93', async () => {
    const { port, ingested } = await startBroker({ hold: true, receiveMaximum: 3 });
    const device = await raw(port, 5, { clientId: 'eager', clean: true });
    for (let id = 1; id <= 3; id++)
      device.send({
        cmd: 'publish',
        topic: 'devices/eager/telemetry/t',
        payload: Buffer.from(`${id}`),
        qos: 1,
        messageId: id,
        dup: false,
        retain: false,
      });
    await until(() => ingested.length === 3, 2000, 'three in flight');
    expect(device.isClosed).toBe(false);
    device.send({
      cmd: 'publish',
      topic: 'devices/eager/telemetry/t',
      payload: Buffer.from('4'),
      qos: 1,
      messageId: 4,
      dup: false,
      retain: false,
    });
    expect((await device.next('disconnect')).reasonCode).toBe(0x93);
    expect(ingested).toHaveLength(3);
  });

  describe('oversized packets are refused from the fixed header, before the body is read', () => {
    it('MQTT 5: DISCONNECT 0x95 for a PUBLISH that announces 200 MB and sends 5 bytes of it', async () => {
      const { port } = await startBroker();
      const device = await raw(port, 5, { clientId: 'big5', clean: true });
      (device as unknown as { socket: { write(b: Buffer): void } }).socket.write(
        Buffer.from([0x32, 0x80, 0x80, 0x80, 0x60, 0, 1, 0x61, 0, 1]),
      );
      expect((await device.next('disconnect')).reasonCode).toBe(0x95);
    });

    it('MQTT 3.1.1: closed', async () => {
      const { port } = await startBroker();
      const device = await raw(port, 4, { clientId: 'big4', clean: true });
      (device as unknown as { socket: { write(b: Buffer): void } }).socket.write(
        Buffer.from([0x32, 0x80, 0x80, 0x80, 0x60]),
      );
      await within(device.closed, 2000, 'closed on the announced length');
    });

    it('a real MQTT 5 client publishing 100 KiB hears 0x95', async () => {
      const { url } = await startBroker();
      const big = await connect(url, { clientId: 'bigjs' });
      const reason = new Promise<number | undefined>((r) => big.once('disconnect', (p) => r(p.reasonCode)));
      big.publish('devices/bigjs/telemetry/t', Buffer.alloc(100 * 1024), { qos: 1 });
      expect(await within(reason, 5000, 'DISCONNECT')).toBe(0x95);
      big.end(true);
    });
  });

  describe('refusals keep PUBACK order ([MQTT-4.6.0-2])', () => {
    it('MQTT 5: a refused PUBLISH is answered after the accepted ones before it, with its reason code', async () => {
      const { port, ingested } = await startBroker({ hold: true });
      const device = await raw(port, 5, { clientId: 'ordered', clean: true });
      const acks: number[] = [];
      const send = (messageId: number, topic: string) => {
        device.send({
          cmd: 'publish',
          topic,
          payload: Buffer.from('x'),
          qos: 1,
          messageId,
          dup: false,
          retain: false,
        });
        return device
          .next('puback', (p) => p.messageId === messageId, 5000)
          .then((p) => {
            acks.push(p.messageId as number);
            return p.reasonCode ?? 0;
          });
      };
      const first = send(1, 'devices/ordered/telemetry/t');
      const forbidden = send(2, 'devices/ordered/twin/desired');
      await until(() => ingested.length === 1, 2000, 'the first PUBLISH ingested');
      await new Promise((r) => setTimeout(r, 100));
      expect(acks).toEqual([]); // the refusal waits for the commit before it
      ingested[0]?.done();
      expect(await first).toBe(0);
      expect(await forbidden).toBe(0x87);
      expect(acks).toEqual([1, 2]);
    });

    it('MQTT 5: a refusal says why in a Reason String, unless the client asked for no problem information', async () => {
      const { port } = await startBroker();
      for (const requestProblemInformation of [true, false]) {
        const device = await raw(port, 5, {
          clientId: `why-${requestProblemInformation}`,
          clean: true,
          properties: { requestProblemInformation },
        });
        device.send({
          cmd: 'publish',
          topic: 'devices/other/twin/desired',
          payload: Buffer.from('x'),
          qos: 1,
          messageId: 9,
          dup: false,
          retain: false,
        });
        const puback = await device.next('puback');
        expect(puback.reasonCode).toBe(0x87);
        expect(puback.properties?.reasonString).toBe(
          requestProblemInformation ? 'not authorized for this topic' : undefined,
        );
      }
    });

    it('MQTT 5: over the rate limit is 0x97 (quota exceeded); the store failing is 0x87', async () => {
      const { port, ingested } = await startBroker({ hold: true });
      const device = await raw(port, 5, { clientId: 'counted', clean: true });
      const published = device.publish(telemetry('counted', 'x'));
      await until(() => ingested.length === 1, 2000, 'ingested');
      ingested[0]?.done(new Error('disk full'));
      expect(await published).toBe(0x87);
      const limited = await startBroker({ rateLimit: { messagesPerSecond: 1, burst: 2 } });
      const flooder = await raw(limited.port, 5, { clientId: 'flood', clean: true });
      const codes = await Promise.all([1, 2, 3].map((i) => flooder.publish(telemetry('flood', `${i}`))));
      expect(codes).toEqual([0, 0, 0x97]);
      expect(limited.broker.refused.rate).toBe(1);
    });

    it('MQTT 3.1.1: the PUBACKs before a refusal are written, then the connection closes', async () => {
      const { port, ingested } = await startBroker({ hold: true });
      const device = await raw(port, 4, { clientId: 'old', clean: true });
      device.send({
        cmd: 'publish',
        topic: 'devices/old/telemetry/t',
        payload: Buffer.from('x'),
        qos: 1,
        messageId: 1,
        dup: false,
        retain: false,
      });
      device.send({
        cmd: 'publish',
        topic: 'devices/old/twin/desired',
        payload: Buffer.from('x'),
        qos: 1,
        messageId: 2,
        dup: false,
        retain: false,
      });
      device.send({
        cmd: 'publish',
        topic: 'devices/old/telemetry/t',
        payload: Buffer.from('after'),
        qos: 1,
        messageId: 3,
        dup: false,
        retain: false,
      });
      await until(() => ingested.length === 1, 2000, 'the first PUBLISH ingested');
      ingested[0]?.done();
      expect((await device.next('puback')).messageId).toBe(1);
      await within(device.closed, 2000, 'closed at the refusal');
      expect(ingested).toHaveLength(1); // nothing after the refusal was read
    });
  });

  describe('handed to aedes', () => {
    it('at SUBSCRIBE, after its PUBACKs: one CONNACK, the SUBACK, then a command the agent publishes', async () => {
      for (const version of [4, 5] as const) {
        const { port, broker, ingested } = await startBroker({ hold: true });
        const device = await raw(port, version, { clientId: `sub-${version}`, clean: true });
        const topic = `devices/sub-${version}/telemetry/t`;
        device.send({
          cmd: 'publish',
          topic,
          payload: Buffer.from('before'),
          qos: 1,
          messageId: 1,
          dup: false,
          retain: false,
        });
        device.send({
          cmd: 'subscribe',
          messageId: 2,
          subscriptions: [{ topic: `devices/sub-${version}/commands/#`, qos: 1 }],
        });
        await until(() => ingested.length === 1, 2000, 'the PUBLISH before SUBSCRIBE ingested');
        await new Promise((r) => setTimeout(r, 100));
        expect(device.unread.map((p) => p.cmd)).toEqual([]); // the SUBACK waits for the PUBACK before it
        ingested[0]?.done();
        expect((await device.next('puback')).messageId).toBe(1);
        expect((await device.next('suback')).granted).toEqual([1]);
        await broker.publish({
          topic: `devices/sub-${version}/commands/reboot`,
          payload: Buffer.from('now'),
          qos: 1,
          retain: false,
        });
        expect((await device.message(`devices/sub-${version}/commands/reboot`)).payload.toString()).toBe(
          'now',
        );
        // Still publishing, through aedes now, into the same ingest.
        const after = device.publish({ topic, payload: 'after', qos: 1 });
        await until(() => ingested.length === 2, 2000, 'the PUBLISH after SUBSCRIBE ingested');
        ingested[1]?.done();
        expect(await after).toBe(0);
        expect(device.unread.filter((p) => p.cmd === 'connack')).toEqual([]);
        expect(broker.connectedClients).toBe(1);
      }
    });

    it('keeps its topic aliases across the handover (MQTT 5)', async () => {
      const { port, ingested } = await startBroker();
      const device = await raw(port, 5, { clientId: 'alias-sub', clean: true });
      const topic = 'devices/alias-sub/telemetry/t';
      expect(await device.publish({ topic, payload: 'a', qos: 1, properties: { topicAlias: 1 } })).toBe(0);
      await device.subscribe([{ topic: 'devices/alias-sub/commands/#', qos: 1 }]);
      expect(await device.publish({ topic: '', payload: 'b', qos: 1, properties: { topicAlias: 1 } })).toBe(
        0,
      );
      expect(ingested.map((m) => [m.topic, m.payload])).toEqual([
        [topic, 'a'],
        [topic, 'b'],
      ]);
    });

    it("a client with a will, a persistent session or QoS 2 is aedes' and gets commands (mqtt.js)", async () => {
      const { url, broker, ingested } = await startBroker();
      const clients = {
        will: await connect(url, {
          clientId: 'with-will',
          will: { topic: 'devices/with-will/status', payload: Buffer.from('offline'), qos: 1, retain: true },
        }),
        session: await connect(url, {
          clientId: 'with-session',
          clean: false,
          properties: { sessionExpiryInterval: 60 },
        }),
        v4session: await connect(url, { clientId: 'with-session4', clean: false, protocolVersion: 4 }),
        qos2: await connect(url, { clientId: 'with-qos2' }),
      };
      for (const c of Object.values(clients)) cleanups.push(() => c.endAsync(true));
      await clients.qos2.publishAsync('devices/with-qos2/telemetry/t', 'two', { qos: 2 });
      expect(ingested.map((m) => [m.clientId, m.payload])).toEqual([['with-qos2', 'two']]);
      for (const [name, c] of Object.entries(clients)) {
        const id = (c.options.clientId as string).replace('with-', '');
        const got = new Promise<string>((r) => c.once('message', (_t, p) => r(p.toString())));
        await c.subscribeAsync(`devices/with-${id}/commands/#`, { qos: 1 });
        await broker.publish({
          topic: `devices/with-${id}/commands/go`,
          payload: Buffer.from(name),
          qos: 1,
          retain: false,
        });
        expect(await within(got, 3000, `${name} gets its command`)).toBe(name);
      }
      expect(broker.connectedClients).toBe(4);
    });
  });

  it("a local subscriber (on aedes) has a core client's telemetry before the client has its PUBACK", async () => {
    const { port, url } = await startBroker();
    const events: string[] = [];
    const watcher = await connect(url, { clientId: 'local', protocolVersion: 4 });
    cleanups.push(() => watcher.endAsync(true));
    await watcher.subscribeAsync('devices/#', { qos: 1 });
    watcher.on('message', (_t, p) => events.push(`delivered ${p.toString()}`));
    const device = await raw(port, 5, { clientId: 'fast', clean: true });
    for (let i = 0; i < 20; i++) {
      await device.publish(telemetry('fast', `${i}`));
      events.push(`acked ${i}`);
    }
    expect(events).toEqual(Array.from({ length: 20 }, (_, i) => [`delivered ${i}`, `acked ${i}`]).flat());
  });

  describe('routing through aedes', () => {
    /** The device PUBLISHes aedes routes (its 'publish' event), by payload. */
    function routed(broker: EdgeBroker): string[] {
      const seen: string[] = [];
      const aedes = (broker as unknown as { aedes: Aedes }).aedes;
      aedes.on('publish', (packet) => {
        if (packet.topic.startsWith('devices/')) seen.push(packet.payload.toString());
      });
      return seen;
    }

    it('telemetry nobody subscribes to stays out of aedes; a subscriber gets what comes after it subscribed, and once it has gone the routing stops again', async () => {
      const { port, url, broker, ingested } = await startBroker();
      const seen = routed(broker);
      const device = await raw(port, 5, { clientId: 'lonely', clean: true });
      expect(await device.publish(telemetry('lonely', 'a'))).toBe(0);
      expect(ingested.map((i) => i.payload)).toEqual(['a']);
      expect(seen).toEqual([]);

      const watcher = await connect(url, { clientId: 'watcher', protocolVersion: 5 });
      const got: string[] = [];
      watcher.on('message', (_t, p) => got.push(p.toString()));
      await watcher.subscribeAsync('devices/+/telemetry/#', { qos: 1 });
      expect(await device.publish(telemetry('lonely', 'b'))).toBe(0);
      await until(() => got.length === 1, 5000, 'the subscriber to get b');
      expect(got).toEqual(['b']);
      expect(seen).toEqual(['b']);

      await watcher.endAsync();
      // The subscription goes once aedes has removed it; from then on nothing is routed.
      let n = 0;
      await until(
        async () => {
          const before = seen.length;
          await device.publish(telemetry('lonely', `after-${n++}`));
          return seen.length === before;
        },
        5000,
        'routing to stop',
      );
      expect(ingested.map((i) => i.payload)).toEqual([
        'a',
        'b',
        ...Array.from({ length: n }, (_, i) => `after-${i}`),
      ]);
    });

    it("a persistent session's subscriber gets, when it returns, what core clients sent while it was away", async () => {
      const { port, url } = await startBroker();
      const away = await connect(url, { clientId: 'away', clean: false, protocolVersion: 4 });
      await away.subscribeAsync('devices/+/telemetry/#', { qos: 1 });
      await away.endAsync();
      const device = await raw(port, 5, { clientId: 'sender', clean: true });
      for (const p of ['1', '2', '3']) expect(await device.publish(telemetry('sender', p))).toBe(0);
      const got: string[] = [];
      // Listening before it connects: the queue is delivered right after the CONNACK.
      const back = mqtt.connect(url, {
        clientId: 'away',
        clean: false,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      cleanups.push(() => back.endAsync(true));
      back.on('message', (_t, p) => got.push(p.toString()));
      await until(() => got.length === 3, 5000, 'the queued messages');
      expect(got).toEqual(['1', '2', '3']);
    });

    it('a retained message from a core client is kept with nobody subscribed, and a later subscriber gets it', async () => {
      const { port, url } = await startBroker();
      const device = await raw(port, 5, { clientId: 'keeper', clean: true });
      expect(await device.publish({ ...telemetry('keeper', 'kept'), retain: true })).toBe(0);
      const later = await connect(url, { clientId: 'later', protocolVersion: 5 });
      cleanups.push(() => later.endAsync(true));
      const got: string[] = [];
      later.on('message', (_t, p) => got.push(p.toString()));
      await later.subscribeAsync('devices/keeper/#', { qos: 1 });
      await until(() => got.length === 1, 5000, 'the retained message');
      expect(got).toEqual(['kept']);
    });
  });

  it("stop closes the core's connections too (MQTT 5 hears 0x8B)", async () => {
    const { port, broker } = await startBroker();
    const device = await raw(port, 5, { clientId: 'stopping', clean: true });
    const reason = device.next('disconnect', undefined, 5000);
    await broker.stop();
    expect((await reason).reasonCode).toBe(0x8b);
    await within(device.closed, 2000, 'closed');
    expect(broker.connectedClients).toBe(0);
  });

  it("refuses bad credentials and anonymous clients with aedes' codes, and counts them", async () => {
    const { port, broker } = await startBroker({ allowAnonymous: false });
    const v4 = await RawClient.open(port, 4, { clientId: 'anon4', clean: true });
    expect(v4.connack.returnCode).toBe(5);
    const v5 = await RawClient.open(port, 5, { clientId: 'anon5', clean: true });
    expect(v5.connack.reasonCode).toBe(0x87);
    const bad = await RawClient.open(port, 5, {
      clientId: 'bad',
      clean: true,
      username: 'nobody',
      password: Buffer.from('x'),
    });
    expect(bad.connack.reasonCode).toBe(0x86);
    for (const c of [v4, v5, bad]) await within(c.client.closed, 2000, 'refused connection closed');
    expect(broker.refused.connect).toBe(3);
  });
});
