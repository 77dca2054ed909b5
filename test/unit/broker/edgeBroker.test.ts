import { afterEach, describe, expect, it, vi } from 'vitest';
import { Authorizer } from '../../../src/broker/auth.js';
import { EdgePersistence } from '../../../src/broker/delivery.js';
import { EdgeBroker } from '../../../src/broker/edgeBroker.js';
import { openDb } from '../../../src/database/db.js';
import { silentLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/processes.js';
import { RawClient } from '../../helpers/rawMqtt.js';

// Every case twice: with the broker core in front (the agent's default) and with aedes taking every connection.
describe.each([true, false])('edge broker (core: %s)', (core) => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function startBroker() {
    const dir = tempDir('lb-edge-broker-');
    const db = openDb(dir.path, { synchronous: 'normal' });
    const broker = new EdgeBroker({
      db,
      logger: silentLogger(),
      authorizer: new Authorizer({ allowAnonymous: true, devices: [], users: [] }),
      ingest: (_identity, _clientId, _packet, done) => done(),
      maxPacketSize: 64 * 1024,
      rateLimit: { messagesPerSecond: 1000, burst: 1000 },
      core,
    });
    const { port } = (await broker.start({ listen: { host: '127.0.0.1', port: 0 } })).mqtt;
    cleanups.push(
      () => dir.remove(),
      () => db.close(),
      () => broker.stop(),
    );
    const queuedRows = () =>
      (db.prepare('SELECT count(*) AS n FROM broker_outgoing').get() as { n: number }).n;
    return { port, queuedRows };
  }

  // aedes 2.0.0-beta.1 (lib/handlers/publish.js, enqueuePublish, `case 1`) writes the PUBACK of a QoS 1
  // PUBLISH before it publishes the message, and so before the message is queued for persistent sessions.
  // An agent killed between the two had acknowledged a message that no offline session would ever get: the
  // loss of fault test (f). A slow queue write here stands for the kill landing in that window.
  it('acknowledges a QoS 1 PUBLISH only once it is queued for an offline persistent session', async () => {
    const { port, queuedRows } = await startBroker();
    const pod = await RawClient.connect(port, 4, { clientId: 'pod-view', clean: false });
    expect(await pod.subscribe([{ topic: 'devices/#', qos: 1 }])).toEqual([1]);
    await pod.disconnect();

    const enqueue = EdgePersistence.prototype.outgoingEnqueueCombi;
    vi.spyOn(EdgePersistence.prototype, 'outgoingEnqueueCombi').mockImplementation(async function (
      this: EdgePersistence,
      ...args: Parameters<typeof enqueue>
    ) {
      await new Promise((r) => setTimeout(r, 200));
      return enqueue.apply(this, args);
    });
    const device = await RawClient.connect(port, 4, { clientId: 'dev-0', clean: true });
    cleanups.push(() => device.destroy());
    const before = queuedRows();
    expect(
      await device.publish({ topic: 'devices/dev-0/telemetry/t', payload: Buffer.from('1'), qos: 1 }),
    ).toBe(0);
    expect(queuedRows()).toBe(before + 1); // read as the PUBACK arrives

    const back = await RawClient.connect(port, 4, { clientId: 'pod-view', clean: false });
    cleanups.push(() => back.destroy());
    expect((await back.message('devices/dev-0/telemetry/t')).payload.toString()).toBe('1');
  });

  describe('Receive Maximum (MQTT 5 flow control)', () => {
    const payloads = (client: RawClient, topic: string) => client.on(topic).map((m) => m.payload.toString());
    const settle = () => new Promise((r) => setTimeout(r, 300));

    async function flowControlled(receiveMaximum: number) {
      const { port } = await startBroker();
      const sub = await RawClient.connect(port, 5, {
        clientId: 'sub',
        clean: true,
        properties: { receiveMaximum },
      });
      cleanups.push(() => sub.destroy());
      sub.autoAck = false;
      await sub.subscribe([{ topic: 'devices/#', qos: 2 }]);
      const pub = await RawClient.connect(port, 5, { clientId: 'pub', clean: true });
      cleanups.push(() => pub.destroy());
      return { sub, pub };
    }

    it('sends at most that many QoS 1 messages unacknowledged, then one per PUBACK, in order', async () => {
      const { sub, pub } = await flowControlled(2);
      const topic = 'devices/d/telemetry/t';
      for (let i = 0; i < 6; i++) await pub.publish({ topic, payload: `m${i}`, qos: 1 });
      await settle();
      expect(payloads(sub, topic)).toEqual(['m0', 'm1']);
      sub.ack(sub.on(topic)[1]!);
      await settle();
      expect(payloads(sub, topic)).toEqual(['m0', 'm1', 'm2']);
      sub.ack(sub.on(topic)[0]!);
      sub.ack(sub.on(topic)[2]!);
      await settle();
      expect(payloads(sub, topic)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
      sub.autoAck = true;
      for (const m of sub.on(topic).slice(3)) sub.ack(m);
      await settle();
      expect(payloads(sub, topic)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
    });

    it('keeps a QoS 2 message in flight until PUBCOMP, and lets QoS 0 messages pass', async () => {
      const { sub, pub } = await flowControlled(1);
      const topic = 'devices/d/telemetry/t';
      await pub.publish({ topic, payload: 'two', qos: 2 });
      await pub.publish({ topic, payload: 'one', qos: 1 });
      await pub.publish({ topic, payload: 'zero', qos: 0 });
      await settle();
      expect(payloads(sub, topic)).toEqual(['two', 'zero']);
      const two = sub.on(topic)[0]!;
      sub.ack(two); // PUBREC
      const pubrel = await sub.next('pubrel', (p) => p.messageId === two.messageId);
      await settle();
      expect(payloads(sub, topic)).toEqual(['two', 'zero']);
      sub.send({ cmd: 'pubcomp', messageId: pubrel.messageId });
      await settle();
      expect(payloads(sub, topic)).toEqual(['two', 'zero', 'one']);
    });
  });

  // aedes marks a client connected only once its session's queue is sent (lib/handlers/connect.js, after
  // emptyQueue), and until then refuses an oversized packet by a plain close (lib/client.js,
  // rejectPacketTooLarge). A client publishing right after its CONNACK got no reason.
  it('answers an oversized packet with DISCONNECT 0x95 while the session queue is still being sent (MQTT 5)', async () => {
    const { port } = await startBroker();
    const session = { clientId: 'pod-view', clean: false, properties: { sessionExpiryInterval: 3600 } };
    const pod = await RawClient.connect(port, 5, session);
    await pod.subscribe([{ topic: 'devices/#', qos: 1 }]);
    await pod.disconnect();
    const device = await RawClient.connect(port, 5, { clientId: 'dev-0', clean: true });
    cleanups.push(() => device.destroy());
    for (let n = 0; n < 300; n++)
      await device.publish({ topic: 'devices/dev-0/telemetry/t', payload: `${n}`, qos: 1 });

    const back = await RawClient.connect(port, 5, session);
    cleanups.push(() => back.destroy());
    back.send({
      cmd: 'publish',
      topic: 'devices/dev-0/telemetry/t',
      payload: Buffer.alloc(100 * 1024),
      qos: 1,
      messageId: 1,
      dup: false,
      retain: false,
    });
    expect((await back.next('disconnect')).reasonCode).toBe(0x95);
    expect(back.publishes.length).toBeLessThan(300); // it came while the queue was still going out
  });
});
